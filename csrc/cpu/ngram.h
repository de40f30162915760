// CPU kernels of the ngram family (pydecode/ops/ngram.py): no-repeat n-gram masks (decoder and
// encoder) and sequence bias / bad words over a SequenceBiasTable. Row plumbing (LogitsIn, IdRows,
// for_each_segment) comes from cpu/penalties.h.
#pragma once
#include <cstdint>

#include "cpu/penalties.h"

namespace pydecode::cpu {

// out = float32(logits) with -inf at the last token of every n-gram of ids row b whose first
// n - 1 tokens equal the row's last n - 1 tokens (ids >= vocab are never banned). ids: (batch, seq).
void no_repeat_ngram_mask(const LogitsIn& logits, float* out, const IdRows& ids, int64_t ngram_size);

// The same over the n-grams of the encoder ids (enc.rows divides batch; row b uses encoder row
// b / (batch / enc.rows)), matched against the last n - 1 decoder ids of row b.
void encoder_no_repeat_ngram_mask(const LogitsIn& logits, float* out, const IdRows& ids, const IdRows& enc,
                                  int64_t ngram_size);

// out = float32(logits) + bias, bias[t] summed in float32 as transformers does: 0 + the single-token
// bias of t, + the bias of every longer sequence ending in t whose prefix (prefixes row m, width
// entries right-aligned, -1 = any token) the row's ids end with, in table order. single_ids and
// last_tokens must be in [0, vocab).
void sequence_bias(const LogitsIn& logits, float* out, const IdRows& ids, const int64_t* single_ids,
                   const float* single_biases, int64_t n_single, const int64_t* prefixes, int64_t width,
                   const int64_t* last_tokens, const float* biases, int64_t n_long);

}  // namespace pydecode::cpu
