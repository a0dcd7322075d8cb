// Differences between two full rows, in float64 (f32 rows are widened exactly
// first), as SGLang's comparator and Polygraphy compute theirs.

export interface RowMetrics {
  /** Mean absolute difference. */
  mae: number;
  max_abs: number;
  /** ||a - b|| / ||a||: relative to the first row (the reference); ||a - b|| when a is all zeros. */
  rel_l2: number;
  /** a.b / (||a|| ||b||) over the elements finite in both; 1 for two zero rows. */
  cosine: number;
}

export function compareRows(a: Float64Array, b: Float64Array): RowMetrics {
  let sum = 0;
  let max = 0;
  let diff2 = 0;
  let ref2 = 0;
  let dot = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    // Equal bits (NaN with NaN, inf with the same inf) differ by 0; any other non-finite pair by inf.
    const d = x === y || (Number.isNaN(x) && Number.isNaN(y)) ? 0 : Math.abs(x - y) || Infinity;
    sum += d;
    if (d > max) max = d;
    diff2 += d * d;
    if (Number.isFinite(x)) ref2 += x * x;
    if (Number.isFinite(x) && Number.isFinite(y)) {
      dot += x * y;
      aa += x * x;
      bb += y * y;
    }
  }
  const n = Math.max(1, a.length);
  const cosine = aa > 0 && bb > 0 ? dot / Math.sqrt(aa * bb) : aa === bb ? 1 : 0;
  return { mae: sum / n, max_abs: max, rel_l2: ref2 > 0 ? Math.sqrt(diff2 / ref2) : Math.sqrt(diff2), cosine };
}

/** Same values bit for bit (signed zeros told apart; any NaN equals any NaN). */
export function sameBits(a: Float64Array, b: Float64Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

/** Numbers as the reports print them: 0, or four significant digits. */
export const fmt = (v: number | undefined | null): string => {
  if (v === undefined || v === null) return '-';
  if (v === 0) return '0';
  if (!Number.isFinite(v)) return String(v);
  return v.toExponential(3);
};
