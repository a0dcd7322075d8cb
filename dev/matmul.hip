// Kernel lab (NVIDIA) for hip/matmul.hip, in the manner of llm.c's dev/cuda: every
// variant is validated against an fp64 reference at every shape before it is
// timed. Built as one translation unit with the production kernels, so the
// launch shapes can be forced:
//   nvcc -x cu -O3 -arch=sm_90 --fmad=false -std=c++17 --default-stream per-thread -Ihip dev/matmul.hip -o matmul_lab
//   ./matmul_lab            validate (rel L2 vs fp64, row invariance, every
//                           launch shape equal bit for bit; the dispatch and
//                           every prefill shape equal to main's prefill kernel,
//                           kept below, at qkv, wo, gate_up, down, lm_head and
//                           M = 1, 17, 205, 291), then time
//   ./matmul_lab quick      validation only
//   ./matmul_lab ncu [PATH..] main's prefill kernel and the dispatch (or the
//                           paths named) at qkv and down, M = 205
//   ./matmul_lab prefill    205 tokens at qkv, wo, down, gate_up, lm_head: the
//                           prefill block shapes, each checked bit for bit
//                           against the dispatch, then timed
//   ./matmul_lab decode     one token at qkv, wo, down, gate_up, lm_head: the
//                           rows1 and gemv kernels in other launch shapes
//                           (warps over K, ring depth, row tiles a warp),
//                           each checked bit for bit against the dispatch,
//                           then timed against the copy rate. ncu of the
//                           dispatch at 4096 -> 6144 (rows1): DRAM 55% of
//                           peak, 2 blocks an SM (124 registers), 1.45 waves,
//                           half the stall cycles on shared-memory loads of
//                           the split x; 4096 -> 4096 53%; 14336 -> 4096
//                           (rows) 70%, 0.65 waves; 4096 -> 28672 (gemv) 78%.
//                           Each shape is also timed in a row (48 launches
//                           overlapping as in a decode step, over weights
//                           that never sit in L2), as the step sees it.
// What bounds the narrow decode projections (H100, `decode`, copy 2.99 TB/s,
// in a row): the dispatch reaches qkv 0.685, wo 0.67, down 0.82, gate_up 0.90,
// lm_head 0.94 of the copy rate, and every rows1 shape (2-16 warps over K,
// rings of 4-8, x in registers: rows1x) 0.60-0.69 at qkv and wo. The weights
// streamed alone in rows1's shape (no activations, no products: "loads only")
// reach qkv 0.75-0.80 and wo 0.78; read as contiguous 512-byte warp loads
// ("contiguous loads only") qkv 0.84, wo 0.81, down 0.94, gate_up 0.93. So a
// warp load of 64 bytes from each of 16 rows (the A operand taken straight
// from row-major weights) costs 5-13% of the rate, the products and the
// serial sum the rest (leaving the sum out gains 0.01). Two shapes that move
// the standalone number do not move the 8B step (dev/decode_marginal.mjs,
// builds in turn): rows1p (persistent, two blocks an SM, one ring across a
// block's tiles) qkv 0.735, wo 0.70 in a row, step 6.67-6.73 ms against
// 6.59-6.70; rows1s (weights staged through shared memory by contiguous
// cp.async runs) lm_head 0.953, wo 0.71, qkv 0.69, step 0.25 ms slower (its
// 94 KB of shared memory keep the next kernels' blocks from becoming resident
// early). ncu, one launch at 4096 -> 6144: the dispatch 29.0 us, DRAM 56.7%
// of peak, 760K L2 read requests for 1.71M sectors (64 bytes a request);
// loads only 26.0 us, 64.9%, 768K requests; contiguous loads 22.3 us, 74.5%,
// 393K requests for the same 1.57M sectors (128 bytes a request): half-line
// requests, twice as many, are what the row-major operand loads cost. What is
// left: weights packed at load in the operand order, so that every warp load
// is one contiguous run, for every kernel that reads them.
// Decode (M = 1, one token tile) at outputs of 16384 or more takes the gemv
// kernel, whose block splits x once for its 4 warps, each warp running its
// 16 rows over all of K with a ring of 8 KBLOCKs of weights in registers; the
// narrower outputs keep the rows kernel (since then, at K up to about 8000,
// the rows1 kernel: hip/matmul.hip says why). Measured on the H100 (M = 1 bf16, of
// the copy rate, weights rotated over 512 MB, rows kernel -> dispatch):
// gate_up 0.802 -> 0.864, lm_head 0.884 -> 0.920; qkv 0.665, wo 0.62, down
// 0.80 unchanged (the gemv kernel there: qkv 0.58, wo 0.45; K split over 2-8
// warps at best qkv 0.63, wo 0.58, down 0.66; weights through a cp.async ring
// qkv 0.67, wo 0.53, down 0.60). ncu, 4096 -> 28672: DRAM 76% -> 78% of peak,
// instructions 34.2M -> 11.8M, the block barrier stall gone, long scoreboard
// on the weights the top stall; 14336 -> 4096 (rows kernel): DRAM 73%,
// occupancy 24%: too few 16-row tiles (256) for one warp a tile to fill the
// SMs, and the rows kernel's barrier and serial sum.
// Timings: medians with L2 flushed before each launch; weights bytes / time
// against a device-to-device copy measured in the same process. The prefill
// paths include the split of the activations (7 us at K = 4096, 15 us at
// 14336).
//
// Prefill: x split once per call into bf16 hi/mid/lo rows (scratch the caller
// owns); the product kernel copies weights and terms in 3-4 cp.async stages
// with no per-row bound checks (the split pads the last token tile with
// zeros), and bf16 weights may be regrouped on the way in into the mma's A
// register order (one 16-byte read per operand, no register shuffles).
// Shapes: A 128 x 56 of 8 warps (16 x 56 each), B 96 x 112 of 4 warps
// (48 x 56 each, regrouped); the dispatch takes B at qkv and lm_head, A at
// wo, gate_up and down (205 tokens).
//
// Measured (H100, ./matmul_lab, one run; copy 2.99 TB/s), M = 205, bf16,
// TFLOP/s, new (dispatch) vs main's prefill kernel:
//   qkv 4096->6144 80.4 (56.1)   wo 4096->4096 67.4 (46.3)
//   gate_up 4096->28672 89.9 (73.9)   down 14336->4096 71.7 (48.1)
//   lm_head 4096->128256 89.3 (75.5); forced shapes: qkv B 82.0, wo A 67.6,
//   gate_up A 91.2, down A 71.6, lm_head B 106.7. M = 291: qkv 78.2 (65.0),
//   down 76.3 (54.9). f16 4096^2 29.1 (19.5), f32 41.5 (31.8).
//   `prefill` (205 tokens, each shape checked bit for bit first): the 64 x 56
//   block of 4 warps (G) down 79.4, wo 69.4, qkv 79.5, gate_up 87.8; slower
//   everywhere: 64 x 112 of 8 warps, 64 x 56 regrouped, 128 x 112 of 8 warps
//   regrouped, B with 4 stages, 192 x 56 of 4 warps regrouped (the larger
//   tiles take 255 registers and spill). The dispatch: qkv 83.7, wo 69.1,
//   down 77.7, gate_up 91.6, lm_head 111.7.
//   rel L2 vs fp64: 2.1e-7 at K = 4096, 3.9e-7 at K = 14336 (the CUDA-core
//   kernel's: the same); every launch shape bit-identical to main's kernel,
//   rows alone too.
// ncu (1.44 GHz under the profiler), down 14336->4096, M = 205: main's kernel
// 609 us, 184 M instructions (9.6 per mma), issue slots 39%, tensor pipe 25%;
// A 402 us, 100 M instructions (5.2 per mma), tensor pipe 39%, issue 34%,
// shared-memory pipe 58%; stalls per issued instruction: fixed-latency wait
// 1.76, shared-memory loads 1.27, global 0.60, barrier 0.40, tensor pipe
// throttle 0.35: latency bound with 2 warps per scheduler (one block of 8
// warps an SM: 4096 x 205 is 128 blocks). qkv 4096->6144: main's kernel
// 227 us, 80 M instructions, issue 46%, tensor pipe 29%; B 165 us, 26 M
// instructions, tensor pipe 45%, issue 21%, shared-memory pipe 38%, 255
// registers, one warp per scheduler: fixed-latency wait 2.08 per issued
// instruction, global 0.40, shared-memory loads 0.28, barrier 0.10 (each
// warp waits on its own chains). The rows kernel (M = 1, 14336 -> 4096):
// DRAM 72% of peak, 24% occupancy.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../hip/matmul.hip"

#include <cuda_fp16.h>  // the lab runs on the borrowed NVIDIA GPU

#define CHECK(e)                                                                                  \
  do {                                                                                            \
    hipError_t err_ = (e);                                                                        \
    if (err_ != hipSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #e, hipGetErrorString(err_)); \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

// ---- The reference: the prefill kernel of main before the split-once kernel
// (x split in every block, 4 warps of 32 x 32, two stages), kept verbatim so
// the lab checks the new one against its bits at every shape. ----
using namespace greta_mma;
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
    main_tiled_kernel(GretaMatmulOuts out, const float* __restrict__ x, const W* __restrict__ w, int64_t M, int64_t N,
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

// Blocks of the prefill kernel an SM holds: 4 where its shared memory allows
// (registers are then capped to fit), else as many as fit.
template <typename W, int WN, int WT, int FN, int TM, int STAGES>
constexpr int main_tiled_min_blocks() {
  constexpr int bytes = STAGES * (WN * FN * TILE_I * KBLOCK * static_cast<int>(sizeof(W)) +
                                  WT * TM * TILE_J * KBLOCK * static_cast<int>(sizeof(float))) +
                        3 * WT * TM * TILE_J * KBLOCK * 2;
  return SHARED_PER_SM / bytes >= 4 ? 4 : SHARED_PER_SM / bytes >= 1 ? SHARED_PER_SM / bytes : 1;
}

template <typename W, int WN, int WT, int FN, int TM, int STAGES,
          int MINB = main_tiled_min_blocks<W, WN, WT, FN, TM, STAGES>()>
hipError_t launch_main_tiled(const GretaMatmulOuts& out, const float* x, const void* w, int64_t M, int64_t N, int64_t K,
                        hipStream_t stream) {
  constexpr int64_t BN = WN * FN * TILE_I, BT = WT * TM * TILE_J;
  const int64_t token_tiles = (M + BT - 1) / BT;
  const int64_t blocks = token_tiles * ((N + BN - 1) / BN);
  if (blocks > 0x7fffffff) return hipErrorInvalidValue;
  hipLaunchKernelGGL((main_tiled_kernel<W, WN, WT, FN, TM, STAGES, MINB>), dim3(static_cast<unsigned>(blocks)),
                     dim3(WN * WT * GRETA_WAVE_SIZE), 0, stream, out, x, static_cast<const W*>(w), M, N, K, token_tiles);
  return hipGetLastError();
}


// rows1 with the activations in registers: every warp loads the x chunks of
// its own KBLOCKs from L2 into a ring beside its weights and splits them
// itself, so no shared split and no barrier stand before the first product;
// the c_s and their serial sum are rows1's (the same bits).
// MODE (diagnostics, wrong results): 1 leaves out the serial sum (row r
// stores c_0), 2 only streams the weights (no activations, no products).
template <typename W, int KW, int P, int U, int MODE = 0>
__global__ void GRETA_LAUNCH_BOUNDS(KW * GRETA_WAVE_SIZE, KW * GRETA_WAVE_SIZE >= 512 ? 1 : 512 / (KW * GRETA_WAVE_SIZE))
    rows1x_kernel(GretaMatmulOuts out, const float* x, const W* __restrict__ w, int64_t N, int64_t K) {
  static_assert(P % U == 0, "rows1x kernel: the ring is taken U KBLOCKs at a time");
  constexpr int WPER = LANE_K * static_cast<int>(sizeof(W)) / 16;
  constexpr int STEP = KBLOCK * static_cast<int>(sizeof(W)) / 16;
  extern __shared__ float rows1x_cs[];
  const int lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int kw = threadIdx.x / GRETA_WAVE_SIZE;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * TILE_I;
  const int S = static_cast<int>(K / KBLOCK);
  const uint4* wp[A_ROWS];
#pragma unroll
  for (int r = 0; r < A_ROWS; r++) {
    const int64_t n = n0 + a_row(lane, r);
    wp[r] = reinterpret_cast<const uint4*>(w + (n < N ? n : N - 1) * K + lane_k(lane));
  }
  const uint4* const xp = reinterpret_cast<const uint4*>(x + lane_k(lane));
  constexpr int XSTEP = KBLOCK / 4;  // uint4 of x from one KBLOCK to the next
  Raw<W> ring[P][A_ROWS];
  uint4 xr[P][2];
  auto load = [&](Raw<W> (&dst)[A_ROWS], int s) {
#pragma unroll
    for (int r = 0; r < A_ROWS; r++)
#pragma unroll
      for (int i = 0; i < WPER; i++) dst[r].v[i] = wp[r][static_cast<int64_t>(s) * STEP + i];
  };
  auto loadx = [&](uint4 (&dst)[2], int s) {
    dst[0] = greta_load(xp + static_cast<int64_t>(s) * XSTEP);
    dst[1] = greta_load(xp + static_cast<int64_t>(s) * XSTEP + 1);
  };
#pragma unroll
  for (int j = 0; j < P; j++)
    if (kw + j * KW < S) load(ring[j], kw + j * KW);
  greta_await_prior_kernels();
  if constexpr (MODE == 3) {  // the tile's weights (16 whole rows: one contiguous run) in 512-byte warp loads
    const uint4* const tw = reinterpret_cast<const uint4*>(w + n0 * K);
    const int chunks = static_cast<int>(TILE_I * K * static_cast<int64_t>(sizeof(W)) / 512);
    uint32_t fold = 0;
    uint4 cr[2 * P];
    for (int c0 = kw; c0 < chunks; c0 += 2 * P * KW) {
#pragma unroll
      for (int u = 0; u < 2 * P; u++)
        if (c0 + u * KW < chunks) cr[u] = tw[static_cast<int64_t>(c0 + u * KW) * 32 + lane];
#pragma unroll
      for (int u = 0; u < 2 * P; u++)
        if (c0 + u * KW < chunks) fold ^= cr[u].x ^ cr[u].y ^ cr[u].z ^ cr[u].w;
    }
    greta_allow_next_launch();
    if (fold == 0x12345678u) store_out(out, 0, n0, 1.f);
    return;
  }
  if constexpr (MODE == 2) {
    uint32_t fold = 0;
    for (int j0 = 0; kw + j0 * KW < S; j0 += P) {
#pragma unroll
      for (int u = 0; u < P; u++) {
        const int s = kw + (j0 + u) * KW;
        if (s < S)
#pragma unroll
          for (int r = 0; r < A_ROWS; r++) fold ^= ring[u][r].v[0].x ^ ring[u][r].v[0].y ^ ring[u][r].v[0].z ^ ring[u][r].v[0].w;
        if (s + P * KW < S) load(ring[u], s + P * KW);
      }
    }
    greta_allow_next_launch();
    if (fold == 0x12345678u) store_out(out, 0, n0, 1.f);  // keeps the loads
    return;
  }
#pragma unroll
  for (int j = 0; j < P; j++)
    if (kw + j * KW < S) loadx(xr[j], kw + j * KW);
  for (int j0 = 0; kw + j0 * KW < S; j0 += P) {
#pragma unroll
    for (int u0 = 0; u0 < P; u0 += U) {
      MmaC c[U];
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int s = kw + (j0 + u0 + u) * KW;
        c[u] = mma_zero();
        if (s < S) {
          MmaB b[3];
          act_terms(xr[u0 + u][0], xr[u0 + u][1], b);
          MmaA a[Terms<W>::N];
          weight_terms<W>(ring[u0 + u], a);
#pragma unroll
          for (int i = 0; i < Chain<W>::STEPS; i++) mma_k32(c[u], a[Chain<W>::w_term(i)], b[Chain<W>::x_term(i)]);
        }
      }
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int s = kw + (j0 + u0 + u) * KW;
        if (s + P * KW < S) {
          load(ring[u0 + u], s + P * KW);
          loadx(xr[u0 + u], s + P * KW);
        }
      }
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int s = kw + (j0 + u0 + u) * KW;
        if (s < S)
#pragma unroll
          for (int e = 0; e < 4; e++)
            if (c_col(lane, e) == 0) rows1x_cs[s * TILE_I + c_row(lane, e)] = c[u].v[e];
      }
    }
  }
  greta_allow_next_launch();
  __syncthreads();
  if (threadIdx.x < TILE_I) {
    const int r = static_cast<int>(threadIdx.x);
    float acc = 0.f;
    if constexpr (MODE == 1) acc = rows1x_cs[r];
    else
      for (int s = 0; s < S; s++) acc = acc + rows1x_cs[s * TILE_I + r];
    if (n0 + r < N) store_out(out, 0, n0 + r, acc);
  }
}

template <typename W, int KW, int P, int U, int MODE = 0>
hipError_t launch_rows1x(const GretaMatmulOuts& out, const float* x, const void* w, int64_t N, int64_t K,
                         hipStream_t stream) {
  auto kernel = rows1x_kernel<W, KW, P, U, MODE>;
  const size_t smem = static_cast<size_t>(K / KBLOCK * TILE_I) * sizeof(float);
  hipError_t e = hipFuncSetAttribute(reinterpret_cast<const void*>(kernel), hipFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem));
  if (e != hipSuccess) return e;
  const int64_t blocks = (N + TILE_I - 1) / TILE_I;
  GRETA_LAUNCH(kernel, dim3(static_cast<unsigned>(blocks)), dim3(KW * GRETA_WAVE_SIZE), smem, stream, out, x,
               static_cast<const W*>(w), N, K);
  return hipGetLastError();
}

// rows1, persistent: a grid of G blocks (G = SMs: one block an SM, half its
// registers, so the next kernel's blocks can be resident beside it and load
// their first weights while this one drains). Block b takes row tiles b,
// b + G, ...; each warp runs one ring over all of its (tile, KBLOCK) items,
// so the next tile's weights are in flight while a tile ends. x is split once
// per block for all its tiles; c_s go to one of two buffers by tile parity,
// and after a tile's barrier warp 0 sums that tile's rows in increasing s
// (rows1's chain, the same bits) while the others go on.
size_t rows1p_smem_bytes(int64_t K) {
  const int64_t S = K / KBLOCK;
  return static_cast<size_t>(S * LANE_CHUNKS * 3) * sizeof(uint4) + static_cast<size_t>(2 * S * TILE_I) * sizeof(float);
}

template <typename W, int KW, int P, int U>
__global__ void __launch_bounds__(KW * GRETA_WAVE_SIZE, 2)
    rows1p_kernel(GretaMatmulOuts out, const float* x, const W* __restrict__ w, int64_t N, int64_t K) {
  static_assert(P % U == 0, "rows1p kernel: the ring is taken U items at a time");
  constexpr int WPER = LANE_K * static_cast<int>(sizeof(W)) / 16;
  constexpr int STEP = KBLOCK * static_cast<int>(sizeof(W)) / 16;
  constexpr int THREADS = KW * GRETA_WAVE_SIZE;
  extern __shared__ uint4 rows1p_smem[];
  const int lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int kw = threadIdx.x / GRETA_WAVE_SIZE;
  const int S = static_cast<int>(K / KBLOCK);
  const int64_t tiles = (N + TILE_I - 1) / TILE_I;
  const int G = static_cast<int>(gridDim.x);
  const int my_tiles = static_cast<int>((tiles - blockIdx.x + G - 1) / G);
  const int nw = S / KW;  // items a warp has per tile (the launch requires S % KW == 0, nw % U == 0)
  const int J = nw * my_tiles;
  uint4* const xs = rows1p_smem;
  float* const cs = reinterpret_cast<float*>(xs + S * LANE_CHUNKS * 3);

  // Row r of this lane in tile 0 of the block; tile i adds i * G * TILE_I rows.
  int64_t rowoff[A_ROWS];
#pragma unroll
  for (int r = 0; r < A_ROWS; r++) rowoff[r] = static_cast<int64_t>(blockIdx.x) * TILE_I + a_row(lane, r);
  const uint4* const wbase = reinterpret_cast<const uint4*>(w + lane_k(lane));
  const int64_t row_u4 = K * static_cast<int64_t>(sizeof(W)) / 16;  // uint4 per weight row
  Raw<W> ring[P][A_ROWS];
  auto load = [&](Raw<W> (&dst)[A_ROWS], int j) {
    const int i = j / nw;
    const int s = kw + (j - i * nw) * KW;
#pragma unroll
    for (int r = 0; r < A_ROWS; r++) {
      int64_t n = rowoff[r] + static_cast<int64_t>(i) * G * TILE_I;
      n = n < N ? n : N - 1;
#pragma unroll
      for (int e = 0; e < WPER; e++) dst[r].v[e] = wbase[n * row_u4 + static_cast<int64_t>(s) * STEP + e];
    }
  };
#pragma unroll
  for (int j = 0; j < P; j++)
    if (j < J) load(ring[j], j);
  greta_await_prior_kernels();
  constexpr int XB = 4;
  for (int i0 = 0; i0 < S * LANE_CHUNKS; i0 += XB * THREADS) {
    uint4 raw[XB][2];
#pragma unroll
    for (int j = 0; j < XB; j++) {
      const int i = i0 + j * THREADS + static_cast<int>(threadIdx.x);
      if (i < S * LANE_CHUNKS) {
        const uint4* const src = reinterpret_cast<const uint4*>(x + static_cast<int64_t>(i) * LANE_K);
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
        uint4* const dst = xs + i * 3;
#pragma unroll
        for (int e = 0; e < 3; e++) dst[e] = b[e].v;
      }
    }
  }
  __syncthreads();

  const int xoff = (lane_k(lane) / LANE_K) * 3;
  bool allowed = false;
  for (int j0 = 0; j0 < J; j0 += P) {
#pragma unroll
    for (int u0 = 0; u0 < P; u0 += U) {
      const int jb = j0 + u0;
      if (jb >= J) break;
      const int i = jb / nw;  // the U items share a tile: nw % U == 0
      MmaC c[U];
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int s = kw + (jb + u - i * nw) * KW;
        c[u] = mma_zero();
        MmaB b[3];
#pragma unroll
        for (int e = 0; e < 3; e++) b[e].v = xs[s * LANE_CHUNKS * 3 + xoff + e];
        MmaA a[Terms<W>::N];
        weight_terms<W>(ring[u0 + u], a);
#pragma unroll
        for (int e = 0; e < Chain<W>::STEPS; e++) mma_k32(c[u], a[Chain<W>::w_term(e)], b[Chain<W>::x_term(e)]);
      }
#pragma unroll
      for (int u = 0; u < U; u++)
        if (jb + u + P < J) load(ring[u0 + u], jb + u + P);
      if (!allowed && jb + U + P >= J) {
        greta_allow_next_launch();  // this warp's last weights are in flight
        allowed = true;
      }
      float* const ct = cs + (i & 1) * S * TILE_I;
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int s = kw + (jb + u - i * nw) * KW;
#pragma unroll
        for (int e = 0; e < 4; e++)
          if (c_col(lane, e) == 0) ct[s * TILE_I + c_row(lane, e)] = c[u].v[e];
      }
      if (jb + U == (i + 1) * nw) {  // the tile's last items: every warp reaches this barrier together
        __syncthreads();
        if (threadIdx.x < TILE_I) {
          const int r = static_cast<int>(threadIdx.x);
          float acc = 0.f;
          for (int s = 0; s < S; s++) acc = acc + ct[s * TILE_I + r];
          const int64_t n = static_cast<int64_t>(blockIdx.x + static_cast<int64_t>(i) * G) * TILE_I + r;
          if (n < N) store_out(out, 0, n, acc);
        }
      }
    }
  }
}

template <typename W, int KW, int P, int U>
hipError_t launch_rows1p(const GretaMatmulOuts& out, const float* x, const void* w, int64_t N, int64_t K, int per_sm,
                         hipStream_t stream) {
  const int64_t S = K / KBLOCK;
  if (K % KBLOCK != 0 || S % KW != 0 || (S / KW) % U != 0) return hipErrorInvalidValue;
  auto kernel = rows1p_kernel<W, KW, P, U>;
  const size_t smem = rows1p_smem_bytes(K);
  hipError_t e = hipFuncSetAttribute(reinterpret_cast<const void*>(kernel), hipFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem));
  if (e != hipSuccess) return e;
  const int64_t tiles = (N + TILE_I - 1) / TILE_I;
  const int64_t fill = static_cast<int64_t>(multiprocessors()) * per_sm;
  const int64_t grid = tiles < fill ? tiles : fill;
  GRETA_LAUNCH(kernel, dim3(static_cast<unsigned>(grid)), dim3(KW * GRETA_WAVE_SIZE), smem, stream, out, x,
               static_cast<const W*>(w), N, K);
  return hipGetLastError();
}

// rows1 with staged weights: a warp's weights go global -> shared memory by
// cp.async in runs of RUN KBLOCKs of its 16 rows, each instruction two rows'
// whole 256-byte runs (contiguous, where the register ring's loads take 64
// bytes of each of 16 rows), and the A operands are read from there. Warp kw
// takes runs kw, kw + KW, ...; its c_s and their serial sum are rows1's (the
// same bits). Stage rows are padded to 320 bytes: the lanes of a 16-byte read
// phase (two rows) fall in distinct banks.
constexpr int S1_RUN = 4;
constexpr int S1_ROWB = S1_RUN * KBLOCK * 2 + 64;
constexpr int S1_STAGE = TILE_I * S1_ROWB;
template <int KW, int P>
size_t rows1s_smem_bytes(int64_t K) {
  const int64_t S = K / KBLOCK;
  return static_cast<size_t>(KW * P * S1_STAGE) + static_cast<size_t>(S * LANE_CHUNKS * 3) * sizeof(uint4) +
         static_cast<size_t>(S * TILE_I) * sizeof(float);
}

template <int KW, int P>
__global__ void __launch_bounds__(KW * GRETA_WAVE_SIZE)
    rows1s_kernel(GretaMatmulOuts out, const float* x, const greta_hip::bf16* __restrict__ w, int64_t N, int64_t K) {
  using W = greta_hip::bf16;
  constexpr int THREADS = KW * GRETA_WAVE_SIZE;
  extern __shared__ uint4 rows1s_smem[];
  const int lane = threadIdx.x % GRETA_WAVE_SIZE;
  const int kw = threadIdx.x / GRETA_WAVE_SIZE;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * TILE_I;
  const int S = static_cast<int>(K / KBLOCK);
  const int R = S / S1_RUN;  // the launch requires S % S1_RUN == 0
  char* const stages = reinterpret_cast<char*>(rows1s_smem) + kw * P * S1_STAGE;
  uint4* const xs = reinterpret_cast<uint4*>(reinterpret_cast<char*>(rows1s_smem) + KW * P * S1_STAGE);
  float* const cs = reinterpret_cast<float*>(xs + S * LANE_CHUNKS * 3);

  auto issue = [&](int slot, int q) {
    char* const dst = stages + slot * S1_STAGE;
#pragma unroll
    for (int i = 0; i < TILE_I / 2; i++) {
      const int row = 2 * i + lane / 16, chunk = lane % 16;
      int64_t n = n0 + row;
      n = n < N ? n : N - 1;
      copy16_async(dst + row * S1_ROWB + chunk * 16, w + n * K + static_cast<int64_t>(q) * S1_RUN * KBLOCK + chunk * 8, true);
    }
  };
#pragma unroll
  for (int p = 0; p < P; p++) {
    if (kw + p * KW < R) issue(p, kw + p * KW);
    copy_commit();
  }
  greta_await_prior_kernels();
  constexpr int XB = 4;
  for (int i0 = 0; i0 < S * LANE_CHUNKS; i0 += XB * THREADS) {
    uint4 raw[XB][2];
#pragma unroll
    for (int j = 0; j < XB; j++) {
      const int i = i0 + j * THREADS + static_cast<int>(threadIdx.x);
      if (i < S * LANE_CHUNKS) {
        const uint4* const src = reinterpret_cast<const uint4*>(x + static_cast<int64_t>(i) * LANE_K);
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
        uint4* const dst = xs + i * 3;
#pragma unroll
        for (int e = 0; e < 3; e++) dst[e] = b[e].v;
      }
    }
  }
  __syncthreads();

  const int xoff = (lane_k(lane) / LANE_K) * 3;
  for (int j = 0; kw + j * KW < R; j++) {
    copy_wait<P - 1>();
    __syncwarp();
    const char* const st = stages + (j % P) * S1_STAGE;
    const int q = kw + j * KW;
    MmaC c[S1_RUN];
#pragma unroll
    for (int bl = 0; bl < S1_RUN; bl++) {
      const int s = q * S1_RUN + bl;
      Raw<W> raw[A_ROWS];
#pragma unroll
      for (int r = 0; r < A_ROWS; r++)
        raw[r].v[0] = *reinterpret_cast<const uint4*>(st + a_row(lane, r) * S1_ROWB + bl * KBLOCK * 2 + lane_k(lane) * 2);
      MmaB b[3];
#pragma unroll
      for (int e = 0; e < 3; e++) b[e].v = xs[s * LANE_CHUNKS * 3 + xoff + e];
      MmaA a[1];
      weight_terms<W>(raw, a);
      c[bl] = mma_zero();
#pragma unroll
      for (int e = 0; e < Chain<W>::STEPS; e++) mma_k32(c[bl], a[Chain<W>::w_term(e)], b[Chain<W>::x_term(e)]);
    }
    __syncwarp();  // every lane has read the stage before it is refilled
    if (kw + (j + P) * KW < R) issue(j % P, kw + (j + P) * KW);
    copy_commit();
#pragma unroll
    for (int bl = 0; bl < S1_RUN; bl++) {
      const int s = q * S1_RUN + bl;
#pragma unroll
      for (int e = 0; e < 4; e++)
        if (c_col(lane, e) == 0) cs[s * TILE_I + c_row(lane, e)] = c[bl].v[e];
    }
  }
  greta_allow_next_launch();
  __syncthreads();
  if (threadIdx.x < TILE_I) {
    const int r = static_cast<int>(threadIdx.x);
    float acc = 0.f;
    for (int s = 0; s < S; s++) acc = acc + cs[s * TILE_I + r];
    if (n0 + r < N) store_out(out, 0, n0 + r, acc);
  }
}

template <int KW, int P>
hipError_t launch_rows1s(const GretaMatmulOuts& out, const float* x, const void* w, int64_t N, int64_t K,
                         hipStream_t stream) {
  if (K % (S1_RUN * KBLOCK) != 0) return hipErrorInvalidValue;
  auto kernel = rows1s_kernel<KW, P>;
  const size_t smem = rows1s_smem_bytes<KW, P>(K);
  hipError_t e = hipFuncSetAttribute(reinterpret_cast<const void*>(kernel), hipFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem));
  if (e != hipSuccess) return e;
  const int64_t blocks = (N + TILE_I - 1) / TILE_I;
  GRETA_LAUNCH(kernel, dim3(static_cast<unsigned>(blocks)), dim3(KW * GRETA_WAVE_SIZE), smem, stream, out, x,
               static_cast<const greta_hip::bf16*>(w), N, K);
  return hipGetLastError();
}

namespace lab {

__device__ uint32_t hash(uint64_t i, uint32_t seed) {
  uint64_t z = i * 0x9E3779B97F4A7C15ull + seed * 0xD1B54A32D192ED03ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return static_cast<uint32_t>(z ^ (z >> 31));
}
__device__ float uni(uint64_t i, uint32_t seed) { return (hash(i, seed) >> 8) * (2.f / 16777216.f) - 1.f; }

__global__ void fill_f32(float* p, int64_t n, uint32_t seed, float scale) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    p[i] = uni(i, seed) * scale;
}
__global__ void fill_bf16(uint16_t* p, int64_t n, uint32_t seed, float scale) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    p[i] = static_cast<uint16_t>(__float_as_uint(uni(i, seed) * scale) >> 16);
}
__global__ void fill_f16(uint16_t* p, int64_t n, uint32_t seed, float scale) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    p[i] = __half_as_ushort(__float2half_rn(uni(i, seed) * scale));
}

template <typename W>
__device__ double wval(const W* w, int64_t i);
template <>
__device__ double wval<float>(const float* w, int64_t i) { return w[i]; }
template <>
__device__ double wval<greta_hip::bf16>(const greta_hip::bf16* w, int64_t i) { return greta_hip::to_f32(w[i]); }
template <>
__device__ double wval<greta_hip::f16>(const greta_hip::f16* w, int64_t i) { return greta_hip::to_f32(w[i]); }

// fp64 reference, 16 x 16 output tiles through shared memory.
template <typename W>
__global__ void ref_kernel(double* out, const float* x, const W* w, int64_t M, int64_t N, int64_t K) {
  __shared__ double xs[16][17], ws[16][17];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m = blockIdx.y * 16 + ty, n = blockIdx.x * 16 + tx;
  double acc = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 16) {
    const int64_t mx = blockIdx.y * 16 + ty, kk = k0 + tx, nw = blockIdx.x * 16 + ty;
    xs[ty][tx] = (mx < M && kk < K) ? (double)x[mx * K + kk] : 0.0;
    ws[ty][tx] = (nw < N && kk < K) ? wval<W>(w, nw * K + kk) : 0.0;
    __syncthreads();
    for (int j = 0; j < 16; j++) acc = fma(xs[ty][j], ws[tx][j], acc);
    __syncthreads();
  }
  if (m < M && n < N) out[m * N + n] = acc;
}

__global__ void rel_l2(const float* got, const double* want, int64_t n, double* sums) {
  double d = 0, r = 0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const double e = (double)got[i] - want[i];
    d += e * e;
    r += want[i] * want[i];
    if (!(got[i] == got[i])) d += 1e300;  // a NaN fails
  }
  atomicAdd(&sums[0], d);
  atomicAdd(&sums[1], r);
}

struct Buf {
  void* p = nullptr;
  size_t bytes = 0;
  void ensure(size_t b) {
    if (b <= bytes) return;
    if (p) CHECK(hipFree(p));
    CHECK(hipMalloc(&p, b));
    bytes = b;
  }
};

enum Path { NEW, OLD, MAIN, P_A, P_B, P_C, P_D, P_E, P_F, R_A, R_B, R_C, R_2, R_4, R_E,
            D_R1, D_R1_P4, D_R1_KW4, D_R1_KW4_P4, D_R1_KW16_P4, D_G1, D_G2, D_G8W,
            D_X_KW8_P4, D_X_KW8_P6, D_X_KW4_P4, D_X_KW4_P8, D_X_KW16_P4, D_X_NOSUM, D_X_LOADS, D_X_LOADS_P8,
            D_P1_P8, D_P2_P8, D_P1_P4, D_X_CONTIG, D_S_KW8_P2, D_S_KW4_P3, D_S_KW4_P4, D_S_KW8_P3,
            P_G, P_H, P_I, P_J, P_K, P_L, NPATHS };
const char* path_name[NPATHS] = {"new(dispatch)",        "old(cuda-core)",       "main(split per block)",
                                 "A 128x56 8w",          "B 96x112 q",           "C 256x32 q",
                                 "128x56 4w q",          "128x56 8w q",          "128x56 4w",            "rows f1 t1 kw8",
                                 "rows f2 t1 kw8",       "rows f1 t1 kw16",      "rows f1 t2 kw8",
                                 "rows f1 t4 kw8",       "rows f1 t1 kw8 r2",    "rows1 kw8 p8 u4",
                                 "rows1 kw8 p4 u2",      "rows1 kw4 p8 u4",      "rows1 kw4 p4 u2",
                                 "rows1 kw16 p4 u2",     "gemv f1 4w p8 u4",     "gemv f2 4w p4 u2",
                                 "gemv f1 8w p8 u4",     "rows1x kw8 p4 u2",
                                 "rows1x kw8 p6 u2",     "rows1x kw4 p4 u2",     "rows1x kw4 p8 u4",
                                 "rows1x kw16 p4 u2",    "rows1x no sum (wrong)", "rows1x loads only",
                                 "rows1x loads only p8", "rows1p 1/SM p8 u4",    "rows1p 2/SM p8 u4",
                                 "rows1p 1/SM p4 u2",    "contiguous loads only", "rows1s kw8 p2",
                                 "rows1s kw4 p3",        "rows1s kw4 p4",        "rows1s kw8 p3",
                                 "64x56 4w",             "64x112 8w",            "64x56 4w q",
                                 "128x112 8w q",         "B 4 stages",           "192x56 4w q"};
// Decode-only paths (M = 1, 2-byte weights): the rows1 and gemv kernels in other launch shapes.
bool is_decode(int p) { return p >= D_R1 && p < P_G; }
int rows_tokens(int p) { return p == R_E ? greta_mma::TILE_J : p == R_2 ? 2 * greta_mma::TILE_J : p == R_4 ? 4 * greta_mma::TILE_J : greta_mma::TILE_J; }

Buf bscr;  // the activation terms of the prefill paths

// A forced prefill shape: the split, then the kernel (as the dispatch runs them).
template <typename W, int WN, int WT, int FN, int TM, int TG, int STAGES, bool WQ>
hipError_t prefill(const GretaMatmulOuts& o, const float* x, const void* w, int64_t M, int64_t N, int64_t K) {
  bscr.ensure(3 * (M + PREFILL_PAD) * K * 2);
  return launch_prefill<W, WN, WT, FN, TM, TG, STAGES, WQ>(o, x, static_cast<greta_hip::bf16*>(bscr.p), w, M, N, K, 0);
}

template <typename W>
hipError_t run(Path p, const GretaMatmulOuts& o, const float* x, const void* w, int64_t M, int64_t N, int64_t K) {
  constexpr int wt = std::is_same<W, float>::value ? 0 : std::is_same<W, greta_hip::f16>::value ? 2 : 3;
  constexpr int F = sizeof(W) == 4 ? 1 : 2;
  switch (p) {
    case NEW: {
      const size_t sb = greta_matmul_scratch_bytes(M, K);
      bscr.ensure(sb + 16);
      return greta_matmul(o, x, w, wt, M, N, K, bscr.p, sb, 0);
    }
    case OLD: return launch_simt<W>(o, x, w, M, N, K, 0);
    case MAIN: return launch_main_tiled<W, 4, 1, F, KBLOCK / TILE_J, 2>(o, x, w, M, N, K, 0);
    case P_A: return prefill<W, 8, 1, 1, 7, 7, 4, false>(o, x, w, M, N, K);
    case P_B: return prefill<W, 2, 2, 3, 7, 4, 3, true>(o, x, w, M, N, K);
    case P_C: return prefill<W, 4, 1, 4, 4, 4, 4, true>(o, x, w, M, N, K);
    case P_D: return prefill<W, 4, 1, 2, 7, 4, 4, true>(o, x, w, M, N, K);
    case P_E: return prefill<W, 8, 1, 1, 7, 7, 4, true>(o, x, w, M, N, K);
    case P_F: return prefill<W, 4, 1, 2, 7, 4, 4, false>(o, x, w, M, N, K);
    case P_G: return prefill<W, 4, 1, 1, 7, 7, 4, false>(o, x, w, M, N, K);
    case P_H: return prefill<W, 4, 2, 1, 7, 7, 3, false>(o, x, w, M, N, K);
    case P_I: return prefill<W, 4, 1, 1, 7, 7, 4, true>(o, x, w, M, N, K);
    case P_J: return prefill<W, 4, 2, 2, 7, 4, 3, true>(o, x, w, M, N, K);
    case P_K: return prefill<W, 2, 2, 3, 7, 4, 4, true>(o, x, w, M, N, K);
    case P_L: return prefill<W, 4, 1, 3, 7, 4, 3, true>(o, x, w, M, N, K);
    case R_A: return launch_rows<W, 1, 1, 8>(o, x, w, M, N, K, 0);
    case R_B: return launch_rows<W, 2, 1, 8>(o, x, w, M, N, K, 0);
    case R_C: return launch_rows<W, 1, 1, 16>(o, x, w, M, N, K, 0);
    case R_2: return launch_rows<W, 1, 2, 8>(o, x, w, M, N, K, 0);
    case R_4: return launch_rows<W, 1, 4, 8>(o, x, w, M, N, K, 0);
    case R_E: return launch_rows<W, 1, 1, 8, 2>(o, x, w, M, N, K, 0);
    default: break;
  }
  if constexpr (sizeof(W) == 2) {
    if (M != 1) return hipErrorInvalidValue;
    switch (p) {
      case D_R1: return launch_rows1<W, 8, 8, 4>(o, x, w, N, K, 0);
      case D_R1_P4: return launch_rows1<W, 8, 4, 2>(o, x, w, N, K, 0);
      case D_R1_KW4: return launch_rows1<W, 4, 8, 4>(o, x, w, N, K, 0);
      case D_R1_KW4_P4: return launch_rows1<W, 4, 4, 2>(o, x, w, N, K, 0);
      case D_R1_KW16_P4: return launch_rows1<W, 16, 4, 2>(o, x, w, N, K, 0);
      case D_G1: return launch_gemv<W, 1, 4, 8, 4>(o, x, w, M, N, K, 0);
      case D_G2: return launch_gemv<W, 2, 4, 4, 2>(o, x, w, M, N, K, 0);
      case D_G8W: return launch_gemv<W, 1, 8, 8, 4>(o, x, w, M, N, K, 0);
      case D_X_KW8_P4: return launch_rows1x<W, 8, 4, 2>(o, x, w, N, K, 0);
      case D_X_KW8_P6: return launch_rows1x<W, 8, 6, 2>(o, x, w, N, K, 0);
      case D_X_KW4_P4: return launch_rows1x<W, 4, 4, 2>(o, x, w, N, K, 0);
      case D_X_KW4_P8: return launch_rows1x<W, 4, 8, 4>(o, x, w, N, K, 0);
      case D_X_KW16_P4: return launch_rows1x<W, 16, 4, 2>(o, x, w, N, K, 0);
      case D_X_NOSUM: return launch_rows1x<W, 8, 4, 2, 1>(o, x, w, N, K, 0);
      case D_X_LOADS: return launch_rows1x<W, 8, 4, 2, 2>(o, x, w, N, K, 0);
      case D_X_LOADS_P8: return launch_rows1x<W, 8, 8, 4, 2>(o, x, w, N, K, 0);
      case D_P1_P8: return launch_rows1p<W, 8, 8, 4>(o, x, w, N, K, 1, 0);
      case D_P2_P8: return launch_rows1p<W, 8, 8, 4>(o, x, w, N, K, 2, 0);
      case D_P1_P4: return launch_rows1p<W, 8, 4, 2>(o, x, w, N, K, 1, 0);
      case D_X_CONTIG: return launch_rows1x<W, 8, 8, 4, 3>(o, x, w, N, K, 0);
      default: break;
    }
  }
  if constexpr (std::is_same<W, greta_hip::bf16>::value) {
    switch (p) {
      case D_S_KW8_P2: return launch_rows1s<8, 2>(o, x, w, N, K, 0);
      case D_S_KW4_P3: return launch_rows1s<4, 3>(o, x, w, N, K, 0);
      case D_S_KW4_P4: return launch_rows1s<4, 4>(o, x, w, N, K, 0);
      case D_S_KW8_P3: return launch_rows1s<8, 3>(o, x, w, N, K, 0);
      default: break;
    }
  }
  return hipErrorInvalidValue;
}

bool is_rows(Path p) { return p >= R_A && p <= R_E; }

Buf bx, bw, bo, bo2, bref, bsum, bflush;
double copy_tbs = 0;
int failures = 0;

GretaMatmulOuts outs1(float* p, int64_t N) {
  GretaMatmulOuts o{};
  o.ptr[0] = p;
  o.end[0] = N;
  o.count = 1;
  return o;
}

double relerr(const float* got, int64_t n) {
  CHECK(hipMemset(bsum.p, 0, 16));
  rel_l2<<<264, 256>>>(got, (const double*)bref.p, n, (double*)bsum.p);
  double s[2];
  CHECK(hipMemcpy(s, bsum.p, 16, hipMemcpyDeviceToHost));
  return std::sqrt(s[0] / std::max(s[1], 1e-300));
}

template <typename W>
void setup(int64_t M, int64_t N, int64_t K, uint32_t seed, bool ref) {
  bx.ensure(M * K * 4);
  bw.ensure(N * K * sizeof(W));
  bo.ensure(M * N * 4);
  bo2.ensure(M * N * 4);
  fill_f32<<<1024, 256>>>((float*)bx.p, M * K, seed, 1.f);
  const float scale = std::sqrt(3.f / K);
  if (sizeof(W) == 4) fill_f32<<<1024, 256>>>((float*)bw.p, N * K, seed + 1, scale);
  else if (std::is_same<W, greta_hip::f16>::value) fill_f16<<<1024, 256>>>((uint16_t*)bw.p, N * K, seed + 1, scale);
  else fill_bf16<<<1024, 256>>>((uint16_t*)bw.p, N * K, seed + 1, scale);
  if (ref) {
    bref.ensure(M * N * 8);
    ref_kernel<W><<<dim3((N + 15) / 16, (M + 15) / 16), 256>>>((double*)bref.p, (const float*)bx.p, (const W*)bw.p, M, N, K);
  }
  CHECK(hipGetLastError());
  CHECK(hipDeviceSynchronize());
}

// Validation of every path at one shape: accuracy, every path equal to NEW
// bit for bit, and rows of the M-row call equal to the row alone.
template <typename W>
void validate(const char* wname, int64_t M, int64_t N, int64_t K) {
  setup<W>(M, N, K, static_cast<uint32_t>(M * 7 + N * 13 + K), true);
  const float* x = (const float*)bx.p;
  float* o = (float*)bo.p;
  float* o2 = (float*)bo2.p;
  CHECK(run<W>(NEW, outs1(o, N), x, bw.p, M, N, K));
  CHECK(hipDeviceSynchronize());
  const double e_new = relerr(o, M * N);
  std::vector<float> want(M * N), got(M * N);
  CHECK(hipMemcpy(want.data(), o, M * N * 4, hipMemcpyDeviceToHost));
  CHECK(run<W>(OLD, outs1(o2, N), x, bw.p, M, N, K));
  CHECK(hipDeviceSynchronize());
  const double e_old = relerr(o2, M * N);
  std::string same = "";
  bool ok = e_new <= 2e-6;
  if (K % 8 == 0) {
    for (int p = MAIN; p < NPATHS; p++) {
      if (is_decode(p)) continue;
      if (is_rows((Path)p) && M > rows_tokens(p)) continue;
      CHECK(hipMemset(o2, 0xff, M * N * 4));
      CHECK(run<W>((Path)p, outs1(o2, N), x, bw.p, M, N, K));
      CHECK(hipMemcpy(got.data(), o2, M * N * 4, hipMemcpyDeviceToHost));
      if (std::memcmp(got.data(), want.data(), M * N * 4) != 0) {
        same += std::string(" DIFFERS:") + path_name[p];
        ok = false;
      }
    }
  }
  // Row alone.
  for (int64_t r : {int64_t(0), M / 2, M - 1}) {
    CHECK(run<W>(NEW, outs1(o2, N), x + r * K, bw.p, 1, N, K));
    CHECK(hipMemcpy(got.data(), o2, N * 4, hipMemcpyDeviceToHost));
    if (std::memcmp(got.data(), want.data() + r * N, N * 4) != 0) {
      same += " ROW " + std::to_string(r) + " ALONE DIFFERS";
      ok = false;
    }
  }
  if (!ok) failures++;
  std::printf("%s M=%-4lld N=%-6lld K=%-6lld %-4s rel_l2 new %.2e old %.2e%s%s\n", ok ? "ok  " : "FAIL", (long long)M,
              (long long)N, (long long)K, wname, e_new, e_old, same.empty() ? "  all paths and rows bit-identical" : "",
              same.c_str());
}

// The new prefill kernel against main's, bit for bit: the dispatch and every
// forced prefill shape equal main's prefill kernel at every element (no fp64
// reference: lm_head at 291 tokens is 37 G products).
template <typename W>
void same_as_main(const char* name, int64_t M, int64_t N, int64_t K) {
  setup<W>(M, N, K, static_cast<uint32_t>(M * 3 + N * 5 + K), false);
  const float* x = (const float*)bx.p;
  float* o = (float*)bo.p;
  float* o2 = (float*)bo2.p;
  CHECK(run<W>(MAIN, outs1(o, N), x, bw.p, M, N, K));
  std::vector<float> want(M * N), got(M * N);
  CHECK(hipMemcpy(want.data(), o, M * N * 4, hipMemcpyDeviceToHost));
  std::string diff;
  for (Path p : {NEW, P_A, P_B, P_C, P_D, P_E, P_F}) {
    CHECK(hipMemset(o2, 0xff, M * N * 4));
    CHECK(run<W>(p, outs1(o2, N), x, bw.p, M, N, K));
    CHECK(hipMemcpy(got.data(), o2, M * N * 4, hipMemcpyDeviceToHost));
    if (std::memcmp(got.data(), want.data(), M * N * 4) != 0) diff += std::string(" DIFFERS:") + path_name[p];
  }
  if (!diff.empty()) failures++;
  std::printf("%s %-22s M=%-4lld %s\n", diff.empty() ? "ok  " : "FAIL", name, (long long)M,
              diff.empty() ? "dispatch and every prefill shape bit-identical to main's prefill kernel" : diff.c_str());
}

float time_ms(const std::vector<float>& v) {
  std::vector<float> s = v;
  std::sort(s.begin(), s.end());
  return s[s.size() / 2];
}

template <typename W>
float timeit(Path p, int64_t M, int64_t N, int64_t K, int reps) {
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  std::vector<float> t;
  const GretaMatmulOuts o = outs1((float*)bo.p, N);
  CHECK(run<W>(p, o, (const float*)bx.p, bw.p, M, N, K));
  for (int i = 0; i < reps; i++) {
    CHECK(cudaMemsetAsync(bflush.p, i, bflush.bytes, 0));
    CHECK(cudaEventRecord(a, 0));
    CHECK(run<W>(p, o, (const float*)bx.p, bw.p, M, N, K));
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

// Launches in a row as a decode step issues them (overlapping on NVIDIA), each
// over its own copy of the weights (copies spanning 640 MB: none is in L2):
// the median over 5 rounds of a launch's share of 48.
Buf brot;
float back_to_back(Path p, int64_t N, int64_t K) {
  const size_t bytes = static_cast<size_t>(N * K * 2);
  const int copies = static_cast<int>(std::max<size_t>(2, ((size_t(640) << 20) + bytes - 1) / bytes));
  brot.ensure(bytes * copies);
  for (int c = 0; c < copies; c++) CHECK(hipMemcpy(static_cast<char*>(brot.p) + c * bytes, bw.p, bytes, hipMemcpyDeviceToDevice));
  const GretaMatmulOuts o = outs1((float*)bo.p, N);
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  std::vector<float> t;
  constexpr int LAUNCHES = 48;
  for (int round = 0; round < 6; round++) {
    CHECK(cudaEventRecord(a, 0));
    for (int i = 0; i < LAUNCHES; i++)
      CHECK(run<greta_hip::bf16>(p, o, (const float*)bx.p, static_cast<char*>(brot.p) + (i % copies) * bytes, 1, N, K));
    CHECK(cudaEventRecord(b, 0));
    CHECK(cudaEventSynchronize(b));
    float ms;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    if (round > 0) t.push_back(ms / LAUNCHES);
  }
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  return time_ms(t);
}

void copy_rate() {
  const size_t bytes = size_t(1) << 30;
  Buf s, d;
  s.ensure(bytes);
  d.ensure(bytes);
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  std::vector<float> t;
  for (int i = 0; i < 9; i++) {
    CHECK(cudaEventRecord(a, 0));
    CHECK(hipMemcpyAsync(d.p, s.p, bytes, hipMemcpyDeviceToDevice, 0));
    CHECK(cudaEventRecord(b, 0));
    CHECK(cudaEventSynchronize(b));
    float ms;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  copy_tbs = 2.0 * bytes / (time_ms(t) * 1e-3) / 1e12;
  std::printf("device-to-device copy: %.3f ms per GiB, %.2f TB/s (read + written)\n", time_ms(t), copy_tbs);
  CHECK(hipFree(s.p));
  CHECK(hipFree(d.p));
}

template <typename W>
void bench(const char* name, int64_t N, int64_t K, const std::vector<Path>& prefill, const std::vector<Path>& decode) {
  const int64_t Mp = 205;
  setup<W>(Mp, N, K, 99, false);
  for (Path p : prefill) {
    const float ms = timeit<W>(p, Mp, N, K, 15);
    std::printf("| %-22s | M=205 | %-22s | %8.4f ms | %7.1f TFLOP/s |\n", name, path_name[p], ms,
                2.0 * Mp * N * K / (ms * 1e-3) / 1e12);
  }
  {
    bscr.ensure(3 * (Mp + PREFILL_PAD) * K * 2);
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    std::vector<float> t;
    for (int i = 0; i < 15; i++) {
      CHECK(cudaMemsetAsync(bflush.p, i, bflush.bytes, 0));
      CHECK(cudaEventRecord(a, 0));
      const int64_t chunks = Mp * K / 8;
      split_kernel<<<static_cast<unsigned>(std::min<int64_t>((chunks + 255) / 256, 4096)), 256>>>(
          static_cast<uint4*>(bscr.p), (const float*)bx.p, chunks, chunks, K / 8);
      CHECK(hipGetLastError());
      CHECK(cudaEventRecord(b, 0));
      CHECK(cudaEventSynchronize(b));
      float ms;
      CHECK(cudaEventElapsedTime(&ms, a, b));
      t.push_back(ms);
    }
    std::printf("| %-22s | M=205 | %-22s | %8.4f ms | (of the split-once paths above)\n", name, "split alone", time_ms(t));
  }
  for (Path p : decode) {
    const float ms = timeit<W>(p, 1, N, K, 25);
    const double gbs = double(N) * K * sizeof(W) / (ms * 1e-3) / 1e9;
    std::printf("| %-22s | M=1   | %-22s | %8.4f ms | %7.0f GB/s | %.2f of copy |\n", name, path_name[p], ms, gbs,
                gbs / (copy_tbs * 1e3));
  }
}

// Prefill across M: the dispatch against main's kernel.
template <typename W>
void sweep(const char* name, int64_t N, int64_t K) {
  setup<W>(512, N, K, 98, false);
  for (int64_t M : {33, 64, 128, 291, 512}) {
    const float ms = timeit<W>(NEW, M, N, K, 9), mm = timeit<W>(MAIN, M, N, K, 9);
    std::printf("| %-22s | M=%-4lld | new %.4f ms %6.1f TFLOP/s | main %.4f ms %6.1f TFLOP/s |\n", name, (long long)M, ms,
                2.0 * M * N * K / (ms * 1e-3) / 1e12, mm, 2.0 * M * N * K / (mm * 1e-3) / 1e12);
  }
}

}  // namespace lab

int main(int argc, char** argv) {
  using namespace lab;
  using greta_hip::bf16;
  using greta_hip::f16;
  hipDeviceProp_t prop;
  CHECK(hipGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  bsum.ensure(16);
  bflush.ensure(size_t(256) << 20);
  const bool ncu = argc > 1 && std::strcmp(argv[1], "ncu") == 0;
  if (ncu) {  // main's kernel, then the new one (or the paths named), at qkv and down (M = 205)
    std::vector<Path> paths = {MAIN, NEW};
    if (argc > 2) {
      paths.clear();
      for (int i = 2; i < argc; i++)
        for (int p = 0; p < NPATHS; p++)
          if (std::strcmp(argv[i], path_name[p]) == 0) paths.push_back((Path)p);
    }
    for (auto nk : {std::pair<int64_t, int64_t>{6144, 4096}, std::pair<int64_t, int64_t>{4096, 14336}}) {
      setup<bf16>(205, nk.first, nk.second, 5, false);
      for (Path p : paths)
        CHECK(run<bf16>(p, outs1((float*)bo.p, nk.first), (const float*)bx.p, bw.p, 205, nk.first, nk.second));
    }
    CHECK(hipDeviceSynchronize());
    return 0;
  }
  if (argc > 1 && std::strcmp(argv[1], "decode") == 0) {  // the decode launch shapes: bit-identical to the dispatch, then timed
    copy_rate();
    const struct { const char* name; int64_t N, K; } dproj[] = {
        {"qkv 4096->6144", 6144, 4096}, {"wo 4096->4096", 4096, 4096}, {"down 14336->4096", 4096, 14336},
        {"gate_up 4096->28672", 28672, 4096}, {"lm_head 4096->128256", 128256, 4096}};
    for (auto& d : dproj) {
      setup<bf16>(1, d.N, d.K, 77, false);
      std::vector<float> want(d.N), got(d.N);
      CHECK(run<bf16>(NEW, outs1((float*)bo.p, d.N), (const float*)bx.p, bw.p, 1, d.N, d.K));
      CHECK(hipMemcpy(want.data(), bo.p, d.N * 4, hipMemcpyDeviceToHost));
      for (int p = NEW; p < NPATHS; p++) {
        if (p != NEW && !is_decode(p)) continue;
        CHECK(hipMemset(bo2.p, 0xff, d.N * 4));
        const hipError_t e = run<bf16>((Path)p, outs1((float*)bo2.p, d.N), (const float*)bx.p, bw.p, 1, d.N, d.K);
        if (e != hipSuccess) {
          (void)hipGetLastError();
          std::printf("| %-22s | M=1   | %-22s | does not launch (%s)\n", d.name, path_name[p], hipGetErrorName(e));
          continue;
        }
        CHECK(hipMemcpy(got.data(), bo2.p, d.N * 4, hipMemcpyDeviceToHost));
        const bool same = std::memcmp(got.data(), want.data(), d.N * 4) == 0;
        if (!same && (p < D_X_NOSUM || (p > D_X_LOADS_P8 && p != D_X_CONTIG))) failures++;  // the diagnostics are wrong by design
        const float ms = timeit<bf16>((Path)p, 1, d.N, d.K, 25);
        const double gbs = double(d.N) * d.K * 2 / (ms * 1e-3) / 1e9;
        const float rs = back_to_back((Path)p, d.N, d.K);
        const double rgbs = double(d.N) * d.K * 2 / (rs * 1e-3) / 1e9;
        std::printf("| %-22s | M=1   | %-22s | %8.4f ms | %.3f of copy | in a row %8.4f ms %.3f of copy | %s\n", d.name,
                    path_name[p], ms, gbs / (copy_tbs * 1e3), rs, rgbs / (copy_tbs * 1e3), same ? "bit-identical" : "DIFFERS");
      }
    }
    return failures ? 1 : 0;
  }
  if (argc > 1 && std::strcmp(argv[1], "prefill") == 0) {  // prefill shapes at M = 205: bit-identical to the dispatch, then timed
    copy_rate();
    const struct { const char* name; int64_t N, K; } pproj[] = {
        {"qkv 4096->6144", 6144, 4096}, {"wo 4096->4096", 4096, 4096}, {"down 14336->4096", 4096, 14336},
        {"gate_up 4096->28672", 28672, 4096}, {"lm_head 4096->128256", 128256, 4096}};
    const int64_t M = 205;
    for (auto& d : pproj) {
      setup<bf16>(M, d.N, d.K, 78, false);
      std::vector<float> want(M * d.N), got(M * d.N);
      CHECK(run<bf16>(NEW, outs1((float*)bo.p, d.N), (const float*)bx.p, bw.p, M, d.N, d.K));
      CHECK(hipMemcpy(want.data(), bo.p, M * d.N * 4, hipMemcpyDeviceToHost));
      for (Path p : {NEW, P_A, P_B, P_G, P_J, P_K, P_L}) {
        CHECK(run<bf16>(p, outs1((float*)bo2.p, d.N), (const float*)bx.p, bw.p, M, d.N, d.K));
        CHECK(hipMemcpy(got.data(), bo2.p, M * d.N * 4, hipMemcpyDeviceToHost));
        const bool same = std::memcmp(got.data(), want.data(), M * d.N * 4) == 0;
        if (!same) failures++;
        const float ms = timeit<bf16>(p, M, d.N, d.K, 15);
        std::printf("| %-22s | M=205 | %-22s | %8.4f ms | %7.1f TFLOP/s | %s\n", d.name, path_name[p], ms,
                    2.0 * M * d.N * d.K / (ms * 1e-3) / 1e12, same ? "bit-identical" : "DIFFERS");
      }
    }
    return failures ? 1 : 0;
  }
  const bool quick = argc > 1 && std::strcmp(argv[1], "quick") == 0;
  std::printf("\n## validation (fp64 reference; bound 2e-6)\n");
  const int64_t shapes[][2] = {{14336, 4096}, {6144, 4096}, {4096, 4096}, {28672, 4096}, {4096, 14336}};
  for (auto& s : shapes)
    for (int64_t M : {1, 2, 8, 9, 15, 16, 17, 31, 32, 33, 205}) validate<bf16>("bf16", M, s[0], s[1]);
  for (int64_t M : {1, 17}) validate<bf16>("bf16", M, 128256, 4096);
  for (int64_t M : {1, 5, 33, 205}) {
    validate<f16>("f16", M, 4096, 4096);
    validate<float>("f32", M, 4096, 4096);
  }
  const int64_t odd[][3] = {{3, 5, 8},     {7, 333, 1000}, {37, 333, 1000}, {64, 192, 64},
                            {33, 77, 136}, {9, 100, 4096}, {3, 5, 13},      {5, 11, 257}};
  for (auto& s : odd) {
    validate<bf16>("bf16", s[0], s[1], s[2]);
    validate<f16>("f16", s[0], s[1], s[2]);
    validate<float>("f32", s[0], s[1], s[2]);
  }
  std::printf("\n## bit for bit against main's prefill kernel\n");
  const struct { const char* name; int64_t N, K; } proj[] = {{"qkv 4096->6144", 6144, 4096},
                                                             {"wo 4096->4096", 4096, 4096},
                                                             {"gate_up 4096->28672", 28672, 4096},
                                                             {"down 14336->4096", 4096, 14336},
                                                             {"lm_head 4096->128256", 128256, 4096}};
  for (auto& p : proj)
    for (int64_t M : {1, 17, 205, 291}) same_as_main<bf16>(p.name, M, p.N, p.K);
  for (int64_t M : {1, 17, 205, 291}) {
    same_as_main<f16>("f16 4096->4096", M, 4096, 4096);
    same_as_main<float>("f32 4096->4096", M, 4096, 4096);
  }
  std::printf("validation: %d failures\n", failures);
  if (quick) return failures ? 1 : 0;

  std::printf("\n## timings (H100 medians, L2 flushed before each launch)\n");
  copy_rate();
  const std::vector<Path> pre = {NEW, MAIN, P_A, P_B, P_C, P_D, P_E, P_F};
  const std::vector<Path> dec = {NEW};
  for (auto& p : proj) bench<bf16>(p.name, p.N, p.K, pre, dec);
  bench<f16>("f16 4096->4096", 4096, 4096, {NEW, MAIN}, {NEW});
  bench<float>("f32 4096->4096", 4096, 4096, {NEW, MAIN}, {NEW});
  sweep<bf16>("qkv 4096->6144", 6144, 4096);
  sweep<bf16>("down 14336->4096", 4096, 14336);
  return failures ? 1 : 0;
}
