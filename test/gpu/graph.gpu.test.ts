// Decode steps replayed from a captured graph give the bits of the same steps
// run op by op, at every position one graph serves: inside the first key
// chunk, across chunk boundaries and across the first merge group (1024 keys).
// And a capture that breaks its rules fails with one clear error and leaves
// the backend working.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine, type KVCache } from '../../src/model/engine.js';
import { SYNTHETIC_MODELS } from '../../src/model/models.js';
import { syntheticWeights } from '../../src/model/weights.js';
import { createBackend, type Backend } from '../../src/native.js';
import { STAGE_POINTS } from '../../src/trace/points.js';
import { StageTracer } from '../../src/trace/tracer.js';
import { sidecarPath, TraceWriter } from '../../src/trace/writer.js';
import { deviceBackend } from './backend.js';

const BACKEND = deviceBackend();
const bytes = (b: Backend, t: Parameters<Backend['download']>[0]) => Buffer.from(b.download(t).buffer);

/** synthetic:tiny on hip, and two engines over its weights: one that replays step graphs, one that runs op by op. */
function tinyEngines() {
  const spec = SYNTHETIC_MODELS['synthetic:tiny']!;
  const b = createBackend('hip');
  const weights = syntheticWeights(b, spec.config, spec.weightDtype, spec.seed);
  const graphed = new Engine(b, spec.config, weights);
  const plain = new Engine(b, spec.config, weights);
  plain.graphs = false;
  return { spec, b, weights, graphed, plain };
}

describe.skipIf(BACKEND !== 'hip')('decode step graphs', () => {
  it('synthetic:tiny: replayed steps equal op-by-op steps bit for bit at positions 5..70 and 1000..1040', () => {
    const { spec, b, weights, graphed, plain } = tinyEngines();
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

  it('synthetic:tiny: traced steps replayed from a graph write the records and rows of traced steps run op by op', () => {
    const { spec, b, weights, graphed, plain } = tinyEngines();
    const dir = mkdtempSync(join(tmpdir(), 'greta-graph-'));
    const prefix = 60;
    const steps = 12;
    const phases = Array.from({ length: steps }, (_, s) => `decode${s}`);
    const L = spec.config.num_hidden_layers;
    try {
      const files: string[] = [];
      const nodes: number[] = [];
      for (const e of [graphed, plain]) {
        // The same file name in two folders: the records name their rows' file.
        const sub = join(dir, e === graphed ? 'graphed' : 'plain');
        mkdirSync(sub);
        const path = join(sub, 'trace.jsonl');
        files.push(path);
        const writer = new TraceWriter(path);
        const tracer = new StageTracer(b, writer, 'graph-test', {
          layers: new Set([0, 1, L - 1]),
          points: new Set(STAGE_POINTS),
          phases: new Set(phases),
          debugInput: false,
          topk: 5,
          heads: null,
        });
        const c = e.newCache(prefix + steps);
        try {
          const prompt = Array.from({ length: prefix }, (_, i) => (i * 7919 + 13) % spec.config.vocab_size);
          e.forward(prompt, 0, c).logits.free();
          let token = 1;
          for (let s = 0; s < steps; s++) {
            const tap = tracer.phase('p', 'E1', phases[s]!);
            expect(tap?.graph).toBeDefined();
            const r = e.forward([token], prefix + s, c, tap);
            token = r.top1;
            r.logits.free();
            if (e === graphed) nodes.push(e.stepGraphNodes(c, tap) ?? 0);
          }
        } finally {
          tracer.close();
          writer.close();
          e.freeCache(c);
        }
      }
      // Op by op, captured, then replayed: the traced graph carries the step's ops, which write the traced
      // points into the trace buffer themselves, and the logits' copy.
      const records = 3 * 7 + 3; // 7 stage points in each of 3 layers, 3 after the last
      expect(nodes[0]).toBe(0);
      expect(nodes[1]).toBeGreaterThanOrEqual(L * 10 + 1);
      expect(new Set(nodes.slice(1)).size).toBe(1);
      const [g, p] = files.map((f) => readFileSync(f, 'utf8'));
      expect(g!.split('\n').length).toBe(steps * records + 1);
      const gl = g!.split('\n');
      const pl = p!.split('\n');
      const first = gl.findIndex((l, i) => l !== pl[i]);
      expect(first, `line ${first}:\n${gl[first]}\n${pl[first]}`).toBe(-1);
      expect(readFileSync(sidecarPath(files[0]!)).equals(readFileSync(sidecarPath(files[1]!)))).toBe(true);
    } finally {
      graphed.close();
      plain.close();
      rmSync(dir, { recursive: true, force: true });
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
