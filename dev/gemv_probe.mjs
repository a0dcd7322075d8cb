// Decode projections (M = 1) timed as `npm run bench` times them (20 calls a sample, weights rotated over
// 512 MB, median of 7), against the device copy rate: `node dev/gemv_probe.mjs` after `npm run build`.
import { createBackend } from '../dist/native.js';

const b = createBackend('hip');
const probe = b.alloc('f32', [1, 1]);
const sync = () => void b.download(probe);
const time = (fn, reps = 7, inner = 20) => {
  fn();
  sync();
  const t = [];
  for (let r = 0; r < reps; r++) {
    const s = performance.now();
    for (let j = 0; j < inner; j++) fn();
    sync();
    t.push((performance.now() - s) / inner);
  }
  return t.sort((a, c) => a - c)[reps >> 1];
};
const n = 1 << 26;
const src = b.alloc('f32', [n, 1]);
const dst = b.alloc('f32', [n, 1]);
b.fillUniform(src, 1n, 1, 0);
const copyGBs = (2 * n * 4) / time(() => b.copy(dst, src)) / 1e6;
src.free();
dst.free();
const rows = [];
for (const [name, N, K] of [['qkv', 6144, 4096], ['wo', 4096, 4096], ['down', 4096, 14336], ['gate_up', 28672, 4096]]) {
  const bytes = N * K * 2;
  const copies = Math.max(1, Math.ceil((512 << 20) / bytes));
  const all = b.alloc('bf16', [copies * N, K]);
  b.fillUniform(all, 3n, 0.02, 0);
  const ws = Array.from({ length: copies }, (_, i) => all.rows(i * N, N));
  const x = b.alloc('f32', [1, K]);
  b.fillUniform(x, 4n, 1, 0);
  const out = b.alloc('f32', [1, N]);
  let i = 0;
  const ms = time(() => b.matmul(out, x, ws[i++ % copies]));
  rows.push(`${name} ${(ms * 1000).toFixed(1)} us ${(bytes / ms / 1e6 / copyGBs).toFixed(3)}`);
  for (const t of [...ws, all, x, out]) t.free();
}
console.log(`copy ${copyGBs.toFixed(0)} GB/s: ${rows.join(' | ')}`);
