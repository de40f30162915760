// CUDA kernels of beam search's top-k step (pydecode/ops/beam.py), in two launches:
//
// 1. one block per beam row: log-softmax statistics (max, then a deterministic float sum of
//    exp(x - max); score = ((x - max) - log(sum)) + beam_score, the operation order of torch's
//    CUDA log_softmax epilogue plus transformers' add), then the row's own top min(k, vocab) by a
//    radix select on the score key (on a candidate list in shared memory when the row's top
//    entries fit on one: the compact path below), ties at the boundary to the lowest index,
//    written as 64-bit ranks (score key << 32 | ~flat index) to scratch;
// 2. one block per batch item: the num_beams * min(k, vocab) ranks sorted in shared memory
//    (bitonic), the first k written out. Ranks are unique, so the top k of the union of each
//    row's top k is the batch item's top k (beam_merge.h's argument) whatever the order the
//    candidates were written in. Scores are recomputed from the logits with the same float ops,
//    so their bits (sign of zero, NaN) are the ones the ranking saw.
#include <climits>
#include <cmath>
#include <string>

#include "cuda/device.cuh"
#include "cuda/launch.h"
#include "pydecode/check.h"

namespace pydecode::cuda {
namespace {

constexpr int kThreads = 1024;
// Candidates merged per batch item in shared memory (32 KiB of ranks); beyond, Python falls back.
constexpr int kMergeMax = 4096;
constexpr float kInf = INFINITY;

// beam_merge.h's beam_score_key: NaN of either sign ranks above +inf (0xFFC00000), -0 == +0.
__device__ __forceinline__ uint32_t beam_key(float score) {
  const uint32_t bits = __float_as_uint(score);
  const uint32_t mag = bits & 0x7FFFFFFFu;
  if (mag > 0x7F800000u) return 0xFFC00000u;
  if (mag == 0) return 0x80000000u;
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

struct BeamArgs {
  RowsIn in;
  const float* beam_scores;
  int num_beams;
  int row_k;  // min(k, vocab)
  int k;
  bool log_softmax;
  unsigned long long* candidates;
  float* row_stats;
  float* scores;
  int64_t* tokens;
  int64_t* beams;
  bool key_bins;  // list the candidates by the logits' key bins when they fit
};

__device__ __forceinline__ float beam_score(float x, float m, float lse, float bs, bool log_softmax) {
  return log_softmax ? ((x - m) - lse) + bs : x + bs;
}

template <int D>
__device__ __forceinline__ const void* row_ptr(const RowsIn& in, int64_t row) {
  return static_cast<const char*>(in.data) + row * in.row_stride * static_cast<int64_t>(sizeof(typename Elem<D>::T));
}

// (At least 1 block per SM: without it ptxas squeezed the kernel into 32 registers, two blocks'
// worth, spilling 40 bytes; as before the key-bin list it takes 54-56, one block per SM, no spills.)
template <int D>
__global__ void __launch_bounds__(kThreads, 1) beam_rows_kernel(const BeamArgs a) {
  __shared__ RadixShared sh;
  __shared__ float fscratch[32];
  __shared__ uint32_t uscratch[32];
  __shared__ uint32_t fill;
  __shared__ unsigned long long list[kCandCap];
  const int row = static_cast<int>(blockIdx.x);
  const int vocab = static_cast<int>(a.in.vocab);
  const void* src = row_ptr<D>(a.in, row);
  const bool select = a.row_k < vocab;
  // The statistics pass also histograms the logits' key bins (device.cuh) for the compact path.
  const bool key_bins = a.key_bins && select && a.row_k <= kCandCap;
  uint32_t* key_hist = reinterpret_cast<uint32_t*>(list);
  if (key_bins) clear_key_bins(key_hist);
  // Row statistics: the largest non-NaN value (log-softmax's max), the smallest finite one (with
  // the largest, the compact path's bin range), whether a NaN is present.
  float mx = -kInf, mn = kInf;
  uint32_t nan = 0;
  if (a.log_softmax || select) {
    for_row<D, kFastLoads>(src, vocab, [&](int, float x) {
      if (x != x) {
        nan = 1;
      } else {
        mx = x > mx ? x : mx;
        if (x > -kInf) {
          mn = x < mn ? x : mn;
          if (key_bins) atomicAdd(&key_hist[key_bin(sort_key(x))], 1u);
        }
      }
    });
    mx = block_reduce(mx, MaxOp(), fscratch);
    mn = block_reduce(mn, MinOp(), fscratch);
    nan = block_reduce(nan, MaxOp(), uscratch);
  }
  const KeyBinList key_list = key_bins ? key_bin_list(key_hist, static_cast<uint32_t>(a.row_k), sh) : KeyBinList{};
  // The compact path (device.cuh's candidate lists) may serve rows without NaN or +inf that have
  // something finite and a top row_k that fits on a list; the scores' range decides below.
  const bool compact = select && a.row_k <= kCandCap && nan == 0 && mn <= mx && mx < kInf;
  // With log-softmax, the key-bin list is copied in the sum's read (two reads of the row, not three):
  // the bins are known from the statistics pass, and the sum's order is for_row's either way. Its
  // entries take one shared atomic each (few: the list is the row's top bins), in no fixed order,
  // which nothing depends on: the selects count, and ties are broken by index.
  const bool list_in_sum = a.log_softmax && compact && key_list.low >= 0;
  // Whether an entry goes on the key-bin list (the rest: the largest is the left-out logit, below).
  const auto on_key_list = [&](float x) { return x > -kInf && key_list.holds(sort_key(x)); };
  float m = 0.0f, lse = 0.0f;
  float sum_left_out = kInf;
  if (a.log_softmax) {
    m = nan ? NAN : mx;  // torch's max propagates NaN: the whole row's log-softmax is NaN
    float z = 0.0f;
    if (list_in_sum) {
      if (threadIdx.x == 0) fill = 0;
      __syncthreads();  // the key-bin histogram, in the list's memory, has been read
      float out = -kInf;
      for_row<D, kFastLoads>(src, vocab, [&](int v, float x) {
        z += expf(x - m);
        if (on_key_list(x)) {
          const uint32_t pos = atomicAdd(&fill, 1u);
          if (pos < static_cast<uint32_t>(kCandCap)) list[pos] = pack_cand(v, x);  // bound: a logic error only
        } else {
          out = x > out ? x : out;
        }
      });
      sum_left_out = block_reduce(out, MaxOp(), fscratch);  // its barriers also complete the list
    } else {
      for_row<D, kFastLoads>(src, vocab, [&](int, float x) { z += expf(x - m); });
    }
    z = block_reduce(z, AddOp(), fscratch);
    lse = logf(z);
  }
  const float bs = a.beam_scores[row];
  const bool lsm = a.log_softmax;
  const auto score_of = [=](float x) { return beam_score(x, m, lse, bs, lsm); };
  const auto key_of = [=](float x) { return beam_key(score_of(x)); };

  // The compact path: when the row's top row_k fit on a list, the radix selects run on the list
  // and the candidates are written from it. The list comes from the logits' key bins (the copy,
  // in the sum's read with log-softmax) or else from the scores' gap bins (two reads: histogram,
  // copy), instead of 5 reads of the row. Rows with NaN, +inf or nothing finite read the row.
  // Key bins order the logits, and a score never decreases with its logit, but rounding can give
  // an unlisted logit the k-th score; the copy keeps the largest unlisted logit so the select can
  // check (below).
  int listed = -1;  // the list's length; -1: the selects read the row
  KeyRange keys;
  float left_out = kInf;  // a key-bin list's largest unlisted logit (+inf: not a key-bin list)
  // The list of the entries where take(x) holds (its length counted beforehand), in a read of its own.
  const auto copy_list = [&](auto&& take) {
    if (threadIdx.x == 0) fill = 0;
    __syncthreads();
    append_entries<D>(src, vocab, 0, take, list, &fill, kCandCap);
    __syncthreads();
  };
  if (compact) {
    const float smax = score_of(mx), smin = score_of(mn);
    if (smax < kInf && smin > -kInf && smax - smin < kInf) {
      if (key_list.low >= 0) {
        listed = static_cast<int>(key_list.count);
        if (list_in_sum) {
          left_out = sum_left_out;
        } else {
          float out = -kInf;
          copy_list([&](float x) {
            const bool take = on_key_list(x);
            if (!take) out = x > out ? x : out;
            return take;
          });
          left_out = block_reduce(out, MaxOp(), fscratch);
        }
      } else {
        const GapBins bins = GapBins::over(smax, smin);
        select_top_bins([&](auto&& f) { for_row<D, kFastLoads>(src, vocab, f); }, score_of, [](float) {}, bins,
                        static_cast<uint32_t>(a.row_k), kCandCap, NoMerge(), sh);
        const int low = sh.bin;
        if (low >= 0) {
          listed = static_cast<int>(sh.bin_count);
          copy_list([&](float x) { return bins(score_of(x)) >= low; });
        }
      }
      if (listed >= 0) keys = list_keys(list, listed, key_of, beam_key(smax), uscratch);
    }
  }
  const auto visit = [&](auto&& f) {
    if (listed >= 0) {
      for_list(list, listed, f);
    } else {
      for_row<D>(src, vocab, f);
    }
  };

  uint32_t cut = 0;
  int last = INT_MAX;  // entries with key == cut are kept up to this index
  if (select) {
    uint32_t above, ties;
    const auto kth_score = [&]() {
      return radix_nth_each(
          visit, static_cast<uint32_t>(a.row_k),
          [&](int, float x, uint32_t* key) {
            *key = key_of(x);
            return true;
          },
          sh, &above, &ties, NoMerge(), keys);
    };
    cut = kth_score();
    // A key-bin list stands when every unlisted entry scores below its k-th score (left_out
    // -inf: nothing finite is unlisted); else the row decides.
    if (left_out < kInf && left_out > -kInf && !(key_of(left_out) < cut)) {
      listed = -1;
      keys = KeyRange();
      cut = kth_score();
    }
    const uint32_t need = static_cast<uint32_t>(a.row_k) - above;
    if (need < ties) {
      uint32_t a2, t2;
      const uint32_t pick = radix_nth_each(
          visit, need,
          [&](int v, float x, uint32_t* key) {
            *key = 0xFFFFFFFFu - static_cast<uint32_t>(v);
            return key_of(x) == cut;
          },
          sh, &a2, &t2);
      last = static_cast<int>(0xFFFFFFFFu - pick);
    }
  }
  if (threadIdx.x == 0) fill = 0;
  __syncthreads();
  const uint32_t flat0 = static_cast<uint32_t>(row % a.num_beams) * static_cast<uint32_t>(vocab);
  unsigned long long* out = a.candidates + static_cast<int64_t>(row) * a.row_k;
  const int row_k = a.row_k;
  visit([&](int v, float x) {
    const uint32_t key = key_of(x);
    if (key > cut || (key == cut && v <= last)) {
      const uint32_t pos = atomicAdd(&fill, 1u);
      // Never more than row_k by construction; the bound keeps a logic error from writing out of range.
      if (pos < static_cast<uint32_t>(row_k)) {
        out[pos] = (static_cast<unsigned long long>(key) << 32) | (0xFFFFFFFFu - (flat0 + static_cast<uint32_t>(v)));
      }
    }
  });
  if (threadIdx.x == 0) {
    a.row_stats[2 * row] = m;
    a.row_stats[2 * row + 1] = lse;
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) beam_merge_kernel(const BeamArgs a, int padded) {
  __shared__ unsigned long long ranks[kMergeMax];
  const int item = static_cast<int>(blockIdx.x);
  const int n = a.num_beams * a.row_k;
  const unsigned long long* cand = a.candidates + static_cast<int64_t>(item) * n;
  for (int i = threadIdx.x; i < padded; i += blockDim.x) ranks[i] = i < n ? cand[i] : 0ull;  // 0: below every rank
  __syncthreads();
  // Bitonic sort, descending.
  for (int size = 2; size <= padded; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < padded; i += blockDim.x) {
        const int j = i ^ stride;
        if (j > i) {
          const unsigned long long x = ranks[i], y = ranks[j];
          const bool descending = (i & size) == 0;
          if (descending ? x < y : x > y) {
            ranks[i] = y;
            ranks[j] = x;
          }
        }
      }
      __syncthreads();
    }
  }
  const int64_t vocab = a.in.vocab;
  for (int i = threadIdx.x; i < a.k; i += blockDim.x) {
    const uint32_t flat = 0xFFFFFFFFu - static_cast<uint32_t>(ranks[i] & 0xFFFFFFFFull);
    // Every merged rank is a written candidate (k <= n); the clamps only keep a logic error from
    // turning into an out-of-range read.
    const int64_t beam = min(static_cast<int64_t>(flat) / vocab, static_cast<int64_t>(a.num_beams - 1));
    const int64_t token = static_cast<int64_t>(flat) % vocab;
    const int64_t row = static_cast<int64_t>(item) * a.num_beams + beam;
    const float x = load_one<D>(row_ptr<D>(a.in, row), static_cast<int>(token));
    const int64_t o = static_cast<int64_t>(item) * a.k + i;
    a.scores[o] = beam_score(x, a.row_stats[2 * row], a.row_stats[2 * row + 1], a.beam_scores[row], a.log_softmax);
    a.tokens[o] = token;
    a.beams[o] = beam;
  }
}

#if !defined(PYDECODE_CUDA_EMULATION)
template <int D>
void launch(const BeamArgs& a, int64_t rows, int64_t batch, int padded, cudaStream_t stream) {
  beam_rows_kernel<D><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(a);
  beam_merge_kernel<D><<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(a, padded);
}
#endif

}  // namespace

#if !defined(PYDECODE_CUDA_EMULATION)  // the launchers use <<<>>>; the CPU model calls kernels directly
int64_t beam_merge_limit() { return kMergeMax; }

cudaError_t beam_topk(const RowsIn& in, const float* beam_scores, int64_t num_beams, int64_t k,
                      bool apply_log_softmax, uint64_t* candidates, float* row_stats, float* scores,
                      int64_t* tokens, int64_t* beams, cudaStream_t stream, bool key_bins) {
  require_nonnegative(in.rows, "rows");
  require_nonnegative(in.row_stride, "row_stride");
  require(in.dtype >= 0 && in.dtype <= 2, "dtype code must be 0 (float32), 1 (float16) or 2 (bfloat16), got " +
                                              std::to_string(in.dtype));
  require(in.vocab >= 1, "vocab must be >= 1");
  require(num_beams >= 1, "num_beams must be >= 1");
  require(in.rows % num_beams == 0, "rows must be a multiple of num_beams");
  require(num_beams * in.vocab < (int64_t{1} << 32), "num_beams * vocab must be < 2^32");
  require(k >= 1 && k <= num_beams * in.vocab, "k must be in [1, num_beams * vocab]");
  require(in.rows <= INT_MAX, "rows must be < 2^31");
  const int64_t row_k = k < in.vocab ? k : in.vocab;
  require(num_beams * row_k <= kMergeMax,
          "num_beams * min(k, vocab) must be <= " + std::to_string(kMergeMax) + " for the CUDA beam kernel");
  require_pointer(reinterpret_cast<uintptr_t>(in.data), in.rows * in.vocab, "logits");
  require_pointer(reinterpret_cast<uintptr_t>(beam_scores), in.rows, "beam_scores");
  require_pointer(reinterpret_cast<uintptr_t>(candidates), in.rows * row_k, "candidates");
  require_pointer(reinterpret_cast<uintptr_t>(row_stats), in.rows * 2, "row_stats");
  const int64_t batch = in.rows / num_beams;
  require_pointer(reinterpret_cast<uintptr_t>(scores), batch * k, "scores");
  require_pointer(reinterpret_cast<uintptr_t>(tokens), batch * k, "tokens");
  require_pointer(reinterpret_cast<uintptr_t>(beams), batch * k, "beams");
  if (in.rows == 0) return cudaSuccess;
  int padded = 1;
  while (padded < num_beams * row_k) padded <<= 1;
  const BeamArgs a{in,
                   beam_scores,
                   static_cast<int>(num_beams),
                   static_cast<int>(row_k),
                   static_cast<int>(k),
                   apply_log_softmax,
                   reinterpret_cast<unsigned long long*>(candidates),
                   row_stats,
                   scores,
                   tokens,
                   beams,
                   key_bins};
  switch (in.dtype) {
    case kDTypeF32: launch<kDTypeF32>(a, in.rows, batch, padded, stream); break;
    case kDTypeF16: launch<kDTypeF16>(a, in.rows, batch, padded, stream); break;
    default: launch<kDTypeBF16>(a, in.rows, batch, padded, stream); break;
  }
  return cudaGetLastError();
}

#endif  // !PYDECODE_CUDA_EMULATION

}  // namespace pydecode::cuda
