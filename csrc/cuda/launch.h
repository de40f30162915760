// CUDA launchers: raw device pointers, sizes and a cudaStream_t in, a cudaError_t out.
// Each launcher checks its sizes (throwing std::invalid_argument like the CPU kernels) and
// returns the launch status, which the bindings turn into a Python exception.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace pydecode::cuda {

// out[b][v] = uniform_open01(philox_word(seeds[b], offsets[b], v, stream_id)); device pointers.
cudaError_t philox_uniform(const int64_t* seeds, const int64_t* offsets, float* out, int64_t rows,
                           int64_t vocab, uint32_t stream_id, cudaStream_t stream);

// ---------------------------------------------------------------------------- sampling family
// A (rows, vocab) block of float32/float16/bfloat16 (DType code) values, unit stride along the
// vocabulary, `row_stride` elements between rows (>= 0).
struct RowsIn {
  const void* data = nullptr;
  int dtype = 0;
  int64_t rows = 0;
  int64_t vocab = 0;
  int64_t row_stride = 0;
};

// out (rows, vocab) float32 = float32(x) * (1 / float32(temperature[b])): what torch computes on
// CUDA for TemperatureLogitsWarper (division by a CPU scalar becomes a reciprocal multiply).
cudaError_t apply_temperature(const RowsIn& in, const double* temperature, float* out, cudaStream_t stream);

// out[b] = lowest index of the row maximum, NaN ignored; 0 when nothing is above -inf. Small
// batches split each row over greedy_splits(rows, vocab) blocks when `scratch` holds at least
// rows * that many uint64 (device memory; may be null: one block per row).
constexpr int kGreedyMaxSplits = 32;
int greedy_splits(int64_t rows, int64_t vocab);
cudaError_t greedy(const RowsIn& in, int64_t* out, uint64_t* scratch, int64_t scratch_len, cudaStream_t stream);

// The fused filter chain of pydecode/ops/sampling.py: transform (0 none, 1 temperature, 2 log)
// -> top-k -> top-p -> min-p (a null per-row array turns the stage off), then any of: tokens
// (Philox Gumbel-max), logprobs, filtered rows (filter_value at removed entries), renorm rows
// (kept inputs, 0 elsewhere). One thread block per row, or, with splits > 1, `splits` blocks per
// row, each reading one slice of the vocabulary (a cooperative launch: rows * splits blocks must
// be resident at once) with `scratch` holding rows * kChainScratchWords uint64 of zeroed device
// memory. Both paths give the same outputs for the same inputs.
constexpr int64_t kChainScratchWords = 5328;
// Automatic choice: slices of >= kChainMinSlice entries, at most kChainMaxSplits per row, rows *
// splits <= the blocks the device holds at once.
constexpr int64_t kChainMinSlice = 8192;
constexpr int kChainMaxSplits = 32;
struct ChainSpec {
  int transform = 0;
  const double* temperature = nullptr;
  const int64_t* top_k = nullptr;
  const double* top_p = nullptr;
  const double* min_p = nullptr;
  int64_t min_tokens_to_keep = 1;
  const int64_t* seed = nullptr;
  const int64_t* offset = nullptr;
  int64_t* tokens = nullptr;
  float* logprobs = nullptr;
  float* filtered = nullptr;
  float filter_value = 0.0f;
  float* renorm = nullptr;
  int compact = 1;  // 0: never take the compact path (sampling.cu), for comparisons
  int key_bins = 1;  // 0: the compact path's lists come from the gap histogram only (comparisons)
  int top_k_scan = 0;  // 1: the one-read top-k list (sampling.cu; a lead measured against the key-bin list)
  int warp_finish = 0;  // 1: short candidate lists finish in one warp (sampling.cu's warp_finish; same outputs)
};
// Blocks of the split kernel the current device holds at once (0: no cooperative launch).
int chain_capacity();
// The split count filter_chain uses for (rows, vocab): `forced` when > 0, else the automatic one.
int chain_splits(int64_t rows, int64_t vocab, int64_t forced);
cudaError_t filter_chain(const RowsIn& in, const ChainSpec& spec, int splits, uint64_t* scratch, int64_t scratch_len,
                         cudaStream_t stream);

// ---------------------------------------------------------------------------- beam family
// One beam-search step (pydecode/ops/beam.py): scores = log_softmax(x) + beam_scores[row] (or
// x + beam_scores[row]), top k per batch item over num_beams * vocab, ties to the lowest flat
// index. `candidates` is device scratch of rows * min(k, vocab) uint64, `row_stats` of rows * 2
// float32. Requires num_beams * min(k, vocab) <= beam_merge_limit(). key_bins false: the row
// candidates' lists come from the gap histogram only (same outputs; for comparisons).
int64_t beam_merge_limit();
// Small batches split each row into `splits` slices (beam.cu's split path: same outputs), with
// `split_scratch` holding rows * splits * kBeamSliceWords uint64 of device memory (written before
// it is read: no zeroing). beam_splits: the count for (rows, vocab, num_beams, k), `forced` when
// > 0 (bounded by what the path supports); 1 where the split path does not apply: min(k, vocab)
// must be < vocab and <= kBeamSplitMaxK.
constexpr int kBeamSliceCap = 128;  // list entries per slice: row_k and the ties of its last
constexpr int64_t kBeamSliceWords = 5 + kBeamSliceCap;
constexpr int64_t kBeamSplitMaxK = 64;
constexpr int64_t kBeamMinSlice = 4096;
constexpr int kBeamMaxSplits = 32;
int beam_splits(int64_t rows, int64_t vocab, int64_t num_beams, int64_t k, int64_t forced);
cudaError_t beam_topk(const RowsIn& in, const float* beam_scores, int64_t num_beams, int64_t k,
                      bool apply_log_softmax, uint64_t* candidates, float* row_stats, float* scores,
                      int64_t* tokens, int64_t* beams, cudaStream_t stream, bool key_bins = true, int splits = 1,
                      uint64_t* split_scratch = nullptr, int64_t split_scratch_len = 0, bool top_k_scan = true);

}  // namespace pydecode::cuda
