// What each kind of op costs the 8B-shaped decode step where it runs: the step graph captured with that kind
// of op left out (its outputs keep stale values, so only the time means anything), against the whole step,
// replayed in the same process: `node dev/decode_marginal.mjs [reps] [whole]` after `npm run build` with the GPU
// addon (`whole`: the whole step alone, three times).
// Kernels overlap (programmatic dependent launch), so a kernel's own duration under a profiler overstates or
// understates what removing it would save; this measures the saving. Savings do not add up (taking one kernel
// out changes what the others overlap with), and move by about 0.1 ms between runs: compare builds with
// `whole`, interleaved, before believing a fusion pays (dev/decode_timeline.py shows where a step's time goes).
import { Engine } from '../dist/model/engine.js';
import { SYNTHETIC_MODELS } from '../dist/model/models.js';
import { syntheticWeights } from '../dist/model/weights.js';
import { createBackend } from '../dist/native.js';
import { PROMPTS, tokenize } from '../dist/prompts.js';

const reps = Number(process.argv[2] ?? 7);
const spec = SYNTHETIC_MODELS['synthetic:llama3-8b'];
const b = createBackend('hip');
const weights = syntheticWeights(b, spec.config, spec.weightDtype, spec.seed);
const ids = tokenize(PROMPTS.p6_long);
const n = ids.length;
const sync = () => b.fence().wait();

// Op kinds by backend method; matmul split by which weight it takes.
const W = weights.layers;
const isLayerWeight = (t, key) => W.some((l) => l[key] === t);
const kinds = {
  qkv: ['matmul', (args) => isLayerWeight(args[2], 'wqkv')],
  wo: ['matmul', (args) => isLayerWeight(args[2], 'wo')],
  gate_up: ['matmul', (args) => isLayerWeight(args[2], 'wGateUp')],
  down: ['matmul', (args) => isLayerWeight(args[2], 'wDown')],
  lm_head: ['matmul', (args) => args[2] === weights.lmHead],
  rope: ['rope'],
  kv_write: ['kvWrite'],
  attention: ['attention'],
  silu: ['siluMul'],
  norms: ['addRmsnorm', 'rmsnorm', 'add'],
};
const short = ['rope', 'kv_write', 'attention', 'silu', 'norms'];
const proj = ['qkv', 'wo', 'gate_up', 'down', 'lm_head'];

function stepMs(skip) {
  const preds = new Map();
  for (const k of skip) {
    const [first, second] = kinds[k];
    // [method, predicate on its arguments] or [method, method, ...]
    const methods = typeof second === 'function' ? [first] : kinds[k];
    const pred = typeof second === 'function' ? second : () => true;
    for (const m of methods) preds.set(m, [...(preds.get(m) ?? []), pred]);
  }
  const engine = new Engine(b, spec.config, weights);
  const cache = engine.newCache(n + 1);
  engine.forward(ids.slice(0, n - 1), 0, cache).logits.free();
  const origs = new Map();
  for (const [m, list] of preds) {
    const orig = b[m].bind(b);
    origs.set(m, orig);
    // The addon's methods are read-only on its prototype: an own property shadows one.
    Object.defineProperty(b, m, { configurable: true, value: (...args) => (list.some((p) => p(args)) ? undefined : orig(...args)) });
  }
  const t = [];
  try {
    for (let i = 0; i < 3 + reps; i++) {
      cache.length = n - 1;
      const s = performance.now();
      for (let j = 0; j < 10; j++) {
        cache.length = n - 1;
        engine.forward([ids[n - 1]], n - 1, cache).logits.free();
      }
      sync();
      if (i >= 3) t.push((performance.now() - s) / 10);
    }
  } finally {
    for (const m of origs.keys()) delete b[m];
    engine.freeCache(cache);
    engine.close();
  }
  t.sort((a, c) => a - c);
  return t[t.length >> 1];
}

if (process.argv[3] === 'whole') {
  // The whole step only, three times: for A/B runs of two builds (GRETA_ADDON) in turn.
  console.log(`whole step ${[0, 1, 2].map(() => stepMs([]).toFixed(3)).join(' ')} ms`);
  process.exit(0);
}
const rows = [];
const full = stepMs([]);
rows.push(['whole step', full]);
for (const k of [...proj, ...short]) rows.push([`without ${k}`, stepMs([k])]);
rows.push(['without every short op', stepMs(short)]);
rows.push(['without every projection', stepMs(proj)]);
rows.push(['whole step again', stepMs([])]);
for (const [what, ms] of rows) console.log(`${what.padEnd(28)} ${ms.toFixed(3)} ms  saves ${(full - ms).toFixed(3)}`);
