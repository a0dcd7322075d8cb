import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveTraceOptions } from '../src/options.js';
import { planTrace, runTrace, type TraceRunOutput } from '../src/run.js';

export function tempDir(prefix = 'greta-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Runs a trace in-process as `npm run trace -- <flags>` would, writing to a temp file. */
export function traceWith(flags: Record<string, string | boolean>, env: NodeJS.ProcessEnv = {}): TraceRunOutput {
  const out = (flags.out as string | undefined) ?? join(tempDir(), 'trace.jsonl');
  const opts = resolveTraceOptions({ ...flags, out }, env);
  return runTrace(planTrace(opts));
}
