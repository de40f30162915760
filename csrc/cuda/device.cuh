// Device-side building blocks shared by the CUDA kernels of the sampling and beam families:
// input conversion with 16-byte vector loads, order-preserving float keys, deterministic block
// reductions, warp-parallel radix-bucket selection and the correctly rounded Gumbel noise of
// the randomness contract. Only included by .cu files.
#pragma once
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>

#include "pydecode/philox.h"
#if defined(PYDECODE_CUDA_EMULATION)
#include "pydecode/dtype.h"
#endif

namespace pydecode::cuda {

constexpr int kDTypeF32 = 0;  // pydecode::DType codes (csrc/include/pydecode/dtype.h)
constexpr int kDTypeF16 = 1;
constexpr int kDTypeBF16 = 2;

// NaN ranks above +inf (key 0xFF800000), as torch.topk / torch.sort rank it.
constexpr uint32_t kNanKey = 0xFFFFFFFFu;
constexpr uint32_t kNegInfKey = 0x007FFFFFu;  // sort_key(-inf), below every finite value's

template <int D>
struct Elem;
template <>
struct Elem<kDTypeF32> {
  using T = float;
  static __device__ __forceinline__ float get(float x) { return x; }
  static __device__ __forceinline__ float neg_inf() { return -INFINITY; }
};
template <>
struct Elem<kDTypeF16> {
  using T = uint16_t;
  static __device__ __forceinline__ float get(uint16_t h) {
#if defined(PYDECODE_CUDA_EMULATION)  // tests/cuda_emulation: the CPU model of these kernels
    return fp16_to_float(h);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));  // exact, subnormals and NaN included
    return f;
#endif
  }
  static __device__ __forceinline__ uint16_t neg_inf() { return 0xFC00u; }
};
template <>
struct Elem<kDTypeBF16> {
  using T = uint16_t;
  static __device__ __forceinline__ float get(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }
  static __device__ __forceinline__ uint16_t neg_inf() { return 0xFF80u; }
};

// f(v, x) for every element v of the row [0, vocab) this thread owns. With a 16-byte aligned row
// a thread owns runs of 16 bytes (4 float32 or 8 half/bfloat16 values, one vector load each),
// else single elements. The assignment depends only on (vocab, alignment, blockDim), so a
// per-thread accumulation followed by a fixed-shape tree is deterministic. With kLoads > 1 a
// thread issues that many vector loads before it uses the first: one block per row is
// latency-bound otherwise (1024 threads x 16 bytes in flight per SM); the order of the f calls is
// the same either way. Only the passes every call makes use it (kFastLoads): it multiplies the
// code of f, and the kernels' compile time (x3 for the sampling chain with it everywhere).
constexpr int kFastLoads = 4;
template <int D, int kLoads = 1, class F>
__device__ __forceinline__ void for_row(const void* row, int vocab, F&& f) {
  using T = typename Elem<D>::T;
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  const T* p = static_cast<const T*>(row);
  int tail = 0;
  if ((reinterpret_cast<uintptr_t>(p) & 15u) == 0) {
    const int nvec = vocab / kVec;
    const int step = static_cast<int>(blockDim.x);
    const uint4* pv = reinterpret_cast<const uint4*>(p);
    const auto use = [&](int i, const uint4& raw) {
      T vals[kVec];
      static_assert(sizeof(vals) == sizeof(raw), "one 16-byte load");
      memcpy(vals, &raw, sizeof(raw));
#pragma unroll
      for (int j = 0; j < kVec; ++j) f(i * kVec + j, Elem<D>::get(vals[j]));
    };
    int i = static_cast<int>(threadIdx.x);
    for (; i + (kLoads - 1) * step < nvec; i += kLoads * step) {
      uint4 raw[kLoads];
#pragma unroll
      for (int u = 0; u < kLoads; ++u) raw[u] = __ldg(pv + i + u * step);
#pragma unroll
      for (int u = 0; u < kLoads; ++u) use(i + u * step, raw[u]);
    }
    for (; i < nvec; i += step) use(i, __ldg(pv + i));
    tail = nvec * kVec;
  }
  for (int v = tail + static_cast<int>(threadIdx.x); v < vocab; v += blockDim.x) f(v, Elem<D>::get(__ldg(p + v)));
}

// A __shared__ variable of the block. The CPU model runs the blocks of one row's split launch
// concurrently, so there it is the block's own storage rather than a static.
#if defined(PYDECODE_CUDA_EMULATION)
#define PYDECODE_BLOCK_SHARED(T, name) T& name = emu::block_shared<T>()
#else
#define PYDECODE_BLOCK_SHARED(T, name) __shared__ T name
#endif

// A load that bypasses L1 (whose lines may be stale for memory other blocks update with
// atomics) and that the compiler may not hoist out of a spin loop.
template <class T>
__device__ __forceinline__ T coherent_load(const T* p) {
#if defined(PYDECODE_CUDA_EMULATION)
  return emu::atomic_load(p);
#else
  return *static_cast<const volatile T*>(p);
#endif
}

template <int D>
__device__ __forceinline__ float load_one(const void* row, int v) {
  return Elem<D>::get(static_cast<const typename Elem<D>::T*>(row)[v]);
}

// Order-preserving key: a < b <=> key(a) < key(b) for non-NaN floats; -0.0 == +0.0; every NaN
// maps to kNanKey, above +inf.
// Written with selects, not early returns: the row loops call it on every entry, and nvcc turned
// the returns into branches with their convergence barriers (BSSY/BSYNC) per entry.
__device__ __forceinline__ uint32_t sort_key(float f) {
  const uint32_t bits = __float_as_uint(f);
  const uint32_t mag = bits & 0x7FFFFFFFu;
  // Negative: all bits flipped; positive: the sign bit set.
  uint32_t key = bits ^ (static_cast<uint32_t>(static_cast<int32_t>(bits) >> 31) | 0x80000000u);
  key = mag == 0 ? 0x80000000u : key;
  return mag > 0x7F800000u ? kNanKey : key;
}

__device__ __forceinline__ float key_to_float(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key);
}

// logf correctly rounded (up to the double log's 1-ulp error landing on a float midpoint, odds
// ~2^-29 per input): the CPU kernels' log_cr (torch_cpu_math.h) rounds the same exact value,
// so CPU and CUDA draw the same Gumbel noise.
__device__ __forceinline__ float log_cr(float x) { return static_cast<float>(log(static_cast<double>(x))); }

// The contract's Gumbel noise for (seed, offset, token), stream 0 (STREAM_SAMPLE).
__device__ __forceinline__ float gumbel_noise(uint64_t seed, uint64_t offset, uint32_t token) {
  const float u = uniform_open01(philox_word(seed, offset, token, 0u));
  return -log_cr(-log_cr(u));
}

// Block-wide reduction; every thread gets the result. `scratch` holds >= 32 values. The warp
// butterfly gives every lane the same value and the cross-warp fold runs in warp order, so float
// sums are deterministic for a fixed block size.
template <class T, class Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {  // the warp butterfly: every lane gets it
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  return v;
}

template <class T, class Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T* scratch) {
  v = warp_reduce(v, op);
  const int warps = static_cast<int>(blockDim.x >> 5);
  __syncthreads();  // scratch may still be read by a previous reduction
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  T r = scratch[0];
  for (int w = 1; w < warps; ++w) r = op(r, scratch[w]);
  return r;
}

struct AddOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a > b ? a : b; }
};
struct MinOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a < b ? a : b; }
};

// ------------------------------------------------------------------------------ exact sums
// Log-softmax denominators (the sampled token's log-prob, beam top-k's scores) are exact integer
// sums: each term exp(y - max) in [0, 1] as a fixed-point integer (fix63, fix40 below), summed in
// 128 bits, so they do not depend on the summation order, hence not on the block size or the
// vocabulary split.
struct U128 {
  unsigned long long lo = 0, hi = 0;
  __device__ __forceinline__ void add(unsigned long long v) {
    lo += v;
    hi += lo < v ? 1ull : 0ull;
  }
  __device__ __forceinline__ void add(const U128& o) {
    lo += o.lo;
    hi += o.hi + (lo < o.lo ? 1ull : 0ull);
  }
  __device__ __forceinline__ double to_double() const {
    return static_cast<double>(hi) * 18446744073709551616.0 + static_cast<double>(lo);
  }
};

// f in [0, 2) as a multiple of 2^-63, truncated (error < 2^-63 per term): the 24-bit significand
// shifted into place.
__device__ __forceinline__ unsigned long long fix63(float f) {
  const uint32_t bits = __float_as_uint(f);
  const int e = static_cast<int>(bits >> 23);
  const unsigned long long m = (bits & 0x7FFFFFu) | (e != 0 ? 0x800000u : 0u);
  const int shift = (e != 0 ? e : 1) - 87;  // f = m * 2^(e - 150)
  if (shift >= 0) return m << shift;        // shift <= 40 for f < 2: below 2^64
  return -shift < 32 ? m >> -shift : 0ull;
}

// log(z * 2^-63) rounded to float32: the log of an exact sum of fix63 terms.
__device__ __forceinline__ float log_fix63(const U128& z) { return static_cast<float>(log(z.to_double() * 0x1p-63)); }

// The cheaper fixed point of a full row's sum (beam top-k's log-softmax): t in [0, 1] rounded to a
// multiple of 2^-40 (one multiply and one conversion; fix63 takes ~10 integer operations). A row's
// error stays below vocab * 2^-41, under 2^-23 of the sum (which is >= 1: the max's term) for any
// vocabulary below 2^18 entries, and the sum is still exact and order-free.
__device__ __forceinline__ unsigned long long fix40(float t) { return __float2ull_rn(t * 0x1p40f); }

// One thread's sum of fix40 terms (each <= 2^40) over a row loop: a 64-bit integer, exact while the
// thread adds fewer than 2^24 terms (a thread of a 1024-thread block reads at most vocab / 1024
// entries, vocab < 2^31), so the loop adds two words an entry instead of U128's carry check; the
// block sums these in 128 bits (block_sum).
struct ThreadSum {
  unsigned long long v = 0;
  __device__ __forceinline__ void add(unsigned long long term) { v += term; }
  __device__ __forceinline__ U128 wide() const { return U128{v, 0ull}; }
};
__device__ __forceinline__ float log_fix40(const U128& z) { return static_cast<float>(log(z.to_double() * 0x1p-40)); }

// Warp-wide U128 sum (the butterfly: every lane gets it).
__device__ __forceinline__ U128 warp_sum(U128 v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    v.add(U128{__shfl_xor_sync(0xFFFFFFFFu, v.lo, o), __shfl_xor_sync(0xFFFFFFFFu, v.hi, o)});
  }
  return v;
}

// Block-wide U128 sum (every thread gets it); lo_s / hi_s hold >= 32 values.
__device__ __forceinline__ U128 block_sum(U128 v, unsigned long long* lo_s, unsigned long long* hi_s) {
  v = warp_sum(v);
  const int warps = static_cast<int>(blockDim.x >> 5);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) {
    lo_s[threadIdx.x >> 5] = v.lo;
    hi_s[threadIdx.x >> 5] = v.hi;
  }
  __syncthreads();
  U128 r;
  for (int w = 0; w < warps; ++w) {
    U128 p;
    p.lo = lo_s[w];
    p.hi = hi_s[w];
    r.add(p);
  }
  return r;
}

// Warp 0 helpers over 256 histogram bins, visited from the highest bin down. Lane l owns bins
// 255 - 8l ... 248 - 8l. Returns, to lane 0 (and all of warp 0), the exclusive suffix sum of
// every lane's first bin.
template <class Bins, class T>
__device__ __forceinline__ T lane_exclusive_suffix(const Bins& bins, int lane, T* lane_total) {
  T total = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) total += bins[255 - 8 * lane - j];
  T incl = total;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const T up = __shfl_up_sync(0xFFFFFFFFu, incl, o);
    if (lane >= o) incl += up;
  }
  *lane_total = total;
  return incl - total;
}

// Radix step of an n-th largest selection: the bin b holding the `remaining`-th largest element
// (counted from bin 255 down), and the count of elements in higher bins. Call from warp 0 only.
__device__ __forceinline__ void select_bin(const uint32_t* hist, uint32_t remaining, int* bin_out,
                                           uint32_t* above_out) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  uint32_t total;
  uint32_t above = lane_exclusive_suffix(hist, lane, &total);
  int found = -1;
  uint32_t found_above = 0;
  if (above < remaining && above + total >= remaining) {
    for (int j = 0; j < 8; ++j) {
      const int b = 255 - 8 * lane - j;
      if (above + hist[b] >= remaining) {
        found = b;
        found_above = above;
        break;
      }
      above += hist[b];
    }
  }
  const unsigned owner = __ballot_sync(0xFFFFFFFFu, found >= 0);
  const int src = owner ? __ffs(owner) - 1 : 0;
  *bin_out = __shfl_sync(0xFFFFFFFFu, found, src);
  *above_out = __shfl_sync(0xFFFFFFFFu, found_above, src);
}

// A histogram's slot for an entry: its bin when it has one, else one of 32 spare slots past the
// `bins` bins, the lane's own, which nothing reads. Every entry then takes one shared atomic, with
// no branch around it (a convergence barrier per entry in the row loops), and entries without a
// bin never collide with each other (a row of mostly -inf, a masked vocabulary, would otherwise
// send a warp's 32 atomics to one address).
constexpr int kSpareSlots = 32;
__device__ __forceinline__ uint32_t bin_or_spare(bool has_bin, uint32_t bin, uint32_t bins) {
  return has_bin ? bin : bins + (threadIdx.x & 31u);
}

// Shared state of radix_nth_each.
struct RadixShared {
  uint32_t hist[256 + kSpareSlots];  // 256 bins, then the spare slots (select_top_bins)
  int bin;
  uint32_t above;
  uint32_t bin_count;
};

// A histogram merge that does nothing: the block reads the whole row.
struct NoMerge {
  __device__ __forceinline__ void operator()(uint32_t*) const {}
};

// Bounds on the keys a radix descent sees: the leading bytes where lo and hi agree are common to
// every key, so the descent starts below them (one pass per byte saved, and the first passes are
// the ones whose histogram atomics all hit one or two bins).
struct KeyRange {
  uint32_t lo = 0;
  uint32_t hi = 0xFFFFFFFFu;
  // The first byte's shift to histogram; *prefix / *mask: the common bytes above it.
  __device__ __forceinline__ int start(uint32_t* prefix, uint32_t* mask) const {
    int shift = 24;
    *mask = 0;
    while (shift > 0 && ((lo ^ hi) >> shift) == 0) {
      *mask |= 255u << shift;
      shift -= 8;
    }
    *prefix = lo & *mask;
    return shift;
  }
};

// The n-th largest (1-based) key among the elements where keyfn(v, x, &key) is true (n must not
// exceed their count; every such key in `range`). *above: how many have a larger key; *ties: how
// many have this key. each(f) calls f(v, x) for every element the block reads (v numbered in the
// row); merge(sh.hist) turns the block's histogram into the row's (the split-vocabulary path; it
// must end with the merged counts in sh.hist, visible to the whole block).
template <class Each, class KeyFn, class Merge = NoMerge>
__device__ uint32_t radix_nth_each(const Each& each, uint32_t n, KeyFn keyfn, RadixShared& sh, uint32_t* above,
                                   uint32_t* ties, Merge merge = Merge(), KeyRange range = KeyRange()) {
  uint32_t prefix, mask, remaining = n;
  for (int shift = range.start(&prefix, &mask); shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) sh.hist[i] = 0;
    __syncthreads();
    each([&](int v, float x) {
      uint32_t key;
      if (keyfn(v, x, &key) && (key & mask) == prefix) atomicAdd(&sh.hist[(key >> shift) & 255u], 1u);
    });
    __syncthreads();
    merge(sh.hist);
    if (threadIdx.x < 32) {
      int bin;
      uint32_t ab;
      select_bin(sh.hist, remaining, &bin, &ab);
      if (threadIdx.x == 0) {
        bin = bin < 0 ? 0 : bin;  // unreachable when n <= count; keeps the shift defined
        sh.bin = bin;
        sh.above = ab;
        sh.bin_count = sh.hist[bin];
      }
    }
    __syncthreads();
    prefix |= static_cast<uint32_t>(sh.bin) << shift;
    mask |= 255u << shift;
    remaining -= sh.above;
    *ties = sh.bin_count;
  }
  *above = n - remaining;
  return prefix;
}

// ------------------------------------------------------------------------- candidate lists
// The compact paths of the sampling chain and of beam top-k only need a row's highest entries.
// They histogram the gap smax - score(x) in 256 equal bins (GapBins), keep the entries of the top
// bins on a list in shared memory (append_entries) and run their radix selects on the list
// instead of the row. The bin is monotone in the score, so the listed entries are exactly the
// entries whose score is at or above some value: a top prefix of the sorted row with equal scores
// always on the same side, and every entry off the list scores below every entry on it.
constexpr int kCandCap = 4096;  // list entries (32 KiB of shared memory)

// A list entry: the input value's bits and its index in the row.
__device__ __forceinline__ unsigned long long pack_cand(int v, float x) {
  return (static_cast<unsigned long long>(static_cast<uint32_t>(v)) << 32) | __float_as_uint(x);
}

// f(v, x) for the entries of a list, strided over the block.
template <class F>
__device__ __forceinline__ void for_list(const unsigned long long* list, int count, F&& f) {
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    const unsigned long long c = list[i];
    f(static_cast<int>(c >> 32), __uint_as_float(static_cast<uint32_t>(c)));
  }
}

// The range of key_of over a list whose largest key is hi (radix_nth_each's `range`); scratch
// holds >= 32 values.
template <class KeyOf>
__device__ KeyRange list_keys(const unsigned long long* list, int count, const KeyOf& key_of, uint32_t hi,
                              uint32_t* scratch) {
  uint32_t lo = 0xFFFFFFFFu;
  for_list(list, count, [&](int, float x) {
    const uint32_t key = key_of(x);
    lo = key < lo ? key : lo;
  });
  lo = block_reduce(lo, MinOp(), scratch);
  return KeyRange{lo < hi ? lo : hi, hi};
}

// Key-bin lists: a histogram of the top 12 bits of every finite entry's sort key (sign, exponent,
// 3 mantissa bits: bins an eighth of an octave wide, monotone in the value like the gap bins)
// needs no range, so the statistics pass can take it; the bins down to the one holding the
// keep-th largest entry are then known after that one read, and a second read lists them (the gap
// histogram's read saved). The list is every entry at or above some value, the keep-th with all
// its ties. When those bins hold more than kCandCap entries (values bunched within an eighth of an
// octave) or fewer finite entries than keep exist, the gap histogram runs instead. The histogram
// lives in the list's shared memory, free until the list is built.
constexpr int kKeyBins = 4096;
constexpr int kKeyBinShift = 20;
static_assert(kKeyBins * sizeof(uint32_t) <= kCandCap * sizeof(unsigned long long), "the histogram lives in a list");

// The histogram's bin of a sort key.
__device__ __forceinline__ uint32_t key_bin(uint32_t key) { return key >> kKeyBinShift; }

// The key-bin histogram's slot for an entry of the statistics pass (bin_or_spare): its bin when
// `listable` (finite).
static_assert((kKeyBins + kSpareSlots) * sizeof(uint32_t) <= kCandCap * sizeof(unsigned long long),
              "the slots live in a list");
__device__ __forceinline__ uint32_t key_slot(uint32_t key, bool listable) {
  return bin_or_spare(listable, key_bin(key), kKeyBins);
}

// Zeroes a key-bin histogram before its pass (the whole block).
__device__ __forceinline__ void clear_key_bins(uint32_t* key_hist) {
  for (int i = threadIdx.x; i < kKeyBins; i += blockDim.x) key_hist[i] = 0;
  __syncthreads();
}

struct KeyBinList {
  int low = -1;        // the lowest listed bin; -1: no key-bin list
  uint32_t count = 0;  // entries in bins low..kKeyBins-1
  // Whether an entry with this sort key is listed (callers also leave out -inf). `&`, not `&&`:
  // the row loops call it on every entry, and a short circuit becomes a branch there.
  __device__ __forceinline__ bool holds(uint32_t key) const {
    return (low >= 0) & (key_bin(key) >= static_cast<uint32_t>(low));
  }
  // The same test as one float comparison, for the row loops (low >= 0): a value x is listed iff
  // x >= lowest(), the smallest value above -inf in bin low or above (sort keys order the values,
  // and -0 / +0 share a key; NaN, never listed, compares false).
  __device__ __forceinline__ float lowest() const {
    const uint32_t key = static_cast<uint32_t>(low) << kKeyBinShift;  // the bin's first key
    return key <= kNegInfKey ? -FLT_MAX : key_to_float(key);  // at or below: only -inf's and NaN's keys
  }
};

// From the histogram (complete: __syncthreads since the pass), the bins down to the one holding the
// keep-th largest finite entry, when they hold at most kCandCap entries. Every thread gets it.
__device__ inline KeyBinList key_bin_list(const uint32_t* key_hist, uint32_t keep, RadixShared& sh) {
  // 256 groups of 16 bins: select_bin finds the group, thread 0 the bin inside it.
  for (int g = threadIdx.x; g < 256; g += blockDim.x) {
    uint32_t sum = 0;
    for (int j = 0; j < 16; ++j) sum += key_hist[16 * g + j];
    sh.hist[g] = sum;
  }
  __syncthreads();
  if (threadIdx.x < 32) {
    int group;
    uint32_t above;
    select_bin(sh.hist, keep, &group, &above);
    if (threadIdx.x == 0) {
      int low = -1;
      uint32_t n = above;
      for (int b = 16 * group + 15; group >= 0 && b >= 16 * group; --b) {
        n += key_hist[b];
        if (n >= keep) {
          low = b;
          break;
        }
      }
      sh.bin = low >= 0 && n <= static_cast<uint32_t>(kCandCap) ? low : -1;
      sh.bin_count = n;
    }
  }
  __syncthreads();
  return KeyBinList{sh.bin, sh.bin_count};
}

// bin(score) in [0, 255] (255: the largest scores), or -1 for -inf (never listed).
struct GapBins {
  float smax;
  float scale;  // 256 / (smax - smin) for the smallest finite score smin; 0 when smax == smin
  __device__ __forceinline__ static GapBins over(float smax, float smin) {
    const float range = smax - smin;
    return GapBins{smax, range > 0.0f ? 256.0f / range : 0.0f};
  }
  // Selects, no early return (a branch per entry in the row loops): -inf's and NaN's gaps clamp to
  // 255 like any other before the select drops them.
  __device__ __forceinline__ int operator()(float score) const {
    float g = (smax - score) * scale;
    g = g < 255.0f ? g : 255.0f;
    const int bin = 255 - static_cast<int>(g);
    return score > -INFINITY ? bin : -1;
  }
};

// Histogram of bins(score(x)) over what each(f) visits (also(score) runs for each such entry,
// listed or not), merged by merge(sh.hist) (see radix_nth_each), then the lowest bin of the list:
// keep > 0: the top bins down to the one holding the keep-th largest score (all its ties in);
// keep == 0: the top bins holding at most cap entries. Leaves that bin in sh.bin (-1: no list
// fits) and the list's length in sh.bin_count, visible to the whole block.
template <class Each, class ScoreFn, class Also, class Merge>
__device__ void select_top_bins(const Each& each, const ScoreFn& score, const Also& also, const GapBins& bins,
                                uint32_t keep, uint32_t cap, Merge merge, RadixShared& sh) {
  for (int i = threadIdx.x; i < 256; i += blockDim.x) sh.hist[i] = 0;
  __syncthreads();
  each([&](int, float x) {
    const float y = score(x);
    const int b = bins(y);
    atomicAdd(&sh.hist[bin_or_spare(b >= 0, static_cast<uint32_t>(b), 256)], 1u);  // -inf: no bin
    also(y);
  });
  __syncthreads();
  merge(sh.hist);
  if (threadIdx.x < 32) {
    int bin;
    uint32_t above;
    select_bin(sh.hist, keep > 0 ? keep : cap + 1u, &bin, &above);
    if (threadIdx.x == 0) {
      int low = -1;
      uint32_t n = 0;
      if (keep > 0) {
        // bin < 0: fewer finite scores than keep, so the selection reaches -inf entries.
        if (bin >= 0 && above + sh.hist[bin] <= cap) {
          low = bin;
          n = above + sh.hist[bin];
        }
      } else if (bin < 0) {  // every finite entry fits
        low = 0;
        for (int i = 0; i < 256; ++i) n += sh.hist[i];
      } else if (above > 0) {
        low = bin + 1;
        n = above;
      }
      sh.bin = low;
      sh.bin_count = n;
    }
  }
  __syncthreads();
}

// The sum of v over this lane and the lanes below it (every lane of the warp must call).
template <class T>
__device__ __forceinline__ T warp_inclusive_sum(T v) {
  const int lane = static_cast<int>(threadIdx.x & 31);
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const T up = __shfl_up_sync(0xFFFFFFFFu, v, o);
    v += lane >= o ? up : T{0};
  }
  return v;
}

// The first of the `mine` consecutive slots this lane takes on a list whose length *count holds
// (every lane of the warp calls): the warp's lanes take theirs in lane order, with one atomic.
__device__ __forceinline__ uint32_t warp_claim(unsigned int* count, uint32_t mine) {
  const uint32_t incl = warp_inclusive_sum(mine);
  uint32_t start = 0;
  if ((threadIdx.x & 31) == 31) start = atomicAdd(count, incl);
  return __shfl_sync(0xFFFFFFFFu, start, 31) + incl - mine;
}

// Appends pack_cand(base + i, x) for the entries i of [0, len) at `data` where take(x) holds to
// list[*count ...] (at most cap). Every thread runs the same number of iterations (whole 16-byte
// chunks per thread), so the warp collectives that take the slots are uniform; one atomic per
// warp and chunk that has entries to append.
template <int D, class Take>
__device__ void append_entries(const void* data, int len, int base, const Take& take, unsigned long long* list,
                               unsigned int* count, uint32_t cap) {
  using T = typename Elem<D>::T;
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  const T* p = static_cast<const T*>(data);
  const bool aligned = (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
  const int chunks = (len + kVec - 1) / kVec;
  for (int c0 = 0; c0 < chunks; c0 += static_cast<int>(blockDim.x)) {
    const int c = c0 + static_cast<int>(threadIdx.x);
    float xs[kVec];
    uint32_t hits = 0;
    if (c < chunks) {
      const int first = c * kVec;
      const int n = len - first < kVec ? len - first : kVec;
      if (aligned && n == kVec) {
        const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p) + c);
        T vals[kVec];
        memcpy(vals, &raw, sizeof(raw));
#pragma unroll
        for (int j = 0; j < kVec; ++j) xs[j] = Elem<D>::get(vals[j]);
      } else {
        for (int j = 0; j < n; ++j) xs[j] = Elem<D>::get(__ldg(p + first + j));
      }
      for (int j = 0; j < n; ++j) {
        if (take(xs[j])) hits |= 1u << j;
      }
    }
    const uint32_t mine = static_cast<uint32_t>(__popc(hits));
    if (__ballot_sync(0xFFFFFFFFu, mine != 0) == 0) continue;  // the common case: nothing here
    uint32_t start = warp_claim(count, mine);
    for (int j = 0; hits != 0; ++j, hits >>= 1) {
      if ((hits & 1u) && start < cap) list[start++] = pack_cand(base + c * kVec + j, xs[j]);
    }
  }
}

}  // namespace pydecode::cuda
