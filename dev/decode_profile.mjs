// The 8B-shaped decode step under a profiler: `nsys profile --cuda-graph-trace=node node dev/decode_profile.mjs [steps] [fence|loop]`
// (after `npm run build` with the GPU addon; dev/decode_timeline.py reads the export). Prefills p6_long, then
// runs the last token's decode step `steps` times (default 30) as the engine does: op by op once, captured once,
// replayed after.
import { Engine } from '../dist/model/engine.js';
import { SYNTHETIC_MODELS } from '../dist/model/models.js';
import { syntheticWeights } from '../dist/model/weights.js';
import { createBackend } from '../dist/native.js';
import { PROMPTS, tokenize } from '../dist/prompts.js';

const steps = Number(process.argv[2] ?? 30);
// `fence` (the default) waits for the device after each step, as the bench's timing does (there by a download);
// `loop` runs the steps back to back, as a generation loop does (forward() returns once the step's top-1 is on
// the host).
const mode = process.argv[3] ?? 'fence';
if (mode !== 'fence' && mode !== 'loop') throw new Error(`decode_profile: mode '${mode}' is not fence or loop`);
const spec = SYNTHETIC_MODELS['synthetic:llama3-8b'];
const b = createBackend('hip');
const engine = new Engine(b, spec.config, syntheticWeights(b, spec.config, spec.weightDtype, spec.seed));
const ids = tokenize(PROMPTS.p6_long);
const n = ids.length;
const cache = engine.newCache(n + 1);
engine.forward(ids.slice(0, n - 1), 0, cache).logits.free();
const t = [];
for (let i = 0; i < steps; i++) {
  cache.length = n - 1;
  const s = performance.now();
  const out = engine.forward([ids[n - 1]], n - 1, cache);
  if (mode === 'fence') b.fence().wait();
  out.logits.free();
  t.push(performance.now() - s);
}
t.sort((a, b) => a - b);
console.log(`decode step (${mode}): median ${t[t.length >> 1].toFixed(3)} ms over ${steps} (nodes ${engine.stepGraphNodes(cache)})`);
engine.freeCache(cache);
