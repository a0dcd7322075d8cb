// Kernel lab (NVIDIA) for hip/matmul.hip, in the manner of llm.c's dev/cuda: every
// variant is validated against an fp64 reference at every shape before it is
// timed. Built as one translation unit with the production kernels, so the
// launch shapes can be forced:
//   nvcc -O3 -arch=sm_90 --fmad=false -std=c++17 -Ihip dev/matmul.hip -o matmul_lab
//   ./matmul_lab            validate (rel L2 vs fp64, row invariance, every
//                           launch shape equal bit for bit), then time
//   ./matmul_lab ncu        one launch of each path at the issue's shapes
// Timings: medians with L2 flushed before each launch; weights bytes / time
// against a device-to-device copy measured in the same process.
//
// Measured (H100, ./matmul_lab; copy 2.99 TB/s), new vs the CUDA-core kernel:
//   M = 205, bf16, TFLOP/s   QKV 51.8 (14.7)  WO 43.5 (14.2)  up 62.7 (15.2)
//                            gate+up 68.1 (15.4)  down 45.4 (15.4)  lm_head 70.7 (15.8)
//   M = 1, of the copy rate  QKV 0.52 (0.41)  WO 0.47 (0.34)  up 0.62 (0.57)
//                            gate+up 0.74 (0.67)  down 0.67 (0.46)  lm_head 0.86 (0.83)
//   rel L2 vs fp64: 2.1e-7 at K = 4096, 3.9e-7 at K = 14336 (the CUDA-core
//   kernel's: the same); every launch shape bit-identical, rows alone too.
// ncu (tiled, M = 205, 4096 -> 14336): issue slots 57% busy, tensor pipe 32%,
// occupancy 20%, DRAM 9%, L2 hit 82%: instruction issue and latency bound
// (the three-term split costs three instructions per product); rows kernel
// (M = 1, 14336 -> 4096): DRAM 72% of peak, 24% occupancy.
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

enum Path { NEW, OLD, T_A, T_B, T_C, T_D, R_A, R_B, R_C, R_2, R_4, R_E, NPATHS };
const char* path_name[NPATHS] = {"new(dispatch)",      "old(cuda-core)",     "tiled 4x1 f2 t4 s3", "tiled 4x1 f2 t4 s2",
                                 "tiled 2x1 f2 t4 s3", "tiled 4x1 f2 t4 s3 b1", "rows f1 t1 kw8",     "rows f2 t1 kw8",
                                 "rows f1 t1 kw16",    "rows f1 t2 kw8",     "rows f1 t4 kw8",
                                 "rows f1 t1 kw8 r2"};
int rows_tokens(int p) { return p == R_E ? greta_mma::TILE_J : p == R_2 ? 2 * greta_mma::TILE_J : p == R_4 ? 4 * greta_mma::TILE_J : greta_mma::TILE_J; }

template <typename W>
hipError_t run(Path p, const GretaMatmulOuts& o, const float* x, const void* w, int64_t M, int64_t N, int64_t K) {
  constexpr int wt = std::is_same<W, float>::value ? 0 : std::is_same<W, greta_hip::f16>::value ? 2 : 3;
  constexpr int F = sizeof(W) == 4 ? 1 : 2;
  switch (p) {
    case NEW: return greta_matmul(o, x, w, wt, M, N, K, 0);
    case OLD: return launch_simt<W>(o, x, w, M, N, K, 0);
    case T_A: return launch_tiled<W, 4, 1, F, 4, 3>(o, x, w, M, N, K, 0);
    case T_B: return launch_tiled<W, 4, 1, F, 4, 2>(o, x, w, M, N, K, 0);
    case T_C: return launch_tiled<W, 2, 1, F, 4, 3>(o, x, w, M, N, K, 0);
    case T_D: return launch_tiled<W, 4, 1, F, 4, 3, 1>(o, x, w, M, N, K, 0);
    case R_A: return launch_rows<W, 1, 1, 8>(o, x, w, M, N, K, 0);
    case R_B: return launch_rows<W, 2, 1, 8>(o, x, w, M, N, K, 0);
    case R_C: return launch_rows<W, 1, 1, 16>(o, x, w, M, N, K, 0);
    case R_2: return launch_rows<W, 1, 2, 8>(o, x, w, M, N, K, 0);
    case R_4: return launch_rows<W, 1, 4, 8>(o, x, w, M, N, K, 0);
    case R_E: return launch_rows<W, 1, 1, 8, 2>(o, x, w, M, N, K, 0);
    default: return hipErrorInvalidValue;
  }
}

bool is_rows(Path p) { return p >= R_A; }

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
    for (int p = T_A; p < NPATHS; p++) {
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
    std::printf("| %-22s | M=205 | %-18s | %8.4f ms | %7.1f TFLOP/s |\n", name, path_name[p], ms,
                2.0 * Mp * N * K / (ms * 1e-3) / 1e12);
  }
  for (Path p : decode) {
    const float ms = timeit<W>(p, 1, N, K, 25);
    const double gbs = double(N) * K * sizeof(W) / (ms * 1e-3) / 1e9;
    std::printf("| %-22s | M=1   | %-18s | %8.4f ms | %7.0f GB/s | %.2f of copy |\n", name, path_name[p], ms, gbs,
                gbs / (copy_tbs * 1e3));
  }
  for (int64_t M : {8, 16, 17, 32, 33, 64, 128}) {
    const float ms = timeit<W>(NEW, M, N, K, 9);
    const float mo = timeit<W>(OLD, M, N, K, 9);
    std::printf("| %-22s | M=%-3lld | new %.4f ms (%.1f TFLOP/s) | old %.4f ms |", name, (long long)M, ms,
                2.0 * M * N * K / (ms * 1e-3) / 1e12, mo);
    if (M > 8) std::printf(" tiled 4x1 %.4f | 2x1 %.4f |", timeit<W>(T_A, M, N, K, 9), timeit<W>(T_C, M, N, K, 9));
    if (M <= 16) std::printf(" rows t2 %.4f |", timeit<W>(R_2, M, N, K, 9));
    if (M <= 32) std::printf(" rows t4 %.4f |", timeit<W>(R_4, M, N, K, 9));
    std::printf("\n");
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
  if (ncu) {
    setup<bf16>(205, 14336, 4096, 5, false);
    CHECK(run<bf16>(NEW, outs1((float*)bo.p, 14336), (const float*)bx.p, bw.p, 205, 14336, 4096));
    setup<bf16>(1, 4096, 14336, 6, false);
    CHECK(run<bf16>(NEW, outs1((float*)bo.p, 4096), (const float*)bx.p, bw.p, 1, 4096, 14336));
    CHECK(hipDeviceSynchronize());
    return 0;
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
  std::printf("validation: %d failures\n", failures);
  if (quick) return failures ? 1 : 0;

  std::printf("\n## timings (H100 medians, L2 flushed before each launch)\n");
  copy_rate();
  const std::vector<Path> pre = {NEW, T_A, T_B, T_C, T_D, OLD};
  const std::vector<Path> dec = {NEW, R_A, R_B, R_C, R_E, OLD};
  bench<bf16>("up 4096->14336", 14336, 4096, pre, dec);
  bench<bf16>("qkv 4096->6144", 6144, 4096, pre, dec);
  bench<bf16>("wo 4096->4096", 4096, 4096, pre, dec);
  bench<bf16>("gate+up 4096->28672", 28672, 4096, pre, dec);
  bench<bf16>("down 14336->4096", 4096, 14336, pre, dec);
  bench<bf16>("lm_head 4096->128256", 128256, 4096, {NEW, T_B, OLD}, {NEW, R_A, R_B, OLD});
  bench<f16>("f16 4096->4096", 4096, 4096, {NEW, OLD}, {NEW, OLD});
  bench<float>("f32 4096->4096", 4096, 4096, {NEW, OLD}, {NEW, OLD});
  return failures ? 1 : 0;
}
