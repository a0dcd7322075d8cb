// The trace statistics of one row on the host: what the cpu backends'
// summarize and summarize_spans return. Sums in double in index order over
// finite values, NaN and Inf counts, the order-free bit hash of bits.h, and a
// sample gather.
#pragma once

#include <cmath>
#include <cstring>
#include <vector>

#include "backend.h"

namespace greta {

template <typename A>
RowSummary summarize_row(const A* r, int64_t n, const std::vector<int64_t>& sample) {
  RowSummary s;
  double sum = 0, abs_sum = 0, sq = 0;
  double mn = INFINITY, mx = -INFINITY;
  int64_t finite = 0;
  for (int64_t i = 0; i < n; i++) {
    A v = r[i];
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(A));
    s.hash += hash_element(bits, static_cast<uint64_t>(i));
    if (std::isnan(v)) {
      s.nan++;
      continue;
    }
    if (std::isinf(v)) {
      s.inf++;
      continue;
    }
    double d = static_cast<double>(v);
    sum += d;
    abs_sum += std::fabs(d);
    sq += d * d;
    mn = std::min(mn, d);
    mx = std::max(mx, d);
    finite++;
  }
  if (finite > 0) {
    s.mean = sum / finite;
    s.abs_mean = abs_sum / finite;
    s.rms = std::sqrt(sq / finite);
    s.min = mn;
    s.max = mx;
  }
  for (int64_t i : sample) s.sample.push_back(static_cast<double>(r[i]));
  return s;
}

}  // namespace greta
