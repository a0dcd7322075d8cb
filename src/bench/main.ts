// npm run bench: medians of the ops at Llama-3-8B row shapes and of the
// traced E1 run, with ratios against baselines measured in this process.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Engine } from '../model/engine.js';
import { SYNTHETIC_MODELS } from '../model/models.js';
import { syntheticWeights } from '../model/weights.js';
import { createBackend, type Backend, type DType } from '../native.js';
import { resolveTraceOptions } from '../options.js';
import { PROMPTS, tokenize } from '../prompts.js';
import { planTrace, runTrace } from '../run.js';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Median milliseconds of fn over `reps` runs after one warm-up. */
function time(fn: () => void, reps: number): number {
  fn();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    fn();
    t.push(performance.now() - s);
  }
  return median(t);
}

function opBench(b: Backend, reps: number): void {
  console.log(`\n## ops on ${b.name} (${b.device}), median of ${reps}\n`);
  console.log('| op | shape | weights | median ms | weight GB/s |');
  console.log('|---|---|---|---:|---:|');
  const row = (op: string, shape: string, w: string, ms: number, bytes: number) =>
    console.log(`| ${op} | ${shape} | ${w} | ${ms.toFixed(3)} | ${bytes ? (bytes / ms / 1e6).toFixed(2) : '-'} |`);
  const K = 4096;
  for (const [N, wd] of [
    [4096, 'bf16'],
    [4096, 'f32'],
    [14336, 'bf16'],
  ] as [number, DType][]) {
    const w = b.alloc(wd, [N, K]);
    b.fillUniform(w, 1n, 0.02, 0);
    for (const M of [1, 16]) {
      const x = b.alloc(b.actDtype, [M, K]);
      b.fillUniform(x, 2n, 1, 0);
      const o = b.alloc(b.actDtype, [M, N]);
      const ms = time(() => b.matmul(o, x, w), reps);
      row('matmul', `[${M},${K}] x [${N},${K}]^T`, wd, ms, N * K * (wd === 'f32' ? 4 : 2));
    }
  }
  const x = b.alloc(b.actDtype, [1, K]);
  const g = b.alloc('bf16', [K]);
  b.fillUniform(x, 3n, 1, 0);
  b.fillUniform(g, 4n, 0.1, 1);
  row('rmsnorm', `[1,${K}]`, 'bf16', time(() => b.rmsnorm(x, x, g, 1e-5), reps), 0);

  // Decode attention as in Llama-3-8B: 32 query heads, 8 KV heads of 128, over 205 keys.
  const keys = 205;
  const q = b.alloc(b.actDtype, [1, 32 * 128]);
  const kc = b.alloc(b.actDtype, [keys, 8 * 128]);
  const vc = b.alloc(b.actDtype, [keys, 8 * 128]);
  const out = b.alloc(b.actDtype, [1, 32 * 128]);
  for (const [t, s] of [[q, 5n], [kc, 6n], [vc, 7n]] as const) b.fillUniform(t, s, 1, 0);
  row('attention decode', `32/8 heads x 128, ${keys} keys`, '-', time(() => b.attention(out, q, kc, vc, Int32Array.of(keys - 1), 32, 8, 128), reps), 0);
}

function modelBench(reps: number): void {
  const spec = SYNTHETIC_MODELS['synthetic:tiny']!;
  const b = createBackend('cpu');
  const engine = new Engine(b, spec.config, syntheticWeights(b, spec.config, spec.weightDtype, spec.seed));
  const ids = tokenize(PROMPTS.p6_long!);
  const n = ids.length;
  console.log(`\n## synthetic:tiny forward, p6_long (${n} tokens), median of ${reps}\n`);
  const prefill = time(() => engine.forward(ids, 0, engine.newCache(n + 1)).logits.free(), reps);
  const prefix = engine.newCache(n + 1);
  engine.forward(ids.slice(0, n - 1), 0, prefix);
  const decode = time(() => {
    prefix.length = n - 1;
    engine.forward([ids[n - 1]!], n - 1, prefix).logits.free();
  }, reps);
  console.log('| what | median ms | per token ms |');
  console.log('|---|---:|---:|');
  console.log(`| prefill ${n} tokens | ${prefill.toFixed(1)} | ${(prefill / n).toFixed(3)} |`);
  console.log(`| decode 1 token at ${n - 1} | ${decode.toFixed(1)} | ${decode.toFixed(3)} |`);

  // The whole traced E1 run, as `npm run trace -- --prompt p6_long`, against the
  // same forward passes untraced (prefill N, prefill N-1, decode 1).
  const dir = mkdtempSync(join(tmpdir(), 'greta-bench-'));
  const traced = time(() => {
    const opts = resolveTraceOptions({ prompt: 'p6_long', out: join(dir, `t${Math.random()}.jsonl`) }, {});
    runTrace(planTrace(opts, { prompt: true }));
  }, reps);
  const untraced = time(() => {
    engine.forward(ids, 0, engine.newCache(n + 1)).logits.free();
    const c = engine.newCache(n + 1);
    engine.forward(ids.slice(0, n - 1), 0, c);
    engine.forward([ids[n - 1]!], n - 1, c).logits.free();
  }, reps);
  rmSync(dir, { recursive: true, force: true });
  console.log(`\n| E1 p6_long, all 32 layers x 10 points | median ms |`);
  console.log('|---|---:|');
  console.log(`| untraced forward passes (baseline) | ${untraced.toFixed(1)} |`);
  console.log(`| traced run incl. model build, JSONL and rows | ${traced.toFixed(1)} |`);
  console.log(`| ratio traced / untraced | ${(traced / untraced).toFixed(2)} |`);
}

const { values } = parseArgs({ options: { reps: { type: 'string', default: '7' } } });
const reps = Number(values.reps);
if (!Number.isInteger(reps) || reps < 1) {
  console.error(`gretacore: --reps: '${values.reps}' is not an integer >= 1`);
  process.exit(2);
}
opBench(createBackend('cpu'), reps);
modelBench(reps);
