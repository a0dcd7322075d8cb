#include "tiles.h"

#include <type_traits>

#include "mma.h"

namespace {
using namespace greta_hip;
using namespace greta_mma;

// Element storage of a weight type: f32 as its bits, f16 and bf16 as theirs.
template <typename W> struct Bits { using T = uint16_t; };
template <> struct Bits<float> { using T = uint32_t; };

// Threads walk the 16-byte units of the tile rows that hold [row0, row0 +
// rows), so each store is one whole unit; a thread finds its unit's tile and
// lane once, then each element's row and k. A unit whose elements are not
// all in the rows moved keeps the others (a read, then the write).
template <typename W, typename Value>
__global__ void tile_rows_kernel(uint4* tiled, int64_t row0, int64_t rows, int64_t K, int64_t units, Value value) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  const int64_t i = global_id();
  if (i >= units) return;
  using T = typename Bits<W>::T;
  constexpr int UE = Tiles<W>::UNIT_ELEMS, TU = Tiles<W>::TILE_UNITS;
  const int64_t S = (K + KBLOCK - 1) / KBLOCK;
  const int64_t t = i / TU + (row0 / TILE_I) * S;  // tile, counted from the weight's first
  const int64_t n0 = (t / S) * TILE_I, k0 = (t % S) * KBLOCK;
  const int first = static_cast<int>(i % TU) * UE;  // the unit's first element within the tile
  union {
    uint4 v;
    T e[UE];
  } u;
  bool all = true;
#pragma unroll
  for (int q = 0; q < UE; q++) {
    int row = 0, k = 0;
    tiled_coords<W>(first + q, row, k);
    all = all && n0 + row >= row0 && n0 + row < row0 + rows;
  }
  if (!all) u.v = tiled[t * TU + i % TU];
#pragma unroll
  for (int q = 0; q < UE; q++) {
    int row = 0, k = 0;
    tiled_coords<W>(first + q, row, k);
    const int64_t n = n0 + row, kk = k0 + k;
    if (n >= row0 && n < row0 + rows) u.e[q] = kk < K ? value(n - row0, kk) : T{0};
  }
  tiled[t * TU + i % TU] = u.v;
}

template <typename W>
struct FromRows {
  const typename Bits<W>::T* src;
  int64_t K;
  __device__ typename Bits<W>::T operator()(int64_t n, int64_t k) const { return src[n * K + k]; }
};

template <typename W>
struct Uniform {
  uint64_t seed;
  double scale, offset;
  int64_t K;
  __device__ typename Bits<W>::T operator()(int64_t n, int64_t k) const {
    const double u = greta::uniform_pm1(seed, static_cast<uint64_t>(n * K + k));
    // As fill_uniform: separate roundings, then to the dtype through f32.
    const float v = static_cast<float>(__dadd_rn(offset, __dmul_rn(scale, u)));
    if constexpr (sizeof(W) == 4) return __float_as_uint(v);
    else if constexpr (std::is_same_v<W, f16>) return greta::f32_to_f16(v);
    else return greta::f32_to_bf16(v);
  }
};

template <typename W, typename Value>
hipError_t launch_tile(void* tiled, int64_t row0, int64_t rows, int64_t K, Value value, hipStream_t stream) {
  const int64_t S = (K + KBLOCK - 1) / KBLOCK;
  const int64_t tile_rows = (row0 + rows + TILE_I - 1) / TILE_I - row0 / TILE_I;
  const int64_t units = tile_rows * S * Tiles<W>::TILE_UNITS;
  if (units == 0) return hipSuccess;
  if (elementwise_blocks(units) > 0x7fffffffu) return hipErrorInvalidValue;
  GRETA_LAUNCH((tile_rows_kernel<W, Value>), dim3(elementwise_blocks(units)), dim3(ELEMENTWISE_BLOCK), 0, stream,
               static_cast<uint4*>(tiled), row0, rows, K, units, value);
  return hipGetLastError();
}

template <typename W>
__global__ void untile_rows_kernel(typename Bits<W>::T* dst, const typename Bits<W>::T* tiled, int64_t row0, int64_t rows,
                                   int64_t K) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  const int64_t i = global_id();
  if (i >= rows * K) return;
  dst[i] = tiled[tiled_index<W>(row0 + i / K, i % K, K)];
}

template <typename F>
hipError_t by_type(int w_type, F f) {
  switch (w_type) {
    case W_F32: return f(float{});
    case W_F16: return f(f16{});
    case W_BF16: return f(bf16{});
    default: return hipErrorInvalidValue;
  }
}
}  // namespace

hipError_t greta_tile_rows(void* tiled, int w_type, const void* src, int64_t row0, int64_t rows, int64_t K,
                           hipStream_t stream) {
  return by_type(w_type, [&](auto w) {
    using W = decltype(w);
    return launch_tile<W>(tiled, row0, rows, K, FromRows<W>{static_cast<const typename Bits<W>::T*>(src), K}, stream);
  });
}

hipError_t greta_tile_fill_uniform(void* tiled, int w_type, int64_t row0, int64_t rows, int64_t K, uint64_t seed,
                                   double scale, double offset, hipStream_t stream) {
  return by_type(w_type, [&](auto w) {
    using W = decltype(w);
    return launch_tile<W>(tiled, row0, rows, K, Uniform<W>{seed, scale, offset, K}, stream);
  });
}

hipError_t greta_untile_rows(void* dst, const void* tiled, int w_type, int64_t row0, int64_t rows, int64_t K,
                             hipStream_t stream) {
  return by_type(w_type, [&](auto w) {
    using W = decltype(w);
    if (rows * K == 0) return hipSuccess;
    GRETA_LAUNCH(untile_rows_kernel<W>, dim3(elementwise_blocks(rows * K)), dim3(ELEMENTWISE_BLOCK), 0, stream,
                 static_cast<typename Bits<W>::T*>(dst), static_cast<const typename Bits<W>::T*>(tiled), row0, rows, K);
    return hipGetLastError();
  });
}
