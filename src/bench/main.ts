// npm run bench [-- --backend auto|cpu|cpu-fp64|hip --reps N --json FILE --torch auto|off]:
// where we stand, with every number against a baseline measured in the same
// process. The device-to-device copy rate is the ceiling of memory-bound work:
// each op at Llama-3-8B shapes is stated as GB/s and a fraction of it, a
// decode step as a fraction of its floor (weight bytes at the copy rate).
// Decode is timed untraced, with the seeds' layers traced and with every layer
// and point traced; E1 is re-checked bit for bit on the model timed; weight
// loading is timed against reading the file alone. On a machine with a CUDA
// PyTorch (the GPU machine), scripts/gpu/bench_torch.py runs in the same
// process's run and its rows (cuBLAS, SDPA, F.rms_norm, transformers' decode
// step) print beside ours. --json writes all of it with device and commit.
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { plantFault } from '../faults.js';
import { Engine, type Tap } from '../model/engine.js';
import { SYNTHETIC_MODELS } from '../model/models.js';
import { paramCount } from '../model/source.js';
import { WeightStreamer } from '../model/stream.js';
import { syntheticWeights } from '../model/weights.js';
import { readRange } from '../loaders/io.js';
import { z } from 'zod';
import { BACKEND_KINDS, createBackend, packageRoot, resolveBackendKind, type Backend, type BackendKind, type DType, type Tensor } from '../native.js';
import { backendChoice } from '../options.js';
import { intAtLeast, optionLines, type OptionSpec } from '../spec.js';
import { median, parseBenchOptions } from './args.js';
import { PROMPTS, tokenize } from '../prompts.js';
import { POINTS, STAGE_POINTS, type Point } from '../trace/points.js';
import { StageTracer } from '../trace/tracer.js';
import { TraceWriter } from '../trace/writer.js';

/** Bytes of operands a GPU timing rotates over: well beyond the L2 cache (50 MB on an H100, 256 MB on an MI300X). */
const L2_SPAN = 512 << 20;

/** The seeds' layer list (B3.27 .. B3.41: GRETA_TRACE_STAGE_LAYERS), within the model's depth. */
const SEED_LAYERS = [0, 1, 2, 15, 31];

/** Calls of an op in the graph that times it (backends with graphs). */
const OP_GRAPH_CALLS = 20;

/** Decode steps: samples per --reps, and steps run before timing (op by op, capture, first replay). */
const STEP_SAMPLES = 5;
const STEP_WARMUP = 3;

/**
 * Median milliseconds of one call of fn, after `warmup` calls. Each sample runs
 * fn once and then waits for the device (`sync`), so asynchronous GPU work is
 * counted.
 */
function time(fn: () => void, reps: number, sync: () => void, warmup = 1): number {
  for (let i = 0; i < warmup; i++) fn();
  sync();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    fn();
    sync();
    t.push(performance.now() - s);
  }
  return median(t);
}

export interface OpRow {
  op: string;
  shape: string;
  weights: string;
  ms: number;
  gbs: number;
  /** GB/s over the copy rate measured in the same run. */
  of_copy: number;
  tflops?: number;
}

export interface TracedStep {
  ms: number;
  /** Nodes of the graph the traced step replays; null: it runs op by op (per-head points). */
  graphNodes: number | null;
  /** Tracer host ms per step: issuing row copies; issuing the statistics pass and copy back; waiting for a step's rows; writing its records (overlapping the next step on the device). */
  recordMs: number;
  issueMs: number;
  waitMs: number;
  writeMs: number;
}

export interface ModelRow {
  model: string;
  prompt_tokens: number;
  weight_bytes: number;
  /** Weight bytes at the copy rate: what one decode step cannot beat. */
  floor_ms: number;
  prefill_ms: number;
  /** Prefill at the issue's lengths (205 and 4096 tokens: the prompt's ids repeated), on a GPU backend. */
  prefill_at: { tokens: number; ms: number }[];
  /** The untraced step as a trace's later steps run it: replayed from a graph where the backend has them. */
  decode_ms: number;
  /** The same step issued op by op (Engine.graphs off), and the graph's node count (null: no graphs). */
  decode_ops_ms: number;
  graph_nodes: number | null;
  decode_tokens_per_s: number;
  /** floor_ms / decode_ms. */
  decode_of_floor: number;
  /** Traced steps: median ms, and the tracer's host ms per step issuing copies and writing records. */
  decode_traced_seed_layers: TracedStep;
  decode_traced_all_layers: TracedStep;
  decode_traced_every_point: TracedStep;
  decode_fault_planted_ms: number;
  decode_fault_released_ms: number;
  /** prefill_last and decode0 hashes equal at every layer and point of the model timed. */
  e1_bit_identical: boolean;
  e1_pairs: number;
}

export interface BenchReport {
  backend: BackendKind;
  device: string;
  commit: string;
  date: string;
  reps: number;
  copy: { bytes: number; ms: number; gbs: number };
  /** How an op row was timed: calls captured in one graph, or issued call by call. */
  op_timing: string;
  ops: OpRow[];
  models: ModelRow[];
  /** Weight loading: `tensors` bf16 tensors of [rows, cols], `bytes` in all. */
  load?: { tensors: number; rows: number; cols: number; bytes: number; read_only_gbs: number; whole_gbs: number; streamed_gbs: number };
  torch?: unknown;
}

/** The device-to-device copy of 1 GiB (2^28 f32 on a GPU; 2^24 on a CPU): bytes read plus written per second. */
function copyRate(b: Backend, reps: number): BenchReport['copy'] {
  const n = b.name === 'hip' ? 1 << 28 : 1 << 24;
  const src = b.alloc(b.actDtype, [n]);
  const dst = b.alloc(b.actDtype, [n]);
  b.fillUniform(src, 1n, 1, 0);
  const ms = time(() => b.copy(dst, src), reps, () => void b.download(probeOf(b)));
  const bytes = 2 * n * (b.actDtype === 'f64' ? 8 : 4);
  src.free();
  dst.free();
  return { bytes, ms, gbs: bytes / ms / 1e6 };
}

const probes = new Map<Backend, Tensor>();
/** A one-element tensor whose download waits for the device: the end of a timed sample. */
function probeOf(b: Backend): Tensor {
  let p = probes.get(b);
  if (!p) {
    p = b.alloc(b.actDtype, [1, 1]);
    probes.set(b, p);
  }
  return p;
}

function opBench(b: Backend, reps: number, copyGBs: number): OpRow[] {
  const act = b.actDtype;
  const sync = () => void b.download(probeOf(b));
  // Where the backend has graphs, an op is timed as the decode step runs it:
  // OP_GRAPH_CALLS calls captured in one graph, each kernel starting while the
  // one ahead finishes, the host out of the way; else call by call.
  const T = (fn: () => void, inputs: readonly Int32Array[] = []) => {
    if (!b.graphs) return time(fn, reps, sync);
    fn(); // scratch a call needs is allocated before the capture
    const g = b.captureGraph(inputs, () => {
      for (let j = 0; j < OP_GRAPH_CALLS; j++) fn();
    });
    const ms = time(() => g.launch(inputs), reps, sync) / OP_GRAPH_CALLS;
    g.free();
    return ms;
  };
  const actBytes = act === 'f64' ? 8 : 4;
  const rows: OpRow[] = [];
  const row = (op: string, shape: string, weights: string, ms: number, bytes: number, flops?: number) => {
    const gbs = bytes / ms / 1e6;
    rows.push({ op, shape, weights, ms, gbs, of_copy: gbs / copyGBs, ...(flops ? { tflops: flops / ms / 1e9 } : {}) });
  };
  // Llama-3-8B's projections as the engine runs them (Q, K, V fused; gate and up fused).
  const shapes: [string, number, number, DType][] = [
    ['qkv', 6144, 4096, 'bf16'],
    ['wo', 4096, 4096, 'bf16'],
    ['gate_up', 28672, 4096, 'bf16'],
    ['down', 4096, 14336, 'bf16'],
    ['wo f32', 4096, 4096, 'f32'],
  ];
  if (b.name === 'hip') shapes.push(['lm_head', 128256, 4096, 'bf16']);
  // On a GPU, calls rotate over copies of the operands that together exceed
  // the L2 cache, so every call reads its weights (or keys) from memory as a
  // model's pass over 32 layers does.
  const copiesFor = (bytes: number) => (b.name === 'hip' ? Math.max(1, Math.ceil(L2_SPAN / bytes)) : 1);
  for (const [name, N, K, wd] of shapes) {
    const wBytes = N * K * (wd === 'f32' ? 4 : 2);
    const copies = copiesFor(wBytes);
    const all = b.alloc(wd, [copies * N, K], { matmul: true });
    b.fillUniform(all, 3n, 0.02, 0);
    const ws = Array.from({ length: copies }, (_, i) => all.rows(i * N, N));
    for (const M of b.name === 'hip' ? [1, 16, 205] : [1, 16]) {
      const x = b.alloc(act, [M, K]);
      b.fillUniform(x, 4n, 1, 0);
      const out = b.alloc(act, [M, N]);
      let i = 0;
      const ms = T(() => b.matmul(out, x, ws[i++ % copies]!));
      const bytes = wBytes + (M * K + M * N) * actBytes;
      row(`matmul ${name} M=${M}`, `[${M},${K}] x [${N},${K}]^T`, wd, ms, bytes, 2 * M * N * K);
      x.free();
      out.free();
    }
    for (const w of [...ws, all]) w.free();
  }
  const K = 4096;
  for (const M of [1, 205]) {
    const x = b.alloc(act, [M, K]);
    const y = b.alloc(act, [M, K]);
    const s = b.alloc(act, [M, K]);
    const o = b.alloc(act, [M, K]);
    const g = b.alloc('bf16', [K]);
    b.fillUniform(x, 5n, 1, 0);
    b.fillUniform(y, 9n, 1, 0);
    b.fillUniform(g, 6n, 0.1, 1);
    row('rmsnorm', `[${M},${K}]`, 'bf16', T(() => b.rmsnorm(o, x, g, 1e-5)), 2 * M * K * actBytes + 2 * K);
    row('addRmsnorm', `[${M},${K}]`, 'bf16', T(() => b.addRmsnorm(s, o, x, y, g, 1e-5)), 4 * M * K * actBytes + 2 * K);
    for (const t of [x, y, s, o, g]) t.free();
  }
  // Attention as in Llama-3-8B: 32 query heads, 8 KV heads of 128; one decode row, and prefill rows.
  const maxKeys = b.name === 'hip' ? 32768 : 4096;
  const kc = b.alloc(act, [maxKeys, 8 * 128]);
  const vc = b.alloc(act, [maxKeys, 8 * 128]);
  b.fillUniform(kc, 8n, 1, 0);
  b.fillUniform(vc, 9n, 1, 0);
  for (const keys of [291, 4096, 32768].filter((k) => k <= maxKeys)) {
    const q = b.alloc(act, [1, 32 * 128]);
    const out = b.alloc(act, [1, 32 * 128]);
    b.fillUniform(q, 7n, 1, 0);
    // Caches of `keys` rows side by side in the big one, as the layers of a model.
    const copies = Math.min(copiesFor(2 * keys * 8 * 128 * actBytes), Math.floor(maxKeys / keys));
    const ks = Array.from({ length: copies }, (_, i) => kc.rows(i * keys, keys));
    const vs = Array.from({ length: copies }, (_, i) => vc.rows(i * keys, keys));
    const pos = Int32Array.of(keys - 1);
    let i = 0;
    const ms = T(() => {
      b.attention(out, q, ks[i % copies]!, vs[i % copies]!, pos, 32, 8, 128);
      i++;
    }, [pos]);
    row('attention decode', `32/8 heads x 128, ${keys} keys`, '-', ms, 2 * keys * 8 * 128 * actBytes);
    for (const t of [q, out, ...ks, ...vs]) t.free();
  }
  for (const n of b.name === 'hip' ? [291, 4096] : [291]) {
    const q = b.alloc(act, [n, 32 * 128]);
    const out = b.alloc(act, [n, 32 * 128]);
    b.fillUniform(q, 7n, 1, 0);
    const pos = Int32Array.from({ length: n }, (_, i) => i);
    const ms = time(() => b.attention(out, q, kc, vc, pos, 32, 8, 128), reps, sync);
    // Causal: row i reads i + 1 keys; the FLOPs of q.k and p.v.
    const flops = 2 * 2 * 32 * 128 * ((n * (n + 1)) / 2);
    row('attention prefill', `${n} rows, 32/8 heads x 128`, '-', ms, 2 * n * 8 * 128 * actBytes, flops);
    q.free();
    out.free();
  }
  kc.free();
  vc.free();
  return rows;
}

/** Hashes of every traced (layer, point) row of one forward call: E1's evidence, at the cost of a hash per point. */
function hashTap(b: Backend, into: Map<string, string>): Tap {
  return {
    wants: () => true,
    record: (layer, point, t, row) => into.set(`${layer}/${point}/`, b.summarize(t, row, []).hash),
    recordHeads: (layer, point, t, heads) => {
      for (const h of heads) into.set(`${layer}/${point}/${h}`, b.summarize(t, h, []).hash);
    },
    heads: (n) => Array.from({ length: n }, (_, h) => h),
  };
}

function modelBench(kind: BackendKind, modelName: string, reps: number, copyGBs: number): ModelRow {
  const spec = SYNTHETIC_MODELS[modelName]!;
  const cfg = spec.config;
  const b = createBackend(kind);
  const sync = () => void b.download(probeOf(b));
  const weights = syntheticWeights(b, cfg, spec.weightDtype, spec.seed);
  const engine = new Engine(b, cfg, weights);
  const ids = tokenize(PROMPTS.p6_long!);
  const n = ids.length;
  const weightBytes = paramCount(cfg) * (spec.weightDtype === 'f32' ? 4 : 2);
  // The embedding table is not read by a decode step but for one row.
  const decodeBytes = weightBytes - cfg.vocab_size * cfg.hidden_size * (spec.weightDtype === 'f32' ? 4 : 2);
  const floorMs = decodeBytes / copyGBs / 1e6;

  const prefill = time(() => {
    const c = engine.newCache(n + 1);
    engine.forward(ids, 0, c).logits.free();
    engine.freeCache(c);
  }, reps, sync);
  const prefillAt = (kind === 'hip' ? [205, 4096] : []).map((tokens) => {
    const longIds = Array.from({ length: tokens }, (_, i) => ids[i % n]!);
    const ms = time(() => {
      const c = engine.newCache(tokens);
      engine.forward(longIds, 0, c).logits.free();
      engine.freeCache(c);
    }, Math.min(reps, 5), sync);
    return { tokens, ms };
  });
  const prefix = engine.newCache(n + 1);
  engine.forward(ids.slice(0, n - 1), 0, prefix).logits.free();
  const step = (tap?: Tap) => {
    prefix.length = n - 1;
    engine.forward([ids[n - 1]!], n - 1, prefix, tap).logits.free();
  };
  // A step is cheap, so its medians take STEP_SAMPLES x reps samples, after
  // warm-up steps that include the first (op by op) and the capture of its
  // graph: what is timed is the step as every later one runs.
  const stepTime = (fn: () => void) => time(fn, STEP_SAMPLES * reps, sync, STEP_WARMUP);
  const decode = stepTime(() => step());
  const graphNodes = engine.stepGraphNodes(prefix) ?? null;
  engine.graphs = false;
  const decodeOps = stepTime(() => step());
  engine.graphs = b.graphs;

  // Traced decode steps: the tracer writes JSONL and rows to a scratch file, as a trace does.
  const dir = mkdtempSync(join(tmpdir(), 'greta-bench-'));
  const traced = (layers: number[], points: readonly Point[]) => {
    const writer = new TraceWriter(join(dir, `t${layers.length}-${points.length}.jsonl`));
    const tracer = new StageTracer(b, writer, 'bench', {
      layers: new Set(layers),
      points: new Set(points),
      phases: new Set(['decode0']),
      debugInput: false,
      topk: 5,
      heads: null,
    });
    try {
      const ms = stepTime(() => step(tracer.phase('p6_long', 'E1', 'decode0')));
      const steps = STEP_SAMPLES * reps + STEP_WARMUP;
      const h = tracer.hostMs;
      const graphNodes = engine.stepGraphNodes(prefix, tracer.phase('p6_long', 'E1', 'decode0')) ?? null;
      return { ms, graphNodes, recordMs: h.record / steps, issueMs: h.issue / steps, waitMs: h.wait / steps, writeMs: h.write / steps };
    } finally {
      tracer.close();
      writer.close();
    }
  };
  const all = Array.from({ length: cfg.num_hidden_layers }, (_, l) => l);
  const seed = traced(SEED_LAYERS.filter((l) => l < cfg.num_hidden_layers), STAGE_POINTS);
  const allStage = traced(all, STAGE_POINTS);
  const allPoints = traced(all, POINTS);
  rmSync(dir, { recursive: true, force: true });

  // A planted fault (a residual fault in the last layer, one extra add) costs only where it is planted.
  const planted = plantFault(engine, { name: 'residual_double', layer: cfg.num_hidden_layers - 1 });
  const faulted = stepTime(() => step());
  planted.release();
  const unfaulted = stepTime(() => step());

  // E1 on the model just timed: decode0 after a prefill of n - 1 tokens against the last row of a prefill of n.
  const pre = new Map<string, string>();
  const dec = new Map<string, string>();
  const full = engine.newCache(n + 1);
  engine.forward(ids, 0, full, hashTap(b, pre)).logits.free();
  step(hashTap(b, dec));
  engine.freeCache(full);
  engine.freeCache(prefix);
  const e1 = pre.size === dec.size && [...pre].every(([k, h]) => dec.get(k) === h);

  engine.close();
  for (const t of [weights.embed, weights.finalNorm, weights.lmHead, ...weights.layers.flatMap((l) => Object.values(l))]) t.free();
  return {
    model: modelName,
    prompt_tokens: n,
    weight_bytes: decodeBytes,
    floor_ms: floorMs,
    prefill_ms: prefill,
    prefill_at: prefillAt,
    decode_ms: decode,
    decode_ops_ms: decodeOps,
    graph_nodes: graphNodes,
    decode_tokens_per_s: 1e3 / decode,
    decode_of_floor: floorMs / decode,
    decode_traced_seed_layers: seed,
    decode_traced_all_layers: allStage,
    decode_traced_every_point: allPoints,
    decode_fault_planted_ms: faulted,
    decode_fault_released_ms: unfaulted,
    e1_bit_identical: e1,
    e1_pairs: pre.size,
  };
}

/**
 * Weight loading from a file in the page cache (as after a first load): the
 * streamer against two baselines in the same process, reading the file alone
 * (the ceiling) and reading each tensor whole, then uploading it.
 */
function loadBench(b: Backend, reps: number, mib: number): NonNullable<BenchReport['load']> {
  const tensors = 16;
  const cols = 8192;
  const rows = (mib * 2 ** 20) / (tensors * cols * 2); // bf16, 16 KiB a row: 4 rows a MiB; 1 GiB is [4096, 8192]
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

    const gbs = (ms: number) => total / ms / 1e6;
    return { tensors, rows, cols, bytes: total, read_only_gbs: gbs(readOnly), whole_gbs: gbs(whole), streamed_gbs: gbs(streamed) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The PyTorch rows (scripts/gpu/bench_torch.py), where python3 has a PyTorch that sees a GPU; else why not. */
function torchRows(reps: number): unknown {
  const script = join(packageRoot(), 'scripts', 'gpu', 'bench_torch.py');
  const r = spawnSync('python3', [script, '--reps', String(reps)], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.error) return { error: `python3: ${r.error.message}` };
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last) as unknown;
  } catch {
    return { error: `bench_torch.py exit ${r.status}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}` };
  }
}

function commitOf(): string {
  if (process.env.GRETA_COMMIT) return process.env.GRETA_COMMIT;
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: packageRoot(), encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

function printReport(r: BenchReport): void {
  const f = (x: number, d = 2) => x.toFixed(d);
  console.log(`# bench: ${r.backend} on ${r.device}, commit ${r.commit}, ${r.date}, median of ${r.reps}\n`);
  console.log(`copy rate (baseline): ${f(r.copy.bytes / 2 ** 30, 1)} GiB read + written in ${f(r.copy.ms, 3)} ms, ${f(r.copy.gbs, 1)} GB/s\n`);
  console.log(`ops: median ms per call, timed ${r.op_timing}\n`);
  console.log('| op | shape | weights | median ms | GB/s | of copy rate | TFLOP/s |');
  console.log('|---|---|---|---:|---:|---:|---:|');
  for (const o of r.ops) {
    console.log(`| ${o.op} | ${o.shape} | ${o.weights} | ${f(o.ms, 4)} | ${f(o.gbs, 1)} | ${f(o.of_copy)} | ${o.tflops !== undefined ? f(o.tflops, 1) : ''} |`);
  }
  for (const m of r.models) {
    console.log(`\n## ${m.model}, p6_long (${m.prompt_tokens} tokens)\n`);
    console.log('| what | median ms | tokens/s | ratio |');
    console.log('|---|---:|---:|---:|');
    console.log(`| prefill ${m.prompt_tokens} tokens | ${f(m.prefill_ms, 1)} | ${f((m.prompt_tokens / m.prefill_ms) * 1e3, 0)} | |`);
    for (const p of m.prefill_at) console.log(`| prefill ${p.tokens} tokens (the prompt repeated) | ${f(p.ms, 1)} | ${f((p.tokens / p.ms) * 1e3, 0)} | |`);
    console.log(`| decode step floor: ${f(m.weight_bytes / 1e9)} GB of weights at the copy rate | ${f(m.floor_ms, 3)} | ${f(1e3 / m.floor_ms, 1)} | 1.00 |`);
    const how = m.graph_nodes === null ? '' : ` (one graph of ${m.graph_nodes} nodes)`;
    console.log(`| decode step, untraced${how} | ${f(m.decode_ms, 3)} | ${f(m.decode_tokens_per_s, 1)} | ${f(m.decode_of_floor)} of the floor |`);
    console.log(`| decode step, untraced, op by op | ${f(m.decode_ops_ms, 3)} | ${f(1e3 / m.decode_ops_ms, 1)} | ${f(m.decode_ops_ms / m.decode_ms)}x |`);
    const tr = (what: string, t: TracedStep) =>
      console.log(
        `| decode step, ${what} traced (${t.graphNodes === null ? 'op by op' : `one graph of ${t.graphNodes} nodes`}; tracer host ms: row copies ${f(t.recordMs, 2)}, statistics and copy back ${f(t.issueMs, 2)}, wait ${f(t.waitMs, 2)}, records ${f(t.writeMs, 2)}) | ${f(t.ms, 3)} | | ${f(t.ms / m.decode_ms)}x untraced |`,
      );
    tr("the seeds' layers x 10 stage points", m.decode_traced_seed_layers);
    tr('every layer x 10 stage points (the default trace)', m.decode_traced_all_layers);
    tr('every layer and point, sub-stages and all heads', m.decode_traced_every_point);
    // A faulted step runs op by op (the fault acts between ops): its cost is against that row.
    console.log(`| decode step, fault residual_double planted in the last layer (op by op) | ${f(m.decode_fault_planted_ms, 3)} | | ${f(m.decode_fault_planted_ms / m.decode_ops_ms)}x op by op |`);
    console.log(`| decode step after the fault is released | ${f(m.decode_fault_released_ms, 3)} | | ${f(m.decode_fault_released_ms / m.decode_ms)}x |`);
    console.log(`\nE1 on the model timed: ${m.e1_bit_identical ? 'bit-identical' : 'DIFFERS'} at all ${m.e1_pairs} (layer, point) pairs`);
  }
  if (r.load) {
    const l = r.load;
    const size = l.bytes >= 2 ** 30 ? `${l.bytes / 2 ** 30} GiB` : `${l.bytes / 2 ** 20} MiB`;
    console.log(`\n## weight loading: ${l.tensors} bf16 tensors of [${l.rows}, ${l.cols}] (${size}) from the page cache\n`);
    console.log('| what | GB/s | vs read only |');
    console.log('|---|---:|---:|');
    console.log(`| read the file only (ceiling) | ${f(l.read_only_gbs)} | 1.00 |`);
    console.log(`| read each tensor whole, then upload (baseline) | ${f(l.whole_gbs)} | ${f(l.whole_gbs / l.read_only_gbs)} |`);
    console.log(`| WeightStreamer | ${f(l.streamed_gbs)} | ${f(l.streamed_gbs / l.read_only_gbs)} |`);
  }
  const t = r.torch as { error?: string; torch?: string; device?: string; rows?: { op: string; shape: string; dtype: string; ms: number; gbs: number; tflops?: number }[]; model?: Record<string, unknown> } | undefined;
  if (t) {
    console.log('\n## PyTorch in the same run (scripts/gpu/bench_torch.py)\n');
    if (t.error) {
      console.log(`not measured: ${t.error}`);
    } else {
      const copy = t.rows!.find((x) => x.op === 'copy')!;
      console.log(`torch ${t.torch} on ${t.device}; its copy rate ${f(copy.gbs, 1)} GB/s\n`);
      console.log('| op | shape | dtype | median ms | GB/s | of our copy rate | TFLOP/s |');
      console.log('|---|---|---|---:|---:|---:|---:|');
      for (const o of t.rows!) {
        console.log(`| ${o.op} | ${o.shape} | ${o.dtype} | ${f(o.ms, 4)} | ${f(o.gbs, 1)} | ${f(o.gbs / r.copy.gbs)} | ${o.tflops !== undefined ? f(o.tflops, 1) : ''} |`);
      }
      if (t.model) console.log(`\ntransformers' own decode step: ${JSON.stringify(t.model)}`);
    }
  }
}

/** The bench's options (no environment variables: every one is a flag). */
const BENCH_OPTIONS = {
  backend: { flag: 'backend', type: 'string', def: 'auto', help: `auto, ${BACKEND_KINDS.join(', ')}` },
  reps: { flag: 'reps', type: 'string', def: '7', help: 'samples per median (decode steps take 5n, after 3 warm-up steps)' },
  json: { flag: 'json', type: 'string', help: 'also write the report to this file as JSON (device, commit, every row)' },
  torch: { flag: 'torch', type: 'string', def: 'auto', help: 'auto: the PyTorch rows on hip when python3 has torch; off' },
  loadMib: { flag: 'load-mib', type: 'string', def: '1024', help: 'MiB of the weight-loading file (16 bf16 tensors)' },
} as const satisfies Record<string, OptionSpec>;

const BenchOptionsSchema = z.object({
  backend: backendChoice,
  reps: intAtLeast(1),
  json: z
    .string()
    .refine((f) => f !== '' && existsSync(join(f, '..')), { error: (iss) => `'${String(iss.input)}' is not a file in an existing directory` })
    .optional(),
  torch: z.enum(['auto', 'off'], { error: (iss) => `'${String(iss.input)}' is not a mode (allowed: auto, off)` }),
  loadMib: intAtLeast(1),
});

const HELP = [
  'usage: npm run bench -- [options]',
  '',
  'Medians of the ops at Llama-3-8B shapes (GB/s and fraction of the device-to-device copy',
  'rate measured in the same run; TFLOP/s), of weight loading, and of whole forward passes',
  '(synthetic:tiny, and synthetic:llama3-8b on hip): prefill, the decode step untraced, with',
  "the seeds' layers traced and with every layer and point traced, against the floor of",
  'weight bytes at the copy rate; E1 re-checked bit for bit on the model timed. With a CUDA',
  'PyTorch on the machine, scripts/gpu/bench_torch.py runs the same shapes through cuBLAS,',
  "SDPA and F.rms_norm, and transformers' decode step, in the same run.",
  '',
  ...optionLines(BENCH_OPTIONS),
  '  --help                 this text',
  '',
  'Exit codes: 0 ok, 1 a run failed, 2 bad input.',
].join('\n');

const opts = parseBenchOptions('bench', BENCH_OPTIONS, BenchOptionsSchema, HELP);
const { reps, loadMib } = opts;
const kind = resolveBackendKind(opts.backend);
const b = createBackend(kind);
const copy = copyRate(b, reps);
const report: BenchReport = {
  backend: kind,
  device: b.device,
  commit: commitOf(),
  date: new Date().toISOString(),
  reps,
  copy,
  op_timing: b.graphs ? `in a graph of ${OP_GRAPH_CALLS} calls, as the decode step runs them (prefill attention: call by call)` : 'call by call',
  ops: opBench(b, reps, copy.gbs),
  models: [],
};
report.models.push(modelBench(kind, 'synthetic:tiny', reps, copy.gbs));
if (kind === 'hip') report.models.push(modelBench(kind, 'synthetic:llama3-8b', reps, copy.gbs));
report.load = loadBench(b, reps, loadMib);
if (kind === 'hip' && opts.torch === 'auto') report.torch = torchRows(Math.max(reps, 10));
printReport(report);
if (opts.json) writeFileSync(opts.json, JSON.stringify(report, null, 1) + '\n');
if (report.models.some((m) => !m.e1_bit_identical)) process.exitCode = 1;
