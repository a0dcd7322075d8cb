// docs/trace-format.schema.json: generated from the zod schema (npm run schema), checked in, and
// equal to what the zod schema accepts on real traces and on broken lines.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TraceRecordSchema } from '../src/trace/schema.js';
import { SCHEMA_PATH, traceJsonSchemaText } from '../src/trace/jsonschema.js';
import { traceWith } from './helpers.js';
import { traceLineValidator } from './trace-lines.js';

describe('the trace JSON Schema', () => {
  it('the checked-in docs/trace-format.schema.json is what the zod schema generates (run npm run schema after changing the format)', () => {
    expect(readFileSync(SCHEMA_PATH, 'utf8')).toBe(traceJsonSchemaText());
  });

  // Every record type: stage (with per-head points), input, kv_check, header and end, for E1 and E0.
  const t = traceWith({ prompt: 'p0_short', exp: 'E1,E0', layers: '0,31', 'attn-pipe': true, heads: '0,3', 'debug-input': true, 'kv-check': true, steps: '2', phases: 'prefill_last,decode0,decode1' });
  const lines = readFileSync(t.out, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const validate = traceLineValidator();

  it('every line of a real trace, of every record type, is valid for the JSON Schema and for zod', () => {
    const types = new Set<string>();
    for (const line of lines) {
      const rec = JSON.parse(line) as { type: string };
      types.add(rec.type);
      expect(validate(rec), `${line.slice(0, 120)}: ${JSON.stringify(validate.errors)}`).toBe(true);
      expect(TraceRecordSchema.safeParse(rec).success).toBe(true);
    }
    expect([...types].sort()).toEqual(['end', 'header', 'input', 'kv_check', 'stage']);
  });

  it('a broken line is refused by both, the same way', () => {
    const stage = JSON.parse(lines.find((l) => l.includes('"type":"stage"') && l.includes('"point":"logits"'))!) as Record<string, unknown>;
    const header = JSON.parse(lines[0]!) as Record<string, unknown>;
    const broken: [string, unknown][] = [
      ['no hash', { ...stage, hash: undefined }],
      ['a short hash', { ...stage, hash: 'abc' }],
      ['an upper-case hash', { ...stage, hash: String(stage.hash).toUpperCase() }],
      ['an unknown point', { ...stage, point: 'attn' }],
      ['a negative layer', { ...stage, layer: -1 }],
      ['a fractional position', { ...stage, pos_id: 1.5 }],
      ['a phase decode01', { ...stage, phase: 'decode01' }],
      ['NaN as a stat (stats are finite)', { ...stage, stats: { ...(stage.stats as object), mean: 'NaN' } }],
      ['a sample value that is a word', { ...stage, sample: { ...(stage.sample as object), values: ['nan'] } }],
      ['a row of 0 bytes', { ...stage, row: { ...(stage.row as object), bytes: 0 } }],
      ['dtype bf16', { ...stage, dtype: 'bf16' }],
      ['format 2', { ...header, format: 2 }],
      ['an unknown record type', { ...stage, type: 'stages' }],
      ['exp E2', { ...stage, exp: 'E2' }],
    ];
    for (const [what, rec] of broken) {
      const r = JSON.parse(JSON.stringify(rec)) as unknown; // drops the undefined field
      expect(validate(r), what).toBe(false);
      expect(TraceRecordSchema.safeParse(r).success, what).toBe(false);
    }
    // Unknown fields are ignored by both readers.
    const extra = { ...stage, engine_note: 'kept by the writer, ignored by readers' };
    expect(validate(extra)).toBe(true);
    expect(TraceRecordSchema.safeParse(extra).success).toBe(true);
  });
});
