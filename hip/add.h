// out = a + b (the residual adds). One thread per element.
#pragma once

#include "common.h"

hipError_t greta_add(float* out, const float* a, const float* b, int64_t n, hipStream_t stream);
