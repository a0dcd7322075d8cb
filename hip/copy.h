// dst = src, `bytes` of device memory, in stream order.
//
// Copies up to GRETA_COPY_KERNEL_MAX bytes (the rows the tracer takes at each
// traced point) run as a kernel, whose launch overlaps the kernels around it
// (hip/compat.h) where a copy call between two kernels would end the overlap
// and pay its own start; larger ones are a hipMemcpyAsync.
#pragma once

#include "common.h"

constexpr size_t GRETA_COPY_KERNEL_MAX = 1 << 20;

hipError_t greta_copy(void* dst, const void* src, size_t bytes, hipStream_t stream);
