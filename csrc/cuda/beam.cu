// CUDA kernels of beam search's top-k step (pydecode/ops/beam.py). One block per beam row, then
// one per batch item:
//
// 1. beam_rows_kernel, one block per beam row: log-softmax statistics (max, then the exact sum
//    of exp(x - max), device.cuh's fix40 terms; score = ((x - max) - log(sum)) + beam_score, the
//    operation order of torch's CUDA log_softmax epilogue plus transformers' add), then the row's
//    own top min(k, vocab) by a radix select on the score key (on a candidate list in shared
//    memory when the row's top entries fit on one: the compact path below), ties at the boundary
//    to the lowest index, written as 64-bit ranks (score key << 32 | ~flat index) to scratch.
//    bfloat16 rows with min(k, vocab) <= 64 take their statistics and list in one read instead
//    (scan_list.cuh's one-read list: no shared-memory atomic per entry), then the sum's read with
//    log-softmax: 1 or 2 reads of the row where the statistics pass and the list took 2;
// 2. beam_merge_kernel, one block per batch item: the num_beams * min(k, vocab) ranks sorted in
//    shared memory (bitonic), the first k written out. Ranks are unique, so the top k of the union
//    of each row's top k is the batch item's top k (beam_merge.h's argument) whatever the order
//    the candidates were written in. Scores are recomputed from the logits with the same float
//    ops, so their bits (sign of zero, NaN) are the ones the ranking saw.
//
// Small batches (beam_splits > 1: rows alone would leave most SMs idle, and one block reads a row
// at a fraction of the card's bandwidth) split each row into slices instead, in three launches:
//
// a. beam_slice_kernel, one block per slice: the slice's statistics, and its own top
//    min(row_k, len) logits by value with every tie of the last (a radix select on the slice) on a
//    list in scratch, with the largest logit left off it;
// b. beam_slice_sum_kernel (log-softmax only): the row max from the slices' records, the slice's
//    exact sum;
// c. beam_split_merge_kernel, one block per batch item: each row's max and sum from its slices
//    (exact integer sums: the same bits as one block per row), the listed entries' ranks, sorted,
//    the first k written out as in 2. A score never decreases with its logit, so an unlisted entry
//    scores at most what its slice's left-out logit scores; when that is below the k-th rank's
//    score for every slice, the lists hold the item's top k. Otherwise (rounding made them equal),
//    and for rows the lists cannot serve (NaN, +inf, nothing finite, a non-finite score range, a
//    slice with more ties than its list holds), the block runs 1. on the item's rows itself and
//    merges their candidates: the same outputs as the unsplit launches in every case.
#include <climits>
#include <cmath>
#include <string>
#include <type_traits>

#include "cuda/device.cuh"
#include "cuda/launch.h"
#include "cuda/scan_list.cuh"
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
  bool key_bins;    // list the candidates by the logits' key bins when they fit
  bool top_k_scan;  // bfloat16 rows with k <= kScanMaxKeep: the one-read list (scan_list.cuh)
};

__device__ __forceinline__ float beam_score(float x, float m, float lse, float bs, bool log_softmax) {
  return log_softmax ? ((x - m) - lse) + bs : x + bs;
}

template <int D>
__device__ __forceinline__ const void* row_ptr(const RowsIn& in, int64_t row) {
  return static_cast<const char*>(in.data) + row * in.row_stride * static_cast<int64_t>(sizeof(typename Elem<D>::T));
}

// Log-softmax's max and log-sum of a row from its statistics: torch's max propagates NaN (the
// whole row's log-softmax is NaN), and a max of +-inf makes every x - max NaN or -inf (log-sum
// NaN), so the sum is only taken (sum_of) when the max is finite.
struct RowLse {
  float m;
  float lse;
};
template <class SumOf>
__device__ __forceinline__ RowLse row_lse(float mx, uint32_t nan, const SumOf& sum_of) {
  const float m = nan ? NAN : mx;
  if (!(m > -kInf && m < kInf)) return RowLse{m, NAN};
  return RowLse{m, log_fix40(sum_of(m))};
}

// Whether the compact path (and the split path's lists) may serve a row: no NaN or +inf and
// something finite among its logits (largest mx, smallest finite mn; nan: whether a NaN is there)...
__device__ __forceinline__ bool logits_listable(uint32_t nan, float mx, float mn) {
  return nan == 0 && mn <= mx && mx < kInf;
}
// ... and a finite range of scores, over which the score is monotone in the logit.
__device__ __forceinline__ bool scores_span_finite(float smax, float smin) {
  return smax < kInf && smin > -kInf && smax - smin < kInf;
}

// The shared memory of the row algorithm (row_candidates).
struct RowShared {
  RadixShared sh;
  float fscratch[32];
  uint32_t uscratch[32];
  unsigned long long u64a[32];
  unsigned long long u64b[32];
  uint32_t fill;
  uint32_t scan_thr;  // scan_top_list's shared threshold
  uint32_t scan_pool[kScanPool];  // scan_top_list's pooled thresholds
  unsigned long long list[kCandCap];
};
static_assert(kScanWarpCap * (kThreads / 32) <= kCandCap, "the one-read list's warp buffers share the list");

// The one-read list (scan_list.cuh) of the len logits at src, numbered from begin: their
// kScanMaxKeep largest and all their ties in sh.cand, listed as they are read. Returns the list's
// length, or -1 when it cannot stand in for the statistics pass (a NaN, fewer than kScanMaxKeep
// entries above -inf, a warp buffer of ties); then *mx and *mn get the largest logit (the list's:
// the largest entry is always listed) and the smallest one above -inf. fscratch: 32 floats.
template <int D>
__device__ int scan_logits(const void* src, int len, int begin, const ScanShared sh, float* fscratch, float* mx,
                           float* mn) {
  uint32_t kmax = 0, nan = 0, floor = 0;  // beam's lists are cut to their k largest: no floor needed
  float low = kInf;
  const int n = scan_top_list<D, true>(src, len, begin, [](float x) { return x; }, 1.0f, kScanMaxKeep, sh, &kmax,
                                       &nan, &low, &floor);
  nan = block_reduce(nan, MaxOp(), sh.u32);
  low = block_reduce(low, MinOp(), fscratch);
  if (n < kScanMaxKeep || nan != 0) return -1;
  *mx = key_to_float(kmax);
  *mn = low;
  return n;
}

// The row algorithm (1. above) for beam row `row`, by the whole block: its candidates to
// a.candidates + row * row_k, its max and log-sum to a.row_stats.
template <int D>
__device__ void row_candidates(const BeamArgs& a, int row, RowShared& s) {
  RadixShared& sh = s.sh;
  unsigned long long* list = s.list;
  const int vocab = static_cast<int>(a.in.vocab);
  const void* src = row_ptr<D>(a.in, row);
  const bool select = a.row_k < vocab;
  __syncthreads();  // a previous row's list (the split merge runs rows in turn) has been read
  // Row statistics: the largest non-NaN value (log-softmax's max), the smallest finite one (with
  // the largest, the compact path's bin range), whether a NaN is present.
  float mx = -kInf, mn = kInf;
  uint32_t nan = 0;
  // The one-read list (bfloat16 rows, row_k <= kScanMaxKeep): the row's kScanMaxKeep largest
  // logits and all their ties, listed as the row is read, with its largest and smallest finite
  // value, and no shared-memory atomic per entry (the statistics pass below takes one, for its key
  // bins). The largest entry is always listed, so the list's largest is the row's. A row with a
  // NaN or +inf, fewer than kScanMaxKeep entries above -inf, or a warp buffer of ties takes the
  // statistics pass instead (scan_n -1). Keeping kScanMaxKeep rather than row_k puts the list's
  // smallest score below the row_k-th in all but tied or rounded rows, which the select checks.
  int scan_n = -1;
  if constexpr (D == kDTypeBF16) {
    if (a.top_k_scan && select && a.row_k <= kScanMaxKeep && vocab > kScanMaxKeep) {
      float list_mx, list_mn;
      // Pooled thresholds list about the 64 largest, which leaves the select entries below the k-th
      // only for k up to half of that; larger k keep the warps' own, looser thresholds.
      uint32_t* const pool = a.row_k <= kScanMaxKeep / 2 ? s.scan_pool : nullptr;
      const int n = scan_logits<D>(src, vocab, 0, ScanShared{list, &s.scan_thr, s.uscratch, pool}, s.fscratch,
                                   &list_mx, &list_mn);
      if (n >= 0 && list_mx < kInf) {
        scan_n = n;
        mx = list_mx;
        mn = list_mn;
      }
    }
  }
  // The statistics pass also histograms the logits' key bins (device.cuh) for the compact path.
  const bool key_bins = scan_n < 0 && a.key_bins && select && a.row_k <= kCandCap;
  uint32_t* key_hist = reinterpret_cast<uint32_t*>(list);
  if (key_bins) clear_key_bins(key_hist);
  if (scan_n < 0 && (a.log_softmax || select)) {
    // Branch-free per entry, unswitched on the histogram (as the sampling chain's statistics pass).
    const auto stats = [&](float x, auto bins) {
      const bool listable = x > -kInf;  // false for NaN and -inf
      nan |= x != x ? 1u : 0u;
      mx = x > mx ? x : mx;
      mn = listable && x < mn ? x : mn;
      if (bins) atomicAdd(&key_hist[key_slot(sort_key(x), listable)], 1u);
    };
    if (key_bins) {
      for_row<D, kFastLoads>(src, vocab, [&](int, float x) { stats(x, std::true_type()); });
    } else {
      for_row<D, kFastLoads>(src, vocab, [&](int, float x) { stats(x, std::false_type()); });
    }
    mx = block_reduce(mx, MaxOp(), s.fscratch);
    mn = block_reduce(mn, MinOp(), s.fscratch);
    nan = block_reduce(nan, MaxOp(), s.uscratch);
  }
  const KeyBinList key_list = key_bins ? key_bin_list(key_hist, static_cast<uint32_t>(a.row_k), sh) : KeyBinList{};
  // The compact path (device.cuh's candidate lists) may serve rows without NaN or +inf that have
  // something finite and a top row_k that fits on a list; the scores' range decides below.
  const bool compact = select && a.row_k <= kCandCap && logits_listable(nan, mx, mn);
  // With log-softmax, the key-bin list is copied in the sum's read (two reads of the row, not three):
  // the bins are known from the statistics pass. Its entries take one shared atomic each (few: the
  // list is the row's top bins), in no fixed order, which nothing depends on: the selects count,
  // and ties are broken by index.
  const bool list_in_sum = a.log_softmax && compact && key_list.low >= 0;
  // Whether an entry goes on the key-bin list (the rest: the largest is the left-out logit, below);
  // one comparison (KeyBinList::lowest), where the sort key and its bin took ten instructions.
  const float lowest = key_list.low >= 0 ? key_list.lowest() : kInf;
  const auto on_key_list = [lowest](float x) { return x >= lowest; };
  RowLse stats{0.0f, 0.0f};
  float sum_left_out = kInf;
  if (a.log_softmax) {
    stats = row_lse(mx, nan, [&](float m) {
      ThreadSum z;
      if (list_in_sum) {
        if (threadIdx.x == 0) s.fill = 0;
        __syncthreads();  // the key-bin histogram, in the list's memory, has been read
        float out = -kInf;
        for_row<D, kFastLoads>(src, vocab, [&](int v, float x) {
          z.add(fix40(expf(x - m)));
          const bool listed = on_key_list(x);
          out = fmaxf(out, listed ? -kInf : x);  // no NaN here (compact rows)
          if (listed) {  // rare: the value is read again (from L1), so no entry's stays live for it
            const uint32_t pos = atomicAdd(&s.fill, 1u);
            // the bound: a logic error only
            if (pos < static_cast<uint32_t>(kCandCap)) list[pos] = pack_cand(v, load_one<D>(src, v));
          }
        });
        sum_left_out = block_reduce(out, MaxOp(), s.fscratch);  // its barriers also complete the list
      } else {
        for_row<D, kFastLoads>(src, vocab, [&](int, float x) { z.add(fix40(expf(x - m))); });
      }
      return block_sum(z.wide(), s.u64a, s.u64b);
    });
  }
  const float m = stats.m, lse = stats.lse;
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
    if (threadIdx.x == 0) s.fill = 0;
    __syncthreads();
    append_entries<D>(src, vocab, 0, take, list, &s.fill, kCandCap);
    __syncthreads();
  };
  if (compact) {
    const float smax = score_of(mx), smin = score_of(mn);
    if (scores_span_finite(smax, smin)) {
      if (scan_n >= 0) {
        listed = scan_n;  // every unlisted logit is below the list's smallest: checked after the select
      } else if (key_list.low >= 0) {
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
          left_out = block_reduce(out, MaxOp(), s.fscratch);
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
      if (listed >= 0) keys = list_keys(list, listed, key_of, beam_key(smax), s.uscratch);
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
    // The one-read list stands when its smallest score (keys.lo, exact: list_keys) is below the
    // k-th: an unlisted logit is below the list's smallest, and scores never decrease with logits.
    const bool scan_short = scan_n >= 0 && listed >= 0 && !(keys.lo < cut);
    if (scan_short || (left_out < kInf && left_out > -kInf && !(key_of(left_out) < cut))) {
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
  if (threadIdx.x == 0) s.fill = 0;
  __syncthreads();
  const uint32_t flat0 = static_cast<uint32_t>(row % a.num_beams) * static_cast<uint32_t>(vocab);
  unsigned long long* out = a.candidates + static_cast<int64_t>(row) * a.row_k;
  const int row_k = a.row_k;
  visit([&](int v, float x) {
    const uint32_t key = key_of(x);
    if (key > cut || (key == cut && v <= last)) {
      const uint32_t pos = atomicAdd(&s.fill, 1u);
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
  __syncthreads();  // the candidates and statistics are written (the split merge reads them next)
}

// (At least 1 block per SM: without it ptxas squeezed the kernel into 32 registers, two blocks'
// worth, spilling 40 bytes; as before the key-bin list it takes 54-56, one block per SM, no spills.)
template <int D>
__global__ void __launch_bounds__(kThreads, 1) beam_rows_kernel(const BeamArgs a) {
  __shared__ RowShared s;
  row_candidates<D>(a, static_cast<int>(blockIdx.x), s);
}

// Sorts ranks[0, padded) descending (bitonic; padded a power of 2), by the whole block.
__device__ void sort_ranks(unsigned long long* ranks, int padded) {
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
}

// The smallest power of 2 >= n (n >= 1).
__device__ __forceinline__ int pow2_at_least(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

// Batch item `item`'s outputs from its ranks sorted descending (at least k of them).
template <int D>
__device__ void write_top_k(const BeamArgs& a, int item, const unsigned long long* ranks) {
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

// The item's num_beams * row_k candidates (row_candidates') into ranks, sorted.
__device__ void load_candidates(const BeamArgs& a, int item, unsigned long long* ranks) {
  const int n = a.num_beams * a.row_k;
  const int padded = pow2_at_least(n);
  const unsigned long long* cand = a.candidates + static_cast<int64_t>(item) * n;
  for (int i = threadIdx.x; i < padded; i += blockDim.x) ranks[i] = i < n ? cand[i] : 0ull;  // 0: below every rank
  __syncthreads();
  sort_ranks(ranks, padded);
}

template <int D>
__global__ void __launch_bounds__(kThreads) beam_merge_kernel(const BeamArgs a) {
  __shared__ unsigned long long ranks[kMergeMax];
  const int item = static_cast<int>(blockIdx.x);
  load_candidates(a, item, ranks);
  write_top_k<D>(a, item, ranks);
}

// ------------------------------------------------------------------------------- split rows
// A slice's record in the split path's scratch (launch.h's kBeamSliceWords uint64 per slice).
struct SliceRecord {
  float mx;           // largest non-NaN logit (-inf: none)
  float mn;           // smallest finite logit (+inf: none)
  uint32_t nan;       // whether a NaN is present
  int32_t count;      // listed entries; -1: more ties than the list holds, or a NaN
  uint32_t left_out;  // sort key of the largest unlisted logit; 0: every entry is listed
  uint32_t pad;
  unsigned long long sum_lo, sum_hi;     // the slice's exact sum of exp(x - row max) (log-softmax)
  unsigned long long list[kBeamSliceCap];  // pack_cand(index in the row, logit)
};
static_assert(sizeof(SliceRecord) == kBeamSliceWords * sizeof(uint64_t), "launch.h's kBeamSliceWords");

struct SliceArgs {
  int splits;
  SliceRecord* records;  // rows * splits
};

// Slice blockIdx.y of `splits` of a row of `vocab`: slices start at multiples of 8 entries, so a
// 16-byte aligned row gives 16-byte aligned slices; trailing ones may be empty.
struct Slice {
  int begin;
  int len;
  __device__ static Slice of(int vocab, int splits) {
    const int64_t chunk = ((static_cast<int64_t>(vocab) + splits - 1) / splits + 7) & ~int64_t{7};
    int64_t b = chunk * static_cast<int64_t>(blockIdx.y);
    b = b < vocab ? b : vocab;
    return Slice{static_cast<int>(b), static_cast<int>(chunk < vocab - b ? chunk : vocab - b)};
  }
  // The slice's first entry in row `row`.
  template <int D>
  __device__ const void* data(const RowsIn& in, int64_t row) const {
    return static_cast<const char*>(row_ptr<D>(in, row)) +
           static_cast<int64_t>(begin) * static_cast<int64_t>(sizeof(typename Elem<D>::T));
  }
};

// Whether a slice takes the one-read list (kScan below): bfloat16 rows whose slices list at most
// half of the list's entries, so that the list holds entries below the slice's n-th (the left-out
// logit is then exact). The launcher and the CPU model pick the kernel by this rule.
__host__ __device__ constexpr bool slice_scan(const BeamArgs& a, int dtype) {
  return a.top_k_scan && dtype == kDTypeBF16 && a.row_k <= kScanMaxKeep / 2;
}

// a. (see the top): statistics and list of one slice. Needs a.row_k < vocab. kScan (slice_scan):
// the slice's kScanMaxKeep largest logits are listed as it is read (scan_list.cuh) with its
// largest and smallest finite logit, and the select runs on that list instead of the slice: one
// read where the statistics, the radix passes and the copy took 4-6. The slice's n-th logit and
// its ties are on the list, and every unlisted logit is below the list's smallest, so the entries
// at or above the n-th and the largest logit below it (the left-out, when the list holds one
// below the n-th; else the n-th's own key, a bound the merge checks alike) are the slice's.
// A NaN, a short slice or a buffer of ties takes the statistics pass as without it.
template <int D, bool kScan = false>
__global__ void __launch_bounds__(kThreads) beam_slice_kernel(const BeamArgs a, const SliceArgs sa) {
  __shared__ RadixShared sh;
  __shared__ float fscratch[32];
  __shared__ uint32_t uscratch[32];
  __shared__ uint32_t fill;
  const int row = static_cast<int>(blockIdx.x);
  const Slice slice = Slice::of(static_cast<int>(a.in.vocab), sa.splits);
  const void* src = slice.data<D>(a.in, row);
  SliceRecord& r = sa.records[static_cast<int64_t>(row) * sa.splits + blockIdx.y];
  // The slice's top n = min(row_k, len) logits with every tie of the n-th: the entries whose key
  // is at least the n-th largest key. A row with NaN is served by the row algorithm: no list.
  const uint32_t n = static_cast<uint32_t>(a.row_k < slice.len ? a.row_k : slice.len);
  float mx = -kInf, mn = kInf;
  uint32_t nan = 0;
  int count = -1;
  uint32_t left_out = 0;
  bool listed = false;  // count and left_out are set
  if constexpr (kScan) {
    __shared__ unsigned long long scan[kCandCap];
    __shared__ uint32_t scan_thr;
    __shared__ uint32_t scan_pool[kScanPool];
    static_assert(kScanWarpCap * (kThreads / 32) <= kCandCap, "the warps' buffers share the list");
    if (n < static_cast<uint32_t>(slice.len) && slice.len > kScanMaxKeep) {
      const int m = scan_logits<D>(src, slice.len, slice.begin, ScanShared{scan, &scan_thr, uscratch, scan_pool},
                                   fscratch, &mx, &mn);
      if (m >= 0) {
        const uint32_t kmax = sort_key(mx);
        const auto key = [](float x) { return sort_key(x); };
        uint32_t above, ties;
        const uint32_t cut = radix_nth_each(
            [&](auto&& f) { for_list(scan, m, f); }, n,
            [](int, float x, uint32_t* k) {
              *k = sort_key(x);
              return true;
            },
            sh, &above, &ties, NoMerge(), list_keys(scan, m, key, kmax, uscratch));
        if (above + ties <= static_cast<uint32_t>(kBeamSliceCap)) {
          if (threadIdx.x == 0) fill = 0;
          __syncthreads();
          uint32_t out = 0;
          for (int i = threadIdx.x; i < m; i += blockDim.x) {
            const unsigned long long c = scan[i];
            const uint32_t k = sort_key(__uint_as_float(static_cast<uint32_t>(c)));
            if (k >= cut) {
              r.list[atomicAdd(&fill, 1u)] = c;  // pack_cand(index in the row, logit), as copy_list's
            } else {
              out = k > out ? k : out;
            }
          }
          out = block_reduce(out, MaxOp(), uscratch);
          count = static_cast<int>(above + ties);
          // Off the list, the slice's logits lie below its smallest, the cut's: a bound (0: none).
          left_out = out != 0 ? out : (m < slice.len ? cut : 0u);
        }
        listed = true;
      }
    }
  }
  if (!listed) {
    const auto each = [&](auto&& f) { for_row<D>(src, slice.len, [&](int i, float x) { f(slice.begin + i, x); }); };
    uint32_t kmin = 0xFFFFFFFFu;
    mx = -kInf;
    mn = kInf;
    for_row<D, kFastLoads>(src, slice.len, [&](int, float x) {
      nan |= x != x ? 1u : 0u;
      mx = x > mx ? x : mx;
      mn = x > -kInf && x < mn ? x : mn;
      const uint32_t key = sort_key(x);  // NaN's is the largest: never the minimum
      kmin = key < kmin ? key : kmin;
    });
    mx = block_reduce(mx, MaxOp(), fscratch);
    mn = block_reduce(mn, MinOp(), fscratch);
    nan = block_reduce(nan, MaxOp(), uscratch);
    kmin = block_reduce(kmin, MinOp(), uscratch);
    // The slice's entries where take(x) holds to its list (at most kBeamSliceCap, counted beforehand).
    const auto copy_list = [&](auto&& take) {
      if (threadIdx.x == 0) fill = 0;
      __syncthreads();
      append_entries<D>(src, slice.len, slice.begin, take, r.list, &fill, kBeamSliceCap);
    };
    if (nan != 0) {
      count = -1;
    } else if (n == static_cast<uint32_t>(slice.len)) {  // all of it (or nothing: an empty slice)
      copy_list([](float) { return true; });
      count = slice.len;
    } else {
      uint32_t above, ties;
      const uint32_t cut = radix_nth_each(
          each, n,
          [](int, float x, uint32_t* key) {
            *key = sort_key(x);
            return true;
          },
          sh, &above, &ties, NoMerge(), KeyRange{kmin, sort_key(mx)});
      if (above + ties <= static_cast<uint32_t>(kBeamSliceCap)) {
        count = static_cast<int>(above + ties);
        uint32_t out = 0;
        copy_list([&](float x) {
          const uint32_t key = sort_key(x);
          if (key >= cut) return true;
          out = key > out ? key : out;
          return false;
        });
        left_out = block_reduce(out, MaxOp(), uscratch);
      }
    }
  }
  if (threadIdx.x == 0) {
    r.mx = mx;
    r.mn = mn;
    r.nan = nan;
    r.count = count;
    r.left_out = left_out;
  }
}

// The row's max and NaN flag from its slices' records.
__device__ __forceinline__ void row_max_of(const SliceRecord* rec, int splits, float* mx, uint32_t* nan) {
  float m = -kInf;
  uint32_t bad = 0;
  for (int i = 0; i < splits; ++i) {
    m = rec[i].mx > m ? rec[i].mx : m;
    bad |= rec[i].nan;
  }
  *mx = m;
  *nan = bad;
}

// b. (see the top): the slice's exact sum of exp(x - row max), for log-softmax rows with a finite max.
template <int D>
__global__ void __launch_bounds__(kThreads) beam_slice_sum_kernel(const BeamArgs a, const SliceArgs sa) {
  __shared__ unsigned long long lo_s[32], hi_s[32];
  const int row = static_cast<int>(blockIdx.x);
  const Slice slice = Slice::of(static_cast<int>(a.in.vocab), sa.splits);
  SliceRecord* rec = sa.records + static_cast<int64_t>(row) * sa.splits;
  float mx;
  uint32_t nan;
  row_max_of(rec, sa.splits, &mx, &nan);
  const float m = nan ? NAN : mx;
  if (!(m > -kInf && m < kInf)) return;  // row_lse takes no sum (block-uniform)
  const void* src = slice.data<D>(a.in, row);
  ThreadSum t;
  for_row<D, kFastLoads>(src, slice.len, [&](int, float x) { t.add(fix40(expf(x - m))); });
  const U128 z = block_sum(t.wide(), lo_s, hi_s);
  if (threadIdx.x == 0) {
    rec[blockIdx.y].sum_lo = z.lo;
    rec[blockIdx.y].sum_hi = z.hi;
  }
}

// c. (see the top): one batch item's top k from its rows' slice lists, or from the row algorithm.
template <int D>
__global__ void __launch_bounds__(kThreads, 1) beam_split_merge_kernel(const BeamArgs a, const SliceArgs sa) {
  __shared__ RowShared s;  // the row algorithm's, when it runs; else s.list holds the ranks
  const int item = static_cast<int>(blockIdx.x);
  const int nb = a.num_beams;
  const int splits = sa.splits;
  unsigned long long* ranks = s.list;
  // Each row's statistics (its max and log-sum to row_stats), whether its lists may serve, and the
  // entries they hold.
  uint32_t ok = 1, total = 0;
  for (int b = threadIdx.x; b < nb; b += blockDim.x) {
    const int row = item * nb + b;
    const SliceRecord* rec = sa.records + static_cast<int64_t>(row) * splits;
    float mx, mn = kInf;
    uint32_t nan;
    row_max_of(rec, splits, &mx, &nan);
    for (int i = 0; i < splits; ++i) {
      mn = rec[i].mn < mn ? rec[i].mn : mn;
      if (rec[i].count < 0) ok = 0;
      total += rec[i].count < 0 ? 0u : static_cast<uint32_t>(rec[i].count);
    }
    RowLse st{0.0f, 0.0f};
    if (a.log_softmax) {
      st = row_lse(mx, nan, [&](float) {
        U128 z;
        for (int i = 0; i < splits; ++i) {
          U128 part;
          part.lo = rec[i].sum_lo;
          part.hi = rec[i].sum_hi;
          z.add(part);
        }
        return z;
      });
    }
    a.row_stats[2 * row] = st.m;
    a.row_stats[2 * row + 1] = st.lse;
    const float bs = a.beam_scores[row];
    const bool usable = logits_listable(nan, mx, mn) &&
                        scores_span_finite(beam_score(mx, st.m, st.lse, bs, a.log_softmax),
                                           beam_score(mn, st.m, st.lse, bs, a.log_softmax));
    if (!usable) ok = 0;
  }
  ok = block_reduce(ok, MinOp(), s.uscratch);
  total = block_reduce(total, AddOp(), s.uscratch);  // its barriers also publish row_stats
  if (total > static_cast<uint32_t>(kMergeMax)) ok = 0;
  if (ok) {
    // The listed entries' ranks, and the largest score key a slice's unlisted entries can have.
    if (threadIdx.x == 0) s.fill = 0;
    __syncthreads();
    uint32_t unlisted = 0;  // 0: none
    const int warp = static_cast<int>(threadIdx.x >> 5), lane = static_cast<int>(threadIdx.x & 31);
    const int warps = static_cast<int>(blockDim.x >> 5);
    for (int p = warp; p < nb * splits; p += warps) {
      const int b = p / splits;
      const int row = item * nb + b;
      const SliceRecord& r = sa.records[static_cast<int64_t>(row) * splits + p % splits];
      const float m = a.row_stats[2 * row], lse = a.row_stats[2 * row + 1], bs = a.beam_scores[row];
      const uint32_t flat0 = static_cast<uint32_t>(b) * static_cast<uint32_t>(a.in.vocab);
      for (int i = lane; i < r.count; i += 32) {
        const unsigned long long c = r.list[i];
        const float x = __uint_as_float(static_cast<uint32_t>(c));
        const uint32_t v = static_cast<uint32_t>(c >> 32);
        const uint32_t pos = atomicAdd(&s.fill, 1u);
        ranks[pos] = (static_cast<unsigned long long>(beam_key(beam_score(x, m, lse, bs, a.log_softmax))) << 32) |
                     (0xFFFFFFFFu - (flat0 + v));
      }
      if (lane == 0 && r.left_out != 0) {
        const uint32_t key = beam_key(beam_score(key_to_float(r.left_out), m, lse, bs, a.log_softmax));
        unlisted = key > unlisted ? key : unlisted;
      }
    }
    unlisted = block_reduce(unlisted, MaxOp(), s.uscratch);  // its barriers also complete the ranks
    const int padded = pow2_at_least(static_cast<int>(total));
    for (int i = static_cast<int>(total) + threadIdx.x; i < padded; i += blockDim.x) ranks[i] = 0ull;
    __syncthreads();
    sort_ranks(ranks, padded);
    // An unlisted entry with the k-th rank's score could rank above it by a lower index.
    if (unlisted != 0 && unlisted >= static_cast<uint32_t>(ranks[a.k - 1] >> 32)) ok = 0;
    __syncthreads();  // every thread has read ranks[k - 1] before the row algorithm may reuse them
  }
  if (!ok) {
    for (int b = 0; b < nb; ++b) row_candidates<D>(a, item * nb + b, s);
    load_candidates(a, item, ranks);
  }
  write_top_k<D>(a, item, ranks);
}

#if !defined(PYDECODE_CUDA_EMULATION)
template <int D>
void launch(const BeamArgs& a, int64_t rows, int64_t batch, const SliceArgs& sa, cudaStream_t stream) {
  if (sa.splits > 1) {
    const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(sa.splits));
    bool scan = false;
    if constexpr (D == kDTypeBF16) {  // the one-read list's kernel is built for bfloat16 only
      scan = slice_scan(a, D);
      if (scan) beam_slice_kernel<D, true><<<grid, kThreads, 0, stream>>>(a, sa);
    }
    if (!scan) beam_slice_kernel<D><<<grid, kThreads, 0, stream>>>(a, sa);
    if (a.log_softmax) beam_slice_sum_kernel<D><<<grid, kThreads, 0, stream>>>(a, sa);
    beam_split_merge_kernel<D><<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(a, sa);
    return;
  }
  beam_rows_kernel<D><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(a);
  beam_merge_kernel<D><<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(a);
}
#endif

}  // namespace

#if !defined(PYDECODE_CUDA_EMULATION)  // the launchers use <<<>>>; the CPU model calls kernels directly
int64_t beam_merge_limit() { return kMergeMax; }

int beam_splits(int64_t rows, int64_t vocab, int64_t num_beams, int64_t k, int64_t forced) {
  const int64_t row_k = k < vocab ? k : vocab;
  // The split path needs a selection (row_k < vocab) whose lists fit: each slice lists row_k and
  // the ties of its last, and an item's lists go through one shared-memory sort.
  if (rows <= 0 || num_beams <= 0 || row_k >= vocab || row_k > kBeamSplitMaxK) return 1;
  const int64_t by_merge = kMergeMax / (2 * num_beams * row_k);  // room for ties
  if (forced > 0) {
    int64_t splits = forced < vocab ? forced : vocab;
    splits = splits < by_merge ? splits : by_merge;
    return splits > 65535 ? 65535 : (splits < 1 ? 1 : static_cast<int>(splits));
  }
  // Like greedy_splits: while the rows alone would leave most SMs idle, ~2 blocks per SM of an
  // H100, slices of >= kBeamMinSlice entries.
  if (rows >= 128) return 1;
  int64_t splits = (256 + rows - 1) / rows;
  splits = splits < vocab / kBeamMinSlice ? splits : vocab / kBeamMinSlice;
  splits = splits < kBeamMaxSplits ? splits : kBeamMaxSplits;
  splits = splits < by_merge ? splits : by_merge;
  return splits < 2 ? 1 : static_cast<int>(splits);
}

cudaError_t beam_topk(const RowsIn& in, const float* beam_scores, int64_t num_beams, int64_t k,
                      bool apply_log_softmax, uint64_t* candidates, float* row_stats, float* scores,
                      int64_t* tokens, int64_t* beams, cudaStream_t stream, bool key_bins, int splits,
                      uint64_t* split_scratch, int64_t split_scratch_len, bool top_k_scan) {
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
  require(splits >= 1 && splits <= 65535, "splits must be in [1, 65535], got " + std::to_string(splits));
  if (splits > 1) {
    require(row_k < in.vocab && row_k <= kBeamSplitMaxK,
            "splits > 1 needs min(k, vocab) < vocab and <= " + std::to_string(kBeamSplitMaxK));
    require(in.rows * splits <= INT_MAX, "rows * splits must be < 2^31");
    require(split_scratch != nullptr && split_scratch_len >= in.rows * splits * kBeamSliceWords,
            "split_scratch must hold rows * splits * " + std::to_string(kBeamSliceWords) + " uint64 for splits > 1");
  }
  if (in.rows == 0) return cudaSuccess;
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
                   key_bins,
                   top_k_scan};
  const SliceArgs sa{splits, reinterpret_cast<SliceRecord*>(split_scratch)};
  switch (in.dtype) {
    case kDTypeF32: launch<kDTypeF32>(a, in.rows, batch, sa, stream); break;
    case kDTypeF16: launch<kDTypeF16>(a, in.rows, batch, sa, stream); break;
    default: launch<kDTypeBF16>(a, in.rows, batch, sa, stream); break;
  }
  return cudaGetLastError();
}

#endif  // !PYDECODE_CUDA_EMULATION

}  // namespace pydecode::cuda
