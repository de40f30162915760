#include "penalties.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/parallel.h"
#include "pydecode/check.h"

namespace pydecode::cpu {
namespace {

// At least 2^18 elements (1 MiB of float32) per chunk, for rows (batch > 1) and for the
// vocabulary (batch == 1) alike. Measured on this 2-core VM (float32 copy, us, idle / right after
// a 2-thread torch op, whose OpenMP worker keeps spinning on the other core): inline vs split
// 1x128256 17/47 vs 21-35/64-76, 1x262144 63/90 vs 91-99/131-137, 2x128256 62/89 vs 92/133,
// 4x128256 162/161 vs 155/154-170, 32x128256 1206/1224 vs 681-691/1172-1209. The pool's wake-up
// is ~0.4 us when the other core is free but tens of us when it is busy, so only jobs of a few
// MiB gain from the second core.
constexpr int64_t kGrain = int64_t{1} << 18;

// Per-thread counts over one row segment for presence/frequency. Invariant between uses: all
// zero (the second pass of a row resets every entry it read).
std::vector<int32_t>& count_scratch(int64_t size) {
  thread_local std::vector<int32_t> counts;
  if (static_cast<int64_t>(counts.size()) < size) counts.assign(static_cast<size_t>(size), 0);
  return counts;
}

}  // namespace

void check_logits(const LogitsIn& logits, const float* out) {
  require_nonnegative(logits.batch, "batch");
  require_nonnegative(logits.vocab, "vocab");
  require_nonnegative(logits.row_stride, "logits row stride");
  require_pointer(reinterpret_cast<uintptr_t>(logits.data), logits.batch * logits.vocab, "logits");
  require_pointer(reinterpret_cast<uintptr_t>(out), logits.batch * logits.vocab, "out");
}

void check_ids(const IdRows& ids, const char* name) {
  require_nonnegative(ids.rows, name);
  require_nonnegative(ids.len, name);
  require_nonnegative(ids.row_stride, name);
  require_pointer(reinterpret_cast<uintptr_t>(ids.data), ids.rows * ids.len, name);
}

void negative_id(const char* name, int64_t row, int64_t pos, int64_t id) {
  throw std::invalid_argument(std::string(name) + " must hold token ids >= 0, got " + std::to_string(id) +
                              " at row " + std::to_string(row) + ", position " + std::to_string(pos));
}

void out_of_vocab_id(const char* name, int64_t row, int64_t pos, int64_t id, int64_t vocab) {
  throw std::invalid_argument(std::string(name) + " must hold token ids < " + std::to_string(vocab) +
                              " (the vocabulary of logits), got " + std::to_string(id) + " at row " +
                              std::to_string(row) + ", position " + std::to_string(pos) +
                              " (out_of_vocab='ignore' drops such ids)");
}

void check_ids_in_range(const IdRows& ids, const char* name, bool check_vocab, int64_t vocab) {
  // One unsigned compare per id covers both bounds: a negative id converts to >= 2^63, above any
  // limit. Without check_vocab the limit 2^63 admits every id >= 0.
  const uint64_t limit = check_vocab ? static_cast<uint64_t>(vocab) : uint64_t{1} << 63;
  for (int64_t r = 0; r < ids.rows; ++r) {
    uint64_t bad = 0;  // a branch-free scan of the row first: histories are long, errors rare
    for (int64_t j = 0; j < ids.len; ++j) bad |= static_cast<uint64_t>(ids.at(r, j)) >= limit ? 1 : 0;
    if (bad == 0) continue;
    for (int64_t j = 0; j < ids.len; ++j) {
      const int64_t id = ids.at(r, j);
      if (id < 0) negative_id(name, r, j, id);
      if (static_cast<uint64_t>(id) >= limit) out_of_vocab_id(name, r, j, id, vocab);
    }
  }
}

// Per-row penalty values, with the ranges and message form of pydecode/ops/_validate.py.
void check_rows_in(const float* values, int64_t batch, const char* name, const char* range, bool positive) {
  if (values == nullptr) return;
  for (int64_t b = 0; b < batch; ++b) {
    const float v = values[b];
    const bool ok = positive ? v > 0.0f : std::isfinite(v);  // NaN fails both
    if (!ok) {
      throw std::invalid_argument(std::string(name) + " must be in " + range + " for every row, got " +
                                  std::to_string(v) + " at row " + std::to_string(b));
    }
  }
}

void copy_segment(const LogitsIn& logits, int64_t b, int64_t v0, int64_t v1, float* out_row) {
  const int64_t n = v1 - v0;
  if (n <= 0) return;  // an empty row may come with null pointers (vocab 0)
  float* dst = out_row + v0;
  row_to_float(static_cast<const char*>(logits.row(b)) + v0 * dtype_size(logits.dtype), logits.dtype, n, dst);
}

void for_each_segment(int64_t batch, int64_t vocab, int64_t row_extra,
                      const std::function<void(int64_t, int64_t, int64_t)>& fn) {
  if (batch <= 0) return;
  if (batch == 1) {
    if (vocab == 0) {
      fn(0, 0, 0);  // nothing to write, but the row's ids are still checked
      return;
    }
    parallel_for(vocab, kGrain, [&](int64_t v0, int64_t v1) { fn(0, v0, v1); });
    return;
  }
  const int64_t per_row = vocab + std::max<int64_t>(row_extra, 0) + 1;
  const int64_t grain = std::max<int64_t>(1, kGrain / per_row);
  parallel_for(batch, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) fn(r, 0, vocab);
  });
}

void apply_penalties(const LogitsIn& logits, float* out, const IdRows& rep_ids, const float* rep_penalty,
                     const int64_t* ignore, const IdRows& out_ids, const uint8_t* out_mask,
                     int64_t mask_stride, const float* presence, const float* frequency, bool check_vocab) {
  check_logits(logits, out);
  const int64_t batch = logits.batch, vocab = logits.vocab;
  int64_t group = 1;
  if (rep_penalty != nullptr) {
    check_ids(rep_ids, "input_ids");
    require(batch == 0 || (rep_ids.rows >= 1 && batch % rep_ids.rows == 0),
            "input_ids must have a number of rows that divides the batch (" + std::to_string(batch) +
                "), got " + std::to_string(rep_ids.rows));
    if (batch > 0) group = batch / rep_ids.rows;
    check_ids_in_range(rep_ids, "input_ids", check_vocab, vocab);
    check_rows_in(rep_penalty, batch, "repetition_penalty", "(0, inf]", true);
    if (ignore != nullptr) {
      for (int64_t b = 0; b < batch; ++b) {
        require(ignore[b] >= 0, "prompt_ignore_length must be in [0, inf] for every row, got " +
                                    std::to_string(ignore[b]) + " at row " + std::to_string(b));
      }
    }
  }
  require((presence == nullptr) == (frequency == nullptr),
          "presence and frequency penalties must be given together");
  if (presence != nullptr) {
    check_ids(out_ids, "output_ids");
    require(out_ids.rows == batch, "output_ids must have " + std::to_string(batch) + " rows, got " +
                                       std::to_string(out_ids.rows));
    require(out_ids.len < (int64_t{1} << 31), "output_ids rows must be shorter than 2^31");
    if (out_mask != nullptr) require_nonnegative(mask_stride, "output_mask row stride");
    check_ids_in_range(out_ids, "output_ids", check_vocab, vocab);
    check_rows_in(presence, batch, "presence_penalty", "the float32 range", false);
    check_rows_in(frequency, batch, "frequency_penalty", "the float32 range", false);
  }
  const int64_t extra = (rep_penalty ? rep_ids.len : 0) + (presence ? 3 * out_ids.len : 0);

  for_each_segment(batch, vocab, extra, [&](int64_t b, int64_t v0, int64_t v1) {
    float* orow = out + b * vocab;
    copy_segment(logits, b, v0, v1, orow);
    if (rep_penalty != nullptr) {
      // Every listing of a token writes the same value, computed from the input (never from
      // out), so repeated ids need no de-duplication.
      const int64_t r = b / group;
      const float p = rep_penalty[b];
      const int64_t start = ignore ? std::clamp<int64_t>(ignore[b], 0, rep_ids.len) : 0;
      for (int64_t j = start; j < rep_ids.len; ++j) {
        const int64_t id = rep_ids.at(r, j);  // >= 0, checked above; ids >= vocab are ignored
        if (id >= v0 && id < v1) orow[id] = repetition(logit_at(logits, b, id), p);
      }
    }
    if (presence != nullptr) {
      const uint8_t* mask = out_mask ? out_mask + b * mask_stride : nullptr;
      // Ids were checked before any segment started: a throw here would leave the scratch dirty.
      std::vector<int32_t>& counts = count_scratch(v1 - v0);
      for (int64_t j = 0; j < out_ids.len; ++j) {
        if (mask && !mask[j]) continue;
        const int64_t id = out_ids.at(b, j);
        if (id >= v0 && id < v1) ++counts[id - v0];
      }
      const float pres = presence[b], freq = frequency[b];
      for (int64_t j = 0; j < out_ids.len; ++j) {
        if (mask && !mask[j]) continue;
        const int64_t id = out_ids.at(b, j);
        if (id < v0 || id >= v1) continue;
        const int32_t c = counts[id - v0];
        if (c == 0) continue;  // already applied at the token's first listing
        counts[id - v0] = 0;
        // The reference's float32 order: presence + (frequency * count).
        const float delta = pres + freq * static_cast<float>(c);
        orow[id] = orow[id] - delta;
      }
    }
  });
}

void check_penalty_state(int64_t batch, int64_t vocab, const int64_t* tokens, const uint8_t* in_rep,
                         const int32_t* counts, const int64_t* lengths, int64_t capacity, int64_t stride,
                         const float* rep_penalty, const float* presence, const float* frequency) {
  require_nonnegative(capacity, "capacity");
  require_nonnegative(stride, "state row stride");
  require_pointer(reinterpret_cast<uintptr_t>(lengths), batch, "lengths");
  require_pointer(reinterpret_cast<uintptr_t>(tokens), batch * capacity, "tokens");
  require_pointer(reinterpret_cast<uintptr_t>(in_rep), batch * capacity, "in_rep");
  require_pointer(reinterpret_cast<uintptr_t>(counts), batch * capacity, "counts");
  require((presence == nullptr) == (frequency == nullptr),
          "presence and frequency penalties must be given together");
  for (int64_t b = 0; b < batch; ++b) {
    require(lengths[b] >= 0 && lengths[b] <= capacity, "state length " + std::to_string(lengths[b]) +
                                                           " of row " + std::to_string(b) +
                                                           " is outside [0, capacity=" +
                                                           std::to_string(capacity) + "]");
    // A state only holds ids < vocab (update drops or refuses the others), but apply is not told how it
    // was built: ids >= vocab are skipped below, only negative ones are refused.
    check_ids_in_range(IdRows{tokens + b * stride, true, 1, lengths[b], stride}, "state tokens", false, vocab);
  }
  check_rows_in(rep_penalty, batch, "repetition_penalty", "(0, inf]", true);
  check_rows_in(presence, batch, "presence_penalty", "the float32 range", false);
  check_rows_in(frequency, batch, "frequency_penalty", "the float32 range", false);
}

void apply_penalties_state(const LogitsIn& logits, float* out, const int64_t* tokens, const uint8_t* in_rep,
                           const int32_t* counts, const int64_t* lengths, int64_t capacity, int64_t stride,
                           const float* rep_penalty, const float* presence, const float* frequency) {
  check_logits(logits, out);
  const int64_t batch = logits.batch, vocab = logits.vocab;
  check_penalty_state(batch, vocab, tokens, in_rep, counts, lengths, capacity, stride, rep_penalty, presence,
                      frequency);
  int64_t longest = 0;
  for (int64_t b = 0; b < batch; ++b) longest = std::max(longest, lengths[b]);

  for_each_segment(batch, vocab, longest, [&](int64_t b, int64_t v0, int64_t v1) {
    float* orow = out + b * vocab;
    copy_segment(logits, b, v0, v1, orow);
    const int64_t* tok = tokens + b * stride;
    const uint8_t* rep = in_rep + b * stride;
    const int32_t* cnt = counts + b * stride;
    for (int64_t i = 0; i < lengths[b]; ++i) {
      const int64_t t = tok[i];  // >= 0, checked above; ids >= vocab are ignored
      if (t < v0 || t >= v1) continue;
      // orow[t]: this segment's copy, the input as float32.
      orow[t] = penalised(orow[t], rep[i] != 0, cnt[i], rep_penalty, presence, frequency, b);
    }
  });
}

void penalty_state_update(int64_t* tokens, uint8_t* in_rep, int32_t* counts, int64_t* lengths, int32_t* slot,
                          int64_t batch, int64_t capacity, int64_t stride, int64_t vocab, const int64_t* new_tokens,
                          const uint8_t* active, const int64_t* ignore, int64_t position, bool check_vocab) {
  require_nonnegative(batch, "batch");
  require_nonnegative(capacity, "capacity");
  require_nonnegative(stride, "state row stride");
  require_nonnegative(vocab, "vocab");
  require(batch <= 1 || stride >= capacity, "state row stride must be >= capacity");
  require_pointer(reinterpret_cast<uintptr_t>(tokens), batch * capacity, "tokens");
  require_pointer(reinterpret_cast<uintptr_t>(in_rep), batch * capacity, "in_rep");
  require_pointer(reinterpret_cast<uintptr_t>(counts), batch * capacity, "counts");
  require_pointer(reinterpret_cast<uintptr_t>(lengths), batch, "lengths");
  require_pointer(reinterpret_cast<uintptr_t>(slot), batch * (vocab + 1), "slot");
  require_pointer(reinterpret_cast<uintptr_t>(new_tokens), batch, "new_tokens");
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t t = new_tokens[b];
    if (t < 0) negative_id("new_tokens", b, 0, t);
    if (check_vocab && t >= vocab) out_of_vocab_id("new_tokens", b, 0, t, vocab);
    require(lengths[b] >= 0 && lengths[b] <= capacity, "state length of row " + std::to_string(b) +
                                                           " is outside [0, capacity]");
    if (t >= vocab) continue;
    const int32_t s = slot[b * (vocab + 1) + t];
    require(s >= -1 && s < lengths[b], "corrupted state: slot of token " + std::to_string(t) + " in row " +
                                           std::to_string(b) + " is " + std::to_string(s));
    require(s >= 0 || lengths[b] < capacity, "state row " + std::to_string(b) + " is full (capacity " +
                                                 std::to_string(capacity) + ")");
  }
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t t = new_tokens[b];
    if (t >= vocab) continue;  // can never be generated: ignored (out_of_vocab="ignore"), as by the penalties
    int32_t& s = slot[b * (vocab + 1) + t];
    if (s < 0) {
      s = static_cast<int32_t>(lengths[b]++);
      tokens[b * stride + s] = t;
      in_rep[b * stride + s] = 0;
      counts[b * stride + s] = 0;
    }
    if (ignore == nullptr || ignore[b] <= position) in_rep[b * stride + s] = 1;
    if (active == nullptr || active[b]) ++counts[b * stride + s];
  }
}

}  // namespace pydecode::cpu
