#include "copy.h"

namespace {
using namespace greta_hip;

// One thread per 16 bytes where both ends and the size allow, else per byte.
template <typename T>
__global__ void copy_kernel(T* dst, const T* src, int64_t n) {
  greta_allow_next_launch();
  greta_await_prior_kernels();
  const int64_t i = global_id();
  if (i < n) dst[i] = src[i];
}

template <typename T>
hipError_t launch(void* dst, const void* src, size_t bytes, hipStream_t stream) {
  const int64_t n = static_cast<int64_t>(bytes / sizeof(T));
  GRETA_LAUNCH(copy_kernel<T>, dim3(elementwise_blocks(n)), dim3(ELEMENTWISE_BLOCK), 0, stream, static_cast<T*>(dst),
               static_cast<const T*>(src), n);
  return hipGetLastError();
}
}  // namespace

hipError_t greta_copy(void* dst, const void* src, size_t bytes, hipStream_t stream) {
  if (bytes == 0) return hipSuccess;
  if (bytes > GRETA_COPY_KERNEL_MAX) return hipMemcpyAsync(dst, src, bytes, hipMemcpyDeviceToDevice, stream);
  const uintptr_t all = reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src) | bytes;
  if (all % sizeof(uint4) == 0) return launch<uint4>(dst, src, bytes, stream);
  return launch<uint8_t>(dst, src, bytes, stream);
}
