// The one-read top-k list (csrc/cuda/sampling.cu's top-k, top-p and min-p rows; beam.cu's rows): a
// block lists the largest entries of its part of a row while it reads it, with no shared-memory
// atomic per entry. Only included by .cu files, after device.cuh; needs 1024-thread blocks whose
// warps' buffers (kScanWarpCap entries each) fit the caller's list.
#pragma once
#include <cuda_runtime.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cuda/device.cuh"

namespace pydecode::cuda {
namespace {

// ----------------------------------------------------------------------------- one-read top-k
// Top-k with a small k (the decode-loop call: k <= kScanMaxKeep) lists its candidates while it
// reads the row: one read instead of two (statistics + key bins, then the list), and no
// shared-memory atomic per entry. (Top-p rows without top-k list their kScanMaxKeep largest
// entries the same way: see the chain kernel.) Each warp keeps its own buffer of entries at or above a running
// threshold: when the buffer fills, the warp finds a key with at least keep entries of the buffer
// at or above it (warp_keep_top), keeps those and raises its threshold to it. A warp's threshold
// never exceeds the keep-th largest key of some of the row's entries, so it never exceeds the
// row's keep-th largest key: every entry that top-k keeps (the keep-th value's ties included) is
// on some warp's buffer, and any warp's threshold is a bound every warp may filter with (the warps
// share the highest through shared memory). The buffers together are the row's list (a superset
// of the kept set), which the compact path's stages then work on, with the same outputs as every
// other path: the later stages are order-free and only ever see kept entries. (The running-
// threshold filter is the idea of streaming top-k selection, e.g. FAISS's WarpSelect; here the
// threshold only filters, and the exact k-th value is still the radix select's.) When a warp's
// buffer is all ties of its keep-th value it cannot make room: the row's statistics pass and
// another list follow.
//
// Pooled thresholds (ScanShared::pool; the chain's top-k rows and split top-p / min-p rows,
// beam.cu's rows with k <= 32 and its slices). One warp's evidence is weak on a GPU block: its
// buffer sees 1/32 of the part, and the keep-th largest of that is about the (32 * keep)-th of the
// part, so alone the warps list ~1300-2300 entries of a 128256 row at keep 50
// (bench/cuda_row_reads.py --threads 1024). So each warp also publishes its m largest keys
// (m = kScanPool / warps, at most kScanPoolMaxPer) in its slots of a block-wide pool: the lanes'
// maxima of 8 in the first round, its buffer's after each round with hits. Slot j holds
// at most the j-th largest key the warp has seen, and each slot only rises (atomicMax), so any
// reading of the pool, however stale, counts distinct entries: when the pool holds keep keys at or
// above t, the part has keep entries at or above t, and t bounds the kept set like a warp's own
// threshold. The warps read it without a barrier after a round with hits (and all together once,
// after the first round's barrier and before the block's list is taken): their thresholds then
// follow about the keep-th largest of all the part read so far, and the list holds ~keep entries.
// (A miscount that set a bound above the keep-th largest would list fewer than keep entries: one
// block's row would then fall back to the statistics pass, but a split row's other blocks could
// hide the loss, so the counts must be exact; the model tests check both.)
//
// The loop over the row compares the inputs themselves with the threshold (input_floor): two
// instructions an entry (unpack, compare), no key, no statistic; the row's maximum is the list's
// (the largest entry is always listed) and a NaN always passes the comparison, so the entries that
// do pass go to scan_hits, which takes their keys and finds the NaN. The first round starts the
// warp's threshold at the keep-th largest of its lanes' maxima of 8 entries (each one an entry of
// the row, so at least keep entries reach it): the first round lists about keep entries instead of
// all of them.
constexpr int kScanMaxKeep = 64;
constexpr int kScanLoads = 4;
constexpr int kScanWarpCap = 128;  // entries of a warp's buffer: 32 warps fill the list exactly
static_assert(kScanMaxKeep < kScanWarpCap, "a compacted buffer must leave room");
constexpr int kScanPool = 128;       // pooled thresholds' slots: 4 a warp of a 1024-thread block
constexpr int kScanPoolMaxPer = 16;  // a warp's slots at most (smaller blocks: the model's)
static_assert(kScanPool % 32 == 0, "the pool is read 32 slots at a time");

// The highest key t such that at least `keep` of the warp's keys (kPer a lane; 0: no key) are at
// or above it, narrowed bit by bit from the top bit where the keys differ only while more than
// keep + kScanSlack are (after the first rounds a buffer spans about an octave, so a few bits
// suffice); 0 when the warp holds fewer than keep keys.
constexpr uint32_t kScanSlack = 8;
template <int kPer>
__device__ __forceinline__ uint32_t warp_key_floor(const uint32_t (&k)[kPer], uint32_t keep) {
  uint32_t lo = 0xFFFFFFFFu, hi = 0, n = 0;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    lo = k[i] != 0 && k[i] < lo ? k[i] : lo;
    hi = k[i] > hi ? k[i] : hi;
    n += static_cast<uint32_t>(__popc(__ballot_sync(0xFFFFFFFFu, k[i] != 0)));
  }
  lo = warp_reduce(lo, MinOp());
  hi = warp_reduce(hi, MaxOp());
  if (n < keep) return 0;
  const uint32_t diff = lo ^ hi;
  const int top = diff == 0 ? -1 : 31 - __clz(diff);  // the highest bit where the keys differ
  uint32_t t = top < 0 ? lo : lo & ~((2u << top) - 1u);
  for (int bit = top; bit >= 0 && n > keep + kScanSlack; --bit) {
    const uint32_t c = t | (1u << bit);
    uint32_t m = 0;
#pragma unroll
    for (int i = 0; i < kPer; ++i) m += static_cast<uint32_t>(__popc(__ballot_sync(0xFFFFFFFFu, k[i] >= c)));
    if (m >= keep) {
      t = c;
      n = m;
    }
  }
  return t;
}

// Makes room on a warp's full buffer (the whole warp calls): keeps the entries at or above t, the
// higher of warp_key_floor's key of the buffer and `at_least` (another warp's threshold may have
// passed it), *count updated, in slot order, and returns t. Entries are
// listed input values: their keys are key_of(x). Out of line: it runs a few times a row, and
// inlined its registers would squeeze the scan's loop.
template <class KeyOf>
__device__ __noinline__ uint32_t warp_keep_top(unsigned long long* buf, uint32_t* count, uint32_t keep,
                                               uint32_t at_least, const KeyOf key_of) {
  constexpr int kPer = kScanWarpCap / 32;
  const int lane = static_cast<int>(threadIdx.x & 31);
  const uint32_t n_in = *count;
  unsigned long long e[kPer];
  uint32_t k[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const bool valid = static_cast<uint32_t>(lane + 32 * i) < n_in;
    e[i] = valid ? buf[lane + 32 * i] : 0ull;
    k[i] = valid ? key_of(__uint_as_float(static_cast<uint32_t>(e[i]))) : 0u;  // listed keys are > 0
  }
  uint32_t t = warp_key_floor(k, keep);  // keep <= n_in: t is a key
  t = t > at_least ? t : at_least;
  __syncwarp();
  // Slot order is kept and an entry never moves up (all of them are in registers anyway).
  const uint32_t lower_lanes = (1u << lane) - 1u;
  uint32_t out = 0;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const bool take = k[i] != 0 && k[i] >= t;
    const unsigned b = __ballot_sync(0xFFFFFFFFu, take);
    if (take) buf[out + static_cast<uint32_t>(__popc(b & lower_lanes))] = e[i];
    out += static_cast<uint32_t>(__popc(b));
  }
  __syncwarp();
  *count = out;
  return t;
}

// A warp's slots in the pool: m of them, m = kScanPool / warps (at most kScanPoolMaxPer).
__device__ __forceinline__ int scan_pool_per_warp() {
  const int m = kScanPool / static_cast<int>(blockDim.x >> 5);
  return m < kScanPoolMaxPer ? m : kScanPoolMaxPer;
}

// Publishes the warp's m largest of keys k (kPer a lane, 0: no key) in its pool slots (the whole
// warp calls): slot j gets the (j + 1)-th largest, by m rounds of a warp maximum that takes one
// copy out of k each time (ties are distinct entries, so a tied key fills as many slots as it has
// copies). first: the slots are written (the first round, before the barrier that opens the
// pool); else raised (atomicMax), never lowered.
template <int kPer>
__device__ __forceinline__ void warp_publish_top(uint32_t (&k)[kPer], uint32_t* slots, int m, bool first) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  for (int j = 0; j < m; ++j) {
    uint32_t mine = 0;
#pragma unroll
    for (int i = 0; i < kPer; ++i) mine = k[i] > mine ? k[i] : mine;
    const uint32_t top = warp_reduce(mine, MaxOp());
    const unsigned holders = __ballot_sync(0xFFFFFFFFu, top != 0 && mine == top);
    if (holders != 0 && lane == __ffs(static_cast<int>(holders)) - 1) {
      bool taken = false;
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        const bool take = !taken && k[i] == top;
        k[i] = take ? 0u : k[i];
        taken = taken || take;
      }
    }
    if (lane == 0) {
      if (first) {
        slots[j] = top;
      } else if (top != 0) {
        atomicMax(slots + j, top);
      }
    }
  }
}

// The pooled threshold (the whole warp calls): the highest key with at least keep of the pool's
// slots (`slots` of them in use) at or above it, 0 when fewer than keep hold a key. Out of line:
// it runs after the rounds with hits, and inlined it would squeeze the scan's loop.
__device__ __noinline__ uint32_t pooled_floor(const uint32_t* pool, int slots, uint32_t keep) {
  constexpr int kPer = kScanPool / 32;
  const int lane = static_cast<int>(threadIdx.x & 31);
  uint32_t k[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) k[i] = lane + 32 * i < slots ? coherent_load(pool + lane + 32 * i) : 0u;
  return warp_key_floor(k, keep);
}

// Publishes the m largest keys of a list of count <= kScanWarpCap listed values (a warp's buffer,
// or a block's list) in `slots` (the whole warp calls; first: as warp_publish_top's).
template <class KeyOf>
__device__ __forceinline__ void warp_publish_list(const unsigned long long* list, uint32_t count, const KeyOf& key_of,
                                                  uint32_t* slots, int m, bool first) {
  constexpr int kPer = kScanWarpCap / 32;
  const int lane = static_cast<int>(threadIdx.x & 31);
  uint32_t k[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const uint32_t slot = static_cast<uint32_t>(lane + 32 * i);
    k[i] = slot < count ? key_of(__uint_as_float(static_cast<uint32_t>(list[slot]))) : 0u;  // listed keys are > 0
  }
  warp_publish_top(k, slots, m, first);
}

// After a round with hits (the whole warp calls): publishes the m largest keys of the warp's
// buffer (`count` listed values) in its slots `mine`, and returns the pooled threshold. Out of
// line, as pooled_floor.
template <class KeyOf>
__device__ __noinline__ uint32_t pool_buffer(const unsigned long long* buf, uint32_t count, const KeyOf key_of,
                                             uint32_t* mine, int m, const uint32_t* pool, int slots, uint32_t keep) {
  __syncwarp();  // the lanes' appends to the buffer
  warp_publish_list(buf, count, key_of, mine, m, false);
  return pooled_floor(pool, slots, keep);
}

// The lowest float t_x with: sort_key(x * rcp) >= thr implies x >= t_x, for a finite rcp > 0
// (x -> float32(x * rcp) is then non-decreasing, and NaN only for a NaN x). !(x < t_x) holds for
// every entry whose key reaches thr, and for NaN: the scan compares the inputs with it, without
// the multiply or the key. Margins: float32(z) >= t needs z >= t - ulp(t) / 2 (z >= FLT_MAX for
// +inf), and the double quotient is within 2^-52 of lo / rcp. Out of line: it runs when a
// threshold rises, a few times a row.
__device__ __noinline__ float input_floor(uint32_t thr, float rcp) {
  const float t = key_to_float(thr);
  double lo = t == INFINITY ? static_cast<double>(FLT_MAX) : static_cast<double>(t);
  lo -= fabs(lo) * 0x1p-22 + 0x1p-148;
  double q = lo / static_cast<double>(rcp);
  q -= fabs(q) * 0x1p-40;
  float f = static_cast<float>(q);
  if (static_cast<double>(f) > q) f = nextafterf(f, -INFINITY);
  return f;
}

// Entry j of a 16-byte chunk as float32, from the chunk's 32-bit words (bfloat16: the high half
// masked, the low one shifted; no 16-bit extract).
template <int D>
__device__ __forceinline__ float chunk_entry(const uint4& raw, int j) {
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
  if constexpr (D == kDTypeBF16) {
    return __uint_as_float((j & 1) ? (w[j >> 1] & 0xFFFF0000u) : (w[j >> 1] << 16));
  } else if constexpr (D == kDTypeF32) {
    return __uint_as_float(w[j & 3]);
  } else {
    return Elem<D>::get(static_cast<uint16_t>((j & 1) ? (w[j >> 1] >> 16) : (w[j >> 1] & 0xFFFFu)));
  }
}

// What scan_hits hands back (the warp's buffer fill, threshold and state, the lane's NaN flag).
struct ScanState {
  uint32_t count;
  uint32_t thr;
  bool full;     // the buffer could not make room: the row needs another list
  uint32_t nan;  // this lane met a NaN
};

// Appends the entries of a thread's round that passed the comparison with the threshold's input
// floor (`hits`, bit j: entry j % kVec of chunk first + (j / kVec) * step) to the warp's buffer in
// (lane, entry) order; when they do not all fit, fills the buffer, makes room (warp_keep_top) and
// goes on, until every hit is placed or the buffer cannot make room. Each value is read again,
// once (from L1: the round just loaded it). A hit is listed as it is: a NaN sets the lane's flag
// (the row then takes the statistics pass, whatever its list), a value just below the threshold
// (the floor's margin) is one more candidate, and a place past the end is listed as -inf, which
// every compaction drops. The whole warp calls. Out of line: it runs on the rounds with a hit, and
// inlined it would squeeze the comparison loop's registers.
template <int D, class KeyOf>
__device__ __noinline__ ScanState scan_hits(const void* data, int len, int base, int first, int step, uint32_t hits,
                                            unsigned long long* buf, ScanState w, uint32_t keep, const KeyOf key_of) {
  using T = typename Elem<D>::T;
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  const T* p = static_cast<const T*>(data);
  while (true) {
    const uint32_t mine = static_cast<uint32_t>(__popc(hits));
    const uint32_t incl = warp_inclusive_sum(mine);
    const uint32_t total = __shfl_sync(0xFFFFFFFFu, incl, 31);
    if (total == 0) break;
    const uint32_t room = kScanWarpCap - w.count;
    uint32_t rank = incl - mine;
    for (uint32_t h = hits; h != 0 && rank < room; h &= h - 1, ++rank) {
      const int j = __ffs(static_cast<int>(h)) - 1;
      const int v = (first + (j / kVec) * step) * kVec + j % kVec;
      const float x = v < len ? Elem<D>::get(__ldg(p + v)) : -INFINITY;
      w.nan |= key_of(x) == kNanKey ? 1u : 0u;
      buf[w.count + rank] = pack_cand(base + v, x);
      hits &= ~(1u << j);
    }
    if (total <= room) {
      w.count += total;
      break;
    }
    w.count = kScanWarpCap;
    __syncwarp();
    w.thr = warp_keep_top(buf, &w.count, keep, w.thr, key_of);
    if (w.count == kScanWarpCap) {
      w.full = true;
      break;
    }
  }
  return w;
}

// The shared memory scan_top_list works in: the list (kScanWarpCap entries a warp; the block's
// list ends up at its start), the threshold the warps share, 32 words of reduction scratch, and
// the pooled thresholds' kScanPool slots (null: each warp's threshold comes from its own buffer).
struct ScanShared {
  unsigned long long* cand;
  uint32_t* thr;
  uint32_t* u32;
  uint32_t* pool;
};

// The one-read top-k list of a row with keep <= kScanMaxKeep (see above), with `scaled` the
// multiply by a finite rcp > 0: the block's list is left in sh.cand and its length returned, or -1
// when a warp could not make room (ties). *kmax_out: the largest key on the block's list (the
// part's largest non-NaN key whenever the list holds an entry above -inf); *nan_out: whether this
// thread met a NaN (only meaningful when the list was built). NaN and -inf entries are never
// listed (a row with a NaN takes the statistics pass, and so does one with fewer than keep
// entries above -inf). Every thread runs the same rounds (kScanLoads 16-byte chunks each), so the
// warps' collectives are uniform. kLow: *low_out gets this thread's smallest input above -inf
// (+inf: none; only meaningful when the list was built, as a warp that cannot make room stops
// reading), which top-p's gap bins need: a minimum an entry in the loop, kept out of top-k's.
// *floor_out: the list's threshold (when it was built): every entry of the part whose key is at
// or above it is on the list (a split row's merge needs it: its list is a top prefix of the row
// only down to the highest of its blocks' floors).
template <int D, bool kLow, class YFn>
__device__ int scan_top_list(const void* data, int len, int base, const YFn& scaled, float rcp, uint32_t keep,
                             const ScanShared sh, uint32_t* kmax_out, uint32_t* nan_out, float* low_out,
                             uint32_t* floor_out) {
  using T = typename Elem<D>::T;
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  static_assert(kScanLoads * kVec <= 32, "a round's hits are one 32-bit mask");
  const T* p = static_cast<const T*>(data);
  const uint4* pv = reinterpret_cast<const uint4*>(p);
  // Chunks [0, whole) are 16-byte loads; the rest (an unaligned row, the last partial chunk) are
  // loaded entry by entry, and what lies past the end reads as -inf, which no threshold admits.
  const int whole = (reinterpret_cast<uintptr_t>(p) & 15u) == 0 ? len / kVec : 0;
  const int chunks = (len + kVec - 1) / kVec;
  const int step = static_cast<int>(blockDim.x);
  const int round = kScanLoads * step;
  const int warp = static_cast<int>(threadIdx.x >> 5);
  const int lane = static_cast<int>(threadIdx.x & 31);
  const auto key_of = [scaled](float x) { return sort_key(scaled(x)); };
  unsigned long long* buf = sh.cand + warp * kScanWarpCap;
  const T neg_inf = Elem<D>::neg_inf();
  // A round's chunks: whole ones as one 16-byte load, the rest entry by entry.
  const auto load_round = [&](int c0, uint4 (&raw)[kScanLoads]) {
#pragma unroll
    for (int u = 0; u < kScanLoads; ++u) {
      const int c = c0 + static_cast<int>(threadIdx.x) + u * step;
      if (c < whole) {
        raw[u] = __ldg(pv + c);
      } else {
        T vals[kVec];
#pragma unroll
        for (int j = 0; j < kVec; ++j) vals[j] = c * kVec + j < len ? __ldg(p + c * kVec + j) : neg_inf;
        memcpy(&raw[u], vals, sizeof(vals));
      }
    }
  };
  const auto hit_mask = [](const uint4 (&raw)[kScanLoads], float thr_x) {
    uint32_t hits = 0;
#pragma unroll
    for (int u = 0; u < kScanLoads; ++u) {
#pragma unroll
      for (int j = 0; j < kVec; ++j) hits |= !(chunk_entry<D>(raw[u], j) < thr_x) ? 1u << (u * kVec + j) : 0u;
    }
    return hits;
  };
  uint32_t* shared_thr = sh.thr;  // the highest threshold a warp has reached
  // (A pool of fewer than keep slots could never bound anything.) scan_pool_per_warp() is called
  // twice on purpose: held in one local, ptxas kept it through the scan loop and spilled there
  // (0.12-0.31 local operations an entry in the loops, sm_90; bench/cuda_loop_cost.py).
  const int pool_slots = sh.pool != nullptr ? scan_pool_per_warp() * static_cast<int>(blockDim.x >> 5) : 0;
  const bool pooled = pool_slots >= static_cast<int>(keep);
  const int pool_per = pooled ? scan_pool_per_warp() : 0;
  uint32_t* my_slots = pooled ? sh.pool + warp * pool_per : nullptr;
  ScanState w{0u, kNegInfKey + 1u, false, 0u};
  float thr_x;
  const auto adopt = [&](uint32_t t) {  // warp-uniform: the warp filters with t from now on
    w.thr = t;
    thr_x = input_floor(t, rcp);
  };
  const auto raise = [&](uint32_t t) {  // adopt t and share it with the other warps
    adopt(t);
    if (lane == 0) atomicMax(shared_thr, t);
  };
  // The hits of a round starting at chunk c0 (bits: scan_hits'), if the warp has any.
  const auto take_hits = [&](int c0, uint32_t hits) {
    if (__ballot_sync(0xFFFFFFFFu, hits != 0) == 0) return;
    const uint32_t before = w.thr;
    w = scan_hits<D>(data, len, base, c0 + static_cast<int>(threadIdx.x), step, hits, buf, w, keep, key_of);
    if (pooled && !w.full) {
      const uint32_t t = pool_buffer(buf, w.count, key_of, my_slots, pool_per, sh.pool, pool_slots, keep);
      w.thr = t > w.thr ? t : w.thr;
    }
    if (w.thr != before) raise(w.thr);
  };
  uint4 raw[kScanLoads];
  float low = INFINITY;
  const auto take_low = [&](float x) {  // NaN and -inf: no candidate
    if constexpr (kLow) low = fminf(low, x > -INFINITY ? x : INFINITY);
  };
  {  // the first round: the threshold starts at the keep-th largest of the lanes' maxima of 8
    // entries (the warp's, or the pool's: the warps' m largest of them), or (a short part: fewer
    // than keep of those) of pairs of the lane's first chunk; at least keep entries reach it either
    // way (NaN-ignoring maxima; none above -inf: no key). The round's loads are in flight across
    // the barrier that opens the shared threshold and the pool.
    load_round(0, raw);
    const auto key_above_neg_inf = [&](float m) {
      const uint32_t key = key_of(m);
      return key > kNegInfKey ? key : 0u;
    };
    uint32_t sub[kScanLoads];
#pragma unroll
    for (int u = 0; u < kScanLoads; ++u) {
      float m = -INFINITY;
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        const float x = chunk_entry<D>(raw[u], j);
        m = fmaxf(m, x);
        take_low(x);
      }
      sub[u] = key_above_neg_inf(m);
    }
    uint32_t t = warp_key_floor(sub, keep);
    if (pooled) warp_publish_top(sub, my_slots, pool_per, true);
    if (threadIdx.x == 0) *shared_thr = 0;
    __syncthreads();
    if (pooled) {
      const uint32_t p = pooled_floor(sh.pool, pool_slots, keep);
      t = p > t ? p : t;
    }
    if (t == 0) {
#pragma unroll
      for (int q = 0; q < kScanLoads; ++q) {
        sub[q] = 2 * q + 1 < kVec ? key_above_neg_inf(fmaxf(chunk_entry<D>(raw[0], (2 * q) % kVec),
                                                            chunk_entry<D>(raw[0], (2 * q + 1) % kVec)))
                                  : 0u;
      }
      t = warp_key_floor(sub, keep);
    }
    raise(t > w.thr ? t : w.thr);
    take_hits(0, hit_mask(raw, thr_x));
  }
  // The other rounds: the rounds of whole chunks in a loop of their own (only vector loads in it),
  // then what is left. Each compares its entries with the input floor of the warp's threshold, or
  // of a higher one another warp has reached (lane 0's reading, so that the warp agrees on it).
  const auto next_round = [&](int c0) {
    const uint32_t other = __shfl_sync(0xFFFFFFFFu, lane == 0 ? coherent_load(shared_thr) : 0u, 0);
    if (other > w.thr) adopt(other);
    bool any = false;  // the common round once warmed up: nothing reaches the threshold
#pragma unroll
    for (int u = 0; u < kScanLoads; ++u) {
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        const float x = chunk_entry<D>(raw[u], j);
        any |= !(x < thr_x);
        take_low(x);
      }
    }
    if (__ballot_sync(0xFFFFFFFFu, any) != 0) take_hits(c0, hit_mask(raw, thr_x));
  };
  int c0 = round;
  for (; c0 + round <= whole && !w.full; c0 += round) {
#pragma unroll
    for (int u = 0; u < kScanLoads; ++u) raw[u] = __ldg(pv + c0 + static_cast<int>(threadIdx.x) + u * step);
    next_round(c0);
  }
  for (; c0 < chunks && !w.full; c0 += round) {
    load_round(c0, raw);
    next_round(c0);
  }
  *nan_out = w.nan;
  *low_out = low;
  // The block's list: the entries of the warps' buffers at or above the block's final threshold
  // (some warp's: no entry top-k keeps is below it; about keep of them are above), moved together
  // (every entry into registers first: a buffer's new place may overlap a lower warp's old one),
  // and its largest key.
  __syncthreads();
  uint32_t thr = coherent_load(shared_thr);
  if (pooled) {  // every warp's last publication is in: the pool's bound is about the part's keep-th
    const uint32_t p = pooled_floor(sh.pool, pool_slots, keep);
    thr = p > thr ? p : thr;
  }
  *floor_out = thr;
  constexpr int kPer = kScanWarpCap / 32;
  unsigned long long e[kPer];
  uint32_t k[kPer];
  uint32_t mine = 0, kmax = 0;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const uint32_t slot = static_cast<uint32_t>(lane + 32 * i);
    e[i] = slot < w.count ? buf[slot] : 0ull;
    k[i] = slot < w.count ? key_of(__uint_as_float(static_cast<uint32_t>(e[i]))) : 0u;
    k[i] = k[i] >= thr ? k[i] : 0u;
    mine += k[i] != 0 ? 1u : 0u;
    kmax = k[i] != kNanKey && k[i] > kmax ? k[i] : kmax;
  }
  const uint32_t in_warp = warp_inclusive_sum(mine);
  if (lane == 31) sh.u32[warp] = w.full ? 0xFFFFFFFFu : in_warp;
  __syncthreads();
  const int warps = static_cast<int>(blockDim.x >> 5);
  uint32_t offset = in_warp - mine, total = 0;
  bool overflow = false;
  for (int w2 = 0; w2 < warps; ++w2) {
    const uint32_t c = sh.u32[w2];
    overflow = overflow || c == 0xFFFFFFFFu;
    offset += w2 < warp ? c : 0u;
    total += c;
  }
  if (overflow) {
    __syncthreads();  // sh.u32 is the next reduction's scratch
    *kmax_out = 0;
    return -1;
  }
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    if (k[i] != 0) sh.cand[offset++] = e[i];
  }
#if defined(PYDECODE_CUDA_EMULATION)
  if (threadIdx.x == 0) emu::raise_to(emu::max_scan_list, total);  // the model's list length (tests, bench)
#endif
  *kmax_out = block_reduce(kmax, MaxOp(), sh.u32);  // its first __syncthreads publishes the list
  return static_cast<int>(total);
}

}  // namespace
}  // namespace pydecode::cuda
