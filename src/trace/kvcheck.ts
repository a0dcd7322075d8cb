// The KV cache check: the K and V rows the decode path left in its cache,
// every layer and position, against the rows a prefill over the same tokens
// wrote. A stale row, a wrong stride or a wrong position (the B3.24-B3.26
// bug class) is named directly, by (layer, position, kv head), instead of
// through its effect on attn_out.
import type { LlamaConfig } from '../model/config.js';
import type { KVCache } from '../model/engine.js';
import { withRows, type Backend } from '../native.js';
import type { KvCheck } from './schema.js';

type Rows = Float32Array | Float64Array;

/** Compares rows 0..positions-1 of every layer's K and V; exact (bit) comparison. */
export function checkKvCache(b: Backend, cfg: LlamaConfig, test: KVCache, ref: KVCache, positions: number): KvCheck {
  const kvHeads = cfg.num_key_value_heads;
  const hd = cfg.head_dim;
  const width = kvHeads * hd;
  let first: KvCheck['first'] = null;
  let differing = 0;
  const layers = new Set<number>();
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const [tk, tv, rk, rv] = [test.k[l]!, test.v[l]!, ref.k[l]!, ref.v[l]!].map((t) => withRows(t, 0, positions, (v) => b.download(v)) as Rows);
    for (let p = 0; p < positions; p++) {
      for (let h = 0; h < kvHeads; h++) {
        for (const [tensor, t, r] of [['k', tk!, rk!], ['v', tv!, rv!]] as const) {
          const off = p * width + h * hd;
          let sum = 0;
          let max = 0;
          let same = true;
          for (let i = off; i < off + hd; i++) {
            if (Object.is(t[i], r[i])) continue;
            same = false;
            const d = Math.abs(t[i]! - r[i]!) || Infinity; // NaN against a number
            sum += d;
            max = Math.max(max, d);
          }
          if (same) continue;
          differing++;
          layers.add(l);
          first ??= { layer: l, position: p, kv_head: h, tensor, mae: sum / hd, max_abs: max };
        }
      }
    }
  }
  return { positions, layers: cfg.num_hidden_layers, kv_heads: kvHeads, equal: differing === 0, first, differing, layers_differing: [...layers] };
}

/** 3, 4, 5, 9 -> "3-5, 9" */
function ranges(xs: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 1) j++;
    out.push(j === i ? String(xs[i]) : `${xs[i]}-${xs[j]}`);
    i = j + 1;
  }
  return out.join(', ');
}

export function formatKvCheck(prompt: string, exp: string, c: KvCheck): string {
  const what = `K/V of ${c.layers} layers x ${c.positions} positions x ${c.kv_heads} kv heads`;
  if (c.equal) return `${prompt} ${exp} kv-check: ${what} equal the prefill's, bit for bit`;
  const f = c.first!;
  return (
    `${prompt} ${exp} kv-check: first differing row: layer ${f.layer} position ${f.position} kv head ${f.kv_head} (${f.tensor}), ` +
    `mae ${f.mae.toExponential(3)}, max_abs ${f.max_abs.toExponential(3)}; ${c.differing} (layer, position, head, k/v) rows differ, ` +
    `in layers ${ranges(c.layers_differing)}`
  );
}
