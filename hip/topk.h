// Per row: the k largest values, descending; ties go to the lower index and
// NaN ranks below every number (the CPU backend's order exactly).
//
// One block per row. Round r picks the first element, in that total order,
// that ranks after round r-1's pick: no mask, no sort, and a fixed block-tree
// reduction, so the picks do not depend on the launch shape.
#pragma once

#include "common.h"

hipError_t greta_topk(const float* x, int64_t rows, int64_t n, int k, int32_t* ids, float* values, hipStream_t stream);
