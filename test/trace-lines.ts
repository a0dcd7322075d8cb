// A validator of trace lines against the checked-in JSON Schema (docs/trace-format.schema.json),
// with Ajv: the check another engine's writer would run.
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { SCHEMA_PATH } from '../src/trace/jsonschema.js';

export function traceLineValidator() {
  const ajv = new Ajv2020({ strict: true, allErrors: false });
  return ajv.compile(JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as object);
}
