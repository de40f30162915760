// Views of the arrays the penalties / ngram / watermark CUDA launchers receive, usable from the
// host bindings (g++) and the kernels (nvcc): raw device pointers plus sizes, no torch.
#pragma once
#include <cstdint>

#include "pydecode/dtype.h"

#if defined(__CUDACC__)
#define PYDECODE_VIEW_HD __host__ __device__ __forceinline__
#else
#define PYDECODE_VIEW_HD inline
#endif

namespace pydecode::cuda {

// The logits a kernel reads: `row_stride` elements between rows (0 and overlapping rows are fine:
// they are only read), unit stride along a row.
struct LogitsView {
  const void* data = nullptr;
  DType dtype = DType::kFloat32;
  int64_t row_stride = 0;
};

// Token ids: `rows` rows of `len` int64 or int32 ids, `row_stride` elements between rows, unit
// stride along a row.
struct IdView {
  const void* data = nullptr;
  bool is_int64 = true;
  int64_t rows = 0;
  int64_t len = 0;
  int64_t row_stride = 0;

  PYDECODE_VIEW_HD int64_t at(int64_t r, int64_t j) const {
    const int64_t i = r * row_stride + j;
    return is_int64 ? static_cast<const int64_t*>(data)[i]
                    : static_cast<int64_t>(static_cast<const int32_t*>(data)[i]);
  }
};

}  // namespace pydecode::cuda
