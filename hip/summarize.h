// Trace statistics of one row, computed on the device so tracing copies back
// a few numbers (and the row itself only when the trace keeps it):
// sum, |sum|, sum of squares, min and max over finite values in double, NaN
// and Inf counts, the order-free bit hash of backend.h, and a sample gather.
//
// One block of BLOCK threads; thread t takes i = t, t + BLOCK, ...; thread 0
// adds the per-thread partials in thread order. The hash is a wrapping sum,
// so it equals the host's exactly.
#pragma once

#include "common.h"

struct GretaSummary {
  double sum, abs_sum, sq, min, max;
  unsigned long long nan, inf, finite, hash;
};

// The same for n spans of x (span i: elements [spans[2i], spans[2i] +
// spans[2i+1])), one block each, finished into out[8i .. 8i+8): mean,
// abs_mean, rms, min, max, nan, inf as doubles, then the hash's 64 bits.
hipError_t greta_summarize_spans(double* out, const float* x, const int32_t* spans, int64_t n, hipStream_t stream);

hipError_t greta_summarize(const float* row, int64_t n, const int64_t* sample_idx, int n_sample, GretaSummary* out,
                           float* sample_out, hipStream_t stream);
