// sm_90a (Hopper) instructions for hip/matmul.hip's prefill GEMM and decode
// GEMV: wgmma chains, their shared-memory descriptors, mbarriers, named
// barriers and bulk copies. NVIDIA only: included where GRETA_VENDOR_NVIDIA,
// and each function traps or does nothing when the device pass is not sm_90a
// (the host sends no work there: greta_sm90a()).
//
// One KBLOCK's chain is the six k16 instructions of hip/matmul.h's chain for
// bf16 weights (x terms lo, mid, hi, each as half 0 then half 1), the first
// starting from zero, in one asm statement so no instruction of the
// compiler's lands between them (a read of an accumulator while a wgmma group
// is in flight makes ptxas serialize every wgmma). A wgmma k16 gives
// mma.sync m16n8k16's bits for every output (dev/wgmma_bits.cu: a chain of
// six, 0 of 16.8M outputs differ on the H100), so prefill on wgmma keeps
// decode's chain bit for bit.
#pragma once

#include "mma.h"

namespace greta_mma {

// Four accumulator operands of an asm statement: d[4 i] .. d[4 i + 3].
#define GRETA_WG_D4(i) "+f"(d[4 * (i)]), "+f"(d[4 * (i) + 1]), "+f"(d[4 * (i) + 2]), "+f"(d[4 * (i) + 3])

// The inputs of an f32-weight chain's asm statement (wgmma_chain_f32_*): the
// 24 A registers a[w][h].r[i] (weight term w, half h), then the 6 B
// descriptors desc[x][h].
#define GRETA_WG_F32_IN(a, desc)                                                                                     \
  "r"(a[0][0].r[0]), "r"(a[0][0].r[1]), "r"(a[0][0].r[2]), "r"(a[0][0].r[3]), "r"(a[0][1].r[0]), "r"(a[0][1].r[1]),   \
      "r"(a[0][1].r[2]), "r"(a[0][1].r[3]), "r"(a[1][0].r[0]), "r"(a[1][0].r[1]), "r"(a[1][0].r[2]), "r"(a[1][0].r[3]), \
      "r"(a[1][1].r[0]), "r"(a[1][1].r[1]), "r"(a[1][1].r[2]), "r"(a[1][1].r[3]), "r"(a[2][0].r[0]), "r"(a[2][0].r[1]), \
      "r"(a[2][0].r[2]), "r"(a[2][0].r[3]), "r"(a[2][1].r[0]), "r"(a[2][1].r[1]), "r"(a[2][1].r[2]), "r"(a[2][1].r[3]), \
      "l"(desc[0][0]), "l"(desc[0][1]), "l"(desc[1][0]), "l"(desc[1][1]), "l"(desc[2][0]), "l"(desc[2][1])

// A descriptor's fields (PTX ISA, matrix descriptor): start address, leading
// and stride byte offsets, each in 16-byte units; the stride starts at bit 32.
constexpr int DESC_SBO_BIT = 32;

// A warpgroup: 4 warps, whose wgmma takes 64 weight rows (16 a warp).
constexpr int WARPGROUP_WARPS = 4;
constexpr int WARPGROUP = WARPGROUP_WARPS * GRETA_WAVE_SIZE;
constexpr int WGMMA_ROWS = WARPGROUP_WARPS * TILE_I;

// A K-major B operand in shared memory without swizzle: core matrices of 8
// tokens x 16 bytes, lbo bytes apart along k, sbo bytes apart along tokens.
__device__ __forceinline__ uint64_t wgmma_desc(const void* smem, uint32_t lbo, uint32_t sbo) {
  const uint64_t a = static_cast<uint64_t>(__cvta_generic_to_shared(smem));
  return ((a & 0x3ffff) >> 4) | (static_cast<uint64_t>((lbo & 0x3ffff) >> 4) << 16) |
         (static_cast<uint64_t>((sbo & 0x3ffff) >> 4) << DESC_SBO_BIT);
}

// Pins registers in program order around the asynchronous wgmma (CUTLASS's
// warpgroup_fence_operand): a read of c placed after the wait stays after it.
template <int R>
__device__ __forceinline__ void fence_regs(float (&r)[R]) {
#pragma unroll
  for (int i = 0; i < R; i++) asm volatile("" : "+f"(r[i])::"memory");
}

// d = the chain over one KBLOCK: A, a warpgroup's 64 weight rows, from
// registers (each warp its 16 rows as mma.sync's A fragment, half 0 and 1);
// B, n tokens, through desc[2 i + h] (term x_term(i), half h).
__device__ __forceinline__ void wgmma_chain_56(float (&d)[28], const MmaAHalf (&a)[2], const uint64_t (&desc)[6]) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "{\n.reg .pred pf, pt;\nsetp.ne.b32 pf, 0, 0;\nsetp.eq.b32 pt, 0, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n56k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27}, {%28, %29, %30, %31}, %36, pf, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n56k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27}, {%32, %33, %34, %35}, %37, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n56k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27}, {%28, %29, %30, %31}, %38, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n56k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27}, {%32, %33, %34, %35}, %39, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n56k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27}, {%28, %29, %30, %31}, %40, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n56k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27}, {%32, %33, %34, %35}, %41, pt, 1, 1, 0;\n"
      "}\n"
      : GRETA_WG_D4(0), GRETA_WG_D4(1), GRETA_WG_D4(2), GRETA_WG_D4(3), GRETA_WG_D4(4), GRETA_WG_D4(5), GRETA_WG_D4(6)
      : "r"(a[0].r[0]), "r"(a[0].r[1]), "r"(a[0].r[2]), "r"(a[0].r[3]), "r"(a[1].r[0]), "r"(a[1].r[1]), "r"(a[1].r[2]),
        "r"(a[1].r[3]), "l"(desc[0]), "l"(desc[1]), "l"(desc[2]), "l"(desc[3]), "l"(desc[4]), "l"(desc[5]));
#else
  __trap();
#endif
}

__device__ __forceinline__ void wgmma_chain_104(float (&d)[52], const MmaAHalf (&a)[2], const uint64_t (&desc)[6]) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "{\n.reg .pred pf, pt;\nsetp.ne.b32 pf, 0, 0;\nsetp.eq.b32 pt, 0, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n104k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51}, {%52, %53, %54, %55}, %60, pf, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n104k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51}, {%56, %57, %58, %59}, %61, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n104k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51}, {%52, %53, %54, %55}, %62, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n104k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51}, {%56, %57, %58, %59}, %63, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n104k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51}, {%52, %53, %54, %55}, %64, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n104k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51}, {%56, %57, %58, %59}, %65, pt, 1, 1, 0;\n"
      "}\n"
      : GRETA_WG_D4(0), GRETA_WG_D4(1), GRETA_WG_D4(2), GRETA_WG_D4(3), GRETA_WG_D4(4), GRETA_WG_D4(5), GRETA_WG_D4(6),
        GRETA_WG_D4(7), GRETA_WG_D4(8), GRETA_WG_D4(9), GRETA_WG_D4(10), GRETA_WG_D4(11), GRETA_WG_D4(12)
      : "r"(a[0].r[0]), "r"(a[0].r[1]), "r"(a[0].r[2]), "r"(a[0].r[3]), "r"(a[1].r[0]), "r"(a[1].r[1]), "r"(a[1].r[2]),
        "r"(a[1].r[3]), "l"(desc[0]), "l"(desc[1]), "l"(desc[2]), "l"(desc[3]), "l"(desc[4]), "l"(desc[5]));
#else
  __trap();
#endif
}

// d = one KBLOCK of the chain with f32 weights (Chain<float>: six term
// products, twelve k16 instructions, the first from zero) for 32 tokens: A
// terms a[w][h] (weight term w, half h) from registers, B term x half h
// through desc[x][h]. hip/attention_chain.hip's prefill: keys or V dims as
// the weight rows, query or exp-score columns as the tokens.
__device__ __forceinline__ void wgmma_chain_f32_32(float (&d)[16], const MmaAHalf (&a)[3][2], const uint64_t (&desc)[3][2]) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "{\n.reg .pred pf, pt;\nsetp.ne.b32 pf, 0, 0;\nsetp.eq.b32 pt, 0, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%16, %17, %18, %19}, %44, pf, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%20, %21, %22, %23}, %45, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%24, %25, %26, %27}, %42, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%28, %29, %30, %31}, %43, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%32, %33, %34, %35}, %40, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%36, %37, %38, %39}, %41, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%16, %17, %18, %19}, %42, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%20, %21, %22, %23}, %43, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%24, %25, %26, %27}, %40, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%28, %29, %30, %31}, %41, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%16, %17, %18, %19}, %40, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%20, %21, %22, %23}, %41, pt, 1, 1, 0;\n"
      "}\n"
      : GRETA_WG_D4(0), GRETA_WG_D4(1), GRETA_WG_D4(2), GRETA_WG_D4(3)
      : GRETA_WG_F32_IN(a, desc));
#else
  __trap();
#endif
}

// wgmma_chain_f32_32 for 16 tokens.
__device__ __forceinline__ void wgmma_chain_f32_16(float (&d)[8], const MmaAHalf (&a)[3][2], const uint64_t (&desc)[3][2]) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "{\n.reg .pred pf, pt;\nsetp.ne.b32 pf, 0, 0;\nsetp.eq.b32 pt, 0, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, {%8, %9, %10, %11}, %36, pf, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, {%12, %13, %14, %15}, %37, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, {%16, %17, %18, %19}, %34, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, {%20, %21, %22, %23}, %35, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, {%24, %25, %26, %27}, %32, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, {%28, %29, %30, %31}, %33, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, {%8, %9, %10, %11}, %34, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, {%12, %13, %14, %15}, %35, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, {%16, %17, %18, %19}, %32, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, {%20, %21, %22, %23}, %33, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, {%8, %9, %10, %11}, %32, pt, 1, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, {%12, %13, %14, %15}, %33, pt, 1, 1, 0;\n"
      "}\n"
      : GRETA_WG_D4(0), GRETA_WG_D4(1)
      : GRETA_WG_F32_IN(a, desc));
#else
  __trap();
#endif
}

// This thread's shared-memory writes, visible to wgmma's reads of B (the async proxy).
__device__ __forceinline__ void fence_async_smem() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}

__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
#endif
}
// Until at most N committed groups are still in flight.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
#endif
}

// A barrier of the block's first THREADS threads only (named barrier ID; 0 is __syncthreads'),
// for consumer warps while a producer warp runs on.
template <int ID, int THREADS>
__device__ __forceinline__ void named_barrier() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("bar.sync %0, %1;" ::"n"(ID), "n"(THREADS) : "memory");
#endif
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// mbarriers (shared memory, 8 bytes each) and the bulk copies that complete on them.
__device__ __forceinline__ void mbar_init(uint64_t* b, uint32_t count) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(b)), "r"(count) : "memory");
#endif
}
// The inits, visible to the async proxy (bulk copies) before any use.
__device__ __forceinline__ void mbar_init_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}
// One arrival that also expects `bytes` of copies to complete on b.
__device__ __forceinline__ void mbar_expect_tx(uint64_t* b, uint32_t bytes) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(b)), "r"(bytes) : "memory");
#endif
}
// A consumer releases a stage with this only once what it read from the stage
// has been used (a product made, a wgmma waited for): after loads merely
// issued, the copy engine's next fill overwrote them (measured: decode GEMV
// outputs differed at 6 stages).
__device__ __forceinline__ void mbar_arrive(uint64_t* b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(b)) : "memory");
#endif
}
// Until the phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* b, uint32_t parity) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  uint32_t done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_addr(b)), "r"(parity)
        : "memory");
  } while (!done);
#endif
}
// bytes (a multiple of 16, both addresses 16-byte aligned) from global to
// shared memory by the copy engine, counted on bar when they land.
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(smem_addr(dst)),
               "l"(src), "r"(bytes), "r"(smem_addr(bar))
               : "memory");
#else
  __trap();
#endif
}

}  // namespace greta_mma
