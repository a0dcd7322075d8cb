// Decode steps replayed from a captured graph give the bits of the same steps
// run op by op, at every position one graph serves: inside the first key
// chunk, across chunk boundaries and across the first merge group (1024 keys).
// And a capture that breaks its rules fails with one clear error and leaves
// the backend working.
import { describe, expect, it } from 'vitest';
import { Engine, type KVCache } from '../../src/model/engine.js';
import { SYNTHETIC_MODELS } from '../../src/model/models.js';
import { syntheticWeights } from '../../src/model/weights.js';
import { createBackend, type Backend } from '../../src/native.js';
import { deviceBackend } from './backend.js';

const BACKEND = deviceBackend();
const bytes = (b: Backend, t: Parameters<Backend['download']>[0]) => Buffer.from(b.download(t).buffer);

describe.skipIf(BACKEND !== 'hip')('decode step graphs', () => {
  it('synthetic:tiny: replayed steps equal op-by-op steps bit for bit at positions 5..70 and 1000..1040', () => {
    const spec = SYNTHETIC_MODELS['synthetic:tiny']!;
    const b = createBackend('hip');
    const weights = syntheticWeights(b, spec.config, spec.weightDtype, spec.seed);
    const graphed = new Engine(b, spec.config, weights);
    const plain = new Engine(b, spec.config, weights);
    plain.graphs = false;
    expect(graphed.graphs).toBe(true);
    try {
      for (const [prefix, steps] of [
        [5, 66],
        [1000, 41],
      ] as const) {
        const prompt = Array.from({ length: prefix }, (_, i) => (i * 7919 + 13) % spec.config.vocab_size);
        const caches: KVCache[] = [];
        const tops: number[][] = [];
        const logits: Buffer[][] = [];
        for (const e of [graphed, plain]) {
          const c = e.newCache(prefix + steps);
          caches.push(c);
          e.forward(prompt, 0, c).logits.free();
          const t: number[] = [];
          const l: Buffer[] = [];
          let token = 1;
          for (let s = 0; s < steps; s++) {
            const r = e.forward([token], prefix + s, c);
            t.push(r.top1);
            l.push(bytes(b, r.logits));
            r.logits.free();
            token = r.top1;
          }
          tops.push(t);
          logits.push(l);
        }
        const nodes = graphed.stepGraphNodes(caches[0]!);
        console.log(`  prefix ${prefix}: ${steps} steps, graph of ${nodes} nodes; top1 ${tops[0]!.slice(0, 8).join(' ')} ...`);
        // Each of the 32 layers' kernels: qkv, rope with the KV writes, attention's two, wo, add+norm, gate_up, silu, down, add+norm.
        expect(nodes).toBeGreaterThanOrEqual(32 * 10);
        expect(plain.stepGraphNodes(caches[1]!)).toBeUndefined();
        expect(tops[0]).toEqual(tops[1]);
        for (let s = 0; s < steps; s++) expect(logits[0]![s]!.equals(logits[1]![s]!), `step ${s} at position ${prefix + s}`).toBe(true);
        // The KV rows the replayed steps wrote are the op-by-op ones.
        expect(bytes(b, caches[0]!.storage).equals(bytes(b, caches[1]!.storage))).toBe(true);
        graphed.freeCache(caches[0]!);
        plain.freeCache(caches[1]!);
      }
    } finally {
      graphed.close();
      plain.close();
      for (const t of [weights.embed, weights.finalNorm, weights.lmHead, ...weights.layers.flatMap((l) => Object.values(l))]) t.free();
    }
  }, 300_000);

  it('a capture that breaks its rules fails with one error, and the backend still works', () => {
    const b = createBackend('hip');
    const x = b.alloc('f32', [2, 8]);
    const table = b.alloc('f32', [16, 8]);
    b.fillUniform(table, 7n, 1, 0);
    const ids = Int32Array.of(3, 5);
    try {
      expect(() => b.captureGraph([ids], () => b.embedding(x, table, Int32Array.of(3, 5)))).toThrow(
        /embedding: in a graph capture, index arrays must be the graph's inputs/,
      );
      expect(() => b.captureGraph([ids], () => b.download(x))).toThrow(/download: not allowed in a graph capture/);
      expect(() => b.captureGraph([ids], () => {
        throw new Error('from record');
      })).toThrow(/from record/);
      const g = b.captureGraph([ids], () => b.embedding(x, table, ids));
      expect(() => g.launch([Int32Array.of(1)])).toThrow(/inputs\[0\] has 1 values, the graph was captured with 2/);
      expect(() => g.launch([])).toThrow(/0 inputs given, the graph was captured with 1/);
      g.launch([Int32Array.of(9, 2)]);
      const t = b.download(table) as Float32Array;
      expect([...(b.download(x) as Float32Array)]).toEqual([...t.subarray(9 * 8, 10 * 8), ...t.subarray(2 * 8, 3 * 8)]);
      g.free();
      expect(() => g.launch([ids])).toThrow(/graph was already freed/);
      b.embedding(x, table, Int32Array.of(0, 15));
      expect([...(b.download(x) as Float32Array)]).toEqual([...t.subarray(0, 8), ...t.subarray(15 * 8, 16 * 8)]);
    } finally {
      x.free();
      table.free();
    }
  });
});
