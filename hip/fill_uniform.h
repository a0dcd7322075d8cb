// t[i] = offset + scale * u(seed, i), u in [-1, 1) from the counter hash of
// backend.h: the same bits as the CPU backend, so both run identical weights.
// dtype as in native/tensor.h: 0 f32, 2 f16, 3 bf16, 4 i32.
#pragma once

#include "common.h"

hipError_t greta_fill_uniform(void* t, int dtype, int64_t n, uint64_t seed, double scale, double offset,
                              hipStream_t stream);
