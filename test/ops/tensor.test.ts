// Tensor plumbing the op tests rely on: alloc, upload/download, row views,
// free, and the errors they raise (EINVAL with a message, EFREED).
import { describe, expect, it } from 'vitest';

import { createBackend } from '../../src/native.js';
import { KINDS, backend, expectError } from './helpers.js';
import { Rng } from './random.js';

describe.each(KINDS)('tensors on %s', (kind) => {
  const b = backend(kind);

  it('reports its name and activation dtype', () => {
    expect(b.name).toBe(kind);
    expect(b.actDtype).toBe(kind === 'cpu' ? 'f32' : 'f64');
  });

  it('has no graphs: a capture is refused with one error and nothing recorded runs', () => {
    expect(b.graphs).toBe(false);
    let ran = false;
    expectError(() => b.captureGraph([Int32Array.of(0)], () => (ran = true)), 'ENOTSUP', new RegExp(`^graph capture: the ${kind} backend runs each op as it is called \\(graphs are hip's\\)$`));
    expect(ran).toBe(false);
  });

  it('round-trips every dtype through upload and download', () => {
    const rng = new Rng(1);
    const cases = [
      ['f32', Float32Array.from(rng.normals(35))],
      ['f64', rng.normals(35)],
      ['f16', Uint16Array.from({ length: 35 }, () => rng.int(65536))],
      ['bf16', Uint16Array.from({ length: 35 }, () => rng.int(65536))],
      ['i32', Int32Array.from({ length: 35 }, () => rng.int(2 ** 31) - 2 ** 30)],
    ] as const;
    for (const [dtype, data] of cases) {
      const t = b.alloc(dtype, [5, 7]);
      expect(t.dtype).toBe(dtype);
      expect(t.shape).toEqual([5, 7]);
      expect(t.backend).toBe(kind);
      b.upload(t, data);
      const got = b.download(t);
      expect(got.constructor).toBe(data.constructor);
      expect(new Uint8Array(got.buffer, got.byteOffset, got.byteLength)).toEqual(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
  });

  it('uploads from a typed-array view with a byte offset', () => {
    const big = Float64Array.from({ length: 20 }, (_, i) => i);
    const t = b.alloc('f64', [2, 3]);
    b.upload(t, big.subarray(5, 11));
    expect(Array.from(b.download(t))).toEqual([5, 6, 7, 8, 9, 10]);
  });

  it('uploads byte ranges at an offset, into a row view too', () => {
    const t = b.alloc('f32', [3, 4]);
    b.upload(t, new Float32Array(12));
    b.upload(t, Float32Array.of(1, 2, 3), 4 * 4);
    const v = t.rows(2, 1);
    b.upload(v, new Uint8Array(Float32Array.of(7, 8).buffer), 2 * 4);
    expect(Array.from(b.download(t))).toEqual([0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 7, 8]);
    // Filling to the last byte is allowed.
    b.upload(t, Float32Array.of(9), 11 * 4);
    expect(b.download(t)[11]).toBe(9);
  });

  it('hands out staging host memory that upload reads from', () => {
    const ab = b.hostBuffer(4096);
    expect(ab).toBeInstanceOf(ArrayBuffer);
    expect(ab.byteLength).toBe(4096);
    const f = new Float32Array(ab, 0, 6);
    f.set([1, 2, 3, 4, 5, 6]);
    const t = b.alloc('f32', [2, 3]);
    b.upload(t, f);
    expect(Array.from(b.download(t))).toEqual([1, 2, 3, 4, 5, 6]);
    expectError(() => b.hostBuffer(0), 'EINVAL', /hostBuffer: bytes 0 is not an integer in \[1, 2\^32\]/);
    expectError(() => b.hostBuffer(1.5), 'EINVAL', /hostBuffer: bytes 1\.5 is not an integer/);
  });

  it('row views share storage with their parent', () => {
    const t = b.alloc('f32', [4, 3]);
    b.upload(t, new Float32Array(12));
    const v = t.rows(1, 2);
    expect(v.shape).toEqual([2, 3]);
    b.upload(v, Float32Array.of(1, 2, 3, 4, 5, 6));
    expect(Array.from(b.download(t))).toEqual([0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0]);
    // Freeing the parent does not invalidate the view.
    t.free();
    expect(Array.from(b.download(v))).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('reshaped views share storage: the first rows * cols elements, of a row view too', () => {
    const t = b.alloc('f32', [6, 2]);
    b.upload(t, Float32Array.from({ length: 12 }, (_, i) => i));
    const v = t.reshape(2, 3);
    expect(v.shape).toEqual([2, 3]);
    expect(Array.from(b.download(v))).toEqual([0, 1, 2, 3, 4, 5]);
    const w = t.rows(3, 3).reshape(1, 5);
    expect(Array.from(b.download(w))).toEqual([6, 7, 8, 9, 10]);
    b.upload(w, Float32Array.of(-1, -2, -3, -4, -5));
    expect(Array.from(b.download(t))).toEqual([0, 1, 2, 3, 4, 5, -1, -2, -3, -4, -5, 11]);
    expect(t.reshape(12, 1).shape).toEqual([12, 1]);
  });

  it('a matmul weight takes its rows and gives them back in row-major order, views included', () => {
    const w = b.alloc('bf16', [6, 16], { matmul: true });
    const rows = Uint16Array.from({ length: 96 }, (_, i) => 0x3f80 + i);
    b.upload(w, rows);
    expect([...(b.download(w) as Uint16Array)]).toEqual([...rows]);
    expect([...(b.download(w.rows(2, 3)) as Uint16Array)]).toEqual([...rows.subarray(32, 80)]);
    const x = b.alloc(b.actDtype, [1, 16]);
    b.upload(x, b.actDtype === 'f64' ? new Float64Array(16).fill(1) : new Float32Array(16).fill(1));
    const out = b.alloc(b.actDtype, [1, 6]);
    b.matmul(out, x, w);
    const want = Array.from({ length: 6 }, (_, r) => rows.subarray(16 * r, 16 * r + 16).reduce((s, h) => s + new Float32Array(new Uint32Array([h << 16]).buffer)[0]!, 0));
    const got = [...b.download(out)];
    got.forEach((v, r) => expect(v).toBeCloseTo(want[r]!, 3));
  });

  describe('errors', () => {
    it('rejects a reshape past the tensor', () => {
      const t = b.alloc('f32', [4, 3]);
      expectError(() => t.reshape(5, 3), 'EINVAL', /reshape: \[5, 3\] does not fit in f32\[4,3\] \(allowed: at most its 12 elements\)/);
      expectError(() => t.rows(2, 2).reshape(1, 7), 'EINVAL', /reshape: \[1, 7\] does not fit in f32\[2,3\]/);
      expectError(() => t.reshape(0, 3), 'EINVAL', /reshape: \[0, 3\] does not fit/);
      expectError(() => (t.reshape as (r: unknown, c: unknown) => unknown)('2', 3), 'EINVAL', /reshape: arguments must be \(rows: number, cols: number\)/);
      t.free();
      expectError(() => t.reshape(1, 1), 'EFREED', /already freed/);
    });

    it('rejects an upload of the wrong byte length', () => {
      const t = b.alloc('f32', [2, 4]);
      expectError(() => b.upload(t, new Float32Array(7)), 'EINVAL', /upload: data has 28 bytes, tensor f32\[2,4\] has 32/);
      // Right element count, wrong element size.
      expectError(() => b.upload(t, new Float64Array(8)), 'EINVAL', /upload: data has 64 bytes, tensor f32\[2,4\] has 32/);
    });

    it('rejects a byte range that overruns the tensor or a bad offset', () => {
      const t = b.alloc('f32', [2, 4]);
      expectError(() => b.upload(t, new Float32Array(3), 24), 'EINVAL', /upload: 12 bytes at byteOffset 24 overrun tensor f32\[2,4\] \(32 bytes\)/);
      expectError(() => b.upload(t, new Float32Array(1), 33), 'EINVAL', /upload: byteOffset 33 is not an integer in \[0, 32\]/);
      expectError(() => b.upload(t, new Float32Array(1), -4), 'EINVAL', /byteOffset -4 is not an integer/);
      expectError(() => b.upload(t, new Float32Array(1), 0.5), 'EINVAL', /byteOffset 0\.5 is not an integer/);
    });

    it('throws EFREED when a freed tensor is used', () => {
      const t = b.alloc(b.actDtype, [2, 4]);
      const out = b.alloc(b.actDtype, [2, 4]);
      t.free();
      expectError(() => b.download(t), 'EFREED', /tensor was already freed/);
      expectError(() => b.upload(t, new Float32Array(8)), 'EFREED', /already freed/);
      expectError(() => b.add(out, t, out), 'EFREED', /already freed/);
      expectError(() => b.matmul(out, out, t), 'EFREED', /already freed/);
      expectError(() => t.rows(0, 1), 'EFREED', /already freed/);
      expectError(() => b.fillUniform(t, 1n, 1, 0), 'EFREED', /already freed/);
      // Freeing twice is harmless.
      expect(() => t.free()).not.toThrow();
    });

    it('rejects row views outside the tensor', () => {
      const t = b.alloc('f32', [4, 3]);
      expectError(() => t.rows(3, 2), 'EINVAL', /rows: rows \[3, 5\) are outside f32\[4,3\]/);
      expectError(() => t.rows(-1, 1), 'EINVAL', /rows: rows \[-1, 0\) are outside/);
      expectError(() => b.alloc('f32', [12]).rows(0, 1), 'EINVAL', /rows: tensor f32\[12\] is not 2-D/);
    });

    it('rejects bad alloc arguments', () => {
      expectError(() => b.alloc('f32', [2, 0]), 'EINVAL', /alloc: dimension 0.* must be an integer in \[1, 4e9\]/);
      expectError(() => b.alloc('f32', [2.5]), 'EINVAL', /alloc: dimension 2\.5.* must be an integer/);
      expectError(() => b.alloc('f32', []), 'EINVAL', /alloc: shape must have at least one dimension/);
      expectError(() => b.alloc('f8' as 'f32', [2]), 'EINVAL', /unknown dtype 'f8'/);
      expectError(() => b.alloc('bf16', [64], { matmul: true }), 'EINVAL', /alloc: a matmul weight of dtype bf16 and 1 dimensions \(allowed: 2-D f32, f16 or bf16\)/);
      expectError(() => b.alloc('i32', [4, 8], { matmul: true }), 'EINVAL', /alloc: a matmul weight of dtype i32/);
      expectError(() => b.alloc('f32', [4, 8], { matmul: 1 } as never), 'EINVAL', /alloc: options\.matmul must be a boolean/);
      expectError(() => b.alloc('f32', [4, 8], 7 as never), 'EINVAL', /alloc: options must be an object/);
    });


    it('rejects a non-tensor argument', () => {
      const t = b.alloc(b.actDtype, [1, 2]);
      expectError(() => b.add(t, t, {} as typeof t), 'EINVAL', /argument 2 must be a Tensor/);
    });
  });
});

it('rejects an unknown backend kind', () => {
  expectError(() => createBackend('tpu' as 'cpu'), 'EINVAL', /unknown backend 'tpu'/);
});
