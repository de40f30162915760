// CUDA kernels of the ngram family (pydecode/ops/ngram.py). Each op is the float32 copy of the
// rows (row_map, 16-byte loads), then a sparse kernel over the ids that touches only the tokens
// it bans or biases: O(seq * n) (n-grams) or O(table) (sequence bias) per row.
#include <cuda_runtime.h>

#include <string>

#include "cuda/ngram.h"
#include "cuda/rowwise.cuh"
#include "pydecode/check.h"

namespace pydecode::cuda {
namespace {

// One thread per (row, window): window s of `hay` row hr is n tokens starting at s; when its
// first n - 1 equal the n - 1 tokens of `needle` row b from `from`, its last token is banned.
// A token banned by several windows gets -inf several times: the same value, no ordering needed.
__global__ void __launch_bounds__(kRowThreads)
    ban_ngrams_kernel(float* __restrict__ out, int64_t batch, int64_t vocab, IdView hay, int64_t hay_group,
                      IdView needle, int64_t from, int64_t n) {
  const int64_t windows = hay.len - n + 1;
  const float neg_inf = -__int_as_float(0x7f800000);
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const int64_t hr = b / hay_group;
    for (int64_t s = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; s < windows;
         s += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      bool match = true;
      for (int64_t i = 0; i + 1 < n && match; ++i) match = hay.at(hr, s + i) == needle.at(b, from + i);
      if (!match) continue;
      const int64_t t = hay.at(hr, s + n - 1);
      if (t >= 0 && t < vocab) out[b * vocab + t] = neg_inf;
    }
  }
}

// scores + 0.0 everywhere, as the reference's dense `scores + bias` (turns -0.0 into +0.0).
struct AddZeroOp {
  struct Row {
    __device__ float operator()(int64_t, float x) const { return __fadd_rn(x, 0.0f); }
  };
  __device__ Row row(int64_t) const { return Row{}; }
};

// One thread per (row, sorted entry k); the first entry of each token's group sums the group's
// active biases in table order and writes the token once.
__global__ void __launch_bounds__(kRowThreads)
    sequence_bias_kernel(LogitsView x, float* __restrict__ out, int64_t batch, int64_t vocab, IdView ids,
                         const int64_t* __restrict__ order, const int64_t* __restrict__ sorted_tokens,
                         int64_t n_single, const float* __restrict__ single_biases, int64_t n_total,
                         const int64_t* __restrict__ prefixes, int64_t width, const float* __restrict__ biases) {
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n_total;
         k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int64_t t = sorted_tokens[k];
      if (k > 0 && sorted_tokens[k - 1] == t) continue;  // not the first entry of its token
      if (t < 0 || t >= vocab) continue;
      float acc = 0.0f;
      for (int64_t g = k; g < n_total && sorted_tokens[g] == t; ++g) {
        const int64_t e = order[g];
        if (e < 0 || e >= n_total) continue;  // not a permutation: a malformed table adds nothing
        if (e < n_single) {
          acc = __fadd_rn(acc, single_biases[e]);
          continue;
        }
        const int64_t m = e - n_single;
        const int64_t* prefix = prefixes + m * width;
        bool match = true;
        for (int64_t j = 0; j < width && match; ++j) {
          if (prefix[j] == -1) continue;  // left padding of a shorter prefix: any token
          const int64_t pos = ids.len - width + j;
          match = (pos >= 0 ? ids.at(b, pos) : int64_t{-2}) == prefix[j];
        }
        // An unmatched sequence adds 0.0 in the reference, which never changes a sum started at +0.0.
        if (match) acc = __fadd_rn(acc, biases[m]);
      }
      out[b * vocab + t] = __fadd_rn(load_logit(x, b, t), acc);
    }
  }
}

void check_common(const LogitsView& logits, int64_t batch, int64_t vocab, const float* out, const IdView& ids,
                  const char* ids_name) {
  require_nonnegative(batch, "batch");
  require_nonnegative(vocab, "vocab");
  require_nonnegative(logits.row_stride, "logits row stride");
  require_pointer(reinterpret_cast<uintptr_t>(logits.data), batch * vocab, "logits");
  require_pointer(reinterpret_cast<uintptr_t>(out), batch * vocab, "out");
  require_nonnegative(ids.rows, ids_name);
  require_nonnegative(ids.len, ids_name);
  require_nonnegative(ids.row_stride, ids_name);
  require_pointer(reinterpret_cast<uintptr_t>(ids.data), ids.rows * ids.len, ids_name);
}

}  // namespace

cudaError_t no_repeat_ngram_mask(const LogitsView& logits, int64_t batch, int64_t vocab, float* out,
                                 const IdView& ids, int64_t ngram_size, cudaStream_t stream) {
  check_common(logits, batch, vocab, out, ids, "input_ids");
  require(ids.rows == batch, "input_ids must have " + std::to_string(batch) + " rows, got " + std::to_string(ids.rows));
  require(ngram_size >= 1, "ngram_size must be >= 1, got " + std::to_string(ngram_size));
  if (batch == 0 || vocab == 0) return cudaSuccess;
  cudaError_t status = launch_row_map(logits, out, batch, vocab, CopyOp{}, stream);
  if (status != cudaSuccess || ids.len < ngram_size) return status;
  const int64_t windows = ids.len - ngram_size + 1;
  ban_ngrams_kernel<<<item_grid(windows, batch), kRowThreads, 0, stream>>>(out, batch, vocab, ids, 1, ids,
                                                                           ids.len - ngram_size + 1, ngram_size);
  return cudaGetLastError();
}

cudaError_t encoder_no_repeat_ngram_mask(const LogitsView& logits, int64_t batch, int64_t vocab, float* out,
                                         const IdView& ids, const IdView& enc, int64_t ngram_size,
                                         cudaStream_t stream) {
  check_common(logits, batch, vocab, out, ids, "input_ids");
  require(ids.rows == batch, "input_ids must have " + std::to_string(batch) + " rows, got " + std::to_string(ids.rows));
  require_nonnegative(enc.rows, "encoder_input_ids");
  require_nonnegative(enc.len, "encoder_input_ids");
  require_nonnegative(enc.row_stride, "encoder_input_ids");
  require_pointer(reinterpret_cast<uintptr_t>(enc.data), enc.rows * enc.len, "encoder_input_ids");
  require(batch == 0 || (enc.rows >= 1 && batch % enc.rows == 0),
          "encoder_input_ids must have a number of rows that divides the batch (" + std::to_string(batch) +
              "), got " + std::to_string(enc.rows));
  require(ngram_size >= 1, "ngram_size must be >= 1, got " + std::to_string(ngram_size));
  if (batch == 0 || vocab == 0) return cudaSuccess;
  cudaError_t status = launch_row_map(logits, out, batch, vocab, CopyOp{}, stream);
  if (status != cudaSuccess || ids.len < ngram_size - 1 || enc.len < ngram_size) return status;
  const int64_t windows = enc.len - ngram_size + 1;
  ban_ngrams_kernel<<<item_grid(windows, batch), kRowThreads, 0, stream>>>(
      out, batch, vocab, enc, batch / enc.rows, ids, ids.len - (ngram_size - 1), ngram_size);
  return cudaGetLastError();
}

cudaError_t sequence_bias(const LogitsView& logits, int64_t batch, int64_t vocab, float* out, const IdView& ids,
                          const int64_t* order, const int64_t* sorted_tokens, int64_t n_single,
                          const float* single_biases, int64_t n_long, const int64_t* prefixes, int64_t width,
                          const float* biases, cudaStream_t stream) {
  check_common(logits, batch, vocab, out, ids, "input_ids");
  require(ids.rows == batch, "input_ids must have " + std::to_string(batch) + " rows, got " + std::to_string(ids.rows));
  require_nonnegative(n_single, "n_single");
  require_nonnegative(n_long, "n_long");
  require_nonnegative(width, "width");
  const int64_t n_total = n_single + n_long;
  require_pointer(reinterpret_cast<uintptr_t>(order), n_total, "order");
  require_pointer(reinterpret_cast<uintptr_t>(sorted_tokens), n_total, "sorted_tokens");
  require_pointer(reinterpret_cast<uintptr_t>(single_biases), n_single, "single_biases");
  require_pointer(reinterpret_cast<uintptr_t>(prefixes), n_long * width, "prefixes");
  require_pointer(reinterpret_cast<uintptr_t>(biases), n_long, "biases");
  if (batch == 0 || vocab == 0) return cudaSuccess;
  cudaError_t status = launch_row_map(logits, out, batch, vocab, AddZeroOp{}, stream);
  if (status != cudaSuccess || n_total == 0) return status;
  sequence_bias_kernel<<<item_grid(n_total, batch), kRowThreads, 0, stream>>>(
      logits, out, batch, vocab, ids, order, sorted_tokens, n_single, single_biases, n_total, prefixes, width, biases);
  return cudaGetLastError();
}

}  // namespace pydecode::cuda
