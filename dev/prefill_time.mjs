// The 8B-shaped prefill timed alone, for comparing builds: `GRETA_ADDON=<a greta.node> node dev/prefill_time.mjs`
// after `npm run build` with the GPU addon, builds in turn (the bench's prefill rows time the same calls among
// much else). Each sample is one forward call over a fresh KV cache, the device idle before and waited for after;
// medians of 7 (205 tokens) and 3 (4096 tokens), past one warm-up call each.
import { Engine } from '../dist/model/engine.js';
import { SYNTHETIC_MODELS } from '../dist/model/models.js';
import { syntheticWeights } from '../dist/model/weights.js';
import { createBackend } from '../dist/native.js';

const spec = SYNTHETIC_MODELS['synthetic:llama3-8b'];
const b = createBackend('hip');
const engine = new Engine(b, spec.config, syntheticWeights(b, spec.config, spec.weightDtype, spec.seed));
const out = [];
for (const [tokens, reps] of [
  [205, 7],
  [4096, 3],
]) {
  const ids = Array.from({ length: tokens }, (_, i) => (i * 7919 + 13) % spec.config.vocab_size);
  const t = [];
  for (let r = 0; r <= reps; r++) {
    const cache = engine.newCache(tokens);
    b.fence().wait();
    const s = performance.now();
    engine.forward(ids, 0, cache).logits.free();
    b.fence().wait();
    if (r > 0) t.push(performance.now() - s);
    engine.freeCache(cache);
  }
  t.sort((x, y) => x - y);
  out.push(`prefill ${tokens} tokens: ${t[t.length >> 1].toFixed(1)} ms`);
}
console.log(out.join(', '));
engine.close();
