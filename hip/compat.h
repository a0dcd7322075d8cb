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
// Orders shared-memory accesses among the lanes of one wave.
#define GRETA_SYNC_WAVE()                                   \
  do {                                                      \
    __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront");  \
    __builtin_amdgcn_wave_barrier();                        \
    __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "wavefront");  \
  } while (0)

#elif defined(__CUDACC__)
#include <cuda_runtime.h>
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

#else
#error "hip/compat.h: compile with hipcc (ROCm) or nvcc (CUDA)"
#endif
