// Attention on the matrix units (hip/attention_chain.h): hip/attention.h's
// rule, chunks of 64 keys and groups of 16 chunks merged in order, with each
// chunk's partial made by hip/matmul.h's chain with f32 weights. For query
// column q (one row's head) and chunk c:
//   raw_j = q . k_j: the key row is the weight (terms hi, mid, lo), q the
//     activation (terms hi, mid, lo); per KBLOCK s of the head's dims, c_s
//     is the six term products with i + j <= 2, smallest first, from zero in
//     the matrix unit (Chain<float>, mma_k32); raw = ((0 + c_0) + c_1) + ...
//     in fp32, s increasing;
//   s_j = raw_j * scale; m_c = max of the chunk's valid s_j (exact);
//   e_j = exp(s_j - m_c) for valid keys, else 0;
//   l_c = sum of e_j over the chunk's 64 keys, sequential in j;
//   acc_c[d] = the same chain with V's column d as the weight (key j of the
//     chunk as k, two KBLOCKs) and e as the activation: (0 + c_0) + c_1;
// then hip/attention.h's merges, every column's state always merged into its
// total at a group's end (so a zero sum is +0 on every path). Keys at or past
// a column's length contribute e = 0; K and V rows past the block's longest
// column are zeros, so a masked key's products are zeros. The matrix unit
// computes each output from its own row of A and column of B (hip/mma.h), so
// a column's bits depend on nothing else in its block: prefill (many
// positions a block), decode (one row split over blocks a chunk) and the
// probe run the same chain, bit for bit.
//
// Error: each score and each acc_c[d] is a dot product with hip/matmul.h's
// bound (K = head_dim for a score, the chunk's 64 keys for p.V; f32 weights,
// so the dropped term products count); the softmax steps are the fp32 chain's.
// Measured against fp64: relative L2 at most 1.6e-7 (dev/attention_mma.hip),
// 3e-8 to 2e-7 in test/gpu/ops.gpu.test.ts (bound 5e-6), and at Llama-3-8B
// depth every layer closer to fp64 than with the CUDA-core chain
// (docs/oracle-results.md).
//
// Layouts (a block's columns are (position, query head) pairs of one KV
// head: heads_per_block = min(group, columns), positions = columns / that):
//   rows     mma.sync / MFMA, 4 waves, TILE_J columns: wave w holds keys
//            16 w .. of the chunk (scores' A rows) and V dims 16 dt .., dt =
//            w, w + 4, .. (p.V's A rows); the probe's kernel (one row).
//   decode   the rows layout over one chunk per block, writing chunk
//            partials; then one thread per (group, head, dim) merges a
//            group's chunks in order, then one per (head, dim) the groups
//            (with one group, the first merge finishes: two launches).
//   wgmma    prefill on sm_90a: one warpgroup a block of 32 columns (8
//            positions of Llama's 4 heads a KV head), wgmma m64n32k16 with A
//            from registers, which gives mma.sync's bits for every output
//            (hip/wgmma.h).
// Where it runs (greta_attention_chain_runs): head_dim 64 or 128 on sm_90a.
// Elsewhere hip/attention.hip's CUDA-core chain is the faster one: without
// wgmma the chain's six bf16 products a product cost more than the CUDA
// cores' fma (dev/attention_mma.hip: mma.sync prefill 5.62 ms against 4.83
// at 4096 rows on an H100). These kernels compile for CDNA (MFMA 16x16x16,
// wave 64: every lane map is hip/mma.h's), to be measured there first.
//
// H100, Llama-3-8B shape (dev/attention_mma.hip bench): prefill of 4096 rows
// 3.46 ms, of 291 rows 0.067 ms; decode at 291 / 4096 / 32768 keys 13.0 us
// / 1.40 / 2.21 TB/s. hip/attention.hip's CUDA-core chain measured 4.74-4.95
// ms / 0.058-0.062 ms and 12.9-13.2 us / 1.19-1.20 / 2.08-2.10 TB/s there.
#include "attention_chain.h"
#include "chain.h"
#include "mma.h"
#if defined(GRETA_VENDOR_NVIDIA)
#include "wgmma.h"
#endif

namespace {
using namespace greta_hip;
using namespace greta_mma;

constexpr int CHUNK = GRETA_KEY_CHUNK;
constexpr int CHUNKS_PER_GROUP = GRETA_CHUNKS_PER_GROUP;
constexpr int WARPS = 4, THREADS = WARPS * GRETA_WAVE_SIZE;
constexpr int KEYBLOCKS = CHUNK / KBLOCK;  // KBLOCKs of a p.V chain
constexpr int E_ROW = CHUNK + 4;           // a column's exp-scores, rows 16-byte aligned
// What only the compiler checks on CDNA: a wave's 16 A rows are 16 keys, the
// four waves the chunk, and a wave's lanes split the chunk evenly for m_c.
static_assert(TILE_I * WARPS == CHUNK && CHUNK % GRETA_WAVE_SIZE == 0, "four waves of 16 keys a chunk");
// V dims the four waves' p.V rows cover at once (a wgmma's 64 A rows): the
// head dims the chain takes are multiples of it.
constexpr int PASS_DIMS = TILE_I * WARPS;

template <int HD>
struct Dims {
  static constexpr int DBLOCKS = HD / KBLOCK;  // KBLOCKs of a score chain
  static constexpr int DTILES = HD / TILE_I;   // 16-dim tiles of p.V's A
  static constexpr int V_ROW = HD + 1;         // column reads by 8 keys x 8 dims hit distinct banks
  static_assert(HD % PASS_DIMS == 0, "head_dim a multiple of the waves' p.V rows");
};

// Which (position, head) pairs a block's columns are.
struct Layout {
  int64_t q_stride;  // floats between rows of q (and out)
  // Floats between cache rows, 32 bits: offsets within a chunk (64 rows)
  // are int multiplies, the chunk's base the one 64-bit product.
  int kv_stride;
  int n_kv_heads, group, heads, slices, positions;  // heads a block; slices of a group
};

Layout layout_for(int n_heads, int n_kv_heads, int head_dim, int columns) {
  Layout L;
  L.q_stride = static_cast<int64_t>(n_heads) * head_dim;
  L.kv_stride = n_kv_heads * head_dim;
  L.n_kv_heads = n_kv_heads;
  L.group = n_heads / n_kv_heads;
  L.heads = L.group < columns ? L.group : columns;
  L.slices = (L.group + L.heads - 1) / L.heads;
  L.positions = columns / L.heads;
  return L;
}

struct Block {
  int kvh, h0, n;  // KV head, first query head, its heads here (<= L.heads)
};
// unit: (KV head, slice of its group).
__device__ __forceinline__ Block block_of(const Layout& L, int64_t unit) {
  const int kvh = static_cast<int>(unit / L.slices), s = static_cast<int>(unit % L.slices);
  const int first = s * L.heads;
  return {kvh, kvh * L.group + first, L.group - first < L.heads ? L.group - first : L.heads};
}

// A lane's A operand of one KBLOCK as Raw<float>, from its rows' LANE_K
// consecutive k each (f[r]: row a_row(lane, r)): hip/mma.h's tiled order,
// element ((h 2 + j) A_ROWS + r) 2 + p being row r's k = 4 h + 2 j + p.
__device__ __forceinline__ Raw<float> raw_from_rows(const float (&f)[A_ROWS][LANE_K]) {
  float o[A_ROWS * LANE_K];
#pragma unroll
  for (int h = 0; h < 2; h++)
#pragma unroll
    for (int j = 0; j < 2; j++)
#pragma unroll
      for (int r = 0; r < A_ROWS; r++)
#pragma unroll
        for (int p = 0; p < 2; p++) o[((h * 2 + j) * A_ROWS + r) * 2 + p] = f[r][4 * h + 2 * j + p];
  Raw<float> raw;
#pragma unroll
  for (int u = 0; u < Tiles<float>::UNITS; u++)
    raw.u[u] = make_uint4(__float_as_uint(o[4 * u]), __float_as_uint(o[4 * u + 1]), __float_as_uint(o[4 * u + 2]),
                          __float_as_uint(o[4 * u + 3]));
  return raw;
}

// The lane's A rows a_row(lane, r) of `rows` (a row every `stride` floats;
// rows at or past `valid` read as zeros), k = k0 + lane_k(lane) .. + 7.
__device__ __forceinline__ Raw<float> raw_rows(const float* rows, int stride, int valid, int k0) {
  const int lane = static_cast<int>(threadIdx.x) % GRETA_WAVE_SIZE;
  float f[A_ROWS][LANE_K];
#pragma unroll
  for (int r = 0; r < A_ROWS; r++) {
    const int row = a_row(lane, r);
    const float4* p = reinterpret_cast<const float4*>(rows + row * stride + k0 + lane_k(lane));
    const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
    const float4 x0 = row < valid ? p[0] : zero, x1 = row < valid ? p[1] : zero;
    f[r][0] = x0.x;
    f[r][1] = x0.y;
    f[r][2] = x0.z;
    f[r][3] = x0.w;
    f[r][4] = x1.x;
    f[r][5] = x1.y;
    f[r][6] = x1.z;
    f[r][7] = x1.w;
  }
  return raw_from_rows(f);
}

// c = one KBLOCK's six products (Chain<float>), from zero.
__device__ __forceinline__ MmaC chain_f32(const MmaAHalf (&a)[3][2], const MmaB (&b)[3]) {
  MmaC c = mma_zero();
#pragma unroll
  for (int i = 0; i < Chain<float>::STEPS; i++) mma_k32(c, a[Chain<float>::w_term(i)], b[Chain<float>::x_term(i)]);
  return c;
}

// The merge of hip/attention.h: state (m, l) takes partial (m_c, l_c); the
// factors a (for the state) and b (for the partial) scale the accumulators.
__device__ __forceinline__ void merge_ml(float& m, float& l, float m_c, float l_c, float& a, float& b) {
  const float mn = fmaxf(m, m_c);
  a = expf(__fadd_rn(m, -mn));
  b = expf(__fadd_rn(m_c, -mn));
  l = __fadd_rn(__fmul_rn(l, a), __fmul_rn(l_c, b));
  m = mn;
}
__device__ __forceinline__ float scaled_sum(float acc, float a, float acc_c, float b) {
  return __fadd_rn(__fmul_rn(acc, a), __fmul_rn(acc_c, b));
}

// ---- The rows layout: TILE_J columns a block, mma.sync or MFMA. ----
constexpr int NC = TILE_J;  // columns of a rows block
// The planted faults' chunk sizes (hip/attention.h's key_chunk 32 and 16):
// keys are still loaded and scored 64 at a time (a score does not depend on
// the split), and each 64 keys hold CHUNK / SUB chunks of SUB keys, each its
// own m_c, e, l_c and partial. p.V of a chunk of 32 is one KBLOCK's chain; of
// 16, that KBLOCK with the other 16 keys' e taken as zeros.
constexpr int MAX_SUBS = CHUNK / 16;

template <int HD>
struct alignas(16) Smem {
  uint4 qb[Dims<HD>::DBLOCKS][3][GRETA_WAVE_SIZE];  // the columns' B operands: Q terms
  float v[CHUNK][Dims<HD>::V_ROW];
  float e[NC][E_ROW];  // scores, then exp(s - m_c)
  float m_c[NC][MAX_SUBS], l_c[NC][MAX_SUBS];  // per column and chunk of the 64 keys
};

// Q of the block's columns into B operands: column b_col(lane) is query row
// qrow(col) (nullptr: zeros).
template <int HD, typename QRow>
__device__ void load_q(Smem<HD>& sm, QRow qrow) {
  constexpr int DB = Dims<HD>::DBLOCKS;
  for (int i = static_cast<int>(threadIdx.x); i < DB * GRETA_WAVE_SIZE; i += THREADS) {
    const int lane = i % GRETA_WAVE_SIZE, s = i / GRETA_WAVE_SIZE;
    const float* q = qrow(b_col(lane));
    uint4 u0 = make_uint4(0, 0, 0, 0), u1 = u0;
    if (q) {
      const uint4* p = reinterpret_cast<const uint4*>(q + s * KBLOCK + lane_k(lane));
      u0 = p[0];
      u1 = p[1];
    }
    MmaB b[3];
    act_terms(u0, u1, b);
#pragma unroll
    for (int t = 0; t < 3; t++) sm.qb[s][t][lane] = b[t].v;
  }
}

// The chunk's scores (keys c0 .. c0 + 63 of kbase, rows past `rows` zeros)
// for every column into sm.e: scaled, -inf past the column's length.
template <int HD>
__device__ void scores(Smem<HD>& sm, const float* kbase, int kv_stride, int64_t c0, int rows, const int* len,
                       float scale) {
  const int lane = static_cast<int>(threadIdx.x) % GRETA_WAVE_SIZE, w = static_cast<int>(threadIdx.x) / GRETA_WAVE_SIZE;
  constexpr int DB = Dims<HD>::DBLOCKS;
  float raw[4] = {0.f, 0.f, 0.f, 0.f};
  const float* krows = kbase + c0 * kv_stride + TILE_I * w * kv_stride;
  const int valid = rows - TILE_I * w;
  // Every load of the wave's key rows goes out before the first product.
  Raw<float> rk[DB];
#pragma unroll
  for (int s = 0; s < DB; s++) rk[s] = raw_rows(krows, kv_stride, valid, s * KBLOCK);
#pragma unroll
  for (int s = 0; s < DB; s++) {
    MmaAHalf a[3][2];
    weight_terms<float>(rk[s], a);
    MmaB b[3];
#pragma unroll
    for (int t = 0; t < 3; t++) b[t].v = sm.qb[s][t][lane];
    const MmaC c = chain_f32(a, b);
#pragma unroll
    for (int e = 0; e < 4; e++) raw[e] = __fadd_rn(raw[e], c.v[e]);
  }
#pragma unroll
  for (int e = 0; e < 4; e++) {
    const int j = TILE_I * w + c_row(lane, e), col = c_col(lane, e);
    sm.e[col][j] = c0 + j < len[col] ? __fmul_rn(raw[e], scale) : -INFINITY;
  }
}

// After scores: m_c and e of each column's chunks of SUB keys, then their
// l_c into sm.l_c. Keys past a column's length give e = 0.
template <int HD, int SUB>
__device__ void softmax_chunk(Smem<HD>& sm, int64_t c0, const int* len) {
  constexpr int SUBS = CHUNK / SUB;
  const int t = static_cast<int>(threadIdx.x), lane = t % GRETA_WAVE_SIZE, w = t / GRETA_WAVE_SIZE;
  __syncthreads();
  // m_c is exact in any order: a wave a (column, chunk), then the lanes' butterfly.
  for (int u = w; u < NC * SUBS; u += WARPS) {
    const int col = u / SUBS, sc = u % SUBS;
    float m = -INFINITY;
#pragma unroll
    for (int k = lane; k < SUB; k += GRETA_WAVE_SIZE) m = fmaxf(m, sm.e[col][sc * SUB + k]);
    m = wave_max(m);
    if (lane == 0) sm.m_c[col][sc] = m;
  }
  __syncthreads();
  for (int i = t; i < NC * CHUNK; i += THREADS) {
    const int col = i / CHUNK, j = i % CHUNK;
    sm.e[col][j] = c0 + j < len[col] ? expf(__fadd_rn(sm.e[col][j], -sm.m_c[col][j / SUB])) : 0.f;
  }
  __syncthreads();
  // l_c in j order, each 16 keys' loads issued before their adds.
  if (t < NC * SUBS) {
    const int col = t / SUBS, sc = t % SUBS;
    float l = 0.f;
    for (int j0 = sc * SUB; j0 < (sc + 1) * SUB; j0 += 16) {
      float v[16];
#pragma unroll
      for (int i = 0; i < 16; i++) v[i] = sm.e[col][j0 + i];
#pragma unroll
      for (int i = 0; i < 16; i++) l = __fadd_rn(l, v[i]);
    }
    sm.l_c[col][sc] = l;
  }
}

// The chunk's V rows c0 .. c0 + 63 (rows past `rows` zeros) into sm.v, every
// load issued before the first store.
template <int HD>
__device__ void load_v(Smem<HD>& sm, const float* vbase, int kv_stride, int64_t c0, int rows) {
  constexpr int LOADS = CHUNK * HD / 4 / THREADS;
  static_assert(LOADS * 4 * THREADS == CHUNK * HD, "the block's float4 loads cover the V tile");
  const float* const chunk = vbase + c0 * kv_stride;
  float4 x[LOADS];
#pragma unroll
  for (int k = 0; k < LOADS; k++) {
    const int i = static_cast<int>(threadIdx.x) + k * THREADS, j = i / (HD / 4), d4 = i % (HD / 4);
    x[k] = j < rows ? reinterpret_cast<const float4*>(chunk + j * kv_stride)[d4] : make_float4(0, 0, 0, 0);
  }
#pragma unroll
  for (int k = 0; k < LOADS; k++) {
    const int i = static_cast<int>(threadIdx.x) + k * THREADS, j = i / (HD / 4), d4 = i % (HD / 4);
    float* dst = &sm.v[j][4 * d4];
    dst[0] = x[k].x;
    dst[1] = x[k].y;
    dst[2] = x[k].z;
    dst[3] = x[k].w;
  }
}

// p.V's A operand of dim tile dt: V's columns 16 dt .. as rows, keys as k.
template <int HD>
__device__ __forceinline__ void v_terms(const Smem<HD>& sm, int dt, MmaAHalf (&a)[KEYBLOCKS][3][2]) {
  const int lane = static_cast<int>(threadIdx.x) % GRETA_WAVE_SIZE;
#pragma unroll
  for (int kb = 0; kb < KEYBLOCKS; kb++) {
    float f[A_ROWS][LANE_K];
#pragma unroll
    for (int r = 0; r < A_ROWS; r++) {
      const int d = TILE_I * dt + a_row(lane, r), j = kb * KBLOCK + lane_k(lane);
#pragma unroll
      for (int i = 0; i < LANE_K; i++) f[r][i] = sm.v[j + i][d];
    }
    weight_terms<float>(raw_from_rows(f), a[kb]);
  }
}

// acc_c of a dim tile for the block's columns and their chunk sc of SUB
// keys, per lane's 4 elements.
template <int HD, int SUB>
__device__ __forceinline__ MmaC pv_tile(const Smem<HD>& sm, const MmaAHalf (&a)[KEYBLOCKS][3][2], int sc) {
  const int lane = static_cast<int>(threadIdx.x) % GRETA_WAVE_SIZE;
  constexpr int KB = SUB >= KBLOCK ? SUB / KBLOCK : 1;  // KBLOCKs of the chunk
  const int kb0 = sc * SUB / KBLOCK;
  MmaC acc = mma_zero();
#pragma unroll
  for (int k = 0; k < KB; k++) {
    const int kb = kb0 + k, j = kb * KBLOCK + lane_k(lane);
    const uint4* p = reinterpret_cast<const uint4*>(&sm.e[b_col(lane)][j]);
    uint4 u0 = p[0], u1 = p[1];
    // A chunk of 16: the lane's 8 keys lie all in it or all outside.
    if (SUB < KBLOCK && j / SUB != sc) u0 = u1 = make_uint4(0, 0, 0, 0);
    MmaB b[3];
    act_terms(u0, u1, b);
    const MmaC c = chain_f32(a[kb], b);
#pragma unroll
    for (int e = 0; e < 4; e++) acc.v[e] = __fadd_rn(acc.v[e], c.v[e]);
  }
  return acc;
}
static_assert(LANE_K == 8 && 16 % LANE_K == 0, "pv_tile: a lane's 8 keys sit in one chunk of 16");

// The probe's outputs (one row): scores and exp(s - m_c) per (head, key) at
// [h * keys + j], and per head 2 (chunks + groups) merge factors: a_c at
// [c], b_c at [nc + c], A_g at [2 nc + g], B_g at [2 nc + ng + g].
struct ProbeOut {
  float* scores;
  float* probs;
  float* factors;
};

// Rows layout: one block per (positions of the layout, KV head, slice), the
// chunks of SUB keys in order, merges in registers (group) and shared memory
// (total). PROBE: one row at position probe_pos (pos unused), which also
// writes the probe's outputs and turns the exp-scores into probabilities.
template <int HD, bool PROBE, int SUB>
__global__ void GRETA_LAUNCH_BOUNDS(THREADS, 1)
    chain_rows_kernel(float* out, const float* q, const float* kc, const float* vc, const int32_t* pos,
                      int32_t probe_pos, int64_t M, Layout L, float scale, ProbeOut probe) {
  constexpr int DT = Dims<HD>::DTILES / WARPS;  // dim tiles a wave
  constexpr int SUBS = CHUNK / SUB;
  constexpr int INTO_GROUP = 1, GROUP_END = 2;
  greta_await_prior_kernels();
  __shared__ Smem<HD> sm;
  __shared__ float acc_t[HD][NC];  // the total state's accumulators
  __shared__ int len[NC];
  __shared__ float m_g[NC], l_g[NC], m_t[NC], l_t[NC];
  // Per column and chunk: the factors of its merge into the group (a, b) and
  // of the group's into the total at a group's end (A, B), and which apply.
  __shared__ float fa[NC][SUBS], fb[NC][SUBS], ga[NC][SUBS], gb[NC][SUBS];
  __shared__ int flags[NC][SUBS];
  const int64_t units = static_cast<int64_t>(L.n_kv_heads) * L.slices;
  const Block bk = block_of(L, static_cast<int64_t>(blockIdx.x) % units);
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) / units * L.positions;
  const int t = static_cast<int>(threadIdx.x), lane = t % GRETA_WAVE_SIZE, w = t / GRETA_WAVE_SIZE;
  auto head_of = [&](int col) { return col % L.heads; };
  auto real = [&](int col) { return col / L.heads < L.positions && head_of(col) < bk.n && m0 + col / L.heads < M; };
  if (t < NC) {
    len[t] = real(t) ? (PROBE ? probe_pos : pos[m0 + t / L.heads]) + 1 : 0;
    m_g[t] = m_t[t] = -INFINITY;
    l_g[t] = l_t[t] = 0.f;
  }
  for (int i = t; i < HD * NC; i += THREADS) acc_t[i / NC][i % NC] = 0.f;
  load_q(sm, [&](int col) -> const float* {
    return real(col) ? q + (m0 + col / L.heads) * L.q_stride + static_cast<int64_t>(bk.h0 + head_of(col)) * HD : nullptr;
  });
  __syncthreads();
  int most = 0;
  for (int c = 0; c < NC; c++) most = len[c] > most ? len[c] : most;
  const int64_t kv_off = static_cast<int64_t>(bk.kvh) * HD;
  const int64_t probe_keys = static_cast<int64_t>(probe_pos) + 1;
  // Chunks (of SUB keys) and groups of the longest column: the probe's factor layout.
  const int64_t nc = (most + SUB - 1) / SUB, ng = (nc + CHUNKS_PER_GROUP - 1) / CHUNKS_PER_GROUP;
  float acc_g[DT][4];
#pragma unroll
  for (int i = 0; i < DT; i++)
#pragma unroll
    for (int e = 0; e < 4; e++) acc_g[i][e] = 0.f;
  for (int64_t c0 = 0; c0 < most; c0 += CHUNK) {
    const int rows = most - c0 < CHUNK ? static_cast<int>(most - c0) : CHUNK;
    __syncthreads();  // the last 64 keys' V and e are used
    load_v(sm, vc + kv_off, L.kv_stride, c0, rows);
    scores(sm, kc + kv_off, L.kv_stride, c0, rows, len, scale);
    if (PROBE) {
      __syncthreads();
      for (int i = t; i < NC * CHUNK; i += THREADS) {
        const int col = i / CHUNK, j = i % CHUNK;
        if (c0 + j < len[col]) probe.scores[(bk.h0 + head_of(col)) * probe_keys + c0 + j] = sm.e[col][j];
      }
    }
    softmax_chunk<HD, SUB>(sm, c0, len);
    if (PROBE)
      for (int i = t; i < NC * CHUNK; i += THREADS) {
        const int col = i / CHUNK, j = i % CHUNK;
        if (c0 + j < len[col]) probe.probs[(bk.h0 + head_of(col)) * probe_keys + c0 + j] = sm.e[col][j];
      }
    __syncthreads();  // every l_c is stored
    if (t < NC) {
      // The column's chunks in order: each into its group, a group's end (every
      // 16th chunk and the column's last) into the total.
      const int64_t last = (len[t] + SUB - 1) / SUB - 1;
      float* const fac = PROBE ? probe.factors + (bk.h0 + head_of(t)) * 2 * (nc + ng) : nullptr;
      for (int sc = 0; sc < SUBS; sc++) {
        const int64_t c = c0 / SUB + sc;
        int f = 0;
        if (c * SUB < len[t]) {
          merge_ml(m_g[t], l_g[t], sm.m_c[t][sc], sm.l_c[t][sc], fa[t][sc], fb[t][sc]);
          f = INTO_GROUP;
          if (PROBE) {
            fac[c] = fa[t][sc];
            fac[nc + c] = fb[t][sc];
          }
          if ((c + 1) % CHUNKS_PER_GROUP == 0 || c == last) {
            merge_ml(m_t[t], l_t[t], m_g[t], l_g[t], ga[t][sc], gb[t][sc]);
            m_g[t] = -INFINITY;
            l_g[t] = 0.f;
            f |= GROUP_END;
            if (PROBE) {
              fac[2 * nc + c / CHUNKS_PER_GROUP] = ga[t][sc];
              fac[2 * nc + ng + c / CHUNKS_PER_GROUP] = gb[t][sc];
            }
          }
        }
        flags[t][sc] = f;
      }
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < DT; i++) {
      MmaAHalf a[KEYBLOCKS][3][2];
      v_terms(sm, w + WARPS * i, a);
#pragma unroll
      for (int sc = 0; sc < SUBS; sc++) {
        const MmaC acc_c = pv_tile<HD, SUB>(sm, a, sc);
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int col = c_col(lane, e), d = TILE_I * (w + WARPS * i) + c_row(lane, e), f = flags[col][sc];
          if (f & INTO_GROUP) acc_g[i][e] = scaled_sum(acc_g[i][e], fa[col][sc], acc_c.v[e], fb[col][sc]);
          if (f & GROUP_END) {
            acc_t[d][col] = scaled_sum(acc_t[d][col], ga[col][sc], acc_g[i][e], gb[col][sc]);
            acc_g[i][e] = 0.f;
          }
        }
      }
    }
  }
  __syncthreads();
  for (int i = t; i < HD * NC; i += THREADS) {
    const int d = i / NC, col = i % NC;
    if (len[col] > 0)
      out[(m0 + col / L.heads) * L.q_stride + static_cast<int64_t>(bk.h0 + head_of(col)) * HD + d] =
          __fmul_rn(acc_t[d][col], __fdiv_rn(1.f, l_t[col]));
  }
  if (PROBE) {
    // Each key's weight: exp(s - m_c) times greta_probe_factor, times 1/l.
    __syncthreads();  // the block's stores of exp(s - m_c) and factors are visible
    for (int col = 0; col < bk.n; col++) {
      const float* fac = probe.factors + (bk.h0 + col) * 2 * (nc + ng);
      float* pr = probe.probs + (bk.h0 + col) * probe_keys;
      const float inv = __fdiv_rn(1.f, l_t[col]);
      for (int64_t jk = t; jk < probe_keys; jk += THREADS)
        pr[jk] = __fmul_rn(__fmul_rn(pr[jk], greta_probe_factor(fac, jk / SUB, nc, ng)), inv);
    }
  }
}

// ---- Decode: the rows layout over one chunk a block, then two merges. ----
// A partial record (m, l, acc[HD]) per (chunk or group, head) at
// ((chunk or group) n_heads + h) (HD + 2).

// Step 1: the partial of chunk blockIdx.x / units for the block's heads.
template <int HD>
__global__ void GRETA_LAUNCH_BOUNDS(THREADS, 3)
    decode_chunk_kernel(float* part, const float* q, const float* kc, const float* vc, const int32_t* pos, Layout L,
                        float scale) {
  constexpr int DT = Dims<HD>::DTILES / WARPS;
  __shared__ Smem<HD> sm;
  __shared__ int len[NC];
  greta_allow_next_launch();
  const int64_t units = static_cast<int64_t>(L.n_kv_heads) * L.slices;
  const int64_t c = static_cast<int64_t>(blockIdx.x) / units;
  // The position is the call's (a copy no kernel overlaps): read while the kernel ahead runs.
  const int64_t n = static_cast<int64_t>(pos[0]) + 1;
  // A launch for more keys than this row has (a graph's): nothing to do
  // (chunk 0's blocks wait, so the kernel still completes after the ones ahead).
  if (c * CHUNK >= n) return;
  greta_await_prior_kernels();  // the merges of the call ahead read `part`
  const Block bk = block_of(L, static_cast<int64_t>(blockIdx.x) % units);
  const int t = static_cast<int>(threadIdx.x), lane = t % GRETA_WAVE_SIZE, w = t / GRETA_WAVE_SIZE;
  const int n_heads = L.group * L.n_kv_heads;
  if (t < NC) len[t] = t < bk.n ? static_cast<int>(n) : 0;
  load_q(sm, [&](int col) -> const float* { return col < bk.n ? q + static_cast<int64_t>(bk.h0 + col) * HD : nullptr; });
  __syncthreads();
  const int64_t c0 = c * CHUNK;
  const int rows = n - c0 < CHUNK ? static_cast<int>(n - c0) : CHUNK;
  const int64_t kv_off = static_cast<int64_t>(bk.kvh) * HD;
  load_v(sm, vc + kv_off, L.kv_stride, c0, rows);
  scores(sm, kc + kv_off, L.kv_stride, c0, rows, len, scale);
  softmax_chunk<HD, CHUNK>(sm, c0, len);
  __syncthreads();  // l_c is stored
  float* const rec = part + (c * n_heads + bk.h0) * (HD + 2);
  if (t < bk.n) {
    rec[t * (HD + 2)] = sm.m_c[t][0];
    rec[t * (HD + 2) + 1] = sm.l_c[t][0];
  }
#pragma unroll
  for (int i = 0; i < DT; i++) {
    MmaAHalf a[KEYBLOCKS][3][2];
    v_terms(sm, w + WARPS * i, a);
    const MmaC acc_c = pv_tile<HD, CHUNK>(sm, a, 0);
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int col = c_col(lane, e), d = TILE_I * (w + WARPS * i) + c_row(lane, e);
      if (col < bk.n) rec[col * (HD + 2) + 2 + d] = acc_c.v[e];
    }
  }
}

// Step 2: one thread per (group, head, dim): the group's chunk partials
// merged in order from the empty state, each 16 records' loads issued before
// their merges, into the group's record.
__global__ void decode_merge_chunks_kernel(float* out, float* grp, const float* part, const int32_t* pos,
                                           int n_heads, int head_dim) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  // 32-bit indices: groups x heads x dims is far below 2^31 (the scratch it sizes).
  const int i = static_cast<int>(global_id()), qw = n_heads * head_dim, rf = head_dim + 2;
  const int chunks = (pos[0] + CHUNK) / CHUNK, groups = (chunks + CHUNKS_PER_GROUP - 1) / CHUNKS_PER_GROUP;
  if (i >= groups * qw) return;
  const int g = i / qw, h = i % qw / head_dim, d = i % head_dim, c0 = g * CHUNKS_PER_GROUP;
  const int n = chunks - c0 < CHUNKS_PER_GROUP ? chunks - c0 : CHUNKS_PER_GROUP;
  float rm[CHUNKS_PER_GROUP], rl[CHUNKS_PER_GROUP], ra[CHUNKS_PER_GROUP];
#pragma unroll
  for (int k = 0; k < CHUNKS_PER_GROUP; k++)
    if (k < n) {
      const float* rec = part + static_cast<int64_t>((c0 + k) * n_heads + h) * rf;
      rm[k] = rec[0];
      rl[k] = rec[1];
      ra[k] = rec[2 + d];
    }
  float m_g = -INFINITY, l_g = 0.f, acc_g = 0.f;
#pragma unroll
  for (int k = 0; k < CHUNKS_PER_GROUP; k++)
    if (k < n) {
      float a, b;
      merge_ml(m_g, l_g, rm[k], rl[k], a, b);
      acc_g = scaled_sum(acc_g, a, ra[k], b);
    }
  if (groups == 1) {
    // The lone group into the empty total, as step 3 would (so a zero sum is +0), and the output.
    float m_t = -INFINITY, l_t = 0.f, a, b;
    merge_ml(m_t, l_t, m_g, l_g, a, b);
    out[i] = __fmul_rn(scaled_sum(0.f, a, acc_g, b), __fdiv_rn(1.f, l_t));
    return;
  }
  float* const o = grp + static_cast<int64_t>(g * n_heads + h) * rf;
  if (d == 0) {
    o[0] = m_g;
    o[1] = l_g;
  }
  o[2 + d] = acc_g;
}

// Step 3: one thread per (head, dim): the groups merged in order into the
// total, as prefill's total is, then the output. Launched where the call's
// keys may span more than one group; with one (the row's own count, read on
// the device), step 2 wrote the output.
__global__ void decode_merge_groups_kernel(float* out, const float* grp, const int32_t* pos, int n_heads,
                                           int head_dim) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  const int i = static_cast<int>(global_id()), rf = head_dim + 2;
  if (i >= n_heads * head_dim) return;
  const int h = i / head_dim, d = i % head_dim;
  const int chunks = (pos[0] + CHUNK) / CHUNK, groups = (chunks + CHUNKS_PER_GROUP - 1) / CHUNKS_PER_GROUP;
  if (groups == 1) return;
  float m_t = -INFINITY, l_t = 0.f, acc_t = 0.f;
  for (int g = 0; g < groups; g++) {
    const float* rec = grp + static_cast<int64_t>(g * n_heads + h) * rf;
    float a, b;
    merge_ml(m_t, l_t, rec[0], rec[1], a, b);
    acc_t = scaled_sum(acc_t, a, rec[2 + d], b);
  }
  out[i] = __fmul_rn(acc_t, __fdiv_rn(1.f, l_t));
}

#if defined(GRETA_VENDOR_NVIDIA)
// ---- Prefill on wgmma (sm_90a): 64 keys (or V dims) x 32 columns an instruction. ----
// A warpgroup's wgmma with A from registers takes each warp's 16 rows as
// mma.sync's A fragment and gives each output mma.sync's bits, so the scores
// and p.V here are the rows layout's chains, bit for bit: keys (scores) and
// dims (p.V, 64 a pass) the A rows, the 32 columns the B operand, in shared
// memory as hip/matmul.hip's ws kernel lays out its tokens ([term][chunk]
// [column] uint4 a KBLOCK).
//
// 8 positions a block at Llama's 4 heads a KV head, 4 blocks an SM (128
// registers). H100 (dev/attention_mma.hip, 4096 rows): 3.33-3.41 ms; 16
// positions (2 blocks an SM) 4.02-4.14, 4 positions 4.54. ncu: 0.50
// instructions issued a scheduler; stalls led by long scoreboard on the K
// and V loads into registers, then wait (each wgmma waited at once) and
// barrier. What would lift it: K and V split into terms once, at the cache
// write, read by TMA as A from shared memory, and two consumer warpgroups in
// ping-pong (FlashAttention-3's schedule); the tensor pipe's bound at 4096
// rows is 0.85 ms.
// Columns a block: the wgmma's n (m64n32k16, m64n16k16).
constexpr int WG_WIDE = 32, WG_NARROW = 16;

template <int HD, int WG_COLS>
struct alignas(16) WgSmem {
  static constexpr int KB = 3 * LANE_CHUNKS * WG_COLS;  // uint4 of one KBLOCK's B terms
  uint4 qt[Dims<HD>::DBLOCKS][KB];  // Q terms
  uint4 et[KEYBLOCKS][KB];          // e terms
  float e[WG_COLS][E_ROW];          // scores, then exp(s - m_c)
  float m_c[WG_COLS], fa[WG_COLS], fb[WG_COLS], l_t[WG_COLS];
  float m_g[WG_COLS], l_g[WG_COLS], m_t[WG_COLS];
  int64_t obase[WG_COLS];  // the column's row and head in out
  int len[WG_COLS], take[WG_COLS], started[WG_COLS];
};

// Column col's KBLOCK (32 contiguous floats at src; nullptr: zeros) as B
// terms at dst (a KBLOCK's [term][chunk][column] block): the activation split
// of hip/matmul.hip's split_ws_kernel.
template <int WG_COLS>
__device__ __forceinline__ void put_b_terms(uint4* dst, const float* src, int col) {
  uint4 t[3][LANE_CHUNKS];
#pragma unroll
  for (int j = 0; j < LANE_CHUNKS; j++) {
    MmaB b[3] = {{make_uint4(0, 0, 0, 0)}, {make_uint4(0, 0, 0, 0)}, {make_uint4(0, 0, 0, 0)}};
    if (src) {
      const uint4* p = reinterpret_cast<const uint4*>(src + j * LANE_K);
      act_terms(p[0], p[1], b);
    }
#pragma unroll
    for (int i = 0; i < 3; i++) t[i][j] = b[i].v;
  }
#pragma unroll
  for (int i = 0; i < 3; i++) {
    dst[(i * 4 + 0) * WG_COLS + col] = make_uint4(t[i][0].x, t[i][1].x, t[i][2].x, t[i][3].x);
    dst[(i * 4 + 1) * WG_COLS + col] = make_uint4(t[i][0].y, t[i][1].y, t[i][2].y, t[i][3].y);
    dst[(i * 4 + 2) * WG_COLS + col] = make_uint4(t[i][0].z, t[i][1].z, t[i][2].z, t[i][3].z);
    dst[(i * 4 + 3) * WG_COLS + col] = make_uint4(t[i][0].w, t[i][1].w, t[i][2].w, t[i][3].w);
  }
}
static_assert(LANE_CHUNKS == 4, "put_b_terms: four 8-k chunks a KBLOCK");

// d = the chain of one KBLOCK against the B terms at kb (wgmma, waited for).
template <int WG_COLS>
__device__ __forceinline__ void wg_kblock(float (&d)[WG_COLS / 2], const MmaAHalf (&a)[3][2], const uint4* kb) {
  uint64_t desc[3][2];
#pragma unroll
  for (int x = 0; x < 3; x++)
#pragma unroll
    for (int h = 0; h < 2; h++) desc[x][h] = wgmma_desc(kb + (x * 4 + 2 * h) * WG_COLS, WG_COLS * 16, 128);
  fence_regs(d);
  wgmma_fence();
  if constexpr (WG_COLS == WG_WIDE)
    wgmma_chain_f32_32(d, a, desc);
  else
    wgmma_chain_f32_16(d, a, desc);
  wgmma_commit();
  wgmma_wait<0>();
  fence_regs(d);
}

// One block per (positions of the layout, KV head, slice), one warpgroup:
// warp w's A rows are keys 16 w .. (scores) and dims 64 pass + 16 w .. (p.V).
// The total state's accumulators live in `out` (each element read and
// written by the one thread that holds it), scaled by 1 / l at the end.
template <int HD, int WG_COLS>
__global__ void __launch_bounds__(WARPGROUP, WG_COLS == WG_WIDE ? 4 : 5)
    wg_prefill_kernel(float* out, const float* q, const float* kc, const float* vc, const int32_t* pos, int64_t M,
                      Layout L, float scale) {
  constexpr int DB = Dims<HD>::DBLOCKS, PASSES = HD / PASS_DIMS, WG_NE = WG_COLS / 2;
  greta_await_prior_kernels();
  extern __shared__ uint4 smem_raw[];
  WgSmem<HD, WG_COLS>& sm = *reinterpret_cast<WgSmem<HD, WG_COLS>*>(smem_raw);
  const int64_t units = static_cast<int64_t>(L.n_kv_heads) * L.slices;
  const Block bk = block_of(L, static_cast<int64_t>(blockIdx.x) % units);
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) / units * L.positions;
  const int t = static_cast<int>(threadIdx.x), lane = t % GRETA_WAVE_SIZE, w = t / GRETA_WAVE_SIZE;
  const int g = lane / 4, tq = lane % 4;
  auto real = [&](int col) { return col / L.heads < L.positions && col % L.heads < bk.n && m0 + col / L.heads < M; };
  if (t < WG_COLS) {
    sm.obase[t] = (m0 + t / L.heads) * L.q_stride + static_cast<int64_t>(bk.h0 + t % L.heads) * HD;
    sm.len[t] = real(t) ? pos[m0 + t / L.heads] + 1 : 0;
    sm.m_g[t] = sm.m_t[t] = -INFINITY;
    sm.l_g[t] = sm.l_t[t] = 0.f;
    sm.started[t] = 0;
  }
  // Q terms: thread (column, KBLOCK) pairs.
  for (int i = t; i < WG_COLS * DB; i += WARPGROUP) {
    const int col = i % WG_COLS, s = i / WG_COLS;
    const float* src = real(col) ? q + (m0 + col / L.heads) * L.q_stride +
                                       static_cast<int64_t>(bk.h0 + col % L.heads) * HD + s * KBLOCK
                                 : nullptr;
    put_b_terms<WG_COLS>(sm.qt[s], src, col);
  }
  fence_async_smem();
  __syncthreads();
  int most = 0;
  for (int c = 0; c < WG_COLS; c++) most = sm.len[c] > most ? sm.len[c] : most;
  const int64_t kv_off = static_cast<int64_t>(bk.kvh) * HD;
  const float* const kbase = kc + kv_off;
  const float* const vbase = vc + kv_off;
  float acc_g[PASSES][WG_NE];
#pragma unroll
  for (int p = 0; p < PASSES; p++)
#pragma unroll
    for (int e = 0; e < WG_NE; e++) acc_g[p][e] = 0.f;
  const int chunks = (most + CHUNK - 1) / CHUNK;
  for (int c = 0; c < chunks; c++) {
    const int64_t c0 = static_cast<int64_t>(c) * CHUNK;
    const int rows = most - c0 < CHUNK ? static_cast<int>(most - c0) : CHUNK;
    // Scores: raw = ((0 + c_0) + c_1) + ..., the d KBLOCKs in order.
    float raw[WG_NE], cs[WG_NE];
#pragma unroll
    for (int e = 0; e < WG_NE; e++) raw[e] = 0.f;
#pragma unroll 1
    for (int s = 0; s < DB; s++) {
      MmaAHalf a[3][2];
      weight_terms<float>(raw_rows(kbase + c0 * L.kv_stride + TILE_I * w * L.kv_stride, L.kv_stride, rows - TILE_I * w, s * KBLOCK), a);
      wg_kblock<WG_COLS>(cs, a, sm.qt[s]);
#pragma unroll
      for (int e = 0; e < WG_NE; e++) raw[e] = __fadd_rn(raw[e], cs[e]);
    }
    __syncthreads();  // the last chunk's e and e terms are used
#pragma unroll
    for (int e = 0; e < WG_NE; e++) {
      const int j = TILE_I * w + g + 8 * ((e % 4) / 2), col = 8 * (e / 4) + 2 * tq + (e % 2);
      sm.e[col][j] = c0 + j < sm.len[col] ? __fmul_rn(raw[e], scale) : -INFINITY;
    }
    __syncthreads();
    if (t < WG_COLS) {
      float m = -INFINITY;
      for (int j = 0; j < CHUNK; j++) m = fmaxf(m, sm.e[t][j]);
      sm.m_c[t] = m;
    }
    __syncthreads();
    for (int i = t; i < WG_COLS * CHUNK; i += WARPGROUP) {
      const int col = i / CHUNK, j = i % CHUNK;
      sm.e[col][j] = c0 + j < sm.len[col] ? expf(__fadd_rn(sm.e[col][j], -sm.m_c[col])) : 0.f;
    }
    __syncthreads();
    if (t < WG_COLS) {
      float l = 0.f;
      for (int j = 0; j < CHUNK; j++) l = __fadd_rn(l, sm.e[t][j]);
      sm.take[t] = c0 < sm.len[t];
      if (sm.take[t]) merge_ml(sm.m_g[t], sm.l_g[t], sm.m_c[t], l, sm.fa[t], sm.fb[t]);
    }
    for (int i = t; i < WG_COLS * KEYBLOCKS; i += WARPGROUP) {
      const int col = i % WG_COLS, kb = i / WG_COLS;
      put_b_terms<WG_COLS>(sm.et[kb], &sm.e[col][kb * KBLOCK], col);
    }
    fence_async_smem();
    __syncthreads();
    // p.V: dims 64 pass + 16 w + ..., acc_c = (0 + c_0) + c_1 over the chunk's two key KBLOCKs.
#pragma unroll
    for (int pass = 0; pass < PASSES; pass++) {
      float acc_c[WG_NE];
#pragma unroll
      for (int e = 0; e < WG_NE; e++) acc_c[e] = 0.f;
#pragma unroll 1
      for (int kb = 0; kb < KEYBLOCKS; kb++) {
        // The lane's keys j .. j + 7 at its dims: one address, then offsets i * stride that every
        // lane shares (the cache's row stride is a launch value, so no immediate offsets here).
        const int j = kb * KBLOCK + lane_k(lane);
        const float* const v0 = vbase + (c0 + j) * L.kv_stride + PASS_DIMS * pass + TILE_I * w;
        float f[A_ROWS][LANE_K];
#pragma unroll
        for (int i = 0; i < LANE_K; i++)
#pragma unroll
          for (int r = 0; r < A_ROWS; r++) f[r][i] = j + i < rows ? v0[i * L.kv_stride + a_row(lane, r)] : 0.f;
        MmaAHalf a[3][2];
        weight_terms<float>(raw_from_rows(f), a);
        wg_kblock<WG_COLS>(cs, a, sm.et[kb]);
#pragma unroll
        for (int e = 0; e < WG_NE; e++) acc_c[e] = __fadd_rn(acc_c[e], cs[e]);
      }
#pragma unroll
      for (int e = 0; e < WG_NE; e++) {
        const int col = 8 * (e / 4) + 2 * tq + (e % 2);
        if (sm.take[col]) acc_g[pass][e] = scaled_sum(acc_g[pass][e], sm.fa[col], acc_c[e], sm.fb[col]);
      }
    }
    // A group ends at every 16th chunk and at a column's last chunk: into the
    // total. Most chunks end no column's group: the block skips it together.
    __syncthreads();
    bool ends = false;
    if (t < WG_COLS) {
      const int last = (sm.len[t] + CHUNK - 1) / CHUNK - 1;
      sm.take[t] = sm.take[t] && ((c + 1) % CHUNKS_PER_GROUP == 0 || c == last);
      ends = sm.take[t];
      if (ends) {
        merge_ml(sm.m_t[t], sm.l_t[t], sm.m_g[t], sm.l_g[t], sm.fa[t], sm.fb[t]);
        sm.m_g[t] = -INFINITY;
        sm.l_g[t] = 0.f;
      }
    }
    if (__syncthreads_or(ends)) {
#pragma unroll
      for (int pass = 0; pass < PASSES; pass++)
#pragma unroll
        for (int e = 0; e < WG_NE; e++) {
          const int col = 8 * (e / 4) + 2 * tq + (e % 2), d = PASS_DIMS * pass + TILE_I * w + g + 8 * ((e % 4) / 2);
          if (sm.take[col]) {
            float* const o = out + sm.obase[col] + d;
            *o = scaled_sum(sm.started[col] ? *o : 0.f, sm.fa[col], acc_g[pass][e], sm.fb[col]);
            acc_g[pass][e] = 0.f;
          }
        }
      __syncthreads();
      if (t < WG_COLS && sm.take[t]) sm.started[t] = 1;
    }
  }
  __syncthreads();
#pragma unroll
  for (int pass = 0; pass < PASSES; pass++)
#pragma unroll
    for (int e = 0; e < WG_NE; e++) {
      const int col = 8 * (e / 4) + 2 * tq + (e % 2), d = PASS_DIMS * pass + TILE_I * w + g + 8 * ((e % 4) / 2);
      if (sm.len[col] > 0) {
        float* const o = out + sm.obase[col] + d;
        *o = __fmul_rn(*o, __fdiv_rn(1.f, sm.l_t[col]));
      }
    }
}

template <int HD, int WG_COLS>
hipError_t launch_wg_cols(float* out, const float* q, const float* k_cache, const float* v_cache,
                          const int32_t* pos, int64_t M, const Layout& L, float scale, hipStream_t stream) {
  const size_t smem = sizeof(WgSmem<HD, WG_COLS>);
  // Above the 48 KB a block gets unasked; a host-side setting, no allocation.
  hipError_t e = hipFuncSetAttribute(reinterpret_cast<const void*>(wg_prefill_kernel<HD, WG_COLS>),
                                     hipFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (e != hipSuccess) return e;
  const int64_t tiles = (M + L.positions - 1) / L.positions;
  GRETA_LAUNCH((wg_prefill_kernel<HD, WG_COLS>), dim3(static_cast<unsigned>(tiles * L.n_kv_heads * L.slices)),
               dim3(WARPGROUP), smem, stream, out, q, k_cache, v_cache, pos, M, L, scale);
  return hipGetLastError();
}

// 32 columns a block (4 blocks an SM) where that fills the device's block
// slots; 16 (5 an SM) for prefills too short to (H100, Llama-3-8B shape:
// 291 rows 0.059-0.061 ms against 0.062-0.065, 4096 rows 4.54 against 3.33).
template <int HD>
hipError_t launch_wg_prefill(float* out, const float* q, const float* k_cache, const float* v_cache,
                             const int32_t* pos, int64_t M, int n_heads, int n_kv_heads, float scale,
                             hipStream_t stream) {
  const Layout L = layout_for(n_heads, n_kv_heads, HD, WG_WIDE);
  if ((M + L.positions - 1) / L.positions * n_kv_heads * L.slices >= 4 * static_cast<int64_t>(multiprocessors()))
    return launch_wg_cols<HD, WG_WIDE>(out, q, k_cache, v_cache, pos, M, L, scale, stream);
  return launch_wg_cols<HD, WG_NARROW>(out, q, k_cache, v_cache, pos, M, layout_for(n_heads, n_kv_heads, HD, WG_NARROW),
                                       scale, stream);
}
#endif

template <int HD>
hipError_t launch_decode(float* out, const float* q, const float* k_cache, const float* v_cache, const int32_t* pos,
                         int n_heads, int n_kv_heads, int64_t max_keys, float scale, float* partials,
                         hipStream_t stream) {
  const Layout L = layout_for(n_heads, n_kv_heads, HD, NC);
  const int64_t nc = (max_keys + CHUNK - 1) / CHUNK, ng = (nc + CHUNKS_PER_GROUP - 1) / CHUNKS_PER_GROUP;
  float* const groups = partials + static_cast<int64_t>(n_heads) * nc * (HD + 2);
  GRETA_LAUNCH(decode_chunk_kernel<HD>, dim3(static_cast<unsigned>(nc * n_kv_heads * L.slices)), dim3(THREADS), 0,
               stream, partials, q, k_cache, v_cache, pos, L, scale);
  hipError_t e = hipGetLastError();
  if (e != hipSuccess) return e;
  const int64_t qw = static_cast<int64_t>(n_heads) * HD;
  GRETA_LAUNCH(decode_merge_chunks_kernel, dim3(elementwise_blocks(ng * qw)), dim3(ELEMENTWISE_BLOCK), 0, stream,
               out, groups, partials, pos, n_heads, HD);
  e = hipGetLastError();
  if (e != hipSuccess || ng == 1) return e;
  GRETA_LAUNCH(decode_merge_groups_kernel, dim3(elementwise_blocks(qw)), dim3(ELEMENTWISE_BLOCK), 0, stream, out,
               groups, pos, n_heads, HD);
  return hipGetLastError();
}

template <int HD, bool PROBE, int SUB>
hipError_t launch_rows(float* out, const float* q, const float* k_cache, const float* v_cache, const int32_t* pos,
                       int32_t probe_pos, int64_t M, int n_heads, int n_kv_heads, float scale, ProbeOut probe,
                       hipStream_t stream) {
  const Layout L = layout_for(n_heads, n_kv_heads, HD, NC);
  const int64_t tiles = (M + L.positions - 1) / L.positions;
  GRETA_LAUNCH((chain_rows_kernel<HD, PROBE, SUB>), dim3(static_cast<unsigned>(tiles * n_kv_heads * L.slices)),
               dim3(THREADS), 0, stream, out, q, k_cache, v_cache, pos, probe_pos, M, L, scale, probe);
  return hipGetLastError();
}

// The model's chunks: decode split over blocks, prefill on wgmma where the
// device has it. The faults' (SUB 32, 16): the rows layout for every M.
template <int HD>
hipError_t attention_hd(float* out, const float* q, const float* k_cache, const float* v_cache, const int32_t* pos,
                        int64_t M, int n_heads, int n_kv_heads, int64_t max_keys, float scale, int key_chunk,
                        float* partials, hipStream_t stream) {
  const ProbeOut none{};
  if (key_chunk == CHUNK / 2)
    return launch_rows<HD, false, CHUNK / 2>(out, q, k_cache, v_cache, pos, 0, M, n_heads, n_kv_heads, scale, none, stream);
  if (key_chunk == CHUNK / 4)
    return launch_rows<HD, false, CHUNK / 4>(out, q, k_cache, v_cache, pos, 0, M, n_heads, n_kv_heads, scale, none, stream);
  if (M == 1) return launch_decode<HD>(out, q, k_cache, v_cache, pos, n_heads, n_kv_heads, max_keys, scale, partials, stream);
#if defined(GRETA_VENDOR_NVIDIA)
  if (greta_sm90a()) return launch_wg_prefill<HD>(out, q, k_cache, v_cache, pos, M, n_heads, n_kv_heads, scale, stream);
#endif
  return launch_rows<HD, false, CHUNK>(out, q, k_cache, v_cache, pos, 0, M, n_heads, n_kv_heads, scale, none, stream);
}

template <int HD>
hipError_t probe_hd(float* scores, float* probs, float* pv, const float* q, const float* k_cache,
                    const float* v_cache, int32_t pos, int n_heads, int n_kv_heads, float scale, int key_chunk,
                    float* factors, hipStream_t stream) {
  const ProbeOut probe{scores, probs, factors};
  if (key_chunk == CHUNK / 2)
    return launch_rows<HD, true, CHUNK / 2>(pv, q, k_cache, v_cache, nullptr, pos, 1, n_heads, n_kv_heads, scale, probe, stream);
  if (key_chunk == CHUNK / 4)
    return launch_rows<HD, true, CHUNK / 4>(pv, q, k_cache, v_cache, nullptr, pos, 1, n_heads, n_kv_heads, scale, probe, stream);
  return launch_rows<HD, true, CHUNK>(pv, q, k_cache, v_cache, nullptr, pos, 1, n_heads, n_kv_heads, scale, probe, stream);
}

bool chunk_ok(int key_chunk) {
  return key_chunk == 0 || key_chunk == CHUNK || key_chunk == CHUNK / 2 || key_chunk == CHUNK / 4;
}
}  // namespace

bool greta_attention_chain_runs(int n_heads, int n_kv_heads, int head_dim) {
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || (head_dim != PASS_DIMS && head_dim != 2 * PASS_DIMS)) return false;
  return greta_sm90a();
}

hipError_t greta_attention_chain(float* out, const float* q, const float* k_cache, const float* v_cache,
                                 const int32_t* pos, int64_t M, int n_heads, int n_kv_heads, int head_dim,
                                 int64_t max_keys, float scale, int key_chunk, float* partials, hipStream_t stream) {
  if (!chunk_ok(key_chunk)) return hipErrorInvalidValue;
  switch (head_dim) {
    case PASS_DIMS: return attention_hd<PASS_DIMS>(out, q, k_cache, v_cache, pos, M, n_heads, n_kv_heads, max_keys, scale, key_chunk, partials, stream);
    case 2 * PASS_DIMS: return attention_hd<2 * PASS_DIMS>(out, q, k_cache, v_cache, pos, M, n_heads, n_kv_heads, max_keys, scale, key_chunk, partials, stream);
    default: return hipErrorInvalidValue;
  }
}

hipError_t greta_attention_chain_probe(float* scores, float* probs, float* pv, const float* q, const float* k_cache,
                                       const float* v_cache, int32_t pos, int n_heads, int n_kv_heads, int head_dim,
                                       float scale, int key_chunk, float* factors, hipStream_t stream) {
  if (!chunk_ok(key_chunk)) return hipErrorInvalidValue;
  switch (head_dim) {
    case PASS_DIMS: return probe_hd<PASS_DIMS>(scores, probs, pv, q, k_cache, v_cache, pos, n_heads, n_kv_heads, scale, key_chunk, factors, stream);
    case 2 * PASS_DIMS: return probe_hd<2 * PASS_DIMS>(scores, probs, pv, q, k_cache, v_cache, pos, n_heads, n_kv_heads, scale, key_chunk, factors, stream);
    default: return hipErrorInvalidValue;
  }
}
