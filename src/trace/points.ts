// Stage names, in forward order. Per-layer points come first, in the order the
// layer computes them; final points follow the last layer. Between the
// stages of the StageTrace reports sit the sub-stages: inside attention q, k
// (after RoPE), v, scores, probs and pv (per head, from the probe), inside
// the MLP gate, up and act (silu(gate) * up, the down projection's input).
export const LAYER_POINTS = [
  'x_in',
  'q',
  'k',
  'v',
  'scores',
  'probs',
  'pv',
  'attn_out',
  'wo_out',
  'x_after_attn',
  'ffn_norm',
  'gate',
  'up',
  'act',
  'mlp_out',
  'x_out',
] as const;
export const FINAL_POINTS = ['final_norm', 'lm_head_in', 'logits'] as const;
export const POINTS = [...LAYER_POINTS, ...FINAL_POINTS] as const;

export type LayerPoint = (typeof LAYER_POINTS)[number];
export type FinalPoint = (typeof FINAL_POINTS)[number];
export type Point = (typeof POINTS)[number];

/** The points of the StageTrace reports, traced by default. */
export const STAGE_POINTS: readonly Point[] = ['x_in', 'attn_out', 'wo_out', 'x_after_attn', 'ffn_norm', 'mlp_out', 'x_out', 'final_norm', 'lm_head_in', 'logits'];
/** The attention pipe of the reports' L0 trace (--attn-pipe). */
export const ATTN_PIPE_POINTS: readonly Point[] = ['q', 'k', 'v', 'scores', 'probs', 'pv'];
/** Recorded once per attention head (--heads): rows of the attention probe. */
export const HEAD_POINTS: readonly Point[] = ['scores', 'probs', 'pv'];

/** Points in forward order. */
export function inForwardOrder(points: Iterable<Point>): Point[] {
  const set = new Set(points);
  return POINTS.filter((p) => set.has(p));
}

/** Names used by earlier StageTrace reports for the same points. */
export const POINT_ALIASES: Record<string, Point> = {
  x_after_mlp: 'x_out',
  final_rms: 'final_norm',
};

export function isFinalPoint(p: Point): p is FinalPoint {
  return (FINAL_POINTS as readonly string[]).includes(p);
}

/** Position of (layer, point) in forward order; final points sort after every layer. */
export function forwardOrder(layer: number | null, point: Point, nLayers: number): number {
  const l = layer ?? nLayers;
  return l * POINTS.length + POINTS.indexOf(point);
}

/** Phases: prefill_last (last prompt row of prefill) and decode0..decodeK-1. */
export const PHASE_RE = /^(prefill_last|decode(0|[1-9][0-9]{0,5}))$/;
export const DEFAULT_PHASES = ['prefill_last', 'decode0'];
