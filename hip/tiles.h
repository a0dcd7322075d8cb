// Rows of a matmul weight into and out of its tiled layout (hip/mma.h): what
// upload, fillUniform and download do with a tiled tensor. `tiled` is the
// weight's first tile; rows [row0, row0 + rows) of it are the ones moved,
// row0 anywhere (a part of a stacked weight need not start a tile). Elements
// of other rows are left as they are; k past K of the moved rows become zeros.
// No reduction: into the tiles one thread per 16-byte unit, out of them one
// per element.
#pragma once

#include "common.h"

// From src, row-major [rows, K] of the weight's dtype.
hipError_t greta_tile_rows(void* tiled, int w_type, const void* src, int64_t row0, int64_t rows, int64_t K,
                           hipStream_t stream);
// fill_uniform's values (hip/fill_uniform.h), counted from element 0 of row row0.
hipError_t greta_tile_fill_uniform(void* tiled, int w_type, int64_t row0, int64_t rows, int64_t K, uint64_t seed,
                                   double scale, double offset, hipStream_t stream);
// Into dst, row-major [rows, K].
hipError_t greta_untile_rows(void* dst, const void* tiled, int w_type, int64_t row0, int64_t rows, int64_t K,
                             hipStream_t stream);
