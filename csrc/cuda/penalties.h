// CUDA launchers of the penalties family (pydecode/ops/penalties.py): repetition, encoder
// repetition and presence/frequency penalties, fused, and the same from a PenaltyState.
// Raw device pointers and sizes in; sizes are checked on the host (std::invalid_argument) before
// anything is launched; the return value is the status of the last launch. Token ids are device
// data: ids outside [0, vocab) are skipped, never written at (Python rejects negative ids first).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/views.h"

namespace pydecode::cuda {

// int32 elements of the workspace apply_penalties needs for `out_len` generated ids per row
// (0 when its count table fits in shared memory).
int64_t penalties_workspace_size(int64_t batch, int64_t out_len);

// out (batch, vocab) float32 contiguous = float32(logits), then
//   repetition (rep_penalty != null): every id in [ignore[b], len) of rep_ids row b / (batch /
//     rep_ids.rows), below vocab, gets s < 0 ? s * float(p) : s * float(1.0 / p) with the reciprocal
//     in double (torch's CUDA division by a Python float), p = rep_penalty[b] (double);
//   presence/frequency (presence != null, frequency too): every id below vocab with c > 0 unmasked
//     occurrences in out_ids row b (out_mask: uint8, mask_stride elements between rows, or null)
//     gets s - (presence[b] + frequency[b] * c), after the repetition penalty.
// workspace: penalties_workspace_size(batch, out_ids.len) int32s (null when that is 0).
cudaError_t apply_penalties(const LogitsView& logits, int64_t batch, int64_t vocab, float* out,
                            const IdView& rep_ids, const double* rep_penalty, const int64_t* ignore,
                            const IdView& out_ids, const uint8_t* out_mask, int64_t mask_stride,
                            const float* presence, const float* frequency, int32_t* workspace,
                            int64_t workspace_size, cudaStream_t stream);

// The penalties from a PenaltyState: row b lists lengths[b] (<= capacity) distinct tokens
// (int64), each with an in_rep flag (uint8) and a generated count (int32), `stride` elements
// between rows. A token gets s = in_rep ? rep(s) : s (rep as above, rep_penalty double), then
// s - (presence + frequency * count) when count > 0. Null penalty pointers switch that part off.
cudaError_t apply_penalties_state(const LogitsView& logits, int64_t batch, int64_t vocab, float* out,
                                  const int64_t* tokens, const uint8_t* in_rep, const int32_t* counts,
                                  const int64_t* lengths, int64_t capacity, int64_t stride,
                                  const double* rep_penalty, const float* presence, const float* frequency,
                                  cudaStream_t stream);

}  // namespace pydecode::cuda
