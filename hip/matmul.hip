#include "chain.h"
#include "matmul.h"
#include "mma.h"
#if defined(GRETA_VENDOR_NVIDIA)
#include "wgmma.h"
#endif

#include <type_traits>

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

// Where output column n goes: the output whose column range holds it, that
// column's first element and the output's row stride. Constant indices
// only: a kernel argument indexed by a variable is copied to local memory.
struct OutColumn {
  float* ptr;
  int64_t ld;
};
__device__ __forceinline__ OutColumn out_column(const GretaMatmulOuts& out, int64_t n) {
  float* p = out.ptr[0];
  int64_t begin = 0, end = out.end[0];
#pragma unroll
  for (int s = 1; s < GRETA_MATMUL_MAX_OUTS; s++)
    if (s < out.count && n >= end) {
      p = out.ptr[s];
      begin = end;
      end = out.end[s];
    }
  return {p + (n - begin), end - begin};
}

// Blocks are numbered row tile fastest: the blocks that read one slice of
// weights run together, so for prefill the slice comes from HBM once and from
// L2 for the other row tiles.
template <typename W>
__global__ void simt_kernel(GretaMatmulOuts out, const float* x, const W* __restrict__ w, int64_t M,
                              int64_t N, int64_t K, int64_t row_tiles) {
  greta_await_prior_kernels();
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
    const OutColumn oc = out_column(out, n0 + c);
    float* const col = oc.ptr;
    const int64_t ld = oc.ld;
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
  GRETA_LAUNCH(simt_kernel<W>, grid, block, 0, stream, out, x, static_cast<const W*>(w), M, N, K, row_tiles);
  return hipGetLastError();
}

// ---- The matrix-unit path. ----

// Output (m, n) goes to the output whose column range holds n.
__device__ __forceinline__ void store_out(const GretaMatmulOuts& out, int64_t m, int64_t n, float v) {
  const OutColumn c = out_column(out, n);
  c.ptr[m * c.ld] = v;
}

// Largest token tile of any prefill shape: the activation scratch holds
// M + PREFILL_PAD rows.
constexpr int PREFILL_PAD = 128;

// Prefill, step 1: the activations split once per call into their bf16 terms
// (act_terms, per element): terms[m][i] is term i (hi, mid, lo) of row m, so
// a block's tokens are 3 BT rows of K in a row and the product kernel reads
// ready terms instead of every block re-splitting its tokens. Rows M .. Mpad
// (the last token tile's padding) are zeros, so the product kernel copies
// whole tiles without a bound per row.
__global__ void split_kernel(uint4* terms, const float* x, int64_t chunks, int64_t pad_chunks,
                             int64_t row_chunks) {
  greta_await_prior_kernels();
  const uint4* const src = reinterpret_cast<const uint4*>(x);
  for (int64_t i = global_id(); i < pad_chunks; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    MmaB b[3] = {{make_uint4(0, 0, 0, 0)}, {make_uint4(0, 0, 0, 0)}, {make_uint4(0, 0, 0, 0)}};
    if (i < chunks) act_terms(src[2 * i], src[2 * i + 1], b);
    const int64_t m = i / row_chunks;
    uint4* const dst = terms + 2 * m * row_chunks + i;  // (3 m) row_chunks + (i - m row_chunks)
    dst[0] = b[0].v;
    dst[row_chunks] = b[1].v;
    dst[2 * row_chunks] = b[2].v;
  }
}

// Prefill, step 2: a block computes BN weight rows x BT tokens; warp (wn, wt)
// FN x TM tiles. Weight tiles and activation terms go through shared memory
// in STAGES KBLOCK stages (cp.async on NVIDIA), one barrier a stage: a
// stage's weights are BN / 16 tiled-layout tiles, copied as they lie, so a
// lane's operand units are 16-byte reads of consecutive lanes (no bank
// conflict, no swizzle). Per KBLOCK a warp forms its FN weight operands once,
// then the c_s of its tiles TG token tiles at a time: for each chain step
// the group's activation term is loaded and the step's two halves are issued
// across all FN x TG tiles (independent chains hide the matrix unit's
// latency); each c_s is then added to its accumulator, s increasing: the
// chain of matmul.h.
template <typename W, int WN, int WT, int FN, int TM, int TG, int STAGES>
struct Prefill {
  static constexpr int THREADS = WN * WT * GRETA_WAVE_SIZE;
  static constexpr int BN = WN * FN * TILE_I;
  static constexpr int BT = WT * TM * TILE_J;
  static constexpr int XCH = KBLOCK / LANE_K;  // 16-byte chunks of one term row of a token, a stage
  static constexpr int W_STAGE = BN / TILE_I * Tiles<W>::TILE_UNITS;  // uint4 of a stage
  static constexpr int X_STAGE = 3 * BT * XCH;
  static constexpr int STAGE = W_STAGE + X_STAGE;
  static constexpr int SHARED = STAGES * STAGE * 16;  // bytes
};

template <typename W, int WN, int WT, int FN, int TM, int TG, int STAGES>
__global__ void GRETA_LAUNCH_BOUNDS(WN * WT * GRETA_WAVE_SIZE, WN * WT * GRETA_WAVE_SIZE >= 256 && FN * TM <= 8 ? 2 : 1)
    mma_prefill_kernel(GretaMatmulOuts out, const bf16* xt, const uint4* __restrict__ w, int64_t M, int64_t N,
                       int64_t K, int64_t token_tiles) {
  greta_await_prior_kernels();
  using P = Prefill<W, WN, WT, FN, TM, TG, STAGES>;
  constexpr int THREADS = P::THREADS, BN = P::BN, BT = P::BT, XCH = P::XCH;
  constexpr int TU = Tiles<W>::TILE_UNITS, NT = Terms<W>::N;
  static_assert(BT <= PREFILL_PAD, "the activation scratch pads M by PREFILL_PAD rows");
  // The lane layout of hip/mma.h that the shared-memory reads below rely on:
  // a lane reads one chunk (LANE_K k) per term of its token column and its
  // units of each weight tile, and holds 4 elements of C (NVIDIA: warp 32,
  // tile 16 x 8; AMD CDNA: wave 64, MFMA tile 16 x 16).
  static_assert(XCH == LANE_CHUNKS && LANE_K * sizeof(uint16_t) == 16, "a lane's chunk is one 16-byte word of bf16");
  static_assert(TILE_J * LANE_CHUNKS == GRETA_WAVE_SIZE && TILE_I * LANE_CHUNKS == A_ROWS * GRETA_WAVE_SIZE,
                "one wave covers an A and a B tile exactly");
  static_assert(THREADS % XCH == 0, "the block copies whole term rows");
  static_assert(TG >= 1 && TG <= TM, "token groups within the warp tile");
  extern __shared__ uint4 smem[];

  const int lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int warp = threadIdx.x / GRETA_WAVE_SIZE;
  const int wn = warp % WN;
  const int wt = warp / WN;
  const int64_t n0 = (blockIdx.x / token_tiles) * BN;
  const int64_t m0 = (blockIdx.x % token_tiles) * BT;
  const int S = static_cast<int>((K + KBLOCK - 1) / KBLOCK);
  const int64_t tiles = (N + TILE_I - 1) / TILE_I;

  // Copies: unit c = threadIdx + i THREADS of a stage's weights is unit c % TU
  // of the block's tile c / TU (tiles past N are zeros); a thread takes one
  // chunk column of term rows 3 m + i of the block's tokens. One pointer each,
  // advanced by a KBLOCK a stage. Token rows past M are the split's zero
  // padding; k past K (the last block) is zeros in both (tiles are padded).
  constexpr int WPASS = (P::W_STAGE + THREADS - 1) / THREADS;
  constexpr int XRS = THREADS / XCH, XROWS = 3 * BT, XPASS = (XROWS + XRS - 1) / XRS;
  static_assert(WPASS <= static_cast<int>(8 * sizeof(uint32_t)), "one validity bit a pass");
  const int xr0 = threadIdx.x / XCH, xc = threadIdx.x % XCH;
  const uint4* wp[WPASS];
  uint32_t wvalid = 0;
#pragma unroll
  for (int i = 0; i < WPASS; i++) {
    const int c = static_cast<int>(threadIdx.x) + i * THREADS;
    const int64_t tile = n0 / TILE_I + c / TU;
    wvalid |= (c < P::W_STAGE && tile < tiles ? 1u : 0u) << i;
    wp[i] = w + (tile * S) * TU + c % TU;
  }
  const bf16* xp = xt + (3 * m0 + xr0) * K + xc * LANE_K;
  const int64_t xstep = XRS * K;
  const int xdst = xr0 * XCH + xc;

  // Weight tiles past N (the last block of rows) and k past K (the last
  // block, activations only) need the checked form.
  const bool wfull = n0 + BN <= tiles * TILE_I;
  int kleft = static_cast<int>(K < 0x7fffffff ? K : 0x7fffffff);  // k of the next stage to load, from its start
  auto load = [&](uint4* stage, auto checked) {
    constexpr bool CHECKED = decltype(checked)::value;
    const bool kx = !CHECKED || xc * LANE_K < kleft;
#pragma unroll
    for (int i = 0; i < WPASS; i++) {
      const int c = static_cast<int>(threadIdx.x) + i * THREADS;
      if (P::W_STAGE % THREADS == 0 || c < P::W_STAGE) {
        const bool ok = !CHECKED || ((wvalid >> i) & 1u);
        copy16_async(stage + c, ok ? wp[i] : w, ok);
      }
      wp[i] += TU;
    }
#pragma unroll
    for (int i = 0; i < XPASS; i++) {
      if (XROWS % XRS == 0 || xr0 + i * XRS < XROWS)
        copy16_async(stage + P::W_STAGE + xdst + i * XRS * XCH, kx ? xp + i * xstep : xt, kx);
    }
    xp += KBLOCK;
    kleft -= KBLOCK;
  };
  auto load_stage = [&](uint4* stage) {
    if (wfull && kleft >= KBLOCK)
      load(stage, std::false_type{});
    else
      load(stage, std::true_type{});
  };

  // A lane's shared-memory reads, relative to a stage: unit u of weight tile
  // wn FN + f at (wn FN + f) TU + u W + lane; term i of token
  // (wt TM + t) TILE_J + b_col(lane) at boff + (t TILE_J 3 + i) XCH.
  const int aoff = wn * FN * TU + lane;
  const int boff = P::W_STAGE + ((wt * TM * TILE_J + b_col(lane)) * 3) * XCH + lane_k(lane) / LANE_K;

  MmaC acc[FN][TM];
#pragma unroll
  for (int f = 0; f < FN; f++)
#pragma unroll
    for (int t = 0; t < TM; t++) acc[f][t] = mma_zero();

#pragma unroll
  for (int st = 0; st < STAGES - 1; st++) {
    if (st < S) load_stage(smem + st * P::STAGE);
    copy_commit();
  }
  int st = 0, next = STAGES - 1;  // the stage read now, the one loaded now
  for (int s = 0; s < S; s++) {
    copy_wait<STAGES - 2>();
    __syncthreads();  // stage s has landed for every thread; stage s - 1 is free
    const uint4* const stage = smem + st * P::STAGE;
    MmaAHalf a[FN][NT][2];
#pragma unroll
    for (int f = 0; f < FN; f++) {
      Raw<W> raw;
#pragma unroll
      for (int u = 0; u < Tiles<W>::UNITS; u++) raw.u[u] = stage[aoff + f * TU + u * GRETA_WAVE_SIZE];
      weight_terms<W>(raw, a[f]);
    }
    // Issued after this stage's first reads: the copy's memory clobber would
    // otherwise hold them back.
    if (s + STAGES - 1 < S) load_stage(smem + next * P::STAGE);
    copy_commit();
    st = st + 1 == STAGES ? 0 : st + 1;
    next = next + 1 == STAGES ? 0 : next + 1;

#pragma unroll
    for (int t0 = 0; t0 < TM; t0 += TG) {
      MmaC c[FN][TG];
#pragma unroll
      for (int f = 0; f < FN; f++)
#pragma unroll
        for (int t = 0; t < TG; t++) c[f][t] = mma_zero();
#pragma unroll
      for (int i = 0; i < Chain<W>::STEPS; i++) {
        MmaB b[TG];
#pragma unroll
        for (int t = 0; t < TG; t++)
          if (t0 + t < TM) b[t].v = stage[boff + ((t0 + t) * TILE_J * 3 + Chain<W>::x_term(i)) * XCH];
#pragma unroll
        for (int f = 0; f < FN; f++)
#pragma unroll
          for (int t = 0; t < TG; t++)
            if (t0 + t < TM) mma_half<0>(c[f][t], a[f][Chain<W>::w_term(i)][0], b[t]);
#pragma unroll
        for (int f = 0; f < FN; f++)
#pragma unroll
          for (int t = 0; t < TG; t++)
            if (t0 + t < TM) mma_half<1>(c[f][t], a[f][Chain<W>::w_term(i)][1], b[t]);
      }
#pragma unroll
      for (int f = 0; f < FN; f++)
#pragma unroll
        for (int t = 0; t < TG; t++)
          if (t0 + t < TM)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[f][t0 + t].v[e] = acc[f][t0 + t].v[e] + c[f][t].v[e];
    }
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
  Raw<W> w[R][FN];
  uint4 x[R][TM][2];
};

template <typename W, int FN, int TM, int KW, int R>
__global__ void __launch_bounds__(KW * GRETA_WAVE_SIZE)
    mma_rows_kernel(GretaMatmulOuts out, const float* x, const uint4* __restrict__ w, int64_t M, int64_t N,
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
  const int64_t tiles = (N + TILE_I - 1) / TILE_I;
  constexpr int TU = Tiles<W>::TILE_UNITS;

  // Weights and activations of a round load apart: the first round's weights
  // are read before the wait for the kernel that writes x.
  auto load_w = [&](Round& rd, int64_t base) {
#pragma unroll
    for (int j = 0; j < R; j++) {
      const int64_t s = base + j * KW + kw;
#pragma unroll
      for (int f = 0; f < FN; f++) {
        const int64_t tile = n0 / TILE_I + f;
        const bool in = s < S && tile < tiles;
        const uint4* src = w + (tile * S + s) * TU + lane;
#pragma unroll
        for (int u = 0; u < Tiles<W>::UNITS; u++) rd.w[j][f].u[u] = in ? src[u * GRETA_WAVE_SIZE] : make_uint4(0, 0, 0, 0);
      }
    }
  };
  auto load_x = [&](Round& rd, int64_t base) {
#pragma unroll
    for (int j = 0; j < R; j++) {
      const int64_t s = base + j * KW + kw;
      const int64_t k = s * KBLOCK + lane_k(lane);
      const bool in = s < S && k < K;
#pragma unroll
      for (int t = 0; t < TM; t++) {
        const int64_t m = t * TILE_J + b_col(lane);
        const uint4* xsrc = reinterpret_cast<const uint4*>(x + m * K + k);
        const bool xin = in && m < M;
        rd.x[j][t][0] = xin ? greta_load(xsrc) : make_uint4(0, 0, 0, 0);
        rd.x[j][t][1] = xin ? greta_load(xsrc + 1) : make_uint4(0, 0, 0, 0);
      }
    }
  };
  auto load = [&](Round& rd, int64_t base) {
    load_w(rd, base);
    load_x(rd, base);
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
          MmaAHalf a[Terms<W>::N][2];
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
  load_w(ra, 0);
  greta_await_prior_kernels();
  load_x(ra, 0);
  for (int64_t base = 0; base < S; base += 2 * SLOTS) {
    load(rb, base + SLOTS);
    round(ra, base, 0);
    if (base + SLOTS >= S) break;
    load(ra, base + 2 * SLOTS);
    round(rb, base + SLOTS, 1);
  }
  greta_allow_next_launch();  // the weights are read: what follows overlaps the stores
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
    mma_gemv_kernel(GretaMatmulOuts out, const float* x, const uint4* __restrict__ w, int64_t M, int64_t N,
                    int64_t K) {
  static_assert(P % U == 0, "gemv kernel: the ring is taken U KBLOCKs at a time");
  // The split's layout: one KBLOCK of one token tile is a wave's B operand,
  // one uint4 triple a lane (wave 64 on AMD: 16 tokens x 4 chunks).
  static_assert(TILE_J * LANE_CHUNKS == GRETA_WAVE_SIZE, "gemv kernel: a wave is the (token, chunk) pairs of a KBLOCK");
  constexpr int TU = Tiles<W>::TILE_UNITS;
  constexpr int THREADS = NT * GRETA_WAVE_SIZE;
  extern __shared__ uint4 gemv_smem[];

  const int lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int64_t n0 = (static_cast<int64_t>(blockIdx.x) * NT + threadIdx.x / GRETA_WAVE_SIZE) * FN * TILE_I;
  const int xr = static_cast<int>(M < TILE_J ? M : TILE_J);
  const int S = static_cast<int>(K / KBLOCK);
  const int se = n0 < N ? S : 0;            // rows past N: no work, only the barrier
  const int xstride = xr * LANE_CHUNKS * 3;  // uint4 of the split per KBLOCK
  uint4* const xs = gemv_smem;

  // This lane's first unit of each of its tile rows, one pointer each.
  const int64_t tiles = (N + TILE_I - 1) / TILE_I;
  const uint4* wp[FN];
#pragma unroll
  for (int f = 0; f < FN; f++) {
    const int64_t tile = n0 / TILE_I + f;
    wp[f] = w + (tile < tiles ? tile : tiles - 1) * S * TU + lane;
  }
  Raw<W> ring[P][FN];
  auto load = [&](Raw<W> (&dst)[FN], int s) {
#pragma unroll
    for (int f = 0; f < FN; f++)
#pragma unroll
      for (int u = 0; u < Tiles<W>::UNITS; u++) dst[f].u[u] = wp[f][static_cast<int64_t>(s) * TU + u * GRETA_WAVE_SIZE];
  };
  // The first weights fly before the wait for the kernel that writes x (while
  // it may still run) and while the block splits the activations, XB lane
  // chunks a thread at a time with their loads issued first.
#pragma unroll
  for (int j = 0; j < P; j++)
    if (j < se) load(ring[j], j);
  greta_await_prior_kernels();
  constexpr int XB = 4;
  for (int t = 0; t < xr; t++)
    for (int i0 = 0; i0 < S * LANE_CHUNKS; i0 += XB * THREADS) {
      uint4 raw[XB][2];
#pragma unroll
      for (int j = 0; j < XB; j++) {
        const int i = i0 + j * THREADS + static_cast<int>(threadIdx.x);
        if (i < S * LANE_CHUNKS) {
          const uint4* const src = reinterpret_cast<const uint4*>(x + t * K + static_cast<int64_t>(i) * LANE_K);
          raw[j][0] = greta_load(src);
          raw[j][1] = greta_load(src + 1);
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
          MmaAHalf a[Terms<W>::N][2];
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
  greta_allow_next_launch();  // the weights are read: what follows overlaps the stores
#pragma unroll
  for (int f = 0; f < FN; f++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int64_t n = n0 + f * TILE_I + c_row(lane, e);
      const int64_t m = c_col(lane, e);
      if (n < N && m < M) store_out(out, m, n, acc[f].v[e]);
    }
}

// Decode of one token (M = 1), K whole KBLOCKs, outputs narrower than the gemv
// kernel's: one block per 16 weight rows, its KW warps taking KBLOCKs s = kw,
// kw + KW, ... Weights go straight from global memory into a ring of P
// KBLOCKs of registers per warp (refilled P ahead once used, the first before
// the wait for the kernel that writes x); the activations are copied once per
// block into shared memory as they are (fp32) and split into their terms
// where a KBLOCK uses them: 4 bytes a k instead of the split's 6, so at K =
// 14336 (down) two blocks share an H100 SM instead of one. Every c_s goes whole to
// shared memory; after each round of P KBLOCKs a warp (one barrier) one
// thread per row adds the round's c_s in increasing s: the chain the prefill
// kernel keeps in registers.
// Shared memory: x [S][LANE_CHUNKS][2] uint4, then c_s [2 P KW][TILE_I]
// floats: two rounds of KBLOCKs, the one being made and the one being summed.
template <int KW, int P>
size_t rows1_smem_bytes(int64_t K) {
  const int64_t S = K / KBLOCK;
  return static_cast<size_t>(S * LANE_CHUNKS * 2) * sizeof(uint4) + static_cast<size_t>(2 * P * KW * TILE_I) * sizeof(float);
}

// Registers for 2 blocks of 8 warps an SM (MINB). Measured on the H100
// (dev/matmul.hip decode, in a row; the 8B step by dev/decode_marginal.mjs,
// builds in turn). Kept: c_s summed a round at a time (one barrier a round)
// rather than all at the end, which takes down's 448 serial adds out of its
// tail (the step within noise, 5.99-6.00 ms) and bounds shared memory. Tried
// and not kept:
//  - 3 blocks an SM with a ring of 4 where that makes qkv's 384 blocks one
//    round instead of 1.45: qkv 0.819 -> 0.845 of the copy rate (a ring of
//    6 spills at 80 registers: 0.62), but the step 6.02-6.09 -> 6.09-6.13 ms;
//    with x split in shared memory, 3 blocks or 6 of 4 warps were slower at
//    every shape (qkv 0.78 -> 0.74 and 0.68);
//  - a ring of 4 taken 2 at a time: wo 0.765 -> 0.778, down 0.903 -> 0.914,
//    qkv 0.816 -> 0.788, the step unmoved (5.98-6.01 ms either way);
//  - x made in the copy stage (silu(gate) * up for down, the residual add and
//    rmsnorm for gate_up, with those ops' own arithmetic: bits equal), two
//    launches a layer fewer: the step 6.00 -> 6.78-6.82 ms (gate_up's share
//    2.48 -> 3.21 ms, down's 1.36 -> 1.57), every block making the input
//    again from L2 (gate_up: 1792 blocks x 40 KB, against 16 KB to copy it)
//    in series with its weights;
//  - the residual add and norm after wo and down made by the projection's
//    last block to finish (an atomic ticket; the norm's arithmetic, so bits
//    equal), two launches a layer fewer: the step 5.99 -> 6.52 ms (6.96 while
//    that block's loads went one element at a time; 6.56-6.62 with one
//    acq_rel fence a block instead of __threadfence in every thread);
//  - the KBLOCKs after the ring's sent to L2 before the wait (one bulk
//    cp.async.bulk.prefetch.L2 a block, 64 KBLOCKs or the whole row), to keep
//    memory busy under the short kernels ahead: the step 6.00 -> 6.37-6.51
//    ms, qkv 0.82 -> 0.70;
//  - wo's weights sent to L2 while RoPE and attention run, by a kernel of
//    their own between qkv and RoPE or between RoPE and attention (device
//    time, dev/cupti_timeline.cpp): bulk prefetches hold that kernel, and so
//    the step, until all 33.5 MB have arrived (step 5.90 -> 6.09 ms); line
//    prefetches (prefetch.global.L2) do not, and take wo 15.4 -> 12.4 us a
//    layer, but the kernel's own place in the chain (1.7 us) and its
//    traffic under qkv's tail or attention's loads (+2.4 us, +0.3 us) cost
//    more: the step 5.905 -> 5.938 and 5.917 -> 5.964 ms;
//  - persistent blocks (one or two an SM, each taking every gridDim-th tile,
//    its ring running on into its next tile, the next kernel allowed to
//    launch at its last tile), so that with one block an SM the next
//    kernel's blocks are resident and load their first weights under this
//    one's last tile: in a row, one an SM qkv 0.77 -> 0.72, wo 0.73 -> 0.66
//    (half the bytes in flight), two an SM 0.74 and 0.74.
template <typename W, int KW, int P, int U, int MINB = (KW * GRETA_WAVE_SIZE >= 512 ? 1 : 512 / (KW * GRETA_WAVE_SIZE))>
__global__ void GRETA_LAUNCH_BOUNDS(KW * GRETA_WAVE_SIZE, MINB)
    mma_rows1_kernel(GretaMatmulOuts out, const float* x, const uint4* __restrict__ w, int64_t N, int64_t K) {
  static_assert(P % U == 0, "rows1 kernel: the ring is taken U KBLOCKs at a time");
  static_assert(TILE_J * LANE_CHUNKS == GRETA_WAVE_SIZE, "rows1 kernel: a wave is the (token, chunk) pairs of a KBLOCK");
  constexpr int TU = Tiles<W>::TILE_UNITS;
  constexpr int THREADS = KW * GRETA_WAVE_SIZE;
  constexpr int CS_SLOTS = 2 * P * KW;
  extern __shared__ uint4 rows1_smem[];

  const int lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int kw = threadIdx.x / GRETA_WAVE_SIZE;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * TILE_I;
  const int S = static_cast<int>(K / KBLOCK);
  uint4* const xs = rows1_smem;
  float* const cs = reinterpret_cast<float*>(xs + S * LANE_CHUNKS * 2);

  // This lane's first unit of the block's tile row (every block has one: blocks = tiles).
  const uint4* const wp = w + static_cast<int64_t>(blockIdx.x) * S * TU + lane;
  Raw<W> ring[P];
  // Ring slot j of round j0 holds KBLOCK kw + (j0 + j) * KW.
  auto load = [&](Raw<W>& dst, int s) {
#pragma unroll
    for (int u = 0; u < Tiles<W>::UNITS; u++) dst.u[u] = wp[static_cast<int64_t>(s) * TU + u * GRETA_WAVE_SIZE];
  };
#pragma unroll
  for (int j = 0; j < P; j++)
    if (kw + j * KW < S) load(ring[j], kw + j * KW);
  greta_await_prior_kernels();
  constexpr int XB = 8;
  const int x4 = S * LANE_CHUNKS * 2;  // x in 16-byte units
  const uint4* const xsrc = reinterpret_cast<const uint4*>(x);
  for (int i0 = 0; i0 < x4; i0 += XB * THREADS) {
    uint4 raw[XB];
#pragma unroll
    for (int j = 0; j < XB; j++) {
      const int i = i0 + j * THREADS + static_cast<int>(threadIdx.x);
      if (i < x4) raw[j] = greta_load(xsrc + i);
    }
#pragma unroll
    for (int j = 0; j < XB; j++) {
      const int i = i0 + j * THREADS + static_cast<int>(threadIdx.x);
      if (i < x4) xs[i] = raw[j];
    }
  }
  __syncthreads();

  // Every lane's B operand is token 0's chunk: columns past M repeat it and are never stored.
  const int xoff = (lane_k(lane) / LANE_K) * 2;
  float acc = 0.f;  // threads 0 .. TILE_I-1: the chain of row n0 + threadIdx.x
  // Rounds are uniform across the block (a barrier each); warp kw's KBLOCKs
  // in round j0 are s = kw + (j0 + j) * KW, j < P: together s = j0 KW ..
  // (j0 + P) KW - 1.
  for (int j0 = 0; j0 * KW < S; j0 += P) {
#pragma unroll
    for (int u0 = 0; u0 < P; u0 += U) {
      MmaC c[U];
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int s = kw + (j0 + u0 + u) * KW;
        c[u] = mma_zero();
        if (s < S) {
          MmaB b[3];
          act_terms(xs[s * LANE_CHUNKS * 2 + xoff], xs[s * LANE_CHUNKS * 2 + xoff + 1], b);
          MmaAHalf a[Terms<W>::N][2];
          weight_terms<W>(ring[u0 + u], a);
#pragma unroll
          for (int i = 0; i < Chain<W>::STEPS; i++) mma_k32(c[u], a[Chain<W>::w_term(i)], b[Chain<W>::x_term(i)]);
        }
      }
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int s = kw + (j0 + u0 + u) * KW;
        if (s + P * KW < S) load(ring[u0 + u], s + P * KW);
      }
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int s = kw + (j0 + u0 + u) * KW;
        if (s < S)
#pragma unroll
          for (int e = 0; e < 4; e++)
            if (c_col(lane, e) == 0) cs[(s % CS_SLOTS) * TILE_I + c_row(lane, e)] = c[u].v[e];
      }
    }
    const int s_end = (j0 + P) * KW < S ? (j0 + P) * KW : S;
    if (s_end == S) greta_allow_next_launch();  // the weights are read: what follows overlaps the last sums
    // The round's c_s are stored. Its sums run while the other warps start
    // the next round; the round after that reuses these slots, past the
    // next barrier, which warp 0 reaches once they are read.
    __syncthreads();
    if (threadIdx.x < TILE_I)
      for (int s = j0 * KW; s < s_end; s++) acc = acc + cs[(s % CS_SLOTS) * TILE_I + threadIdx.x];
  }
  if (threadIdx.x < TILE_I && n0 + static_cast<int>(threadIdx.x) < N) store_out(out, 0, n0 + threadIdx.x, acc);
}

// The split (into M + PREFILL_PAD rows of scratch at most), then the product
// kernel in one block shape.
template <typename W, int WN, int WT, int FN, int TM, int TG, int STAGES>
hipError_t launch_prefill(const GretaMatmulOuts& out, const float* x, bf16* xt, const void* w, int64_t M, int64_t N,
                          int64_t K, hipStream_t stream) {
  using P = Prefill<W, WN, WT, FN, TM, TG, STAGES>;
  const int64_t token_tiles = (M + P::BT - 1) / P::BT;
  const int64_t blocks = token_tiles * ((N + P::BN - 1) / P::BN);
  if (blocks > 0x7fffffff) return hipErrorInvalidValue;
  const int64_t chunks = M * K / LANE_K, pad_chunks = token_tiles * P::BT * K / LANE_K;
  const int64_t split_blocks = (pad_chunks + ELEMENTWISE_BLOCK - 1) / ELEMENTWISE_BLOCK;
  GRETA_LAUNCH(split_kernel, dim3(static_cast<unsigned>(split_blocks < 4096 ? split_blocks : 4096)),
               dim3(ELEMENTWISE_BLOCK), 0, stream, reinterpret_cast<uint4*>(xt), x, chunks, pad_chunks, K / LANE_K);
  auto kernel = mma_prefill_kernel<W, WN, WT, FN, TM, TG, STAGES>;
  hipError_t e = hipFuncSetAttribute(reinterpret_cast<const void*>(kernel), hipFuncAttributeMaxDynamicSharedMemorySize,
                                     P::SHARED);
  if (e != hipSuccess) return e;
  GRETA_LAUNCH(kernel, dim3(static_cast<unsigned>(blocks)), dim3(P::THREADS), P::SHARED, stream, out, xt,
               static_cast<const uint4*>(w), M, N, K, token_tiles);
  return hipGetLastError();
}

#if defined(GRETA_VENDOR_NVIDIA)
// ---- Prefill on sm_90a (H100, H200): wgmma, warp-specialized. ----
// The same chain as the mma.sync prefill kernel, run by wgmma (hip/wgmma.h:
// a k16 instruction gives mma.sync's bits), so every output keeps its bits.
// A block has one producer warp and RW consumer warpgroups of 64 weight
// rows each, sharing BT tokens. The producer's one thread fills a ring of
// STAGES shared-memory stages of KPS KBLOCKs each by bulk copies (the copy
// engine; completion counted in bytes on the stage's "full" mbarrier): each
// weight tile's KPS KBLOCKs, contiguous in the tiled layout, and the
// tokens' terms, which the split lays out as the stages take them. The
// consumers never meet at a block barrier: each waits for "full", takes its
// A from the stage and its B through descriptors, runs a KBLOCK's chain,
// waits for it and adds c to acc (s increasing), and releases the stage
// with one arrival a warp on its "empty" mbarrier after the stage's last
// KBLOCK. The warpgroups drift apart, so one adds while another's chain
// runs. Measured on the H100 (dev/matmul.hip prefill, TFLOP/s with the
// split, every shape bit-identical to the mma.sync kernel's), qkv, wo, down,
// gate_up, lm_head:
//   205 tokens                        qkv   wo down  g_up  lm_h
//   128 x 56, 3 stages of 4 KBLOCKs   111  131  133   163   171
//   192 x 56, 2 stages of 4           147  101  104   163   180
//   128 x 104, 2 stages of 4          130   88   93   170   199
//   192 x 104, 3 stages of 2          107   72   75   174   218
//   mma.sync kernel (its best shape)   87   84   92   127   135
//   4096 tokens: 192 x 104            175  152  144   211
//                128 x 104            154  139  132   182
// (before the split's coalesced writes; with them the dispatch went to qkv
// 155, wo 139, down 164, gate_up 173, lm_head 219 at 205 tokens and 211,
// 195, 205, 226 at 4096.) 256 rows (4 consumer warpgroups, 120 registers a
// thread) spill: 19-73.
// Stages of one KBLOCK (1 KB copies) were the slowest (128 x 104 qkv 104,
// 128 x 56 wo 78); of two, 125 and 112-123. The block-barrier design before
// it (every thread's cp.async, one __syncthreads a KBLOCK) reached 55-66 at qkv.
template <int RW, int BT, int STAGES, int KPS>
struct Ws {
  static constexpr int BN = WGMMA_ROWS * RW;
  static constexpr int CONSUMERS = WARPGROUP * RW;
  static constexpr int THREADS = CONSUMERS + GRETA_WAVE_SIZE;
  static constexpr int W_KB = BN / TILE_I * Tiles<bf16>::TILE_UNITS;  // uint4 a KBLOCK
  static constexpr int X_KB = 3 * 4 * BT;                             // uint4 a KBLOCK: [term][chunk][token]
  static constexpr int W_STAGE = KPS * W_KB;
  static constexpr int STAGE = KPS * (W_KB + X_KB);
  static constexpr int SHARED = STAGES * STAGE * 16 + 2 * STAGES * 8;  // bytes: the ring, then the mbarriers
};

// The terms for the ws kernel: terms[(((tb S + s) 3 + i) 4 + q) BT + t] is the
// uint4 of token tb BT + t, term i, KBLOCK s and chunk q, where chunk q holds
// k = 32 s + 8 j + q' (q' = 2 q, 2 q + 1) in word j: instruction h of a KBLOCK
// (mma_half<h>'s k) reads chunks 2h and 2h + 1 as its two core matrices
// along k. Rows M .. Mpad are zeros. A thread splits one token's KBLOCK (128
// contiguous bytes of x) and writes its 12 uint4, consecutive threads taking
// consecutive tokens, so each write of a warp is 512 contiguous bytes. (A
// thread a k8 group, scattering 4-byte words, moved 0.5-0.6 TB/s: 0.27 ms of
// qkv's 1.18 at 4096 tokens, 1.23 of down's 3.35.)
template <int BT>
__global__ void split_ws_kernel(uint4* terms, const float* x, int64_t M, int64_t Mpad, int64_t K) {
  greta_await_prior_kernels();
  const int64_t S = K / KBLOCK;
  const int64_t total = Mpad * S;
  for (int64_t idx = global_id(); idx < total; idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = idx % Mpad, s = idx / Mpad;
    static_assert(LANE_CHUNKS == 4, "split_ws_kernel: a chunk's uint4 holds one word of each k8 group");
    uint4 t[3][LANE_CHUNKS];  // term i of k8 group j
#pragma unroll
    for (int j = 0; j < LANE_CHUNKS; j++) {
      MmaB b[3] = {{make_uint4(0, 0, 0, 0)}, {make_uint4(0, 0, 0, 0)}, {make_uint4(0, 0, 0, 0)}};
      if (m < M) {
        const uint4* const src = reinterpret_cast<const uint4*>(x + m * K + s * KBLOCK + j * LANE_K);
        act_terms(src[0], src[1], b);
      }
#pragma unroll
      for (int i = 0; i < 3; i++) t[i][j] = b[i].v;
    }
    uint4* const dst = terms + ((m / BT) * S + s) * 3 * 4 * BT + m % BT;
#pragma unroll
    for (int i = 0; i < 3; i++) {
      dst[(i * 4 + 0) * BT] = make_uint4(t[i][0].x, t[i][1].x, t[i][2].x, t[i][3].x);
      dst[(i * 4 + 1) * BT] = make_uint4(t[i][0].y, t[i][1].y, t[i][2].y, t[i][3].y);
      dst[(i * 4 + 2) * BT] = make_uint4(t[i][0].z, t[i][1].z, t[i][2].z, t[i][3].z);
      dst[(i * 4 + 3) * BT] = make_uint4(t[i][0].w, t[i][1].w, t[i][2].w, t[i][3].w);
    }
  }
}

// Block (n block, token block): weight rows n0 + 64 rg + 16 wr of consumer
// warp wr of warpgroup rg, tokens tb BT ... Weight tiles past N read the
// last tile; their rows are never stored.
template <int RW, int BT, int STAGES, int KPS>
__global__ void __launch_bounds__(Ws<RW, BT, STAGES, KPS>::THREADS, 1)
    ws_prefill_kernel(GretaMatmulOuts out, const uint4* xt, const uint4* __restrict__ w, int64_t M, int64_t N, int64_t K,
                      int64_t token_blocks) {
  using G = Ws<RW, BT, STAGES, KPS>;
  constexpr int TU = Tiles<bf16>::TILE_UNITS;
  extern __shared__ uint4 ws_smem[];
  uint64_t* const full = reinterpret_cast<uint64_t*>(ws_smem + STAGES * G::STAGE);
  uint64_t* const empty = full + STAGES;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % GRETA_WAVE_SIZE, warp = tid / GRETA_WAVE_SIZE;
  const int64_t n0 = (blockIdx.x / token_blocks) * G::BN;
  const int64_t tb = blockIdx.x % token_blocks;
  const int R = static_cast<int>(K / (KBLOCK * KPS));  // stages' worth of K
  const int64_t S = K / KBLOCK, tiles = (N + TILE_I - 1) / TILE_I;
  if (tid == 0) {
    for (int st = 0; st < STAGES; st++) {
      mbar_init(full + st, 1);
      mbar_init(empty + st, G::CONSUMERS / GRETA_WAVE_SIZE);
    }
    mbar_init_fence();
  }
  __syncthreads();
  greta_await_prior_kernels();
  if (tid >= G::CONSUMERS) {
    if (lane == 0)
      for (int r = 0; r < R; r++) {
        const int st = r % STAGES;
        if (r >= STAGES) mbar_wait(empty + st, ((r / STAGES) + 1) & 1);  // its consumers' release of round r - STAGES
        uint4* const stage = ws_smem + st * G::STAGE;
        mbar_expect_tx(full + st, G::STAGE * 16);
#pragma unroll
        for (int f = 0; f < G::BN / TILE_I; f++) {
          const int64_t tile = n0 / TILE_I + f < tiles ? n0 / TILE_I + f : tiles - 1;
          bulk_copy(stage + f * KPS * TU, w + (tile * S + static_cast<int64_t>(r) * KPS) * TU, KPS * TU * 16, full + st);
        }
        bulk_copy(stage + G::W_STAGE, xt + (tb * S + static_cast<int64_t>(r) * KPS) * G::X_KB, KPS * G::X_KB * 16, full + st);
      }
    return;
  }
  const int rg = warp / WARPGROUP_WARPS, wr = warp % WARPGROUP_WARPS;
  float acc[BT / 2], c[BT / 2];
#pragma unroll
  for (int e = 0; e < BT / 2; e++) acc[e] = 0.f;
  for (int r = 0; r < R; r++) {
    const int st = r % STAGES;
    mbar_wait(full + st, (r / STAGES) & 1);
    const uint4* const stage = ws_smem + st * G::STAGE;
#pragma unroll
    for (int k = 0; k < KPS; k++) {
      Raw<bf16> raw;
#pragma unroll
      for (int u = 0; u < Tiles<bf16>::UNITS; u++) raw.u[u] = stage[((rg * WARPGROUP_WARPS + wr) * KPS + k) * TU + u * GRETA_WAVE_SIZE + lane];
      MmaAHalf a[1][2];
      weight_terms<bf16>(raw, a);
      const uint4* const xs = stage + G::W_STAGE + k * G::X_KB;
      uint64_t desc[6];
#pragma unroll
      for (int i = 0; i < 3; i++)
#pragma unroll
        for (int h = 0; h < 2; h++) desc[2 * i + h] = wgmma_desc(xs + (Chain<bf16>::x_term(i) * 4 + 2 * h) * BT, BT * 16, 128);
      fence_regs(c);
      wgmma_fence();
      if constexpr (BT == 104) wgmma_chain_104(c, a[0], desc);
      else wgmma_chain_56(c, a[0], desc);
      wgmma_commit();
      // One chain in flight: reading c while another chain runs makes ptxas
      // serialize every wgmma (C7514), so the overlap is the other warpgroups'.
      wgmma_wait<0>();
      fence_regs(c);
      if (k == KPS - 1) {  // the stage is read: the producer may refill it
        GRETA_SYNC_WAVE();
        if (lane == 0) mbar_arrive(empty + st);
      }
#pragma unroll
      for (int e = 0; e < BT / 2; e++) acc[e] = acc[e] + c[e];
    }
  }
  // wgmma's D fragment: warp wr's 16 rows, element e of token column 8 (e / 4) + 2 q + e % 2.
  const int g = lane / 4, q = lane % 4;
#pragma unroll
  for (int e = 0; e < BT / 2; e++) {
    const int64_t n = n0 + rg * WGMMA_ROWS + wr * TILE_I + g + 8 * ((e % 4) / 2);
    const int64_t m = tb * BT + 8 * (e / 4) + 2 * q + (e % 2);
    if (n < N && m < M) store_out(out, m, n, acc[e]);
  }
}

template <int RW, int BT, int STAGES, int KPS>
hipError_t launch_ws(const GretaMatmulOuts& out, const float* x, bf16* xt, const void* w, int64_t M, int64_t N,
                     int64_t K, hipStream_t stream) {
  using G = Ws<RW, BT, STAGES, KPS>;
  if (K % (KBLOCK * KPS) != 0) return hipErrorInvalidValue;
  const int64_t token_blocks = (M + BT - 1) / BT, Mpad = token_blocks * BT;
  const int64_t blocks = token_blocks * ((N + G::BN - 1) / G::BN);
  if (blocks > 0x7fffffff) return hipErrorInvalidValue;
  const int64_t split_blocks = (Mpad * (K / KBLOCK) + ELEMENTWISE_BLOCK - 1) / ELEMENTWISE_BLOCK;
  GRETA_LAUNCH(split_ws_kernel<BT>, dim3(static_cast<unsigned>(split_blocks < 4096 ? split_blocks : 4096)),
               dim3(ELEMENTWISE_BLOCK), 0, stream, reinterpret_cast<uint4*>(xt), x, M, Mpad, K);
  auto kernel = ws_prefill_kernel<RW, BT, STAGES, KPS>;
  hipError_t e = hipFuncSetAttribute(reinterpret_cast<const void*>(kernel), hipFuncAttributeMaxDynamicSharedMemorySize,
                                     G::SHARED);
  if (e != hipSuccess) return e;
  GRETA_LAUNCH(kernel, dim3(static_cast<unsigned>(blocks)), dim3(G::THREADS), G::SHARED, stream, out,
               reinterpret_cast<const uint4*>(xt), static_cast<const uint4*>(w), M, N, K, token_blocks);
  return hipGetLastError();
}

// The shapes: weight rows x tokens (stages of KPS KBLOCKs, as many as fit).
#define GRETA_WS_128x56 2, 56, 3, 4
#define GRETA_WS_192x56 3, 56, 2, 4
#define GRETA_WS_128x104 2, 104, 2, 4
#define GRETA_WS_192x104 3, 104, 3, 2

}  // namespace

// Asked of the runtime once per device (declared in hip/common.h).
bool greta_sm90a() {
#if defined(GRETA_SM90A)
  constexpr int MAX_DEVICES = 128;
  static int known[MAX_DEVICES] = {};  // 0 not asked, 1 no, 2 yes
  int dev = 0;
  if (hipGetDevice(&dev) != hipSuccess || dev < 0 || dev >= MAX_DEVICES) return false;
  if (known[dev] == 0) {
    int major = 0, minor = 0;
    const bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess && major == 9 &&
                    minor == 0;
    known[dev] = ok ? 2 : 1;
  }
  return known[dev] == 2;
#else
  return false;
#endif
}

namespace {

// The shape of least cost: rounds of blocks over the multiprocessors times
// a block's outputs, weighted by how fast each shape makes its outputs where
// all fill the SMs (gate_up at 4096 tokens, TFLOP/s: 192 x 104 211, 128 x
// 104 182, 56-token shapes 160-163): 9, 10 and 11. At 205 tokens: 192 x 56
// for qkv (128 blocks), 128 x 56 for wo and down (128 blocks; 104 tokens
// would leave half the SMs idle), 128 x 104 for gate_up, 192 x 104 for
// lm_head; at 4096 tokens 192 x 104 for all.
hipError_t launch_ws_best(const GretaMatmulOuts& out, const float* x, bf16* xt, const void* w, int64_t M, int64_t N,
                          int64_t K, hipStream_t stream) {
  const int64_t sms = multiprocessors();
  auto cost = [&](int64_t bn, int64_t bt) {
    const int64_t blocks = (M + bt - 1) / bt * ((N + bn - 1) / bn);
    return (blocks + sms - 1) / sms * bn * bt * (bt == 56 ? 11 : bn == 128 ? 10 : 9);
  };
  const int64_t c[4] = {cost(128, 56), cost(192, 56), cost(128, 104), cost(192, 104)};
  int best = 0;
  for (int i = 1; i < 4; i++)
    if (c[i] < c[best]) best = i;
  switch (best) {
    case 0: return launch_ws<GRETA_WS_128x56>(out, x, xt, w, M, N, K, stream);
    case 1: return launch_ws<GRETA_WS_192x56>(out, x, xt, w, M, N, K, stream);
    case 2: return launch_ws<GRETA_WS_128x104>(out, x, xt, w, M, N, K, stream);
    default: return launch_ws<GRETA_WS_192x104>(out, x, xt, w, M, N, K, stream);
  }
}
// ---- Decode of one token on sm_90a: the weights by bulk copies. ----
// The rows1 kernel's work and chain (one 16-row tile a block, KW warps
// taking KBLOCKs s = kw, kw + KW, ..., each c_s to shared memory and summed
// by one thread a row in increasing s, a round of RS stages at a time), with
// the weights not loaded by every lane into registers but copied by one
// producer thread, the tile being contiguous in the tiled layout, into a ring
// of STAGES stages of KW KBLOCKs (8 KB), the first STAGES before the wait
// for the kernel that writes x, then x itself (fp32, one more bulk copy: x
// is 16-byte aligned and K * 4 bytes a multiple of 16, as bulk1_fit's K
// makes it). Few registers and 56 KB of shared memory at K = 4096: three
// blocks an SM, so qkv's 384 tiles all fit at once (wo takes the deep ring
// below). A stage is released once
// the products have read its weights: released as soon as its loads were
// issued, the copy engine overwrote stages under loads still in flight
// (gate_up and lm_head differed from rows1 in the lab at 6 stages).
// Measured on the H100 (dev/matmul.hip decode, in a row, of the copy rate),
// rows1 -> this kernel (3 blocks an SM, 4 stages): qkv 0.82 -> 0.86, wo 0.77
// -> 0.79 (0.83 with 2 blocks an SM and 8 stages), down 0.91 -> 0.92,
// gate_up 1.005 -> 0.99, lm_head 1.053 -> 1.049: outputs as wide as the
// MLP's (GEMV_WIDE_N) keep rows1, whose blocks run in many rounds anyway.
// 8B step, the builds in turn (dev/decode_marginal.mjs 9 whole, three
// pairs): 5.87-5.90, 5.88, 5.87 ms -> 5.87-5.88, 5.86-5.87, 5.80-5.81 ms.
// 6 stages at 3 blocks an SM were slower than 4 (wo 0.78, qkv 0.85); 8
// stages at 2 an SM took qkv (384 tiles, 1.45 rounds) to 0.77. 8 stages at 2
// an SM for wo alone (its 256 tiles all resident): in a row 0.79 -> 0.83, but
// the step 5.80-5.85 -> 5.87-5.94 ms (three pairs in turn): with 8 of 264
// slots free, the kernels after it no longer become resident early. Nor an
// L2 prefetch (cp.async.bulk.prefetch.L2) of the tile past the ring's first
// fill, before the wait, with 1/2 or 1/4 of the L2 cache shared by the
// blocks: after a 4-20 us kernel in the lab (dev/matmul.hip after) wo took
// 12.4 -> 10.6-11.2 us and qkv 17.0 -> 14.6-15.8 us, but the 8B step went
// 5.83 -> 5.90-5.97 ms (half) and 5.84-5.93 ms (a quarter), three rounds in turn.
// The round's sum loading its slots ahead of its adds: in a row wo 0.78 ->
// 0.81, qkv 0.86, down 0.91 -> 0.92 (dev/matmul.hip roof, two rounds); the
// 8B step 5.84-5.90 -> 5.83-5.93 ms (three rounds in turn). Not kept: rounds
// of 4 stages (56 -> 53 KB, four blocks an SM): wo 0.83 in a row, but the
// step 5.88-5.96 ms; x read from global memory a stage ahead by each warp in
// place of shared memory: wo 0.79 at four blocks an SM, 0.74 with 6 stages.
// x by one bulk copy after the ring's first stages (in place of 256 threads
// loading it and a barrier): in a row qkv 0.86 -> 0.87, down 0.92 -> 0.94,
// wo 0.82 -> 0.80 (two rounds); the 8B step 5.85-5.93 -> 5.80-5.89 ms
// (three rounds in turn): kept for the step.
// The rest of wo's gap is not the reads: bulk1's ring alone, no products,
// reads wo's bytes in a row at 0.91 of the copy rate, 16-byte loads at 0.89.
// A block lets the next kernel launch once its first stages are requested,
// not after its last products: the next kernel's blocks take the free slots
// and request their first stages under this one. In a row (roof, two
// rounds): qkv 0.87 -> 0.94, wo 0.80 -> 0.83, down 0.95 -> 0.97 (at the
// last copy instead: qkv 0.91, wo 0.78); the 8B step, builds in turn (three
// rounds, two runs): 5.81-5.89 -> 5.77-5.84 ms, 5.78-5.90 -> 5.79-5.88 ms,
// neutral to better. Grids of at most two tiles an SM whose deep ring fits
// twice (wo, not down) take 8 stages at two blocks an SM: wo 0.82 -> 0.885
// in a row, the step 5.76-5.83 -> 5.79-5.85 ms (medians 5.80 -> 5.82,
// within its spread between runs). Not kept: 6 stages at three an SM for wo
// (0.86, the step +0.12 ms), 5 stages in rounds of 2 (0.84, +0.04 ms); every
// bulk1 at 6 stages, or at four blocks an SM, +0.2 ms; every kernel launched
// with the largest shared-memory carveout, 5.77 -> 6.05 ms (the L1 the
// others lose).
// Where a block lets the next kernel launch (griddepcontrol.launch_dependents):
// once its first stages are requested (production), once its last is, or
// after its last products (for the lab's comparison).
enum Bulk1Trigger { BULK1_AT_START, BULK1_AT_LAST_COPY, BULK1_AT_SUMS };
template <typename W, int KW, int STAGES, int RS, int MINB, int TRIGGER>
__global__ void __launch_bounds__((KW + 1) * GRETA_WAVE_SIZE, MINB)
    bulk1_kernel(GretaMatmulOuts out, const float* x, const uint4* __restrict__ w, int64_t N, int64_t K) {
  constexpr int TU = Tiles<W>::TILE_UNITS;  // uint4 of one KBLOCK of a tile (1 KB)
  constexpr int STAGE = KW * TU;            // uint4 of a stage
  constexpr int ROUND = RS * KW;            // KBLOCKs a round
  constexpr int CONSUMERS = KW * GRETA_WAVE_SIZE;
  extern __shared__ uint4 bulk1_smem[];
  const int S = static_cast<int>(K / KBLOCK);
  uint4* const ring = bulk1_smem;
  uint4* const xs = ring + STAGES * STAGE;
  float* const cs = reinterpret_cast<float*>(xs + S * LANE_CHUNKS * 2);
  uint64_t* const full = reinterpret_cast<uint64_t*>(cs + 2 * ROUND * TILE_I);
  uint64_t* const empty = full + STAGES;
  uint64_t* const xfull = empty + STAGES;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % GRETA_WAVE_SIZE, warp = tid / GRETA_WAVE_SIZE;
  const int R = S / KW;  // stages of the tile
  const uint4* const wt = w + static_cast<int64_t>(blockIdx.x) * S * TU;
  if (tid == 0) {
    for (int st = 0; st < STAGES; st++) {
      mbar_init(full + st, 1);
      mbar_init(empty + st, KW);
    }
    mbar_init(xfull, 1);
    mbar_init_fence();
  }
  __syncthreads();
  if (warp == KW) {  // the producer warp: its first thread issues every copy
    if (lane == 0) {
      const int first = R < STAGES ? R : STAGES;
      for (int r = 0; r < first; r++) {
        mbar_expect_tx(full + r, STAGE * 16);
        bulk_copy(ring + r * STAGE, wt + static_cast<int64_t>(r) * STAGE, STAGE * 16, full + r);
      }
      if (TRIGGER == BULK1_AT_START) greta_allow_next_launch();
      greta_await_prior_kernels();
      // x as one more bulk copy, before the ring waits on the consumers.
      mbar_expect_tx(xfull, static_cast<uint32_t>(K * 4));
      bulk_copy(xs, x, static_cast<uint32_t>(K * 4), xfull);
      for (int r = first; r < R; r++) {
        const int st = r % STAGES;
        mbar_wait(empty + st, ((r / STAGES) + 1) & 1);  // the release of round r - STAGES
        mbar_expect_tx(full + st, STAGE * 16);
        bulk_copy(ring + st * STAGE, wt + static_cast<int64_t>(r) * STAGE, STAGE * 16, full + st);
      }
      if (TRIGGER == BULK1_AT_LAST_COPY) greta_allow_next_launch();
    } else {
      greta_await_prior_kernels();
    }
    return;
  }
  greta_await_prior_kernels();
  mbar_wait(xfull, 0);
  // Every lane's B operand is token 0's chunk: columns past M repeat it and are never stored.
  const int xoff = (lane_k(lane) / LANE_K) * 2;
  float acc = 0.f;  // threads 0 .. TILE_I-1: the chain of row blockIdx.x TILE_I + tid
  int parity = 0;   // which half of the c_s slots a round takes
  for (int r0 = 0; r0 < R; r0 += RS) {
    float* const slots = cs + parity * ROUND * TILE_I;
#pragma unroll
    for (int j = 0; j < RS; j++) {
      const int r = r0 + j;
      if (r >= R) break;
      const int st = r % STAGES, s = r * KW + warp;
      mbar_wait(full + st, (r / STAGES) & 1);
      Raw<W> raw;
#pragma unroll
      for (int u = 0; u < Tiles<W>::UNITS; u++) raw.u[u] = ring[st * STAGE + warp * TU + u * GRETA_WAVE_SIZE + lane];
      MmaB b[3];
      act_terms(xs[s * LANE_CHUNKS * 2 + xoff], xs[s * LANE_CHUNKS * 2 + xoff + 1], b);
      MmaAHalf a[Terms<W>::N][2];
      weight_terms<W>(raw, a);
      MmaC c = mma_zero();
#pragma unroll
      for (int i = 0; i < Chain<W>::STEPS; i++) mma_k32(c, a[Chain<W>::w_term(i)], b[Chain<W>::x_term(i)]);
      GRETA_SYNC_WAVE();
      if (lane == 0) mbar_arrive(empty + st);
#pragma unroll
      for (int e = 0; e < 4; e++)
        if (c_col(lane, e) == 0) slots[(s % ROUND) * TILE_I + c_row(lane, e)] = c.v[e];
    }
    const int s_end = (r0 + RS) * KW < S ? (r0 + RS) * KW : S;
    if (TRIGGER == BULK1_AT_SUMS && s_end == S) greta_allow_next_launch();
    // The round's c_s are stored; the round after next reuses these slots, past the next barrier.
    named_barrier<1, CONSUMERS>();
    if (tid < TILE_I) {
      // A group's loads are issued before its adds, which stay in s order:
      // one shared-memory latency a group, not one an add (the last round's
      // sum is the kernel's tail).
      constexpr int G = 16;
      int s = r0 * KW;
      for (; s + G <= s_end; s += G) {
        float v[G];
#pragma unroll
        for (int i = 0; i < G; i++) v[i] = slots[((s + i) % ROUND) * TILE_I + tid];
#pragma unroll
        for (int i = 0; i < G; i++) acc = acc + v[i];
      }
      for (; s < s_end; s++) acc = acc + slots[(s % ROUND) * TILE_I + tid];
    }
    parity ^= 1;
  }
  const int64_t n = static_cast<int64_t>(blockIdx.x) * TILE_I + tid;
  if (tid < TILE_I && n < N) store_out(out, 0, n, acc);
}

constexpr int BULK1_KW = 8, BULK1_STAGES = 4, BULK1_RS = 8, BULK1_MINB = 3;
constexpr int BULK1_DEEP_STAGES = 8, BULK1_DEEP_MINB = 2;  // wo's grid (bulk1_deep_fit)
template <int KW = BULK1_KW, int STAGES = BULK1_STAGES, int RS = BULK1_RS>
size_t bulk1_smem_bytes(int64_t K) {
  return static_cast<size_t>(STAGES * KW * Tiles<bf16>::TILE_UNITS) * 16 + static_cast<size_t>(K / KBLOCK * LANE_CHUNKS * 2) * 16 +
         2 * RS * KW * TILE_I * 4 + (2 * STAGES + 1) * 8;
}
bool bulk1_fit(int64_t K) { return K % (KBLOCK * BULK1_KW) == 0 && bulk1_smem_bytes(K) <= 227 * 1024; }
// BULK1_DEEP_MINB blocks an SM of the deep ring (1 KB a block the runtime keeps) in an SM's 228 KB.
bool bulk1_deep_fit(int64_t K) {
  return BULK1_DEEP_MINB * (bulk1_smem_bytes<BULK1_KW, BULK1_DEEP_STAGES, BULK1_RS>(K) + 1024) <= 228 * 1024;
}

template <typename W, int KW = BULK1_KW, int STAGES = BULK1_STAGES, int RS = BULK1_RS, int MINB = BULK1_MINB,
          int TRIGGER = BULK1_AT_START>
hipError_t launch_bulk1(const GretaMatmulOuts& out, const float* x, const void* w, int64_t N, int64_t K, hipStream_t stream) {
  if (K % (KBLOCK * KW) != 0) return hipErrorInvalidValue;
  auto kernel = bulk1_kernel<W, KW, STAGES, RS, MINB, TRIGGER>;
  const size_t smem = bulk1_smem_bytes<KW, STAGES, RS>(K);
  hipError_t e = hipFuncSetAttribute(reinterpret_cast<const void*>(kernel), hipFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem));
  if (e != hipSuccess) return e;
  const int64_t blocks = (N + TILE_I - 1) / TILE_I;
  if (blocks > 0x7fffffff) return hipErrorInvalidValue;
  GRETA_LAUNCH(kernel, dim3(static_cast<unsigned>(blocks)), dim3((KW + 1) * GRETA_WAVE_SIZE), smem, stream, out, x,
               static_cast<const uint4*>(w), N, K);
  return hipGetLastError();
}
#endif

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
  GRETA_LAUNCH((mma_rows_kernel<W, FN, TM, KW, R>), dim3(static_cast<unsigned>(blocks)),
               dim3(KW * GRETA_WAVE_SIZE), 0, stream, out, x, static_cast<const uint4*>(w), M, N, K);
  return hipGetLastError();
}

template <typename W, int KW, int P, int U, int MINB = (KW * GRETA_WAVE_SIZE >= 512 ? 1 : 512 / (KW * GRETA_WAVE_SIZE))>
hipError_t launch_rows1(const GretaMatmulOuts& out, const float* x, const void* w, int64_t N, int64_t K,
                        hipStream_t stream) {
  auto kernel = mma_rows1_kernel<W, KW, P, U, MINB>;
  const size_t smem = rows1_smem_bytes<KW, P>(K);
  hipError_t e = hipFuncSetAttribute(reinterpret_cast<const void*>(kernel), hipFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem));
  if (e != hipSuccess) return e;
  const int64_t blocks = (N + TILE_I - 1) / TILE_I;
  if (blocks > 0x7fffffff) return hipErrorInvalidValue;
  GRETA_LAUNCH(kernel, dim3(static_cast<unsigned>(blocks)), dim3(KW * GRETA_WAVE_SIZE), smem, stream, out, x,
               static_cast<const uint4*>(w), N, K);
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
  GRETA_LAUNCH((mma_gemv_kernel<W, FN, NT, P, U>), dim3(static_cast<unsigned>(blocks)),
               dim3(NT * GRETA_WAVE_SIZE), gemv_smem_bytes<P>(M, K), stream, out, x, static_cast<const uint4*>(w),
               M, N, K);
  return hipGetLastError();
}

// Launch shapes (speed only: every shape runs the same chain). One token
// with 2-byte weights whose activations and c_s fit ROWS1_SMEM_MAX: the rows1
// kernel, 8 warps over K, each with a ring of 8 KBLOCKs taken 4 at a time
// (where K has fewer than 8 KBLOCKs, only for outputs narrower than the gemv
// kernel's: synthetic:tiny's lm_head, K = 64, took its decode step 0.78 ->
// 0.86 ms on rows1). Otherwise one token tile with outputs as many as the 8B's MLP up
// projection or more (GEMV_WIDE_N): the gemv kernel where it fits, 4 warps a
// block and the same ring (4-byte weights: 4, 2 at a time). Up to 4 token
// tiles otherwise: the rows kernel, 8 warps over K, 2 blocks a round
// (registers for 2 blocks of 8 warps per SM); outputs as wide as lm_head take
// 2 row tiles a block (4 token tiles where the slots fit: NVIDIA). Measured
// on the H100 with tiled weights (dev/matmul.hip decode, "in a row" over 640
// MB of weights, of the copy rate): rows1 at qkv 0.82, wo 0.77, down 0.90
// (0.87 while rows1 kept x split, 6 bytes a k, and down's 115 KB of shared
// memory left room for one block an SM; the 8B step 6.21 -> 6.02-6.10 ms),
// gate_up 1.00 and lm_head 1.05 (gemv 0.97 and 1.02); with
// row-major weights rows1 had lost at down (0.59 against 0.77) and to gemv
// at gate_up and lm_head, and the gemv kernel at 4096 -> 4096 and 6144 (its
// few warps an SM, one per 16 rows, cannot hide their chains). f32 weights
// keep the rows kernel at 4096 -> 4096 (0.81 against rows1's 0.74).
// Beyond: the split, then the prefill kernel in the block shape whose grid
// fills the multiprocessors best (blocks per multiprocessor, rounded up,
// times the block's outputs; a block of 4 warps is one warp per scheduler).
constexpr int ROWS_KW = 8;
constexpr int ROWS1_KW = 8;
// What a rows1 block may take: NVIDIA sm_80 and later give a block up to
// 163 KB (K up to 38912). A CDNA CU has 64 KB of LDS; rows1 stays within
// 60 KB there (K up to 13312), as the attention tile kernel does, so down
// (K = 14336, exactly 64 KB) keeps the rows kernel until an MI300X run shows
// a block of the whole LDS launching.
constexpr size_t ROWS1_SMEM_MAX = SHARED_PER_SM > (1 << 16) ? 160 * 1024 : SHARED_PER_SM - 4096;
constexpr int64_t WIDE_N = 1 << 16;
constexpr int64_t GEMV_WIDE_N = 16384;
template <typename W>
constexpr int gemv_p() { return sizeof(W) == 4 ? 4 : 8; }
template <typename W>
constexpr int gemv_u() { return sizeof(W) == 4 ? 2 : 4; }  // 4-byte weights: within 128 registers
// rows1's ring (2-byte weights only): P KBLOCKs a warp, taken U at a time.
constexpr int ROWS1_P = 8;
constexpr int ROWS1_U = 4;
bool rows1_fit(int64_t K) { return K % KBLOCK == 0 && rows1_smem_bytes<ROWS1_KW, ROWS1_P>(K) <= ROWS1_SMEM_MAX; }
constexpr int64_t ROWS_MAX_M = rows_r<1, 4, ROWS_KW>() >= 1 ? 4 * TILE_J : 2 * TILE_J;

// Prefill block shapes, as <WN, WT, FN, TM, TG, STAGES>: warps along weight
// rows and tokens, each warp FN weight tiles x TM token tiles, c_s formed TG
// token tiles at a time (FN x TG independent chains), pipeline stages.
// NVIDIA (tile 16 x 8, up to 227 KB of shared memory a block), bf16 weights,
// measured on the H100 at 205 tokens with tiled weights (dev/matmul.hip
// prefill; ncu: the tensor pipe about 44% busy, the warps' shared-memory
// operand reads beside it, so the larger warp tiles win where the grid
// keeps enough warps an SM):
//   C  256 weight rows x 32 tokens, 4 warps of 64 x 32 (16 chains), 4
//      stages (88 KB: two blocks an SM): gate_up 125.6 TFLOP/s and lm_head
//      133.3, against 92.4 and 117.2 for the best earlier shapes
//   D  128 x 56, 4 warps of 32 x 56, 4 stages: wo 81.1, down 89.4 (4096
//      outputs: C's 112 blocks leave an SM one block of 4 warps, 71.6 and
//      78.7)
//   K  256 x 16, 4 warps of 64 x 16 (8 chains), 4 stages (76 KB), where all
//      its blocks fit two an SM at once: wo 84.2, down 94.3 (4096 outputs
//      in 16 x 13 blocks; 205 tokens pad to 208, not 224); D 77.8 and 87.7
//   L  192 x 56, 4 warps of 48 x 56, 3 stages: qkv 86.8 (6144 outputs in
//      128 blocks; D 85.0, C 76.2, K 75.0: 312 blocks)
//   A  128 x 56, 8 warps of 16 x 56, 4 stages: f16 and f32 weights, whose
//      operands take 2 or 3 times the registers
// Tried and not kept: the KBLOCKs of a block split between two groups of
// warps, each keeping half of a two-chain sum (8 warps a block, twice the
// shared memory a stage): qkv 86.8 -> 88.8, wo and down unchanged, gate_up
// 125.6 -> 93.3, lm_head 133.3 -> 95.4 (one block of 8 warps an SM instead of
// C's two of 4, all 8 held at each stage's barrier); 205 tokens 31.9 -> 35.8 ms.
// AMD (tile 16 x 16, 64 KB of LDS): 128 x 64 in two stages, every weight type.
#if defined(GRETA_VENDOR_AMD)
#define GRETA_PREFILL_A 4, 1, 2, 4, 2, 2
#define GRETA_PREFILL_C GRETA_PREFILL_A
#define GRETA_PREFILL_D GRETA_PREFILL_A
#define GRETA_PREFILL_K GRETA_PREFILL_A
#define GRETA_PREFILL_L GRETA_PREFILL_A
#else
#define GRETA_PREFILL_A 8, 1, 1, 7, 7, 4
#define GRETA_PREFILL_C 4, 1, 4, 4, 4, 4
#define GRETA_PREFILL_D 4, 1, 2, 7, 4, 4
#define GRETA_PREFILL_K 4, 1, 4, 2, 2, 4
#define GRETA_PREFILL_L 4, 1, 3, 7, 4, 3
#endif

template <typename P>
int64_t prefill_blocks(int64_t M, int64_t N) {
  return ((M + P::BT - 1) / P::BT) * ((N + P::BN - 1) / P::BN);
}

// Rounds of whole blocks over the multiprocessors, times a block's outputs.
template <typename P>
int64_t prefill_cost(int64_t M, int64_t N, int sms) {
  return (prefill_blocks<P>(M, N) + sms - 1) / sms * P::BN * P::BT;
}

// bf16 weights: C where its grid gives every SM two blocks (8 warps, whose
// 16 chains each then keep the matrix unit busy), else K where its whole
// grid is resident at once (two blocks an SM), else the cheaper of D and L:
// at 205 tokens C for gate_up and lm_head, K for wo and down, L for qkv,
// each the fastest measured but for qkv (a 128 x 32 shape 2% faster). f16
// and f32 weights: A.
template <typename W>
hipError_t launch_prefill_best(const GretaMatmulOuts& out, const float* x, bf16* xt, const void* w, int64_t M,
                               int64_t N, int64_t K, hipStream_t stream) {
  if constexpr (Terms<W>::N == 1) {
#if defined(GRETA_VENDOR_NVIDIA)
    if (K % (4 * KBLOCK) == 0 && greta_sm90a()) return launch_ws_best(out, x, xt, w, M, N, K, stream);
#endif
    const int sms = multiprocessors();
    if (prefill_blocks<Prefill<W, GRETA_PREFILL_C>>(M, N) >= 2 * static_cast<int64_t>(sms))
      return launch_prefill<W, GRETA_PREFILL_C>(out, x, xt, w, M, N, K, stream);
    if (prefill_blocks<Prefill<W, GRETA_PREFILL_K>>(M, N) <= 2 * static_cast<int64_t>(sms))
      return launch_prefill<W, GRETA_PREFILL_K>(out, x, xt, w, M, N, K, stream);
    if (prefill_cost<Prefill<W, GRETA_PREFILL_L>>(M, N, sms) < prefill_cost<Prefill<W, GRETA_PREFILL_D>>(M, N, sms))
      return launch_prefill<W, GRETA_PREFILL_L>(out, x, xt, w, M, N, K, stream);
    return launch_prefill<W, GRETA_PREFILL_D>(out, x, xt, w, M, N, K, stream);
  }
  return launch_prefill<W, GRETA_PREFILL_A>(out, x, xt, w, M, N, K, stream);
}

template <typename W>
hipError_t launch_mma(const GretaMatmulOuts& out, const float* x, const void* w, int64_t M, int64_t N, int64_t K,
                      void* scratch, hipStream_t stream) {
  if (M <= TILE_J) {
    // rows1 spreads K over its warps: with fewer KBLOCKs than warps, wide outputs take the gemv kernel.
    const bool rows1 = M == 1 && sizeof(W) == 2 && rows1_fit(K);
    if constexpr (sizeof(W) == 2) {
#if defined(GRETA_VENDOR_NVIDIA)
      if (M == 1 && N < GEMV_WIDE_N && bulk1_fit(K) && greta_sm90a()) {
        if ((N + TILE_I - 1) / TILE_I <= BULK1_DEEP_MINB * multiprocessors() && bulk1_deep_fit(K))
          return launch_bulk1<W, BULK1_KW, BULK1_DEEP_STAGES, BULK1_RS, BULK1_DEEP_MINB>(out, x, w, N, K, stream);
        return launch_bulk1<W>(out, x, w, N, K, stream);
      }
#endif
      if (rows1 && K >= ROWS1_KW * KBLOCK)
        return launch_rows1<W, ROWS1_KW, ROWS1_P, ROWS1_U>(out, x, w, N, K, stream);
    }
    if (N >= GEMV_WIDE_N && gemv_fit<gemv_p<W>()>(M, K))
      return launch_gemv<W, 1, 4, gemv_p<W>(), gemv_u<W>()>(out, x, w, M, N, K, stream);
    if constexpr (sizeof(W) == 2) {
      if (rows1) return launch_rows1<W, ROWS1_KW, ROWS1_P, ROWS1_U>(out, x, w, N, K, stream);
    }
    if (N >= WIDE_N) return launch_rows<W, 2, 1, ROWS_KW>(out, x, w, M, N, K, stream);
    return launch_rows<W, 1, 1, ROWS_KW, 2>(out, x, w, M, N, K, stream);
  }
  if (M <= 2 * TILE_J) return launch_rows<W, 1, 2, ROWS_KW>(out, x, w, M, N, K, stream);
  if constexpr (rows_r<1, 4, ROWS_KW>() >= 1) {
    if (M <= 4 * TILE_J) return launch_rows<W, 1, 4, ROWS_KW>(out, x, w, M, N, K, stream);
  }
  return launch_prefill_best<W>(out, x, static_cast<bf16*>(scratch), w, M, N, K, stream);
}
}  // namespace

size_t greta_matmul_scratch_bytes(int64_t M, int64_t K) {
  return K % 8 == 0 && M > ROWS_MAX_M ? static_cast<size_t>(3 * (M + PREFILL_PAD) * K) * sizeof(bf16) : 0;
}

hipError_t greta_matmul(const GretaMatmulOuts& out, const float* x, const void* w, int w_type, int64_t M, int64_t N,
                        int64_t K, void* scratch, size_t scratch_bytes, hipStream_t stream) {
  if (out.count < 1 || out.count > GRETA_MATMUL_MAX_OUTS || out.end[out.count - 1] != N) return hipErrorInvalidValue;
  if (K % 8 != 0) {
    switch (w_type) {
      case W_F32: return launch_simt<float>(out, x, w, M, N, K, stream);
      case W_F16: return launch_simt<f16>(out, x, w, M, N, K, stream);
      case W_BF16: return launch_simt<bf16>(out, x, w, M, N, K, stream);
      default: return hipErrorInvalidValue;
    }
  }
  if (((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(scratch)) & 15) != 0)
    return hipErrorInvalidValue;  // 16-byte loads; never fall back silently
  if (scratch_bytes < greta_matmul_scratch_bytes(M, K)) return hipErrorInvalidValue;
  switch (w_type) {
    case W_F32: return launch_mma<float>(out, x, w, M, N, K, scratch, stream);
    case W_F16: return launch_mma<f16>(out, x, w, M, N, K, scratch, stream);
    case W_BF16: return launch_mma<bf16>(out, x, w, M, N, K, scratch, stream);
    default: return hipErrorInvalidValue;
  }
}
