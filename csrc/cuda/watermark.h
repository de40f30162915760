// CUDA launchers of the watermark family (pydecode/ops/watermark.py). Raw device pointers and
// sizes in; sizes checked on the host (std::invalid_argument) before any launch; the return value
// is the status of the last launch. Both write a new (rows, vocab) float32 contiguous output: the
// logits as float32, plus the row's bias (one float32 addition) on its green tokens.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/views.h"

namespace pydecode::cuda {

// "pydecode-hash" (pydecode/hash.h, the CPU kernel's definition): prev_tokens (rows, n_prev)
// int64 row-major; threshold (rows,) int64 (green iff hash < threshold; <= 0 none, > 2^32 - 1
// all); bias (rows,) float32. One pass, the hash computed in registers.
cudaError_t watermark_hash_bias(const LogitsView& logits, int64_t rows, int64_t vocab, const int64_t* prev_tokens,
                                int64_t n_prev, const int64_t* threshold, const float* bias, uint64_t hashing_key,
                                float* out, cudaStream_t stream);

// transformers' scheme, device half: green_ids rows of ids in [0, vocab) (-1 = padding; other
// ids are skipped), each row sorted ascending. A repeated id gets the bias once per occurrence,
// summed as torch's CUDA index_put_(accumulate=True) sums them (see watermark.cu).
cudaError_t watermark_scatter_bias(const LogitsView& logits, int64_t rows, int64_t vocab, const IdView& green_ids,
                                   const float* bias, float* out, cudaStream_t stream);

}  // namespace pydecode::cuda
