// The matrix units, one tile type for both vendors, in the manner of
// llama.cpp's ggml-cuda/mma.cuh: kernels are written once against MmaAHalf/
// MmaB/MmaC and mma_k32, and the lane functions below say which elements a lane
// holds. Only the vendor switches here know the instruction:
//   NVIDIA  mma.sync.m16n8k16 bf16 -> fp32 (sm_80 and later): tile 16 x 8, warp 32
//   AMD     v_mfma_f32_16x16x16_bf16 (gfx90a, gfx940, gfx942): tile 16 x 16, wave 64
//
// Tile I (16 rows) holds weight rows, tile J (8 or 16 columns) tokens: a
// decode step's one token wastes 7 of 8 columns, not 15 of 16 rows.
//
// K order. A block of KBLOCK = 32 consecutive k is two instructions. Each lane
// loads, per row it holds, 8 consecutive k of that block (one 16-byte load of
// bf16) at lane_k(lane); elements 0-3 of every lane's 8 feed the first
// instruction and 4-7 the second. Which k meets which in one instruction is so
// fixed by the position in the block alone, the same for every tile shape and
// every M: the invariance the matmul rule rests on.
//
// Invariance of the instruction itself: the hardware computes each element of
// D from its own row of A, column of B and element of C, by the same circuit
// for every position, so a token's result never depends on what the other
// columns hold (checked bit for bit on the GPU: row r of an M-row call equals
// the row alone, where it sits in column 0 instead of r mod J).
//
// Rounding of one instruction: products of bf16 are exact in fp32; the sum of
// the 16 products and C is not documented by either vendor. Fasi, Higham,
// Mikaitis and Pranesh (2021) found NVIDIA's tensor cores align the addends to
// the largest and truncate, so we take |error| <= (16 + 1) 2^-23 max(|c|,
// |a_k b_k|), the bound hip/matmul.h builds on (its test: rel L2 vs fp64).
#pragma once

#include "common.h"
#include "matmul.h"

namespace greta_mma {

constexpr int TILE_I = 16;              // rows of A, C (weight rows)
constexpr int TILE_K = 16;              // k per instruction
constexpr int KBLOCK = 2 * TILE_K;      // k per lane load: two instructions
constexpr int LANE_K = 8;               // consecutive k a lane loads per row
constexpr int LANE_CHUNKS = KBLOCK / LANE_K;  // lanes that share a row in a block

#if defined(GRETA_VENDOR_AMD)
// MFMA 16x16x16 bf16 (the _1k form: 4 bf16 of A and of B per lane). Lane l
// holds A[l % 16][4 (l / 16) + 0..3], B[4 (l / 16) + 0..3][l % 16] and
// D[4 (l / 16) + e][l % 16], e = 0..3 (the CDNA3 ISA guide; AMD matrix
// instruction calculator, 16x16x16 bf16_1k). gfx90a and gfx940+ have it.
#if defined(__HIP_DEVICE_COMPILE__) && !(defined(__gfx90a__) || defined(__gfx940__) || defined(__gfx941__) || defined(__gfx942__))
#error "hip/mma.h: no MFMA bf16_1k on this target (gfx90a, gfx940, gfx941, gfx942 have it)"
#endif
constexpr int TILE_J = 16;
constexpr int A_ROWS = 1;               // rows of A a lane loads
constexpr int SHARED_PER_SM = 1 << 16;  // LDS of a CU (gfx90a, gfx942)
GRETA_HD constexpr int a_row(int lane, int) { return lane % TILE_I; }
__device__ __forceinline__ int b_col(int lane) { return lane % TILE_J; }
GRETA_HD constexpr int lane_k(int lane) { return LANE_K * (lane / TILE_J); }
__device__ __forceinline__ int c_row(int lane, int e) { return 4 * (lane / TILE_J) + e; }
__device__ __forceinline__ int c_col(int lane, int) { return lane % TILE_J; }
#else
// mma.sync m16n8k16 row.col (PTX ISA 9.7.13.4.8): lane l = 4 g + t holds
// A[g + 8 h][2 t + {0,1} + 8 j] in a{h + 2 j}, B[2 t + {0,1} + 8 j][g] in b{j},
// C[g + 8 h][2 t + {0,1}] in c{2 h + 0,1}.
constexpr int TILE_J = 8;
constexpr int A_ROWS = 2;
constexpr int SHARED_PER_SM = 228 * 1024;  // shared memory of an SM (sm_90; sm_80: 164 KB)
GRETA_HD constexpr int a_row(int lane, int r) { return lane / LANE_CHUNKS + TILE_J * r; }
__device__ __forceinline__ int b_col(int lane) { return lane / LANE_CHUNKS; }
GRETA_HD constexpr int lane_k(int lane) { return LANE_K * (lane % LANE_CHUNKS); }
__device__ __forceinline__ int c_row(int lane, int e) { return lane / LANE_CHUNKS + TILE_J * (e >> 1); }
__device__ __forceinline__ int c_col(int lane, int e) { return 2 * (lane % LANE_CHUNKS) + (e & 1); }
#endif
// What only the compiler checks on AMD: the wave is the tile's lane count.
// Every lane loads LANE_K of one token column per block, and A_ROWS rows of A.
static_assert(TILE_J * LANE_CHUNKS == GRETA_WAVE_SIZE, "hip/mma.h: the B tile must cover the wave exactly");
static_assert(TILE_I * LANE_CHUNKS == A_ROWS * GRETA_WAVE_SIZE, "hip/mma.h: the A tile must cover the wave exactly");
static_assert(TILE_I * TILE_J == 4 * GRETA_WAVE_SIZE, "hip/mma.h: every lane holds 4 elements of C");

// The lane and row slot that hold weight row `row` of a tile at k of a
// KBLOCK: the inverse of a_row and lane_k.
#if defined(GRETA_VENDOR_AMD)
GRETA_HD constexpr int a_lane(int row, int k) { return row + TILE_I * (k / LANE_K); }
GRETA_HD constexpr int a_slot(int) { return 0; }
#else
GRETA_HD constexpr int a_lane(int row, int k) { return LANE_CHUNKS * (row % TILE_J) + k / LANE_K; }
GRETA_HD constexpr int a_slot(int row) { return row / TILE_J; }
#endif

// ---- The weight layout of the matrix-unit path ("tiled"). ----
// A weight [N, K] is stored as tiles of TILE_I rows x KBLOCK k, zeros past N
// and K; tile (i, s) is the (i S + s)-th, S = ceil(K / KBLOCK), so a tile row
// is contiguous and a row view starting at a multiple of TILE_I is a tiled
// weight itself. Within a tile, each lane's A_ROWS x LANE_K elements are in
// the order it feeds them to the instructions: position
// ((h 2 + j) A_ROWS + r) 2 + p holds row a_row(lane, r), k = lane_k(lane) +
// 4 h + 2 j + p (half h, register j of the half, element p of the register),
// so every 32-bit word is one operand register and half h of a lane is words
// [h 2 A_ROWS, (h + 1) 2 A_ROWS). The lane's elements are cut into 16-byte
// units, unit u of lane l being the (u WAVE + l)-th of the tile: one load
// instruction of a wave reads 16 WAVE contiguous bytes (512 on NVIDIA, 1024
// on AMD) where a row-major weight gives it 64-byte pieces of 8 or 16 rows.
// Which values meet in an instruction is what it was; only addresses change.
static_assert(TILE_I == GRETA_TILE_ROWS && KBLOCK == GRETA_TILE_K, "hip/matmul.h sizes the tiles");
template <typename W>
struct Tiles {
  static constexpr int ELEMS = A_ROWS * LANE_K;                      // a lane's elements a tile
  static constexpr int UNIT_ELEMS = 16 / static_cast<int>(sizeof(W));  // elements of a 16-byte unit
  static constexpr int UNITS = ELEMS / UNIT_ELEMS;                   // units a lane
  static constexpr int TILE_UNITS = UNITS * GRETA_WAVE_SIZE;         // uint4 of a tile
  static_assert(TILE_UNITS * UNIT_ELEMS == TILE_I * KBLOCK, "a tile is its lanes' units");
};
// Element index of weight (n, k) in the tiled layout.
template <typename W>
GRETA_HD constexpr int64_t tiled_index(int64_t n, int64_t k, int64_t K) {
  const int64_t S = (K + KBLOCK - 1) / KBLOCK;
  const int row = static_cast<int>(n % TILE_I), kk = static_cast<int>(k % KBLOCK);
  const int lane = a_lane(row, kk), r = a_slot(row), q = kk % LANE_K;
  const int e = (((q >> 2) * 2 + ((q >> 1) & 1)) * A_ROWS + r) * 2 + (q & 1);
  const int64_t tile = (n / TILE_I) * S + k / KBLOCK;
  return tile * (TILE_I * KBLOCK) +
         (static_cast<int64_t>(e / Tiles<W>::UNIT_ELEMS) * GRETA_WAVE_SIZE + lane) * Tiles<W>::UNIT_ELEMS +
         e % Tiles<W>::UNIT_ELEMS;
}
// Its inverse within a tile: the row and k of element o (0 .. TILE_I KBLOCK - 1).
template <typename W>
GRETA_HD constexpr void tiled_coords(int o, int& row, int& k) {
  const int v = o / Tiles<W>::UNIT_ELEMS, lane = v % GRETA_WAVE_SIZE;
  const int e = (v / GRETA_WAVE_SIZE) * Tiles<W>::UNIT_ELEMS + o % Tiles<W>::UNIT_ELEMS;
  const int p = e & 1, r = (e >> 1) % A_ROWS, j = (e / (2 * A_ROWS)) & 1, h = e / (4 * A_ROWS);
  row = a_row(lane, r);
  k = lane_k(lane) + 4 * h + 2 * j + p;
}

// What only the compiler can check before a first run on the target: the
// layout, for this target's lane map (wave 32 or 64) and unit sizes, puts
// every (row, k) of a tile at one position of it and reads each back.
template <typename W>
constexpr bool tiled_layout_is_bijective() {
  for (int o = 0; o < TILE_I * KBLOCK; o++) {
    int row = -1, k = -1;
    tiled_coords<W>(o, row, k);
    if (row < 0 || row >= TILE_I || k < 0 || k >= KBLOCK || tiled_index<W>(row, k, KBLOCK) != o) return false;
  }
  return true;
}
static_assert(tiled_layout_is_bijective<uint16_t>() && tiled_layout_is_bijective<float>(),
              "hip/mma.h: the tiled weight layout must be a bijection of a tile");

struct MmaB {
  uint4 v;
};
struct MmaC {
  float v[4];
};

__device__ __forceinline__ MmaC mma_zero() { return MmaC{{0.f, 0.f, 0.f, 0.f}}; }

// One lane's A operand of one instruction (half H of a KBLOCK), words in the
// instruction's register order: slot j * A_ROWS + r holds row r's elements
// 4 H + 2 j + {0, 1} of the lane's chunk (NVIDIA a0..a3: row 0 and row 1
// interleaved; AMD: row 0's two words): the tiled layout's words in order.
struct MmaAHalf {
  uint32_t r[2 * A_ROWS];
};

// c += A B over half a KBLOCK, the instruction over elements 4H..4H+3 of
// every lane's chunk. A block is half 0 then half 1 (mma_k32); a kernel may
// issue the halves of many tiles' chains in between, which reorders nothing
// within any one chain.
template <int H>
__device__ __forceinline__ void mma_half(MmaC& c, const MmaAHalf& a, const MmaB& b) {
  static_assert(H == 0 || H == 1, "mma_half: a KBLOCK has two halves");
#if defined(GRETA_VENDOR_AMD)
  typedef short v4s __attribute__((ext_vector_type(4)));
  typedef unsigned v2u __attribute__((ext_vector_type(2)));
  typedef float v4f __attribute__((ext_vector_type(4)));
  static_assert(A_ROWS == 1, "MFMA 16x16x16: a lane holds one row of A");
  v4f acc = {c.v[0], c.v[1], c.v[2], c.v[3]};
  // Halfword i of the pair of words is operand element i (k = 4 (lane / 16) + i).
  const v2u av = {a.r[0], a.r[1]};
  const v2u bv = H == 0 ? v2u{b.v.x, b.v.y} : v2u{b.v.z, b.v.w};
  acc = __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(__builtin_bit_cast(v4s, av), __builtin_bit_cast(v4s, bv), acc, 0, 0, 0);
  c.v[0] = acc[0]; c.v[1] = acc[1]; c.v[2] = acc[2]; c.v[3] = acc[3];
#else
  static_assert(A_ROWS == 2, "mma.sync m16n8k16: a lane holds rows g and g + 8 of A");
  const uint32_t b0 = H == 0 ? b.v.x : b.v.z, b1 = H == 0 ? b.v.y : b.v.w;
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c.v[0]), "+f"(c.v[1]), "+f"(c.v[2]), "+f"(c.v[3])
      : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b0), "r"(b1));
#endif
}

// c += A B over one KBLOCK: the instruction over elements 0-3 of every lane's
// chunk, then the one over elements 4-7, each accumulating onto c.
__device__ __forceinline__ void mma_k32(MmaC& c, const MmaAHalf (&a)[2], const MmaB& b) {
  mma_half<0>(c, a[0], b);
  mma_half<1>(c, a[1], b);
}

// Two floats to a bf16 pair, round to nearest even; a in the low half.
__device__ __forceinline__ uint32_t pack_bf16(float a, float b) {
#if defined(GRETA_VENDOR_AMD)
  const uint32_t ua = __float_as_uint(a), ub = __float_as_uint(b);
  const uint32_t ra = (ua + 0x7fffu + ((ua >> 16) & 1u)) >> 16;
  const uint32_t rb = (ub + 0x7fffu + ((ub >> 16) & 1u)) & 0xffff0000u;
  return ra | rb;
#else
  uint32_t d;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(b), "f"(a));
  return d;
#endif
}
__device__ __forceinline__ float bf16_lo(uint32_t p) { return __uint_as_float(p << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t p) { return __uint_as_float(p & 0xffff0000u); }

// v = hi + mid + lo exactly: each term is v's remainder rounded to bf16 (8
// significant bits), the remainder after two terms has at most 24 - 2 * 8 bits
// and so is the third term itself (barring underflow below 2^-126 |v| scale).
// Each subtraction is exact (the remainder of a rounding is representable).
__device__ __forceinline__ void split3(const float (&v)[LANE_K], uint4& hi, uint4& mid, uint4& lo) {
  uint32_t h[4], m[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const float a = v[2 * i], b = v[2 * i + 1];
    h[i] = pack_bf16(a, b);
    const float ra = a - bf16_lo(h[i]), rb = b - bf16_hi(h[i]);
    m[i] = pack_bf16(ra, rb);
    l[i] = pack_bf16(ra - bf16_lo(m[i]), rb - bf16_hi(m[i]));
  }
  hi = make_uint4(h[0], h[1], h[2], h[3]);
  mid = make_uint4(m[0], m[1], m[2], m[3]);
  lo = make_uint4(l[0], l[1], l[2], l[3]);
}

// v = hi + lo exactly for v of 11 significant bits (f16).
__device__ __forceinline__ void split2(const float (&v)[LANE_K], uint4& hi, uint4& lo) {
  uint32_t h[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const float a = v[2 * i], b = v[2 * i + 1];
    h[i] = pack_bf16(a, b);
    l[i] = pack_bf16(a - bf16_lo(h[i]), b - bf16_hi(h[i]));
  }
  hi = make_uint4(h[0], h[1], h[2], h[3]);
  lo = make_uint4(l[0], l[1], l[2], l[3]);
}

// 16-byte copies global -> shared that may run ahead of the code (cp.async on
// NVIDIA); !valid writes zeros. On AMD a plain copy: the block barriers that
// order the asynchronous form order it too.
__device__ __forceinline__ void copy16_async(void* smem, const void* gmem, bool valid) {
#if defined(GRETA_VENDOR_AMD)
  *static_cast<uint4*>(smem) = valid ? *static_cast<const uint4*>(gmem) : make_uint4(0, 0, 0, 0);
#else
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(valid ? 16 : 0) : "memory");
#endif
}
__device__ __forceinline__ void copy_commit() {
#if !defined(GRETA_VENDOR_AMD)
  asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
// Waits until at most `pending` committed groups are still in flight.
template <int pending>
__device__ __forceinline__ void copy_wait() {
#if !defined(GRETA_VENDOR_AMD)
  asm volatile("cp.async.wait_group %0;" ::"n"(pending) : "memory");
#endif
}

}  // namespace greta_mma
