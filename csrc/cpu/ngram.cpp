#include "ngram.h"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "pydecode/check.h"

namespace pydecode::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Ids of row r that a kernel may write at must be >= 0 (ids >= vocab are skipped by range).
void check_row_nonnegative(const IdRows& ids, int64_t r, int64_t begin, int64_t end, const char* name) {
  for (int64_t j = begin; j < end; ++j) {
    const int64_t id = ids.at(r, j);
    if (id < 0) negative_id(name, r, j, id);
  }
}

// Bans the last token of every window of `hay` row hr (windows of n tokens) whose first n - 1
// tokens equal the n - 1 tokens of `needle` row nr starting at `from`; only tokens in [v0, v1).
void ban_matches(const IdRows& hay, int64_t hr, const IdRows& needle, int64_t nr, int64_t from, int64_t n,
                 int64_t v0, int64_t v1, float* orow) {
  const int64_t k = n - 1;
  for (int64_t s = 0; s + n <= hay.len; ++s) {
    int64_t i = 0;
    while (i < k && hay.at(hr, s + i) == needle.at(nr, from + i)) ++i;
    if (i < k) continue;
    const int64_t t = hay.at(hr, s + k);
    if (t >= v0 && t < v1) orow[t] = kNegInf;
  }
}

// Scratch of sequence_bias: per-token bias sums over one row segment, valid where stamp == epoch
// (a new epoch per row segment instead of clearing vocab-sized arrays).
struct BiasScratch {
  std::vector<uint32_t> stamp;
  std::vector<float> acc;
  std::vector<int64_t> touched;
  uint32_t epoch = 0;
};

BiasScratch& bias_scratch(int64_t size) {
  thread_local BiasScratch s;
  if (static_cast<int64_t>(s.stamp.size()) < size) {
    s.stamp.assign(static_cast<size_t>(size), 0);
    s.acc.resize(static_cast<size_t>(size));
    s.epoch = 0;
  }
  if (++s.epoch == 0) {  // wrapped after 2^32 segments: restart the stamps
    std::fill(s.stamp.begin(), s.stamp.end(), 0u);
    s.epoch = 1;
  }
  s.touched.clear();
  return s;
}

void check_ngram_args(const LogitsIn& logits, float* out, const IdRows& ids, int64_t ngram_size) {
  check_logits(logits, out);
  check_ids(ids, "input_ids");
  require(ids.rows == logits.batch, "input_ids must have " + std::to_string(logits.batch) + " rows, got " +
                                        std::to_string(ids.rows));
  require(ngram_size >= 1, "ngram_size must be >= 1, got " + std::to_string(ngram_size));
}

}  // namespace

void no_repeat_ngram_mask(const LogitsIn& logits, float* out, const IdRows& ids, int64_t ngram_size) {
  check_ngram_args(logits, out, ids, ngram_size);
  const int64_t vocab = logits.vocab, seq = ids.len, n = ngram_size;
  for_each_segment(logits.batch, vocab, seq, [&](int64_t b, int64_t v0, int64_t v1) {
    float* orow = out + b * vocab;
    copy_segment(logits, b, v0, v1, orow);
    if (seq < n) return;
    // Every position from n - 1 on is the last token of a window, so any id may be written at.
    check_row_nonnegative(ids, b, 0, seq, "input_ids");
    ban_matches(ids, b, ids, b, seq - n + 1, n, v0, v1, orow);
  });
}

void encoder_no_repeat_ngram_mask(const LogitsIn& logits, float* out, const IdRows& ids, const IdRows& enc,
                                  int64_t ngram_size) {
  check_ngram_args(logits, out, ids, ngram_size);
  check_ids(enc, "encoder_input_ids");
  const int64_t batch = logits.batch, vocab = logits.vocab, n = ngram_size;
  require(batch == 0 || (enc.rows >= 1 && batch % enc.rows == 0),
          "encoder_input_ids must have a number of rows that divides the batch (" + std::to_string(batch) +
              "), got " + std::to_string(enc.rows));
  const int64_t group = batch > 0 ? batch / enc.rows : 1;
  for_each_segment(batch, vocab, enc.len, [&](int64_t b, int64_t v0, int64_t v1) {
    float* orow = out + b * vocab;
    copy_segment(logits, b, v0, v1, orow);
    if (ids.len < n - 1 || enc.len < n) return;
    const int64_t r = b / group;
    check_row_nonnegative(enc, r, n - 1, enc.len, "encoder_input_ids");
    ban_matches(enc, r, ids, b, ids.len - (n - 1), n, v0, v1, orow);
  });
}

void sequence_bias(const LogitsIn& logits, float* out, const IdRows& ids, const int64_t* single_ids,
                   const float* single_biases, int64_t n_single, const int64_t* prefixes, int64_t width,
                   const int64_t* last_tokens, const float* biases, int64_t n_long) {
  check_logits(logits, out);
  check_ids(ids, "input_ids");
  const int64_t batch = logits.batch, vocab = logits.vocab;
  require(ids.rows == batch, "input_ids must have " + std::to_string(batch) + " rows, got " +
                                 std::to_string(ids.rows));
  require_nonnegative(n_single, "n_single");
  require_nonnegative(n_long, "n_long");
  require_nonnegative(width, "width");
  require_pointer(reinterpret_cast<uintptr_t>(single_ids), n_single, "single_ids");
  require_pointer(reinterpret_cast<uintptr_t>(single_biases), n_single, "single_biases");
  require_pointer(reinterpret_cast<uintptr_t>(prefixes), n_long * width, "prefixes");
  require_pointer(reinterpret_cast<uintptr_t>(last_tokens), n_long, "last_tokens");
  require_pointer(reinterpret_cast<uintptr_t>(biases), n_long, "biases");
  // Biased tokens index the row: all must lie in it (Python raises earlier, naming the ids).
  for (int64_t i = 0; i < n_single; ++i) {
    require(single_ids[i] >= 0 && single_ids[i] < vocab,
            "single_ids must be in [0, vocab=" + std::to_string(vocab) + "), got " + std::to_string(single_ids[i]));
  }
  for (int64_t m = 0; m < n_long; ++m) {
    require(last_tokens[m] >= 0 && last_tokens[m] < vocab,
            "last_tokens must be in [0, vocab=" + std::to_string(vocab) + "), got " +
                std::to_string(last_tokens[m]));
  }
  const int64_t seq = ids.len;
  for_each_segment(batch, vocab, n_single + n_long * (width + 1), [&](int64_t b, int64_t v0, int64_t v1) {
    float* orow = out + b * vocab;
    // scores + 0.0 everywhere, as the reference's dense `scores + bias`: -0.0 becomes +0.0.
    if (logits.dtype == DType::kFloat32) {
      const float* src = static_cast<const float*>(logits.row(b));
      for (int64_t v = v0; v < v1; ++v) orow[v] = src[v] + 0.0f;
    } else {
      copy_segment(logits, b, v0, v1, orow);
      for (int64_t v = v0; v < v1; ++v) orow[v] = orow[v] + 0.0f;
    }
    if (n_single == 0 && n_long == 0) return;
    BiasScratch& s = bias_scratch(v1 - v0);
    // bias[t] = 0 + single bias, then + each matched sequence's bias in table order. Unmatched
    // sequences add 0.0 in the reference, which changes no sum (a sum started at +0.0 is never
    // -0.0), so they are skipped.
    auto add = [&](int64_t t, float bias) {
      if (t < v0 || t >= v1) return;
      const int64_t k = t - v0;
      if (s.stamp[k] != s.epoch) {
        s.stamp[k] = s.epoch;
        s.acc[k] = 0.0f;
        s.touched.push_back(t);
      }
      s.acc[k] = s.acc[k] + bias;
    };
    for (int64_t i = 0; i < n_single; ++i) add(single_ids[i], single_biases[i]);
    for (int64_t m = 0; m < n_long; ++m) {
      const int64_t* prefix = prefixes + m * width;
      bool match = true;
      for (int64_t j = 0; j < width && match; ++j) {
        if (prefix[j] == -1) continue;  // left padding of a shorter prefix: any token
        const int64_t pos = seq - width + j;
        // Positions before the row's start compare as -2 ("no token"), as in the reference.
        match = (pos >= 0 ? ids.at(b, pos) : int64_t{-2}) == prefix[j];
      }
      if (match) add(last_tokens[m], biases[m]);
    }
    for (const int64_t t : s.touched) orow[t] = logit_at(logits, b, t) + s.acc[t - v0];
  });
}

}  // namespace pydecode::cpu
