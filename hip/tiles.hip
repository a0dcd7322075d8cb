#include "tiles.h"

#include <type_traits>

#include "mma.h"

namespace {
using namespace greta_hip;
using namespace greta_mma;

// Element storage of a weight type: f32 as its bits, f16 and bf16 as theirs.
template <typename W> struct Bits { using T = uint16_t; };
template <> struct Bits<float> { using T = uint32_t; };

// Threads walk the tiled positions of the tile rows that hold [row0, row0 +
// rows), so stores are contiguous; each finds its element's row and k.
template <typename W, typename Value>
__global__ void tile_rows_kernel(typename Bits<W>::T* tiled, int64_t row0, int64_t rows, int64_t K, int64_t positions,
                                 Value value) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  const int64_t i = global_id();
  if (i >= positions) return;
  constexpr int TILE = TILE_I * KBLOCK;
  const int64_t S = (K + KBLOCK - 1) / KBLOCK;
  const int64_t t = i / TILE + (row0 / TILE_I) * S;  // tile, counted from the weight's first
  int row, k;
  tiled_coords<W>(static_cast<int>(i % TILE), row, k);
  const int64_t n = (t / S) * TILE_I + row, kk = (t % S) * KBLOCK + k;
  if (n < row0 || n >= row0 + rows) return;
  tiled[t * TILE + i % TILE] = kk < K ? value(n - row0, kk) : typename Bits<W>::T{0};
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
  const int64_t positions = tile_rows * S * TILE_I * KBLOCK;
  if (positions == 0) return hipSuccess;
  if (elementwise_blocks(positions) > 0x7fffffffu) return hipErrorInvalidValue;
  GRETA_LAUNCH((tile_rows_kernel<W, Value>), dim3(elementwise_blocks(positions)), dim3(ELEMENTWISE_BLOCK), 0, stream,
               static_cast<typename Bits<W>::T*>(tiled), row0, rows, K, positions, value);
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
