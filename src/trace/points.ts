// Stage names, in forward order. Per-layer points come first, in the order the
// layer computes them; final points follow the last layer.
export const LAYER_POINTS = ['x_in', 'attn_out', 'wo_out', 'x_after_attn', 'ffn_norm', 'mlp_out', 'x_out'] as const;
export const FINAL_POINTS = ['final_norm', 'lm_head_in', 'logits'] as const;
export const POINTS = [...LAYER_POINTS, ...FINAL_POINTS] as const;

export type LayerPoint = (typeof LAYER_POINTS)[number];
export type FinalPoint = (typeof FINAL_POINTS)[number];
export type Point = (typeof POINTS)[number];

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
