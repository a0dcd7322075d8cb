// npm run bench [-- --backend auto|cpu|cpu-fp64|hip --reps N]: medians of the
// ops at Llama-3-8B row shapes, of weight loading and of whole forward passes,
// with ratios against baselines measured in the same process: the bandwidth of
// our own elementwise add (what a memory-bound kernel can reach on this
// device), reading the weight file alone (what loading can reach), and the
// untraced forward passes for the cost of tracing.
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { plantFault } from '../faults.js';
import { Engine } from '../model/engine.js';
import { SYNTHETIC_MODELS } from '../model/models.js';
import { WeightStreamer } from '../model/stream.js';
import { syntheticWeights } from '../model/weights.js';
import { readRange } from '../loaders/io.js';
import { BACKEND_KINDS, createBackend, resolveBackendKind, type Backend, type BackendKind, type DType, type Tensor } from '../native.js';
import { resolveTraceOptions } from '../options.js';
import { PROMPTS, tokenize } from '../prompts.js';
import { planTrace, runTrace } from '../run.js';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Median milliseconds of one call of fn. Each sample runs fn `inner` times and
 * then waits for the device (`sync`), so asynchronous GPU work is counted.
 */
function time(fn: () => void, reps: number, sync: () => void, inner = 1): number {
  fn();
  sync();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    for (let j = 0; j < inner; j++) fn();
    sync();
    t.push((performance.now() - s) / inner);
  }
  return median(t);
}

function opBench(b: Backend, reps: number): void {
  const act = b.actDtype;
  const probe = b.alloc(act, [1, 1]);
  const sync = () => void b.download(probe);
  const inner = b.name === 'hip' ? 20 : 1;
  const T = (fn: () => void) => time(fn, reps, sync, inner);
  const actBytes = act === 'f64' ? 8 : 4;

  // Baseline: out = a + b over 2^24 elements moves 3 x 2^24 elements.
  const n = 1 << 24;
  const [a, c, o] = [b.alloc(act, [n]), b.alloc(act, [n]), b.alloc(act, [n])];
  b.fillUniform(a, 1n, 1, 0);
  b.fillUniform(c, 2n, 1, 0);
  const addMs = T(() => b.add(o, a, c));
  const baseGBs = (3 * n * actBytes) / addMs / 1e6;
  for (const t of [a, c, o]) t.free();

  console.log(`\n## ops on ${b.name}: ${b.device}; median of ${reps}\n`);
  console.log(`baseline: add over 2^24 elements, ${addMs.toFixed(3)} ms, ${baseGBs.toFixed(1)} GB/s moved\n`);
  console.log('| op | shape | weights | median ms | GB/s | vs add baseline |');
  console.log('|---|---|---|---:|---:|---:|');
  const row = (op: string, shape: string, w: string, ms: number, bytes: number) =>
    console.log(
      `| ${op} | ${shape} | ${w} | ${ms.toFixed(3)} | ${(bytes / ms / 1e6).toFixed(1)} | ${(bytes / ms / 1e6 / baseGBs).toFixed(2)} |`,
    );
  const K = 4096;
  const shapes: [number, number, DType][] = [
    [4096, K, 'bf16'],
    [14336, K, 'bf16'],
    [4096, 14336, 'bf16'],
    [4096, K, 'f32'],
  ];
  if (b.name === 'hip') shapes.push([128256, K, 'bf16']);
  for (const [N, KK, wd] of shapes) {
    const w = b.alloc(wd, [N, KK]);
    b.fillUniform(w, 3n, 0.02, 0);
    for (const M of b.name === 'hip' ? [1, 16, 205] : [1, 16]) {
      const x = b.alloc(act, [M, KK]);
      b.fillUniform(x, 4n, 1, 0);
      const out = b.alloc(act, [M, N]);
      const ms = T(() => b.matmul(out, x, w));
      const bytes = N * KK * (wd === 'f32' ? 4 : 2) + (M * KK + M * N) * actBytes;
      row(`matmul M=${M}`, `[${M},${KK}] x [${N},${KK}]^T`, wd, ms, bytes);
      x.free();
      out.free();
    }
    w.free();
  }
  for (const M of [1, 205]) {
    const x = b.alloc(act, [M, K]);
    const g = b.alloc('bf16', [K]);
    b.fillUniform(x, 5n, 1, 0);
    b.fillUniform(g, 6n, 0.1, 1);
    row('rmsnorm', `[${M},${K}]`, 'bf16', T(() => b.rmsnorm(x, x, g, 1e-5)), 2 * M * K * actBytes + 2 * K);
  }
  // Decode attention as in Llama-3-8B: 32 query heads, 8 KV heads of 128.
  for (const keys of [205, 4096]) {
    const q = b.alloc(act, [1, 32 * 128]);
    const kc = b.alloc(act, [keys, 8 * 128]);
    const vc = b.alloc(act, [keys, 8 * 128]);
    const out = b.alloc(act, [1, 32 * 128]);
    for (const [t, s] of [
      [q, 7n],
      [kc, 8n],
      [vc, 9n],
    ] as [Tensor, bigint][])
      b.fillUniform(t, s, 1, 0);
    const ms = T(() => b.attention(out, q, kc, vc, Int32Array.of(keys - 1), 32, 8, 128));
    row('attention decode', `32/8 heads x 128, ${keys} keys`, '-', ms, 2 * keys * 8 * 128 * actBytes);
  }
}

function modelBench(kind: BackendKind, modelName: string, reps: number): void {
  const spec = SYNTHETIC_MODELS[modelName]!;
  const b = createBackend(kind);
  const probe = b.alloc(b.actDtype, [1, 1]);
  const sync = () => void b.download(probe);
  const engine = new Engine(b, spec.config, syntheticWeights(b, spec.config, spec.weightDtype, spec.seed));
  const ids = tokenize(PROMPTS.p6_long!);
  const n = ids.length;
  console.log(`\n## ${modelName} on ${kind}, p6_long (${n} tokens), median of ${reps}\n`);
  const prefill = time(() => {
    const c = engine.newCache(n + 1);
    engine.forward(ids, 0, c).logits.free();
    engine.freeCache(c);
  }, reps, sync);
  const prefix = engine.newCache(n + 1);
  engine.forward(ids.slice(0, n - 1), 0, prefix);
  const decode = time(() => {
    prefix.length = n - 1;
    engine.forward([ids[n - 1]!], n - 1, prefix).logits.free();
  }, reps, sync);
  // A planted fault (here a residual fault in the last layer, one extra add)
  // costs only where it is planted; no fault is the model's own path.
  const last = spec.config.num_hidden_layers - 1;
  const planted = plantFault(engine, { name: 'residual_double', layer: last });
  const faulted = time(() => {
    prefix.length = n - 1;
    engine.forward([ids[n - 1]!], n - 1, prefix).logits.free();
  }, reps, sync);
  planted.release();
  const unfaulted = time(() => {
    prefix.length = n - 1;
    engine.forward([ids[n - 1]!], n - 1, prefix).logits.free();
  }, reps, sync);
  engine.freeCache(prefix);
  console.log('| what | median ms | tokens/s |');
  console.log('|---|---:|---:|');
  console.log(`| prefill ${n} tokens | ${prefill.toFixed(1)} | ${((n / prefill) * 1e3).toFixed(0)} |`);
  console.log(`| decode 1 token at ${n - 1} | ${decode.toFixed(2)} | ${(1e3 / decode).toFixed(1)} |`);
  console.log(`| decode, fault residual_double@${last} planted | ${faulted.toFixed(2)} | ${(1e3 / faulted).toFixed(1)} |`);
  console.log(`| decode after the fault is released | ${unfaulted.toFixed(2)} | ${(1e3 / unfaulted).toFixed(1)} |`);

  // The whole traced E1 run against the same forward passes untraced.
  const dir = mkdtempSync(join(tmpdir(), 'greta-bench-'));
  let i = 0;
  const traced = time(() => {
    const opts = resolveTraceOptions({ prompt: 'p6_long', backend: kind, model: modelName, out: join(dir, `t${i++}.jsonl`) }, {});
    runTrace(planTrace(opts, { prompt: true }));
  }, Math.min(reps, 3), sync);
  const untraced = time(() => {
    const full = engine.newCache(n + 1);
    engine.forward(ids, 0, full).logits.free();
    const c = engine.newCache(n + 1);
    engine.forward(ids.slice(0, n - 1), 0, c);
    engine.forward([ids[n - 1]!], n - 1, c).logits.free();
    engine.freeCache(full);
    engine.freeCache(c);
  }, reps, sync);
  rmSync(dir, { recursive: true, force: true });
  console.log('\n| E1 p6_long, 32 layers x 10 points, both phases | median ms |');
  console.log('|---|---:|');
  console.log(`| untraced forward passes (baseline) | ${untraced.toFixed(1)} |`);
  console.log(`| npm run trace (model build, trace, JSONL, rows, analysis input) | ${traced.toFixed(1)} |`);
  console.log(`| ratio | ${(traced / untraced).toFixed(2)} |`);
}

/**
 * Weight loading from a file in the page cache (as after a first load): the
 * streamer against two baselines in the same process, reading the file alone
 * (the ceiling) and reading each tensor whole, then uploading it.
 */
function loadBench(b: Backend, reps: number): void {
  const tensors = 16;
  const [rows, cols] = [4096, 8192]; // bf16: 64 MiB a tensor, 1 GiB in all
  const tensorBytes = rows * cols * 2;
  const dir = mkdtempSync(join(tmpdir(), 'greta-bench-load-'));
  const path = join(dir, 'weights.bin');
  try {
    const fd = openSync(path, 'w');
    const chunk = Buffer.alloc(tensorBytes, 0x3c);
    for (let i = 0; i < tensors; i++) writeSync(fd, chunk);
    closeSync(fd);
    const total = tensors * tensorBytes;
    const span = (i: number) => ({ file: path, where: `t${i}`, offset: i * tensorBytes, rows, rowBytes: cols * 2 });
    const sync = () => {};

    const readOnly = time(() => {
      const f = openSync(path, 'r');
      for (let off = 0; off < total; off += tensorBytes) readSync(f, chunk, 0, tensorBytes, off);
      closeSync(f);
    }, reps, sync);
    const whole = time(() => {
      for (let i = 0; i < tensors; i++) {
        const t = b.alloc('bf16', [rows, cols]);
        const data = readRange(path, `t${i}`, i * tensorBytes, tensorBytes);
        b.upload(t, new Uint16Array(data.buffer, data.byteOffset, data.length / 2));
        t.free();
      }
    }, reps, sync);
    const s = new WeightStreamer(b);
    const streamed = time(() => {
      for (let i = 0; i < tensors; i++) s.tensor('bf16', [rows, cols], span(i)).free();
    }, reps, sync);
    s.close();

    const gbs = (ms: number) => (total / ms / 1e6).toFixed(2);
    console.log(`\n## weight loading on ${b.name}: ${tensors} bf16 tensors of [${rows}, ${cols}] (1 GiB) from the page cache, median of ${reps}\n`);
    console.log('| what | median ms | GB/s | vs read only |');
    console.log('|---|---:|---:|---:|');
    console.log(`| read the file only (ceiling) | ${readOnly.toFixed(1)} | ${gbs(readOnly)} | 1.00 |`);
    console.log(`| read each tensor whole, then upload (baseline) | ${whole.toFixed(1)} | ${gbs(whole)} | ${(readOnly / whole).toFixed(2)} |`);
    console.log(`| WeightStreamer (64 MiB staging${b.name === 'hip' ? ', page-locked' : ''}) | ${streamed.toFixed(1)} | ${gbs(streamed)} | ${(readOnly / streamed).toFixed(2)} |`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const HELP = [
  'usage: npm run bench -- [--backend auto|cpu|cpu-fp64|hip] [--reps N]',
  '',
  'Medians of the ops at Llama-3-8B row shapes, of weight loading and of whole forward',
  'passes (synthetic:tiny, and synthetic:llama3-8b on hip), each against a baseline',
  'measured in the same process; a decode step with a planted fault and after it.',
  '',
  '  --backend <b>  auto (default), cpu, cpu-fp64, hip',
  '  --reps <n>     samples per median (default 7)',
  '  --help         this text',
  '',
  'Exit codes: 0 ok, 1 a run failed, 2 bad input.',
].join('\n');

function usage(message: string): never {
  console.error(`gretacore: ${message}`);
  process.exit(2);
}

let values: { reps?: string; backend?: string; help?: boolean };
try {
  ({ values } = parseArgs({
    options: { reps: { type: 'string', default: '7' }, backend: { type: 'string', default: 'auto' }, help: { type: 'boolean' } },
    strict: true,
  }));
} catch (e) {
  usage(`bench: ${(e as Error).message.split('\n')[0]!.replace(/\. To specify.*$/, '')} (see --help)`);
}
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const reps = Number(values.reps);
if (!/^\d+$/.test(values.reps ?? '') || reps < 1) usage(`--reps: '${values.reps}' is not an integer >= 1`);
if (values.backend !== 'auto' && !(BACKEND_KINDS as readonly string[]).includes(values.backend!)) {
  usage(`--backend: unknown backend '${values.backend}' (allowed: auto, ${BACKEND_KINDS.join(', ')})`);
}
const kind = resolveBackendKind(values.backend as BackendKind | 'auto');
opBench(createBackend(kind), reps);
loadBench(createBackend(kind), reps);
modelBench(kind, 'synthetic:tiny', reps);
if (kind === 'hip') modelBench(kind, 'synthetic:llama3-8b', reps);
