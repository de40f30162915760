// Beam search candidate ranking and merge (pydecode/ops/beam.py's contract), torch-free and
// shareable by the CPU and CUDA kernels.
//
// A candidate is (score, flat index = beam * vocab + token). Candidates rank by score descending,
// ties by the LOWEST flat index; -0.0 ties with +0.0 and every NaN ranks above +inf (torch.topk's
// order). One 64-bit integer carries the whole order:
//   rank = float_key(score, NaN canonicalised) << 32 | (0xFFFFFFFF - flat)
// so "larger rank = better", ranks are unique within a batch item (flat < 2^32), and the top k of
// a union is the top k of the union of each part's top k: a beam row (or a slice of it) can be
// reduced to its own top k before the merge without changing the result.
#pragma once
#include <algorithm>
#include <cstdint>

#include "pydecode/float_key.h"

#if defined(__CUDACC__)
#define PYDECODE_BEAM_HD __host__ __device__ __forceinline__
#else
#define PYDECODE_BEAM_HD inline
#endif

namespace pydecode {

struct BeamCandidate {
  uint64_t rank;  // see above: larger is better, unique per batch item
  float score;    // the score as computed (sign of zero and NaN payload kept for the output)
};

// float_key of the positive quiet NaN: above +inf's key 0xFF800000.
constexpr uint32_t kBeamNanKey = 0xFFC00000u;

// Order-preserving 32-bit key of a score (float_key.h's, in integer ops only so that a loop of
// them vectorises): -0.0 folds onto +0.0 and every NaN, either sign, onto kBeamNanKey (float_key
// alone would put a negative NaN below -inf).
PYDECODE_BEAM_HD uint32_t beam_score_key(float score) {
  const uint32_t bits = float_to_bits(score);
  const uint32_t magnitude = bits & 0x7FFFFFFFu;
  uint32_t key = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  key = magnitude == 0 ? 0x80000000u : key;
  return magnitude > 0x7F800000u ? kBeamNanKey : key;
}

PYDECODE_BEAM_HD uint64_t beam_rank(uint32_t score_key, uint32_t flat) {
  return (static_cast<uint64_t>(score_key) << 32) | static_cast<uint64_t>(0xFFFFFFFFu - flat);
}

PYDECODE_BEAM_HD uint32_t beam_rank_flat(uint64_t rank) {
  return 0xFFFFFFFFu - static_cast<uint32_t>(rank & 0xFFFFFFFFu);
}

// Keeps the `keep` best of cand[0, n) in cand[0, keep) (any order); returns min(keep, n).
inline int64_t beam_keep_best(BeamCandidate* cand, int64_t n, int64_t keep) {
  if (n <= keep) return n;
  std::nth_element(cand, cand + (keep - 1), cand + n,
                   [](const BeamCandidate& a, const BeamCandidate& b) { return a.rank > b.rank; });
  return keep;
}

// The batch item's top k of cand[0, n) (n >= k), best first: scores, tokens (flat % vocab) and
// beams (flat / vocab). Reorders cand.
inline void beam_merge(BeamCandidate* cand, int64_t n, int64_t k, int64_t vocab, float* scores,
                       int64_t* tokens, int64_t* beams) {
  std::partial_sort(cand, cand + k, cand + n,
                    [](const BeamCandidate& a, const BeamCandidate& b) { return a.rank > b.rank; });
  for (int64_t i = 0; i < k; ++i) {
    const int64_t flat = beam_rank_flat(cand[i].rank);
    scores[i] = cand[i].score;
    tokens[i] = flat % vocab;
    beams[i] = flat / vocab;
  }
}

}  // namespace pydecode
