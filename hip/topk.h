// Per row: the k largest values, descending; ties go to the lower index and
// NaN ranks below every number (the CPU backend's order exactly).
//
// One block per row. Round r picks the first element, in that total order,
// that ranks after round r-1's pick: no mask, no sort, and a fixed block-tree
// reduction, so the picks do not depend on the launch shape.
#pragma once

#include "common.h"

// A row's top-1 alone (a decode step's), when long, takes two launches over
// many blocks instead: the same pick, since the order is total. scratch:
// greta_topk_scratch_bytes() of device memory, 16-byte aligned.
size_t greta_topk_scratch_bytes();
hipError_t greta_topk(const float* x, int64_t rows, int64_t n, int k, int32_t* ids, float* values, void* scratch,
                      hipStream_t stream);
