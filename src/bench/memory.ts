// npm run bench:memory [-- --runs N --backend cpu|hip --model M --json]:
// N whole traces in one process through the library API (model load, E1 on
// p4_sys, JSONL and rows written, analysis, close), measuring host RSS and,
// on hip, the device's free memory after each. Every run releases what it
// took, so after the first runs (allocator and JIT warm-up) both stay flat:
// the check is that every run from the 10th on is within 1% of the 10th.
// Exit 0 flat, 1 grew, 2 bad input.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { trace } from '../index.js';
import { BACKEND_KINDS, createBackend, resolveBackendKind, type BackendKind } from '../native.js';

/** Runs before the baseline: the allocators and the JIT settle in these. */
export const WARMUP_RUNS = 10;
/** Largest drift from the baseline allowed, as a fraction of it. */
export const MEMORY_TOLERANCE = 0.01;

export interface MemorySample {
  run: number;
  rssBytes: number;
  /** Device bytes free (hip only). */
  deviceFreeBytes?: number;
}

export interface MemoryReport {
  backend: BackendKind;
  device: string;
  model: string;
  runs: number;
  baseline: MemorySample;
  last: MemorySample;
  /** Largest |sample - baseline| / baseline over runs WARMUP_RUNS.. */
  rssDrift: number;
  deviceDrift?: number;
  seconds: number;
  flat: boolean;
  samples: MemorySample[];
}

const HELP = [
  'usage: npm run bench:memory -- [--runs N] [--backend cpu|hip|auto] [--model M] [--json]',
  '',
  'Runs N traces (E1, p4_sys, layers 0 and last, every stage point) in one process through',
  "the library API and checks that host RSS and the device's free memory after each run",
  `stay within ${MEMORY_TOLERANCE * 100}% of their value after run ${WARMUP_RUNS}.`,
  '',
  `  --runs <n>     traces to run (default 1000, at least ${WARMUP_RUNS + 1})`,
  '  --backend <b>  auto (default), cpu, cpu-fp64, hip',
  '  --model <m>    default synthetic:tiny',
  '  --json         print the report (every sample included) as JSON',
  '  --help         this text',
  '',
  'Exit codes: 0 flat, 1 memory grew, 2 bad input.',
].join('\n');

function usage(message: string): never {
  console.error(`gretacore: ${message}`);
  process.exit(2);
}

export function memoryRuns(kind: BackendKind, model: string, runs: number, onRun?: (s: MemorySample) => void): MemoryReport {
  const meter = kind === 'hip' ? createBackend('hip') : undefined;
  const dir = mkdtempSync(join(tmpdir(), 'greta-memory-'));
  const samples: MemorySample[] = [];
  const t0 = performance.now();
  try {
    for (let i = 1; i <= runs; i++) {
      const out = join(dir, 'trace.jsonl');
      const r = trace({ prompt: 'p4_sys', model, backend: kind, layers: 'all', out });
      if (r.rows.some((row) => row.first_mismatch_stage !== 'NONE')) throw new Error(`run ${i}: E1 was not bit-identical`);
      rmSync(out, { force: true });
      rmSync(out.replace(/\.jsonl$/, '.rows.bin'), { force: true });
      const s: MemorySample = { run: i, rssBytes: process.memoryUsage().rss };
      if (meter) s.deviceFreeBytes = meter.memInfo().free;
      samples.push(s);
      onRun?.(s);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const baseline = samples[WARMUP_RUNS - 1]!;
  const drift = (get: (s: MemorySample) => number) =>
    Math.max(...samples.slice(WARMUP_RUNS - 1).map((s) => Math.abs(get(s) - get(baseline)) / get(baseline)));
  const rssDrift = drift((s) => s.rssBytes);
  const deviceDrift = meter ? drift((s) => s.deviceFreeBytes!) : undefined;
  return {
    backend: kind,
    device: meter?.device ?? 'host',
    model,
    runs,
    baseline,
    last: samples[samples.length - 1]!,
    rssDrift,
    ...(deviceDrift !== undefined ? { deviceDrift } : {}),
    seconds: (performance.now() - t0) / 1e3,
    flat: rssDrift <= MEMORY_TOLERANCE && (deviceDrift ?? 0) <= MEMORY_TOLERANCE,
    samples,
  };
}

function main(): void {
  let values: { runs?: string; backend?: string; model?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        runs: { type: 'string', default: '1000' },
        backend: { type: 'string', default: 'auto' },
        model: { type: 'string', default: 'synthetic:tiny' },
        json: { type: 'boolean' },
        help: { type: 'boolean' },
      },
      strict: true,
    }));
  } catch (e) {
    usage(`bench:memory: ${(e as Error).message.split('\n')[0]!.replace(/\. To specify.*$/, '')} (see --help)`);
  }
  if (values.help) {
    console.log(HELP);
    return;
  }
  const runs = Number(values.runs);
  if (!/^\d+$/.test(values.runs ?? '') || runs <= WARMUP_RUNS) usage(`--runs: '${values.runs}' is not an integer > ${WARMUP_RUNS}`);
  if (values.backend !== 'auto' && !(BACKEND_KINDS as readonly string[]).includes(values.backend!)) {
    usage(`--backend: unknown backend '${values.backend}' (allowed: auto, ${BACKEND_KINDS.join(', ')})`);
  }
  const kind = resolveBackendKind(values.backend as BackendKind | 'auto');
  const mb = (b: number) => (b / 2 ** 20).toFixed(1) + ' MiB';
  const r = memoryRuns(kind, values.model!, runs, (s) => {
    if (!values.json && (s.run === WARMUP_RUNS || s.run % 100 === 0)) {
      console.error(`run ${s.run}: RSS ${mb(s.rssBytes)}${s.deviceFreeBytes !== undefined ? `, device free ${mb(s.deviceFreeBytes)}` : ''}`);
    }
  });
  if (values.json) {
    console.log(JSON.stringify(r));
  } else {
    const pct = (x: number) => (100 * x).toFixed(2) + '%';
    console.log(`${r.runs} traces of ${r.model} on ${r.backend} (${r.device}) in ${r.seconds.toFixed(1)} s`);
    console.log(`host RSS: run ${WARMUP_RUNS} ${mb(r.baseline.rssBytes)}, run ${r.runs} ${mb(r.last.rssBytes)}, largest drift ${pct(r.rssDrift)}`);
    if (r.deviceDrift !== undefined) {
      console.log(
        `device free: run ${WARMUP_RUNS} ${mb(r.baseline.deviceFreeBytes!)}, run ${r.runs} ${mb(r.last.deviceFreeBytes!)}, largest drift ${pct(r.deviceDrift)}`,
      );
    }
    console.log(r.flat ? `flat: within ${pct(MEMORY_TOLERANCE)} after run ${WARMUP_RUNS}` : `GREW beyond ${pct(MEMORY_TOLERANCE)}`);
  }
  process.exitCode = r.flat ? 0 : 1;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) main();
