// npm run bench:memory [-- --runs N --backend cpu|hip --model M --json]:
// N whole traces in one process through the library API (model load, E1 on
// p4_sys, JSONL and rows written, analysis, close), measuring after each the
// memory blocks alive (tensors, scratch, graph inputs, host and device,
// counted by the addon), host RSS and, on hip, the device's free memory.
// Every run releases what it took, so after the first 10 runs (allocator and
// JIT warm-up) all three stay flat. The block count must be the same after
// every run past the warm-up: that check is exact. Each sample follows a full
// garbage collection (node --expose-gc, as the npm script runs it) and one
// turn of the event loop, when Node runs the finalizers of collected
// wrappers: garbage not yet collected is not a leak. Host RSS still moves a
// few MB from run to run with no trend (pages the C heap and V8 hold at that
// instant: about 1.5% of a 140 MB process), so its check is on the trend: a
// least-squares line through the runs after the first 10 may rise by at most
// 1% of its starting value from run 11 to the last run (for the device: its
// free memory may fall by at most 1%); memory handed back is not a failure.
// A leak of 10 kB a run fails it over 1000 runs of a 140 MB process; the
// medians of the first and last 10 runs and the largest single-run deviation
// are reported beside it. Exit 0 flat, 1 grew, 2 bad input.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trace } from '../index.js';
import { z } from 'zod';
import { BACKEND_KINDS, createBackend, resolveBackendKind, storageBlocks, trimHostHeap, type BackendKind } from '../native.js';
import { backendChoice, modelChoice } from '../options.js';
import { boolFlag, intAtLeast, optionLines, type OptionSpec } from '../spec.js';
import { median, parseBenchOptions } from './args.js';

/** Runs before the baseline: the allocators and the JIT settle in these. */
export const WARMUP_RUNS = 10;
/** Runs per window whose median is compared. */
export const WINDOW = 10;
/** Largest drift from the baseline allowed, as a fraction of it. */
export const MEMORY_TOLERANCE = 0.01;

export interface MemorySample {
  run: number;
  rssBytes: number;
  /** Host and device memory blocks alive (tensors, scratch, graph inputs): exact, no noise. */
  storageBlocks: number;
  /** Device bytes free (hip only). */
  deviceFreeBytes?: number;
}

export interface MemoryReport {
  backend: BackendKind;
  device: string;
  model: string;
  runs: number;
  /** Medians of the first WINDOW runs after the warm-up runs. */
  baseline: { rssBytes: number; deviceFreeBytes?: number };
  /** Medians of the last WINDOW runs. */
  last: { rssBytes: number; deviceFreeBytes?: number };
  /** Change of the fitted line from the first run after warm-up to the last, over its value at the first: > 0 grew. */
  rssDrift: number;
  /** The same for the device's free memory: < 0 is memory taken. */
  deviceDrift?: number;
  /** Most blocks alive after any run past the warm-up, less those alive after the first of them: > 0 is a leak. */
  blocksGrowth: number;
  /** Largest |one run - baseline| / baseline, for scale. */
  rssSampleDrift: number;
  seconds: number;
  flat: boolean;
  samples: MemorySample[];
}

/** bench:memory's options (flags only). */
const MEMORY_OPTIONS = {
  runs: { flag: 'runs', type: 'string', def: '1000', help: `traces to run (at least ${WARMUP_RUNS + 2 * WINDOW})` },
  backend: { flag: 'backend', type: 'string', def: 'auto', help: `auto, ${BACKEND_KINDS.join(', ')}` },
  model: { flag: 'model', type: 'string', def: 'synthetic:tiny', help: 'a built-in model, a Hugging Face Llama directory or a .gguf file' },
  json: { flag: 'json', type: 'boolean', def: '0', help: 'print the report (every sample included) as JSON' },
} as const satisfies Record<string, OptionSpec>;

const MemoryOptionsSchema = z.object({
  runs: intAtLeast(WARMUP_RUNS + 2 * WINDOW),
  backend: backendChoice,
  model: modelChoice,
  json: boolFlag,
});

const HELP = [
  'usage: npm run bench:memory -- [options]',
  '',
  'Runs N traces (E1, p4_sys, every layer, the 10 stage points) in one process through',
  "the library API and checks that host RSS and the device's free memory after each run",
  `stay flat: after ${WARMUP_RUNS} warm-up runs, a least-squares line through the samples grows by`,
  `at most ${MEMORY_TOLERANCE * 100}% from the first run to the last.`,
  '',
  ...optionLines(MEMORY_OPTIONS),
  '  --help                 this text',
  '',
  'Exit codes: 0 flat, 1 memory grew, 2 bad input.',
].join('\n');

/** The least-squares line through (run, value): its change over the runs, relative to its value at the first (signed). */
function trendDrift(samples: MemorySample[], get: (s: MemorySample) => number): number {
  const n = samples.length;
  const mx = samples.reduce((a, s) => a + s.run, 0) / n;
  const my = samples.reduce((a, s) => a + get(s), 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const s of samples) {
    sxy += (s.run - mx) * (get(s) - my);
    sxx += (s.run - mx) ** 2;
  }
  const slope = sxy / sxx;
  const first = samples[0]!.run;
  const start = my + slope * (first - mx);
  return (slope * (samples[n - 1]!.run - first)) / start;
}

/** RSS reads per sample; the least is kept. */
const RSS_READS = 5;

/**
 * Collects garbage (when node runs with --expose-gc), lets the finalizers it
 * queued run and hands the C heap's free pages back, then reads RSS a few
 * times over some milliseconds and keeps the least: V8's background threads
 * (compilers, the collector) take and free memory of their own for a few
 * milliseconds at a time, which is not what the process holds.
 */
async function settledRss(): Promise<number> {
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((resolve) => setImmediate(resolve));
  trimHostHeap();
  let rss = process.memoryUsage().rss;
  for (let i = 0; i < RSS_READS - 1; i++) {
    await new Promise((resolve) => setTimeout(resolve, 2));
    rss = Math.min(rss, process.memoryUsage().rss);
  }
  return rss;
}

export async function memoryRuns(
  kind: BackendKind,
  model: string,
  runs: number,
  onRun?: (s: MemorySample) => void,
): Promise<MemoryReport> {
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
      const s: MemorySample = { run: i, rssBytes: await settledRss(), storageBlocks: storageBlocks() };
      if (meter) s.deviceFreeBytes = meter.memInfo().free;
      samples.push(s);
      onRun?.(s);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const after = samples.slice(WARMUP_RUNS);
  const med = (w: MemorySample[], get: (s: MemorySample) => number) => median(w.map(get));
  const rss = (s: MemorySample) => s.rssBytes;
  const dev = (s: MemorySample) => s.deviceFreeBytes!;
  const base = after.slice(0, WINDOW);
  const lastWindow = after.slice(-WINDOW);
  const rssDrift = trendDrift(after, rss);
  const blocksGrowth = Math.max(...after.map((s) => s.storageBlocks)) - after[0]!.storageBlocks;
  const deviceDrift = meter ? trendDrift(after, dev) : undefined;
  const summary = (w: MemorySample[]) => ({ rssBytes: med(w, rss), ...(meter ? { deviceFreeBytes: med(w, dev) } : {}) });
  return {
    backend: kind,
    device: meter?.device ?? 'host',
    model,
    runs,
    baseline: summary(base),
    last: summary(lastWindow),
    rssDrift,
    ...(deviceDrift !== undefined ? { deviceDrift } : {}),
    blocksGrowth,
    rssSampleDrift: Math.max(...after.map((s) => Math.abs(s.rssBytes - med(base, rss)) / med(base, rss))),
    seconds: (performance.now() - t0) / 1e3,
    // Growth fails; memory handed back (RSS falling, device memory freed) does not.
    flat: rssDrift <= MEMORY_TOLERANCE && -(deviceDrift ?? 0) <= MEMORY_TOLERANCE && blocksGrowth === 0,
    samples,
  };
}

async function main(): Promise<void> {
  const values = parseBenchOptions('bench:memory', MEMORY_OPTIONS, MemoryOptionsSchema, HELP);
  const { runs } = values;
  const kind = resolveBackendKind(values.backend);
  const mb = (b: number) => (b / 2 ** 20).toFixed(1) + ' MiB';
  const r = await memoryRuns(kind, values.model, runs, (s) => {
    if (!values.json && (s.run === WARMUP_RUNS || s.run % 100 === 0)) {
      console.error(`run ${s.run}: RSS ${mb(s.rssBytes)}${s.deviceFreeBytes !== undefined ? `, device free ${mb(s.deviceFreeBytes)}` : ''}`);
    }
  });
  if (values.json) {
    console.log(JSON.stringify(r));
  } else {
    const pct = (x: number) => (x > 0 ? '+' : '') + (100 * x).toFixed(2) + '%';
    console.log(`${r.runs} traces of ${r.model} on ${r.backend} (${r.device}) in ${r.seconds.toFixed(1)} s`);
    const first = `runs ${WARMUP_RUNS + 1}-${WARMUP_RUNS + WINDOW}`;
    const lastRuns = `runs ${r.runs - WINDOW + 1}-${r.runs}`;
    console.log(
      `host RSS (median of ${WINDOW}): ${first} ${mb(r.baseline.rssBytes)}, ${lastRuns} ${mb(r.last.rssBytes)}; ` +
        `trend over the runs ${pct(r.rssDrift)}; single runs within ${(100 * r.rssSampleDrift).toFixed(2)}% of the first median`,
    );
    if (r.deviceDrift !== undefined) {
      console.log(
        `device free (median of ${WINDOW}): ${first} ${mb(r.baseline.deviceFreeBytes!)}, ${lastRuns} ${mb(r.last.deviceFreeBytes!)}, ` +
          `trend over the runs ${pct(r.deviceDrift)}`,
      );
    }
    console.log(`memory blocks alive: ${r.samples[WARMUP_RUNS]!.storageBlocks} after run ${WARMUP_RUNS + 1}, ${r.blocksGrowth > 0 ? `up to ${r.blocksGrowth} more later (a leak)` : 'never more later'}`);
    console.log(r.flat ? `flat: no growth beyond ${pct(MEMORY_TOLERANCE)}` : `GREW beyond ${pct(MEMORY_TOLERANCE)}`);
  }
  process.exitCode = r.flat ? 0 : 1;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) await main();
