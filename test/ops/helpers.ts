// Glue between the op tests and the backends: upload inputs in the backend's
// activation dtype while keeping the exact values the backend holds (for the
// FP64 reference), build weights in f32/f16/bf16 from their stored bits, and
// check thrown errors.
import { expect } from 'vitest';

import { createBackend, type Backend, type Tensor, type WeightDType } from '../../src/native.js';
import { bf16ToNumber, f16ToNumber, numberToBf16Bits, numberToF16Bits, relL2 } from './reference.js';

/** The backends these tests cover: CPU fp32 and the CPU fp64 oracle (GPU backends live in test/gpu). */
export type CpuKind = 'cpu' | 'cpu-fp64';
export const KINDS: readonly CpuKind[] = ['cpu', 'cpu-fp64'];
export const WEIGHT_DTYPES: readonly WeightDType[] = ['f32', 'f16', 'bf16'];

/** Unit roundoff of the activation dtype: 2^-24 for f32 (cpu), 2^-53 for f64 (cpu-fp64). */
export const UNIT_ROUNDOFF: Record<CpuKind, number> = { cpu: 2 ** -24, 'cpu-fp64': 2 ** -53 };

const backends = new Map<CpuKind, Backend>();

/** One backend per kind per test file. */
export function backend(kind: CpuKind): Backend {
  let b = backends.get(kind);
  if (!b) {
    b = createBackend(kind);
    backends.set(kind, b);
  }
  return b;
}

/** `values` rounded to the backend's activation dtype, as the typed array to upload. */
export function toAct(b: Backend, values: ArrayLike<number>): Float32Array | Float64Array {
  return b.actDtype === 'f32' ? Float32Array.from(values) : Float64Array.from(values);
}

export interface Uploaded {
  t: Tensor;
  /** The exact values the tensor holds, as doubles. */
  values: Float64Array;
}

/** Allocates an activation tensor of `shape` and uploads `values` (rounded to f32 on cpu). */
export function uploadAct(b: Backend, shape: number[], values: ArrayLike<number>): Uploaded {
  const t = b.alloc(b.actDtype, shape);
  const data = toAct(b, values);
  b.upload(t, data);
  return { t, values: Float64Array.from(data) };
}

/** Downloads an activation tensor as doubles. */
export function downloadAct(b: Backend, t: Tensor): Float64Array {
  const d = b.download(t);
  if (!(d instanceof Float32Array || d instanceof Float64Array)) throw new Error(`not an activation: ${t.dtype}`);
  return Float64Array.from(d);
}

/** Raw download of an activation tensor (for bit-exact comparisons). */
export function downloadRaw(b: Backend, t: Tensor): Float32Array | Float64Array {
  const d = b.download(t);
  if (!(d instanceof Float32Array || d instanceof Float64Array)) throw new Error(`not an activation: ${t.dtype}`);
  return d;
}

/** Decodes a downloaded weight tensor (f32, f64, f16 or bf16) to doubles. */
export function weightValues(b: Backend, t: Tensor): Float64Array {
  const d = b.download(t);
  if (d instanceof Float32Array || d instanceof Float64Array) return Float64Array.from(d);
  if (!(d instanceof Uint16Array)) throw new Error(`not a weight: ${t.dtype}`);
  const decode = t.dtype === 'f16' ? f16ToNumber : bf16ToNumber;
  return Float64Array.from(d, decode);
}

/**
 * Weight tensor of `shape` and `dtype` holding `values` rounded to nearest
 * even (f16/bf16 are uploaded as Uint16Array bits). Returns the stored values,
 * decoded from a download of the tensor.
 */
export function uploadWeight(b: Backend, dtype: WeightDType, shape: number[], values: ArrayLike<number>): Uploaded {
  const t = b.alloc(dtype, shape);
  if (dtype === 'f32') b.upload(t, Float32Array.from(values));
  else b.upload(t, Uint16Array.from(values, dtype === 'f16' ? numberToF16Bits : numberToBf16Bits));
  return { t, values: weightValues(b, t) };
}

/** Expects fn to throw a JS Error with `code` and a message matching `message`. */
export function expectError(fn: () => unknown, code: string, message: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an exception').toBeInstanceOf(Error);
  expect((err as { code?: unknown }).code).toBe(code);
  expect((err as Error).message).toMatch(message);
}

/** Bitwise equality of two float arrays (NaN payloads and the sign of zero included). */
export function bitsEqual(a: Float32Array | Float64Array, b: Float32Array | Float64Array): boolean {
  if (a.constructor !== b.constructor || a.length !== b.length) return false;
  const ua = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const ub = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

/**
 * Expects relL2(got, ref) < bound. With GRETA_OPS_ERRLOG=1 in the environment
 * it also prints the error, to re-check how much margin each bound has.
 */
export function expectRelL2(got: ArrayLike<number>, ref: ArrayLike<number>, bound: number, label = ''): number {
  const err = relL2(got, ref);
  if (process.env.GRETA_OPS_ERRLOG === '1') console.error(`relL2 ${err.toExponential(2)} bound ${bound.toExponential(0)} ${label}`);
  expect(err).toBeLessThan(bound);
  return err;
}
