// CUDA kernels of the watermark family (pydecode/ops/watermark.py).
//
// * hash scheme: a single row_map pass; each token's greenlist hash (pydecode/hash.h, shared with
//   the CPU kernel) is two 32-bit multiplies and three shift-xors in registers, far below the
//   cost of the 16-byte loads it rides on.
// * transformers' scheme: the float32 copy, then one thread per distinct listed id adds the row's
//   bias. The ids arrive sorted (the launcher sorts them on the device), so the first of a run of
//   k equal ids owns the token and adds the k biases the way torch's CUDA index_put_(accumulate=True)
//   does (indexing_backward_kernel_stride_1): x + (0 + b + ... + b), summed before the add, 32 lanes
//   at a time when k >= 32. No float atomics: they flush subnormals on global memory, torch does not.
#include <cuda_runtime.h>

#include <string>

#include "cuda/rowwise.cuh"
#include "cuda/watermark.h"
#include "pydecode/check.h"
#include "pydecode/hash.h"

namespace pydecode::cuda {
namespace {

struct HashBiasOp {
  const int64_t* prev_tokens;
  int64_t n_prev;
  const int64_t* threshold;
  const float* bias;
  uint64_t hashing_key;

  struct Row {
    uint32_t ctx;
    uint32_t threshold;
    int mode;  // 0: nothing green, 1: everything green, 2: compare the hash
    float bias;
    __device__ float operator()(int64_t v, float x) const {
      const bool green = mode == 1 || (mode == 2 && hash_token(ctx, static_cast<uint32_t>(v)) < threshold);
      return green ? __fadd_rn(x, bias) : x;
    }
  };

  // Per thread and row: n_prev (the context width, a few tokens) cached loads and mixes.
  __device__ Row row(int64_t r) const {
    const int64_t t = threshold[r];
    Row row{hash_context(hashing_key, prev_tokens + r * n_prev, n_prev), 0u, 2, bias[r]};
    if (t <= 0) {
      row.mode = 0;
    } else if (t > int64_t{0xFFFFFFFF}) {
      row.mode = 1;
    } else {
      row.threshold = static_cast<uint32_t>(t);
    }
    return row;
  }
};

// The sum torch's stride-1 index_put_ kernel forms for k copies of b: each of 32 lanes adds
// k / 32 copies to 0, a shuffle tree sums the 32 equal partial sums (exact doublings), then lane 0
// adds the remaining k % 32 copies one by one. For k < 32 that is just 0 + b + ... + b.
__device__ __forceinline__ float duplicate_sum(float b, int64_t k) {
  float lane = 0.0f;
  for (int64_t i = 0; i < k / 32; ++i) lane = __fadd_rn(lane, b);
  float g = lane;
  if (k >= 32) {
#pragma unroll
    for (int i = 0; i < 5; ++i) g = __fadd_rn(g, g);
  }
  for (int64_t i = 0; i < k % 32; ++i) g = __fadd_rn(g, b);
  return g;
}

// One thread per (row, sorted id); the first of each run of equal ids writes its token once.
__global__ void __launch_bounds__(kRowThreads)
    scatter_bias_kernel(float* __restrict__ out, int64_t rows, int64_t vocab, IdView ids, const float* __restrict__ bias) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float b = bias[r];
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < ids.len;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int64_t id = ids.at(r, j);
      if (id < 0 || id >= vocab || (j > 0 && ids.at(r, j - 1) == id)) continue;
      int64_t k = 1;
      while (j + k < ids.len && ids.at(r, j + k) == id) ++k;
      float* o = out + r * vocab + id;
      *o = __fadd_rn(*o, duplicate_sum(b, k));
    }
  }
}

void check_common(const LogitsView& logits, int64_t rows, int64_t vocab, const float* bias, const float* out) {
  require_nonnegative(rows, "rows");
  require_nonnegative(vocab, "vocab");
  require_nonnegative(logits.row_stride, "logits row stride");
  require_pointer(reinterpret_cast<uintptr_t>(logits.data), rows * vocab, "logits");
  require_pointer(reinterpret_cast<uintptr_t>(out), rows * vocab, "out");
  require_pointer(reinterpret_cast<uintptr_t>(bias), rows, "bias");
}

}  // namespace

cudaError_t watermark_hash_bias(const LogitsView& logits, int64_t rows, int64_t vocab, const int64_t* prev_tokens,
                                int64_t n_prev, const int64_t* threshold, const float* bias, uint64_t hashing_key,
                                float* out, cudaStream_t stream) {
  check_common(logits, rows, vocab, bias, out);
  require_nonnegative(n_prev, "n_prev");
  require(vocab <= (int64_t{1} << 32), "vocab must be <= 2**32 (token ids are hashed as 32-bit words)");
  require_pointer(reinterpret_cast<uintptr_t>(threshold), rows, "threshold");
  require_pointer(reinterpret_cast<uintptr_t>(prev_tokens), rows * n_prev, "prev_tokens");
  if (rows == 0 || vocab == 0) return cudaSuccess;
  return launch_row_map(logits, out, rows, vocab, HashBiasOp{prev_tokens, n_prev, threshold, bias, hashing_key},
                        stream);
}

cudaError_t watermark_scatter_bias(const LogitsView& logits, int64_t rows, int64_t vocab, const IdView& green_ids,
                                   const float* bias, float* out, cudaStream_t stream) {
  check_common(logits, rows, vocab, bias, out);
  require(green_ids.rows == rows,
          "green_ids must have " + std::to_string(rows) + " rows, got " + std::to_string(green_ids.rows));
  require_nonnegative(green_ids.len, "green_ids");
  require_nonnegative(green_ids.row_stride, "green_ids row stride");
  require_pointer(reinterpret_cast<uintptr_t>(green_ids.data), rows * green_ids.len, "green_ids");
  if (rows == 0 || vocab == 0) return cudaSuccess;
  cudaError_t status = launch_row_map(logits, out, rows, vocab, CopyOp{}, stream);
  if (status != cudaSuccess || green_ids.len == 0) return status;
  scatter_bias_kernel<<<item_grid(green_ids.len, rows), kRowThreads, 0, stream>>>(out, rows, vocab, green_ids, bias);
  return cudaGetLastError();
}

}  // namespace pydecode::cuda
