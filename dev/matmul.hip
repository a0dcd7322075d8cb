// Kernel lab (NVIDIA) for hip/matmul.hip, in the manner of llm.c's dev/cuda: every
// variant is validated against an fp64 reference at every shape before it is
// timed. Built as one translation unit with the production kernels, so the
// launch shapes can be forced:
//   nvcc -O3 -arch=sm_90 --fmad=false -std=c++17 -Ihip -x cu dev/matmul.hip -o matmul_lab
//   ./matmul_lab check      the dispatch equal to main's before the gemv kernel
//                           (PREV) bit for bit at the five 8B projection shapes,
//                           M = 1..16, 31, 32, 33 (a row alone too); then rel L2
//                           vs fp64, row invariance, every launch shape equal
//   ./matmul_lab bench      decode: weight bytes / time of every M = 1 shape
//                           against a device-to-device copy measured in the same
//                           process, rotated over 512 MB of weight copies (20
//                           launches back to back, as src/bench/main.ts) and
//                           one launch with L2 flushed; then small M, new vs PREV
//   ./matmul_lab prefill    M = 205, L2 flushed before each launch
//   ./matmul_lab ncu        one launch each of PREV and gemv at 4096 -> 28672
//                           and of PREV and the cp.async experiment at
//                           14336 -> 4096 and 4096 -> 4096 (M = 1)
//
// Measured (H100, ./matmul_lab bench; copy 2.98 TB/s), M = 1 bf16, of the copy
// rate, rotated (flushed):       main's rows kernel   now (dispatch)
//   qkv      4096 -> 6144          0.665 (0.525)        0.665 (0.525)  rows kernel
//   wo       4096 -> 4096          0.607 (0.473)        0.621 (0.474)  rows kernel
//   gate_up  4096 -> 28672         0.802 (0.748)        0.864 (0.790)  gemv kernel
//   down    14336 -> 4096          0.798 (0.679)        0.798 (0.682)  rows kernel
//   lm_head  4096 -> 128256        0.884 (0.866)        0.920 (0.910)  gemv kernel
// (gemv over three runs: gate_up 0.864-0.880, lm_head 0.920-0.941.) The gemv
// kernel at the narrow shapes: qkv 0.58, wo 0.45 (4 warps a block; 1 to 16:
// no better); with K split over 2-8 warps of a block (c_s kept in shared
// memory, added after a barrier; dropped) at best qkv 0.63, wo 0.58, down
// 0.66; weights through a cp.async ring in shared memory (gemv_async_kernel,
// below) qkv 0.67, wo 0.53, down 0.60.
// ncu (M = 1, clocks locked by ncu), main's rows kernel -> the kernel now:
//   4096 -> 28672: DRAM 76% -> 78% of peak, 102 -> 93 us, 34.2M -> 11.8M
//   instructions, issue slots 44% -> 17% busy, occupancy 34% -> 21% (126
//   registers); top stall long scoreboard (weights) 5.3 -> 13.8 cycles an
//   instruction, the block barrier (2.4) gone.
//   14336 -> 4096 (rows kernel, unchanged): DRAM 73%, occupancy 24%, stalls
//   long scoreboard 2.9, barrier 1.8, wait 1.3; gemv with K over 4 warps:
//   DRAM 50-58%, 9.2-10.5M instructions (rows 16.4M), 1.8 warps a scheduler;
//   cp.async form: DRAM 46%, one warp a scheduler, stalls "wait" and
//   "selected": each warp's chains issue one after another.
//   4096 -> 4096 (rows kernel, unchanged): DRAM 58%, occupancy 23%; cp.async
//   form DRAM 41%. Narrow outputs have too few 16-row tiles (256 at wo/down)
//   for one warp a tile to fill the SMs; the rows kernel's 8 warps a tile do,
//   at the cost of its barrier and serial sum.
// Prefill (M = 205, TFLOP/s, vs the CUDA-core kernel): QKV 51.8 (14.7)
// WO 43.5 (14.2) up 62.7 (15.2) gate+up 68.1 (15.4) down 45.4 (15.4)
// lm_head 70.7 (15.8); rel L2 vs fp64: 2.1e-7 at K = 4096, 3.9e-7 at
// K = 14336 (the CUDA-core kernel's: the same). ncu (tiled, M = 205,
// 4096 -> 14336): issue slots 57% busy, tensor pipe 32%, occupancy 20%,
// DRAM 9%, L2 hit 82%: instruction issue and latency bound (the three-term
// split costs three instructions per product).
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

namespace lab {
using namespace greta_hip;
using namespace greta_mma;

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

// main's rows kernel before this change (kept for the bit-for-bit check).
// Small M (<= TM tiles of tokens, decode included): one block per FN x 16
// weight rows, its KW warps taking turns over the KBLOCKs (warp w: blocks w,
// w + KW, ...) so that enough loads are in flight; operands load straight from
// global memory, R blocks per warp per round, the next round's loads issued
// before this round's products. Each c_s goes to shared memory, and one thread
// per accumulator adds them in increasing s: the very chain the prefill
// kernel keeps in registers.
template <typename W, int FN, int TM, int KW, int R>
struct PrevRound {
  Raw<W> w[R][FN][A_ROWS];
  uint4 x[R][TM][2];
};

template <typename W, int FN, int TM, int KW, int R>
__global__ void __launch_bounds__(KW * GRETA_WAVE_SIZE)
    prev_rows_kernel(GretaMatmulOuts out, const float* __restrict__ x, const W* __restrict__ w, int64_t M, int64_t N,
                    int64_t K) {
  constexpr int THREADS = KW * GRETA_WAVE_SIZE;
  constexpr int POS = FN * TM * 4 * GRETA_WAVE_SIZE;  // accumulators of one warp's tiles
  constexpr int PER = (POS + THREADS - 1) / THREADS;  // accumulators per adding thread
  constexpr int SLOTS = KW * R;
  __shared__ float slot[2][SLOTS][POS];
  using Round = PrevRound<W, FN, TM, KW, R>;

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

constexpr int PREV_SLOT_BYTES = 1 << 15;
template <int FN, int TM, int KW>
constexpr int prev_rows_r() {
  return PREV_SLOT_BYTES / (2 * KW * FN * TM * 4 * GRETA_WAVE_SIZE * 4) > 4
             ? 4
             : PREV_SLOT_BYTES / (2 * KW * FN * TM * 4 * GRETA_WAVE_SIZE * 4);
}
template <typename W, int FN, int TM, int KW, int R = prev_rows_r<FN, TM, KW>()>
hipError_t launch_prev_rows(const GretaMatmulOuts& out, const float* x, const void* w, int64_t M, int64_t N, int64_t K) {
  static_assert(R >= 1, "rows kernel: the slots do not fit");
  if (M > TM * TILE_J) return hipErrorInvalidValue;
  const int64_t blocks = (N + FN * TILE_I - 1) / (FN * TILE_I);
  prev_rows_kernel<W, FN, TM, KW, R><<<dim3(static_cast<unsigned>(blocks)), dim3(KW * GRETA_WAVE_SIZE)>>>(
      out, x, static_cast<const W*>(w), M, N, K);
  return hipGetLastError();
}
// main's dispatch up to the tiled kernel (which is unchanged).
template <typename W>
hipError_t launch_prev(const GretaMatmulOuts& out, const float* x, const void* w, int64_t M, int64_t N, int64_t K) {
  if (M <= TILE_J) {
    if (N >= (1 << 16)) return launch_prev_rows<W, 2, 1, 8>(out, x, w, M, N, K);
    return launch_prev_rows<W, 1, 1, 8, 2>(out, x, w, M, N, K);
  }
  if (M <= 2 * TILE_J) return launch_prev_rows<W, 1, 2, 8>(out, x, w, M, N, K);
  if (M <= 4 * TILE_J) return launch_prev_rows<W, 1, 4, 8>(out, x, w, M, N, K);
  return launch_tiled<W, 4, 1, sizeof(W) == 4 ? 1 : 2, KBLOCK / TILE_J, 2>(out, x, w, M, N, K, 0);
}

// Experiment (not dispatched): the gemv kernel with its weights streamed
// through a ring of G groups of U KBLOCKs in shared memory per warp (cp.async)
// instead of registers, so a warp keeps (G - 1) U KB in flight without the
// register cost; the split of x as in the gemv kernel. bf16, M = 1 token tile.
template <int NT, int G, int U>
__global__ void __launch_bounds__(NT * 32) gemv_async_kernel(GretaMatmulOuts out, const float* __restrict__ x,
                                                            const bf16* __restrict__ w, int64_t M, int64_t N, int64_t K) {
  constexpr int THREADS = NT * 32;
  constexpr int SLOT = TILE_I * 4;  // uint4 of one KBLOCK of 16 rows
  extern __shared__ uint4 lab_smem[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t n0 = (static_cast<int64_t>(blockIdx.x) * NT + warp) * TILE_I;
  const int xr = static_cast<int>(M < TILE_J ? M : TILE_J);
  const int S = static_cast<int>(K / KBLOCK);
  const int se = n0 < N ? S : 0;
  const int xstride = xr * LANE_CHUNKS * 3;
  uint4* const xs = lab_smem;
  uint4* const ring = lab_smem + (S + G * U) * xstride + warp * G * U * SLOT;
  const bf16* src[2];
  int dst[2];
  for (int i = 0; i < 2; i++) {
    const int c = lane + 32 * i, r = c / 4, ch = c % 4;
    const int64_t n = n0 + r;
    src[i] = w + (n < N ? n : N - 1) * K + ch * 8;
    dst[i] = r * 4 + ch;
  }
  auto load_group = [&](int g, int s0) {
#pragma unroll
    for (int u = 0; u < U; u++)
      if (s0 + u < se)
#pragma unroll
        for (int i = 0; i < 2; i++)
          copy16_async(&ring[(g * U + u) * SLOT + dst[i]], src[i] + static_cast<int64_t>(s0 + u) * KBLOCK, true);
  };
#pragma unroll
  for (int g = 0; g < G - 1; g++) {
    load_group(g, g * U);
    copy_commit();
  }
  for (int t = 0; t < xr; t++)
    for (int i = threadIdx.x; i < S * LANE_CHUNKS; i += THREADS) {
      const uint4* const p = reinterpret_cast<const uint4*>(x + t * K + static_cast<int64_t>(i) * LANE_K);
      MmaB b[3];
      act_terms(p[0], p[1], b);
      uint4* const d = xs + (i / LANE_CHUNKS) * xstride + (t * LANE_CHUNKS + i % LANE_CHUNKS) * 3;
      for (int e = 0; e < 3; e++) d[e] = b[e].v;
    }
  __syncthreads();
  MmaC acc = mma_zero();
  const int col = b_col(lane) < xr ? b_col(lane) : xr - 1;
  const int xoff = (col * LANE_CHUNKS + lane_k(lane) / LANE_K) * 3;
  int cur = 0;
  for (int s0 = 0; s0 < se; s0 += U) {
    copy_wait<G - 2>();
    GRETA_SYNC_WAVE();
    load_group(cur == 0 ? G - 1 : cur - 1, s0 + (G - 1) * U);
    copy_commit();
    MmaC c[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
      const uint4* const sl = ring + (cur * U + u) * SLOT;
      MmaA a;
      a.row[0] = sl[a_row(lane, 0) * 4 + lane_k(lane) / 8];
      a.row[1] = sl[a_row(lane, 1) * 4 + lane_k(lane) / 8];
      MmaB b[3];
      for (int i = 0; i < 3; i++) b[i].v = xs[(s0 + u) * xstride + xoff + i];
      c[u] = mma_zero();
      for (int i = 0; i < 3; i++) mma_k32(c[u], a, b[2 - i]);
    }
#pragma unroll
    for (int u = 0; u < U; u++)
      if (s0 + u < se)
        for (int e = 0; e < 4; e++) acc.v[e] = acc.v[e] + c[u].v[e];
    cur = cur == G - 1 ? 0 : cur + 1;
  }
  copy_wait<0>();
  for (int e = 0; e < 4; e++) {
    const int64_t n = n0 + c_row(lane, e), m = c_col(lane, e);
    if (n < N && m < M) store_out(out, m, n, acc.v[e]);
  }
}
template <int NT, int G, int U>
hipError_t launch_gemv_async(const GretaMatmulOuts& out, const float* x, const void* w, int64_t M, int64_t N, int64_t K) {
  if (M > TILE_J || K % KBLOCK != 0) return hipErrorInvalidValue;
  const int64_t xr = M < TILE_J ? M : TILE_J;
  const size_t smem = ((K / KBLOCK + G * U) * xr * LANE_CHUNKS * 3 + NT * G * U * TILE_I * 4) * sizeof(uint4);
  if (smem > 200 * 1024) return hipErrorInvalidValue;
  static const cudaError_t asked =
      cudaFuncSetAttribute(gemv_async_kernel<NT, G, U>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
  if (asked != cudaSuccess) return asked;
  const int64_t blocks = ((N + TILE_I - 1) / TILE_I + NT - 1) / NT;
  gemv_async_kernel<NT, G, U><<<dim3(static_cast<unsigned>(blocks)), dim3(NT * 32), smem>>>(out, x, static_cast<const bf16*>(w), M, N, K);
  return hipGetLastError();
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

// Paths: the dispatch, the CUDA-core kernel, main's dispatch before the gemv
// kernel (PREV), tiled shapes, and gemv shapes (FN row tiles a warp, NT warps
// a block, a ring of P KBLOCKs in registers taken U at a time).
enum Path { NEW, OLD, PREV, T_A, T_B, T_C, T_D, R_1, R_2, R_3, R_4, R_5, R_6, R_7, R_8, R_9, A_1, A_2, A_3, A_4, NPATHS };
const char* path_name[NPATHS] = {"new(dispatch)",      "old(cuda-core)",     "prev(main)",         "tiled 4x1 f2 t4 s3",
                                 "tiled 4x1 f2 t4 s2", "tiled 2x1 f2 t4 s3", "tiled 4x1 f2 t4 s3 b1",
                                 "gemv nt4 p8 u4",     "gemv nt8 p8 u4",     "gemv nt2 p8 u4",     "gemv nt1 p8 u4",
                                 "gemv nt4 p4 u4",     "gemv nt4 p8 u2",     "gemv f2 nt2 p8 u4",  "gemv nt4 p12 u4",
                                 "gemv nt16 p8 u4",    "async nt1 16x2",     "async nt2 8x4",      "async nt1 8x4",
                                 "async nt2 16x2"};
int rows_tokens(int) { return greta_mma::TILE_J; }

template <typename W>
hipError_t run(Path p, const GretaMatmulOuts& o, const float* x, const void* w, int64_t M, int64_t N, int64_t K) {
  constexpr int wt = std::is_same<W, float>::value ? 0 : std::is_same<W, greta_hip::f16>::value ? 2 : 3;
  constexpr int F = sizeof(W) == 4 ? 1 : 2;
  switch (p) {
    case NEW: return greta_matmul(o, x, w, wt, M, N, K, 0);
    case OLD: return launch_simt<W>(o, x, w, M, N, K, 0);
    case PREV: return launch_prev<W>(o, x, w, M, N, K);
    case T_A: return launch_tiled<W, 4, 1, F, 4, 3>(o, x, w, M, N, K, 0);
    case T_B: return launch_tiled<W, 4, 1, F, 4, 2>(o, x, w, M, N, K, 0);
    case T_C: return launch_tiled<W, 2, 1, F, 4, 3>(o, x, w, M, N, K, 0);
    case T_D: return launch_tiled<W, 4, 1, F, 4, 3, 1>(o, x, w, M, N, K, 0);
    default: break;
  }
  if constexpr (std::is_same<W, greta_hip::bf16>::value) {  // rows shapes: bf16 only (compile time)
    switch (p) {
      case R_1: return launch_gemv<W, 1, 4, 8, 4>(o, x, w, M, N, K, 0);
      case R_2: return launch_gemv<W, 1, 8, 8, 4>(o, x, w, M, N, K, 0);
      case R_3: return launch_gemv<W, 1, 2, 8, 4>(o, x, w, M, N, K, 0);
      case R_4: return launch_gemv<W, 1, 1, 8, 4>(o, x, w, M, N, K, 0);
      case R_5: return launch_gemv<W, 1, 4, 4, 4>(o, x, w, M, N, K, 0);
      case R_6: return launch_gemv<W, 1, 4, 8, 2>(o, x, w, M, N, K, 0);
      case R_7: return launch_gemv<W, 2, 2, 8, 4>(o, x, w, M, N, K, 0);
      case R_8: return launch_gemv<W, 1, 4, 12, 4>(o, x, w, M, N, K, 0);
      case R_9: return launch_gemv<W, 1, 16, 8, 4>(o, x, w, M, N, K, 0);
      case A_1: return launch_gemv_async<1, 16, 2>(o, x, w, M, N, K);
      case A_2: return launch_gemv_async<2, 8, 4>(o, x, w, M, N, K);
      case A_3: return launch_gemv_async<1, 8, 4>(o, x, w, M, N, K);
      case A_4: return launch_gemv_async<2, 16, 2>(o, x, w, M, N, K);
      default: break;
    }
  }
  return cudaErrorNotSupported;
}

bool is_rows(Path p) { return p >= R_1; }

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
    for (int p = PREV; p < NPATHS; p++) {
      if (is_rows((Path)p) && M > rows_tokens(p)) continue;
      CHECK(hipMemset(o2, 0xff, M * N * 4));
      const hipError_t e = run<W>((Path)p, outs1(o2, N), x, bw.p, M, N, K);
      if (e == hipErrorInvalidValue || e == cudaErrorNotSupported) continue;  // a shape that does not fit
      CHECK(e);
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

float time_ms(const std::vector<float>& v) {
  std::vector<float> s = v;
  std::sort(s.begin(), s.end());
  return s[s.size() / 2];
}

// One launch, L2 flushed before it (a 256 MB memset), timed by events.
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

// As the engine's bench (src/bench/main.ts) times an op: 20 launches back to
// back over copies of the weights that together exceed 512 MB (so each
// launch reads its weights from memory), median of 7 samples.
Buf brot;
template <typename W>
float timeit_rotated(Path p, int64_t M, int64_t N, int64_t K) {
  const size_t wbytes = size_t(N) * K * sizeof(W);
  const int copies = static_cast<int>(std::max<size_t>(1, ((size_t(512) << 20) + wbytes - 1) / wbytes));
  brot.ensure(wbytes * copies);
  for (int c = 0; c < copies; c++) CHECK(hipMemcpy((char*)brot.p + c * wbytes, bw.p, wbytes, hipMemcpyDeviceToDevice));
  const GretaMatmulOuts o = outs1((float*)bo.p, N);
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  int i = 0;
  auto one = [&]() { return run<W>(p, o, (const float*)bx.p, (const char*)brot.p + (i++ % copies) * wbytes, M, N, K); };
  const hipError_t e = one();
  if (e != hipSuccess) return -1.f;
  std::vector<float> t;
  for (int r = 0; r < 7; r++) {
    CHECK(cudaEventRecord(a, 0));
    for (int j = 0; j < 20; j++) CHECK(one());
    CHECK(cudaEventRecord(b, 0));
    CHECK(cudaEventSynchronize(b));
    float ms;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms / 20);
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

// Decode (M = 1) of every rows shape against main's: weight bytes / time as
// a fraction of the copy rate, rotated (as the engine's bench) and one launch
// with L2 flushed; then small M, rotated, new against main's.
template <typename W>
void bench_decode(const char* name, int64_t N, int64_t K, const std::vector<Path>& paths) {
  setup<W>(32, N, K, 99, false);
  const double wb = double(N) * K * sizeof(W);
  for (Path p : paths) {
    const float mr = timeit_rotated<W>(p, 1, N, K);
    if (mr < 0) continue;  // does not fit this shape
    const float mf = timeit<W>(p, 1, N, K, 15);
    std::printf("| %-22s | M=1  | %-20s | rotated %8.4f ms %.3f of copy | flushed %8.4f ms %.3f of copy |\n", name,
                path_name[p], mr, wb / (mr * 1e-3) / 1e12 / copy_tbs, mf, wb / (mf * 1e-3) / 1e12 / copy_tbs);
  }
  for (int64_t M : {2, 4, 8, 9, 16, 17, 32}) {
    const float mn = timeit_rotated<W>(NEW, M, N, K), mp = timeit_rotated<W>(PREV, M, N, K);
    std::printf("| %-22s | M=%-2lld | new %8.4f ms %.3f of copy | prev %8.4f ms %.3f of copy |\n", name, (long long)M, mn,
                wb / (mn * 1e-3) / 1e12 / copy_tbs, mp, wb / (mp * 1e-3) / 1e12 / copy_tbs);
  }
}

template <typename W>
void bench(const char* name, int64_t N, int64_t K, const std::vector<Path>& prefill) {
  const int64_t Mp = 205;
  setup<W>(Mp, N, K, 99, false);
  for (Path p : prefill) {
    const float ms = timeit<W>(p, Mp, N, K, 15);
    std::printf("| %-22s | M=205 | %-18s | %8.4f ms | %7.1f TFLOP/s |\n", name, path_name[p], ms,
                2.0 * Mp * N * K / (ms * 1e-3) / 1e12);
  }
}

// The new rows kernel against main's, bit for bit, at the five 8B projection
// shapes (bf16), every M that the rows kernel takes and the first M that the
// tiled kernel takes; and a row alone against the same row in the M-row call.
void same_as_main() {
  const int64_t shapes[][2] = {{6144, 4096}, {4096, 4096}, {28672, 4096}, {4096, 14336}, {128256, 4096}};
  for (auto& s : shapes) {
    const int64_t N = s[0], K = s[1], MMAX = 33;
    setup<greta_hip::bf16>(MMAX, N, K, static_cast<uint32_t>(N + K), false);
    std::vector<float> want(MMAX * N), got(MMAX * N), alone(N);
    int bad = 0;
    std::string which;
    for (int64_t M = 1; M <= MMAX; M++) {
      if (M > 16 && M != 31 && M != 32 && M != 33) continue;
      CHECK(hipMemset(bo.p, 0xff, M * N * 4));
      CHECK(hipMemset(bo2.p, 0xff, M * N * 4));
      CHECK(run<greta_hip::bf16>(PREV, outs1((float*)bo.p, N), (const float*)bx.p, bw.p, M, N, K));
      CHECK(run<greta_hip::bf16>(NEW, outs1((float*)bo2.p, N), (const float*)bx.p, bw.p, M, N, K));
      CHECK(hipMemcpy(want.data(), bo.p, M * N * 4, hipMemcpyDeviceToHost));
      CHECK(hipMemcpy(got.data(), bo2.p, M * N * 4, hipMemcpyDeviceToHost));
      bool ok = std::memcmp(want.data(), got.data(), M * N * 4) == 0;
      CHECK(run<greta_hip::bf16>(NEW, outs1((float*)bo2.p, N), (const float*)bx.p + (M - 1) * K, bw.p, 1, N, K));
      CHECK(hipMemcpy(alone.data(), bo2.p, N * 4, hipMemcpyDeviceToHost));
      ok = ok && std::memcmp(alone.data(), want.data() + (M - 1) * N, N * 4) == 0;
      if (!ok) {
        bad++;
        which += " " + std::to_string(M);
      }
    }
    if (bad) failures++;
    std::printf("%s new == main's bit for bit, N=%-6lld K=%-6lld bf16, M = 1..16, 31, 32, 33 (last row alone too)%s%s\n",
                bad ? "FAIL" : "ok  ", (long long)N, (long long)K, bad ? ": differs at M =" : "", which.c_str());
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
  const std::string mode = argc > 1 ? argv[1] : "all";
  if (mode == "ncu") {  // main's rows kernel, then gemv (gate_up) or its cp.async form (down, wo), M = 1
    for (auto s : {std::pair<int64_t, int64_t>{28672, 4096}, {4096, 14336}, {4096, 4096}}) {
      setup<bf16>(1, s.first, s.second, 6, false);
      for (Path p : {PREV, s.first > 4096 ? R_1 : A_2}) {
        CHECK(cudaMemsetAsync(bflush.p, 1, bflush.bytes, 0));
        CHECK(run<bf16>(p, outs1((float*)bo.p, s.first), (const float*)bx.p, bw.p, 1, s.first, s.second));
      }
    }
    CHECK(hipDeviceSynchronize());
    return 0;
  }
  if (mode == "all" || mode == "check") {
    std::printf("\n## validation (fp64 reference; bound 2e-6)\n");
    same_as_main();
    const int64_t shapes[][2] = {{14336, 4096}, {6144, 4096}, {4096, 4096}, {28672, 4096}, {4096, 14336}};
    for (auto& s : shapes)
      for (int64_t M : {1, 2, 8, 9, 15, 16, 17, 31, 32, 33, 205}) validate<bf16>("bf16", M, s[0], s[1]);
    for (int64_t M : {1, 17}) validate<bf16>("bf16", M, 128256, 4096);
    for (int64_t M : {1, 5, 9, 17, 33, 205}) {
      validate<f16>("f16", M, 4096, 4096);
      validate<float>("f32", M, 4096, 4096);
    }
    const int64_t odd[][3] = {{3, 5, 8},     {7, 333, 1000}, {37, 333, 1000}, {64, 192, 64},  {33, 77, 136},
                              {9, 100, 4096}, {3, 5, 13},     {5, 11, 257},    {1, 40, 8},     {2, 17, 40},
                              {1, 4096, 32}, {12, 300, 2056}, {30, 50, 4104}, {2, 100, 256},  {5, 37, 512},
                              {8, 333, 1024}, {3, 20000, 1024}, {1, 16391, 4096}, {7, 17000, 2048}, {8, 16384, 2048}};
    for (auto& s : odd) {
      validate<bf16>("bf16", s[0], s[1], s[2]);
      validate<f16>("f16", s[0], s[1], s[2]);
      validate<float>("f32", s[0], s[1], s[2]);
    }
    std::printf("validation: %d failures\n", failures);
    if (failures) return 1;
  }
  if (mode == "all" || mode == "bench") {
    std::printf("\n## decode timings (H100 medians)\n");
    copy_rate();
    const std::vector<Path> dec = {PREV, NEW, R_1, R_2, R_3, R_4, R_5, R_6, R_7, R_8, R_9, A_1, A_2, A_3, A_4};
    bench_decode<bf16>("qkv 4096->6144", 6144, 4096, dec);
    bench_decode<bf16>("wo 4096->4096", 4096, 4096, dec);
    bench_decode<bf16>("gate_up 4096->28672", 28672, 4096, dec);
    bench_decode<bf16>("down 14336->4096", 4096, 14336, dec);
    bench_decode<bf16>("lm_head 4096->128256", 128256, 4096, dec);
    bench_decode<f16>("f16 4096->28672", 28672, 4096, {PREV, NEW});
    bench_decode<float>("f32 4096->28672", 28672, 4096, {PREV, NEW});
  }
  if (mode == "all" || mode == "prefill") {
    std::printf("\n## prefill timings (H100 medians, L2 flushed before each launch)\n");
    const std::vector<Path> pre = {NEW, T_A, T_B, T_C, T_D, OLD};
    bench<bf16>("up 4096->14336", 14336, 4096, pre);
    bench<bf16>("down 14336->4096", 4096, 14336, pre);
  }
  return failures ? 1 : 0;
}
