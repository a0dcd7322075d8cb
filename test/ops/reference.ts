// FP64 reference for every op of the contract (native/backend.h), in plain
// TypeScript: straightforward loops in float64, written from the contract's
// math and not from the C++. Inputs are the exact values the backend holds
// (f32 activations widened to double; f16/bf16 weights decoded from their
// stored bits), so a comparison measures only the backend's own arithmetic.
//
// Everything is row-major: a [rows, cols] matrix is a Float64Array of
// rows * cols values.

// ---------------------------------------------------------------------------
// Number formats
// ---------------------------------------------------------------------------

const f64Scratch = new DataView(new ArrayBuffer(8));

/** Unbiased binary exponent of a positive finite double (floor(log2 a)); exact, from the bits. */
function exponentOf(a: number): number {
  f64Scratch.setFloat64(0, a);
  const biased = (f64Scratch.getUint32(0) >>> 20) & 0x7ff;
  if (biased === 0) return -1023; // subnormal double: far below every format used here
  return biased - 1023;
}

/** Round half to even for a non-negative number. */
function roundHalfEven(y: number): number {
  const f = Math.floor(y);
  const d = y - f; // exact: y < 2^53
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Rounds x (any double) to the nearest value of a binary format with `p`
 * significant bits, minimum normal exponent `emin` (subnormals below it) and
 * largest finite value `maxFinite`, ties to even; overflow goes to infinity.
 */
function roundToFormat(x: number, p: number, emin: number, maxFinite: number): number {
  if (Number.isNaN(x) || x === 0 || !Number.isFinite(x)) return x;
  const sign = x < 0 ? -1 : 1;
  const a = Math.abs(x);
  const e = Math.max(exponentOf(a), emin);
  const quantum = 2 ** (e - (p - 1));
  const r = roundHalfEven(a / quantum) * quantum; // a / quantum is exact (power-of-two scaling)
  // Overflow: IEEE rounds to infinity once the value reaches maxFinite + half an ulp.
  if (r > maxFinite) return sign * Infinity;
  return sign * r;
}

const F16_MAX = 65504;
const BF16_MAX = (2 - 2 ** -7) * 2 ** 127;

/** The f16 value nearest to x (round to nearest even). */
export function roundToF16(x: number): number {
  return roundToFormat(x, 11, -14, F16_MAX);
}

/** The bf16 value nearest to x (round to nearest even). */
export function roundToBf16(x: number): number {
  return roundToFormat(x, 8, -126, BF16_MAX);
}

/** IEEE binary16 bits -> number (exact). */
export function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m === 0 ? sign * Infinity : NaN;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** bfloat16 bits -> number (exact): the top half of an f32. */
export function bf16ToNumber(h: number): number {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setUint32(0, (h & 0xffff) << 16);
  return dv.getFloat32(0);
}

/** x -> f16 bits, round to nearest even (NaN -> 0x7e00). */
export function numberToF16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(roundToF16(x));
  if (a === Infinity) return sign | 0x7c00;
  if (a < 2 ** -14) return sign | (a / 2 ** -24); // subnormal or zero
  const e = exponentOf(a);
  return sign | ((e + 15) << 10) | ((a / 2 ** e - 1) * 1024);
}

/** x -> bf16 bits, round to nearest even (NaN -> 0x7fc0). */
export function numberToBf16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7fc0;
  const r = roundToBf16(x); // exactly representable in f32, so the next line does not round
  const dv = new DataView(new ArrayBuffer(4));
  dv.setFloat32(0, r);
  return dv.getUint32(0) >>> 16;
}

// ---------------------------------------------------------------------------
// Error metric
// ---------------------------------------------------------------------------

/** Relative L2 error ||got - ref|| / ||ref|| (0 when both are all zeros). */
export function relL2(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (got.length !== ref.length) throw new Error(`relL2: length ${got.length} vs ${ref.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = got[i]! - ref[i]!;
    num += d * d;
    den += ref[i]! * ref[i]!;
  }
  if (den === 0) return num === 0 ? 0 : Infinity;
  return Math.sqrt(num / den);
}

// ---------------------------------------------------------------------------
// Ops
// ---------------------------------------------------------------------------

/** out[m, :] = table[ids[m], :] */
export function refEmbedding(table: Float64Array, d: number, ids: ArrayLike<number>): Float64Array {
  const out = new Float64Array(ids.length * d);
  for (let m = 0; m < ids.length; m++) {
    const id = ids[m]!;
    for (let i = 0; i < d; i++) out[m * d + i] = table[id * d + i]!;
  }
  return out;
}

/** out[m, :] = x[m, :] / sqrt(mean(x[m, :]^2) + eps) * w */
export function refRmsnorm(x: Float64Array, rows: number, d: number, w: Float64Array, eps: number): Float64Array {
  const out = new Float64Array(rows * d);
  for (let m = 0; m < rows; m++) {
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x[m * d + i]! * x[m * d + i]!;
    const denom = Math.sqrt(ss / d + eps);
    for (let i = 0; i < d; i++) out[m * d + i] = (x[m * d + i]! / denom) * w[i]!;
  }
  return out;
}

/** out[m, n] = sum_k x[m, k] * w[n, k]   (x: [rows, k], w: [n, k]) */
export function refMatmul(x: Float64Array, rows: number, k: number, w: Float64Array, n: number): Float64Array {
  const out = new Float64Array(rows * n);
  for (let m = 0; m < rows; m++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += x[m * k + i]! * w[j * k + i]!;
      out[m * n + j] = s;
    }
  }
  return out;
}

/**
 * Rotate-half RoPE (HF Llama): in every head of row m, the pair
 * (x[i], x[i + headDim/2]) rotates by the angle pos[m] * invFreq[i].
 * Returns a new array; x is not modified.
 */
export function refRope(
  x: Float64Array,
  rows: number,
  pos: ArrayLike<number>,
  invFreq: ArrayLike<number>,
  nHeads: number,
  headDim: number,
): Float64Array {
  const out = Float64Array.from(x);
  const half = headDim / 2;
  const width = nHeads * headDim;
  for (let m = 0; m < rows; m++) {
    for (let h = 0; h < nHeads; h++) {
      const base = m * width + h * headDim;
      for (let i = 0; i < half; i++) {
        const theta = pos[m]! * invFreq[i]!;
        const c = Math.cos(theta);
        const s = Math.sin(theta);
        const x1 = x[base + i]!;
        const x2 = x[base + i + half]!;
        out[base + i] = x1 * c - x2 * s;
        out[base + i + half] = x2 * c + x1 * s;
      }
    }
  }
  return out;
}

/** cache[pos[m], :] = src[m, :]; returns the new cache (input not modified). */
export function refKvWrite(cache: Float64Array, d: number, src: Float64Array, pos: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(cache);
  for (let m = 0; m < pos.length; m++) for (let i = 0; i < d; i++) out[pos[m]! * d + i] = src[m * d + i]!;
  return out;
}

/**
 * Causal GQA attention. Query row m, head h attends to cache rows 0..pos[m]
 * of kv head h / (nHeads / nKvHeads) with scores q.k / sqrt(headDim), softmax
 * over those keys, output the softmax-weighted sum of the v rows.
 * q, out: [rows, nHeads * headDim]; k, v: [capacity, nKvHeads * headDim].
 */
export function refAttention(
  q: Float64Array,
  rows: number,
  k: Float64Array,
  v: Float64Array,
  pos: ArrayLike<number>,
  nHeads: number,
  nKvHeads: number,
  headDim: number,
  scale = 1 / Math.sqrt(headDim),
): Float64Array {
  const qWidth = nHeads * headDim;
  const kvWidth = nKvHeads * headDim;
  const group = nHeads / nKvHeads;
  const out = new Float64Array(rows * qWidth);
  for (let m = 0; m < rows; m++) {
    const nKeys = pos[m]! + 1;
    for (let h = 0; h < nHeads; h++) {
      const qOff = m * qWidth + h * headDim;
      const kvHead = Math.floor(h / group);
      const scores = new Float64Array(nKeys);
      let max = -Infinity;
      for (let j = 0; j < nKeys; j++) {
        let s = 0;
        for (let d = 0; d < headDim; d++) s += q[qOff + d]! * k[j * kvWidth + kvHead * headDim + d]!;
        scores[j] = s * scale;
        max = Math.max(max, scores[j]!);
      }
      let sum = 0;
      for (let j = 0; j < nKeys; j++) {
        scores[j] = Math.exp(scores[j]! - max);
        sum += scores[j]!;
      }
      for (let d = 0; d < headDim; d++) {
        let acc = 0;
        for (let j = 0; j < nKeys; j++) acc += scores[j]! * v[j * kvWidth + kvHead * headDim + d]!;
        out[qOff + d] = acc / sum;
      }
    }
  }
  return out;
}

/** out = silu(gate) * up, silu(g) = g / (1 + e^-g) */
export function refSiluMul(gate: Float64Array, up: Float64Array): Float64Array {
  const out = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) out[i] = (gate[i]! / (1 + Math.exp(-gate[i]!))) * up[i]!;
  return out;
}

/** out = a + b */
export function refAdd(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! + b[i]!;
  return out;
}

/**
 * Top k of each row: values descending, ties to the lower index, NaN below
 * every number (-Infinity included). +0 and -0 are equal values.
 */
export function refTopk(x: Float64Array, rows: number, cols: number, k: number): { ids: number[]; values: number[] } {
  const ids: number[] = [];
  const values: number[] = [];
  for (let m = 0; m < rows; m++) {
    const row = Array.from(x.subarray(m * cols, (m + 1) * cols));
    const order = row.map((_, i) => i);
    order.sort((a, b) => {
      const va = row[a]!;
      const vb = row[b]!;
      const na = Number.isNaN(va);
      const nb = Number.isNaN(vb);
      if (na !== nb) return na ? 1 : -1;
      if (!na && va !== vb) return va > vb ? -1 : 1;
      return a - b;
    });
    for (let i = 0; i < k; i++) {
      ids.push(order[i]!);
      values.push(row[order[i]!]!);
    }
  }
  return { ids, values };
}

// ---------------------------------------------------------------------------
// Hashing and fill_uniform (SplitMix64, with BigInt arithmetic mod 2^64)
// ---------------------------------------------------------------------------

const MASK64 = (1n << 64n) - 1n;

/** SplitMix64 finaliser. */
export function mix64(z: bigint): bigint {
  z = (z + 0x9e3779b97f4a7c15n) & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/** u_i in [-1, 1): the top 24 bits of mix64(seed ^ mix64(i)), scaled. */
export function uniformPm1(seed: bigint, i: number): number {
  const r = mix64((seed & MASK64) ^ mix64(BigInt(i)));
  return Number(r >> 40n) / 8388608 - 1;
}

/** The unrounded fill_uniform values offset + scale * u_i, i in [0, n). */
export function refFillUniform(n: number, seed: bigint, scale: number, offset: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = offset + scale * uniformPm1(seed, i);
  return out;
}

/** Raw bits of each element of an f32 or f64 row, zero-extended to 64 bits. */
export function elementBits(row: Float32Array | Float64Array): bigint[] {
  const bits: bigint[] = [];
  if (row instanceof Float32Array) {
    const u = new Uint32Array(row.buffer, row.byteOffset, row.length);
    for (let i = 0; i < row.length; i++) bits.push(BigInt(u[i]!));
  } else {
    const u = new BigUint64Array(row.buffer, row.byteOffset, row.length);
    for (let i = 0; i < row.length; i++) bits.push(u[i]!);
  }
  return bits;
}

/** Row hash: sum over i of mix64(bits_i + mix64(i)) mod 2^64, as 16 hex digits. */
export function refRowHash(row: Float32Array | Float64Array): string {
  let h = 0n;
  const bits = elementBits(row);
  for (let i = 0; i < bits.length; i++) h = (h + mix64((bits[i]! + mix64(BigInt(i))) & MASK64)) & MASK64;
  return h.toString(16).padStart(16, '0');
}

export interface RefSummary {
  mean: number;
  abs_mean: number;
  rms: number;
  min: number;
  max: number;
  nan: number;
  inf: number;
  hash: string;
  sample: number[];
}

/** Stats over the finite values of a row (all 0 when none), NaN/inf counts, hash, sample. */
export function refSummarize(row: Float32Array | Float64Array, sample: number[]): RefSummary {
  let sum = 0;
  let absSum = 0;
  let sq = 0;
  let min = Infinity;
  let max = -Infinity;
  let finite = 0;
  let nan = 0;
  let inf = 0;
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (Number.isNaN(v)) nan++;
    else if (!Number.isFinite(v)) inf++;
    else {
      sum += v;
      absSum += Math.abs(v);
      sq += v * v;
      min = Math.min(min, v);
      max = Math.max(max, v);
      finite++;
    }
  }
  return {
    mean: finite ? sum / finite : 0,
    abs_mean: finite ? absSum / finite : 0,
    rms: finite ? Math.sqrt(sq / finite) : 0,
    min: finite ? min : 0,
    max: finite ? max : 0,
    nan,
    inf,
    hash: refRowHash(row),
    sample: sample.map((i) => row[i]!),
  };
}
