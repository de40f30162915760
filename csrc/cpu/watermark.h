// Watermark bias kernels on CPU (pydecode/ops/watermark.py). Torch-free: raw pointers and sizes.
// Both write a new float32 (rows, vocab) row-major output: the logits converted to float32, plus
// the row's bias (one float32 addition) on its green tokens.
#pragma once
#include <cstdint>

namespace pydecode::cpu {

// "pydecode-hash" (pydecode/hash.h): prev_tokens is (rows, n_prev) int64 row-major; threshold
// (rows,) int64 in [0, 2^32] (token green iff hash < threshold); bias (rows,) float32.
void watermark_hash_bias(const void* logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride,
                         const int64_t* prev_tokens, int64_t n_prev, const int64_t* threshold,
                         const float* bias, uint64_t hashing_key, float* out);

// transformers' scheme, device half: green_ids (rows, n_ids) int64 (ids_int64) or int32, unit
// stride along a row and ids_row_stride elements between rows; ids in [0, vocab), -1 = padding
// (anything else throws). A repeated id gets the bias once per occurrence (scatter-add).
void watermark_scatter_bias(const void* logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride,
                            const void* green_ids, bool ids_int64, int64_t n_ids, int64_t ids_row_stride,
                            const float* bias, float* out);

}  // namespace pydecode::cpu
