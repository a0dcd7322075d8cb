// out = silu(gate) * up. One thread per element.
#pragma once

#include "common.h"

hipError_t greta_silu_mul(float* out, const float* gate, const float* up, int64_t n, hipStream_t stream);
