// A one-row call writes traced points straight into the tracer's buffer (Tap.slot) instead of copying them
// there: its records and rows equal those of the same steps traced by copies, and x_out of a layer and x_in of
// the next share one row.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine, type Tap } from '../src/model/engine.js';
import { SYNTHETIC_MODELS } from '../src/model/models.js';
import { syntheticWeights } from '../src/model/weights.js';
import { createBackend } from '../src/native.js';
import { HEAD_POINTS, POINTS } from '../src/trace/points.js';
import { StageTracer } from '../src/trace/tracer.js';
import { sidecarPath, TraceWriter } from '../src/trace/writer.js';

interface Line {
  layer: number | null;
  point: string;
  phase: string;
  row: { offset: number; bytes: number };
  [k: string]: unknown;
}

const SELECTIONS = [
  { name: 'every point but the per-head ones', points: POINTS.filter((p) => !HEAD_POINTS.includes(p)), heads: null },
  { name: 'every point, heads 0 and 2 of the per-head ones (copied from the probe)', points: [...POINTS], heads: [0, 2] },
];

describe.each(SELECTIONS)('traced points written in place: $name', ({ points: traced, heads }) => {
  it('synthetic:tiny decode steps: the records and row bytes of copies, with fewer rows', () => {
    const spec = SYNTHETIC_MODELS['synthetic:tiny']!;
    const b = createBackend('cpu');
    const weights = syntheticWeights(b, spec.config, spec.weightDtype, spec.seed);
    const dir = mkdtempSync(join(tmpdir(), 'greta-slots-'));
    const L = spec.config.num_hidden_layers;
    const steps = 4;
    const phases = ['prefill_last', ...Array.from({ length: steps }, (_, s) => `decode${s}`)];
    const trace = (slots: boolean) => {
      const engine = new Engine(b, spec.config, weights);
      const path = join(dir, `${slots ? 'slots' : 'copies'}.jsonl`);
      const writer = new TraceWriter(path);
      const tracer = new StageTracer(b, writer, 'slots', {
        layers: new Set([0, 1, 2, L - 1]),
        points: new Set(traced),
        phases: new Set(phases),
        debugInput: false,
        topk: 5,
        heads,
      });
      const prompt = Array.from({ length: 9 }, (_, i) => (i * 31 + 7) % spec.config.vocab_size);
      const cache = engine.newCache(prompt.length + steps);
      let slotted = 0;
      const tap = (phase: string): Tap => {
        const t = tracer.phase('p', 'E0', phase)!;
        expect(t.slot).toBeDefined();
        if (!slots) return { ...t, slot: undefined, graph: undefined };
        const slot = t.slot!;
        return { ...t, slot: (points, width) => {
          const s = slot(points, width);
          if (s) slotted++;
          return s;
        } };
      };
      try {
        let token = engine.forward(prompt, 0, cache, tap('prefill_last')).top1;
        for (let s = 0; s < steps; s++) token = engine.forward([token], prompt.length + s, cache, tap(`decode${s}`)).top1;
      } finally {
        tracer.close();
        writer.close();
        engine.freeCache(cache);
        engine.close();
      }
      const lines = readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Line);
      const rows = readFileSync(sidecarPath(path));
      return { lines, rows, slotted };
    };
    try {
      const copies = trace(false);
      const slots = trace(true);
      // 13 points in each of 4 layers (and 3 per-head points for each head traced), 3 final. Slots a decode step:
      // every point but the logits and the per-head ones, a layer's x_out and the next one's x_in in one (layers
      // 0-1, 1-2 and L-2, untraced, to L-1), final_norm and lm_head_in in one.
      const perHead = heads ? 3 * heads.length : 0;
      const points = 4 * (13 + perHead) + 3;
      expect(copies.slotted).toBe(0);
      expect(slots.slotted).toBe(steps * (4 * 13 + 3 - 1 - 2 - 1));
      expect(slots.lines).toHaveLength(copies.lines.length);
      expect(slots.lines.length).toBe((1 + steps) * points);
      for (let i = 0; i < copies.lines.length; i++) {
        const c = copies.lines[i]!;
        const s = slots.lines[i]!;
        const where = `${c.phase} ${c.layer} ${c.point}`;
        const { row: cr, ...crest } = c;
        const { row: sr, ...srest } = s;
        expect(srest, where).toEqual(crest);
        expect(slots.rows.subarray(sr.offset, sr.offset + sr.bytes).equals(copies.rows.subarray(cr.offset, cr.offset + cr.bytes)), where).toBe(true);
      }
      const decode = (t: { lines: Line[] }) => t.lines.filter((l) => l.phase !== 'prefill_last');
      const offsets = (t: { lines: Line[] }) => new Set(decode(t).map((l) => l.row.offset)).size;
      expect(offsets(copies)).toBe(decode(copies).length);
      // Layers 0 and 1 hand x_out to the next layer's x_in, and final_norm is lm_head_in: 3 rows fewer a step.
      expect(offsets(slots)).toBe(decode(slots).length - steps * 3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      for (const t of [weights.embed, weights.finalNorm, weights.lmHead, ...weights.layers.flatMap((l) => Object.values(l))]) t.free();
    }
  });
});
