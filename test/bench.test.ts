// npm run bench end to end on the CPU, as a user without a GPU runs it: every
// op row, synthetic:tiny's prefill and decode steps with E1 re-checked, and
// weight loading (a small file: --load-mib), printed and written as JSON.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../src/native.js';
import type { BenchReport } from '../src/bench/main.js';
import { tempDir } from './helpers.js';

describe('npm run bench on cpu', () => {
  // Asynchronous, so the test worker keeps answering the runner while the bench runs.
  it('prints and writes every row with the device, the commit and E1 bit-identical on the model timed', async () => {
    const json = join(tempDir(), 'bench.json');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [join(packageRoot(), 'dist', 'bench', 'main.js'), '--backend', 'cpu', '--reps', '1', '--load-mib', '8', '--json', json],
      { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env, GRETA_COMMIT: 'c0ffee1' } },
    );
    const r = JSON.parse(readFileSync(json, 'utf8')) as BenchReport;
    expect(r).toMatchObject({ backend: 'cpu', commit: 'c0ffee1', reps: 1 });
    expect(r.device).toMatch(/\S/);
    expect(r.copy.gbs).toBeGreaterThan(0);
    // Every projection (fused QKV and gate+up, WO in bf16 and f32, down) at M = 1 and 16, the norms, attention.
    const ops = r.ops.map((o) => o.op);
    for (const name of ['qkv', 'wo', 'gate_up', 'down', 'wo f32'])
      for (const M of [1, 16]) expect(ops).toContain(`matmul ${name} M=${M}`);
    for (const name of ['rmsnorm', 'addRmsnorm', 'attention decode']) expect(ops).toContain(name);
    for (const o of r.ops) {
      expect(Number.isFinite(o.ms) && o.ms > 0, `${o.op} ${o.shape}: ${o.ms} ms`).toBe(true);
      expect(o.of_copy).toBeCloseTo(o.gbs / r.copy.gbs, 6);
    }
    expect(r.models.map((m) => m.model)).toEqual(['synthetic:tiny']);
    const m = r.models[0]!;
    expect(m.e1_bit_identical).toBe(true);
    expect(m.e1_pairs).toBeGreaterThan(0);
    for (const ms of [m.prefill_ms, m.decode_ms, m.decode_ops_ms, m.decode_traced_seed_layers.ms, m.decode_traced_every_point.ms])
      expect(ms).toBeGreaterThan(0);
    expect(m.decode_of_floor).toBeCloseTo(m.floor_ms / m.decode_ms, 6);
    expect(r.load).toMatchObject({ tensors: 16, rows: 32, cols: 8192, bytes: 8 << 20 });
    expect(r.load!.streamed_gbs).toBeGreaterThan(0);
    // The printed report says the same.
    expect(stdout).toContain('## weight loading: 16 bf16 tensors of [32, 8192] (8 MiB) from the page cache');
    expect(stdout).toMatch(/^\| matmul wo M=1 \| \[1,4096\] x \[4096,4096\]\^T \| bf16 \| /m);
    expect(stdout).toMatch(/E1 on the model timed: bit-identical at all \d+ \(layer, point\) pairs/);
  }, 600_000);
});
