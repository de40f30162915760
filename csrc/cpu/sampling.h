// CPU kernels of the sampling family (pydecode/ops/sampling.py): temperature, greedy, and one
// filter chain (temperature -> top-k -> top-p -> min-p, transformers' order) whose outputs are
// any of: the Philox/Gumbel-max token, its log-probability, the filtered row, or the kept
// probabilities (for renormalisation). Torch-free: raw pointers, sizes, row strides in elements.
#pragma once
#include <cstdint>

namespace pydecode::cpu {

// A (rows, vocab) block of float32/float16/bfloat16 logits with unit stride along the vocabulary.
struct LogitRows {
  const void* data;
  int dtype;           // pydecode::DType code
  int64_t rows;
  int64_t vocab;
  int64_t row_stride;  // elements between rows
};

// out[b, v] = float32(x[b, v]) / float32(temperature[b]) (TemperatureLogitsWarper); out is
// contiguous (rows, vocab).
void apply_temperature(const LogitRows& in, const double* temperature, float* out);

// out[b] = lowest index of the row maximum; 0 when nothing is above -inf. NaN is skipped, or with
// nan_is_max it is the maximum (the first NaN wins: torch.argmax, which transformers' greedy uses).
void greedy(const LogitRows& in, bool nan_is_max, int64_t* out);

enum class Transform : int {
  kNone = 0,
  kDivide = 1,  // float32(x) / float32(temperature[b])
  kLog = 2,     // log(float32(x)): probability inputs sampled as logits log(p)
};

// The filter chain and what to produce. A null per-row array turns its stage off; per row,
// top_k <= 0, top_p >= 1 and min_p <= 0 are off too (transformers leaves the warper out).
struct ChainSpec {
  Transform transform = Transform::kNone;
  const double* temperature = nullptr;  // (rows,) when transform == kDivide
  const int64_t* top_k = nullptr;       // (rows,)
  const double* top_p = nullptr;        // (rows,)
  const double* min_p = nullptr;        // (rows,)
  int64_t min_tokens_to_keep = 1;
  // SIMD width of torch's float32 reductions (16 on an AVX512 build, 8 on AVX2): softmax sums
  // are emulated lane by lane so probabilities equal the reference's bit for bit.
  int softmax_lanes = 16;
  // Outputs; null = not wanted.
  const int64_t* seed = nullptr;    // (rows,) with tokens
  const int64_t* offset = nullptr;  // (rows,) with tokens
  int64_t* tokens = nullptr;        // (rows,): Gumbel-max over the kept entries (0 if none)
  float* logprobs = nullptr;        // (rows,): log_softmax of the filtered row at the token
  float* filtered = nullptr;        // (rows, vocab): kept entries, filter_value elsewhere
  float filter_value = 0.0f;
  float* renorm = nullptr;          // (rows, vocab): float32(x) of kept entries, 0 elsewhere (the caller divides by
                                    // the row sum with torch, so the sum is bit-equal to the reference's)
  // Penalties from a PenaltyState (pydecode/ops/penalties.py; null state_tokens = none), applied
  // before the temperature: each live token t < vocab of row b gets s = float32(x[t]), then
  // s = repetition(s) where in_rep, then s -= presence + frequency * count where count > 0 (the
  // arithmetic of apply_penalties_state). Only those entries differ from the input, so they are
  // patched into the row as it is read: no penalised copy of the logits is written.
  const int64_t* state_tokens = nullptr;  // (rows, capacity), rows `state_stride` apart, like in_rep / counts
  const uint8_t* state_in_rep = nullptr;
  const int32_t* state_counts = nullptr;
  const int64_t* state_lengths = nullptr;  // (rows,) live entries per row, <= capacity
  int64_t state_capacity = 0;
  int64_t state_stride = 0;
  const float* repetition_penalty = nullptr;  // (rows,) or null
  const float* presence_penalty = nullptr;    // (rows,) or null; with frequency_penalty
  const float* frequency_penalty = nullptr;
};

void run_chain(const LogitRows& in, const ChainSpec& spec);

}  // namespace pydecode::cpu
