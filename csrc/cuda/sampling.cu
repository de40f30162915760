// CUDA kernels of the sampling family (pydecode/ops/sampling.py): temperature, greedy and one
// fused filter chain (temperature or log -> top-k -> top-p -> min-p -> outputs), one thread block
// per row. What they reproduce is the torch reference run on CUDA (= transformers' warpers):
//
// * y = float32(x) * float32(1.0 / T), the reciprocal of the double T taken in double: torch on
//   CUDA turns transformers' division by a Python float into that multiply (measured on an H200;
//   1.0f / float32(T) differs by one ulp for T = 1.1, 0.85, 3.1, ...), or log(x) for probabilities.
// * Top-k: radix select of the keep-th largest order-preserving key (NaN ranks highest, like
//   torch.topk): 4 passes of 8 bits with integer shared-memory histograms. Every tie of the
//   k-th value is kept, as transformers keeps it.
// * Top-p: transformers keeps token i iff the softmax mass of the tokens after it in the
//   ascending sort is < 1 - float32(1 - top_p). Masses are summed in 32.32 fixed point
//   (exp(y - max) * 2^32 rounded to an integer): integer sums are exact and order-free, so the
//   boundary is deterministic, found by a radix descent over the keys with mass histograms (no
//   float atomics). Inside a group of equal values the ascending sort is stable, so the group's
//   highest indices are the ones kept. The float32 cumsum of the reference rounds differently,
//   so a token whose mass lies within ~1e-6 of the threshold can be decided the other way.
// * Min-p: keep exp(y - max) >= float32(min_p) (p >= min_p * p_max with the common 1/sum
//   factor cancelled); min_tokens_to_keep by a top-n select (ties: lowest index, torch.topk's).
// * Sampling: Gumbel-max with the Philox noise of the randomness contract, correctly rounded
//   logs (the CPU kernels' log_cr), ties to the lowest index through a 64-bit packed
//   (score key, ~index) integer max, so the result does not depend on the reduction order.
// * Log-prob: (y - max) - log(sum of exp(y - max) over the kept set), the sum exact in 128-bit
//   fixed point (order-free like everything else that is reduced).
// * Small batches (chain_splits): each row is cut into `splits` slices, one block each, and every
//   row-wide value above (maxima, histograms, masses, counts, the sampled token, the sum) is
//   merged with integer atomics in device memory between the blocks of a row, which then continue
//   from the same merged values: same outputs as one block per row, bit for bit.
#include <atomic>
#include <cfloat>
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
constexpr float kInf = INFINITY;

// The float32 factor of `x / T` as torch computes it on CUDA for a Python float T (see the top).
__device__ __forceinline__ float temperature_factor(double t) { return __double2float_rn(__drcp_rn(t)); }

// The kept set of a row: key > key, or key == key and tie_lo <= index <= tie_hi.
struct Cut {
  uint32_t key;
  int tie_lo;
  int tie_hi;
};

__device__ __forceinline__ bool kept(const Cut& c, uint32_t key, int v) {
  return key > c.key || (key == c.key && v >= c.tie_lo && v <= c.tie_hi);
}

// The boundary bins of a wide nucleus (fit_nucleus): the bins lo..hi hold `count` entries, the bins
// above hi `above` entries; lo < 0: none.
struct WideBins {
  int lo;
  int hi;
  uint32_t count;
  uint32_t above;
};

// A 256-bin histogram of fixed-point masses in shared memory (terms of at most 2^32, sums below
// 2^64), added to with 32-bit atomics on each bin's two halves. sm_90 has no 64-bit shared-memory
// atomic add: nvcc's stand-in is a compare-and-swap loop (ATOMS.CAST.SPIN.64) that retries while
// other threads hit the same bin, so a pass whose entries share a few bins (a radix descent's
// first digit over a whole row, a wide nucleus' boundary bins) serialised on it. The add that
// wraps a low word sees so in the old value its atomic returns, and it alone carries into the
// high word: the sums are the same integers in any order.
struct MassBins {
  uint32_t lo[256];
  uint32_t hi[256];

  __device__ __forceinline__ void clear(int b) {
    lo[b] = 0;
    hi[b] = 0;
  }
  __device__ __forceinline__ void add(int b, unsigned long long v) {
    const uint32_t low = static_cast<uint32_t>(v);
    const uint32_t old = atomicAdd(&lo[b], low);
    const uint32_t carry = static_cast<uint32_t>(v >> 32) + (low > ~old ? 1u : 0u);
    if (carry != 0) atomicAdd(&hi[b], carry);
  }
  __device__ __forceinline__ unsigned long long operator[](int b) const {
    return (static_cast<unsigned long long>(hi[b]) << 32) | lo[b];
  }
  __device__ __forceinline__ void set(int b, unsigned long long v) {
    lo[b] = static_cast<uint32_t>(v);
    hi[b] = static_cast<uint32_t>(v >> 32);
  }
};

struct Shared : RadixShared {
  MassBins mass;
  uint32_t u32[32];
  unsigned long long u64[32];
  unsigned long long u64b[32];
  unsigned long long mass_above;
  WideBins wide;
  uint32_t cand_count;
  uint32_t merge_count;  // merge_scan_lists' copy of the row's list
  uint32_t scan_thr;    // scan_top_list: the highest threshold a warp has reached
  uint32_t scan_pool[kScanPool];  // scan_top_list: the warps' largest keys (top-k rows)
  double bin_exp[257];  // fit_nucleus: exp(-j * width of a gap bin) for j in [0, 256]
  unsigned long long cand[kCandCap];
};

// ------------------------------------------------------------- split-vocabulary row merges
// A row split over `splits` blocks (grid.y) merges each block's partial results in device memory:
// integer atomics only (histogram counts, fixed-point masses, maxima), so a merged value does not
// depend on which block adds first, and every block continues from the same merged values, so all
// blocks of a row take the same branches and meet the same barriers. The launch is cooperative
// (every block resident at once), which the barrier's spin-wait needs.
//
// Per-row scratch (zeroed by the launcher): a barrier counter and three merge buffers used in
// turn. Merge step s adds into buffer s % 3; the row's first block zeroes buffer (s + 1) % 3 while
// it opens step s: the last reads of that buffer (step s - 2) finished before barrier s - 1.
struct MergeBuf {
  unsigned long long mass[256];
  unsigned long long s[4];
  uint32_t hist[256];
};
struct SplitScratch {
  unsigned long long counter;
  MergeBuf buf[3];
  // The row's candidate list (the compact paths), filled once by the gap histogram's list or by
  // the one-read top-k list, which has its own count: when it fails, the gap list follows.
  unsigned long long cand_count;
  unsigned long long scan_count;
  unsigned long long scan_floor;  // the highest of the blocks' one-read list floors
  uint32_t row_pool[kScanPool];   // top-k rows: each block's largest listed keys (merge_scan_lists)
  unsigned long long cand[kCandCap];
};
static_assert(sizeof(SplitScratch) == kChainScratchWords * sizeof(uint64_t), "launch.h's kChainScratchWords");

template <bool kSplit>
struct RowSync;

// One block per row: every merge is the identity.
template <>
struct RowSync<false> {
  __device__ __forceinline__ void hist(uint32_t*) {}
  __device__ __forceinline__ void hist_mass(uint32_t*, MassBins&) {}
  __device__ __forceinline__ void stats(uint32_t&, uint32_t&, uint32_t&) {}
  __device__ __forceinline__ void barrier() { __syncthreads(); }
  __device__ __forceinline__ void add(unsigned long long&) {}
  __device__ __forceinline__ void count_min(uint32_t&, uint32_t&) {}
  __device__ __forceinline__ void sample(unsigned long long&, U128&, uint32_t&) {}
};

// The methods take block-wide values (the same in every thread of the block, as block_reduce
// returns them; histograms in shared memory after a __syncthreads) and return the row's.
template <>
struct RowSync<true> {
  SplitScratch* rs;
  unsigned long long splits;
  unsigned long long step;
  bool lead;

  __device__ MergeBuf* open() {
    if (lead) {
      MergeBuf* next = &rs->buf[(step + 1) % 3];
      for (int i = threadIdx.x; i < 256; i += blockDim.x) {
        next->mass[i] = 0;
        next->hist[i] = 0;
        if (i < 4) next->s[i] = 0;
      }
    }
    return &rs->buf[step % 3];
  }

  // Barrier of the row's blocks: every block's atomics (and the lead's zeroing) of this step are
  // visible to every block after it.
  __device__ void close() {
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
      atomicAdd(&rs->counter, 1ull);
      const unsigned long long target = (step + 1) * splits;
      while (coherent_load(&rs->counter) < target) __nanosleep(64);
      __threadfence();
    }
    __syncthreads();
    ++step;
  }

  __device__ void hist(uint32_t* h) {
    MergeBuf* b = open();
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
      if (h[i] != 0) atomicAdd(&b->hist[i], h[i]);
    }
    close();
    for (int i = threadIdx.x; i < 256; i += blockDim.x) h[i] = coherent_load(&b->hist[i]);
    __syncthreads();
  }

  __device__ void hist_mass(uint32_t* h, MassBins& m) {
    MergeBuf* b = open();
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
      if (h[i] != 0) atomicAdd(&b->hist[i], h[i]);
      const unsigned long long mi = m[i];
      if (mi != 0) atomicAdd(&b->mass[i], mi);
    }
    close();
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
      h[i] = coherent_load(&b->hist[i]);
      m.set(i, coherent_load(&b->mass[i]));
    }
    __syncthreads();
  }

  // Two maxima and a minimum (as the complement of a maximum: the zeroed buffer is its identity).
  __device__ void stats(uint32_t& a, uint32_t& c, uint32_t& kmin) {
    MergeBuf* b = open();
    if (threadIdx.x == 0) {
      atomicMax(&b->s[0], static_cast<unsigned long long>(a));
      atomicMax(&b->s[1], static_cast<unsigned long long>(c));
      atomicMax(&b->s[2], static_cast<unsigned long long>(~kmin));
    }
    close();
    a = static_cast<uint32_t>(coherent_load(&b->s[0]));
    c = static_cast<uint32_t>(coherent_load(&b->s[1]));
    kmin = ~static_cast<uint32_t>(coherent_load(&b->s[2]));
  }

  // Every block's writes before it are visible to every block after it.
  __device__ void barrier() {
    open();
    close();
  }

  __device__ void add(unsigned long long& v) {
    MergeBuf* b = open();
    if (threadIdx.x == 0) atomicAdd(&b->s[0], v);
    close();
    v = coherent_load(&b->s[0]);
  }

  // The minimum as the complement of a maximum, so that the zeroed buffer is its identity.
  __device__ void count_min(uint32_t& count, uint32_t& kmin) {
    MergeBuf* b = open();
    if (threadIdx.x == 0) {
      atomicAdd(&b->s[0], static_cast<unsigned long long>(count));
      atomicMax(&b->s[1], static_cast<unsigned long long>(~kmin));
    }
    close();
    count = static_cast<uint32_t>(coherent_load(&b->s[0]));
    kmin = ~static_cast<uint32_t>(coherent_load(&b->s[1]));
  }

  // best: packed max; z: 128-bit sum (the low word's old value tells whether this add carried);
  // bad: max.
  __device__ void sample(unsigned long long& best, U128& z, uint32_t& bad) {
    MergeBuf* b = open();
    if (threadIdx.x == 0) {
      atomicMax(&b->s[0], best);
      const unsigned long long old = atomicAdd(&b->s[1], z.lo);
      atomicAdd(&b->s[2], z.hi + (old + z.lo < old ? 1ull : 0ull));
      atomicMax(&b->s[3], static_cast<unsigned long long>(bad));
    }
    close();
    best = coherent_load(&b->s[0]);
    z.lo = coherent_load(&b->s[1]);
    z.hi = coherent_load(&b->s[2]);
    bad = static_cast<uint32_t>(coherent_load(&b->s[3]));
  }
};

// The entries of a row one block reads: all of it, or (kSplit) slice blockIdx.y.
template <int D, bool kSplit>
struct RowPart {
  const void* data;  // the slice's first entry
  int begin;         // its index in the row
  int len;
  RowSync<kSplit> sync;
  KeyRange values;  // the sort keys of the row's values: any

  // f(v, x) for the slice's entries, v numbered in the row (kLoads: see for_row).
  template <int kLoads = 1, class F>
  __device__ __forceinline__ void each(F&& f) const {
    const int b = begin;
    for_row<D, kLoads>(data, len, [&](int i, float x) { f(b + i, x); });
  }

  // radix_nth_each over the whole row (range: bounds on the keys keyfn returns).
  template <class KeyFn>
  __device__ __forceinline__ uint32_t nth(uint32_t n, KeyFn keyfn, Shared& sh, uint32_t* above, uint32_t* ties,
                                          KeyRange range = KeyRange()) {
    return radix_nth_each([this](auto&& f) { each(f); }, n, keyfn, sh, above, ties,
                          [this](uint32_t* h) { sync.hist(h); }, range);
  }
};

// The candidate list in shared memory (the compact path): every block of the row holds all of it,
// so nothing is merged. Same interface as RowPart for the stages that only visit kept entries.
struct CandPart {
  const unsigned long long* cand;
  int count;
  RowSync<false> sync;
  KeyRange values;  // the smallest and largest sort key of the listed values

  template <class F>
  __device__ __forceinline__ void each(F&& f) const {
    for_list(cand, count, f);
  }

  // range: bounds on the keys keyfn returns (part.values for sort keys of the values).
  template <class KeyFn>
  __device__ __forceinline__ uint32_t nth(uint32_t n, KeyFn keyfn, Shared& sh, uint32_t* above, uint32_t* ties,
                                          KeyRange range = KeyRange()) {
    return radix_nth_each([this](auto&& f) { each(f); }, n, keyfn, sh, above, ties, NoMerge(), range);
  }
};

// The keys of indices [0, vocab) (tie_high) or of their complements: the radix selects that pick
// among tied entries by index start below the bytes every index shares (3 reads of a row of
// 128256 instead of 4).
__device__ __forceinline__ KeyRange index_keys(uint32_t vocab, bool tie_high) {
  const uint32_t last = vocab > 0 ? vocab - 1 : 0;
  return tie_high ? KeyRange{0u, last} : KeyRange{0xFFFFFFFFu - last, 0xFFFFFFFFu};
}

// The n-th highest (tie_high) or lowest index among the kept entries of `part` whose value has key
// `key` (n <= their count): which members of a tied group a cut keeps.
template <class Part, class YFn>
__device__ int nth_index_in_group(Part& part, const YFn& yof, const Cut cut, uint32_t key, uint32_t n, bool tie_high,
                                  uint32_t vocab, Shared& sh) {
  uint32_t above, ties;
  const uint32_t pick = part.nth(
      n,
      [&](int v, float x, uint32_t* k) {
        *k = tie_high ? static_cast<uint32_t>(v) : 0xFFFFFFFFu - static_cast<uint32_t>(v);
        const uint32_t sk = sort_key(yof(x));
        return sk == key && kept(cut, sk, v);
      },
      sh, &above, &ties, index_keys(vocab, tie_high));
  return static_cast<int>(tie_high ? pick : 0xFFFFFFFFu - pick);
}

// Keeps the n largest of the kept set (n <= its size); inside the group of equal values at the
// boundary the highest (tie_high) or lowest indices.
template <class Part, class YFn>
__device__ Cut keep_top_n(Part& part, const YFn& yof, const Cut cut, uint32_t n, bool tie_high, uint32_t vocab,
                          Shared& sh) {
  uint32_t above, ties;
  const uint32_t k = part.nth(
      n,
      [&](int v, float x, uint32_t* key) {
        *key = sort_key(yof(x));
        return kept(cut, *key, v);
      },
      sh, &above, &ties, part.values);
  const uint32_t need = n - above;
  const int lo = cut.key == k ? cut.tie_lo : 0;
  const int hi = cut.key == k ? cut.tie_hi : INT_MAX;
  if (need >= ties) return Cut{k, lo, hi};
  const int pick = nth_index_in_group(part, yof, cut, k, need, tie_high, vocab, sh);
  return tie_high ? Cut{k, pick, hi} : Cut{k, lo, pick};
}

// Mass and count of the kept entries above everything a part holds (the wide-nucleus list: the
// bins above it), zero for a whole row.
struct Above {
  unsigned long long mass = 0;
  uint32_t count = 0;
};

// Top-p boundary by a radix descent on mass histograms: the lowest key K of the kept set whose
// mass strictly above it is < limit. Returns K; *mass_above / *count_above: mass and count of
// kept entries with a larger key (base included); *ties: kept entries with key K.
template <class Part, class YFn, class EFn>
__device__ uint32_t mass_descent(Part& part, const YFn& yof, const EFn& efix, const Cut cut, double limit,
                                 const Above base, Shared& sh, unsigned long long* mass_above, uint32_t* count_above,
                                 uint32_t* ties) {
  uint32_t prefix, mask;
  unsigned long long a_hi = base.mass;
  uint32_t c_hi = base.count;
  for (int shift = part.values.start(&prefix, &mask); shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
      sh.hist[i] = 0;
      sh.mass.clear(i);
    }
    __syncthreads();
    part.each([&](int v, float x) {
      const float y = yof(x);
      const uint32_t key = sort_key(y);
      if (kept(cut, key, v) && (key & mask) == prefix) {
        const uint32_t d = (key >> shift) & 255u;
        atomicAdd(&sh.hist[d], 1u);
        sh.mass.add(d, efix(y));
      }
    });
    __syncthreads();
    part.sync.hist_mass(sh.hist, sh.mass);
    if (threadIdx.x < 32) {
      const int lane = static_cast<int>(threadIdx.x);
      unsigned long long mtot;
      uint32_t ctot;
      unsigned long long run = lane_exclusive_suffix(sh.mass, lane, &mtot);
      uint32_t crun = lane_exclusive_suffix(sh.hist, lane, &ctot);
      int found = -1;
      unsigned long long found_mass = 0;
      uint32_t found_count = 0;
      for (int j = 0; j < 8; ++j) {
        const int b = 255 - 8 * lane - j;
        if (sh.hist[b] > 0 && static_cast<double>(a_hi + run) < limit) {
          found = b;  // keeps the lowest qualifying bin of this lane's run
          found_mass = run;
          found_count = crun;
        }
        run += sh.mass[b];
        crun += sh.hist[b];
      }
      // Bins descend with the lane: the lowest qualifying bin is in the highest lane that has one.
      const unsigned owners = __ballot_sync(0xFFFFFFFFu, found >= 0);
      const int src = owners ? 31 - __clz(owners) : 0;
      found = __shfl_sync(0xFFFFFFFFu, found, src);
      found_mass = __shfl_sync(0xFFFFFFFFu, found_mass, src);
      found_count = __shfl_sync(0xFFFFFFFFu, found_count, src);
      if (lane == 0) {
        found = found < 0 ? 255 : found;  // unreachable for limit > 0 (the top bin qualifies)
        sh.bin = found;
        sh.mass_above = found_mass;
        sh.above = found_count;
        sh.bin_count = sh.hist[found];
      }
    }
    __syncthreads();
    prefix |= static_cast<uint32_t>(sh.bin) << shift;
    mask |= 255u << shift;
    a_hi += sh.mass_above;
    c_hi += sh.above;
    *ties = sh.bin_count;
  }
  *mass_above = a_hi;
  *count_above = c_hi;
  return prefix;
}

struct ChainArgs {
  RowsIn in;
  ChainSpec spec;
  int splits = 1;                   // blocks per row (grid.y) of the kSplit kernel
  SplitScratch* scratch = nullptr;  // rows of it, zeroed (kSplit)
};

// What the stages of one row share.
struct RowCtx {
  const ChainSpec* spec;
  int row;
  float ymax;
  bool softmax_ok;
  uint32_t mtk;        // min_tokens_to_keep, at most vocab
  const void* src;     // the row's first entry
  bool writer;         // this block writes the row's token and log-prob
  uint32_t vocab;
};

// ------------------------------------------------------------------------------ compact path
// Top-k with a small k, and top-p whose nucleus is small, only ever look at the row's highest
// entries. The compact path lists a superset of them (select_top_bins + append_entries, device.cuh:
// a histogram read and a copy read of the row, the gap binned on y) and runs every later stage on
// the list in shared memory, instead of re-reading the row for each radix digit (4 reads for
// top-k, 5 for top-p, 1 for sampling; the H200 run measured those passes, whose first digits send
// every shared-memory atomic to one or two bins, as the chain's cost). The list's order is
// arbitrary and every later reduction is order-free (integer histograms, masses and maxima), so
// the outputs equal the full-row path's bit for bit.
//
// Top-k (k <= kCandCap): the bins down to the one holding the k-th largest entry; the k-th value
// and all its ties are in. Top-p with no top-k: the top bins holding at most kCandCap entries,
// used only when their mass reaches the top-p limit (then the boundary is among them, since every
// entry outside is below every entry inside) and min_tokens_to_keep fits; else the full-row path
// runs. So do lists that would not fit (ties, a long flat row, k > kCandCap) and rows with NaN or
// inf.

// The top-p limit on the mass strictly above a kept entry: transformers removes an entry when the
// mass at or below it is <= float32(1 - top_p), i.e. keeps it while the mass above it is
// < 1 - float32(1 - top_p) (masses here are unnormalised: times the kept set's total).
// (A double total: list_holds_nucleus' bound; the limit only rises with it.)
__device__ __forceinline__ double top_p_limit(double top_p, double total) {
  const float threshold = static_cast<float>(1.0 - top_p);
  return (1.0 - static_cast<double>(threshold)) * total;
}

// Top-p's list need only reach the nucleus' boundary. Each bin's count and gap edges bound the
// mass of the top bins: when even the upper bound falls short of the limit, the full-row path runs
// without the copy read; else the list shrinks to the top bins whose lower bound reaches the limit
// (holding at least min_tokens_to_keep). Margins cover expf's error and the fixed-point rounding.
// The bounds only choose the list: the kernel then checks the list's exact mass. When no list of
// top bins can hold the nucleus, the bounds locate the bins that can hold its boundary instead
// (sh.wide, for wide_top_p). Thread 0 decides from the merged histogram, so every block of a split
// row decides alike. The bounds' factors exp(-j * width) come from a table the block fills first:
// thread 0 then only multiplies and adds (it took up to 510 double exps one after another, a
// latency every row paid).
__device__ void locate_boundary_bins(Shared& sh, double limit, uint32_t mtk);

__device__ void fit_nucleus(Shared& sh, const GapBins& bins, double limit, uint32_t mtk) {
  if (threadIdx.x == 0) sh.wide.lo = -1;  // set on every path: the kernel reads it whenever no list fits
  if (bins.scale > 0.0f) {  // block-uniform: the bins come from the row's merged statistics
    const double width = 1.0 / static_cast<double>(bins.scale);  // of a bin, in y
    for (int j = threadIdx.x; j <= 256; j += blockDim.x) sh.bin_exp[j] = exp(-j * width);
    __syncthreads();
  }
  if (threadIdx.x == 0 && bins.scale > 0.0f) {
    const double* ex = sh.bin_exp;
    if (sh.bin >= 0) {
      double lower = 0.0, upper = 0.0;  // bounds on sum exp(y - ymax) over bins b..255
      uint32_t count = 0;
      int fit = -1;
      uint32_t fit_count = 0;
      for (int b = 255; b >= sh.bin; --b) {
        const double c = static_cast<double>(sh.hist[b]);
        upper += c * ex[255 - b];
        if (b > 0) lower += c * ex[256 - b];  // bin 0 also holds the gaps past the range
        count += sh.hist[b];
        if (fit < 0 && count >= mtk && lower * 4294967296.0 * (1.0 - 1e-6) - count >= limit) {
          fit = b;
          fit_count = count;
        }
      }
      if (upper * 4294967296.0 * (1.0 + 1e-6) + count < limit) {
        sh.bin = -1;
      } else if (fit >= 0) {
        sh.bin = fit;
        sh.bin_count = fit_count;
      }
    }
    if (sh.bin < 0) locate_boundary_bins(sh, limit, mtk);
  }
  __syncthreads();
}

// A wide nucleus (more entries than the list holds): with M(b) the mass of the bins above bin b,
// the top-p boundary lies in the highest bin b whose M(b - 1) reaches the limit (entries there
// have less than the limit above them, every entry below has more). The bounds give the bins that
// can be it: hi, the highest b whose upper bound on M(b - 1) reaches the limit, down to lo, the
// highest whose lower bound does. Taken (sh.wide) when the bins above hi hold at least
// min_tokens_to_keep - 1 entries (the nucleus, the boundary's group included, then never falls
// short of it). Bin 0 also holds the gaps past the range (its lower bound is 0): a boundary there
// is left to the full-row path. The margin is wider than fit_nucleus': it only widens the range,
// and the exact masses are checked (wide_top_p).
__device__ void locate_boundary_bins(Shared& sh, double limit, uint32_t mtk) {
  constexpr double kOne = 4294967296.0, kMargin = 1e-4;
  const double* ex = sh.bin_exp;
  double lower = 0.0, upper = 0.0;  // bounds on M(b - 1): exp(y - ymax) summed over bins b..255
  uint32_t count = 0;               // entries in bins b..255
  uint32_t above = 0;               // entries in the bins above hi
  int hi = -1;
  for (int b = 255; b >= 1; --b) {
    const uint32_t c = sh.hist[b];
    upper += static_cast<double>(c) * ex[255 - b];
    lower += static_cast<double>(c) * ex[256 - b];
    count += c;
    if (hi < 0 && upper * kOne * (1.0 + kMargin) + count >= limit) {
      hi = b;
      above = count - c;
    }
    if (hi >= 0 && lower * kOne * (1.0 - kMargin) - count >= limit) {
      if (above + 1 >= mtk) sh.wide = WideBins{b, hi, count - above, above};
      return;
    }
  }
}

// Lists the n entries of `part` where take(x) holds (n <= kCandCap, counted beforehand) in
// sh.cand: directly, or for a split row through the row's list in device memory, which every
// block then copies. take(x) runs once for every entry of the part.
template <int D, bool S, class Take>
__device__ void list_entries(RowPart<D, S>& part, const Take& take, int n, Shared& sh) {
  if (threadIdx.x == 0) sh.cand_count = 0;
  __syncthreads();
  if constexpr (S) {
    SplitScratch* rs = part.sync.rs;
    append_entries<D>(part.data, part.len, part.begin, take, rs->cand,
                      reinterpret_cast<unsigned int*>(&rs->cand_count), kCandCap);
    part.sync.barrier();
    for (int i = threadIdx.x; i < n; i += blockDim.x) sh.cand[i] = coherent_load(&rs->cand[i]);
  } else {
    append_entries<D>(part.data, part.len, part.begin, take, sh.cand, &sh.cand_count, kCandCap);
  }
  __syncthreads();
}

// The compact path's histogram read (top-k: `keep` > 0; top-p: keep == 0, and *total gets the mass
// of the whole row, exp(y - ymax) in 32.32 fixed point, and the list's bins are fitted to the
// nucleus): leaves the list's lowest bin in sh.bin (-1: no list) and its length in sh.bin_count.
template <int D, bool S, class YFn, class EFn>
__device__ void bin_row(RowPart<D, S>& part, const YFn& yof, const EFn& efix, const GapBins& bins, uint32_t keep,
                        double top_p, uint32_t mtk, unsigned long long* total, Shared& sh) {
  unsigned long long mass = 0;
  // Unswitched on top-p's row mass (taken in the same read), so neither loop branches per entry.
  const auto histogram = [&](const auto& also) {
    select_top_bins([&](auto&& f) { part.template each<kFastLoads>(f); }, yof, also, bins, keep, kCandCap,
                    [&](uint32_t* h) { part.sync.hist(h); }, sh);
  };
  if (keep == 0) {
    histogram([&](float y) { mass += efix(y); });
  } else {
    histogram([](float) {});
  }
  if (keep == 0) {
    mass = block_reduce(mass, AddOp(), sh.u64);
    part.sync.add(mass);
    *total = mass;
    fit_nucleus(sh, bins, top_p_limit(top_p, mass), mtk);
  }
}

// Whether the list of n entries in sh.cand decides top-p: its mass reaches the limit and
// min_tokens_to_keep fits in it.
template <class YFn, class EFn>
__device__ __forceinline__ unsigned long long list_mass(int n, const YFn& yof, const EFn& efix, Shared& sh) {
  unsigned long long listed = 0;
  for_list(sh.cand, n, [&](int, float x) { listed += efix(yof(x)); });
  return block_reduce(listed, AddOp(), sh.u64);
}

template <class YFn, class EFn>
__device__ __forceinline__ bool list_reaches(int n, const YFn& yof, const EFn& efix, double limit, uint32_t mtk,
                                             Shared& sh) {
  return static_cast<double>(list_mass(n, yof, efix, sh)) >= limit && mtk <= static_cast<uint32_t>(n);
}

// Whether the one-read list of a top-p row (n > 0 entries in sh.cand, every entry of the row at or
// above its smallest: a top prefix) surely holds the nucleus, from the list alone: its mass reaches
// top-p's limit on an upper bound of the row's mass, the list's plus, for each entry off it (all
// below the list's smallest), the mass of the list's smallest with a margin for expf's error and
// the fixed point's rounding. The limit only rises with the mass, so the list then reaches the
// limit on the row's exact mass too (as list_reaches would find, min_tokens_to_keep aside), and
// the read that sums it needs no histogram (row_mass: no shared-memory atomic an entry). A decode
// step's nucleus is usually a few entries far above the rest; a wide one fails the bound and
// takes bin_row's histogram. *listed: the list's mass.
template <class YFn, class EFn>
__device__ bool list_holds_nucleus(int n, uint32_t vocab, const YFn& yof, const EFn& efix, double top_p,
                                   unsigned long long* listed, Shared& sh) {
  const unsigned long long mass = list_mass(n, yof, efix, sh);
  const uint32_t lo = list_keys(sh.cand, n, [&](float x) { return sort_key(yof(x)); }, 0xFFFFFFFFu, sh.u32).lo;
  *listed = mass;
  const double off = static_cast<double>(vocab - static_cast<uint32_t>(n));
  const double smallest = static_cast<double>(efix(key_to_float(lo)));
  const double upper = static_cast<double>(mass) + off * (smallest * (1.0 + 1e-6) + 1.0);
  return static_cast<double>(mass) >= top_p_limit(top_p, upper);
}

// The row's mass, exp(y - ymax) in 32.32 fixed point summed (bin_row's total, without its
// histogram): a read of the part, then the row's sum in every block.
template <int D, bool S, class YFn, class EFn>
__device__ unsigned long long row_mass(RowPart<D, S>& part, const YFn& yof, const EFn& efix, Shared& sh) {
  unsigned long long mass = 0;
  part.template each<kFastLoads>([&](int, float x) { mass += efix(yof(x)); });
  mass = block_reduce(mass, AddOp(), sh.u64);
  part.sync.add(mass);
  return mass;
}

// Lists the bins bin_row chose in sh.cand (a read of the row): returns the list's length, or -1
// when it chose none (it would not fit or, top-p, cannot reach the limit).
template <int D, bool S, class YFn>
__device__ int list_top_bins(RowPart<D, S>& part, const YFn& yof, const GapBins& bins, Shared& sh) {
  const int low = sh.bin;
  const int n = static_cast<int>(sh.bin_count);
  if (low < 0) return -1;
  list_entries(part, [&](float x) { return bins(yof(x)) >= low; }, n, sh);
  return n;
}

// ----------------------------------------------------------------------------- one-read top-k
// The list itself is csrc/cuda/scan_list.cuh (beam.cu's rows use it too).
static_assert(kScanWarpCap * (kThreads / 32) <= kCandCap, "the warps' buffers share the candidate list");
// The list is its own instantiation of the chain kernel (kScan), so the kernel without it is
// unchanged; it is built for bfloat16 rows only: each instantiation adds about a sixth to this
// file's compile time. The launchers (and the CPU model's) pick it by this rule.
constexpr bool scan_kernel_built(int dtype) { return dtype == kDTypeBF16; }

// The row's list of a split row from its blocks' lists (n: this block's length, -1 when it could
// not be built; floor: its list's floor, scan_top_list's): each block appends its list to the
// row's list in device memory, which every block then copies. A block whose list could crowd the
// row's out of kCandCap (longer than its share) first keeps only the entries at or above its own
// keep-th largest key (at least the row's keep-th, so nothing top-k keeps is dropped): a radix
// select, which the short lists of pooled thresholds (scan_list.cuh) skip. The copy keeps the
// entries at or above the highest of the blocks' floors F (at most the row's keep-th largest key):
// every block listed all of its entries at or above F, so the row's list is every entry of the row
// at or above F, a top prefix of the sorted row as top-p's and min-p's stages need. (The blocks'
// lists alone are not one: a block's unlisted entries may lie above another block's listed ones.)
// Returns the length (the same in every block), or -1 when some block had no list or the row's
// would not fit. The same row barrier merges the blocks' statistics (kmax, nan, kmin: the block's
// in, the row's out, as RowSync::stats), so a split row's list costs one row barrier, not two.
//
// Top-k rows (top_k: keep is top-k's) copy less: F alone reaches about the row's 700th largest
// entry (15 slices of 128256, pooled lists of ~64-85), a list the warp finish must first cut to
// top-k's set with a radix select (~16 block barriers). So each block also publishes its list's
// kScanPool / splits largest keys in the row pool (warp_publish_list: distinct entries, as the
// block's own pool), and the copy starts at the highest key with keep of the row pool's keys at
// or above it (pooled_floor), when that is above F: the row has keep entries there, so every entry
// top-k keeps is copied, and a list of about keep entries fits the warp. A block whose list is
// longer than a warp holds publishes nothing (fewer keys counted: a lower bound, still a bound).
template <class KeyOf>
__device__ int merge_scan_lists(RowSync<true>& sync, int n, uint32_t floor, uint32_t keep, bool top_k,
                                const KeyOf& key_of, uint32_t* kmax, uint32_t* nan, uint32_t* kmin, Shared& sh) {
  const int per_block = sync.splits <= kScanPool ? kScanPool / static_cast<int>(sync.splits) : 0;
  SplitScratch* rs = sync.rs;
  auto* row_count = reinterpret_cast<unsigned int*>(&rs->scan_count);
  // Warp-aggregated appends, every thread running the same iterations.
  const auto append = [](unsigned int* count, unsigned long long* out, bool take, unsigned long long e) {
    if (__ballot_sync(0xFFFFFFFFu, take) == 0) return;
    const uint32_t start = warp_claim(count, take ? 1u : 0u);
    if (take && start < static_cast<uint32_t>(kCandCap)) out[start] = e;
  };
  if (threadIdx.x == 0) sh.merge_count = 0;
  if (n < 0) {
    if (threadIdx.x == 0) atomicAdd(row_count, static_cast<unsigned int>(kCandCap) + 1u);
  } else if (n > 0) {
    uint32_t floor_key = 0;
    if (static_cast<uint32_t>(n) > keep && static_cast<unsigned long long>(n) * sync.splits > kCandCap) {
      // The block's largest listed key is its kmax (the row's is not known before the barrier).
      CandPart cands{sh.cand, n, {}, list_keys(sh.cand, n, key_of, *kmax, sh.u32)};
      uint32_t above, ties;
      floor_key = cands.nth(
          keep,
          [&](int, float x, uint32_t* key) {
            *key = key_of(x);
            return true;
          },
          sh, &above, &ties, cands.values);
    }
    if (threadIdx.x == 0) {
      atomicMax(&rs->scan_floor, static_cast<unsigned long long>(floor_key > floor ? floor_key : floor));
    }
    if (top_k && per_block > 0 && n <= kScanWarpCap && threadIdx.x < 32) {
      warp_publish_list(sh.cand, static_cast<uint32_t>(n), key_of, rs->row_pool + blockIdx.y * per_block, per_block,
                        true);
    }
    for (int i0 = 0; i0 < n; i0 += static_cast<int>(blockDim.x)) {
      const int i = i0 + static_cast<int>(threadIdx.x);
      const unsigned long long e = i < n ? sh.cand[i] : 0ull;
      append(row_count, rs->cand, i < n && key_of(__uint_as_float(static_cast<uint32_t>(e))) >= floor_key, e);
    }
  }
  sync.stats(*kmax, *nan, *kmin);
  const uint32_t total = coherent_load(row_count);
  if (total > static_cast<uint32_t>(kCandCap)) return -1;
  uint32_t row_floor = static_cast<uint32_t>(coherent_load(&rs->scan_floor));
  if (top_k && per_block > 0) {  // every warp finds the same bound: no barrier to share it
    const uint32_t pooled = pooled_floor(rs->row_pool, kScanPool, keep);
    row_floor = pooled > row_floor ? pooled : row_floor;
  }
  for (int i0 = 0; i0 < static_cast<int>(total); i0 += static_cast<int>(blockDim.x)) {
    const int i = i0 + static_cast<int>(threadIdx.x);
    const unsigned long long e = i < static_cast<int>(total) ? coherent_load(&rs->cand[i]) : 0ull;
    append(&sh.merge_count, sh.cand,
           i < static_cast<int>(total) && key_of(__uint_as_float(static_cast<uint32_t>(e))) >= row_floor, e);
  }
  __syncthreads();
  return static_cast<int>(sh.merge_count);
}

// Top-k on any part: the cut keeping the `keep` largest and all their ties (kept_count: its size).
template <class Part, class YFn>
__device__ void top_k_cut(Part& part, const YFn& yof, uint32_t keep, Shared& sh, Cut* cut, uint32_t* kept_count) {
  uint32_t above, ties;
  const uint32_t k = part.nth(
      keep,
      [&](int, float x, uint32_t* key) {
        *key = sort_key(yof(x));
        return true;
      },
      sh, &above, &ties, part.values);
  // (>= keep NaNs: the k-th value is NaN and transformers removes nothing.)
  if (k != kNanKey) {
    *cut = Cut{k, 0, INT_MAX};
    *kept_count = above + ties;
  }
}

// How many members of top-p's boundary group (`ties` entries of key `key`, with mass_above above
// them) top-p keeps: the j-th highest has mass_above + j * e above it, kept while < limit; at
// least one.
template <class EFn>
__device__ __forceinline__ uint32_t top_p_group(const EFn& efix, uint32_t key, double limit,
                                                unsigned long long mass_above, uint32_t ties) {
  const unsigned long long e = efix(key_to_float(key));
  const double room = limit - static_cast<double>(mass_above);
  double n = e == 0 ? static_cast<double>(ties) : ceil(room / static_cast<double>(e));
  n = n < 1.0 ? 1.0 : (n > ties ? static_cast<double>(ties) : n);
  return static_cast<uint32_t>(n);
}

// Top-p on `part` (the row, or a candidate list) from the cut top-k left, whose size *kept_count
// is updated. row_total: the mass of the kept set when the caller has it, else null (one pass
// sums it). above: the kept entries above everything `part` holds (the wide-nucleus list), which
// must then number at least min_tokens_to_keep - 1 (keep_top_n below only sees `part`).
template <class Part, class YFn, class EFn>
__device__ Cut top_p_stage(Part& part, const RowCtx& r, const YFn& yof, const EFn& efix, Cut cut,
                           uint32_t* kept_count, const unsigned long long* row_total, const Above above,
                           Shared& sh) {
  unsigned long long total = 0;
  const Cut c0 = cut;
  if (row_total != nullptr) {
    total = *row_total;
  } else {
    part.each([&](int v, float x) {
      const float y = yof(x);
      if (kept(c0, sort_key(y), v)) total += efix(y);
    });
    total = block_reduce(total, AddOp(), sh.u64);
    part.sync.add(total);
  }
  const double limit = top_p_limit(r.spec->top_p[r.row], total);
  uint32_t keep_count = 0, group = 0, ties = 0, key = 0;
  if (limit > 0.0) {
    unsigned long long mass_above;
    uint32_t count_above;
    key = mass_descent(part, yof, efix, c0, limit, above, sh, &mass_above, &count_above, &ties);
    group = top_p_group(efix, key, limit, mass_above, ties);
    keep_count = count_above + group;
  }
  const uint32_t need = r.mtk < *kept_count ? r.mtk : *kept_count;
  if (keep_count < need) {
    *kept_count = need;
    return keep_top_n(part, yof, c0, need, true, r.vocab, sh);
  }
  *kept_count = keep_count;
  if (group < ties) {
    // Stable ascending sort: the group's highest indices are the last positions, the kept ones.
    const int pick = nth_index_in_group(part, yof, c0, key, group, true, r.vocab, sh);
    return Cut{key, pick, c0.key == key ? c0.tie_hi : INT_MAX};
  }
  return key != c0.key ? Cut{key, 0, INT_MAX} : cut;
}

// Min-p and sampling on `part` (the row, or its candidate list) from the cut the earlier stages
// left (kept_count: its size). Returns the final cut.
// Whether min-p (bar mp, as float32) keeps a value y of a row whose largest is ymax: the test of
// min_p_and_sample, and of the one-read list deciding that a row's min-p set is on it.
__device__ __forceinline__ bool min_p_keeps(float y, float ymax, float mp) { return expf(y - ymax) >= mp; }

template <int D, class Part, class YFn>
__device__ Cut min_p_and_sample(Part& part, const RowCtx& r, const YFn& yof, Cut cut, uint32_t kept_count,
                                Shared& sh) {
  const ChainSpec& s = *r.spec;
  const int row = r.row;
  if (s.min_p != nullptr && s.min_p[row] > 0.0 && r.softmax_ok) {
    const float mp = static_cast<float>(s.min_p[row]);
    uint32_t count = 0, kmin = 0xFFFFFFFFu;
    const Cut c0 = cut;
    const float ymax = r.ymax;
    part.each([&](int v, float x) {
      const float y = yof(x);
      const uint32_t key = sort_key(y);
      if (kept(c0, key, v) && min_p_keeps(y, ymax, mp)) {
        ++count;
        kmin = key < kmin ? key : kmin;
      }
    });
    count = block_reduce(count, AddOp(), sh.u32);
    kmin = block_reduce(kmin, MinOp(), sh.u32);
    part.sync.count_min(count, kmin);
    const uint32_t need = r.mtk < kept_count ? r.mtk : kept_count;
    if (count >= need) {
      if (count > 0 && kmin > cut.key) cut = Cut{kmin, 0, INT_MAX};
      kept_count = count;
    } else {
      cut = keep_top_n(part, yof, c0, need, false, r.vocab, sh);
      kept_count = need;
    }
  }

  if (s.tokens != nullptr) {
    const uint64_t seed = static_cast<uint64_t>(s.seed[row]);
    const uint64_t offset = static_cast<uint64_t>(s.offset[row]);
    const bool want_lp = s.logprobs != nullptr;
    const float ymax = r.ymax;
    unsigned long long best = 0;
    U128 z;
    uint32_t bad = 0;  // a NaN softmax term (+inf - +inf): the log-prob is NaN
    const Cut c0 = cut;
    part.each([&](int v, float x) {
      const float y = yof(x);
      const uint32_t key = sort_key(y);
      if (key == kNanKey || !kept(c0, key, v)) return;
      if (y > -kInf) {
        const float score = y + gumbel_noise(seed, offset, static_cast<uint32_t>(v));
        const unsigned long long packed =
            (static_cast<unsigned long long>(sort_key(score)) << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(v));
        best = packed > best ? packed : best;
      }
      if (want_lp) {
        const float t = expf(y - ymax);  // y <= ymax: t in [0, 1] or NaN
        if (t != t) {
          bad = 1;
        } else {
          z.add(fix63(t));
        }
      }
    });
    best = block_reduce(best, MaxOp(), sh.u64);
    if (want_lp) {
      z = block_sum(z, sh.u64, sh.u64b);
      bad = block_reduce(bad, MaxOp(), sh.u32);
    }
    part.sync.sample(best, z, bad);
    if (r.writer && threadIdx.x == 0) {
      const int token = best == 0 ? 0 : static_cast<int>(0xFFFFFFFFu - static_cast<uint32_t>(best));
      s.tokens[row] = token;
      if (want_lp) {
        const float lse = bad ? NAN : log_fix63(z);
        s.logprobs[row] = best == 0 ? -kInf : (yof(load_one<D>(r.src, token)) - ymax) - lse;
      }
    }
  }
  return cut;
}

// Top-p, min-p and sampling on `part` (the row, or its candidate list), from the cut top-k left.
// row_total: the mass of the kept set when the caller has it (the compact top-p path), else null.
// Returns the final cut. Inlined: left to itself nvcc outlines the row instantiation, and the call
// costs the kernel a 320-376 byte stack frame of spills (sm_90, ptxas -v).
template <int D, class Part, class YFn, class EFn>
__device__ __forceinline__ Cut chain_stages(Part& part, const RowCtx& r, const YFn& yof, const EFn& efix, Cut cut,
                            uint32_t kept_count, const unsigned long long* row_total, Shared& sh) {
  if (r.spec->top_p != nullptr && r.spec->top_p[r.row] < 1.0 && r.softmax_ok) {
    cut = top_p_stage(part, r, yof, efix, cut, &kept_count, row_total, Above(), sh);
  }
  return min_p_and_sample<D>(part, r, yof, cut, kept_count, sh);
}

// ------------------------------------------------------------------------ one-warp list finish
// A short candidate list (at most kWarpList entries: a top-k row's list cut to top-k's set by
// prune_list, a small key-bin list, a short one-read list of a top-p or min-p row) in a call that
// wants only the token and its log-prob finishes in one warp, with no block barrier: the warp
// sorts the list (a bitonic network over
// (key, index), both descending), and every radix select of the stages becomes a lookup by rank
// in that order. The n-th largest key of a kept set is its n-th entry; a tied group's kept
// members are consecutive, highest index first; top-p's boundary group is the last one whose
// first member has less than the limit above it (exclusive prefix sums of the same fixed-point
// masses). Same integers, same comparisons as top_k_cut, top_p_stage and min_p_and_sample, so the
// same cut and token bit for bit. The block's stages pass 20-45 barriers on a list (3 a radix pass,
// 2 a reduction) with most of the block idle, a latency every row pays after its read (at batch 1
// the call's latency). The block's other warps, and the other blocks of a split row, are done.
constexpr int kWarpList = 128;
constexpr int kWarpPer = kWarpList / 32;  // entries a lane holds: positions lane * kWarpPer + j

// Sorts the warp's kWarpList values into descending order of position (bitonic network: distances
// of kWarpPer and more between lanes, shorter ones within a lane).
__device__ __forceinline__ void warp_sort_desc(unsigned long long (&e)[kWarpPer]) {
  const int lane = static_cast<int>(threadIdx.x & 31);
#pragma unroll
  for (int size = 2; size <= kWarpList; size <<= 1) {
#pragma unroll
    for (int d = size >> 1; d > 0; d >>= 1) {
#pragma unroll
      for (int j = 0; j < kWarpPer; ++j) {
        const bool desc = ((lane * kWarpPer + j) & size) == 0;  // this pair's order (both members agree)
        if (d >= kWarpPer) {
          const unsigned long long other = __shfl_xor_sync(0xFFFFFFFFu, e[j], d / kWarpPer);
          const bool take_max = ((lane & (d / kWarpPer)) == 0) == desc;  // the lower position of a descending pair
          e[j] = take_max ? (other > e[j] ? other : e[j]) : (other < e[j] ? other : e[j]);
        } else if ((j & d) == 0) {
          const unsigned long long a = e[j], b = e[j | d];
          const unsigned long long hi = a > b ? a : b, lo = a > b ? b : a;
          e[j] = desc ? hi : lo;
          e[j | d] = desc ? lo : hi;
        }
      }
    }
  }
}

// The warp's sorted list: (key << 32 | index) a position, 0 past the end (every key is > 0).
struct WarpList {
  unsigned long long e[kWarpPer];

  __device__ __forceinline__ uint32_t key(int j) const { return static_cast<uint32_t>(e[j] >> 32); }
  __device__ __forceinline__ int index(int j) const { return static_cast<int>(static_cast<uint32_t>(e[j])); }
  __device__ __forceinline__ bool listed(int j) const { return e[j] != 0; }
  __device__ __forceinline__ bool kept_by(const Cut& c, int j) const { return listed(j) && kept(c, key(j), index(j)); }

  // How many positions the predicate p(j) holds at, over the warp.
  template <class P>
  __device__ __forceinline__ uint32_t count(const P& p) const {
    uint32_t n = 0;
#pragma unroll
    for (int j = 0; j < kWarpPer; ++j) n += static_cast<uint32_t>(__popc(__ballot_sync(0xFFFFFFFFu, p(j))));
    return n;
  }

  // The entry of rank r (from 0, in position order) among the entries kept by c.
  __device__ __forceinline__ unsigned long long kept_rank(const Cut& c, uint32_t r) const {
    uint32_t mine = 0;
#pragma unroll
    for (int j = 0; j < kWarpPer; ++j) mine += kept_by(c, j) ? 1u : 0u;
    uint32_t rank = warp_inclusive_sum(mine) - mine;
    unsigned long long hit = 0;
#pragma unroll
    for (int j = 0; j < kWarpPer; ++j) {
      const bool k = kept_by(c, j);
      hit = k && rank == r ? e[j] : hit;
      rank += k ? 1u : 0u;
    }
    const unsigned owner = __ballot_sync(0xFFFFFFFFu, hit != 0);
    return __shfl_sync(0xFFFFFFFFu, hit, owner != 0 ? __ffs(static_cast<int>(owner)) - 1 : 0);
  }

  // nth_index_in_group: the n-th highest (tie_high) or lowest index among the entries c keeps with
  // key `key`, of which `above` kept entries precede them and `ties` there are.
  __device__ __forceinline__ int group_index(const Cut& c, uint32_t above, uint32_t ties, uint32_t n,
                                             bool tie_high) const {
    return static_cast<int>(static_cast<uint32_t>(kept_rank(c, tie_high ? above + n - 1 : above + ties - n)));
  }

  // keep_top_n: the n largest entries c keeps; in the boundary group the highest (tie_high) or
  // lowest indices.
  __device__ __forceinline__ Cut keep_top_n(const Cut& c, uint32_t n, bool tie_high) const {
    const uint32_t k = static_cast<uint32_t>(kept_rank(c, n - 1) >> 32);
    const uint32_t above = count([&](int j) { return kept_by(c, j) && key(j) > k; });
    const uint32_t ties = count([&](int j) { return kept_by(c, j) && key(j) == k; });
    const uint32_t need = n - above;
    const int lo = c.key == k ? c.tie_lo : 0;
    const int hi = c.key == k ? c.tie_hi : INT_MAX;
    if (need >= ties) return Cut{k, lo, hi};
    const int pick = group_index(c, above, ties, need, tie_high);
    return tie_high ? Cut{k, pick, hi} : Cut{k, lo, pick};
  }
};

// Whether a call's row may finish in one warp (warp_finish): the call wants no filtered or
// renormalised row (those need the cut in every thread), the row's softmax is defined, and top-k's
// keep fits the warp's list.
__device__ __forceinline__ bool warp_finishes(const RowCtx& r, uint32_t keep) {
  const ChainSpec& s = *r.spec;
  return s.warp_finish != 0 && s.filtered == nullptr && s.renorm == nullptr && r.softmax_ok &&
         keep <= static_cast<uint32_t>(kWarpList);
}

// Whether a list of n entries fits the warp and holds top-k's keep and min_tokens_to_keep (as
// every caller's list does).
__device__ __forceinline__ bool warp_holds(const RowCtx& r, int n, uint32_t keep) {
  return n >= 1 && n <= kWarpList && keep <= static_cast<uint32_t>(n) && r.mtk <= static_cast<uint32_t>(n);
}

// A top-k row's list longer than the warp's (the one-read list of a 1024-thread block holds
// ~1300-2300 entries at top-k 50, counted on the CPU model: each warp's threshold only reaches the
// keep-th largest of its own buffer), cut to its entries at or above the keep-th largest key (one
// radix select on the list, as top_k_cut's) and copied to the end of sh.cand (the warp list's
// place) when those fit the warp: top-k's kept set, all the later stages look at. Returns their
// count, or -1 (the list stays). Top-p and min-p rows without top-k are not cut: their sets are
// only known to lie among a list's top entries after their masses are summed, and the CPU model
// counted the failed cuts (wide nuclei) costing their rows more barriers than the warp saved.
template <class KeyOf>
__device__ int prune_list(int n, uint32_t keep, const RowCtx& r, const KeyOf& key_of, const KeyRange& keys,
                          Shared& sh) {
  if (keep == 0 || n > kCandCap - kWarpList) return -1;
  CandPart cands{sh.cand, n, {}, keys};
  uint32_t above, ties;
  const uint32_t kr = cands.nth(
      keep,
      [&](int, float x, uint32_t* key) {
        *key = key_of(x);
        return true;
      },
      sh, &above, &ties, keys);
  const uint32_t m = above + ties;  // block-uniform
  if (m > static_cast<uint32_t>(kWarpList) || r.mtk > m) return -1;
  unsigned long long* out = sh.cand + (kCandCap - kWarpList);
  if (threadIdx.x == 0) sh.cand_count = 0;
  __syncthreads();
  cands.each([&](int v, float x) {
    if (key_of(x) >= kr) out[atomicAdd(&sh.cand_count, 1u)] = pack_cand(v, x);
  });
  __syncthreads();
  return static_cast<int>(m);
}

// Top-k (keep > 0), top-p, min-p and the sample on the n entries of `list`, as top_k_cut then
// chain_stages run them on a CandPart (each step below is the block function it names, on the
// sorted list); lane 0 writes the token and log-prob. The whole warp calls. Inlined, at the kernel's
// one call site: out of line, the call put the kernel's row context in memory and its stack frame
// went from 48-112 to 336-400 bytes, with four times the spill loads (sm_90, ptxas -v).
template <int D, class YFn, class EFn>
__device__ __forceinline__ void warp_finish(const unsigned long long* list, int n, const RowCtx& r, const YFn& yof,
                                            const EFn& efix, uint32_t keep, const unsigned long long* row_total) {
  const ChainSpec& s = *r.spec;
  const int lane = static_cast<int>(threadIdx.x & 31);
  WarpList w;
#pragma unroll
  for (int j = 0; j < kWarpPer; ++j) {
    const int i = lane * kWarpPer + j;
    const unsigned long long c = i < n ? list[i] : 0ull;
    const uint32_t key = sort_key(yof(__uint_as_float(static_cast<uint32_t>(c))));
    w.e[j] = i < n ? (static_cast<unsigned long long>(key) << 32) | (c >> 32) : 0ull;
  }
  warp_sort_desc(w.e);
  // A listed value is key_to_float(key) (sort_key is one to one but for the zeros, whose every use
  // below gives the same result for -0.0 as for +0.0).
  Cut cut{0u, 0, INT_MAX};
  uint32_t kept_count = r.vocab;
  if (keep > 0) {  // top_k_cut
    const uint32_t k = static_cast<uint32_t>(w.kept_rank(cut, keep - 1) >> 32);
    if (k != kNanKey) {
      kept_count = w.count([&](int j) { return w.listed(j) && w.key(j) >= k; });
      cut = Cut{k, 0, INT_MAX};
    }
  }
  if (s.top_p != nullptr && s.top_p[r.row] < 1.0 && r.softmax_ok) {  // top_p_stage
    const Cut c0 = cut;
    unsigned long long m[kWarpPer], mine = 0;
#pragma unroll
    for (int j = 0; j < kWarpPer; ++j) {
      m[j] = w.kept_by(c0, j) ? efix(key_to_float(w.key(j))) : 0ull;
      mine += m[j];
    }
    const unsigned long long incl = warp_inclusive_sum(mine);  // over the lanes, in position order
    const unsigned long long total = row_total != nullptr ? *row_total : __shfl_sync(0xFFFFFFFFu, incl, 31);
    const double limit = top_p_limit(s.top_p[r.row], total);
    uint32_t keep_count = 0, group = 0, ties = 0, key = 0, count_above = 0;
    if (limit > 0.0) {
      // mass_descent: the lowest kept key whose kept entries above weigh < limit. c0 keeps every
      // entry at or above its key (top-k's cut, or none), so a group's members are consecutive and
      // the mass above the group is the prefix at its first member: the boundary group starts at
      // the last such position whose prefix is below the limit.
      unsigned long long run = incl - mine;
      uint32_t prev = __shfl_up_sync(0xFFFFFFFFu, w.key(kWarpPer - 1), 1);
      prev = lane == 0 ? 0u : prev;  // no key is 0
      int start = -1;
#pragma unroll
      for (int j = 0; j < kWarpPer; ++j) {
        const bool first = w.kept_by(c0, j) && w.key(j) != prev;
        start = first && static_cast<double>(run) < limit ? lane * kWarpPer + j : start;
        run += m[j];
        prev = w.key(j);
      }
      start = warp_reduce(start, MaxOp());
      unsigned long long at = 0;  // the entry at position start (>= 0: position 0 has nothing above)
#pragma unroll
      for (int j = 0; j < kWarpPer; ++j) at = j == start % kWarpPer ? w.e[j] : at;
      key = static_cast<uint32_t>(__shfl_sync(0xFFFFFFFFu, at, start / kWarpPer) >> 32);
      count_above = w.count([&](int j) { return w.kept_by(c0, j) && w.key(j) > key; });
      ties = w.count([&](int j) { return w.kept_by(c0, j) && w.key(j) == key; });
      unsigned long long above_mine = 0;
#pragma unroll
      for (int j = 0; j < kWarpPer; ++j) above_mine += w.key(j) > key ? m[j] : 0ull;
      group = top_p_group(efix, key, limit, warp_reduce(above_mine, AddOp()), ties);
      keep_count = count_above + group;
    }
    const uint32_t need = r.mtk < kept_count ? r.mtk : kept_count;
    if (keep_count < need) {
      kept_count = need;
      cut = w.keep_top_n(c0, need, true);
    } else {
      kept_count = keep_count;
      if (group < ties) {
        cut = Cut{key, w.group_index(c0, count_above, ties, group, true), c0.key == key ? c0.tie_hi : INT_MAX};
      } else if (key != c0.key) {
        cut = Cut{key, 0, INT_MAX};
      }
    }
  }
  if (s.min_p != nullptr && s.min_p[r.row] > 0.0 && r.softmax_ok) {  // min_p_and_sample's min-p
    const float mp = static_cast<float>(s.min_p[r.row]);
    const Cut c0 = cut;
    const auto passes = [&](int j) { return w.kept_by(c0, j) && min_p_keeps(key_to_float(w.key(j)), r.ymax, mp); };
    uint32_t kmin = 0xFFFFFFFFu;
#pragma unroll
    for (int j = 0; j < kWarpPer; ++j) kmin = passes(j) && w.key(j) < kmin ? w.key(j) : kmin;
    kmin = warp_reduce(kmin, MinOp());
    const uint32_t count = w.count(passes);
    const uint32_t need = r.mtk < kept_count ? r.mtk : kept_count;
    if (count >= need) {
      if (count > 0 && kmin > cut.key) cut = Cut{kmin, 0, INT_MAX};
    } else {
      cut = w.keep_top_n(c0, need, false);
    }
  }
  if (s.tokens == nullptr) return;
  const uint64_t seed = static_cast<uint64_t>(s.seed[r.row]);
  const uint64_t offset = static_cast<uint64_t>(s.offset[r.row]);
  const bool want_lp = s.logprobs != nullptr;
  unsigned long long best = 0;
  U128 z;
  bool bad = false;  // a NaN softmax term: the log-prob is NaN
#pragma unroll
  for (int j = 0; j < kWarpPer; ++j) {
    if (!w.kept_by(cut, j) || w.key(j) == kNanKey) continue;
    const float y = key_to_float(w.key(j));
    const uint32_t v = static_cast<uint32_t>(w.index(j));
    if (y > -kInf) {
      const unsigned long long packed =
          (static_cast<unsigned long long>(sort_key(y + gumbel_noise(seed, offset, v))) << 32) | (0xFFFFFFFFu - v);
      best = packed > best ? packed : best;
    }
    if (want_lp) {
      const float t = expf(y - r.ymax);
      if (t != t) {
        bad = true;
      } else {
        z.add(fix63(t));
      }
    }
  }
  best = warp_reduce(best, MaxOp());
  z = warp_sum(z);
  bad = __ballot_sync(0xFFFFFFFFu, bad) != 0;
  if (lane == 0) {
    const int token = best == 0 ? 0 : static_cast<int>(0xFFFFFFFFu - static_cast<uint32_t>(best));
    s.tokens[r.row] = token;
    if (want_lp) {
      const float lse = bad ? NAN : log_fix63(z);
      s.logprobs[r.row] = best == 0 ? -kInf : (yof(load_one<D>(r.src, token)) - r.ymax) - lse;
    }
  }
}

// The chain on the candidate list of n entries in sh.cand: top-k's cut (keep > 0), then
// chain_stages, the cut left in *cut, and 0; or, when the call allows it (warp_finishes) and the
// list, or what prune_list leaves of it, fits the warp, that list's length, its entries at
// *warp_list, for the kernel's warp_finish (the block has nothing else to do). range: the list's
// key range when the caller has it, else null.
template <int D, class YFn, class KeyOf, class EFn>
__device__ __forceinline__ int stages_on_list(int n, uint32_t keep, const unsigned long long* row_total,
                                              const RowCtx& r, const YFn& yof, const KeyOf& key_of, uint32_t kmax,
                                              const EFn& efix, const KeyRange* range, Shared& sh,
                                              const unsigned long long** warp_list, Cut* cut) {
  const bool warp = warp_finishes(r, keep);
  *warp_list = sh.cand;
  if (warp && warp_holds(r, n, keep)) return n;
  const KeyRange keys = range != nullptr ? *range : list_keys(sh.cand, n, key_of, kmax, sh.u32);
  if (warp && keep > 0 && n > kWarpList) {
    const int m = prune_list(n, keep, r, key_of, keys, sh);
    if (m >= 0) {
      *warp_list = sh.cand + (kCandCap - kWarpList);
      return m;
    }
  }
  CandPart cands{sh.cand, n, {}, keys};
  uint32_t kept_count = r.vocab;
  if (keep > 0) top_k_cut(cands, yof, keep, sh, cut, &kept_count);
  *cut = chain_stages<D>(cands, r, yof, efix, *cut, kept_count, row_total, sh);
  return 0;
}

// Top-p without top-k when the nucleus is too wide for the list (fit_nucleus found the bins that
// can hold its boundary, sh.wide). When those bins' entries fit the list, one read lists them and
// sums the mass of the bins above; else one read takes exact count and mass histograms of those
// bins (and the mass above them), which name the boundary's bin, and a second lists that bin. The
// boundary, its group and the kept count then come from the list (mass_descent starting from the
// mass and count above it), and min-p and the sample read the row with the cut: 4 or 5 reads of
// the row in all (stats, histogram, [exact bins,] list, sample) instead of 10. The cut is the
// full-row path's: the list holds every entry of its bins, equal values always share a bin, and
// the masses are the same exact integers. Returns false (nothing but the list and the histograms
// changed) when the exact masses put the boundary outside the list or its bin does not fit; the
// full-row path runs then.
template <int D, bool S, class YFn, class EFn>
__device__ bool wide_top_p(RowPart<D, S>& part, const RowCtx& r, const YFn& yof, const EFn& efix, const GapBins& bins,
                           unsigned long long total, uint32_t kmax, Shared& sh, Cut* cut) {
  const double limit = top_p_limit(r.spec->top_p[r.row], total);
  WideBins w = sh.wide;
  unsigned long long base = 0;  // the mass of the bins above w.hi (this thread's share, then the row's)
  if (w.count > static_cast<uint32_t>(kCandCap)) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
      sh.hist[i] = 0;
      sh.mass.clear(i);
    }
    __syncthreads();
    part.each([&](int, float x) {
      const float y = yof(x);
      const int b = bins(y);
      if (b > w.hi) {
        base += efix(y);
      } else if (b >= w.lo) {
        atomicAdd(&sh.hist[b], 1u);
        sh.mass.add(b, efix(y));
      }
    });
    __syncthreads();
    part.sync.hist_mass(sh.hist, sh.mass);
    base = block_reduce(base, AddOp(), sh.u64);
    part.sync.add(base);
    if (threadIdx.x == 0) {
      // The boundary's bin: the highest whose mass with everything above reaches the limit.
      WideBins found{-1, -1, 0, w.above};
      unsigned long long above_mass = base;
      for (int b = w.hi; b >= w.lo; --b) {
        if (static_cast<double>(above_mass + sh.mass[b]) >= limit) {
          found = WideBins{b, b, sh.hist[b], found.above};
          break;
        }
        above_mass += sh.mass[b];
        found.above += sh.hist[b];
      }
      sh.wide = found;
      sh.mass_above = above_mass;
    }
    __syncthreads();
    w = sh.wide;
    base = sh.mass_above;
    __syncthreads();
    if (w.lo < 0 || w.count > static_cast<uint32_t>(kCandCap)) return false;
    list_entries(part, [&](float x) { return bins(yof(x)) == w.lo; }, static_cast<int>(w.count), sh);
  } else {
    list_entries(part,
                 [&](float x) {
                   const float y = yof(x);
                   const int b = bins(y);
                   if (b > w.hi) base += efix(y);
                   return b >= w.lo && b <= w.hi;
                 },
                 static_cast<int>(w.count), sh);
    base = block_reduce(base, AddOp(), sh.u64);
    part.sync.add(base);
  }
  CandPart cands{sh.cand, static_cast<int>(w.count), {},
                 list_keys(sh.cand, static_cast<int>(w.count), [&](float x) { return sort_key(yof(x)); }, kmax,
                           sh.u32)};
  unsigned long long listed = 0;
  cands.each([&](int, float x) { listed += efix(yof(x)); });
  listed = block_reduce(listed, AddOp(), sh.u64);
  // The list's top entry has `base` above it, the highest entry below the list base + listed.
  if (!(static_cast<double>(base) < limit && static_cast<double>(base + listed) >= limit)) return false;
  uint32_t kept_count = r.vocab;
  const Cut c = top_p_stage(cands, r, yof, efix, *cut, &kept_count, &total, Above{base, w.above}, sh);
  *cut = min_p_and_sample<D>(part, r, yof, c, kept_count, sh);
  return true;
}

// The fused chain for row blockIdx.x: one block reads the whole row, or (kSplit) gridDim.y blocks
// each read one slice and merge every row-wide quantity through RowSync. Both instantiations run
// the same code on the same merged integers, so they give the same outputs.
template <int D, bool kSplit, bool kScan = false>
__global__ void __launch_bounds__(kThreads) filter_chain_kernel(const ChainArgs a) {
  PYDECODE_BLOCK_SHARED(Shared, sh);
  using T = typename Elem<D>::T;
  const int row = static_cast<int>(blockIdx.x);
  const int vocab = static_cast<int>(a.in.vocab);
  const char* src = static_cast<const char*>(a.in.data) +
                    static_cast<int64_t>(row) * a.in.row_stride * static_cast<int64_t>(sizeof(T));
  RowPart<D, kSplit> part;
  part.begin = 0;
  part.len = vocab;
  if constexpr (kSplit) {
    // Slices start at multiples of 8 entries: a 16-byte aligned row gives 16-byte aligned slices.
    // Trailing slices may be empty; their blocks still take part in every merge.
    const int64_t chunk = ((static_cast<int64_t>(vocab) + a.splits - 1) / a.splits + 7) & ~int64_t{7};
    int64_t b = chunk * static_cast<int64_t>(blockIdx.y);
    b = b < vocab ? b : vocab;
    part.begin = static_cast<int>(b);
    part.len = static_cast<int>(chunk < vocab - b ? chunk : vocab - b);
    part.sync = RowSync<true>{a.scratch + row, static_cast<unsigned long long>(a.splits), 0ull, blockIdx.y == 0};
  }
  part.data = src + static_cast<int64_t>(part.begin) * static_cast<int64_t>(sizeof(T));
  const ChainSpec& s = a.spec;
  int tf = s.transform;
  float rcp = 1.0f;
  if (tf == 1) {
    const double t = s.temperature[row];
    if (t == 1.0) {
      tf = 0;
    } else {
      rcp = temperature_factor(t);
    }
  }
  const auto yof = [tf, rcp](float x) -> float { return tf == 0 ? x : (tf == 1 ? x * rcp : log_cr(x)); };
  // yof for every row but the log rows (tf 2), without yof's branch, for the loops over the whole
  // row to be unswitched on: x * 1 is x, so the transform-free rows share it (NaN keeps NaN).
  const auto scaled = [rcp](float x) { return x * rcp; };

  int64_t keep = 0;  // top-k's keep, 0: no top-k
  if (s.top_k != nullptr && s.top_k[row] > 0) {
    keep = s.top_k[row] > s.min_tokens_to_keep ? s.top_k[row] : s.min_tokens_to_keep;
    keep = keep < vocab ? keep : 0;
  }
  const bool top_p = s.top_p != nullptr && s.top_p[row] < 1.0;
  const bool min_p = s.min_p != nullptr && s.min_p[row] > 0.0;
  // Top-k rows with a small k list their candidates as they read the row (the one-read top-k
  // list, above): 1 read, and the statistics come from the list. So do top-p rows without top-k,
  // whose list is the kScanMaxKeep largest entries (and whose read also takes the row's smallest
  // value, for the gap bins): a second read sums the row's mass, and when the list's mass reaches
  // top-p's limit (a nucleus of at most about kScanMaxKeep entries, the usual decode step) the list
  // holds it: 2 reads; else the histogram's list follows, as after the statistics pass. (The
  // second read takes the gap histogram too unless the list alone shows it holds the nucleus.)
  // And min-p rows without either, whose kept set is on the same list when the list's smallest
  // value is below min-p's bar: 1 read. The list compares the inputs with the
  // threshold, which needs the transform to be a multiply by a finite factor > 0: not the log of probability
  // inputs, and not a temperature whose reciprocal rounds to 0 or inf. Other top-k rows one block
  // reads, and the rows whose list fails, histogram their keys' top bits in the statistics pass
  // (the key-bin list, device.cuh): 2 reads instead of 3. Split rows keep the gap histogram
  // there: merging 4096 bins between the blocks would cost more than the read it saves.
  const uint32_t scan_keep = keep > 0 ? static_cast<uint32_t>(keep) : (top_p || min_p ? kScanMaxKeep : 0u);
  const bool scan = kScan && s.compact && scan_keep > 0 && scan_keep <= kScanMaxKeep && scan_keep < vocab && tf != 2 &&
                    rcp > 0.0f && rcp < kInf;
  const auto key_of = [yof](float x) { return sort_key(yof(x)); };

  // Row statistics: the largest non-NaN key, whether a NaN is present, the smallest finite key
  // (not known, 0xFFFFFFFF, when a top-k row's list provides the statistics: only the paths after
  // a failed list need it).
  uint32_t kmax = 0, nan = 0, kmin = 0xFFFFFFFFu;
  int scan_n = -1;  // the one-read list's length (-1: none)
  bool have_stats = false;
  if (scan) {
    float low = kInf;  // top-p rows: the smallest input above -inf, for the gap bins
    uint32_t scan_floor = 0;
    // Top-k rows pool the warps' evidence for the list's threshold (scan_list.cuh): a list of about
    // keep entries. Top-p and min-p rows without top-k pool on split rows only. One block's longer
    // list holds more of a wide nucleus, or reaches further below min-p's bar, and so spares its row
    // reads; a split row's merged list already reaches down to the highest of its blocks' floors
    // (~the row's 700th largest of 128256 in 15 slices, pooled), while unpooled each block listed
    // ~1500 entries of its slice (a warp's threshold hardly rises over ~270 entries), read their
    // values again (0.3 of a read) and cut each list before the merge (a radix select).
    uint32_t* const pool = keep > 0 || kSplit ? sh.scan_pool : nullptr;
    const auto scan_row = [&](auto take_low) {
      return scan_top_list<D, decltype(take_low)::value>(part.data, part.len, part.begin, scaled, rcp, scan_keep,
                                                         ScanShared{sh.cand, &sh.scan_thr, sh.u32, pool}, &kmax,
                                                         &nan, &low, &scan_floor);
    };
    const bool want_low = keep == 0 && top_p;  // the gap bins' span
    scan_n = want_low ? scan_row(std::true_type()) : scan_row(std::false_type());
    nan = block_reduce(nan, MaxOp(), sh.u32);
    if (want_low) kmin = block_reduce(low < kInf ? sort_key(scaled(low)) : 0xFFFFFFFFu, MinOp(), sh.u32);
    if constexpr (kSplit) {  // the row's statistics too: one row barrier for both
      scan_n = merge_scan_lists(part.sync, scan_n, scan_floor, scan_keep, keep > 0, key_of, &kmax, &nan, &kmin, sh);
    }
    // The list holds the scan_keep largest entries with all their ties, and so the row's largest,
    // when it has scan_keep entries (all above -inf). A NaN or +inf (the full-row path's rows) and
    // a list that failed send the row to the statistics pass. (The same in every block of a split
    // row: merged values.)
    have_stats = scan_n >= static_cast<int>(scan_keep) && nan == 0 && kmax < sort_key(kInf);
  }
  const bool key_bins = !have_stats && !kSplit && s.compact && s.key_bins && keep > 0 && keep <= kCandCap;
  uint32_t* key_hist = reinterpret_cast<uint32_t*>(sh.cand);  // a failed list's memory
  if (!have_stats) {
    if (key_bins) clear_key_bins(key_hist);
    kmax = 0;
    nan = 0;
    kmin = 0xFFFFFFFFu;
    // Per entry: the largest non-NaN key, a NaN flag, the smallest key above -inf, and its key bin.
    // Branch-free (selects; key_slot's atomic), and the loop is unswitched on the transform and on
    // the histogram: with yof's three-way branch and the conditionals inside, nvcc emitted ~40
    // instructions per entry, 8 of them branches and convergence barriers (sm_90 SASS), where this
    // takes ~22 (`scaled`).
    const auto stats = [&](float y, auto bins) {
      const uint32_t key = sort_key(y);
      const bool is_nan = key == kNanKey;
      const bool listable = !is_nan && y > -kInf;
      nan |= is_nan ? 1u : 0u;
      const uint32_t top = is_nan ? 0u : key;
      kmax = top > kmax ? top : kmax;
      const uint32_t low = listable ? key : 0xFFFFFFFFu;
      kmin = low < kmin ? low : kmin;
      if (bins) atomicAdd(&key_hist[key_slot(key, listable)], 1u);
    };
    if (tf == 2) {
      part.template each<kFastLoads>([&](int, float x) { stats(log_cr(x), key_bins); });
    } else if (key_bins) {
      part.template each<kFastLoads>([&](int, float x) { stats(scaled(x), std::true_type()); });
    } else {
      part.template each<kFastLoads>([&](int, float x) { stats(scaled(x), std::false_type()); });
    }
    kmax = block_reduce(kmax, MaxOp(), sh.u32);
    nan = block_reduce(nan, MaxOp(), sh.u32);
    kmin = block_reduce(kmin, MinOp(), sh.u32);
    part.sync.stats(kmax, nan, kmin);
  }
  const KeyBinList key_list = key_bins ? key_bin_list(key_hist, static_cast<uint32_t>(keep), sh) : KeyBinList{};
  const float ymax = kmax == 0 ? -kInf : key_to_float(kmax);  // kmax 0: every entry is NaN
  // A row with NaN or +inf, or nothing above -inf, has a NaN softmax: top-p and min-p keep it.
  const bool softmax_ok = nan == 0 && kmax != 0 && ymax < kInf && ymax > -kInf;
  const RowCtx ctx{&s, row, ymax, softmax_ok,
                   static_cast<uint32_t>(s.min_tokens_to_keep < vocab ? s.min_tokens_to_keep : vocab), src,
                   !kSplit || blockIdx.y == 0, static_cast<uint32_t>(vocab)};
  const auto efix = [ymax](float y) -> unsigned long long {
    return __float2ull_rn(expf(y - ymax) * 4294967296.0f);  // 32.32 fixed point, exact scaling
  };

  Cut cut{0u, 0, INT_MAX};
  bool done = false;
  int warp_n = 0;  // > 0: the list warp_finish runs on (stages_on_list)
  const unsigned long long* warp_list = sh.cand;
  unsigned long long total = 0;  // top-p without top-k: the row's mass, once the compact path has summed it
  bool have_total = false;
  const float ymin = key_to_float(kmin);  // NaN when nothing is finite
  // The compact path (see above), for the rows where it can apply (kmin is known after the
  // statistics pass and after the one-read list of a top-p row).
  const bool compact = s.compact && softmax_ok && kmin != 0xFFFFFFFFu && ymax - ymin < kInf;
  if (have_stats && keep > 0) {
    // The keep-th largest listed key is above -inf (nothing at -inf is listed), so it is the row's.
    warp_n = stages_on_list<D>(scan_n, static_cast<uint32_t>(keep), nullptr, ctx, yof, key_of, kmax, efix, nullptr,
                               sh, &warp_list, &cut);
    done = true;
  } else if (keep == 0 && top_p && compact) {
    // Top-p without top-k: a read takes the row's mass (bin_row's also the gap histogram), then the
    // stages run on a list of the row's top entries (a top prefix of the sorted row, equal values
    // on one side) whose mass reaches the limit and which min_tokens_to_keep fits in: every entry
    // off it has at least the list's mass above it, so the boundary is on the list. The list is
    // the one-read list when it reaches (2 reads), else that of the histogram's bins (3), else the
    // wide-nucleus bins' (wide_top_p); the full-row path otherwise. (Written out, not a lambda:
    // nvcc outlined one, with a 600-byte stack frame in the kernel and spills in the function.)
    const GapBins bins = GapBins::over(ymax, ymin);
    // A list that surely holds the nucleus spares the second read its histogram (a listed row's
    // transform is a multiply: `scaled`).
    const bool on_list = have_stats && ctx.mtk <= static_cast<uint32_t>(scan_n);  // min_tokens_to_keep fits
    unsigned long long listed = 0;
    const bool holds = on_list && list_holds_nucleus(scan_n, ctx.vocab, yof, efix, s.top_p[row], &listed, sh);
    if (holds) {
      // No histogram, so no list of its bins (list_top_bins, wide_top_p): were the bound ever
      // wrong, the full-row path would run, never a list of stale bins. (row_mass's reduction
      // publishes these.)
      if (threadIdx.x == 0) {
        sh.bin = -1;
        sh.wide.lo = -1;
      }
      total = row_mass(part, scaled, efix, sh);
    } else if (tf == 2) {
      bin_row(part, yof, efix, bins, 0u, s.top_p[row], ctx.mtk, &total, sh);
    } else {
      bin_row(part, scaled, efix, bins, 0u, s.top_p[row], ctx.mtk, &total, sh);
    }
    have_total = true;
    const double limit = top_p_limit(s.top_p[row], total);
    int n = scan_n;
    bool enough = on_list && static_cast<double>(listed) >= limit;  // list_reaches' test
    if (!enough) {
      n = tf == 2 ? list_top_bins(part, yof, bins, sh) : list_top_bins(part, scaled, bins, sh);
      enough = n >= 0 && list_reaches(n, yof, efix, limit, ctx.mtk, sh);
    }
    if (enough) {
      warp_n = stages_on_list<D>(n, 0u, &total, ctx, yof, key_of, kmax, efix, nullptr, sh, &warp_list, &cut);
      done = true;
    } else if (n < 0 && sh.wide.lo >= 0) {
      done = wide_top_p(part, ctx, yof, efix, bins, total, kmax, sh, &cut);
    }
  } else if (have_stats && !top_p) {
    // Min-p without top-k or top-p: it keeps the entries with expf(y - ymax) >= min_p, a top
    // prefix of the sorted row, so when the list's smallest value fails that test every entry off
    // the list (all below it) does too, and the kept set (or the min_tokens_to_keep largest, when
    // they fit) is on the list.
    const KeyRange range = list_keys(sh.cand, scan_n, key_of, kmax, sh.u32);
    const float mp = static_cast<float>(s.min_p[row]);
    if (!min_p_keeps(key_to_float(range.lo), ymax, mp) && ctx.mtk <= static_cast<uint32_t>(scan_n)) {
      warp_n = stages_on_list<D>(scan_n, 0u, nullptr, ctx, yof, key_of, kmax, efix, &range, sh, &warp_list, &cut);
      done = true;
    }
  } else if (compact && keep > 0 && keep <= kCandCap) {
    const GapBins bins = GapBins::over(ymax, ymin);
    // The list's reads of the row take the transform out of the loop as the statistics pass does.
    const auto list_by_key_bins = [&](const auto& y_of) {
      list_entries(part, [&](float x) {
        const float y = y_of(x);
        return (y > -kInf) & key_list.holds(sort_key(y));  // & : no branch per entry
      }, static_cast<int>(key_list.count), sh);
    };
    const auto top_bins = [&](const auto& y_of) {
      bin_row(part, y_of, efix, bins, static_cast<uint32_t>(keep), 1.0, ctx.mtk, &total, sh);
      return list_top_bins(part, y_of, bins, sh);
    };
    int n = static_cast<int>(key_list.count);
    if (key_list.low >= 0 && tf == 2) {
      list_by_key_bins(yof);
    } else if (key_list.low >= 0) {
      list_by_key_bins(scaled);
    } else {
      n = tf == 2 ? top_bins(yof) : top_bins(scaled);
    }
    if (n >= 0) {
      warp_n = stages_on_list<D>(n, static_cast<uint32_t>(keep), nullptr, ctx, yof, key_of, kmax, efix, nullptr, sh,
                                 &warp_list, &cut);
      done = true;
    }
  }
  if (warp_n > 0) {  // the list's stages in one warp: the block's only work left
    if (ctx.writer && threadIdx.x < 32) {
      warp_finish<D>(warp_list, warp_n, ctx, yof, efix, static_cast<uint32_t>(keep), have_total ? &total : nullptr);
    }
    return;
  }
  if (!done) {
    uint32_t kept_count = static_cast<uint32_t>(vocab);
    if (keep > 0) top_k_cut(part, yof, static_cast<uint32_t>(keep), sh, &cut, &kept_count);
    cut = chain_stages<D>(part, ctx, yof, efix, cut, kept_count, have_total ? &total : nullptr, sh);
  }

  if (s.filtered != nullptr || s.renorm != nullptr) {
    float* filtered = s.filtered != nullptr ? s.filtered + static_cast<int64_t>(row) * vocab : nullptr;
    float* renorm = s.renorm != nullptr ? s.renorm + static_cast<int64_t>(row) * vocab : nullptr;
    const float fv = s.filter_value;
    const Cut c0 = cut;
    part.each([&](int v, float x) {
      const float y = yof(x);
      const bool keep_v = kept(c0, sort_key(y), v);
      if (filtered != nullptr) filtered[v] = keep_v ? y : fv;
      if (renorm != nullptr) renorm[v] = keep_v ? x : 0.0f;
    });
  }
}

// Greedy over vocabulary slice blockIdx.y of `splits` (all of the row when splits == 1): the best
// (key << 32 | ~index) of the slice, to out[row] as a token (splits == 1) or to
// partial[row * splits + slice] for greedy_merge_kernel. Slices start at multiples of 8 entries,
// so a 16-byte aligned row gives 16-byte aligned slices.
template <int D>
__global__ void __launch_bounds__(kThreads) greedy_kernel(const RowsIn in, int splits, int64_t* out,
                                                         unsigned long long* partial) {
  __shared__ unsigned long long scratch[32];
  const int row = static_cast<int>(blockIdx.x);
  const int vocab = static_cast<int>(in.vocab);
  const int chunk = ((vocab + splits - 1) / splits + 7) & ~7;
  const int begin = static_cast<int>(blockIdx.y) * chunk;
  const int end = begin + chunk < vocab ? begin + chunk : vocab;
  const char* src = static_cast<const char*>(in.data) +
                    (static_cast<int64_t>(row) * in.row_stride + begin) * static_cast<int64_t>(sizeof(typename Elem<D>::T));
  unsigned long long best = 0;
  for_row<D, kFastLoads>(src, end > begin ? end - begin : 0, [&](int v, float x) {
    const uint32_t key = sort_key(x);
    if (key == kNanKey) return;
    const unsigned long long packed =
        (static_cast<unsigned long long>(key) << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(v + begin));
    best = packed > best ? packed : best;
  });
  best = block_reduce(best, MaxOp(), scratch);
  if (threadIdx.x != 0) return;
  if (splits > 1) {
    partial[static_cast<int64_t>(row) * splits + blockIdx.y] = best;
  } else {
    // A row of -inf picks its first entry (-inf's key is above 0); an all-NaN row gives 0 too.
    out[row] = best == 0 ? 0 : static_cast<int64_t>(0xFFFFFFFFu - static_cast<uint32_t>(best));
  }
}

// One warp per row: the maximum of the row's slice results (an integer max: order-free).
__global__ void greedy_merge_kernel(const unsigned long long* partial, int splits, int64_t rows, int64_t* out) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= rows) return;  // whole warps exit together
  const int lane = static_cast<int>(threadIdx.x & 31);
  unsigned long long best = 0;
  for (int i = lane; i < splits; i += 32) {
    const unsigned long long p = partial[row * splits + i];
    best = p > best ? p : best;
  }
  best = warp_reduce(best, MaxOp());
  if (lane == 0) out[row] = best == 0 ? 0 : static_cast<int64_t>(0xFFFFFFFFu - static_cast<uint32_t>(best));
}

template <int D>
__global__ void temperature_kernel(const RowsIn in, const double* temperature, float* out) {
  const int row = static_cast<int>(blockIdx.y);
  const int vocab = static_cast<int>(in.vocab);
  const typename Elem<D>::T* src = static_cast<const typename Elem<D>::T*>(in.data) + row * in.row_stride;
  const float rcp = temperature_factor(temperature[row]);
  float* dst = out + static_cast<int64_t>(row) * vocab;
  for (int v = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); v < vocab;
       v += static_cast<int>(gridDim.x * blockDim.x)) {
    dst[v] = Elem<D>::get(__ldg(src + v)) * rcp;
  }
}

void check_rows(const RowsIn& in) {
  require_nonnegative(in.rows, "rows");
  require_nonnegative(in.vocab, "vocab");
  require_nonnegative(in.row_stride, "row_stride");
  require(in.dtype >= 0 && in.dtype <= 2, "dtype code must be 0 (float32), 1 (float16) or 2 (bfloat16), got " +
                                              std::to_string(in.dtype));
  require(in.vocab < (int64_t{1} << 31) - 1, "vocab must be < 2^31 - 1 for the CUDA kernels");
  require(in.rows <= INT_MAX, "rows must be < 2^31 for the CUDA kernels");
  require_pointer(reinterpret_cast<uintptr_t>(in.data), in.rows * in.vocab, "logits");
}

}  // namespace

#if !defined(PYDECODE_CUDA_EMULATION)  // the launchers use <<<>>>; the CPU model calls kernels directly
cudaError_t apply_temperature(const RowsIn& in, const double* temperature, float* out, cudaStream_t stream) {
  check_rows(in);
  require_pointer(reinterpret_cast<uintptr_t>(temperature), in.rows, "temperature");
  require_pointer(reinterpret_cast<uintptr_t>(out), in.rows * in.vocab, "out");
  require(in.rows <= 65535, "rows must be <= 65535 (grid y dimension)");
  if (in.rows == 0 || in.vocab == 0) return cudaSuccess;
  constexpr int kT = 256;
  const int64_t blocks = (in.vocab + kT - 1) / kT;
  const dim3 grid(static_cast<unsigned>(blocks < 512 ? blocks : 512), static_cast<unsigned>(in.rows));
  switch (in.dtype) {
    case kDTypeF32: temperature_kernel<kDTypeF32><<<grid, kT, 0, stream>>>(in, temperature, out); break;
    case kDTypeF16: temperature_kernel<kDTypeF16><<<grid, kT, 0, stream>>>(in, temperature, out); break;
    default: temperature_kernel<kDTypeBF16><<<grid, kT, 0, stream>>>(in, temperature, out); break;
  }
  return cudaGetLastError();
}

int greedy_splits(int64_t rows, int64_t vocab) {
  // Split a row over several blocks while the batch alone would leave most SMs idle (132 on an
  // H100): aim for ~2 blocks per SM, slices of >= 4096 entries, at most kGreedyMaxSplits.
  if (rows <= 0 || rows >= 128) return 1;
  int64_t splits = (256 + rows - 1) / rows;
  const int64_t by_size = vocab / 4096;
  splits = splits < by_size ? splits : by_size;
  splits = splits < kGreedyMaxSplits ? splits : kGreedyMaxSplits;
  return splits < 1 ? 1 : static_cast<int>(splits);
}

cudaError_t greedy(const RowsIn& in, int64_t* out, uint64_t* scratch, int64_t scratch_len, cudaStream_t stream) {
  check_rows(in);
  require_pointer(reinterpret_cast<uintptr_t>(out), in.rows, "out");
  if (in.rows == 0 || in.vocab == 0) return cudaSuccess;
  int splits = greedy_splits(in.rows, in.vocab);
  if (scratch == nullptr || scratch_len < in.rows * splits) splits = 1;
  unsigned long long* partial = reinterpret_cast<unsigned long long*>(scratch);
  const dim3 grid(static_cast<unsigned>(in.rows), static_cast<unsigned>(splits));
  switch (in.dtype) {
    case kDTypeF32: greedy_kernel<kDTypeF32><<<grid, kThreads, 0, stream>>>(in, splits, out, partial); break;
    case kDTypeF16: greedy_kernel<kDTypeF16><<<grid, kThreads, 0, stream>>>(in, splits, out, partial); break;
    default: greedy_kernel<kDTypeBF16><<<grid, kThreads, 0, stream>>>(in, splits, out, partial); break;
  }
  if (splits > 1) {
    constexpr int kRowsPerBlock = 8;  // one warp per row
    const unsigned blocks = static_cast<unsigned>((in.rows + kRowsPerBlock - 1) / kRowsPerBlock);
    greedy_merge_kernel<<<blocks, 32 * kRowsPerBlock, 0, stream>>>(partial, splits, in.rows, out);
  }
  return cudaGetLastError();
}

template <int D>
int split_blocks_per_sm() {
  int n = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, filter_chain_kernel<D, true>, kThreads, 0) != cudaSuccess) {
    return 0;
  }
  if constexpr (scan_kernel_built(D)) {  // the one-read top-k list's own kernel
    int scan = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&scan, filter_chain_kernel<D, true, true>, kThreads, 0) !=
        cudaSuccess) {
      return 0;
    }
    n = scan < n ? scan : n;
  }
  return n;
}

int chain_capacity() {
  // Per device, computed once (host queries only: nothing is enqueued, so this is safe while a
  // CUDA graph is being captured). 0: unknown yet.
  static std::atomic<int> cache[64];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) {
    cudaGetLastError();
    return 0;
  }
  if (dev < 64 && cache[dev].load() > 0) return cache[dev].load() - 1;
  int sms = 0, coop = 0;
  int capacity = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
      cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev) == cudaSuccess && coop != 0) {
    int per_sm = split_blocks_per_sm<kDTypeF32>();
    const int f16 = split_blocks_per_sm<kDTypeF16>();
    const int bf16 = split_blocks_per_sm<kDTypeBF16>();
    per_sm = f16 < per_sm ? f16 : per_sm;
    per_sm = bf16 < per_sm ? bf16 : per_sm;
    capacity = sms * per_sm;
  }
  cudaGetLastError();  // a failed query leaves no sticky error behind
  if (dev < 64) cache[dev].store(capacity + 1);
  return capacity;
}

int chain_splits(int64_t rows, int64_t vocab, int64_t forced) {
  if (forced > 0) return forced < INT_MAX ? static_cast<int>(forced) : INT_MAX;
  if (rows <= 0 || vocab < 2 * kChainMinSlice) return 1;
  // Split while the batch alone leaves most SMs idle: rows * splits up to the resident blocks.
  const int64_t capacity = chain_capacity();
  if (rows * 2 > capacity) return 1;
  int64_t splits = capacity / rows;
  splits = splits < vocab / kChainMinSlice ? splits : vocab / kChainMinSlice;
  splits = splits < kChainMaxSplits ? splits : kChainMaxSplits;
  return splits < 1 ? 1 : static_cast<int>(splits);
}

template <int D, bool kScan>
cudaError_t launch_split_chain(const ChainArgs& args, cudaStream_t stream) {
  // Cooperative: the runtime refuses the launch (an error, not a hang) unless every block can be
  // resident at once, which the row barrier's spin-wait needs.
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(args.in.rows), static_cast<unsigned>(args.splits));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = 0;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeCooperative;
  attribute[0].val.cooperative = 1;
  config.attrs = attribute;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, filter_chain_kernel<D, true, kScan>, args);
}

cudaError_t filter_chain(const RowsIn& in, const ChainSpec& spec, int splits, uint64_t* scratch, int64_t scratch_len,
                         cudaStream_t stream) {
  check_rows(in);
  require(spec.transform >= 0 && spec.transform <= 2, "transform must be 0 (none), 1 (divide) or 2 (log)");
  require(spec.transform != 1 || in.rows == 0 || spec.temperature != nullptr, "transform 1 needs temperature");
  require(spec.min_tokens_to_keep >= 1, "min_tokens_to_keep must be >= 1");
  require(splits >= 1 && splits <= 65535, "splits must be in [1, 65535], got " + std::to_string(splits));
  if (spec.tokens != nullptr) {
    require_pointer(reinterpret_cast<uintptr_t>(spec.seed), in.rows, "seed");
    require_pointer(reinterpret_cast<uintptr_t>(spec.offset), in.rows, "offset");
  } else {
    require(spec.logprobs == nullptr, "logprobs need tokens");
  }
  if (in.rows == 0 || in.vocab == 0) return cudaSuccess;
  ChainArgs args{in, spec};
  const bool scan = spec.top_k_scan != 0 && scan_kernel_built(in.dtype);
  if (splits > 1) {
    require(scratch != nullptr && scratch_len >= in.rows * kChainScratchWords,
            "scratch must hold rows * " + std::to_string(kChainScratchWords) + " uint64 for splits > 1");
    const int capacity = chain_capacity();
    require(in.rows * splits <= capacity, "rows * splits = " + std::to_string(in.rows * splits) +
                                              " blocks exceed the " + std::to_string(capacity) +
                                              " this device runs at once (the split path needs them all resident)");
    args.splits = splits;
    args.scratch = reinterpret_cast<SplitScratch*>(scratch);
    if (scan) return launch_split_chain<kDTypeBF16, true>(args, stream);
    switch (in.dtype) {
      case kDTypeF32: return launch_split_chain<kDTypeF32, false>(args, stream);
      case kDTypeF16: return launch_split_chain<kDTypeF16, false>(args, stream);
      default: return launch_split_chain<kDTypeBF16, false>(args, stream);
    }
  }
  const dim3 grid(static_cast<unsigned>(in.rows));
  if (scan) {
    filter_chain_kernel<kDTypeBF16, false, true><<<grid, kThreads, 0, stream>>>(args);
    return cudaGetLastError();
  }
  switch (in.dtype) {
    case kDTypeF32: filter_chain_kernel<kDTypeF32, false><<<grid, kThreads, 0, stream>>>(args); break;
    case kDTypeF16: filter_chain_kernel<kDTypeF16, false><<<grid, kThreads, 0, stream>>>(args); break;
    default: filter_chain_kernel<kDTypeBF16, false><<<grid, kThreads, 0, stream>>>(args); break;
  }
  return cudaGetLastError();
}

#endif  // !PYDECODE_CUDA_EMULATION

}  // namespace pydecode::cuda
