// CUDA launchers of the ngram family (pydecode/ops/ngram.py): no-repeat n-gram masks (decoder
// and encoder) and sequence bias / bad words over a SequenceBiasTable. Raw device pointers and
// sizes in; sizes checked on the host (std::invalid_argument) before any launch; the return
// value is the status of the last launch. Ids outside [0, vocab) are never written at.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/views.h"

namespace pydecode::cuda {

// out = float32(logits) with -inf at the last token of every n-gram of ids row b whose first
// n - 1 tokens equal the row's last n - 1 tokens. ids: (batch, seq).
cudaError_t no_repeat_ngram_mask(const LogitsView& logits, int64_t batch, int64_t vocab, float* out,
                                 const IdView& ids, int64_t ngram_size, cudaStream_t stream);

// The same over the n-grams of encoder row b / (batch / enc.rows), matched against the last
// n - 1 decoder ids of row b.
cudaError_t encoder_no_repeat_ngram_mask(const LogitsView& logits, int64_t batch, int64_t vocab, float* out,
                                         const IdView& ids, const IdView& enc, int64_t ngram_size,
                                         cudaStream_t stream);

// out = float32(logits) + bias, bias[t] = 0 + the single-token biases of t + the bias of every
// longer sequence ending in t whose prefix the row's ids end with, summed in table order (the
// order of transformers' index_add_ on CPU). The table's entries, singles first (entry e <
// n_single: single e, else long sequence e - n_single), arrive grouped by token: order[k] is the
// entry at sorted position k and sorted_tokens[k] its token, stable within a token (the launcher
// computes them once per table with torch). prefixes: (n_long, width) int64, right-aligned,
// -1 = any token; positions before a row's start match nothing.
cudaError_t sequence_bias(const LogitsView& logits, int64_t batch, int64_t vocab, float* out, const IdView& ids,
                          const int64_t* order, const int64_t* sorted_tokens, int64_t n_single,
                          const float* single_biases, int64_t n_long, const int64_t* prefixes, int64_t width,
                          const float* biases, cudaStream_t stream);

}  // namespace pydecode::cuda
