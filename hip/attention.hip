// Attention over the KV cache, one layout of work for every path: a block
// takes the (up to QUAD) query heads of one KV head that share its K and V
// rows, so each K/V row is read once per GQA group, with coalesced loads.
//
// Per chunk of CHUNK keys (the reduction-order rule in attention.h):
//   K tile -> shared memory (float4 loads along d, rows padded so threads on
//     consecutive keys hit distinct banks);
//   scores: one thread per (key, head), q.k sequential over d;
//   chunk max (exact in any order) and exp(s - m_c) per (key, head);
//   p.V and the exp-sum: one thread per output dim, sequential over keys,
//     V read straight from global memory (consecutive threads, consecutive d).
// Then chunk partials merge in chunk order into the partial of their group
// of CHUNKS_PER_GROUP chunks, and group partials in group order. The rows
// kernel runs that chain in registers, one block per (row, KV head); decode,
// with too few rows to fill the device, writes chunk partials from one block
// per (KV head, chunk) and merges them in one short launch per merge level.
// A prefill of TILE_POSITIONS rows or more at head_dim 128 takes the tile
// kernel instead (below): the same chain per row, with K and V tiles shared
// by 16 positions. No step's order depends on the wave size. Shared memory is about 40 KB a block (the K tile, 33 KB): three
// blocks per SM on an H100; on CDNA's 64 KB of LDS per CU only one, which a
// smaller K_SLICE would raise without changing any bits.
#include "attention.h"

#include <cmath>

#include "attention_chain.h"

namespace {
using namespace greta_hip;

constexpr int KEY_CHUNK = GRETA_KEY_CHUNK;  // keys per chunk: the fixed split size
// The other splits the planted key-split fault may ask for (key_chunk 32, 16).
constexpr int HALF_KEY_CHUNK = KEY_CHUNK / 2;
constexpr int QUARTER_KEY_CHUNK = KEY_CHUNK / 4;
// Chunks per group: group g is chunks [g*CHUNKS_PER_GROUP, (g+1)*CHUNKS_PER_GROUP).
// Two merge levels keep the decode merge chains short at long contexts.
// Tried and not kept: the merges folded into the chunks' launch (the last
// block of a group to finish merges it, counted with atomics): the 8B decode
// step 6.29 -> 6.47-6.63 ms and 32768 keys 1.92 -> 1.16 TB/s, one block
// then merging what a launch spreads over many. Nor, up to 8 chunks, one
// launch of thread-block clusters (sm_90), a cluster per (KV head, quad)
// whose block 0 merged the others' records from their shared memory: the
// step 6.01 -> 6.27-6.38 ms (attention's share 0.31 -> 0.62 ms).
constexpr int CHUNKS_PER_GROUP = GRETA_CHUNKS_PER_GROUP;
constexpr int MAX_HEAD_DIM = 256;
// Threads per block: 2 waves on CDNA (wave 64), 4 warps on NVIDIA (32). The
// order of every reduction is fixed per thread or exact, whatever the wave.
constexpr int BLOCK = 128;
constexpr int QUAD = 4;                       // query heads per block, all of one KV head
constexpr int MAX_DIMS = MAX_HEAD_DIM / BLOCK;  // output dims per thread, at most: d = t + i * BLOCK
constexpr int K_SLICE = 128;                  // dims of the K tile staged at a time
constexpr int K_PAD = 4;                      // floats of padding per tile row (float4 reads, no bank conflicts)
constexpr int K_ROW = K_SLICE + K_PAD;
// V values a thread has in flight at once: the first ones go out with the K
// tile. Half a chunk balances bytes in flight against registers (H100,
// dev/attention.hip, decode at 32768 keys: 1.67 TB/s, against 1.32 for a whole
// chunk, which leaves room for only 2 blocks per SM, and 1.66 for a quarter).
constexpr int V_LOADS = KEY_CHUNK / 2;
// Resident blocks per multiprocessor asked of the compiler (GRETA_LAUNCH_BOUNDS):
// on NVIDIA it caps registers at 168 (64K over 3 blocks of 128 threads).
[[maybe_unused]] constexpr int MIN_BLOCKS = 3;  // unused where the vendor has no such bound
static_assert(QUAD == 4, "p.V reads one float4 of exp(s - m_c) per key");
static_assert(BLOCK * MAX_DIMS >= MAX_HEAD_DIM && (KEY_CHUNK * K_SLICE / 4) % BLOCK == 0, "tile and dims cover the block");

struct Geometry {
  int n_heads, n_kv_heads, head_dim, group, quads;
  int64_t q_stride, kv_stride;
};

__device__ __forceinline__ Geometry geometry(int n_heads, int n_kv_heads, int head_dim) {
  const int group = n_heads / n_kv_heads;
  return {n_heads, n_kv_heads, head_dim, group, (group + QUAD - 1) / QUAD,
          static_cast<int64_t>(n_heads) * head_dim, static_cast<int64_t>(n_kv_heads) * head_dim};
}

// The query heads of block unit `unit` (KV head unit / quads, quad unit % quads).
struct Heads {
  int kvh, h0, n;  // KV head, first query head, active heads (<= QUAD)
};

__device__ __forceinline__ Heads heads_of(int64_t unit, const Geometry& g) {
  const int kvh = static_cast<int>(unit / g.quads);
  const int qd = static_cast<int>(unit % g.quads);
  const int first = qd * QUAD;
  return {kvh, kvh * g.group + first, g.group - first < QUAD ? g.group - first : QUAD};
}

// Running softmax state of one head, one thread's share of the dims.
// D: dims per thread, 1 for head_dim <= BLOCK, else 2 (the dims a thread
// holds change nothing in how each is computed).
template <int D>
struct Run {
  float m, l;
  float acc[D];
};

template <int D>
__device__ __forceinline__ void init(Run<D>& s) {
  s.m = -INFINITY;
  s.l = 0.f;
#pragma unroll
  for (int i = 0; i < D; i++) s.acc[i] = 0.f;
}

// Merges a partial into a running state: the probe reads the two rescale
// factors back (a for what came before, b for the partial).
template <int D>
__device__ __forceinline__ void merge(Run<D>& s, float m_c, float l_c, const float* acc_c, float* a_out = nullptr,
                                      float* b_out = nullptr) {
  const float m = fmaxf(s.m, m_c);
  const float a = expf(__fadd_rn(s.m, -m));  // 0 while s is empty
  const float b = expf(__fadd_rn(m_c, -m));
  if (a_out) {
    *a_out = a;
    *b_out = b;
  }
  s.l = __fadd_rn(__fmul_rn(s.l, a), __fmul_rn(l_c, b));
#pragma unroll
  for (int i = 0; i < D; i++) s.acc[i] = __fadd_rn(__fmul_rn(s.acc[i], a), __fmul_rn(acc_c[i], b));
  s.m = m;
}

template <int D>
__device__ __forceinline__ void finish(const Run<D>& s, float* out, int head_dim) {
  const float inv = __fdiv_rn(1.f, s.l);
#pragma unroll
  for (int i = 0; i < D; i++) {
    const int d = static_cast<int>(threadIdx.x) + i * BLOCK;
    if (d < head_dim) out[d] = __fmul_rn(s.acc[i], inv);
  }
}

// The model's score scale, computed where it is used (as a kernel argument it
// changed how ptxas scheduled the decode kernel's address arithmetic).
__device__ __forceinline__ float default_scale(int head_dim) {
  return __fdiv_rn(1.f, sqrtf(static_cast<float>(head_dim)));
}

template <int CHUNK>
struct alignas(16) Smem {
  float q[QUAD][MAX_HEAD_DIM];
  float k[CHUNK][K_ROW];
  float s[QUAD][CHUNK];  // scores
  float e[CHUNK][QUAD];  // exp(s - m_c), key-major: p.V reads one float4 per key
  float m[QUAD];
};

// The block's query rows (q: the row's heads) into q_s, every load issued
// before the first store, by HG groups of BLOCK threads.
template <int HG>
__device__ __forceinline__ void load_q(float (*q_s)[MAX_HEAD_DIM], const float* q, const Heads& hs, const Geometry& g) {
  constexpr int NT = HG * BLOCK, LOADS = QUAD * MAX_HEAD_DIM / NT;
  const int n = QUAD * g.head_dim;
  float r[LOADS];
#pragma unroll
  for (int k = 0; k < LOADS; k++) {
    const int i = static_cast<int>(threadIdx.x) + k * NT;
    const int p = i / g.head_dim, d = i % g.head_dim;
    r[k] = i < n && p < hs.n ? greta_load(q + static_cast<int64_t>(hs.h0 + p) * g.head_dim + d) : 0.f;
  }
#pragma unroll
  for (int k = 0; k < LOADS; k++) {
    const int i = static_cast<int>(threadIdx.x) + k * NT;
    if (i < n) q_s[i / g.head_dim][i % g.head_dim] = r[k];
  }
}

// V of keys j0 .. j0+VB-1 (those < len) at this thread's dims.
template <int VB, int D>
__device__ __forceinline__ void load_v(float (&v)[VB][D], const float* vbase, int j0, int len, int64_t kv_stride,
                                       int head_dim) {
  const int t = static_cast<int>(threadIdx.x) % BLOCK;
  const float* row = vbase + j0 * kv_stride;  // stepped, not recomputed: one address register per load stream
#pragma unroll
  for (int jj = 0; jj < VB; jj++, row += kv_stride)
#pragma unroll
    for (int i = 0; i < D; i++) v[jj][i] = j0 + jj < len && t + i * BLOCK < head_dim ? greta_load(row + i * BLOCK) : 0.f;
}

// p.V and the exp-sum over keys j0 .. j0+VB-1 (those < len), sequential in j,
// for the thread's heads hg, hg + HG, ... (hg = threadIdx.x / BLOCK).
template <int VB, int D, int HG>
__device__ __forceinline__ void pv_batch(float (&l)[QUAD / HG], float (&acc)[QUAD / HG][D], const float (&v)[VB][D],
                                         const float (*e_s)[QUAD], int j0, int len) {
  const int hg = static_cast<int>(threadIdx.x) / BLOCK;
#pragma unroll
  for (int jj = 0; jj < VB; jj++) {
    if (j0 + jj >= len) break;
    const float4 e4 = *reinterpret_cast<const float4*>(e_s[j0 + jj]);
    const float e_all[QUAD] = {e4.x, e4.y, e4.z, e4.w};
#pragma unroll
    for (int k = 0; k < QUAD / HG; k++) {
      // Head hg + k HG, picked with constant indices (a variable one would put e_all in local memory).
      float e = e_all[k * HG];
#pragma unroll
      for (int g = 1; g < HG; g++)
        if (hg == g) e = e_all[k * HG + g];
      l[k] = __fadd_rn(l[k], e);
#pragma unroll
      for (int i = 0; i < D; i++) acc[k][i] = __fmaf_rn(e, v[jj][i], acc[k][i]);
    }
  }
}

// The partial of one chunk (keys c0 .. c0+len-1) for the block's heads: each
// thread gets m_c, l_c (every thread the same bits) and acc_c of its dims.
// HG groups of BLOCK threads: group hg takes heads hg, hg + HG, ... in p.V
// (part[k] is head hg + k HG), the same dims in each group.
// q_late (a block of one chunk): the block's query rows, loaded into sm.q once
// the K tile's loads are out, so their latencies overlap; otherwise sm.q holds
// them already.
// The probe (PROBE) also stores each score and each exp(s - m_c) to
// scores_out/p_out [head][key - c0] (head stride `pstride`); the model's
// instantiations have no such stores.
template <int CHUNK, bool PROBE, int D, bool EARLY_V = false, int HG = 1>
__device__ void chunk_partial(Run<D> (&part)[QUAD / HG], Smem<CHUNK>& sm, const float* kc,
                              const float* vc, int64_t c0, int len, const Heads& hs, const Geometry& g,
                              float scale, const float* q_late = nullptr, float* scores_out = nullptr,
                              float* p_out = nullptr, int64_t pstride = 0) {
  static_assert(QUAD % HG == 0, "chunk_partial: head groups split the quad evenly");
  constexpr int NT = HG * BLOCK;
  constexpr int KEY_ROWS = NT / CHUNK > QUAD ? QUAD : NT / CHUNK;  // head rows of threads in the score phase
  constexpr int PAIRS = (QUAD + KEY_ROWS - 1) / KEY_ROWS;          // (key, head) pairs per thread
  constexpr int TILE_LOADS = CHUNK * K_SLICE / 4 / NT;              // float4 per thread per K tile
  const int t = static_cast<int>(threadIdx.x);
  const int64_t kv_off = static_cast<int64_t>(hs.kvh) * g.head_dim;
  const bool vec = g.head_dim % 4 == 0;
  // V's first batch goes out with the K tile; with EARLY_V (decode, whose
  // blocks hold one chunk and no running state) the second after the scores.
  // Head groups (HG > 1: a launch of one round) take the chunk's V at once.
  constexpr int VB = HG > 1 ? CHUNK / D : V_LOADS / D < CHUNK ? V_LOADS / D : CHUNK;
  const float* vbase = vc + c0 * g.kv_stride + kv_off + t % BLOCK;
  float v[VB][D];
  load_v(v, vbase, 0, len, g.kv_stride, g.head_dim);

  // Scores: thread (key j, heads r, r + KEY_ROWS, ...) over d in K_SLICE slices.
  const int j = t % CHUNK, r = t / CHUNK;
  float s[PAIRS];
#pragma unroll
  for (int i = 0; i < PAIRS; i++) s[i] = 0.f;
  for (int ds = 0; ds < g.head_dim; ds += K_SLICE) {
    const int w = g.head_dim - ds < K_SLICE ? g.head_dim - ds : K_SLICE;
    __syncthreads();  // the tile's previous contents are used
    if (vec) {
      // Every load of the tile in flight before the first store.
      float4 kt[TILE_LOADS];
      if (w == K_SLICE) {
        // Thread t loads dims 4*(t % W4).. of rows t / W4 + i * (NT / W4).
        constexpr int W4 = K_SLICE / 4;
        const int j_first = t / W4, d4 = t % W4;
        const float* row = kc + (c0 + j_first) * g.kv_stride + kv_off + ds + d4 * 4;
        const int64_t step = NT / W4 * g.kv_stride;
#pragma unroll
        for (int i = 0; i < TILE_LOADS; i++, row += step)
          if (j_first + i * (NT / W4) < len) kt[i] = greta_load(reinterpret_cast<const float4*>(row));
        if (q_late && ds == 0) load_q<HG>(sm.q, q_late, hs, g);
#pragma unroll
        for (int i = 0; i < TILE_LOADS; i++)
          if (j_first + i * (NT / W4) < len)
            *reinterpret_cast<float4*>(&sm.k[j_first + i * (NT / W4)][d4 * 4]) = kt[i];
      } else {
        const int w4 = w / 4;
#pragma unroll
        for (int i = 0; i < TILE_LOADS; i++) {
          const int idx = t + i * NT, jj = idx / w4, dd = idx % w4;
          if (jj < len)
            kt[i] = *reinterpret_cast<const float4*>(kc + (c0 + jj) * g.kv_stride + kv_off + ds + dd * 4);
        }
        if (q_late && ds == 0) load_q<HG>(sm.q, q_late, hs, g);
#pragma unroll
        for (int i = 0; i < TILE_LOADS; i++) {
          const int idx = t + i * NT, jj = idx / w4, dd = idx % w4;
          if (jj < len) *reinterpret_cast<float4*>(&sm.k[jj][dd * 4]) = kt[i];
        }
      }
    } else {
      if (q_late && ds == 0) load_q<HG>(sm.q, q_late, hs, g);
      for (int idx = t; idx < len * w; idx += NT) sm.k[idx / w][idx % w] = kc[(c0 + idx / w) * g.kv_stride + kv_off + ds + idx % w];
    }
    __syncthreads();
    if (j < len && r < QUAD) {
      // d outer, heads inner: each K value read from shared memory once.
      const float* kj = sm.k[j];
      if (vec) {
#pragma unroll 2
        for (int d = 0; d < w; d += 4) {
          const float4 k4 = *reinterpret_cast<const float4*>(kj + d);
#pragma unroll
          for (int i = 0; i < PAIRS; i++) {
            const int p = r + i * KEY_ROWS;
            if (p >= hs.n) continue;
            const float4 q4 = *reinterpret_cast<const float4*>(sm.q[p] + ds + d);
            s[i] = __fmaf_rn(q4.x, k4.x, s[i]);
            s[i] = __fmaf_rn(q4.y, k4.y, s[i]);
            s[i] = __fmaf_rn(q4.z, k4.z, s[i]);
            s[i] = __fmaf_rn(q4.w, k4.w, s[i]);
          }
        }
      } else {
        for (int d = 0; d < w; d++) {
#pragma unroll
          for (int i = 0; i < PAIRS; i++) {
            const int p = r + i * KEY_ROWS;
            if (p < hs.n) s[i] = __fmaf_rn(sm.q[p][ds + d], kj[d], s[i]);
          }
        }
      }
    }
  }
  float v2[EARLY_V ? VB : 1][D];
  if (EARLY_V && VB < len) load_v(v2, vbase, VB, len, g.kv_stride, g.head_dim);
  if (j < len && r < QUAD) {
#pragma unroll
    for (int i = 0; i < PAIRS; i++) {
      const int p = r + i * KEY_ROWS;
      if (p >= hs.n) continue;
      const float sc = __fmul_rn(s[i], scale);
      sm.s[p][j] = sc;
      if (PROBE) scores_out[p * pstride + j] = sc;
    }
  }
  __syncthreads();
  // Chunk max: exact in any order. Then exp(s - m_c).
  if (j < len && r < QUAD) {
#pragma unroll
    for (int i = 0; i < PAIRS; i++) {
      const int p = r + i * KEY_ROWS;
      if (p >= hs.n) {
        sm.e[j][p] = 0.f;  // a head past the group: defined, never output
        if (j == 0) sm.m[p] = 0.f;
        continue;
      }
      float m = -INFINITY;
      int jj = 0;
      for (; jj + 4 <= len; jj += 4) {
        const float4 x = *reinterpret_cast<const float4*>(&sm.s[p][jj]);
        m = fmaxf(m, fmaxf(fmaxf(x.x, x.y), fmaxf(x.z, x.w)));
      }
      for (; jj < len; jj++) m = fmaxf(m, sm.s[p][jj]);
      const float e = expf(__fadd_rn(sm.s[p][j], -m));
      sm.e[j][p] = e;
      if (PROBE) p_out[p * pstride + j] = e;
      if (j == 0) sm.m[p] = m;
    }
  }
  __syncthreads();
  // p.V and the exp-sum: one thread per (output dim, head of its group), sequential over keys.
  constexpr int HP = QUAD / HG;
  float l[HP], acc[HP][D];
#pragma unroll
  for (int k = 0; k < HP; k++) {
    l[k] = 0.f;
#pragma unroll
    for (int i = 0; i < D; i++) acc[k][i] = 0.f;
  }
  pv_batch<VB, D, HG>(l, acc, v, sm.e, 0, len);
  if (EARLY_V && VB < len) pv_batch<EARLY_V ? VB : 1, D, HG>(l, acc, v2, sm.e, VB, len);
  for (int j0 = EARLY_V ? 2 * VB : VB; j0 < len; j0 += VB) {
    load_v(v, vbase, j0, len, g.kv_stride, g.head_dim);
    pv_batch<VB, D, HG>(l, acc, v, sm.e, j0, len);
  }
  const int hg = t / BLOCK;
#pragma unroll
  for (int k = 0; k < HP; k++) {
    part[k].m = sm.m[hg + k * HG];
    part[k].l = l[k];
#pragma unroll
    for (int i = 0; i < D; i++) part[k].acc[i] = acc[k][i];
  }
}

// One block per (row, KV head, quad of its query heads): chunks made and
// merged in order, in registers. CHUNK is KEY_CHUNK and the scale the model's,
// except for the planted faults (another split, another scale: CUSTOM_SCALE).
// The probe (PROBE, row 0 at position probe_pos) also writes each score, each
// exp(s - m_c) and the merge factors: per head 2 * (chunks + groups) floats,
// a_c at [c], b_c at [nc + c], A_g at [2nc + g], B_g at [2nc + ng + g].
template <int CHUNK, bool CUSTOM_SCALE, bool PROBE, int D>
__global__ void GRETA_LAUNCH_BOUNDS(BLOCK, MIN_BLOCKS) attention_rows_kernel(
    float* out, const float* q, const float* kc, const float* vc,
    const int32_t* pos, int32_t probe_pos, int n_heads, int n_kv_heads, int head_dim, float custom_scale,
    float* scores, float* probs, float* factors) {
  greta_await_prior_kernels();
  __shared__ Smem<CHUNK> sm;
  const Geometry g = geometry(n_heads, n_kv_heads, head_dim);
  const int64_t units = static_cast<int64_t>(n_kv_heads) * g.quads;
  const int64_t m = PROBE ? 0 : static_cast<int64_t>(blockIdx.x) / units;
  const Heads hs = heads_of(static_cast<int64_t>(blockIdx.x) % units, g);
  const float scale = CUSTOM_SCALE ? custom_scale : default_scale(head_dim);
  load_q<1>(sm.q, q + m * g.q_stride, hs, g);
  const int64_t n_keys = static_cast<int64_t>(PROBE ? probe_pos : pos[m]) + 1;
  const int64_t nc = (n_keys + CHUNK - 1) / CHUNK, ng = (nc + CHUNKS_PER_GROUP - 1) / CHUNKS_PER_GROUP;
  Run<D> total[QUAD], grp[QUAD], part[QUAD];
#pragma unroll
  for (int p = 0; p < QUAD; p++) {
    init(total[p]);
    init(grp[p]);
  }
  for (int64_t c = 0; c < nc; c++) {
    const int64_t c0 = c * CHUNK;
    const int len = static_cast<int>(n_keys - c0 < CHUNK ? n_keys - c0 : CHUNK);
    chunk_partial<CHUNK, PROBE, D>(part, sm, kc, vc, c0, len, hs, g, scale, nullptr,
                                   PROBE ? scores + hs.h0 * n_keys + c0 : nullptr,
                                   PROBE ? probs + hs.h0 * n_keys + c0 : nullptr, n_keys);
    const bool group_end = (c + 1) % CHUNKS_PER_GROUP == 0 || c + 1 == nc;
#pragma unroll
    for (int p = 0; p < QUAD; p++) {
      float a, b;
      merge(grp[p], part[p].m, part[p].l, part[p].acc, &a, &b);
      if (PROBE && threadIdx.x == 0 && p < hs.n) {
        float* fa = factors + (hs.h0 + p) * 2 * (nc + ng);
        fa[c] = a;
        fa[nc + c] = b;
      }
      if (group_end) {
        merge(total[p], grp[p].m, grp[p].l, grp[p].acc, &a, &b);
        init(grp[p]);
        if (PROBE && threadIdx.x == 0 && p < hs.n) {
          float* fa = factors + (hs.h0 + p) * 2 * (nc + ng);
          fa[2 * nc + c / CHUNKS_PER_GROUP] = a;
          fa[2 * nc + ng + c / CHUNKS_PER_GROUP] = b;
        }
      }
    }
  }
#pragma unroll
  for (int p = 0; p < QUAD; p++)
    if (p < hs.n) finish(total[p], out + m * g.q_stride + static_cast<int64_t>(hs.h0 + p) * head_dim, head_dim);
  if (PROBE) {
    // Each key's weight: exp(s - m_c) times greta_probe_factor, times 1/l.
    __syncthreads();  // the block's stores of exp(s - m_c) and factors are visible
    for (int p = 0; p < hs.n; p++) {
      const float* fa = factors + (hs.h0 + p) * 2 * (nc + ng);
      float* pr = probs + (hs.h0 + p) * n_keys;
      const float inv = __fdiv_rn(1.f, total[p].l);
      for (int64_t jk = threadIdx.x; jk < n_keys; jk += BLOCK)
        pr[jk] = __fmul_rn(__fmul_rn(pr[jk], greta_probe_factor(fa, jk / CHUNK, nc, ng)), inv);
    }
  }
}

// Prefill, tile layout (head_dim 128, at least TILE_POSITIONS rows): one block
// per (TILE_POSITIONS consecutive rows, KV head, quad of its query heads), so
// its TILE_ROWS (row, head) pairs share every K and V tile, staged in shared
// memory once per block instead of once per row. Per (row, head) and chunk the
// arithmetic is chunk_partial's and the merges attention_rows_kernel's, step
// for step (the rule in attention.h); only which thread does what changes:
//   scores: thread (rg, cg) holds rows rg + TILE_RG i and keys cg + 16 k
//     (i, k < 4), each a dot sequential in d over float4s of Q and K;
//   chunk max, exp(s - m_c), the exp-sum and the merge factors: four threads
//     a row, 16 keys each, the sequential sum handed from one to the next;
//   p.V: thread (rg, cg) holds rows rg + TILE_RG i and dims 4 cg + 0..3 and
//     64 + 4 cg + 0..3, acc_c sequential over keys, merged into the group
//     state in registers; at a group's end that goes into the total, which
//     waits in `out` (unscaled) until the row's last chunk.
// Keys past a row's end are skipped, never weighted by zero (that would turn
// a -0 into +0). Shared memory: Q and K tiles with rows padded by a float4 so
// the lanes of a load hit distinct banks; V takes K's place after the scores.
// Groups of chunks are the outer loop: a row's group end (rare) is applied
// after the group's last chunk, outside the chunk loop's registers.
//
// H100 (dev/attention.hip, L2 flushed): 4096 rows 4.76 ms (17.2 ms for the
// rows kernel), 29 TFLOP/s of fp32 work; 291 rows 78 us (115). What limits it
// (ncu): shared-memory wavefronts (a 16-byte load costs 2 when all lanes read
// one address, 4 when they read 32) and register spills, L1 78% busy, FMA
// pipe 47%, issue slots 61%. Two blocks of 8 warps per SM (128 registers,
// 616 bytes spilled) once measured 5% faster than one block without spills;
// since then one block (241 registers, none spilled) is the faster: the 8B
// prefill of 4096 tokens 651 -> 643 ms, 205 tokens 31.0 -> 30.1 ms
// (dev/prefill_time.mjs, builds in turn). On the matrix units at fp32
// accuracy each q.k or p.V product takes six bf16 products (three terms a
// side, as hip/matmul.h's chain), and mma.sync does about 6.4 times the
// CUDA cores' FMAs on the H100 (about 820 against 128 an SM a cycle, from
// the prefill GEMM): no gain. wgmma (about 16 times) leaves about 2.7 before
// overheads: on sm_90a attention runs that chain (hip/attention_chain.hip),
// prefill on wgmma and decode and the probe on mma.sync, and this file's
// kernels everywhere else.
constexpr int TILE_HEAD_DIM = 128;
#if defined(GRETA_VENDOR_AMD)
constexpr int TILE_POSITIONS = 8;  // 61 KB of LDS: within CDNA's 64 KB per CU
#else
constexpr int TILE_POSITIONS = 16;  // 89 KB of shared memory: two blocks per SM on an H100
#endif
[[maybe_unused]] constexpr int TILE_MIN_BLOCKS = 1;  // resident blocks per SM asked of the compiler (NVIDIA): registers up to 255
constexpr int TILE_ROWS = QUAD * TILE_POSITIONS;  // (row, head) pairs of a block
constexpr int TILE_THREADS = 4 * TILE_ROWS;       // four a row in the softmax step
constexpr int TILE_RG = TILE_ROWS / 4;            // row groups: four rows a thread
constexpr int SLOTS = TILE_HEAD_DIM / 4;          // float4 of a Q, K or V row
// Row stride in float4 of the Q and K/V tiles: one slot of padding puts
// consecutive rows 4 banks apart, so a load by 8 consecutive keys (or 4
// consecutive rows) at one slot touches 32 distinct banks.
constexpr int ROW4 = SLOTS + 1;
constexpr int SE_ROW = KEY_CHUNK + 8;             // score rows 8 banks apart
constexpr int TILE_LOADS = KEY_CHUNK * SLOTS / TILE_THREADS;  // float4 of a K or V tile per thread
// Scores and p.V: 16 column groups of 4 keys and of 8 dims (two float4).
constexpr int COL_GROUPS = 16;
static_assert(KEY_CHUNK == 4 * COL_GROUPS && SLOTS == 2 * COL_GROUPS, "a column group: 4 keys, 8 dims");
// Thread t: row group (t / (2 TILE_GROUP)) * 4 + (t / 8) % 4, column group
// (t / TILE_GROUP) % 2 * 8 + t % 8. A layout unit, not a wave: any wave
// size runs it (on NVIDIA a group is a warp, which keeps loads conflict-free).
constexpr int TILE_GROUP = 32;  // threads of 4 row x 8 column groups
static_assert(TILE_THREADS % (2 * TILE_GROUP) == 0 && TILE_RG == 4 * (TILE_THREADS / (2 * TILE_GROUP)) &&
                  (TILE_ROWS * SLOTS) % TILE_THREADS == 0,
              "two groups side by side cover the 16 column groups");
// The exp-sum passes between the four lanes of a row: they must share a wave.
static_assert(GRETA_WAVE_SIZE % 4 == 0 && TILE_THREADS % GRETA_WAVE_SIZE == 0, "a row's four threads in one wave");

struct TileSmem {
  float4 q[TILE_ROWS * ROW4];    // slot s of row r at r * ROW4 + s
  float4 kv[KEY_CHUNK * ROW4];   // K, then V, laid out like q
  float se[TILE_ROWS * SE_ROW];  // scores, then exp(s - m_c): [row][key]
  float2 coef[TILE_ROWS];        // a, b: this chunk's partial into the group
  float4 total[TILE_ROWS];       // A, B (group into total), 1 / l at the row's last chunk
  int flags[TILE_ROWS];          // this chunk: TILE_ACTIVE
  int group_flags[TILE_ROWS];    // this group: TILE_GROUP_END | TILE_LAST
  int len[TILE_ROWS];            // the row's keys in this chunk
  int keys[TILE_ROWS];           // pos + 1, 0 for a row past M or the group
};
constexpr int TILE_ACTIVE = 1, TILE_GROUP_END = 2, TILE_LAST = 4;
#if defined(GRETA_VENDOR_AMD)
static_assert(sizeof(TileSmem) <= 65536, "the tile fits a CDNA CU's 64 KB of LDS");
#endif

__device__ __forceinline__ float f4(const float4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

__global__ void GRETA_LAUNCH_BOUNDS(TILE_THREADS, TILE_MIN_BLOCKS)
    attention_tile_kernel(float* out, const float* q, const float* kc,
                          const float* vc, const int32_t* pos, int64_t M, int n_heads,
                          int n_kv_heads) {
  greta_await_prior_kernels();
  extern __shared__ float4 tile_smem[];
  TileSmem& sm = *reinterpret_cast<TileSmem*>(tile_smem);
  constexpr int HD = TILE_HEAD_DIM;
  const Geometry g = geometry(n_heads, n_kv_heads, HD);
  const int64_t units = static_cast<int64_t>(n_kv_heads) * g.quads;
  const int64_t tiles = (M + TILE_POSITIONS - 1) / TILE_POSITIONS;
  // Later rows attend to more keys: their blocks start first.
  const int64_t m0 = (tiles - 1 - static_cast<int64_t>(blockIdx.x) / units) * TILE_POSITIONS;
  const Heads hs = heads_of(static_cast<int64_t>(blockIdx.x) % units, g);
  const int t = static_cast<int>(threadIdx.x);
  const int64_t kv_off = static_cast<int64_t>(hs.kvh) * HD;

  // Q tile: row r is position m0 + r / QUAD, query head h0 + r % QUAD.
#pragma unroll
  for (int i = 0; i < TILE_ROWS * SLOTS / TILE_THREADS; i++) {
    const int idx = t + i * TILE_THREADS, r = idx / SLOTS, s = idx % SLOTS;
    const int64_t m = m0 + r / QUAD;
    const int p = r % QUAD;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (m < M && p < hs.n) v = *reinterpret_cast<const float4*>(q + m * g.q_stride + static_cast<int64_t>(hs.h0 + p) * HD + s * 4);
    sm.q[r * ROW4 + s] = v;
  }
  // The softmax step's row, and the running state its four threads keep.
  const int rs = t / 4, qq = t % 4, lane = t % GRETA_WAVE_SIZE;
  const int64_t ms = m0 + rs / QUAD;
  // Key counts in 32 bits: positions are int32 (and below 2^31 - 1).
  const int n_keys = ms < M && rs % QUAD < hs.n ? pos[ms] + 1 : 0;
  const int nc_r = (n_keys + KEY_CHUNK - 1) / KEY_CHUNK;
  if (qq == 0) sm.keys[rs] = n_keys;
  float gm = -INFINITY, gl = 0.f, tm = -INFINITY, tl = 0.f;  // group and total: m, l
  __syncthreads();
  int kmax = 0, kmin = INT32_MAX;  // over the block's real rows
  for (int r = 0; r < TILE_ROWS; r++) {
    const int n = sm.keys[r];
    if (n > 0) {
      kmax = n > kmax ? n : kmax;
      kmin = n < kmin ? n : kmin;
    }
  }
  // Scores and p.V: thread (rg, cg); a group of 32 threads is 4 row x 8 column groups.
  const int rg = (t / (2 * TILE_GROUP)) * 4 + (t / 8) % 4, cg = (t / TILE_GROUP) % 2 * 8 + t % 8;
  const float scale = default_scale(HD);
  float* const o_base = out + (m0 + rg / QUAD) * g.q_stride + static_cast<int64_t>(hs.h0 + rg % QUAD) * HD + 4 * cg;
  static_assert(TILE_RG % QUAD == 0, "rows rg + TILE_RG i are one head, TILE_RG / QUAD positions apart");
  float gacc[4][8];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int d = 0; d < 8; d++) gacc[i][d] = 0.f;

  // K and V tile loads: thread t takes slot ld_s of keys ld_j + LD_ROWS i.
  constexpr int LD_ROWS = TILE_THREADS / SLOTS;
  const int ld_j = t / SLOTS, ld_s = t % SLOTS;
  const int64_t ld_off = ld_j * g.kv_stride + ld_s * 4, ld_step = LD_ROWS * g.kv_stride;
  const int nc_max = (kmax + KEY_CHUNK - 1) / KEY_CHUNK;
  // Groups outside, chunks inside: the rows' group ends, rare, are applied
  // after the group's last chunk (a row whose group ended earlier has had no
  // update since), away from the chunk loop's registers.
  for (int cg0 = 0; cg0 < nc_max; cg0 += CHUNKS_PER_GROUP) {
  const int cg_end = cg0 + CHUNKS_PER_GROUP < nc_max ? cg0 + CHUNKS_PER_GROUP : nc_max;
  for (int c = cg0; c < cg_end; c++) {
    const int c0 = c * KEY_CHUNK;
    const int lmax = kmax - c0 < KEY_CHUNK ? kmax - c0 : KEY_CHUNK;
    const bool full = kmin >= c0 + KEY_CHUNK;  // every real row has all 64 keys
    const float* kbase = kc + c0 * g.kv_stride + kv_off;
    const float* vbase = vc + c0 * g.kv_stride + kv_off;
    __syncthreads();  // the previous chunk's p.V is done with kv and se
    {
      float4 kt[TILE_LOADS];
      const float* row = kbase + ld_off;  // stepped: one address register for the stream
#pragma unroll
      for (int i = 0; i < TILE_LOADS; i++, row += ld_step)
        if (ld_j + i * LD_ROWS < lmax) kt[i] = *reinterpret_cast<const float4*>(row);
#pragma unroll
      for (int i = 0; i < TILE_LOADS; i++)
        if (ld_j + i * LD_ROWS < lmax) sm.kv[(ld_j + i * LD_ROWS) * ROW4 + ld_s] = kt[i];
    }
    __syncthreads();
    {
      // Each score a dot sequential in d (fma), as chunk_partial's.
      float s[4][4];
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int k = 0; k < 4; k++) s[i][k] = 0.f;
#pragma unroll 8
      for (int d4 = 0; d4 < SLOTS; d4++) {
        float4 qv[4], kv[4];
#pragma unroll
        for (int i = 0; i < 4; i++) qv[i] = sm.q[(rg + TILE_RG * i) * ROW4 + d4];
#pragma unroll
        for (int k = 0; k < 4; k++) kv[k] = sm.kv[(cg + 16 * k) * ROW4 + d4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
          for (int k = 0; k < 4; k++) {
            s[i][k] = __fmaf_rn(qv[i].x, kv[k].x, s[i][k]);
            s[i][k] = __fmaf_rn(qv[i].y, kv[k].y, s[i][k]);
            s[i][k] = __fmaf_rn(qv[i].z, kv[k].z, s[i][k]);
            s[i][k] = __fmaf_rn(qv[i].w, kv[k].w, s[i][k]);
          }
      }
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int k = 0; k < 4; k++) sm.se[(rg + TILE_RG * i) * SE_ROW + cg + 16 * k] = __fmul_rn(s[i][k], scale);
    }
    __syncthreads();  // scores stored; K is no longer read
    // V's loads go out now and land in K's place after the softmax step.
    float4 vt[TILE_LOADS];
    {
      const float* row = vbase + ld_off;
#pragma unroll
      for (int i = 0; i < TILE_LOADS; i++, row += ld_step)
        if (ld_j + i * LD_ROWS < lmax) vt[i] = *reinterpret_cast<const float4*>(row);
    }
    {
      // Row rs, keys 16 qq .. 16 qq + 15 of the chunk (those < len).
      const int rem = n_keys - c0;
      const int len = rem <= 0 ? 0 : rem < KEY_CHUNK ? rem : KEY_CHUNK;
      float4* row = reinterpret_cast<float4*>(sm.se + rs * SE_ROW + qq * 16);
      float x[16];
#pragma unroll
      for (int i = 0; i < 4; i++) {
        const float4 v = row[i];
        x[4 * i] = v.x;
        x[4 * i + 1] = v.y;
        x[4 * i + 2] = v.z;
        x[4 * i + 3] = v.w;
      }
      float mx = -INFINITY;  // chunk max: exact in any order
#pragma unroll
      for (int i = 0; i < 16; i++)
        if (qq * 16 + i < len) mx = fmaxf(mx, x[i]);
      mx = fmaxf(mx, GRETA_SHFL_XOR(mx, 1));
      mx = fmaxf(mx, GRETA_SHFL_XOR(mx, 2));
#pragma unroll
      for (int i = 0; i < 16; i++) x[i] = qq * 16 + i < len ? expf(__fadd_rn(x[i], -mx)) : 0.f;
#pragma unroll
      for (int i = 0; i < 4; i++) row[i] = make_float4(x[4 * i], x[4 * i + 1], x[4 * i + 2], x[4 * i + 3]);
      // l_c sequential in the key: each quarter continues the sum of the one before.
      float l = 0.f;
#pragma unroll
      for (int p = 0; p < 4; p++) {
        if (qq == p) {
#pragma unroll
          for (int i = 0; i < 16; i++)
            if (p * 16 + i < len) l = __fadd_rn(l, x[i]);
        }
        l = GRETA_SHFL(l, (lane & ~3) | p);
      }
      // The row's merges (merge() of the rows kernel), chunk into group and,
      // at a group's end, group into total; p.V applies the same factors.
      float a = 0.f, b = 0.f, A = 0.f, B = 0.f, inv = 0.f;
      int flags = 0;
      if (len > 0) {
        const float mn = fmaxf(gm, mx);
        a = expf(__fadd_rn(gm, -mn));
        b = expf(__fadd_rn(mx, -mn));
        gl = __fadd_rn(__fmul_rn(gl, a), __fmul_rn(l, b));
        gm = mn;
        flags = TILE_ACTIVE;
        if ((c + 1) % CHUNKS_PER_GROUP == 0 || c + 1 == nc_r) {
          const float mt = fmaxf(tm, gm);
          A = expf(__fadd_rn(tm, -mt));
          B = expf(__fadd_rn(gm, -mt));
          tl = __fadd_rn(__fmul_rn(tl, A), __fmul_rn(gl, B));
          tm = mt;
          gm = -INFINITY;
          gl = 0.f;
          flags |= TILE_GROUP_END;
          if (c + 1 == nc_r) {
            inv = __fdiv_rn(1.f, tl);
            flags |= TILE_LAST;
          }
        }
      }
      if (qq == 0) {
        sm.coef[rs] = make_float2(a, b);
        sm.flags[rs] = flags & TILE_ACTIVE;
        sm.len[rs] = len;
        if (flags & TILE_GROUP_END) sm.total[rs] = make_float4(A, B, inv, 0.f);
        if (c == cg0 || (flags & TILE_GROUP_END)) sm.group_flags[rs] = flags & ~TILE_ACTIVE;
      }
    }
#pragma unroll
    for (int i = 0; i < TILE_LOADS; i++)
      if (ld_j + i * LD_ROWS < lmax) sm.kv[(ld_j + i * LD_ROWS) * ROW4 + ld_s] = vt[i];
    __syncthreads();
    // p.V: acc_c sequential over the chunk's keys (fma), as chunk_partial's.
    float acc[4][8];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
      for (int d = 0; d < 8; d++) acc[i][d] = 0.f;
    if (full) {
#pragma unroll 2
      for (int j4 = 0; j4 < KEY_CHUNK / 4; j4++) {
        float4 e4[4];
#pragma unroll
        for (int i = 0; i < 4; i++) e4[i] = *reinterpret_cast<const float4*>(sm.se + (rg + TILE_RG * i) * SE_ROW + 4 * j4);
#pragma unroll
        for (int jj = 0; jj < 4; jj++) {
          const float4 va = sm.kv[(4 * j4 + jj) * ROW4 + cg], vb = sm.kv[(4 * j4 + jj) * ROW4 + 16 + cg];
#pragma unroll
          for (int i = 0; i < 4; i++) {
            const float e = f4(e4[i], jj);
            acc[i][0] = __fmaf_rn(e, va.x, acc[i][0]);
            acc[i][1] = __fmaf_rn(e, va.y, acc[i][1]);
            acc[i][2] = __fmaf_rn(e, va.z, acc[i][2]);
            acc[i][3] = __fmaf_rn(e, va.w, acc[i][3]);
            acc[i][4] = __fmaf_rn(e, vb.x, acc[i][4]);
            acc[i][5] = __fmaf_rn(e, vb.y, acc[i][5]);
            acc[i][6] = __fmaf_rn(e, vb.z, acc[i][6]);
            acc[i][7] = __fmaf_rn(e, vb.w, acc[i][7]);
          }
        }
      }
    } else {
      // A chunk some row ends in: per-row bounds, one key at a time (rare,
      // kept small in registers).
      int ln[4];
#pragma unroll
      for (int i = 0; i < 4; i++) ln[i] = sm.len[rg + TILE_RG * i];
#pragma unroll 1
      for (int j = 0; j < lmax; j++) {
        const float4 va = sm.kv[j * ROW4 + cg], vb = sm.kv[j * ROW4 + 16 + cg];
#pragma unroll
        for (int i = 0; i < 4; i++) {
          if (j >= ln[i]) continue;
          const float e = sm.se[(rg + TILE_RG * i) * SE_ROW + j];
          acc[i][0] = __fmaf_rn(e, va.x, acc[i][0]);
          acc[i][1] = __fmaf_rn(e, va.y, acc[i][1]);
          acc[i][2] = __fmaf_rn(e, va.z, acc[i][2]);
          acc[i][3] = __fmaf_rn(e, va.w, acc[i][3]);
          acc[i][4] = __fmaf_rn(e, vb.x, acc[i][4]);
          acc[i][5] = __fmaf_rn(e, vb.y, acc[i][5]);
          acc[i][6] = __fmaf_rn(e, vb.z, acc[i][6]);
          acc[i][7] = __fmaf_rn(e, vb.w, acc[i][7]);
        }
      }
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int r = rg + TILE_RG * i;
      if (!(sm.flags[r] & TILE_ACTIVE)) continue;
      const float2 cf = sm.coef[r];
#pragma unroll
      for (int d = 0; d < 8; d++) gacc[i][d] = __fadd_rn(__fmul_rn(gacc[i][d], cf.x), __fmul_rn(acc[i][d], cf.y));
    }
  }
  // The group's end for each row that had one: group into total (parked in out).
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int r = rg + TILE_RG * i;
      const int f = sm.group_flags[r];
      if (!(f & TILE_GROUP_END)) continue;
      const float4 cf = sm.total[r];
      float* o = o_base + i * (TILE_RG / QUAD) * g.q_stride;  // row r = rg + TILE_RG i
      float tot[8];
      if (cg0 > 0) {  // the total so far, parked in out
        const float4 ta = *reinterpret_cast<const float4*>(o), tb = *reinterpret_cast<const float4*>(o + HD / 2);
        tot[0] = ta.x; tot[1] = ta.y; tot[2] = ta.z; tot[3] = ta.w;
        tot[4] = tb.x; tot[5] = tb.y; tot[6] = tb.z; tot[7] = tb.w;
      } else {
#pragma unroll
        for (int d = 0; d < 8; d++) tot[d] = 0.f;  // the empty total
      }
#pragma unroll
      for (int d = 0; d < 8; d++) {
        tot[d] = __fadd_rn(__fmul_rn(tot[d], cf.x), __fmul_rn(gacc[i][d], cf.y));
        gacc[i][d] = 0.f;
      }
      if (f & TILE_LAST) {
        const float iv = cf.z;
#pragma unroll
        for (int d = 0; d < 8; d++) tot[d] = __fmul_rn(tot[d], iv);
      }
      *reinterpret_cast<float4*>(o) = make_float4(tot[0], tot[1], tot[2], tot[3]);
      *reinterpret_cast<float4*>(o + HD / 2) = make_float4(tot[4], tot[5], tot[6], tot[7]);
    }
  }
}

// Decode, split layout. Partial record of one (head, chunk or group):
// [m, l, acc[0 .. head_dim)], head_dim + 2 floats.
__device__ __forceinline__ int64_t rec_floats(int head_dim) { return head_dim + 2; }

// t: the thread's place among the BLOCK threads that hold the record's dims.
template <int D>
__device__ __forceinline__ void store_record(float* rec, const Run<D>& s, int head_dim, int t) {
  if (t == 0) {
    rec[0] = s.m;
    rec[1] = s.l;
  }
#pragma unroll
  for (int i = 0; i < D; i++) {
    const int d = t + i * BLOCK;
    if (d < head_dim) rec[2 + d] = s.acc[i];
  }
}

template <int D>
__device__ __forceinline__ void load_record(Run<D>& s, const float* rec, int head_dim) {
  s.m = rec[0];
  s.l = rec[1];
#pragma unroll
  for (int i = 0; i < D; i++) {
    const int d = static_cast<int>(threadIdx.x) + i * BLOCK;
    s.acc[i] = d < head_dim ? rec[2 + d] : 0.f;
  }
}

// One block per (chunk, KV head, quad): writes the chunk partial of each head,
// at partials + (h * n_chunks + c) * rec_floats. HG groups of BLOCK threads.
// A block is a chain of dependent steps (K tile, scores, max, exp, p.V), and
// where the launch is one block an SM or less (the 8B step's few hundred
// keys: 40 blocks) that chain is the kernel's time: two groups (a thread per
// (key, head) in the scores, per (dim, two heads) in p.V) halve each thread's
// instructions, and with the registers of a whole SM each thread loads its
// V of the chunk at once. H100, 8B step (dev/cupti_timeline.cpp): attention
// chunks 271 -> 203 us (two groups) -> 194 us (V at once); four groups gained
// nothing more (203). Over more chunks the bytes in flight per SM set the
// pace, and one group (3 blocks an SM, each V element loaded once) keeps
// them: at 32768 keys two groups moved 1.59 TB/s against one's 1.78.
template <int D, int HG>
__global__ void GRETA_LAUNCH_BOUNDS(HG * BLOCK, HG == 1 ? MIN_BLOCKS : 1) attention_chunks_kernel(
    float* partials, const float* q, const float* kc,
    const float* vc, const int32_t* pos, int n_heads, int n_kv_heads, int head_dim) {
  greta_allow_next_launch();
  __shared__ Smem<KEY_CHUNK> sm;
  const Geometry g = geometry(n_heads, n_kv_heads, head_dim);
  const int64_t units = static_cast<int64_t>(n_kv_heads) * g.quads;
  // Neighbouring blocks take the KV heads of one chunk: the rows they read lie together.
  const int64_t c = static_cast<int64_t>(blockIdx.x) / units;
  // The position is the call's (a copy no kernel overlaps): read while the kernel ahead runs.
  const int64_t n_keys = static_cast<int64_t>(pos[0]) + 1;
  const int64_t nc = (n_keys + KEY_CHUNK - 1) / KEY_CHUNK;
  // A launch for more keys than this row has (a graph's): nothing to read or
  // write (chunk 0's blocks wait, so the kernel still completes after the ones ahead).
  if (c >= nc) return;
  greta_await_prior_kernels();
  const Heads hs = heads_of(static_cast<int64_t>(blockIdx.x) % units, g);
  const int64_t c0 = c * KEY_CHUNK;
  const int len = static_cast<int>(n_keys - c0 < KEY_CHUNK ? n_keys - c0 : KEY_CHUNK);
  Run<D> part[QUAD / HG];
  chunk_partial<KEY_CHUNK, false, D, true, HG>(part, sm, kc, vc, c0, len, hs, g, default_scale(head_dim),
                                               q);
  const int64_t rf = rec_floats(head_dim);
  const int hg = static_cast<int>(threadIdx.x) / BLOCK;
#pragma unroll
  for (int k = 0; k < QUAD / HG; k++) {
    const int p = hg + k * HG;
    if (p < hs.n)
      store_record(partials + (static_cast<int64_t>(hs.h0 + p) * nc + c) * rf, part[k], head_dim,
                   static_cast<int>(threadIdx.x) % BLOCK);
  }
}

// Merges records first .. end-1 (at stride rf from recs) into s in order, the
// loads of each batch of CHUNKS_PER_GROUP issued before its merges.
template <int D>
__device__ __forceinline__ void merge_records(Run<D>& s, const float* recs, int64_t first, int64_t end, int64_t rf,
                                              int head_dim) {
  for (int64_t b0 = first; b0 < end; b0 += CHUNKS_PER_GROUP) {
    Run<D> r[CHUNKS_PER_GROUP];
#pragma unroll
    for (int k = 0; k < CHUNKS_PER_GROUP; k++)
      if (b0 + k < end) load_record(r[k], recs + (b0 + k) * rf, head_dim);
#pragma unroll
    for (int k = 0; k < CHUNKS_PER_GROUP; k++)
      if (b0 + k < end) merge(s, r[k].m, r[k].l, r[k].acc);
  }
}

// One block per (group, head): the group's chunk partials merged in chunk
// order. With one group this is the output; otherwise the group's record, at
// groups + (h * n_groups + g) * rec_floats.
template <int D>
__global__ void __launch_bounds__(BLOCK) attention_merge_chunks_kernel(
    float* out, float* groups, const float* partials,
    const int32_t* pos, int n_heads, int head_dim) {
  greta_allow_next_launch();
  const int64_t gi = static_cast<int64_t>(blockIdx.x) / n_heads;
  const int h = static_cast<int>(blockIdx.x % n_heads);
  const int64_t nc = (static_cast<int64_t>(pos[0]) + KEY_CHUNK) / KEY_CHUNK;  // the call's position: before the wait
  const int64_t ng = (nc + CHUNKS_PER_GROUP - 1) / CHUNKS_PER_GROUP;
  const int64_t rf = rec_floats(head_dim);
  if (gi >= ng) return;  // group 0's blocks wait, so the kernel completes after the ones ahead
  greta_await_prior_kernels();
  const int64_t c_end = (gi + 1) * CHUNKS_PER_GROUP < nc ? (gi + 1) * CHUNKS_PER_GROUP : nc;
  Run<D> s;
  init(s);
  merge_records(s, partials + h * nc * rf, gi * CHUNKS_PER_GROUP, c_end, rf, head_dim);
  if (ng == 1)
    finish(s, out + static_cast<int64_t>(h) * head_dim, head_dim);
  else
    store_record(groups + (h * ng + gi) * rf, s, head_dim, static_cast<int>(threadIdx.x));
}

// One block per head: group partials merged in group order, then the output.
template <int D>
__global__ void __launch_bounds__(BLOCK) attention_merge_groups_kernel(float* out,
                                                                       const float* groups,
                                                                       const int32_t* pos, int head_dim) {
  greta_allow_next_launch();
  const int h = static_cast<int>(blockIdx.x);
  const int64_t nc = (static_cast<int64_t>(pos[0]) + KEY_CHUNK) / KEY_CHUNK;  // the call's position: before the wait
  const int64_t ng = (nc + CHUNKS_PER_GROUP - 1) / CHUNKS_PER_GROUP;
  // Every block waits, even with nothing to do: a kernel whose blocks all
  // left early would complete before the kernels ahead, and the one after it
  // would stop waiting for them.
  greta_await_prior_kernels();
  if (ng == 1) return;  // the chunks' merge wrote the output
  const int64_t rf = rec_floats(head_dim);
  Run<D> s;
  init(s);
  merge_records(s, groups + h * ng * rf, 0, ng, rf, head_dim);
  finish(s, out + static_cast<int64_t>(h) * head_dim, head_dim);
}

int64_t chunks_for(int64_t keys) { return (keys + KEY_CHUNK - 1) / KEY_CHUNK; }
int64_t groups_for(int64_t chunks) { return (chunks + CHUNKS_PER_GROUP - 1) / CHUNKS_PER_GROUP; }
int64_t units_for(int n_heads, int n_kv_heads) {
  return static_cast<int64_t>(n_kv_heads) * ((n_heads / n_kv_heads + QUAD - 1) / QUAD);
}

template <int CHUNK, bool CUSTOM_SCALE, bool PROBE>
hipError_t launch_rows(float* out, const float* q, const float* k_cache, const float* v_cache, const int32_t* pos,
                       int32_t probe_pos, int64_t M, int n_heads, int n_kv_heads, int head_dim, float custom_scale,
                       float* scores, float* probs, float* factors, hipStream_t stream) {
  const dim3 grid(static_cast<unsigned>(M * units_for(n_heads, n_kv_heads))), block(BLOCK);
  if (head_dim <= BLOCK)
    GRETA_LAUNCH((attention_rows_kernel<CHUNK, CUSTOM_SCALE, PROBE, 1>), grid, block, 0, stream, out, q, k_cache,
                 v_cache, pos, probe_pos, n_heads, n_kv_heads, head_dim, custom_scale, scores, probs, factors);
  else
    GRETA_LAUNCH((attention_rows_kernel<CHUNK, CUSTOM_SCALE, PROBE, MAX_DIMS>), grid, block, 0, stream, out, q,
                 k_cache, v_cache, pos, probe_pos, n_heads, n_kv_heads, head_dim, custom_scale, scores, probs,
                 factors);
  return hipGetLastError();
}

// The planted faults and the probe: their own instantiations.
template <int CHUNK, bool PROBE>
hipError_t launch_option_rows(float* out, const float* q, const float* k_cache, const float* v_cache,
                              const int32_t* pos, int32_t probe_pos, int64_t M, int n_heads, int n_kv_heads,
                              int head_dim, const float* custom_scale, float* scores, float* probs, float* factors,
                              hipStream_t stream) {
  if (custom_scale)
    return launch_rows<CHUNK, true, PROBE>(out, q, k_cache, v_cache, pos, probe_pos, M, n_heads, n_kv_heads, head_dim,
                                           *custom_scale, scores, probs, factors, stream);
  return launch_rows<CHUNK, false, PROBE>(out, q, k_cache, v_cache, pos, probe_pos, M, n_heads, n_kv_heads, head_dim,
                                          0.f, scores, probs, factors, stream);
}

template <int D>
hipError_t launch_decode(float* out, const float* q, const float* k_cache, const float* v_cache, const int32_t* pos,
                         int n_heads, int n_kv_heads, int head_dim, int64_t nc, float* partials, hipStream_t stream) {
  const int64_t ng = groups_for(nc);
  float* groups = partials + static_cast<int64_t>(n_heads) * nc * (head_dim + 2);
  const int64_t blocks = nc * units_for(n_heads, n_kv_heads);
  if (blocks <= static_cast<int64_t>(multiprocessors()))
    GRETA_LAUNCH((attention_chunks_kernel<D, 2>), dim3(static_cast<unsigned>(blocks)), dim3(2 * BLOCK), 0, stream,
                 partials, q, k_cache, v_cache, pos, n_heads, n_kv_heads, head_dim);
  else
    GRETA_LAUNCH((attention_chunks_kernel<D, 1>), dim3(static_cast<unsigned>(blocks)), dim3(BLOCK), 0, stream,
                 partials, q, k_cache, v_cache, pos, n_heads, n_kv_heads, head_dim);
  hipError_t e = hipGetLastError();
  if (e != hipSuccess) return e;
  GRETA_LAUNCH(attention_merge_chunks_kernel<D>, dim3(static_cast<unsigned>(ng * n_heads)), dim3(BLOCK), 0,
               stream, out, groups, partials, pos, n_heads, head_dim);
  e = hipGetLastError();
  if (e != hipSuccess || ng == 1) return e;
  GRETA_LAUNCH(attention_merge_groups_kernel<D>, dim3(static_cast<unsigned>(n_heads)), dim3(BLOCK), 0, stream,
               out, groups, pos, head_dim);
  return hipGetLastError();
}

hipError_t launch_tile(float* out, const float* q, const float* k_cache, const float* v_cache, const int32_t* pos,
                       int64_t M, int n_heads, int n_kv_heads, hipStream_t stream) {
  // Above the 48 KB a block gets unasked on NVIDIA; a host-side setting, no allocation.
  hipError_t e = hipFuncSetAttribute(reinterpret_cast<const void*>(attention_tile_kernel),
                                     hipFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(sizeof(TileSmem)));
  if (e != hipSuccess) return e;
  const int64_t tiles = (M + TILE_POSITIONS - 1) / TILE_POSITIONS;
  GRETA_LAUNCH(attention_tile_kernel, dim3(static_cast<unsigned>(tiles * units_for(n_heads, n_kv_heads))),
               dim3(TILE_THREADS), sizeof(TileSmem), stream, out, q, k_cache, v_cache, pos, M, n_heads, n_kv_heads);
  return hipGetLastError();
}
// The model's scale on the host, for the matrix chain's launches.
float host_scale(int head_dim) { return 1.f / std::sqrt(static_cast<float>(head_dim)); }
}  // namespace

size_t greta_attention_scratch_bytes(int64_t M, int n_heads, int head_dim, int64_t max_keys) {
  if (M != 1) return 0;
  const int64_t nc = chunks_for(max_keys);
  return static_cast<size_t>(n_heads) * (nc + groups_for(nc)) * (head_dim + 2) * sizeof(float);
}

size_t greta_attention_probe_scratch_bytes(int n_heads, int32_t pos, int key_chunk) {
  const int64_t chunk = key_chunk == 0 ? KEY_CHUNK : key_chunk;
  const int64_t nc = (static_cast<int64_t>(pos) + chunk) / chunk;
  return static_cast<size_t>(n_heads) * 2 * (nc + groups_for(nc)) * sizeof(float);
}

hipError_t greta_attention_probe(float* scores, float* probs, float* pv, const float* q, const float* k_cache,
                                 const float* v_cache, int32_t pos, int n_heads, int n_kv_heads, int head_dim,
                                 const float* custom_scale, int key_chunk, float* factors, hipStream_t stream) {
  if (head_dim > MAX_HEAD_DIM) return hipErrorInvalidValue;
  if (greta_attention_chain_runs(n_heads, n_kv_heads, head_dim))
    return greta_attention_chain_probe(scores, probs, pv, q, k_cache, v_cache, pos, n_heads, n_kv_heads, head_dim,
                                       custom_scale ? *custom_scale : host_scale(head_dim), key_chunk, factors, stream);
  switch (key_chunk) {
    case 0:
    case KEY_CHUNK: return launch_option_rows<KEY_CHUNK, true>(pv, q, k_cache, v_cache, nullptr, pos, 1, n_heads, n_kv_heads, head_dim, custom_scale, scores, probs, factors, stream);
    case HALF_KEY_CHUNK: return launch_option_rows<HALF_KEY_CHUNK, true>(pv, q, k_cache, v_cache, nullptr, pos, 1, n_heads, n_kv_heads, head_dim, custom_scale, scores, probs, factors, stream);
    case QUARTER_KEY_CHUNK: return launch_option_rows<QUARTER_KEY_CHUNK, true>(pv, q, k_cache, v_cache, nullptr, pos, 1, n_heads, n_kv_heads, head_dim, custom_scale, scores, probs, factors, stream);
    default: return hipErrorInvalidValue;
  }
}

hipError_t greta_attention(float* out, const float* q, const float* k_cache, const float* v_cache, const int32_t* pos,
                           int64_t M, int n_heads, int n_kv_heads, int head_dim, int64_t max_keys,
                           const float* custom_scale, int key_chunk, float* partials, hipStream_t stream) {
  if (head_dim > MAX_HEAD_DIM) return hipErrorInvalidValue;
  if (greta_attention_chain_runs(n_heads, n_kv_heads, head_dim))
    return greta_attention_chain(out, q, k_cache, v_cache, pos, M, n_heads, n_kv_heads, head_dim, max_keys,
                                 custom_scale ? *custom_scale : host_scale(head_dim), key_chunk, partials, stream);
  if (custom_scale || (key_chunk != 0 && key_chunk != KEY_CHUNK)) {
    // Planted faults: the rows layout whatever M (the split layout does not change the bits).
    switch (key_chunk) {
      case 0:
      case KEY_CHUNK: return launch_option_rows<KEY_CHUNK, false>(out, q, k_cache, v_cache, pos, 0, M, n_heads, n_kv_heads, head_dim, custom_scale, nullptr, nullptr, nullptr, stream);
      case HALF_KEY_CHUNK: return launch_option_rows<HALF_KEY_CHUNK, false>(out, q, k_cache, v_cache, pos, 0, M, n_heads, n_kv_heads, head_dim, custom_scale, nullptr, nullptr, nullptr, stream);
      case QUARTER_KEY_CHUNK: return launch_option_rows<QUARTER_KEY_CHUNK, false>(out, q, k_cache, v_cache, pos, 0, M, n_heads, n_kv_heads, head_dim, custom_scale, nullptr, nullptr, nullptr, stream);
      default: return hipErrorInvalidValue;
    }
  }
  const int64_t nc = chunks_for(max_keys);
  if (M == 1 && nc > 1) {
    // Decode: too few rows to fill the device; one block per (chunk, KV head, quad).
    return head_dim <= BLOCK ? launch_decode<1>(out, q, k_cache, v_cache, pos, n_heads, n_kv_heads, head_dim, nc, partials, stream)
                             : launch_decode<MAX_DIMS>(out, q, k_cache, v_cache, pos, n_heads, n_kv_heads, head_dim, nc, partials, stream);
  }
  if (head_dim == TILE_HEAD_DIM && M >= TILE_POSITIONS)
    return launch_tile(out, q, k_cache, v_cache, pos, M, n_heads, n_kv_heads, stream);
  return launch_rows<KEY_CHUNK, false, false>(out, q, k_cache, v_cache, pos, 0, M, n_heads, n_kv_heads, head_dim, 0.f,
                                              nullptr, nullptr, nullptr, stream);
}

hipError_t greta_attention_rows(float* out, const float* q, const float* k_cache, const float* v_cache,
                                const int32_t* pos, int64_t M, int n_heads, int n_kv_heads, int head_dim,
                                hipStream_t stream) {
  if (head_dim > MAX_HEAD_DIM) return hipErrorInvalidValue;
  return launch_rows<KEY_CHUNK, false, false>(out, q, k_cache, v_cache, pos, 0, M, n_heads, n_kv_heads, head_dim, 0.f,
                                              nullptr, nullptr, nullptr, stream);
}
