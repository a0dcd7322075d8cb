#include "matmul.h"
#include "mma.h"

namespace {
using namespace greta_hip;
using namespace greta_mma;

// ---- The CUDA-core path: shapes with K % 8 != 0 (see matmul.h). ----

constexpr int WAVES = 4;  // waves per block, side by side in N
constexpr int COLS = 4;   // output columns per wave
constexpr int ROWS = 8;   // output rows per wave tile

// 8 consecutive elements as floats, with one 16-byte load (two for f32).
__device__ __forceinline__ void load8(const float* p, float (&o)[8]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0];
  const float4 b = reinterpret_cast<const float4*>(p)[1];
  o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w;
  o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
}

__device__ __forceinline__ void load8(const bf16* p, float (&o)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    o[2 * i] = __uint_as_float(w[i] << 16);
    o[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ void load8(const f16* p, float (&o)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    o[2 * i] = to_f32(f16{static_cast<uint16_t>(w[i] & 0xffffu)});
    o[2 * i + 1] = to_f32(f16{static_cast<uint16_t>(w[i] >> 16)});
  }
}

// Blocks are numbered row tile fastest: the blocks that read one slice of
// weights run together, so for prefill the slice comes from HBM once and from
// L2 for the other row tiles.
template <typename W>
__global__ void simt_kernel(GretaMatmulOuts out, const float* __restrict__ x, const W* __restrict__ w, int64_t M,
                              int64_t N, int64_t K, int64_t row_tiles) {
  const int lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int64_t block = blockIdx.x;
  const int64_t m0 = (block % row_tiles) * ROWS;
  const int64_t n0 = ((block / row_tiles) * WAVES + threadIdx.x / GRETA_WAVE_SIZE) * COLS;
  if (n0 >= N) return;  // whole waves leave; no block barrier follows
  const int cols = static_cast<int>(N - n0 < COLS ? N - n0 : COLS);
  const int rows = static_cast<int>(M - m0 < ROWS ? M - m0 : ROWS);
  float acc[ROWS][COLS];
#pragma unroll
  for (int r = 0; r < ROWS; r++)
#pragma unroll
    for (int c = 0; c < COLS; c++) acc[r][c] = 0.f;

  if (K % 8 == 0) {
    for (int64_t k = static_cast<int64_t>(lane) * 8; k < K; k += 8 * GRETA_WAVE_SIZE) {
      float wv[COLS][8];
#pragma unroll
      for (int c = 0; c < COLS; c++) {
        if (c < cols) {
          load8(w + (n0 + c) * K + k, wv[c]);
        } else {
#pragma unroll
          for (int j = 0; j < 8; j++) wv[c][j] = 0.f;
        }
      }
#pragma unroll
      for (int r = 0; r < ROWS; r++) {
        if (r < rows) {
          float xv[8];
          load8(x + (m0 + r) * K + k, xv);
#pragma unroll
          for (int c = 0; c < COLS; c++)
#pragma unroll
            for (int j = 0; j < 8; j++) acc[r][c] = __fmaf_rn(xv[j], wv[c][j], acc[r][c]);
        }
      }
    }
  } else {
    for (int64_t k = lane; k < K; k += GRETA_WAVE_SIZE) {
      float wv[COLS];
#pragma unroll
      for (int c = 0; c < COLS; c++) wv[c] = c < cols ? to_f32(w[(n0 + c) * K + k]) : 0.f;
#pragma unroll
      for (int r = 0; r < ROWS; r++) {
        if (r < rows) {
          const float xv = x[(m0 + r) * K + k];
#pragma unroll
          for (int c = 0; c < COLS; c++) acc[r][c] = __fmaf_rn(xv, wv[c], acc[r][c]);
        }
      }
    }
  }
#pragma unroll
  for (int c = 0; c < COLS; c++) {
    const int64_t n = n0 + c;
    int s = 0;
    while (s + 1 < out.count && n >= out.end[s]) s++;
    const int64_t begin = s ? out.end[s - 1] : 0;
    float* const col = out.ptr[s] + (n - begin);
    const int64_t ld = out.end[s] - begin;
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
      const float v = wave_sum(acc[r][c]);
      // Every lane holds every sum; spread the stores over the lanes.
      if (lane == (r * COLS + c) % GRETA_WAVE_SIZE && r < rows && c < cols) col[(m0 + r) * ld] = v;
    }
  }
}

template <typename W>
hipError_t launch_simt(const GretaMatmulOuts& out, const float* x, const void* w, int64_t M, int64_t N, int64_t K, hipStream_t stream) {
  const int64_t row_tiles = (M + ROWS - 1) / ROWS;
  const int64_t col_blocks = (N + WAVES * COLS - 1) / (WAVES * COLS);
  if (row_tiles * col_blocks > 0x7fffffff) return hipErrorInvalidValue;
  dim3 grid(static_cast<unsigned>(row_tiles * col_blocks));
  dim3 block(WAVES * GRETA_WAVE_SIZE);
  hipLaunchKernelGGL(simt_kernel<W>, grid, block, 0, stream, out, x, static_cast<const W*>(w), M, N, K, row_tiles);
  return hipGetLastError();
}

// ---- The matrix-unit path. ----

// Output (m, n) goes to the output whose column range holds n.
__device__ __forceinline__ void store_out(const GretaMatmulOuts& out, int64_t m, int64_t n, float v) {
  int s = 0;
  while (s + 1 < out.count && n >= out.end[s]) s++;
  const int64_t begin = s ? out.end[s - 1] : 0;
  out.ptr[s][m * (out.end[s] - begin) + (n - begin)] = v;
}

// A weight of type W as a sum of bf16 terms, each exact: bf16 is itself, f16
// (11 significant bits) is hi + lo, f32 is hi + mid + lo.
template <typename W> struct Terms;
template <> struct Terms<bf16> { static constexpr int N = 1; };
template <> struct Terms<f16> { static constexpr int N = 2; };
template <> struct Terms<float> { static constexpr int N = 3; };

// One lane's LANE_K consecutive weights of one row, as loaded.
template <typename W>
struct Raw {
  uint4 v[LANE_K * sizeof(W) / sizeof(uint4)];
};

template <typename W>
__device__ __forceinline__ void weight_terms(const Raw<W> (&raw)[A_ROWS], MmaA (&a)[Terms<W>::N]) {
#pragma unroll
  for (int r = 0; r < A_ROWS; r++) {
    if constexpr (Terms<W>::N == 1) {
      a[0].row[r] = raw[r].v[0];
    } else if constexpr (Terms<W>::N == 2) {
      const uint32_t u[4] = {raw[r].v[0].x, raw[r].v[0].y, raw[r].v[0].z, raw[r].v[0].w};
      float f[LANE_K];
#pragma unroll
      for (int i = 0; i < 4; i++) {
        f[2 * i] = to_f32(f16{static_cast<uint16_t>(u[i] & 0xffffu)});
        f[2 * i + 1] = to_f32(f16{static_cast<uint16_t>(u[i] >> 16)});
      }
      split2(f, a[0].row[r], a[1].row[r]);
    } else {
      const float f[LANE_K] = {__uint_as_float(raw[r].v[0].x), __uint_as_float(raw[r].v[0].y),
                               __uint_as_float(raw[r].v[0].z), __uint_as_float(raw[r].v[0].w),
                               __uint_as_float(raw[r].v[1].x), __uint_as_float(raw[r].v[1].y),
                               __uint_as_float(raw[r].v[1].z), __uint_as_float(raw[r].v[1].w)};
      split3(f, a[0].row[r], a[1].row[r], a[2].row[r]);
    }
  }
}

// The activations' LANE_K floats (two uint4) as hi, mid, lo.
__device__ __forceinline__ void act_terms(uint4 u0, uint4 u1, MmaB (&b)[3]) {
  const float f[LANE_K] = {__uint_as_float(u0.x), __uint_as_float(u0.y), __uint_as_float(u0.z), __uint_as_float(u0.w),
                           __uint_as_float(u1.x), __uint_as_float(u1.y), __uint_as_float(u1.z), __uint_as_float(u1.w)};
  split3(f, b[0].v, b[1].v, b[2].v);
}

// One KBLOCK's contribution c_s: the products of activation term i (0 hi,
// 1 mid, 2 lo) and weight term j with i + j <= 2, smallest first, chained from
// zero in the matrix unit. Dropped: i + j >= 3, each below 2^-26 |x w| (see
// matmul.h). Both kernels run this table; the prefill kernel interleaves the
// chains of its tiles, which reorders nothing within any one chain.
template <typename W> struct Chain;
template <> struct Chain<bf16> {  // x terms 2 1 0, weight term 0
  static constexpr int STEPS = 3;
  __device__ static constexpr int x_term(int i) { return 2 - i; }
  __device__ static constexpr int w_term(int) { return 0; }
};
template <> struct Chain<f16> {  // (x, w): (2,0) (1,1) (1,0) (0,1) (0,0)
  static constexpr int STEPS = 5;
  __device__ static constexpr int x_term(int i) { return i == 0 ? 2 : i <= 2 ? 1 : 0; }
  __device__ static constexpr int w_term(int i) { return i == 1 || i == 3 ? 1 : 0; }
};
template <> struct Chain<float> {  // (x, w): (2,0) (1,1) (0,2) (1,0) (0,1) (0,0)
  static constexpr int STEPS = 6;
  __device__ static constexpr int x_term(int i) { return i == 0 ? 2 : i == 1 || i == 3 ? 1 : 0; }
  __device__ static constexpr int w_term(int i) { return i == 2 ? 2 : i == 1 || i == 4 ? 1 : 0; }
};

// Shared-memory index of 16-byte chunk c of row r. Rows of 128 bytes swap
// neighbouring chunks on odd rows, so the 8 lanes of a load phase (two rows)
// hit all 32 banks; rows of 64 bytes already do.
template <int CHUNKS>
__device__ __forceinline__ int chunk_at(int r, int c) {
  return r * CHUNKS + (CHUNKS >= 8 ? (c ^ (r & 1)) : c);
}

// Prefill: a block computes BN weight rows x BT tokens; warp (wn, wt) FN x TM
// tiles. Both operands go through shared memory in STAGES KBLOCK stages
// (cp.async on NVIDIA); once a stage has landed, the block splits its
// activations into bf16 terms once (each thread one lane chunk), for every
// warp to read. Per KBLOCK every tile's c_s is formed
// (the FN x TM chains interleaved: the matrix unit's latency is hidden by
// independent chains) and added to its accumulator: the chain of matmul.h.
// MINB: blocks an SM should hold (registers capped to fit).
template <typename W, int WN, int WT, int FN, int TM, int STAGES, int MINB>
__global__ void __launch_bounds__(WN * WT * GRETA_WAVE_SIZE, MINB)
    mma_tiled_kernel(GretaMatmulOuts out, const float* __restrict__ x, const W* __restrict__ w, int64_t M, int64_t N,
                     int64_t K, int64_t token_tiles) {
  constexpr int THREADS = WN * WT * GRETA_WAVE_SIZE;
  constexpr int BN = WN * FN * TILE_I;
  constexpr int BT = WT * TM * TILE_J;
  constexpr int WCH = KBLOCK * static_cast<int>(sizeof(W)) / 16;  // chunks of a weight row per stage
  constexpr int XCH = KBLOCK * static_cast<int>(sizeof(float)) / 16;
  constexpr int WPER = LANE_K * static_cast<int>(sizeof(W)) / 16;  // chunks a lane reads per row
  constexpr int W_ELEMS = 16 / static_cast<int>(sizeof(W));
  constexpr int X_ELEMS = 16 / static_cast<int>(sizeof(float));
  constexpr int XT = KBLOCK / LANE_K;  // lane chunks of a token row
  __shared__ uint4 ws[STAGES][BN * WCH];
  __shared__ uint4 xs[STAGES][BT * XCH];
  __shared__ uint4 xt[3][BT * XT];  // the split stage: term, token row, lane chunk (64-byte rows)

  const int lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int warp = threadIdx.x / GRETA_WAVE_SIZE;
  const int wn = warp % WN;
  const int wt = warp / WN;
  const int64_t n0 = (blockIdx.x / token_tiles) * BN;
  const int64_t m0 = (blockIdx.x % token_tiles) * BT;
  const int64_t S = (K + KBLOCK - 1) / KBLOCK;

  // Each thread copies the same chunk column of rows r0, r0 + RS, ... in every
  // stage: one pointer each, advanced by KBLOCK a stage (RS even keeps the
  // swizzle of chunk_at, so the shared-memory offsets are constants).
  static_assert(THREADS % WCH == 0 && THREADS % XCH == 0 && (BN * WCH) % THREADS == 0 && (BT * XCH) % THREADS == 0,
                "the block copies whole stages");
  constexpr int WRS = THREADS / WCH, XRS = THREADS / XCH;
  static_assert(WRS % 2 == 0 && XRS % 2 == 0, "row steps keep the swizzle");
  const int wr0 = threadIdx.x / WCH, wc = threadIdx.x % WCH;
  const int xr0 = threadIdx.x / XCH, xc = threadIdx.x % XCH;
  const W* const wbase = w + (n0 + wr0) * K + wc * W_ELEMS;
  const float* const xbase = x + (m0 + xr0) * K + xc * X_ELEMS;
  const int wdst = chunk_at<WCH>(wr0, wc), xdst = chunk_at<XCH>(xr0, xc);
  auto load = [&](int st, int64_t s) {
    const int64_t k0 = s * KBLOCK;
#pragma unroll
    for (int i = 0; i < BN * WCH / THREADS; i++) {
      const bool ok = n0 + wr0 + i * WRS < N && k0 + wc * W_ELEMS < K;
      copy16_async(&ws[st][wdst + i * WRS * WCH], ok ? wbase + i * WRS * K + k0 : w, ok);
    }
#pragma unroll
    for (int i = 0; i < BT * XCH / THREADS; i++) {
      const bool ok = m0 + xr0 + i * XRS < M && k0 + xc * X_ELEMS < K;
      copy16_async(&xs[st][xdst + i * XRS * XCH], ok ? xbase + i * XRS * K + k0 : x, ok);
    }
  };

  MmaC acc[FN][TM];
#pragma unroll
  for (int f = 0; f < FN; f++)
#pragma unroll
    for (int t = 0; t < TM; t++) acc[f][t] = mma_zero();

#pragma unroll
  for (int st = 0; st < STAGES - 1; st++) {
    if (st < S) load(st, st);
    copy_commit();
  }
  const int wchunk = lane_k(lane) / W_ELEMS;
  for (int64_t s = 0; s < S; s++) {
    copy_wait<STAGES - 2>();
    __syncthreads();
    if (s + STAGES - 1 < S) load(static_cast<int>((s + STAGES - 1) % STAGES), s + STAGES - 1);
    copy_commit();
    const int st = static_cast<int>(s % STAGES);
#pragma unroll
    for (int u = threadIdx.x; u < BT * XT; u += THREADS) {
      const int r = u / XT, c = u % XT;
      MmaB b[3];
      act_terms(xs[st][chunk_at<XCH>(r, 2 * c)], xs[st][chunk_at<XCH>(r, 2 * c + 1)], b);
#pragma unroll
      for (int i = 0; i < 3; i++) xt[i][u] = b[i].v;
    }
    __syncthreads();

    MmaA a[FN][Terms<W>::N];
#pragma unroll
    for (int f = 0; f < FN; f++) {
      Raw<W> raw[A_ROWS];
#pragma unroll
      for (int r = 0; r < A_ROWS; r++) {
        const int row = (wn * FN + f) * TILE_I + a_row(lane, r);
#pragma unroll
        for (int i = 0; i < WPER; i++) raw[r].v[i] = ws[st][chunk_at<WCH>(row, wchunk + i)];
      }
      weight_terms<W>(raw, a[f]);
    }
    MmaB b[TM][3];
#pragma unroll
    for (int t = 0; t < TM; t++) {
      const int row = (wt * TM + t) * TILE_J + b_col(lane);
#pragma unroll
      for (int i = 0; i < 3; i++) b[t][i].v = xt[i][row * XT + lane_k(lane) / LANE_K];
    }
    MmaC c[FN][TM];
#pragma unroll
    for (int f = 0; f < FN; f++)
#pragma unroll
      for (int t = 0; t < TM; t++) c[f][t] = mma_zero();
#pragma unroll
    for (int i = 0; i < Chain<W>::STEPS; i++)
#pragma unroll
      for (int f = 0; f < FN; f++)
#pragma unroll
        for (int t = 0; t < TM; t++) mma_k32(c[f][t], a[f][Chain<W>::w_term(i)], b[t][Chain<W>::x_term(i)]);
#pragma unroll
    for (int f = 0; f < FN; f++)
#pragma unroll
      for (int t = 0; t < TM; t++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[f][t].v[e] = acc[f][t].v[e] + c[f][t].v[e];
  }
#pragma unroll
  for (int f = 0; f < FN; f++)
#pragma unroll
    for (int t = 0; t < TM; t++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int64_t n = n0 + (wn * FN + f) * TILE_I + c_row(lane, e);
        const int64_t m = m0 + (wt * TM + t) * TILE_J + c_col(lane, e);
        if (n < N && m < M) store_out(out, m, n, acc[f][t].v[e]);
      }
}

// Small M (<= TM tiles of tokens, decode included): one block per FN x 16
// weight rows, its KW warps taking turns over the KBLOCKs (warp w: blocks w,
// w + KW, ...) so that enough loads are in flight; operands load straight from
// global memory, R blocks per warp per round, the next round's loads issued
// before this round's products. Each c_s goes to shared memory, and one thread
// per accumulator adds them in increasing s: the very chain the prefill
// kernel keeps in registers.
template <typename W, int FN, int TM, int KW, int R>
struct RowsRound {
  Raw<W> w[R][FN][A_ROWS];
  uint4 x[R][TM][2];
};

template <typename W, int FN, int TM, int KW, int R>
__global__ void __launch_bounds__(KW * GRETA_WAVE_SIZE)
    mma_rows_kernel(GretaMatmulOuts out, const float* __restrict__ x, const W* __restrict__ w, int64_t M, int64_t N,
                    int64_t K) {
  constexpr int THREADS = KW * GRETA_WAVE_SIZE;
  constexpr int POS = FN * TM * 4 * GRETA_WAVE_SIZE;  // accumulators of one warp's tiles
  constexpr int PER = (POS + THREADS - 1) / THREADS;  // accumulators per adding thread
  constexpr int SLOTS = KW * R;
  __shared__ float slot[2][SLOTS][POS];
  using Round = RowsRound<W, FN, TM, KW, R>;

  const int lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int kw = threadIdx.x / GRETA_WAVE_SIZE;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * FN * TILE_I;
  const int64_t S = (K + KBLOCK - 1) / KBLOCK;

  auto load = [&](Round& rd, int64_t base) {
#pragma unroll
    for (int j = 0; j < R; j++) {
      const int64_t s = base + j * KW + kw;
      const int64_t k = s * KBLOCK + lane_k(lane);
      const bool in = s < S && k < K;
#pragma unroll
      for (int f = 0; f < FN; f++)
#pragma unroll
        for (int r = 0; r < A_ROWS; r++) {
          const int64_t n = n0 + f * TILE_I + a_row(lane, r);
          const uint4* src = reinterpret_cast<const uint4*>(w + n * K + k);
#pragma unroll
          for (int i = 0; i < static_cast<int>(LANE_K * sizeof(W) / sizeof(uint4)); i++)
            rd.w[j][f][r].v[i] = in && n < N ? src[i] : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
      for (int t = 0; t < TM; t++) {
        const int64_t m = t * TILE_J + b_col(lane);
        const uint4* xsrc = reinterpret_cast<const uint4*>(x + m * K + k);
        const bool xin = in && m < M;
        rd.x[j][t][0] = xin ? xsrc[0] : make_uint4(0, 0, 0, 0);
        rd.x[j][t][1] = xin ? xsrc[1] : make_uint4(0, 0, 0, 0);
      }
    }
  };
  float total[PER];
#pragma unroll
  for (int i = 0; i < PER; i++) total[i] = 0.f;
  // Products of one round into slot[buf], then each thread adds its
  // accumulators' c_s in increasing s. Two slot buffers: one barrier a round.
  auto round = [&](const Round& rd, int64_t base, int buf) {
#pragma unroll
    for (int j = 0; j < R; j++) {
#pragma unroll
      for (int t = 0; t < TM; t++) {
        MmaB b[3];
        act_terms(rd.x[j][t][0], rd.x[j][t][1], b);
#pragma unroll
        for (int f = 0; f < FN; f++) {
          MmaA a[Terms<W>::N];
          weight_terms<W>(rd.w[j][f], a);
          MmaC c = mma_zero();
#pragma unroll
          for (int i = 0; i < Chain<W>::STEPS; i++) mma_k32(c, a[Chain<W>::w_term(i)], b[Chain<W>::x_term(i)]);
#pragma unroll
          for (int e = 0; e < 4; e++) slot[buf][j * KW + kw][((f * TM + t) * 4 + e) * GRETA_WAVE_SIZE + lane] = c.v[e];
        }
      }
    }
    __syncthreads();
    const int64_t count = S - base < SLOTS ? S - base : SLOTS;
#pragma unroll
    for (int q = 0; q < PER; q++) {
      const int p = threadIdx.x + q * THREADS;
      if (POS % THREADS == 0 || p < POS)
        for (int i = 0; i < count; i++) total[q] = total[q] + slot[buf][i][p];
    }
  };
  Round ra, rb;
  load(ra, 0);
  for (int64_t base = 0; base < S; base += 2 * SLOTS) {
    load(rb, base + SLOTS);
    round(ra, base, 0);
    if (base + SLOTS >= S) break;
    load(ra, base + 2 * SLOTS);
    round(rb, base + SLOTS, 1);
  }
#pragma unroll
  for (int q = 0; q < PER; q++) {
    const int p = threadIdx.x + q * THREADS;
    if (POS % THREADS != 0 && p >= POS) continue;
    const int l = p % GRETA_WAVE_SIZE, e = (p / GRETA_WAVE_SIZE) % 4, ft = p / (4 * GRETA_WAVE_SIZE);
    const int f = ft / TM, t = ft % TM;
    const int64_t n = n0 + f * TILE_I + c_row(l, e);
    const int64_t m = t * TILE_J + c_col(l, e);
    if (n < N && m < M) store_out(out, m, n, total[q]);
  }
}

// Decode (M up to one token tile) where the activations' bf16 terms fit in
// shared memory (GEMV_SMEM_MAX: M = 1 takes 6 bytes per k, 26 KB at K = 4096)
// and K is whole KBLOCKs. The block first splits x once for its NT warps (the
// rows kernel above splits it again for every 16 weight rows, the split's 44
// instructions a KBLOCK then outweighing the 6 products); each warp then runs
// the chain of FN x 16 weight rows over all of K alone. Weights go straight
// from global memory into a ring of P KBLOCKs of registers, each refilled P
// ahead once used, so P KB a warp stay in flight and no barrier ties the
// warps after the split. U KBLOCKs are taken at a time: U independent chains
// hide the matrix unit's latency (no branch in the loop keeps the compiler
// from interleaving them), and their c_s are added to the accumulator in
// increasing s: the chain the prefill kernel keeps in registers.
// What no output uses is never masked: rows past N read row N - 1, token
// columns past M read column M - 1, and blocks past K read the split's P
// spare slots and keep stale weights; an instruction's result for one row and
// column depends on that row and column alone (hip/mma.h).
// Shared memory: the split [S + P][min(M, TILE_J)][LANE_CHUNKS][3] uint4 (odd
// stride of 3: a wave's reads are free of bank conflicts).
template <int P>
size_t gemv_smem_bytes(int64_t M, int64_t K) {
  return static_cast<size_t>((K / KBLOCK + P) * (M < TILE_J ? M : TILE_J) * LANE_CHUNKS * 3) * sizeof(uint4);
}

// Registers capped at what 16 warps an SM may hold (128 a thread on NVIDIA):
// the ring is the bytes in flight, the warps what hides the chains.
template <typename W, int FN, int NT, int P, int U>
__global__ void GRETA_LAUNCH_BOUNDS(NT* GRETA_WAVE_SIZE, NT * GRETA_WAVE_SIZE >= 512 ? 1 : 512 / (NT * GRETA_WAVE_SIZE))
    mma_gemv_kernel(GretaMatmulOuts out, const float* __restrict__ x, const W* __restrict__ w, int64_t M, int64_t N,
                    int64_t K) {
  static_assert(P % U == 0, "gemv kernel: the ring is taken U KBLOCKs at a time");
  // The split's layout: one KBLOCK of one token tile is a wave's B operand,
  // one uint4 triple a lane (wave 64 on AMD: 16 tokens x 4 chunks).
  static_assert(TILE_J * LANE_CHUNKS == GRETA_WAVE_SIZE, "gemv kernel: a wave is the (token, chunk) pairs of a KBLOCK");
  constexpr int WPER = LANE_K * static_cast<int>(sizeof(W)) / 16;  // 16-byte loads a lane makes per row
  constexpr int STEP = KBLOCK * static_cast<int>(sizeof(W)) / 16;  // uint4 from one KBLOCK of a row to the next
  constexpr int THREADS = NT * GRETA_WAVE_SIZE;
  extern __shared__ uint4 gemv_smem[];

  const int lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int64_t n0 = (static_cast<int64_t>(blockIdx.x) * NT + threadIdx.x / GRETA_WAVE_SIZE) * FN * TILE_I;
  const int xr = static_cast<int>(M < TILE_J ? M : TILE_J);
  const int S = static_cast<int>(K / KBLOCK);
  const int se = n0 < N ? S : 0;            // rows past N: no work, only the barrier
  const int xstride = xr * LANE_CHUNKS * 3;  // uint4 of the split per KBLOCK
  uint4* const xs = gemv_smem;

  // This lane's weight rows (a_row) at its k offset (lane_k), one pointer each.
  const uint4* wp[FN][A_ROWS];
#pragma unroll
  for (int f = 0; f < FN; f++)
#pragma unroll
    for (int r = 0; r < A_ROWS; r++) {
      const int64_t n = n0 + f * TILE_I + a_row(lane, r);
      wp[f][r] = reinterpret_cast<const uint4*>(w + (n < N ? n : N - 1) * K + lane_k(lane));
    }
  Raw<W> ring[P][FN][A_ROWS];
  auto load = [&](Raw<W> (&dst)[FN][A_ROWS], int s) {
#pragma unroll
    for (int f = 0; f < FN; f++)
#pragma unroll
      for (int r = 0; r < A_ROWS; r++)
#pragma unroll
        for (int i = 0; i < WPER; i++) dst[f][r].v[i] = wp[f][r][static_cast<int64_t>(s) * STEP + i];
  };
  // The first weights fly while the block splits the activations, XB lane
  // chunks a thread at a time with their loads issued first.
#pragma unroll
  for (int j = 0; j < P; j++)
    if (j < se) load(ring[j], j);
  constexpr int XB = 4;
  for (int t = 0; t < xr; t++)
    for (int i0 = 0; i0 < S * LANE_CHUNKS; i0 += XB * THREADS) {
      uint4 raw[XB][2];
#pragma unroll
      for (int j = 0; j < XB; j++) {
        const int i = i0 + j * THREADS + static_cast<int>(threadIdx.x);
        if (i < S * LANE_CHUNKS) {
          const uint4* const src = reinterpret_cast<const uint4*>(x + t * K + static_cast<int64_t>(i) * LANE_K);
          raw[j][0] = src[0];
          raw[j][1] = src[1];
        }
      }
#pragma unroll
      for (int j = 0; j < XB; j++) {
        const int i = i0 + j * THREADS + static_cast<int>(threadIdx.x);
        if (i < S * LANE_CHUNKS) {
          MmaB b[3];
          act_terms(raw[j][0], raw[j][1], b);
          uint4* const dst = xs + (i / LANE_CHUNKS) * xstride + (t * LANE_CHUNKS + i % LANE_CHUNKS) * 3;
#pragma unroll
          for (int e = 0; e < 3; e++) dst[e] = b[e].v;
        }
      }
    }
  __syncthreads();

  MmaC acc[FN];
#pragma unroll
  for (int f = 0; f < FN; f++) acc[f] = mma_zero();
  // This lane's B operand in a KBLOCK's split.
  const int col = b_col(lane) < xr ? b_col(lane) : xr - 1;
  const int xoff = (col * LANE_CHUNKS + lane_k(lane) / LANE_K) * 3;
  for (int s0 = 0; s0 < se; s0 += P) {
    const uint4* const xb = xs + s0 * xstride + xoff;
#pragma unroll
    for (int j0 = 0; j0 < P; j0 += U) {
      MmaC c[U][FN];
#pragma unroll
      for (int u = 0; u < U; u++) {
        MmaB b[3];
#pragma unroll
        for (int i = 0; i < 3; i++) b[i].v = xb[(j0 + u) * xstride + i];
#pragma unroll
        for (int f = 0; f < FN; f++) {
          MmaA a[Terms<W>::N];
          weight_terms<W>(ring[j0 + u][f], a);
          c[u][f] = mma_zero();
#pragma unroll
          for (int i = 0; i < Chain<W>::STEPS; i++) mma_k32(c[u][f], a[Chain<W>::w_term(i)], b[Chain<W>::x_term(i)]);
        }
      }
#pragma unroll
      for (int u = 0; u < U; u++)
        if (s0 + j0 + u + P < se) load(ring[j0 + u], s0 + j0 + u + P);
#pragma unroll
      for (int u = 0; u < U; u++) {
        if (s0 + j0 + u >= se) break;
#pragma unroll
        for (int f = 0; f < FN; f++)
#pragma unroll
          for (int e = 0; e < 4; e++) acc[f].v[e] = acc[f].v[e] + c[u][f].v[e];
      }
    }
  }
#pragma unroll
  for (int f = 0; f < FN; f++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int64_t n = n0 + f * TILE_I + c_row(lane, e);
      const int64_t m = c_col(lane, e);
      if (n < N && m < M) store_out(out, m, n, acc[f].v[e]);
    }
}

// Blocks of the prefill kernel an SM holds: 4 where its shared memory allows
// (registers are then capped to fit), else as many as fit.
template <typename W, int WN, int WT, int FN, int TM, int STAGES>
constexpr int tiled_min_blocks() {
  constexpr int bytes = STAGES * (WN * FN * TILE_I * KBLOCK * static_cast<int>(sizeof(W)) +
                                  WT * TM * TILE_J * KBLOCK * static_cast<int>(sizeof(float))) +
                        3 * WT * TM * TILE_J * KBLOCK * 2;
  return SHARED_PER_SM / bytes >= 4 ? 4 : SHARED_PER_SM / bytes >= 1 ? SHARED_PER_SM / bytes : 1;
}

template <typename W, int WN, int WT, int FN, int TM, int STAGES,
          int MINB = tiled_min_blocks<W, WN, WT, FN, TM, STAGES>()>
hipError_t launch_tiled(const GretaMatmulOuts& out, const float* x, const void* w, int64_t M, int64_t N, int64_t K,
                        hipStream_t stream) {
  constexpr int64_t BN = WN * FN * TILE_I, BT = WT * TM * TILE_J;
  const int64_t token_tiles = (M + BT - 1) / BT;
  const int64_t blocks = token_tiles * ((N + BN - 1) / BN);
  if (blocks > 0x7fffffff) return hipErrorInvalidValue;
  hipLaunchKernelGGL((mma_tiled_kernel<W, WN, WT, FN, TM, STAGES, MINB>), dim3(static_cast<unsigned>(blocks)),
                     dim3(WN * WT * GRETA_WAVE_SIZE), 0, stream, out, x, static_cast<const W*>(w), M, N, K, token_tiles);
  return hipGetLastError();
}

// Slots of the rows kernel: at most 32 KB.
constexpr int ROWS_SLOT_BYTES = 1 << 15;
template <int FN, int TM, int KW>
constexpr int rows_r() {
  return ROWS_SLOT_BYTES / (2 * KW * FN * TM * 4 * GRETA_WAVE_SIZE * 4) > 4
             ? 4
             : ROWS_SLOT_BYTES / (2 * KW * FN * TM * 4 * GRETA_WAVE_SIZE * 4);
}

template <typename W, int FN, int TM, int KW, int R = rows_r<FN, TM, KW>()>
hipError_t launch_rows(const GretaMatmulOuts& out, const float* x, const void* w, int64_t M, int64_t N, int64_t K,
                       hipStream_t stream) {
  static_assert(R >= 1, "rows kernel: the slots do not fit");
  if (M > TM * TILE_J) return hipErrorInvalidValue;
  const int64_t blocks = (N + FN * TILE_I - 1) / (FN * TILE_I);
  if (blocks > 0x7fffffff) return hipErrorInvalidValue;
  hipLaunchKernelGGL((mma_rows_kernel<W, FN, TM, KW, R>), dim3(static_cast<unsigned>(blocks)),
                     dim3(KW * GRETA_WAVE_SIZE), 0, stream, out, x, static_cast<const W*>(w), M, N, K);
  return hipGetLastError();
}

// Shared memory of a gemv block: what any kernel may take without asking
// for more, on every target.
constexpr size_t GEMV_SMEM_MAX = 48 * 1024;

template <int P>
bool gemv_fit(int64_t M, int64_t K) {
  return M <= TILE_J && K % KBLOCK == 0 && K / KBLOCK < (1 << 24) && gemv_smem_bytes<P>(M, K) <= GEMV_SMEM_MAX;
}

template <typename W, int FN, int NT, int P, int U>
hipError_t launch_gemv(const GretaMatmulOuts& out, const float* x, const void* w, int64_t M, int64_t N, int64_t K,
                       hipStream_t stream) {
  if (!gemv_fit<P>(M, K)) return hipErrorInvalidValue;
  const int64_t blocks = ((N + FN * TILE_I - 1) / (FN * TILE_I) + NT - 1) / NT;
  if (blocks > 0x7fffffff) return hipErrorInvalidValue;
  hipLaunchKernelGGL((mma_gemv_kernel<W, FN, NT, P, U>), dim3(static_cast<unsigned>(blocks)),
                     dim3(NT * GRETA_WAVE_SIZE), gemv_smem_bytes<P>(M, K), stream, out, x, static_cast<const W*>(w),
                     M, N, K);
  return hipGetLastError();
}

// Launch shapes (speed only: every shape runs the same chain). One token
// tile, outputs as many as the 8B's MLP up projection or more (GEMV_WIDE_N):
// the gemv kernel where it fits, 4 warps a block, a ring of 8 KBLOCKs taken 4
// at a time (4-byte weights: 4, 2 at a time). Up to 4 token tiles otherwise:
// the rows kernel, 8 warps over K, 2 blocks a round (registers for 2 blocks of
// 8 warps per SM); outputs as wide as lm_head take 2 row tiles a block (4
// token tiles where the slots fit: NVIDIA). Measured on the H100
// (dev/matmul.hip): the gemv kernel is the faster at 4096 -> 28672 and
// 128256, the rows kernel at 4096 -> 4096, 6144 and 14336 -> 4096, where the
// gemv kernel's few warps an SM (one per 16 rows) cannot hide their chains.
// Beyond: the prefill kernel, 4 warps of 32 weight rows x 4 token tiles (2 on
// AMD), two stages (30 KB of shared memory for 2-byte weights: 4 blocks an SM
// on NVIDIA, 2 a CU in AMD's 64 KB where three stages fit one; measured faster
// than three on the H100 at every Llama-3-8B shape, and the same bits).
constexpr int ROWS_KW = 8;
constexpr int64_t WIDE_N = 1 << 16;
constexpr int64_t GEMV_WIDE_N = 16384;
template <typename W>
constexpr int gemv_p() { return sizeof(W) == 4 ? 4 : 8; }
template <typename W>
constexpr int gemv_u() { return sizeof(W) == 4 ? 2 : 4; }  // 4-byte weights: within 128 registers

template <typename W>
hipError_t launch_mma(const GretaMatmulOuts& out, const float* x, const void* w, int64_t M, int64_t N, int64_t K,
                      hipStream_t stream) {
  if (M <= TILE_J) {
    if (N >= GEMV_WIDE_N && gemv_fit<gemv_p<W>()>(M, K))
      return launch_gemv<W, 1, 4, gemv_p<W>(), gemv_u<W>()>(out, x, w, M, N, K, stream);
    if (N >= WIDE_N) return launch_rows<W, 2, 1, ROWS_KW>(out, x, w, M, N, K, stream);
    return launch_rows<W, 1, 1, ROWS_KW, 2>(out, x, w, M, N, K, stream);
  }
  if (M <= 2 * TILE_J) return launch_rows<W, 1, 2, ROWS_KW>(out, x, w, M, N, K, stream);
  if constexpr (rows_r<1, 4, ROWS_KW>() >= 1) {
    if (M <= 4 * TILE_J) return launch_rows<W, 1, 4, ROWS_KW>(out, x, w, M, N, K, stream);
  }
  return launch_tiled<W, 4, 1, sizeof(W) == 4 ? 1 : 2, KBLOCK / TILE_J, 2>(out, x, w, M, N, K, stream);
}
}  // namespace

hipError_t greta_matmul(const GretaMatmulOuts& out, const float* x, const void* w, int w_type, int64_t M, int64_t N,
                        int64_t K, hipStream_t stream) {
  if (out.count < 1 || out.count > GRETA_MATMUL_MAX_OUTS || out.end[out.count - 1] != N) return hipErrorInvalidValue;
  if (K % 8 != 0) {
    switch (w_type) {
      case W_F32: return launch_simt<float>(out, x, w, M, N, K, stream);
      case W_F16: return launch_simt<f16>(out, x, w, M, N, K, stream);
      case W_BF16: return launch_simt<bf16>(out, x, w, M, N, K, stream);
      default: return hipErrorInvalidValue;
    }
  }
  if (((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w)) & 15) != 0)
    return hipErrorInvalidValue;  // 16-byte loads; never fall back silently
  switch (w_type) {
    case W_F32: return launch_mma<float>(out, x, w, M, N, K, stream);
    case W_F16: return launch_mma<f16>(out, x, w, M, N, K, stream);
    case W_BF16: return launch_mma<bf16>(out, x, w, M, N, K, stream);
    default: return hipErrorInvalidValue;
  }
}
