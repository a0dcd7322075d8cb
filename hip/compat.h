// The only file that knows the GPU vendor. Kernels in hip/ are written in HIP
// C++; on ROCm this header is HIP itself, and on NVIDIA without ROCm it maps
// the HIP names the kernels use onto CUDA (HIP's own NVIDIA headers do not
// build with CUDA 13). Wave size comes from the target, never a literal.
#pragma once

#if defined(__HIP_PLATFORM_AMD__) || (defined(__HIPCC__) && !defined(__CUDACC__))
#include <hip/hip_runtime.h>
#define GRETA_VENDOR "amd"
#define GRETA_VENDOR_AMD 1
// Wave size. The device pass takes it from the target (64 on CDNA; 32 on
// RDNA unless built with -mwavefrontsize64). The host pass has no target (clang
// defines the target macros there as 64 whatever the targets are), yet sizes
// launches with it: it uses GRETA_AMD_WAVE_SIZE, the wave size of this build's
// targets (64: CDNA, MI300X's gfx942 included), and every device pass checks
// that its target agrees, so a wave-32 target fails to compile instead of
// running kernels on blocks of the wrong shape. Build wave-32 targets alone,
// with -DGRETA_AMD_WAVE_SIZE=32.
#ifndef GRETA_AMD_WAVE_SIZE
#define GRETA_AMD_WAVE_SIZE 64
#endif
#if defined(__HIP_DEVICE_COMPILE__)
#if defined(__AMDGCN_WAVEFRONT_SIZE__)
#define GRETA_WAVE_SIZE __AMDGCN_WAVEFRONT_SIZE__
#elif defined(__AMDGCN_WAVEFRONT_SIZE)
#define GRETA_WAVE_SIZE __AMDGCN_WAVEFRONT_SIZE
#else
#error "hip/compat.h: the compiler does not say the target's wave size (__AMDGCN_WAVEFRONT_SIZE__)"
#endif
#if GRETA_WAVE_SIZE != GRETA_AMD_WAVE_SIZE
#error "hip/compat.h: this target's wave size differs from GRETA_AMD_WAVE_SIZE, which sizes the launches; build wave-32 targets alone with -DGRETA_AMD_WAVE_SIZE=32"
#endif
#else
#define GRETA_WAVE_SIZE GRETA_AMD_WAVE_SIZE
#endif
#define GRETA_SHFL_XOR(v, mask) __shfl_xor((v), (mask))
#define GRETA_SHFL(v, src_lane) __shfl((v), (src_lane))
// __launch_bounds__ asking for `blocks` resident blocks per multiprocessor
// (a register cap). HIP's second argument means waves per SIMD instead, and
// LDS may make any such target unreachable, so on AMD only the block size.
#define GRETA_LAUNCH_BOUNDS(threads, blocks) __launch_bounds__(threads)
// No programmatic dependent launch on AMD: a kernel starts when the one
// before it in the stream has finished, so the two calls below have nothing to do.
#define GRETA_LAUNCH(kernel, grid, block, shmem, stream, ...) \
  hipLaunchKernelGGL(kernel, grid, block, shmem, stream, __VA_ARGS__)
__device__ __forceinline__ void greta_allow_next_launch() {}
__device__ __forceinline__ void greta_await_prior_kernels() {}
// Plain loads: kernels start after the one ahead has finished.
template <typename T>
__device__ __forceinline__ T greta_load(const T* p) { return *p; }
// Orders shared-memory accesses among the lanes of one wave.
#define GRETA_SYNC_WAVE()                                   \
  do {                                                      \
    __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront");  \
    __builtin_amdgcn_wave_barrier();                        \
    __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "wavefront");  \
  } while (0)

#elif defined(__CUDACC__)
#include <cuda_runtime.h>

#include <cstdlib>
#define GRETA_VENDOR "nvidia"
#define GRETA_VENDOR_NVIDIA 1
// Every NVIDIA GPU has warps of 32 lanes (warpSize is not a constant expression).
#define GRETA_WAVE_SIZE 32
#define GRETA_SHFL_XOR(v, mask) __shfl_xor_sync(0xffffffffu, (v), (mask))
#define GRETA_SHFL(v, src_lane) __shfl_sync(0xffffffffu, (v), (src_lane))
#define GRETA_SYNC_WAVE() __syncwarp()
#define GRETA_LAUNCH_BOUNDS(threads, blocks) __launch_bounds__(threads, blocks)

using hipError_t = cudaError_t;
using hipStream_t = cudaStream_t;
using hipDeviceProp_t = cudaDeviceProp;
using hipEvent_t = cudaEvent_t;
using hipMemcpyKind = cudaMemcpyKind;
using hipGraph_t = cudaGraph_t;
using hipGraphExec_t = cudaGraphExec_t;
using hipGraphNode_t = cudaGraphNode_t;
#define hipSuccess cudaSuccess
#define hipErrorInvalidValue cudaErrorInvalidValue
#define hipErrorOutOfMemory cudaErrorMemoryAllocation
#define hipGetErrorName cudaGetErrorName
#define hipGetErrorString cudaGetErrorString
#define hipGetLastError cudaGetLastError
#define hipPeekAtLastError cudaPeekAtLastError
#define hipMalloc cudaMalloc
#define hipFree cudaFree
#define hipMemcpy cudaMemcpy
#define hipMemcpyAsync cudaMemcpyAsync
#define hipMemsetAsync cudaMemsetAsync
#define hipMemset cudaMemset
#define hipMemcpyHostToDevice cudaMemcpyHostToDevice
#define hipMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define hipMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define hipMemGetInfo cudaMemGetInfo
#define hipHostMalloc cudaHostAlloc
#define hipHostMallocDefault cudaHostAllocDefault
#define hipHostFree cudaFreeHost
#define hipDeviceSynchronize cudaDeviceSynchronize
#define hipStreamSynchronize cudaStreamSynchronize
#define hipGetDeviceCount cudaGetDeviceCount
#define hipGetDeviceProperties cudaGetDeviceProperties
#define hipSetDevice cudaSetDevice
#define hipStreamCreate cudaStreamCreate
#define hipStreamDestroy cudaStreamDestroy
#define hipEventCreateWithFlags cudaEventCreateWithFlags
#define hipEventDisableTiming cudaEventDisableTiming
#define hipEventRecord cudaEventRecord
#define hipEventSynchronize cudaEventSynchronize
#define hipEventDestroy cudaEventDestroy
#define hipStreamBeginCapture cudaStreamBeginCapture
#define hipStreamEndCapture cudaStreamEndCapture
#define hipStreamCaptureModeRelaxed cudaStreamCaptureModeRelaxed
#define hipGraphInstantiateWithFlags cudaGraphInstantiateWithFlags
#define hipGraphLaunch cudaGraphLaunch
#define hipGraphGetNodes cudaGraphGetNodes
#define hipGraphExecDestroy cudaGraphExecDestroy
#define hipGraphDestroy cudaGraphDestroy
#define hipGetDevice cudaGetDevice
#define hipDeviceGetAttribute cudaDeviceGetAttribute
#define hipDeviceAttributeMultiprocessorCount cudaDevAttrMultiProcessorCount
#define hipFuncSetAttribute cudaFuncSetAttribute
#define hipFuncAttributeMaxDynamicSharedMemorySize cudaFuncAttributeMaxDynamicSharedMemorySize
#define hipLaunchKernelGGL(kernel, grid, block, shmem, stream, ...) \
  kernel<<<(grid), (block), (shmem), (stream)>>>(__VA_ARGS__)

// Programmatic dependent launch (sm_90): a kernel issued with GRETA_LAUNCH
// may be scheduled before the kernel ahead of it in the stream has finished,
// once every block of that kernel has called greta_allow_next_launch() (or
// exited), so its blocks are resident and waiting instead of paying the
// launch after it. Every kernel calls greta_await_prior_kernels() before it
// reads or writes anything an earlier kernel may touch: that waits for the
// kernel ahead to complete with its writes visible, and that kernel waited
// for its own, so the stream's order holds transitively. Before the wait a
// kernel may only read weights, which only uploads (synchronous) and
// fill_uniform (the backend synchronises after it) write, and the call's
// positions and RoPE frequencies, which reach the device by copies that no
// kernel overlaps.
// Two rules follow, and test/kernel-launch.test.ts checks both:
//  - every kernel waits;
//  - only weights are declared `const W* __restrict__`: the compiler reads
//    such a pointer through the non-coherent read-only cache, which the wait
//    does not bring up to date, so activations read that way can be stale
//    lines of an earlier kernel's output once kernels overlap (measured on the
//    H100: graph replays stopped being bit-identical until the rows kernel's
//    x lost its __restrict__).
// greta_load(p) reads an activation from L2, past the multiprocessor's
// caches: the decode step's hot loads (the projections' x, the norms' rows,
// attention's q, K and V), as fast as the read-only path and never stale.
// greta_allow_next_launch() only schedules: the decode step's short kernels
// call it first, so the projection after them loads its first weights while
// they run; the decode projections call it once their weights are read, so
// the kernel after them starts under their last sums and stores (8B decode
// step on the H100, with RoPE's angles computed before its wait), but for
// bulk1, which calls it once its first weight copies are requested
// (hip/matmul.hip says why). The
// prefill kernel does not: a next kernel resident early takes the
// multiprocessors' room unevenly, and a grid of about one wave runs at the
// pace of its fullest one.
// GRETA_PDL=0 in the environment launches every kernel plainly, after the
// one ahead has finished (to rule this out when hunting a race).
inline bool greta_pdl() {
  static const bool on = [] {
    const char* v = std::getenv("GRETA_PDL");
    return !(v && v[0] == '0' && v[1] == 0);
  }();
  return on;
}
template <typename... Params, typename... Args>
inline cudaError_t greta_launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shmem, cudaStream_t stream,
                                Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shmem;
  config.stream = stream;
  config.attrs = attr;
  config.numAttrs = greta_pdl() ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, static_cast<Args&&>(args)...);
}
#define GRETA_LAUNCH(kernel, grid, block, shmem, stream, ...) \
  (void)greta_launch(kernel, dim3(grid), dim3(block), (shmem), (stream), __VA_ARGS__)
__device__ __forceinline__ void greta_allow_next_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}
__device__ __forceinline__ void greta_await_prior_kernels() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
// ld.global.cg: cached in L2 only, which every kernel's writes reach.
template <typename T>
__device__ __forceinline__ T greta_load(const T* p) { return __ldcg(p); }

#else
#error "hip/compat.h: compile with hipcc (ROCm) or nvcc (CUDA)"
#endif
