#include "embedding.h"
#include "mma.h"

namespace {
using namespace greta_hip;

template <typename W>
__global__ void embedding_kernel(float* out, const W* table, bool tiled, const int32_t* ids, int64_t M, int64_t D) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  const int64_t i = global_id();
  if (i >= M * D) return;
  const int64_t m = i / D, d = i % D, n = ids[m];
  out[i] = to_f32(table[tiled ? greta_mma::tiled_index<W>(n, d, D) : n * D + d]);
}

template <typename W>
hipError_t embedding(float* out, const void* table, bool tiled, const int32_t* ids, int64_t M, int64_t D,
                     hipStream_t stream) {
  GRETA_LAUNCH(embedding_kernel<W>, dim3(elementwise_blocks(M * D)), dim3(ELEMENTWISE_BLOCK), 0, stream, out,
               static_cast<const W*>(table), tiled, ids, M, D);
  return hipGetLastError();
}
}  // namespace

hipError_t greta_embedding(float* out, const void* table, int w_type, bool tiled, const int32_t* ids, int64_t M,
                           int64_t D, hipStream_t stream) {
  switch (w_type) {
    case W_F32: return embedding<float>(out, table, tiled, ids, M, D, stream);
    case W_F16: return embedding<f16>(out, table, tiled, ids, M, D, stream);
    case W_BF16: return embedding<bf16>(out, table, tiled, ids, M, D, stream);
    default: return hipErrorInvalidValue;
  }
}
