// CPU kernels of the penalties family (pydecode/ops/penalties.py): repetition, encoder
// repetition and presence/frequency penalties, fused into one pass, and the same penalties from
// an incremental per-row state (PenaltyState).
//
// Also the row plumbing the ngram family shares (cpu/ngram.cpp): the logits a kernel reads, rows
// of token ids, the float32 copy of a row segment and the split of a (batch, vocab) job over the
// thread pool.
#pragma once
#include <cstdint>
#include <functional>

#include "pydecode/dtype.h"

namespace pydecode::cpu {

// The logits a kernel reads: `batch` rows of `vocab` elements, unit stride along the vocabulary,
// `row_stride` elements between rows (0 and overlapping rows are fine: they are only read).
struct LogitsIn {
  const void* data = nullptr;
  DType dtype = DType::kFloat32;
  int64_t batch = 0;
  int64_t vocab = 0;
  int64_t row_stride = 0;

  const void* row(int64_t b) const {
    return static_cast<const char*>(data) + b * row_stride * dtype_size(dtype);
  }
};

// Element v of row b of `logits` as float32 (bit-exact with copy_segment).
inline float logit_at(const LogitsIn& logits, int64_t b, int64_t v) {
  const void* row = logits.row(b);
  switch (logits.dtype) {
    case DType::kFloat32:
      return static_cast<const float*>(row)[v];
    case DType::kFloat16:
      return half_to_float(static_cast<const uint16_t*>(row)[v]);
    default:
      return bf16_to_float(static_cast<const uint16_t*>(row)[v]);
  }
}

// Checks sizes and pointers of a LogitsIn and of the (batch, vocab) float32 output.
void check_logits(const LogitsIn& logits, const float* out);

// Token ids: `rows` rows of `len` int32 or int64 ids, `row_stride` elements apart.
struct IdRows {
  const void* data = nullptr;
  bool is_int64 = true;
  int64_t rows = 0;
  int64_t len = 0;
  int64_t row_stride = 0;

  int64_t at(int64_t r, int64_t j) const {
    const int64_t i = r * row_stride + j;
    return is_int64 ? static_cast<const int64_t*>(data)[i]
                    : static_cast<int64_t>(static_cast<const int32_t*>(data)[i]);
  }
};

// From the raw addresses and sizes the bindings receive (dtype: a pydecode::DType code).
inline LogitsIn logits_in(uintptr_t data, int dtype, int64_t batch, int64_t vocab, int64_t row_stride) {
  return LogitsIn{reinterpret_cast<const void*>(data), dtype_from_code(dtype), batch, vocab, row_stride};
}
inline IdRows id_rows(uintptr_t data, bool is_int64, int64_t rows, int64_t len, int64_t row_stride) {
  return IdRows{reinterpret_cast<const void*>(data), is_int64, rows, len, row_stride};
}

// Checks sizes and the pointer of an IdRows (`name` for messages).
void check_ids(const IdRows& ids, const char* name);

// Throws (ValueError in Python) naming `name`, the row and the position of a negative id: ids
// index the logits row, so a negative one would write outside it.
[[noreturn]] void negative_id(const char* name, int64_t row, int64_t pos, int64_t id);

// Throws (ValueError in Python) naming `name`, the id, the vocabulary size, the row and the position
// of an id >= vocab under out_of_vocab="raise" (pydecode/ops/penalties.py).
[[noreturn]] void out_of_vocab_id(const char* name, int64_t row, int64_t pos, int64_t id, int64_t vocab);

// Every id of `ids` >= 0 and, when check_vocab, < vocab; else a ValueError naming `name`, the id,
// the row and the position (the penalties' history: pydecode/ops/_validate.py skips its scan for
// this backend). Without check_vocab ids >= vocab are allowed and ignored (out_of_vocab="ignore"),
// as transformers' repetition penalty does for models whose embedding is larger than their output
// layer. Every position is checked, also those a prompt_ignore_length or mask excludes.
void check_ids_in_range(const IdRows& ids, const char* name, bool check_vocab, int64_t vocab);

// out[v0, v1) = float32(logits[b][v0, v1)), bit-exact with torch's .float().
void copy_segment(const LogitsIn& logits, int64_t b, int64_t v0, int64_t v1, float* out_row);

// Runs fn(b, v0, v1) over every row of a (batch, vocab) job so that the segments cover each row
// once: rows across the pool when batch > 1, the vocabulary split when batch == 1 (the only way
// to use the second core there). `row_extra` is the sparse work of a row in element-equivalents,
// so that small jobs stay on the calling thread.
void for_each_segment(int64_t batch, int64_t vocab, int64_t row_extra,
                      const std::function<void(int64_t, int64_t, int64_t)>& fn);

// apply_penalties and its special cases, on raw id lists.
//   rep_ids: the ids of the repetition penalty; logits row b uses ids row b / (batch / rows)
//     (rows divides batch: encoder ids serve their beams). rep_penalty: float32 (batch,), or null
//     for no repetition penalty. Every distinct id in [ignore[b], len) of the row is
//     penalised once: s < 0 ? s * p : s / p (ignore null: from position 0).
//   out_ids/out_mask: the generated ids (rows == batch) and an optional uint8 mask of the same
//     shape (mask_stride elements between rows); presence/frequency: float32 (batch,), both null
//     for none. Every id with count c > 0 (unmasked positions) gets
//     s -= presence + frequency * c, after the repetition penalty.
// Every id must be >= 0, and < vocab when check_vocab (else ids >= vocab are ignored), and every penalty in
// range (rep_penalty > 0, presence and frequency finite, ignore >= 0), else ValueError before anything is
// written.
// out: (batch, vocab) float32, contiguous.
void apply_penalties(const LogitsIn& logits, float* out, const IdRows& rep_ids, const float* rep_penalty,
                     const int64_t* ignore, const IdRows& out_ids, const uint8_t* out_mask,
                     int64_t mask_stride, const float* presence, const float* frequency, bool check_vocab);

// The penalties from a PenaltyState: row b lists lengths[b] distinct tokens (tokens, int64), each
// with an in_rep flag (uint8: the token is under the repetition penalty) and its generated count
// (counts, int32); the three arrays are (batch, >= capacity) with `stride` elements between rows.
// A token gets s = in_rep ? rep(s) : s, then s -= presence + frequency * count when count > 0.
// Tokens must be >= 0 and penalties in range, as for apply_penalties.
void apply_penalties_state(const LogitsIn& logits, float* out, const int64_t* tokens, const uint8_t* in_rep,
                           const int32_t* counts, const int64_t* lengths, int64_t capacity, int64_t stride,
                           const float* rep_penalty, const float* presence, const float* frequency);

// apply_penalties_state's checks of the state and the penalties (ValueError before anything runs).
void check_penalty_state(int64_t batch, int64_t vocab, const int64_t* tokens, const uint8_t* in_rep,
                         const int32_t* counts, const int64_t* lengths, int64_t capacity, int64_t stride,
                         const float* rep_penalty, const float* presence, const float* frequency);

// transformers' repetition penalty of one score.
inline float repetition(float s, float p) { return s < 0.0f ? s * p : s / p; }

// The penalised value of one state entry of row b (the float32 operations of the reference, in
// its order): the repetition penalty when in_rep, then s - (presence + frequency * count) when
// count > 0; a null penalty array is off.
inline float penalised(float s, bool in_rep, int32_t count, const float* rep_penalty, const float* presence,
                       const float* frequency, int64_t b) {
  if (rep_penalty != nullptr && in_rep) s = repetition(s, rep_penalty[b]);
  if (presence != nullptr && count > 0) s = s - (presence[b] + frequency[b] * static_cast<float>(count));
  return s;
}

// One step of PenaltyState.update on its CPU tensors (layout above; slot is int32
// (batch, vocab + 1): a token's index in its row's list or -1). new_tokens must be >= 0, and < vocab
// when check_vocab (else ids >= vocab are ignored). For each row b with new_tokens[b] < vocab: the token is appended when new (lengths[b] + 1 <= capacity is required),
// its in_rep flag is set when ignore is null or ignore[b] <= position, and its count is incremented
// when active is null or active[b]. Every row is checked before any is changed, so a refused call
// leaves the state as it was.
void penalty_state_update(int64_t* tokens, uint8_t* in_rep, int32_t* counts, int64_t* lengths, int32_t* slot,
                          int64_t batch, int64_t capacity, int64_t stride, int64_t vocab, const int64_t* new_tokens,
                          const uint8_t* active, const int64_t* ignore, int64_t position, bool check_vocab);

}  // namespace pydecode::cpu
