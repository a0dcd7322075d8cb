// The fp32-accurate chain on the matrix units that hip/matmul.h's rule
// states, as building blocks: a weight tile split into exact bf16 terms
// (weight_terms), activations likewise (act_terms), and the order of the term
// products (Chain). hip/matmul.hip's GEMMs and hip/attention_chain.hip's
// attention both run it, so both inherit its bits and its error bound.
#pragma once

#include "common.h"
#include "mma.h"

namespace greta_mma {
using greta_hip::bf16;
using greta_hip::f16;
using greta_hip::to_f32;

// A weight of type W as a sum of bf16 terms, each exact: bf16 is itself, f16
// (11 significant bits) is hi + lo, f32 is hi + mid + lo.
template <typename W> struct Terms;
template <> struct Terms<bf16> { static constexpr int N = 1; };
template <> struct Terms<f16> { static constexpr int N = 2; };
template <> struct Terms<float> { static constexpr int N = 3; };

// One lane's units of one weight tile, as loaded (the tiled layout, hip/mma.h).
template <typename W>
struct Raw {
  uint4 u[Tiles<W>::UNITS];
};

// Its weights as Terms<W>::N bf16 terms, each as the two halves' operands.
// The lane's elements come in register order, LANE_K (four words) a group;
// the splits are elementwise, so each word of a term sits where its weights did.
template <typename W>
__device__ __forceinline__ void weight_terms(const Raw<W>& raw, MmaAHalf (&a)[Terms<W>::N][2]) {
  constexpr int NT = Terms<W>::N;
  uint4 t[NT][A_ROWS];
#pragma unroll
  for (int g = 0; g < A_ROWS; g++) {
    if constexpr (NT == 1) {
      t[0][g] = raw.u[g];
    } else if constexpr (NT == 2) {
      const uint32_t u[4] = {raw.u[g].x, raw.u[g].y, raw.u[g].z, raw.u[g].w};
      float f[LANE_K];
#pragma unroll
      for (int i = 0; i < 4; i++) {
        f[2 * i] = to_f32(f16{static_cast<uint16_t>(u[i] & 0xffffu)});
        f[2 * i + 1] = to_f32(f16{static_cast<uint16_t>(u[i] >> 16)});
      }
      split2(f, t[0][g], t[1][g]);
    } else {
      const uint4 u0 = raw.u[2 * g], u1 = raw.u[2 * g + 1];
      const float f[LANE_K] = {__uint_as_float(u0.x), __uint_as_float(u0.y), __uint_as_float(u0.z), __uint_as_float(u0.w),
                               __uint_as_float(u1.x), __uint_as_float(u1.y), __uint_as_float(u1.z), __uint_as_float(u1.w)};
      split3(f, t[0][g], t[1][g], t[2][g]);
    }
  }
#pragma unroll
  for (int j = 0; j < NT; j++)
#pragma unroll
    for (int i = 0; i < 4 * A_ROWS; i++) {
      const uint4 q = t[j][i / 4];
      const uint32_t word = i % 4 == 0 ? q.x : i % 4 == 1 ? q.y : i % 4 == 2 ? q.z : q.w;
      a[j][i / (2 * A_ROWS)].r[i % (2 * A_ROWS)] = word;
    }
}

// The activations' LANE_K floats (two uint4) as hi, mid, lo.
__device__ __forceinline__ void act_terms(uint4 u0, uint4 u1, MmaB (&b)[3]) {
  const float f[LANE_K] = {__uint_as_float(u0.x), __uint_as_float(u0.y), __uint_as_float(u0.z), __uint_as_float(u0.w),
                           __uint_as_float(u1.x), __uint_as_float(u1.y), __uint_as_float(u1.z), __uint_as_float(u1.w)};
  split3(f, b[0].v, b[1].v, b[2].v);
}

// One KBLOCK's contribution c_s: the products of activation term i (0 hi,
// 1 mid, 2 lo) and weight term j with i + j <= 2, smallest first, chained from
// zero in the matrix unit. Dropped: i + j >= 3, each below 2^-26 |x w| (see
// matmul.h). Both kernels run this table; the prefill kernel interleaves the
// chains of its tiles, which reorders nothing within any one chain.
template <typename W> struct Chain;
template <> struct Chain<bf16> {  // x terms 2 1 0, weight term 0
  static constexpr int STEPS = 3;
  __device__ static constexpr int x_term(int i) { return 2 - i; }
  __device__ static constexpr int w_term(int) { return 0; }
};
template <> struct Chain<f16> {  // (x, w): (2,0) (1,1) (1,0) (0,1) (0,0)
  static constexpr int STEPS = 5;
  __device__ static constexpr int x_term(int i) { return i == 0 ? 2 : i <= 2 ? 1 : 0; }
  __device__ static constexpr int w_term(int i) { return i == 1 || i == 3 ? 1 : 0; }
};
template <> struct Chain<float> {  // (x, w): (2,0) (1,1) (0,2) (1,0) (0,1) (0,0)
  static constexpr int STEPS = 6;
  __device__ static constexpr int x_term(int i) { return i == 0 ? 2 : i == 1 || i == 3 ? 1 : 0; }
  __device__ static constexpr int w_term(int i) { return i == 2 ? 2 : i == 1 || i == 4 ? 1 : 0; }
};

}  // namespace greta_mma
