// Kernel lab for attention on the matrix units at fp32 accuracy, batch
// invariant: a chain for every (query row, head) that decode and prefill can
// both run, checks that they do, bit for bit, and times it against
// hip/attention.hip (which runs the CUDA-core chain of hip/attention.h).
//
// The chain (the rule hip/attention.h would state). Keys go in chunks of 64
// and chunks in groups of 16, as today; what changes is how a chunk's
// partial is made. For query column q (a row's head) and chunk c:
//   raw_j = q . k_j as hip/matmul.h's chain with f32 weights: the key row is
//     the weight (terms hi, mid, lo), q the activation (terms hi, mid, lo);
//     per KBLOCK s of the head's dims, c_s is the six term products with
//     i + j <= 2, smallest first, from zero in the matrix unit (Chain<float>,
//     mma_k32); raw = ((0 + c_0) + c_1) + ... in fp32;
//   s_j = raw_j * scale; m_c = max of the chunk's valid s_j (exact);
//   e_j = exp(s_j - m_c) for valid keys, else 0;
//   l_c = sum of e_j over the 64 keys, sequential in j (zeros add nothing);
//   acc_c[d] = the same f32 chain with V's column d as the weight (key k of
//     the chain is key j of the chunk, 2 KBLOCKs) and e as the activation:
//     ((0 + c_0) + c_1);
// then the merges of hip/attention.h, unchanged. Keys at or past a column's
// length contribute e = 0; the K and V rows past the block's longest column
// are zeros (never memory that no one wrote), so a product of a masked key
// is a zero. A column past its last chunk takes no merge at all.
//
// Layouts. The mma.sync kernels (mma_k32, vendor-neutral but for the lab's
// 8-column tiles): one layout of work computes a chunk for 8 P columns (P positions
// x the 4 query heads of a KV head) with 4 warps: warp w holds keys 16 w ..
// 16 w + 15 as the A operand (16 rows) of the score chain, and V columns
// (dims) 16 dt .. for dt = w, w + 4 as the A operand of p.V; columns are the
// B operand (8 a tile). Every output is its own row of A times its own column
// of B, so the bits of a column do not depend on P or on the other columns
// (hip/mma.h), and decode (P = 1, 4 of 8 columns used) equals prefill
// (P = 16) row for row.
//   prefill<P>  one block per (P positions, KV head): chunks in order,
//               merges in registers (group) and shared memory (total).
//   decode      one block per (KV head, chunk) writing chunk partials (three
//               blocks an SM), then one thread per (group, head, dim)
//               merging a group's chunks in order, then one per (head, dim)
//               merging the groups in order: prefill's merges, step for step.
// wg_prefill<NCOL> (sm_90a) runs that work on wgmma, one warpgroup a block
// of NCOL / 4 positions (NCOL columns: 64, 32 or 16; see its comment).
// checks: prefill<8>, prefill<16> and every wg_prefill rows == prefill<1>
//   rows, decode == prefill<1> at the same position, bit for bit; each against fp64 (rel L2 <= 5e-6, the bound
//   of test/gpu/ops.gpu.test.ts); a case where one V dim is zero for the
//   keys of the first half and negative after (the sign of a zero sum:
//   decode's masked V rows are zeros, a prefill block's are later positions).
// bench: prefill 291 and 4096 rows, decode 291, 4096 and 32768 keys, against
//   greta_attention of hip/attention.hip in the same process.
//
//
// H100 (check and bench): every check passes, bit for bit, rel L2 vs fp64
// <= 1.6e-7. Times against hip/attention.hip in the same process:
//   prefill  291 rows: mma.sync 8 a block 0.086 ms, wgmma 0.088 ms; today 0.063 ms
//   prefill 4096 rows: mma.sync 8 a block 5.62 ms, 16 8.16 ms, wgmma 4.04 ms
//                      (34 TFLOP/s); today 4.83 ms (28.5)
//   decode 291 / 4096 / 32768 keys: 123 / 789 / 842 GB/s; today 138 / 1114 / 2000
// So the chain cost decode 2.4x at 32k keys and gained prefill 1.2x at 4096
// rows: not moved into hip/attention.hip. Then decode's chunk kernel at three
// blocks an SM (it ran at one: 160 registers), m_c by shuffles (exact in any
// order), l_c's loads issued 16 at a time before its adds, and the merges in
// two levels (one thread a head and dim had merged every chunk, 512 at 32k
// keys, in a row): decode 291 / 4096 / 32768 keys 145 / 1309 / 2225 GB/s,
// hip/attention.hip 199 / 1266 / 2089 in the same process (a second run:
// 136 / 1251 / 2188 against 174 / 1207 / 2085), every check bit for bit,
// with the lab's three launches plain. Launched as hip/attention.hip's are
// (GRETA_LAUNCH: each kernel starts under the one ahead): 291 / 4096 /
// 32768 keys 14.3-14.8 us / 1.31-1.35 / 2.24-2.25 TB/s against 12.9-13.2
// us / 1.19-1.20 / 2.08-2.10 TB/s. Not kept: eight warps a block where the
// launch has a block an SM or fewer (a warp two of a key tile's four
// KBLOCKs, their c_s added in order after), 15.0-15.6 us at 291 keys.
// ncu at 32768 keys: the chunk kernel 110.9 us, DRAM 74.8% of peak, 3
// blocks an SM (registers and shared memory both), occupancy 18.75%.
// Prefill at 16 positions a block with every load of a phase issued before
// its first product (the four K KBLOCKs; both p.V passes' V before the
// softmax) and the next chunk's rows prefetched into L2: 3.886 against
// 3.885 ms at 4096 rows, not kept: the loads were not its limit then. ncu
// of that build at 4096 rows: 0.32 instructions issued a scheduler, 0.38 of
// 1.91 warps eligible; stall samples wait 113K, selected 72K, short
// scoreboard 62K, long scoreboard 55K, barrier 45K, branch 22K: no one
// limiter, too few warps with independent work. Fewer positions a block,
// so more blocks an SM (registers and shared memory halve with the columns):
//   prefill  4096 rows: 16 positions (2 blocks an SM) 4.02-4.14 ms, 8 (4 an
//     SM, 128 registers) 3.37-3.41, 4 (5 an SM) 4.54; hip/attention.hip
//     4.80-4.95: 1.42-1.45x at 8 positions (3 an SM: 3.92)
//   prefill   291 rows: 16 positions 0.084-0.088 ms, 8 0.062-0.064, 4
//     0.059-0.060; hip/attention.hip 0.059-0.061
// every one bit for bit. ncu of wg_prefill<32> at 4096 rows: 0.50
// instructions issued a scheduler (0.32 at 64 columns), 0.80 of 3.73 warps
// eligible, L1 62%, SM 48%; stall samples long scoreboard 78K (its K and V
// loads into registers, now the first), wait 76K, barrier 52K, selected
// 51K, short scoreboard 38K. Not kept: each p.V pass's V staged in shared
// memory by coalesced loads (16.6 KB more, 3 blocks an SM): 3.91 ms against
// 3.33-3.36 in the same process; m_c by warp shuffles, a warp a column at a
// time, and l_c's loads 16 at a time (decode's softmax): 3.58-3.62 ms (a
// thread's own 64 independent loads pipeline better); each warp's next A
// operand (a K KBLOCK, a p.V step's V) copied by cp.async into a slot of its
// own while the step before is split and multiplied (16-byte copies for K,
// 4-byte for V's transpose; 132 bytes of spills at 128 registers): 4.86-4.90
// ms; the next KBLOCK's K (or V) loaded into registers before this one's
// wgmma is waited for (132 bytes of spills at 128 registers): 3.45 against
// 3.33 ms. What is left is the K/V split on every block and the wgmma
// waited at once, as below. ncu of
// wg_prefill<64> at 4096 rows: issue slots 29% busy, tensor pipe 21%, 2
// blocks (8 warps) an SM, 0.37 of 1.89 warps eligible per scheduler:
// latency, each warpgroup waiting on its own wgmma chain, the split of K
// and V into terms and the sequential l_c in turn. What would change that: K and V split into terms once (where the
// cache is written), read by TMA as wgmma's A from shared memory, and two
// consumer warpgroups in ping-pong (FlashAttention-3's schedule), the wgmma
// not waited for at once. The bound that leaves: a (block, chunk) is 96
// wgmma m64n64k16 (six term products, 4 KBLOCKs of scores, 2 x 2 of p.V),
// so 4096 rows with the tensor pipe always busy take 0.85 ms (the 21%
// above), against hip/attention.hip's 4.7. Decode on the chain is faster
// than hip/attention.hip from 4096 keys and 1.1x slower at the 8B step's
// few hundred; moving the chain in also takes the probe (the trace's
// scores, probs, pv) and the planted faults' chunk sizes onto it.
//
// The chain is now the model's on sm_90a: hip/attention_chain.hip holds the
// decode kernels and wg_prefill<32> (and <16> for short prompts) in general
// form (any heads a KV head, head_dim 64 or 128, the cache's stride a launch
// value), so bench's hip/attention.hip column is that. Moved in, the wgmma
// prefill at first ran 3.84-3.89 ms at 4096 rows against this file's
// 3.35-3.38: ncu, 1.69-1.73G instructions against 1.54G. Not the runtime
// stride (a constant one: 3.98 ms); the group-end step, which every chunk
// entered per (pass, element) to test its column's flag, computing the
// output address (a division by the heads a block) as it went. Skipped by
// the whole block when no column's group ends (__syncthreads_or), with the
// addresses kept per column in shared memory: 3.46 ms.
//
//   nvcc -x cu -O3 -gencode arch=compute_90a,code=sm_90a -DGRETA_SM90A --fmad=false -std=c++17 --default-stream per-thread -Ihip -Inative dev/attention_mma.hip hip/attention.hip hip/attention_chain.hip -o attention_mma_lab
//   ./attention_mma_lab [check] [bench]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../hip/matmul.hip"  // Chain<float>, weight_terms, act_terms, mma_k32, hip/wgmma.h
#include "attention.h"

#define CHECK(call)                                                                      \
  do {                                                                                   \
    hipError_t e_ = (call);                                                              \
    if (e_ != hipSuccess) {                                                              \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, hipGetErrorString(e_)); \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)

namespace mlab {
using namespace greta_hip;
using namespace greta_mma;

constexpr int H = 32, KVH = 8, HD = 128, GROUP = H / KVH;
constexpr int QW = H * HD, KW = KVH * HD;
constexpr int CHUNK = 64, CHUNKS_PER_GROUP = 16;
constexpr int WARPS = 4, THREADS = WARPS * GRETA_WAVE_SIZE;
constexpr int DBLOCKS = HD / KBLOCK;       // KBLOCKs of a score chain
constexpr int KEYBLOCKS = CHUNK / KBLOCK;  // KBLOCKs of a p.V chain
constexpr int DTILES = HD / TILE_I;        // 16-dim tiles of p.V's A
constexpr int V_ROW = HD + 1;              // V tile row in floats: column reads by 8 keys x 8 dims hit 32 banks
constexpr int E_ROW = CHUNK + 4;           // e tile row (a column's 64 keys), 16-byte aligned
static_assert(GROUP == 4 && TILE_I * WARPS == CHUNK && DTILES % WARPS == 0, "the lab's Llama-3-8B shapes");
static_assert(TILE_J == 8, "the lab runs on NVIDIA: column tiles of 8");

// A lane's A operand of one KBLOCK as Raw<float>, from its rows' LANE_K
// consecutive k each (f[r]: row a_row(lane, r)): hip/mma.h's tiled order,
// element ((h 2 + j) A_ROWS + r) 2 + p being row r's k = 4 h + 2 j + p, the
// order weight_terms<float> takes a tile in.
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
// rows past `valid` read as zeros), k = k0 + lane_k(lane) .. + 7.
__device__ __forceinline__ Raw<float> raw_rows(const float* rows, int64_t stride, int valid, int k0) {
  const int lane = static_cast<int>(threadIdx.x) % GRETA_WAVE_SIZE;
  float f[A_ROWS][LANE_K];
#pragma unroll
  for (int r = 0; r < A_ROWS; r++) {
    const int row = a_row(lane, r);
    const float4* p = reinterpret_cast<const float4*>(rows + row * stride + k0 + lane_k(lane));
    const float4 x0 = row < valid ? p[0] : make_float4(0, 0, 0, 0), x1 = row < valid ? p[1] : make_float4(0, 0, 0, 0);
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

// The shared memory of a block of NT column tiles.
template <int NT>
struct alignas(16) Smem {
  uint4 qb[NT][DBLOCKS][3][GRETA_WAVE_SIZE];  // the columns' B operands: Q terms
  float v[CHUNK][V_ROW];
  float e[NT * 8][E_ROW];  // scores, then exp(s - m_c)
  float m_c[NT * 8], fa[NT * 8], fb[NT * 8];
  int take[NT * 8];  // the chunk merges into this column
};

// Q of the block's columns into B operands: column col = 8 nt + b_col is
// query row qrow(col) (nullptr: zeros).
template <int NT, typename QRow>
__device__ void load_q(Smem<NT>& sm, QRow qrow) {
  for (int i = static_cast<int>(threadIdx.x); i < NT * DBLOCKS * GRETA_WAVE_SIZE; i += THREADS) {
    const int lane = i % GRETA_WAVE_SIZE, s = (i / GRETA_WAVE_SIZE) % DBLOCKS, nt = i / (GRETA_WAVE_SIZE * DBLOCKS);
    const float* q = qrow(nt * 8 + b_col(lane));
    uint4 u0 = make_uint4(0, 0, 0, 0), u1 = u0;
    if (q) {
      const uint4* p = reinterpret_cast<const uint4*>(q + s * KBLOCK + lane_k(lane));
      u0 = p[0];
      u1 = p[1];
    }
    MmaB b[3];
    act_terms(u0, u1, b);
    for (int t = 0; t < 3; t++) sm.qb[nt][s][t][lane] = b[t].v;
  }
}

// The chunk's scores (keys c0 .. c0 + 63 of kbase, rows past `rows` zeros)
// for every column into sm.e: scaled, -inf past the column's length.
template <int NT>
__device__ void scores(Smem<NT>& sm, const float* kbase, int64_t c0, int rows, const int* len, float scale) {
  const int lane = static_cast<int>(threadIdx.x) % GRETA_WAVE_SIZE, w = static_cast<int>(threadIdx.x) / GRETA_WAVE_SIZE;
  float raw[NT][4];
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int e = 0; e < 4; e++) raw[nt][e] = 0.f;
  const float* krows = kbase + (c0 + TILE_I * w) * KW;
  const int valid = rows - TILE_I * w;
  // Every load of the warp's key rows goes out before the first product.
  Raw<float> rk[DBLOCKS];
#pragma unroll
  for (int s = 0; s < DBLOCKS; s++) rk[s] = raw_rows(krows, KW, valid, s * KBLOCK);
#pragma unroll
  for (int s = 0; s < DBLOCKS; s++) {
    MmaAHalf a[3][2];
    weight_terms<float>(rk[s], a);
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
      MmaB b[3];
#pragma unroll
      for (int t = 0; t < 3; t++) b[t].v = sm.qb[nt][s][t][lane];
      const MmaC c = chain_f32(a, b);
#pragma unroll
      for (int e = 0; e < 4; e++) raw[nt][e] = __fadd_rn(raw[nt][e], c.v[e]);
    }
  }
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int j = TILE_I * w + c_row(lane, e), col = nt * 8 + c_col(lane, e);
      sm.e[col][j] = c0 + j < len[col] ? __fmul_rn(raw[nt][e], scale) : -INFINITY;
    }
}

// After scores: m_c, e and l_c of each column; a column thread (t < 8 NT)
// gets its l_c. Keys past a column's length give e = 0.
template <int NT>
__device__ float softmax_chunk(Smem<NT>& sm, int64_t c0, const int* len) {
  constexpr int NC = NT * 8;
  const int t = static_cast<int>(threadIdx.x), lane = t % GRETA_WAVE_SIZE, w = t / GRETA_WAVE_SIZE;
  static_assert(CHUNK == 2 * GRETA_WAVE_SIZE, "two keys a lane");
  __syncthreads();
  // m_c is exact in any order: a warp a column, two keys a lane, then the lanes.
  for (int col = w; col < NC; col += WARPS) {
    float m = fmaxf(sm.e[col][lane], sm.e[col][lane + GRETA_WAVE_SIZE]);
#pragma unroll
    for (int o = GRETA_WAVE_SIZE / 2; o > 0; o /= 2) m = fmaxf(m, GRETA_SHFL_XOR(m, o));
    if (lane == 0) sm.m_c[col] = m;
  }
  __syncthreads();
  for (int i = t; i < NC * CHUNK; i += THREADS) {
    const int col = i / CHUNK, j = i % CHUNK;
    sm.e[col][j] = c0 + j < len[col] ? expf(__fadd_rn(sm.e[col][j], -sm.m_c[col])) : 0.f;
  }
  __syncthreads();
  // l_c in j order, each 16 keys' loads issued before their adds.
  float l = 0.f;
  if (t < NC)
    for (int j0 = 0; j0 < CHUNK; j0 += 16) {
      float v[16];
#pragma unroll
      for (int i = 0; i < 16; i++) v[i] = sm.e[t][j0 + i];
#pragma unroll
      for (int i = 0; i < 16; i++) l = __fadd_rn(l, v[i]);
    }
  return l;
}

// The chunk's V rows c0 .. c0 + 63 (rows past `rows` zeros) into sm.v.
// Every load issued before the first store.
template <int NT>
__device__ void load_v(Smem<NT>& sm, const float* vbase, int64_t c0, int rows) {
  constexpr int LOADS = CHUNK * HD / 4 / THREADS;
  float4 x[LOADS];
#pragma unroll
  for (int k = 0; k < LOADS; k++) {
    const int i = static_cast<int>(threadIdx.x) + k * THREADS, j = i / (HD / 4), d4 = i % (HD / 4);
    x[k] = j < rows ? reinterpret_cast<const float4*>(vbase + (c0 + j) * KW)[d4] : make_float4(0, 0, 0, 0);
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

// acc_c of dim tile dt (16 dims) and column tile nt, per lane's 4 elements.
template <int NT>
__device__ __forceinline__ MmaC pv_tile(const Smem<NT>& sm, const MmaAHalf (&a)[KEYBLOCKS][3][2], int nt) {
  const int lane = static_cast<int>(threadIdx.x) % GRETA_WAVE_SIZE;
  MmaC acc;
#pragma unroll
  for (int e = 0; e < 4; e++) acc.v[e] = 0.f;
#pragma unroll
  for (int kb = 0; kb < KEYBLOCKS; kb++) {
    const uint4* p = reinterpret_cast<const uint4*>(&sm.e[nt * 8 + b_col(lane)][kb * KBLOCK + lane_k(lane)]);
    MmaB b[3];
    act_terms(p[0], p[1], b);
    const MmaC c = chain_f32(a[kb], b);
#pragma unroll
    for (int e = 0; e < 4; e++) acc.v[e] = __fadd_rn(acc.v[e], c.v[e]);
  }
  return acc;
}

// p.V's A operand of dim tile dt: V's columns 16 dt .. as rows, keys as k.
template <int NT>
__device__ __forceinline__ void v_terms(const Smem<NT>& sm, int dt, MmaAHalf (&a)[KEYBLOCKS][3][2]) {
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

// Prefill: one block per (P positions, KV head), columns 4 p + h.
template <int P>
__global__ void __launch_bounds__(THREADS, 1)
    prefill_kernel(float* out, const float* q, const float* kc, const float* vc, const int32_t* pos, int64_t M) {
  constexpr int NT = P * GROUP / 8 > 0 ? P * GROUP / 8 : 1, NC = NT * 8;
  extern __shared__ uint4 smem_raw[];
  Smem<NT>& sm = *reinterpret_cast<Smem<NT>*>(smem_raw);
  float* const acc_t = reinterpret_cast<float*>(&sm + 1);  // [HD][NC]: the total state's accumulators
  __shared__ int len[NC];
  __shared__ float m_g[NC], l_g[NC], m_t[NC], l_t[NC];
  const int kvh = static_cast<int>(blockIdx.x % KVH);
  const int64_t m0 = static_cast<int64_t>(blockIdx.x / KVH) * P;
  const int t = static_cast<int>(threadIdx.x), lane = t % GRETA_WAVE_SIZE, w = t / GRETA_WAVE_SIZE;
  const float scale = __fdiv_rn(1.f, sqrtf(static_cast<float>(HD)));
  if (t < NC) {
    const int p = t / GROUP;
    len[t] = p < P && m0 + p < M ? pos[m0 + p] + 1 : 0;
    m_g[t] = m_t[t] = -INFINITY;
    l_g[t] = l_t[t] = 0.f;
  }
  for (int i = t; i < HD * NC; i += THREADS) acc_t[i] = 0.f;
  load_q(sm, [&](int col) -> const float* {
    const int p = col / GROUP, h = col % GROUP;
    return p < P && m0 + p < M ? q + (m0 + p) * QW + (kvh * GROUP + h) * HD : nullptr;
  });
  __syncthreads();
  int most = 0;
  for (int c = 0; c < NC; c++) most = len[c] > most ? len[c] : most;
  const float* kbase = kc + kvh * HD;
  const float* vbase = vc + kvh * HD;
  float acc_g[DTILES / WARPS][NT][4];
#pragma unroll
  for (int i = 0; i < DTILES / WARPS; i++)
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc_g[i][nt][e] = 0.f;
  const int chunks = (most + CHUNK - 1) / CHUNK;
  for (int c = 0; c < chunks; c++) {
    const int64_t c0 = static_cast<int64_t>(c) * CHUNK;
    const int rows = most - c0 < CHUNK ? static_cast<int>(most - c0) : CHUNK;
    __syncthreads();  // the last chunk's V and e are used
    load_v(sm, vbase, c0, rows);
    scores(sm, kbase, c0, rows, len, scale);
    const float l_c = softmax_chunk(sm, c0, len);
    if (t < NC) {
      sm.take[t] = c0 < len[t];
      if (sm.take[t]) merge_ml(m_g[t], l_g[t], sm.m_c[t], l_c, sm.fa[t], sm.fb[t]);
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < DTILES / WARPS; i++) {
      MmaAHalf a[KEYBLOCKS][3][2];
      v_terms(sm, w + WARPS * i, a);
#pragma unroll
      for (int nt = 0; nt < NT; nt++) {
        const MmaC acc_c = pv_tile(sm, a, nt);
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int col = nt * 8 + c_col(lane, e);
          if (sm.take[col]) acc_g[i][nt][e] = scaled_sum(acc_g[i][nt][e], sm.fa[col], acc_c.v[e], sm.fb[col]);
        }
      }
    }
    // A group ends at every 16th chunk and at a column's last chunk: into the total.
    __syncthreads();
    if (t < NC) {
      const int last = (len[t] + CHUNK - 1) / CHUNK - 1;
      sm.take[t] = sm.take[t] && ((c + 1) % CHUNKS_PER_GROUP == 0 || c == last);
      if (sm.take[t]) {
        merge_ml(m_t[t], l_t[t], m_g[t], l_g[t], sm.fa[t], sm.fb[t]);
        m_g[t] = -INFINITY;
        l_g[t] = 0.f;
      }
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < DTILES / WARPS; i++)
#pragma unroll
      for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int col = nt * 8 + c_col(lane, e), d = TILE_I * (w + WARPS * i) + c_row(lane, e);
          if (sm.take[col]) {
            acc_t[d * NC + col] = scaled_sum(acc_t[d * NC + col], sm.fa[col], acc_g[i][nt][e], sm.fb[col]);
            acc_g[i][nt][e] = 0.f;
          }
        }
  }
  __syncthreads();
  for (int i = t; i < HD * NC; i += THREADS) {
    const int d = i / NC, col = i % NC, p = col / GROUP, h = col % GROUP;
    if (len[col] > 0) out[(m0 + p) * QW + (kvh * GROUP + h) * HD + d] = __fmul_rn(acc_t[i], __fdiv_rn(1.f, l_t[col]));
  }
}

template <int P>
size_t prefill_smem() {
  constexpr int NT = P * GROUP / 8 > 0 ? P * GROUP / 8 : 1;
  return sizeof(Smem<NT>) + static_cast<size_t>(HD) * NT * 8 * 4;
}

// Decode, step 1: the partial of chunk blockIdx.x / KVH for the 4 heads of KV
// head blockIdx.x % KVH at row 0 (position pos[0]): m_c, l_c, acc_c[HD] per
// head at part + ((chunk KVH + kvh) GROUP + h) (HD + 2).
__global__ void __launch_bounds__(THREADS, 3)
    decode_chunk_kernel(float* part, const float* q, const float* kc, const float* vc, const int32_t* pos) {
  constexpr int NT = 1, NC = 8;
  extern __shared__ uint4 smem_raw[];
  Smem<NT>& sm = *reinterpret_cast<Smem<NT>*>(smem_raw);
  __shared__ int len[NC];
  const int kvh = static_cast<int>(blockIdx.x % KVH), c = static_cast<int>(blockIdx.x / KVH);
  const int t = static_cast<int>(threadIdx.x), lane = t % GRETA_WAVE_SIZE, w = t / GRETA_WAVE_SIZE;
  const float scale = __fdiv_rn(1.f, sqrtf(static_cast<float>(HD)));
  greta_allow_next_launch();
  const int n = pos[0] + 1;
  greta_await_prior_kernels();  // the merges of the call ahead read `part`
  if (t < NC) len[t] = t < GROUP ? n : 0;
  load_q(sm, [&](int col) -> const float* { return col < GROUP ? q + (kvh * GROUP + col) * HD : nullptr; });
  __syncthreads();
  const int64_t c0 = static_cast<int64_t>(c) * CHUNK;
  const int rows = n - c0 < CHUNK ? static_cast<int>(n - c0) : CHUNK;
  load_v(sm, vc + kvh * HD, c0, rows);
  scores(sm, kc + kvh * HD, c0, rows, len, scale);
  const float l_c = softmax_chunk(sm, c0, len);
  float* const rec = part + (static_cast<int64_t>(c) * KVH + kvh) * GROUP * (HD + 2);
  if (t < GROUP) {
    rec[t * (HD + 2)] = sm.m_c[t];
    rec[t * (HD + 2) + 1] = l_c;
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < DTILES / WARPS; i++) {
    MmaAHalf a[KEYBLOCKS][3][2];
    v_terms(sm, w + WARPS * i, a);
    const MmaC acc_c = pv_tile(sm, a, 0);
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int col = c_col(lane, e), d = TILE_I * (w + WARPS * i) + c_row(lane, e);
      if (col < GROUP) rec[col * (HD + 2) + 2 + d] = acc_c.v[e];
    }
  }
}

// Decode, step 2: one thread per (group, head, dim): the group's chunk
// partials merged in order from the empty state, each 16 records' loads
// issued before their merges; record (m_g, l_g, acc_g[HD]) per (group, head)
// at grp + (g H + h) (HD + 2).
__global__ void decode_merge_chunks_kernel(float* grp, const float* part, const int32_t* pos) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int chunks = (pos[0] + 1 + CHUNK - 1) / CHUNK, groups = (chunks + CHUNKS_PER_GROUP - 1) / CHUNKS_PER_GROUP;
  if (i >= static_cast<int64_t>(groups) * QW) return;
  const int g = static_cast<int>(i / QW), h = static_cast<int>(i % QW) / HD, d = static_cast<int>(i % QW) % HD;
  const int kvh = h / GROUP, hh = h % GROUP, c0 = g * CHUNKS_PER_GROUP;
  const int n = chunks - c0 < CHUNKS_PER_GROUP ? chunks - c0 : CHUNKS_PER_GROUP;
  float rm[CHUNKS_PER_GROUP], rl[CHUNKS_PER_GROUP], ra[CHUNKS_PER_GROUP];
#pragma unroll
  for (int k = 0; k < CHUNKS_PER_GROUP; k++)
    if (k < n) {
      const float* rec = part + ((static_cast<int64_t>(c0 + k) * KVH + kvh) * GROUP + hh) * (HD + 2);
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
  float* const o = grp + (static_cast<int64_t>(g) * H + h) * (HD + 2);
  if (d == 0) {
    o[0] = m_g;
    o[1] = l_g;
  }
  o[2 + d] = acc_g;
}

// Decode, step 3: one thread per (head, dim): the groups merged in order into
// the total, as prefill's registers do.
__global__ void decode_merge_groups_kernel(float* out, const float* grp, const int32_t* pos) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= QW) return;
  const int h = i / HD, d = i % HD;
  const int chunks = (pos[0] + 1 + CHUNK - 1) / CHUNK, groups = (chunks + CHUNKS_PER_GROUP - 1) / CHUNKS_PER_GROUP;
  float m_t = -INFINITY, l_t = 0.f, acc_t = 0.f;
  for (int g = 0; g < groups; g++) {
    const float* rec = grp + (static_cast<int64_t>(g) * H + h) * (HD + 2);
    float a, b;
    merge_ml(m_t, l_t, rec[0], rec[1], a, b);
    acc_t = scaled_sum(acc_t, a, rec[2 + d], b);
  }
  out[i] = __fmul_rn(acc_t, __fdiv_rn(1.f, l_t));
}

// ---- Prefill on wgmma (sm_90a): the same chain, 64 keys x 64 columns an instruction group. ----
// A warpgroup's wgmma with A from registers takes each warp's 16 rows as
// mma.sync's A fragment and gives each output mma.sync's bits (hip/wgmma.h),
// so this kernel's scores and p.V are the mma_k32 chains above, bit for bit:
// keys (scores) and dims (p.V) are the A rows, the 64 columns of 16
// positions the B operand, in shared memory as hip/matmul.hip's ws kernel
// lays out its tokens ([term][chunk][column] uint4 a KBLOCK).

// d = one KBLOCK of the f32 chain (Chain<float>: twelve k16 instructions,
// the first from zero): A terms a[w][h] from registers, B term x half h
// through desc[x][h].
__device__ __forceinline__ void wgmma_chain_f32_64(float (&d)[32], const MmaAHalf (&a)[3][2], const uint64_t (&desc)[3][2]) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "{\n.reg .pred pf, pt;\nsetp.ne.b32 pf, 0, 0;\nsetp.eq.b32 pt, 0, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %60, pf, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%36, %37, %38, %39}, %61, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%40, %41, %42, %43}, %58, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%44, %45, %46, %47}, %59, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%48, %49, %50, %51}, %56, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%52, %53, %54, %55}, %57, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %58, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%36, %37, %38, %39}, %59, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%40, %41, %42, %43}, %56, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%44, %45, %46, %47}, %57, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %56, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%36, %37, %38, %39}, %57, pt, 1, 1, 0;\n"
      "}\n"
      : GRETA_WG_D4(0), GRETA_WG_D4(1), GRETA_WG_D4(2), GRETA_WG_D4(3), GRETA_WG_D4(4), GRETA_WG_D4(5), GRETA_WG_D4(6),
        GRETA_WG_D4(7)
      : GRETA_WG_F32_IN(a, desc));
#else
  __trap();
#endif
}

// wgmma_chain_f32_64's twelve instructions at 32 columns: hip/wgmma.h's wgmma_chain_f32_32.

// The same at 16 columns: hip/wgmma.h's wgmma_chain_f32_16.

// NCOL columns a block (NCOL / 4 positions): 64, or 32 with half the
// registers and shared memory, so more blocks an SM.
template <int NCOL>
struct alignas(16) WgSmem {
  static constexpr int KB = 3 * LANE_CHUNKS * NCOL;  // uint4 of one KBLOCK's B terms
  uint4 qt[DBLOCKS][KB];    // Q terms
  uint4 et[KEYBLOCKS][KB];  // e terms
  float e[NCOL][E_ROW];     // scores, then exp(s - m_c)
  float m_c[NCOL], fa[NCOL], fb[NCOL], l_t[NCOL];
  float m_g[NCOL], l_g[NCOL], m_t[NCOL];
  int len[NCOL], take[NCOL], started[NCOL];
};

// Column col's LANE_K x 4 floats of one KBLOCK (32 contiguous k at src) as
// B terms at dst (a KBLOCK's [term][chunk][column] block), as split_ws_kernel.
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
  if constexpr (WG_COLS == 64)
    wgmma_chain_f32_64(d, a, desc);
  else if constexpr (WG_COLS == 32)
    wgmma_chain_f32_32(d, a, desc);
  else
    wgmma_chain_f32_16(d, a, desc);
  wgmma_commit();
  wgmma_wait<0>();
  fence_regs(d);
}

// One block per (16 positions, KV head), one warpgroup: warp w's A rows are
// keys 16 w .. (scores) and dims 64 pass + 16 w .. (p.V). The total state's
// accumulators live in `out` (each element read and written by the one
// thread that holds it), scaled by 1 / l at the end.
template <int WG_COLS>
__global__ void __launch_bounds__(WARPGROUP, WG_COLS == 64 ? 2 : WG_COLS == 32 ? 4 : 5)
    wg_prefill_kernel(float* out, const float* q, const float* kc, const float* vc, const int32_t* pos, int64_t M) {
  constexpr int WG_P = WG_COLS / GROUP, NE = WG_COLS / 2;  // positions; accumulators a thread
  extern __shared__ uint4 smem_raw[];
  WgSmem<WG_COLS>& sm = *reinterpret_cast<WgSmem<WG_COLS>*>(smem_raw);
  const int kvh = static_cast<int>(blockIdx.x % KVH);
  const int64_t m0 = static_cast<int64_t>(blockIdx.x / KVH) * WG_P;
  const int t = static_cast<int>(threadIdx.x), lane = t % GRETA_WAVE_SIZE, w = t / GRETA_WAVE_SIZE;
  const int g = lane / 4, tq = lane % 4;
  const float scale = __fdiv_rn(1.f, sqrtf(static_cast<float>(HD)));
  if (t < WG_COLS) {
    const int p = t / GROUP;
    sm.len[t] = m0 + p < M ? pos[m0 + p] + 1 : 0;
    sm.m_g[t] = sm.m_t[t] = -INFINITY;
    sm.l_g[t] = sm.l_t[t] = 0.f;
    sm.started[t] = 0;
  }
  // Q terms: thread (column, KBLOCK) pairs.
  for (int i = t; i < WG_COLS * DBLOCKS; i += WARPGROUP) {
    const int col = i % WG_COLS, s = i / WG_COLS, p = col / GROUP, h = col % GROUP;
    put_b_terms<WG_COLS>(sm.qt[s], m0 + p < M ? q + (m0 + p) * QW + (kvh * GROUP + h) * HD + s * KBLOCK : nullptr, col);
  }
  fence_async_smem();
  __syncthreads();
  int most = 0;
  for (int c = 0; c < WG_COLS; c++) most = sm.len[c] > most ? sm.len[c] : most;
  const float* const kbase = kc + kvh * HD;
  const float* const vbase = vc + kvh * HD;
  float acc_g[2][NE];
#pragma unroll
  for (int p = 0; p < 2; p++)
#pragma unroll
    for (int e = 0; e < NE; e++) acc_g[p][e] = 0.f;
  const int chunks = (most + CHUNK - 1) / CHUNK;
  for (int c = 0; c < chunks; c++) {
    const int64_t c0 = static_cast<int64_t>(c) * CHUNK;
    const int rows = most - c0 < CHUNK ? static_cast<int>(most - c0) : CHUNK;
    // Scores: raw = ((0 + c_0) + c_1) + ..., the d KBLOCKs in order.
    float raw[NE], cs[NE];
#pragma unroll
    for (int e = 0; e < NE; e++) raw[e] = 0.f;
#pragma unroll 1
    for (int s = 0; s < DBLOCKS; s++) {
      MmaAHalf a[3][2];
      weight_terms<float>(raw_rows(kbase + (c0 + TILE_I * w) * KW, KW, rows - TILE_I * w, s * KBLOCK), a);
      wg_kblock<WG_COLS>(cs, a, sm.qt[s]);
#pragma unroll
      for (int e = 0; e < NE; e++) raw[e] = __fadd_rn(raw[e], cs[e]);
    }
    __syncthreads();  // the last chunk's e and e terms are used
#pragma unroll
    for (int e = 0; e < NE; e++) {
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
    for (int pass = 0; pass < 2; pass++) {
      float acc_c[NE];
#pragma unroll
      for (int e = 0; e < NE; e++) acc_c[e] = 0.f;
#pragma unroll 1
      for (int kb = 0; kb < KEYBLOCKS; kb++) {
        float f[A_ROWS][LANE_K];
#pragma unroll
        for (int r = 0; r < A_ROWS; r++) {
          const int d = 64 * pass + TILE_I * w + a_row(lane, r), j = kb * KBLOCK + lane_k(lane);
#pragma unroll
          for (int i = 0; i < LANE_K; i++) f[r][i] = j + i < rows ? vbase[(c0 + j + i) * KW + d] : 0.f;
        }
        MmaAHalf a[3][2];
        weight_terms<float>(raw_from_rows(f), a);
        wg_kblock<WG_COLS>(cs, a, sm.et[kb]);
#pragma unroll
        for (int e = 0; e < NE; e++) acc_c[e] = __fadd_rn(acc_c[e], cs[e]);
      }
#pragma unroll
      for (int e = 0; e < NE; e++) {
        const int col = 8 * (e / 4) + 2 * tq + (e % 2);
        if (sm.take[col]) acc_g[pass][e] = scaled_sum(acc_g[pass][e], sm.fa[col], acc_c[e], sm.fb[col]);
      }
    }
    // A group ends at every 16th chunk and at a column's last chunk: into the total.
    __syncthreads();
    if (t < WG_COLS) {
      const int last = (sm.len[t] + CHUNK - 1) / CHUNK - 1;
      sm.take[t] = sm.take[t] && ((c + 1) % CHUNKS_PER_GROUP == 0 || c == last);
      if (sm.take[t]) {
        merge_ml(sm.m_t[t], sm.l_t[t], sm.m_g[t], sm.l_g[t], sm.fa[t], sm.fb[t]);
        sm.m_g[t] = -INFINITY;
        sm.l_g[t] = 0.f;
      }
    }
    __syncthreads();
#pragma unroll
    for (int pass = 0; pass < 2; pass++)
#pragma unroll
      for (int e = 0; e < NE; e++) {
        const int col = 8 * (e / 4) + 2 * tq + (e % 2), d = 64 * pass + TILE_I * w + g + 8 * ((e % 4) / 2);
        if (sm.take[col]) {
          float* const o = out + (m0 + col / GROUP) * QW + (kvh * GROUP + col % GROUP) * HD + d;
          *o = scaled_sum(sm.started[col] ? *o : 0.f, sm.fa[col], acc_g[pass][e], sm.fb[col]);
          acc_g[pass][e] = 0.f;
        }
      }
    __syncthreads();
    if (t < WG_COLS && sm.take[t]) sm.started[t] = 1;
  }
  __syncthreads();
#pragma unroll
  for (int pass = 0; pass < 2; pass++)
#pragma unroll
    for (int e = 0; e < NE; e++) {
      const int col = 8 * (e / 4) + 2 * tq + (e % 2), d = 64 * pass + TILE_I * w + g + 8 * ((e % 4) / 2);
      if (sm.len[col] > 0) {
        float* const o = out + (m0 + col / GROUP) * QW + (kvh * GROUP + col % GROUP) * HD + d;
        *o = __fmul_rn(*o, __fdiv_rn(1.f, sm.l_t[col]));
      }
    }
}

template <int NCOL>
void wg_prefill(float* out, const float* q, const float* kc, const float* vc, const int32_t* pos, int64_t M) {
  const size_t smem = sizeof(WgSmem<NCOL>);
  constexpr int P = NCOL / GROUP;
  CHECK(hipFuncSetAttribute(reinterpret_cast<const void*>(wg_prefill_kernel<NCOL>),
                            hipFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  wg_prefill_kernel<NCOL><<<static_cast<unsigned>((M + P - 1) / P * KVH), WARPGROUP, smem>>>(out, q, kc, vc, pos, M);
  CHECK(hipGetLastError());
}

// ---- host ----
uint64_t rng_state = 0x9e3779b97f4a7c15ull;
float uniform() {  // [-1, 1)
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return static_cast<float>(static_cast<int64_t>(rng_state >> 40) - (1 << 23)) / (1 << 23);
}
struct Buf {
  void* p = nullptr;
  size_t bytes = 0;
  void ensure(size_t n) {
    if (n <= bytes) return;
    if (p) CHECK(hipFree(p));
    CHECK(hipMalloc(&p, n));
    bytes = n;
  }
  float* f() const { return static_cast<float*>(p); }
  int32_t* i() const { return static_cast<int32_t*>(p); }
};

template <int P>
void prefill(float* out, const float* q, const float* kc, const float* vc, const int32_t* pos, int64_t M) {
  const size_t smem = prefill_smem<P>();
  CHECK(hipFuncSetAttribute(reinterpret_cast<const void*>(prefill_kernel<P>), hipFuncAttributeMaxDynamicSharedMemorySize,
                            static_cast<int>(smem)));
  prefill_kernel<P><<<static_cast<unsigned>((M + P - 1) / P * KVH), THREADS, smem>>>(out, q, kc, vc, pos, M);
  CHECK(hipGetLastError());
}

Buf part, grp;
// Decode of one row at position pos_host (pos: that value on the device).
void decode(float* out, const float* q, const float* kc, const float* vc, const int32_t* pos, int32_t pos_host) {
  const int chunks = (pos_host + 1 + CHUNK - 1) / CHUNK, groups = (chunks + CHUNKS_PER_GROUP - 1) / CHUNKS_PER_GROUP;
  part.ensure(static_cast<size_t>(chunks) * KVH * GROUP * (HD + 2) * 4);
  grp.ensure(static_cast<size_t>(groups) * H * (HD + 2) * 4);
  const size_t smem = sizeof(Smem<1>);
  CHECK(hipFuncSetAttribute(reinterpret_cast<const void*>(decode_chunk_kernel), hipFuncAttributeMaxDynamicSharedMemorySize,
                            static_cast<int>(smem)));
  // Each launch starts under the one ahead, as hip/attention.hip's do (GRETA_LAUNCH).
  GRETA_LAUNCH(decode_chunk_kernel, static_cast<unsigned>(chunks * KVH), THREADS, smem, 0, part.f(), q, kc, vc, pos);
  CHECK(hipGetLastError());
  GRETA_LAUNCH(decode_merge_chunks_kernel, static_cast<unsigned>(groups * QW / 128), 128, 0, 0, grp.f(), part.f(), pos);
  CHECK(hipGetLastError());
  GRETA_LAUNCH(decode_merge_groups_kernel, QW / 128, 128, 0, 0, out, grp.f(), pos);
  CHECK(hipGetLastError());
}

// fp64 attention of query row qrow at position p (keys 0 .. p).
void reference(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v, int64_t qrow,
               int64_t p, std::vector<double>& out) {
  out.assign(QW, 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(HD));
  std::vector<double> s(p + 1);
  for (int h = 0; h < H; h++) {
    const float* qh = &q[qrow * QW + h * HD];
    const int64_t off = (h / GROUP) * HD;
    double mx = -INFINITY;
    for (int64_t j = 0; j <= p; j++) {
      double d = 0;
      for (int i = 0; i < HD; i++) d += static_cast<double>(qh[i]) * k[j * KW + off + i];
      s[j] = d * scale;
      mx = std::max(mx, s[j]);
    }
    double sum = 0;
    for (int64_t j = 0; j <= p; j++) sum += (s[j] = std::exp(s[j] - mx));
    for (int64_t j = 0; j <= p; j++)
      for (int i = 0; i < HD; i++) out[h * HD + i] += s[j] / sum * v[j * KW + off + i];
  }
}
double rel_l2(const float* got, const double* want, size_t n) {
  double d = 0, w = 0;
  for (size_t i = 0; i < n; i++) {
    d += (got[i] - want[i]) * (got[i] - want[i]);
    w += want[i] * want[i];
  }
  return std::sqrt(d / std::max(w, 1e-300));
}

int failures = 0;
void expect(bool ok, const char* what) {
  std::printf("%s  %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) failures++;
}

// Causal prefill of M rows from position 0 over a cache of M rows: prefill<16>
// against prefill<1> row for row, the last rows against decode, a sample of
// rows against fp64. zero_v: V's dim 5 of KV head 0 zero for keys before
// M / 2 and negative after, so rows just before M / 2 sum only zeros there
// while a 16-position block also holds later keys (masked, e = 0) whose
// products are -0.
void check_case(int64_t M, bool zero_v) {
  std::vector<float> q(M * QW), k(M * KW), v(M * KW);
  for (auto& x : q) x = uniform();
  for (auto& x : k) x = uniform();
  for (auto& x : v) x = uniform();
  if (zero_v)
    for (int64_t j = 0; j < M; j++) v[j * KW + 5] = j < M / 2 ? 0.f : -std::fabs(v[j * KW + 5]) - 0.5f;
  Buf dq, dk, dv, dpos, o16, o1, od;
  dq.ensure(q.size() * 4);
  dk.ensure(k.size() * 4);
  dv.ensure(v.size() * 4);
  dpos.ensure(M * 4);
  o16.ensure(M * QW * 4);
  o1.ensure(M * QW * 4);
  od.ensure(QW * 4);
  std::vector<int32_t> pos(M);
  for (int64_t m = 0; m < M; m++) pos[m] = static_cast<int32_t>(m);
  CHECK(hipMemcpy(dq.p, q.data(), q.size() * 4, hipMemcpyHostToDevice));
  CHECK(hipMemcpy(dk.p, k.data(), k.size() * 4, hipMemcpyHostToDevice));
  CHECK(hipMemcpy(dv.p, v.data(), v.size() * 4, hipMemcpyHostToDevice));
  CHECK(hipMemcpy(dpos.p, pos.data(), M * 4, hipMemcpyHostToDevice));
  prefill<1>(o1.f(), dq.f(), dk.f(), dv.f(), dpos.i(), M);
  std::vector<float> h16(M * QW), h1(M * QW), hd(QW);
  CHECK(hipMemcpy(h1.data(), o1.p, h1.size() * 4, hipMemcpyDeviceToHost));
  char what[200];
  for (int P : {8, 16, 0, -1, -2}) {  // 0: wgmma, 16 positions a block; -1: 8; -2: 4
    CHECK(hipMemset(o16.p, 0xff, M * QW * 4));
    if (P == 8) prefill<8>(o16.f(), dq.f(), dk.f(), dv.f(), dpos.i(), M);
    else if (P == 16) prefill<16>(o16.f(), dq.f(), dk.f(), dv.f(), dpos.i(), M);
    else if (P == 0) wg_prefill<64>(o16.f(), dq.f(), dk.f(), dv.f(), dpos.i(), M);
    else if (P == -1) wg_prefill<32>(o16.f(), dq.f(), dk.f(), dv.f(), dpos.i(), M);
    else wg_prefill<16>(o16.f(), dq.f(), dk.f(), dv.f(), dpos.i(), M);
    CHECK(hipMemcpy(h16.data(), o16.p, h16.size() * 4, hipMemcpyDeviceToHost));
    int64_t differ = 0;
    for (int64_t m = 0; m < M; m++)
      if (std::memcmp(&h16[m * QW], &h1[m * QW], QW * 4) != 0) differ++;
    std::snprintf(what, sizeof what, "M=%lld%s: %s rows equal prefill<1> rows bit for bit (%lld of %lld differ)",
                  (long long)M, zero_v ? " (a zero V dim)" : "",
                  P == 8    ? "prefill<8>"
                  : P == 16 ? "prefill<16>"
                  : P == 0  ? "wgmma prefill"
                  : P == -1 ? "wgmma prefill, 8 positions"
                            : "wgmma prefill, 4 positions",
                  (long long)differ, (long long)M);
    expect(differ == 0, what);
  }
  // Decode of rows M - 1, M / 2 - 1 and 0: the cache holds all M rows, the row sees its own.
  for (int64_t m : {M - 1, M / 2 > 0 ? M / 2 - 1 : int64_t(0), int64_t(0)}) {
    decode(od.f(), dq.f() + m * QW, dk.f(), dv.f(), dpos.i() + m, pos[m]);
    CHECK(hipMemcpy(hd.data(), od.p, QW * 4, hipMemcpyDeviceToHost));
    std::vector<double> ref;
    reference(q, k, v, m, m, ref);
    const bool same = std::memcmp(hd.data(), &h1[m * QW], QW * 4) == 0;
    const double e1 = rel_l2(&h1[m * QW], ref.data(), QW);
    std::snprintf(what, sizeof what, "M=%lld row %lld: decode equals prefill bit for bit: %s; rel L2 vs fp64 %.2e (bound 5e-6)",
                  (long long)M, (long long)m, same ? "yes" : "NO", e1);
    expect(same && e1 <= 5e-6, what);
  }
}

float time_ms(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
float timed(F f, int reps) {
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  f();
  std::vector<float> t;
  for (int i = 0; i < reps; i++) {
    CHECK(cudaEventRecord(a, 0));
    f();
    CHECK(cudaEventRecord(b, 0));
    CHECK(cudaEventSynchronize(b));
    float ms;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  return time_ms(t);
}

void bench() {
  const int64_t T = 32768;
  Buf dq, dk, dv, dpos, o, scr;
  const int64_t M = 4096;
  dq.ensure(M * QW * 4);
  dk.ensure(T * KW * 4);
  dv.ensure(T * KW * 4);
  dpos.ensure(T * 4);
  o.ensure(M * QW * 4);
  {
    std::vector<float> h(T * KW);
    for (auto& x : h) x = uniform();
    CHECK(hipMemcpy(dk.p, h.data(), h.size() * 4, hipMemcpyHostToDevice));
    for (auto& x : h) x = uniform();
    CHECK(hipMemcpy(dv.p, h.data(), h.size() * 4, hipMemcpyHostToDevice));
    std::vector<float> hq(M * QW);
    for (auto& x : hq) x = uniform();
    CHECK(hipMemcpy(dq.p, hq.data(), hq.size() * 4, hipMemcpyHostToDevice));
    std::vector<int32_t> pos(T);
    for (int64_t m = 0; m < T; m++) pos[m] = static_cast<int32_t>(m);
    CHECK(hipMemcpy(dpos.p, pos.data(), T * 4, hipMemcpyHostToDevice));
  }
  for (int64_t rows : {int64_t(291), M}) {
    scr.ensure(greta_attention_scratch_bytes(rows, H, HD, rows) + 16);
    const float ours8 = timed([&] { prefill<8>(o.f(), dq.f(), dk.f(), dv.f(), dpos.i(), rows); }, 5);
    const float ours = timed([&] { prefill<16>(o.f(), dq.f(), dk.f(), dv.f(), dpos.i(), rows); }, 5);
    const float wg = timed([&] { wg_prefill<64>(o.f(), dq.f(), dk.f(), dv.f(), dpos.i(), rows); }, 5);
    const float wg8 = timed([&] { wg_prefill<32>(o.f(), dq.f(), dk.f(), dv.f(), dpos.i(), rows); }, 5);
    const float wg4 = timed([&] { wg_prefill<16>(o.f(), dq.f(), dk.f(), dv.f(), dpos.i(), rows); }, 5);
    const float today = timed([&] {
      CHECK(greta_attention(o.f(), dq.f(), dk.f(), dv.f(), dpos.i(), rows, H, KVH, HD, rows, nullptr, 0, scr.f(), 0));
    }, 5);
    const double flops = 2.0 * 2 * H * HD * (double(rows) * (rows + 1) / 2);
    std::printf("| prefill %5lld rows | mma.sync, 8 positions a block %8.3f ms %6.1f TFLOP/s, 16 %8.3f ms %6.1f TFLOP/s "
                "| wgmma %8.3f ms %6.1f TFLOP/s, 8 positions %8.3f ms %6.1f TFLOP/s, 4 %8.3f ms %6.1f TFLOP/s "
                "| hip/attention.hip %8.3f ms %6.1f TFLOP/s |\n",
                (long long)rows, ours8, flops / (ours8 * 1e-3) / 1e12, ours, flops / (ours * 1e-3) / 1e12, wg,
                flops / (wg * 1e-3) / 1e12, wg8, flops / (wg8 * 1e-3) / 1e12, wg4, flops / (wg4 * 1e-3) / 1e12, today,
                flops / (today * 1e-3) / 1e12);
  }
  for (int64_t keys : {int64_t(291), int64_t(4096), T}) {
    const int32_t p = static_cast<int32_t>(keys - 1);
    scr.ensure(greta_attention_scratch_bytes(1, H, HD, keys) + 16);
    const float ours = timed([&] { decode(o.f(), dq.f(), dk.f(), dv.f(), dpos.i() + p, p); }, 15);
    const float today = timed([&] {
      CHECK(greta_attention(o.f(), dq.f(), dk.f(), dv.f(), dpos.i() + p, 1, H, KVH, HD, keys, nullptr, 0, scr.f(), 0));
    }, 15);
    const double gb = 2.0 * keys * KW * 4 / 1e9;
    std::printf("| decode %6lld keys | matrix chain %8.4f ms %7.1f GB/s | hip/attention.hip %8.4f ms %7.1f GB/s |\n",
                (long long)keys, ours, gb / (ours * 1e-3), today, gb / (today * 1e-3));
  }
}

}  // namespace mlab

int main(int argc, char** argv) {
  using namespace mlab;
  hipDeviceProp_t prop;
  CHECK(hipGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  const bool all = argc < 2;
  for (int i = 1; i < argc || all; i++) {
    const char* mode = all ? "check" : argv[i];
    if (std::strcmp(mode, "check") == 0) {
      for (int64_t M : {int64_t(1), int64_t(17), int64_t(64), int64_t(65), int64_t(291), int64_t(1100)}) check_case(M, false);
      check_case(291, true);
    }
    if (std::strcmp(mode, "bench") == 0 || all) bench();
    if (all) break;
  }
  std::printf("%d failures\n", failures);
  return failures ? 1 : 0;
}
