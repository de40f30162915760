// Beam search step on CPU: log-softmax of each beam row, + running beam score, top k over all
// beams of each batch item (pydecode/ops/beam.py's beam_topk). Torch-free: raw pointers and sizes.
#pragma once
#include <cstdint>

namespace pydecode::cpu {

// How the log-softmax constant log(sum(exp(x - max))) is computed. torch's CPU log_softmax sums
// exp() in SIMD lanes and reduces the lanes in a fixed tree; reproducing its lane count, its exp
// and log (SLEEF's expf_u10 / logf_u10) and its reduction order gives bit-identical scores.
//   16: torch's AVX512 kernel (16 lanes, SLEEF),    8: its AVX2 kernel (8 lanes, SLEEF),
//    1: its DEFAULT kernel (8 lanes, libm expf/logf, sequential lane reduction),
//  -16 / -8: the same as 16 / 8 computed lane by lane in scalar code (used when the module was
//            built without AVX512 / AVX2+FMA; exposed so that tests cover it on any machine).
enum LseMode : int { kLseLibm8 = 1, kLseSleef8 = 8, kLseSleef16 = 16, kLseSleef8Scalar = -8, kLseSleef16Scalar = -16 };

// logits: rows = batch * num_beams rows of `vocab` elements (unit stride, `row_stride` elements
// apart) of dtype code `dtype`; beam_scores: float32 (rows,). Writes the top k of each batch item
// (best first) to out_scores (float32), out_tokens and out_beams (int64), each (batch, k).
void beam_topk(const void* logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride,
               const float* beam_scores, int64_t num_beams, int64_t k, bool apply_log_softmax,
               int lse_mode, float* out_scores, int64_t* out_tokens, int64_t* out_beams);

}  // namespace pydecode::cpu
