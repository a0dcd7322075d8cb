// Kernel lab (NVIDIA) for hip/matmul.hip, in the manner of llm.c's dev/cuda: every
// launch shape is validated (against an fp64 reference, or bit for bit against
// the dispatch) before it is timed. Built as one translation unit with the
// production kernels and hip/tiles.hip, so the launch shapes can be forced:
//   nvcc -x cu -O3 -gencode arch=compute_90a,code=sm_90a -DGRETA_SM90A --fmad=false -std=c++17 --default-stream per-thread -Ihip -Inative dev/matmul.hip -o matmul_lab
// (sm_90a and GRETA_SM90A: the build the addon makes for H100 and H200, whose
// dispatch takes the wgmma kernel for bf16 prefill.)
// Weights are filled row-major (what the fp64 reference and the CUDA-core
// path, OLD, read), then copied into the tiled layout of hip/mma.h by
// greta_tile_rows (zeros past N and K) for greta_matmul and the forced
// matrix-unit launch shapes, which take only that.
//   ./matmul_lab            validate (rel L2 vs fp64 for the dispatch and the
//                           CUDA-core path; every rows and prefill launch shape
//                           equal to the dispatch bit for bit; rows of an M-row
//                           call equal to the row alone; every prefill shape
//                           and rows alone equal to the dispatch at qkv, wo,
//                           gate_up, down, lm_head and M = 1, 17, 205, 291),
//                           then time
//   ./matmul_lab quick      validation only
//   ./matmul_lab ncu [PATH..] the dispatch (or the paths named, by their
//                           printed names) at qkv and down, M = 205
//   ./matmul_lab prefill [M=N] [PATH..]
//                           205 tokens (or N) at qkv, wo, down, gate_up,
//                           lm_head (not at N > 1024): the prefill block
//                           shapes (mma.sync; wgmma "ws"), or the paths
//                           named, each checked bit for bit against the
//                           dispatch, then timed
//   ./matmul_lab decode     one token at qkv, wo, down, gate_up, lm_head: the
//                           rows1, gemv and bulk1 kernels in other launch
//                           shapes (warps over K, ring depth, row tiles a
//                           warp, stages and blocks an SM),
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
//   ./matmul_lab roof [PATH..] one token at qkv, wo, down in a row: the dispatch
//                           (and the paths named)
//                           against reading the same bytes alone (16-byte
//                           loads by every thread; bulk1's ring with no
//                           products): what the reads allow at that size.
//                           H100, of the copy rate, dispatch (bulk1 before
//                           its sum and x changes) / 16-byte loads / ring:
//                           qkv 0.86 / 0.94 / 0.95, wo 0.78 / 0.89 / 0.91,
//                           down 0.91 / 1.00 / 1.00; the ring letting the
//                           next launch start at its last copy: qkv 0.91-0.93,
//                           wo 0.88-0.89, down 1.01. The dispatch with bulk1
//                           letting the next start at its first copies (and
//                           wo's 8 stages at 2 an SM): qkv 0.94, wo 0.89,
//                           down 0.97.
//   ./matmul_lab after      one token at qkv, wo, down: the dispatch and
//                           rows1, each launched after a kernel of 0-20 us
//                           that reads nothing and lets it start at once (as
//                           attention lets wo), in a row: what the projection
//                           adds to the pair. H100: wo 12.0-12.5 us, 0.90-0.94
//                           of the copy rate, against 0.74-0.79 back to back
//                           (its first stages load during the kernel ahead).
//                           A lab, not the step: an L2 prefetch that won here
//                           lost in the 8B step (hip/matmul.hip, bulk1).
// rows1 keeping x as fp32 in shared memory (split where a KBLOCK uses it) and
// summing c_s a round at a time (H100, in a row): qkv 0.82, wo 0.77, down
// 0.90 (two blocks an SM now at K = 14336), gate_up 1.00, lm_head 1.05.
// With tiled weights (H100, copy 2.97-2.99 TB/s, in a row): decode qkv 0.78,
// wo 0.74, down 0.87, gate_up 1.00, lm_head 1.05 of the copy rate (rows1 at
// every width where K has a KBLOCK for each warp); ncu of rows1 at 4096 ->
// 6144: 26.7 us, DRAM 61.6%, 1.45 waves, long-scoreboard stalls 11.9 of 22
// cycles an issue, 0.19 eligible warps a scheduler. Prefill at 205 tokens:
// qkv 87 (L), wo 85 (K), down 94 (K), gate_up 127 (C), lm_head 134 (C)
// TFLOP/s; ncu of a 64 x 56 shape at down: tensor pipe about 44% busy, issue
// slots 28%. Shapes whose token tiles cover 205 tokens without padding (2 x
// 13 tiles of 8), one block an SM: 64 x 104 (4 warps of 16 x 104) 70-76
// TFLOP/s at qkv, wo and down, 96 x 104 (6 warps) 75 at qkv, 64 x 112 (8
// warps of 16 x 56) 62-68, against 85-92 for the dispatch: a warp with one
// weight tile reuses each activation operand read once, and the operand
// reads, not the padding, set the pace. Tried: room for 3 or 6 rows1 blocks an SM (slower at every
// shape), two K chains a prefill block (gate_up 125.6 -> 93.3), batched reads
// of rows1's serial sum (no change).
// The measurements below (and the ncu figures above the line) were taken with
// row-major weights, before the tiled layout; the variants they name that read
// the old layout (rows1x, rows1p, rows1s, main's split-per-block prefill
// kernel, the regrouped "q" prefill shapes) are no longer in the lab.
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
#include "../hip/tiles.hip"  // greta_tile_rows: the tiled copy of each weight

#include <cuda_fp16.h>  // the lab runs on the borrowed NVIDIA GPU

#define CHECK(e)                                                                                  \
  do {                                                                                            \
    hipError_t err_ = (e);                                                                        \
    if (err_ != hipSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #e, hipGetErrorString(err_)); \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

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

// Every path but NEW and OLD takes the tiled weight (hip/mma.h); NEW takes
// it where K % 8 == 0 (greta_matmul's rule), OLD always the row-major one.
enum Path { NEW, OLD, P_A, P_B, P_C, P_D, P_G, P_H, P_J, P_K, P_L, P_S56, P_S104, P_S56K2, P_S104K2, P_S3, P_S3B, R_A, R_B, R_C, R_2, R_4, R_E,
            D_R1, D_R1_P4, D_R1_KW4, D_R1_KW4_P4, D_R1_KW16_P4, D_R1_P6U3_B3, D_R1_P6U2_B3, D_R1_P4U2_B3, D_G1, D_G2, D_G8W, D_B4, D_B6, D_B4M3, D_B8M2, D_BT_SUMS, D_BT_LAST, D_BS_R4M4, D_BS_S6R4M3, D_BS_S5R2M3, NPATHS };
const char* path_name[NPATHS] = {"new(dispatch)",     "old(cuda-core)",    "A 128x56 8w",       "B 96x112 4w",
                                 "C 256x32 4w",       "D 128x56 4w",       "G 64x56 4w",        "128x64 4w 16ch",
                                 "128x32 4w",         "K 256x16 4w",         "L 192x56 4w",         "ws 128x56", "ws 128x104", "ws 192x104", "ws 256x56", "ws 192x56", "ws 256x104 k2 s2", "rows f1 t1 kw8",
                                 "rows f2 t1 kw8",    "rows f1 t1 kw16",   "rows f1 t2 kw8",    "rows f1 t4 kw8",
                                 "rows f1 t1 kw8 r2", "rows1 kw8 p8 u4",   "rows1 kw8 p4 u2",   "rows1 kw4 p8 u4",
                                 "rows1 kw4 p4 u2",   "rows1 kw16 p4 u2",  "rows1 kw8 p6 u3 3b", "rows1 kw8 p6 u2 3b",
                                 "rows1 kw8 p4 u2 3b", "gemv f1 4w p8 u4",  "gemv f2 4w p4 u2",
                                 "gemv f1 8w p8 u4", "bulk1 6 st 3/SM", "bulk1 10 st 2/SM", "bulk1 4 st rs8 3/SM", "bulk1 8 st 2/SM",
                                 "bulk1 next at sums", "bulk1 next at last copy", "bulk1 4 st rs4 4/SM", "bulk1 6 st rs4 3/SM",
                                 "bulk1 5 st rs2 3/SM"};
// Forced prefill block shapes (launch_prefill's kernel in other shapes).
bool is_prefill(int p) { return p >= P_A && p <= P_L; }
// Decode-only paths (M = 1, 2-byte weights): the rows1 and gemv kernels in other launch shapes.
bool is_decode(int p) { return p >= D_R1 && p < NPATHS; }
bool is_rows(int p) { return p >= R_A && p <= R_E; }
int rows_tokens(int p) { return p == R_2 ? 2 * greta_mma::TILE_J : p == R_4 ? 4 * greta_mma::TILE_J : greta_mma::TILE_J; }

Buf bscr;  // the activation terms of the prefill paths

// One weight in both layouts: row-major (the fp64 reference, the CUDA-core
// path) and tiled (the matrix-unit kernels).
struct Weight {
  const void* rowmajor;
  const void* tiled;
};

// A forced prefill shape: the split, then the kernel (as the dispatch runs them).
template <typename W, int WN, int WT, int FN, int TM, int TG, int STAGES>
hipError_t prefill(const GretaMatmulOuts& o, const float* x, const void* w, int64_t M, int64_t N, int64_t K) {
  bscr.ensure(3 * (M + PREFILL_PAD) * K * 2);
  return launch_prefill<W, WN, WT, FN, TM, TG, STAGES>(o, x, static_cast<greta_hip::bf16*>(bscr.p), w, M, N, K, 0);
}

// A forced wgmma shape: the ws split, then the kernel.
template <int RW, int BT, int STAGES, int KPS>
hipError_t ws(const GretaMatmulOuts& o, const float* x, const void* w, int64_t M, int64_t N, int64_t K) {
  bscr.ensure(3 * (M + PREFILL_PAD) * K * 2);
  return launch_ws<RW, BT, STAGES, KPS>(o, x, static_cast<greta_hip::bf16*>(bscr.p), w, M, N, K, 0);
}

template <typename W>
constexpr int w_type() {
  return std::is_same<W, float>::value ? W_F32 : std::is_same<W, greta_hip::f16>::value ? W_F16 : W_BF16;
}

template <typename W>
hipError_t run(Path p, const GretaMatmulOuts& o, const float* x, const Weight& wt, int64_t M, int64_t N, int64_t K) {
  const void* const w = wt.tiled;
  switch (p) {
    case NEW: {
      const size_t sb = greta_matmul_scratch_bytes(M, K);
      bscr.ensure(sb + 16);
      return greta_matmul(o, x, greta_matmul_tiled(K) ? wt.tiled : wt.rowmajor, w_type<W>(), M, N, K, bscr.p, sb, 0);
    }
    case OLD: return launch_simt<W>(o, x, wt.rowmajor, M, N, K, 0);
    case P_A: return prefill<W, GRETA_PREFILL_A>(o, x, w, M, N, K);
    case P_B: return prefill<W, 2, 2, 3, 7, 4, 3>(o, x, w, M, N, K);
    case P_C: return prefill<W, GRETA_PREFILL_C>(o, x, w, M, N, K);
    case P_D: return prefill<W, GRETA_PREFILL_D>(o, x, w, M, N, K);
    case P_G: return prefill<W, 4, 1, 1, 7, 7, 4>(o, x, w, M, N, K);
    case P_H: return prefill<W, 2, 2, 4, 4, 4, 4>(o, x, w, M, N, K);
    case P_J: return prefill<W, 4, 1, 2, 4, 4, 4>(o, x, w, M, N, K);
    case P_K: return prefill<W, GRETA_PREFILL_K>(o, x, w, M, N, K);
    case P_L: return prefill<W, GRETA_PREFILL_L>(o, x, w, M, N, K);
    case P_S56: return std::is_same<W, greta_hip::bf16>::value ? ws<GRETA_WS_128x56>(o, x, w, M, N, K) : hipErrorInvalidValue;
    case P_S104: return std::is_same<W, greta_hip::bf16>::value ? ws<GRETA_WS_128x104>(o, x, w, M, N, K) : hipErrorInvalidValue;
    case P_S56K2: return std::is_same<W, greta_hip::bf16>::value ? ws<GRETA_WS_192x104>(o, x, w, M, N, K) : hipErrorInvalidValue;
    case P_S104K2: return std::is_same<W, greta_hip::bf16>::value ? ws<4, 56, 2, 4>(o, x, w, M, N, K) : hipErrorInvalidValue;
    case P_S3: return std::is_same<W, greta_hip::bf16>::value ? ws<GRETA_WS_192x56>(o, x, w, M, N, K) : hipErrorInvalidValue;
    case P_S3B: return std::is_same<W, greta_hip::bf16>::value ? ws<4, 104, 2, 2>(o, x, w, M, N, K) : hipErrorInvalidValue;
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
      case D_R1_P6U3_B3: return launch_rows1<W, 8, 6, 3, 3>(o, x, w, N, K, 0);
      case D_R1_P6U2_B3: return launch_rows1<W, 8, 6, 2, 3>(o, x, w, N, K, 0);
      case D_R1_P4U2_B3: return launch_rows1<W, 8, 4, 2, 3>(o, x, w, N, K, 0);
      case D_R1_KW16_P4: return launch_rows1<W, 16, 4, 2>(o, x, w, N, K, 0);
      case D_G1: return launch_gemv<W, 1, 4, 8, 4>(o, x, w, M, N, K, 0);
      case D_G2: return launch_gemv<W, 2, 4, 4, 2>(o, x, w, M, N, K, 0);
      case D_G8W: return launch_gemv<W, 1, 8, 8, 4>(o, x, w, M, N, K, 0);
      case D_B4: return launch_bulk1<W, 8, 6, 8, 3>(o, x, w, N, K, 0);
      case D_B6: return launch_bulk1<W, 8, 10, 8, 2>(o, x, w, N, K, 0);
      case D_B4M3: return launch_bulk1<W, 8, 4, 8, 3>(o, x, w, N, K, 0);
      case D_B8M2: return launch_bulk1<W, 8, 8, 8, 2>(o, x, w, N, K, 0);
      case D_BT_SUMS: return launch_bulk1<W, 8, 4, 8, 3, BULK1_AT_SUMS>(o, x, w, N, K, 0);
      case D_BT_LAST: return launch_bulk1<W, 8, 4, 8, 3, BULK1_AT_LAST_COPY>(o, x, w, N, K, 0);
      case D_BS_R4M4: return launch_bulk1<W, 8, 4, 4, 4>(o, x, w, N, K, 0);
      case D_BS_S6R4M3: return launch_bulk1<W, 8, 6, 4, 3>(o, x, w, N, K, 0);
      case D_BS_S5R2M3: return launch_bulk1<W, 8, 5, 2, 3>(o, x, w, N, K, 0);
      default: break;
    }
  }
  return hipErrorInvalidValue;
}

Buf bx, bw, bwt, bo, bo2, bref, bsum, bflush;  // bw row-major, bwt its tiled copy
double copy_tbs = 0;
int failures = 0;

GretaMatmulOuts outs1(float* p, int64_t N) {
  GretaMatmulOuts o{};
  o.ptr[0] = p;
  o.end[0] = N;
  o.count = 1;
  return o;
}

// The weight setup<W> last filled, in both layouts.
Weight weights() { return Weight{bw.p, bwt.p}; }

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
  CHECK(hipGetLastError());
  if (greta_matmul_tiled(K)) {  // the matrix units' copy, zeroed first: rows past N in the last tile stay zeros
    const size_t tb = greta_matmul_weight_bytes(N, K, sizeof(W));
    bwt.ensure(tb);
    CHECK(hipMemset(bwt.p, 0, tb));
    CHECK(greta_tile_rows(bwt.p, w_type<W>(), bw.p, 0, N, K, 0));
  }
  if (ref) {
    bref.ensure(M * N * 8);
    ref_kernel<W><<<dim3((N + 15) / 16, (M + 15) / 16), 256>>>((double*)bref.p, (const float*)bx.p, (const W*)bw.p, M, N, K);
  }
  CHECK(hipGetLastError());
  CHECK(hipDeviceSynchronize());
}

// Validation at one shape: accuracy of NEW and OLD, every rows and prefill
// launch shape equal to NEW bit for bit (K % 8 == 0; rows shapes up to their
// token tiles), and rows of the M-row call equal to the row alone.
template <typename W>
void validate(const char* wname, int64_t M, int64_t N, int64_t K) {
  setup<W>(M, N, K, static_cast<uint32_t>(M * 7 + N * 13 + K), true);
  const float* x = (const float*)bx.p;
  float* o = (float*)bo.p;
  float* o2 = (float*)bo2.p;
  const Weight w = weights();
  CHECK(run<W>(NEW, outs1(o, N), x, w, M, N, K));
  CHECK(hipDeviceSynchronize());
  const double e_new = relerr(o, M * N);
  std::vector<float> want(M * N), got(M * N);
  CHECK(hipMemcpy(want.data(), o, M * N * 4, hipMemcpyDeviceToHost));
  CHECK(run<W>(OLD, outs1(o2, N), x, w, M, N, K));
  CHECK(hipDeviceSynchronize());
  const double e_old = relerr(o2, M * N);
  std::string same = "";
  bool ok = e_new <= 2e-6;
  if (K % 8 == 0) {
    for (int p = P_A; p < NPATHS; p++) {
      if (is_decode(p)) continue;
      if (is_rows(p) && M > rows_tokens(p)) continue;
      CHECK(hipMemset(o2, 0xff, M * N * 4));
      if (run<W>((Path)p, outs1(o2, N), x, w, M, N, K) != hipSuccess) {  // a wgmma shape: bf16, K % 128 == 0 only
        (void)hipGetLastError();
        continue;
      }
      CHECK(hipMemcpy(got.data(), o2, M * N * 4, hipMemcpyDeviceToHost));
      if (std::memcmp(got.data(), want.data(), M * N * 4) != 0) {
        same += std::string(" DIFFERS:") + path_name[p];
        ok = false;
      }
    }
  }
  // Row alone.
  for (int64_t r : {int64_t(0), M / 2, M - 1}) {
    CHECK(run<W>(NEW, outs1(o2, N), x + r * K, w, 1, N, K));
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

// Main's kernels against each other, bit for bit, at the model's shapes (no
// fp64 reference: lm_head at 291 tokens is 37 G products): every forced
// prefill shape equals the dispatch at every element (at M = 1 and 17 the
// dispatch runs the gemv, rows1 or rows kernel), and rows 0, M / 2 and M - 1
// of the dispatch's M-row call equal the dispatch's call on that row alone.
template <typename W>
void same_as_dispatch(const char* name, int64_t M, int64_t N, int64_t K) {
  setup<W>(M, N, K, static_cast<uint32_t>(M * 3 + N * 5 + K), false);
  const float* x = (const float*)bx.p;
  float* o = (float*)bo.p;
  float* o2 = (float*)bo2.p;
  const Weight w = weights();
  CHECK(run<W>(NEW, outs1(o, N), x, w, M, N, K));
  std::vector<float> want(M * N), got(M * N);
  CHECK(hipMemcpy(want.data(), o, M * N * 4, hipMemcpyDeviceToHost));
  std::string diff;
  for (int p = P_A; p <= P_S3B; p++) {
    CHECK(hipMemset(o2, 0xff, M * N * 4));
    if (run<W>((Path)p, outs1(o2, N), x, w, M, N, K) != hipSuccess) {
      (void)hipGetLastError();
      continue;
    }
    CHECK(hipMemcpy(got.data(), o2, M * N * 4, hipMemcpyDeviceToHost));
    if (std::memcmp(got.data(), want.data(), M * N * 4) != 0) diff += std::string(" DIFFERS:") + path_name[p];
  }
  for (int64_t r : {int64_t(0), M / 2, M - 1}) {
    CHECK(hipMemset(o2, 0xff, N * 4));
    CHECK(run<W>(NEW, outs1(o2, N), x + r * K, w, 1, N, K));
    CHECK(hipMemcpy(got.data(), o2, N * 4, hipMemcpyDeviceToHost));
    if (std::memcmp(got.data(), want.data() + r * N, N * 4) != 0) diff += " ROW " + std::to_string(r) + " ALONE DIFFERS";
  }
  if (!diff.empty()) failures++;
  std::printf("%s %-22s M=%-4lld %s\n", diff.empty() ? "ok  " : "FAIL", name, (long long)M,
              diff.empty() ? "every prefill shape and every row alone bit-identical to the dispatch" : diff.c_str());
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
  const Weight w = weights();
  CHECK(run<W>(p, o, (const float*)bx.p, w, M, N, K));
  for (int i = 0; i < reps; i++) {
    CHECK(cudaMemsetAsync(bflush.p, i, bflush.bytes, 0));
    CHECK(cudaEventRecord(a, 0));
    CHECK(run<W>(p, o, (const float*)bx.p, w, M, N, K));
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
// over its own copy of the tiled bf16 weights (copies spanning 640 MB: none is
// in L2): the median over 5 rounds of a launch's share of 48.
Buf brot;
// Median ms per launch of launch(i, w) over 48 launches in a row, w being the
// i-th of copies of the tiled weight (N x K bf16) that together exceed the L2
// cache; the first of 6 rounds is a warm-up.
template <typename F>
float in_a_row(int64_t N, int64_t K, F launch) {
  const size_t bytes = greta_matmul_weight_bytes(N, K, 2);
  const int copies = static_cast<int>(std::max<size_t>(2, ((size_t(640) << 20) + bytes - 1) / bytes));
  brot.ensure(bytes * copies);
  for (int c = 0; c < copies; c++) CHECK(hipMemcpy(static_cast<char*>(brot.p) + c * bytes, bwt.p, bytes, hipMemcpyDeviceToDevice));
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  std::vector<float> t;
  constexpr int LAUNCHES = 48;
  for (int round = 0; round < 6; round++) {
    CHECK(cudaEventRecord(a, 0));
    for (int i = 0; i < LAUNCHES; i++) launch(i, static_cast<const void*>(static_cast<char*>(brot.p) + (i % copies) * bytes));
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

float back_to_back(Path p, int64_t N, int64_t K) {
  const GretaMatmulOuts o = outs1((float*)bo.p, N);
  return in_a_row(N, K, [&](int, const void* w) {
    CHECK(run<greta_hip::bf16>(p, o, (const float*)bx.p, Weight{bw.p, w}, 1, N, K));
  });
}

// A kernel of `ns` nanoseconds on 40 blocks that reads nothing, standing in
// for the decode step's short kernels (attention at a few hundred keys) ahead
// of a projection: it lets the next kernel start at once, as theirs do.
__global__ void idle_kernel(unsigned ns) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  if (threadIdx.x != 0) return;
  uint64_t t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    __nanosleep(100);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

// Per pair, in a row: the idle kernel, then path p (or nothing: p < 0) on
// rotating weight copies, so what the projection adds after a short kernel.
float after_idle(int p, int64_t N, int64_t K, unsigned ns) {
  const GretaMatmulOuts o = outs1((float*)bo.p, N);
  return in_a_row(N, K, [&](int, const void* w) {
    GRETA_LAUNCH(idle_kernel, dim3(40), dim3(128), 0, 0, ns);
    CHECK(hipGetLastError());
    if (p >= 0) CHECK(run<greta_hip::bf16>((Path)p, o, (const float*)bx.p, Weight{bw.p, w}, 1, N, K));
  });
}

// Reading alone, the ceiling of a one-token projection in a row: the same
// bytes with no products, (a) by every thread of SMs x 8 blocks in 16-byte
// loads, (b) by bulk1's structure (a block a 16-row tile, one producer thread
// streaming it through a ring of STAGES 8 KB stages, one consumer warp
// releasing each stage as it lands, 3 blocks an SM).
__global__ void __launch_bounds__(256) read_kernel(const uint4* __restrict__ w, int64_t n16, unsigned* sink) {
  greta_await_prior_kernels();
  unsigned acc = 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n16; i += 4 * stride) {
    const uint4 a = w[i], b = w[i + stride], c = w[i + 2 * stride], d = w[i + 3 * stride];
    acc ^= a.x ^ a.w ^ b.x ^ b.w ^ c.x ^ c.w ^ d.x ^ d.w;
  }
  for (; i < n16; i += stride) acc ^= w[i].x;
  greta_allow_next_launch();
  if (acc == 0x9e3779b9u) sink[0] = acc;
}

template <int STAGES, bool EARLY>
__global__ void __launch_bounds__(64, 3) bulk_read_kernel(const uint4* __restrict__ w, int64_t tile16, unsigned* sink) {
  using namespace greta_mma;
  constexpr int STAGE16 = 8192 / 16;
  extern __shared__ uint4 rr_smem[];
  uint64_t* const full = reinterpret_cast<uint64_t*>(rr_smem + STAGES * STAGE16);
  uint64_t* const empty = full + STAGES;
  const int R = static_cast<int>(tile16 / STAGE16);
  const uint4* const wt = w + static_cast<int64_t>(blockIdx.x) * tile16;
  if (threadIdx.x == 0) {
    for (int st = 0; st < STAGES; st++) {
      mbar_init(full + st, 1);
      mbar_init(empty + st, 1);
    }
    mbar_init_fence();
  }
  __syncthreads();
  if (threadIdx.x == 32) {  // producer
    for (int r = 0; r < R; r++) {
      const int st = r % STAGES;
      if (r >= STAGES) mbar_wait(empty + st, ((r / STAGES) + 1) & 1);
      mbar_expect_tx(full + st, STAGE16 * 16);
      bulk_copy(rr_smem + st * STAGE16, wt + static_cast<int64_t>(r) * STAGE16, STAGE16 * 16, full + st);
    }
    if (EARLY) greta_allow_next_launch();
  }
  greta_await_prior_kernels();
  if (threadIdx.x >= 32) return;
  unsigned acc = 0;
  for (int r = 0; r < R; r++) {
    const int st = r % STAGES;
    mbar_wait(full + st, (r / STAGES) & 1);
    acc ^= rr_smem[st * STAGE16 + threadIdx.x].x;
    __syncwarp();
    if (threadIdx.x == 0) mbar_arrive(empty + st);
  }
  greta_allow_next_launch();
  if (acc == 0x9e3779b9u) sink[0] = acc;
}

// kind 0: read_kernel, 1: bulk_read_kernel, 2: bulk_read_kernel letting the next launch start at its last copy; in a row over rotating copies, as back_to_back.
float read_in_a_row(int kind, int64_t N, int64_t K) {
  const int64_t tile16 = 16 * K * 2 / 16;
  constexpr int STAGES = 4;
  const size_t smem = STAGES * 8192 + 2 * STAGES * 8;
  CHECK(hipFuncSetAttribute(reinterpret_cast<const void*>(bulk_read_kernel<STAGES, false>),
                            hipFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  CHECK(hipFuncSetAttribute(reinterpret_cast<const void*>(bulk_read_kernel<STAGES, true>),
                            hipFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const int sms = greta_hip::multiprocessors();
  return in_a_row(N, K, [&](int, const void* wv) {
    const uint4* const w = static_cast<const uint4*>(wv);
    if (kind == 0)
      GRETA_LAUNCH(read_kernel, dim3(sms * 8), dim3(256), 0, 0, w, static_cast<int64_t>(N * K * 2 / 16), (unsigned*)bsum.p);
    else if (kind == 1)
      GRETA_LAUNCH((bulk_read_kernel<STAGES, false>), dim3(static_cast<unsigned>(N / 16)), dim3(64), smem, 0, w, tile16,
                   (unsigned*)bsum.p);
    else
      GRETA_LAUNCH((bulk_read_kernel<STAGES, true>), dim3(static_cast<unsigned>(N / 16)), dim3(64), smem, 0, w, tile16,
                   (unsigned*)bsum.p);
    CHECK(hipGetLastError());
  });
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

// The ws kernels' split of x (already in bx) alone, L2 flushed before each.
template <int BT>
float time_split_ws(int64_t M, int64_t K) {
  const int64_t Mpad = (M + BT - 1) / BT * BT;
  bscr.ensure(3 * Mpad * K * 2);
  const int64_t blocks = (Mpad * (K / greta_mma::KBLOCK) + 255) / 256;
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  std::vector<float> t;
  for (int i = 0; i < 15; i++) {
    CHECK(cudaMemsetAsync(bflush.p, i, bflush.bytes, 0));
    CHECK(cudaEventRecord(a, 0));
    split_ws_kernel<BT><<<static_cast<unsigned>(blocks < 4096 ? blocks : 4096), 256>>>(static_cast<uint4*>(bscr.p),
                                                                                       (const float*)bx.p, M, Mpad, K);
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

// Prefill across M: the dispatch against the A shape forced.
template <typename W>
void sweep(const char* name, int64_t N, int64_t K) {
  setup<W>(512, N, K, 98, false);
  for (int64_t M : {33, 64, 128, 291, 512}) {
    const float ms = timeit<W>(NEW, M, N, K, 9), mm = timeit<W>(P_A, M, N, K, 9);
    std::printf("| %-22s | M=%-4lld | new %.4f ms %6.1f TFLOP/s | A %.4f ms %6.1f TFLOP/s |\n", name, (long long)M, ms,
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
  if (ncu) {  // the dispatch (or the paths named), at qkv and down (M = 205)
    std::vector<Path> paths = {NEW};
    if (argc > 2) {
      paths.clear();
      for (int i = 2; i < argc; i++)
        for (int p = 0; p < NPATHS; p++)
          if (std::strcmp(argv[i], path_name[p]) == 0) paths.push_back((Path)p);
    }
    for (auto nk : {std::pair<int64_t, int64_t>{6144, 4096}, std::pair<int64_t, int64_t>{4096, 14336}}) {
      setup<bf16>(205, nk.first, nk.second, 5, false);
      for (Path p : paths)
        CHECK(run<bf16>(p, outs1((float*)bo.p, nk.first), (const float*)bx.p, weights(), 205, nk.first, nk.second));
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
      CHECK(run<bf16>(NEW, outs1((float*)bo.p, d.N), (const float*)bx.p, weights(), 1, d.N, d.K));
      CHECK(hipMemcpy(want.data(), bo.p, d.N * 4, hipMemcpyDeviceToHost));
      for (int p = NEW; p < NPATHS; p++) {
        if (p != NEW && !is_decode(p)) continue;
        CHECK(hipMemset(bo2.p, 0xff, d.N * 4));
        const hipError_t e = run<bf16>((Path)p, outs1((float*)bo2.p, d.N), (const float*)bx.p, weights(), 1, d.N, d.K);
        if (e != hipSuccess) {
          (void)hipGetLastError();
          std::printf("| %-22s | M=1   | %-22s | does not launch (%s)\n", d.name, path_name[p], hipGetErrorName(e));
          continue;
        }
        CHECK(hipMemcpy(got.data(), bo2.p, d.N * 4, hipMemcpyDeviceToHost));
        const bool same = std::memcmp(got.data(), want.data(), d.N * 4) == 0;
        if (!same) failures++;
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
  if (argc > 1 && std::strcmp(argv[1], "roof") == 0) {  // one-token projections in a row against reading alone
    copy_rate();
    const struct { const char* name; int64_t N, K; } dproj[] = {
        {"qkv 4096->6144", 6144, 4096}, {"wo 4096->4096", 4096, 4096}, {"down 14336->4096", 4096, 14336}};
    for (auto& d : dproj) {
      setup<bf16>(1, d.N, d.K, 77, false);
      const double gb = double(d.N) * d.K * 2 / 1e9;
      for (int i = 2; i < argc; i++)
        for (int p = 0; p < NPATHS; p++)
          if (std::strcmp(argv[i], path_name[p]) == 0) {
            const float t = back_to_back((Path)p, d.N, d.K);
            std::printf("| %-22s | in a row | %-26s %7.4f ms %.3f of copy\n", d.name, path_name[p], t,
                        gb / (t * 1e-3) / (copy_tbs * 1e3));
          }
      const float mm = back_to_back(NEW, d.N, d.K), rd = read_in_a_row(0, d.N, d.K), rb = read_in_a_row(1, d.N, d.K);
      const float re = read_in_a_row(2, d.N, d.K);
      std::printf("| %-22s | in a row | dispatch %7.4f ms %.3f | read 16B loads %7.4f ms %.3f | read bulk ring %7.4f ms %.3f | ring, next at last copy %7.4f ms %.3f | of copy\n",
                  d.name, mm, gb / (mm * 1e-3) / (copy_tbs * 1e3), rd, gb / (rd * 1e-3) / (copy_tbs * 1e3), rb,
                  gb / (rb * 1e-3) / (copy_tbs * 1e3), re, gb / (re * 1e-3) / (copy_tbs * 1e3));
    }
    return 0;
  }
  if (argc > 1 && std::strcmp(argv[1], "after") == 0) {  // decode projections after a short kernel, in a row
    copy_rate();
    const struct { const char* name; int64_t N, K; } dproj[] = {
        {"qkv 4096->6144", 6144, 4096}, {"wo 4096->4096", 4096, 4096}, {"down 14336->4096", 4096, 14336},
};
    for (unsigned ns : {0u, 4000u, 8000u, 12000u, 20000u}) {
      setup<bf16>(1, 4096, 4096, 77, false);  // the rotation's copies need a weight, though none is read
      const float idle = after_idle(-1, 4096, 4096, ns);
      std::printf("idle kernel of %u us alone: %.4f ms\n", ns / 1000, idle);
      for (auto& d : dproj) {
        setup<bf16>(1, d.N, d.K, 77, false);
        for (int p : {(int)NEW, (int)D_R1}) {
          const float pair = after_idle(p, d.N, d.K, ns);
          const double gbs = double(d.N) * d.K * 2 / ((pair - idle) * 1e-3) / 1e9;
          std::printf("| %-22s | after %2u us | %-22s | pair %8.4f ms | adds %8.4f ms | %.3f of copy |\n", d.name,
                      ns / 1000, path_name[p], pair, pair - idle, gbs / (copy_tbs * 1e3));
        }
      }
    }
    return 0;
  }
  if (argc > 1 && std::strcmp(argv[1], "prefill") == 0) {  // prefill shapes at M = 205: bit-identical to the dispatch, then timed
    std::vector<int> named;  // the paths named after `prefill` (printed names), else all; M=N sets the tokens
    int64_t M = 205;
    for (int i = 2; i < argc; i++) {
      if (std::strncmp(argv[i], "M=", 2) == 0) M = std::atoll(argv[i] + 2);
      for (int p = 0; p < NPATHS; p++)
        if (std::strcmp(argv[i], path_name[p]) == 0) named.push_back(p);
    }
    copy_rate();
    const struct { const char* name; int64_t N, K; } pproj[] = {
        {"qkv 4096->6144", 6144, 4096}, {"wo 4096->4096", 4096, 4096}, {"down 14336->4096", 4096, 14336},
        {"gate_up 4096->28672", 28672, 4096}, {"lm_head 4096->128256", 128256, 4096}};
    for (auto& d : pproj) {
      if (M > 1024 && d.N > 100000) continue;  // lm_head takes one row in prefill
      setup<bf16>(M, d.N, d.K, 78, false);
      std::vector<float> want(M * d.N), got(M * d.N);
      CHECK(run<bf16>(NEW, outs1((float*)bo.p, d.N), (const float*)bx.p, weights(), M, d.N, d.K));
      CHECK(hipMemcpy(want.data(), bo.p, M * d.N * 4, hipMemcpyDeviceToHost));
      for (int p = NEW; p <= P_S3B; p++) {
        if (p == OLD || (p != NEW && !named.empty() && std::find(named.begin(), named.end(), p) == named.end())) continue;
        CHECK(hipMemset(bo2.p, 0xff, M * d.N * 4));
        const hipError_t e = run<bf16>((Path)p, outs1((float*)bo2.p, d.N), (const float*)bx.p, weights(), M, d.N, d.K);
        if (e != hipSuccess) {
          (void)hipGetLastError();
          std::printf("| %-22s | M=%-4lld | %-22s | does not launch (%s)\n", d.name, (long long)M, path_name[p], hipGetErrorName(e));
          continue;
        }
        CHECK(hipMemcpy(got.data(), bo2.p, M * d.N * 4, hipMemcpyDeviceToHost));
        const bool same = std::memcmp(got.data(), want.data(), M * d.N * 4) == 0;
        if (!same) failures++;
        const float ms = timeit<bf16>((Path)p, M, d.N, d.K, 15);
        std::printf("| %-22s | M=%-4lld | %-22s | %8.4f ms | %7.1f TFLOP/s | %s\n", d.name, (long long)M, path_name[p], ms,
                    2.0 * M * d.N * d.K / (ms * 1e-3) / 1e12, same ? "bit-identical" : "DIFFERS");
      }
      std::printf("| %-22s | M=%-4lld | ws split alone, 56 / 104 tokens a block: %8.4f / %8.4f ms\n", d.name, (long long)M,
                  time_split_ws<56>(M, d.K), time_split_ws<104>(M, d.K));
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
  std::printf("\n## bit for bit: every prefill shape and every row alone against the dispatch\n");
  const struct { const char* name; int64_t N, K; } proj[] = {{"qkv 4096->6144", 6144, 4096},
                                                             {"wo 4096->4096", 4096, 4096},
                                                             {"gate_up 4096->28672", 28672, 4096},
                                                             {"down 14336->4096", 4096, 14336},
                                                             {"lm_head 4096->128256", 128256, 4096}};
  for (auto& p : proj)
    for (int64_t M : {1, 17, 205, 291}) same_as_dispatch<bf16>(p.name, M, p.N, p.K);
  for (int64_t M : {1, 17, 205, 291}) {
    same_as_dispatch<f16>("f16 4096->4096", M, 4096, 4096);
    same_as_dispatch<float>("f32 4096->4096", M, 4096, 4096);
  }
  std::printf("validation: %d failures\n", failures);
  if (quick) return failures ? 1 : 0;

  std::printf("\n## timings (H100 medians, L2 flushed before each launch)\n");
  copy_rate();
  const std::vector<Path> pre = {NEW, P_A, P_B, P_C, P_D, P_G};
  const std::vector<Path> dec = {NEW};
  for (auto& p : proj) bench<bf16>(p.name, p.N, p.K, pre, dec);
  bench<f16>("f16 4096->4096", 4096, 4096, {NEW, P_A}, {NEW});
  bench<float>("f32 4096->4096", 4096, 4096, {NEW, P_A}, {NEW});
  sweep<bf16>("qkv 4096->6144", 6144, 4096);
  sweep<bf16>("down 14336->4096", 4096, 14336);
  return failures ? 1 : 0;
}
