// CPU kernels of the sampling family. What they reproduce is the torch reference in
// pydecode/ops/sampling.py (= transformers' warpers), bit for bit except where noted; how:
//
// * Every row is processed as float32 y = float32(x) [/ float32(T) | log(x)], exactly as torch.
// * Top-k: the keep-th largest key (NaN ranks highest, like torch.topk) by a candidate buffer
//   with a running threshold in one read of the row (with a temperature, on x with a widened
//   bound; only candidates are divided), or radix select for keep > 4096. Ties all kept.
// * Top-p: transformers sorts ascending, takes softmax, float32 cumsum (torch accumulates it in
//   double on CPU) and removes positions with cumsum <= float32(1 - top_p). The softmax is
//   emulated bit for bit (torch_cpu_math.h: Sleef exp, torch's L-lane float32 sum, x * (1/sum)).
//   Its row sum runs over the *sorted* row, which only a sort reproduces: when the entries with
//   a nonzero exponential are few (after top-k, or <= 8192) they are sorted and everything is
//   exact. Otherwise the row sum is the exact (double) one: mass levels computed with the
//   exponentials give the band of values holding the boundary, and only that band is sorted
//   (or, for flat rows, histogrammed at 64 buckets per octave, then one bucket sorted). The
//   double sum can differ from torch's float32 lane sum in the last bits, so a token whose
//   cumulative mass lies that close to 1 - top_p can be decided differently (~1% of 128K-entry
//   rows of random logits; tests/ops/test_sampling_cpu.py bounds where).
// * Min-p: p = float32 softmax of the (unsorted) row, emulated exactly; remove p < min_p * p_max.
// * Each stage keeps a prefix of the order (y descending, index ascending), so the kept set is
//   a list of entries or a Cut (key > cut.key, or key == cut.key and index <= cut.index). Where
//   a cut falls inside a group of equal values, transformers' choice comes from torch.sort /
//   torch.topk (top-p's boundary, min_tokens_to_keep); those are replayed (torch_sort.h).
// * Sampling: Gumbel-max with the Philox noise of the randomness contract over the kept
//   entries, with correctly rounded logs (torch's MKL log is one ulp apart on 0.1% of the
//   uniforms, see torch_cpu_math.h). Large candidate sets are scored with a fast float log
//   first; only tokens within its proven error of the best get the exact noise.
// * Log-probabilities: log_softmax emulated exactly (Sleef exp and log, lane sum).
#include "cpu/sampling.h"

// GCC's tuning for recent Intel cores prefers 256-bit vectors even where AVX512 exists; the exp /
// key loops here are compute-bound and run ~1.4x faster on full 512-bit vectors (measured on the
// 2-core Sapphire Rapids VM). A no-op without AVX512.
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__AVX512F__)
// GCC 12's AVX512 intrinsics seed results with _mm512_undefined_*(), which -Wmaybe-uninitialized
// reports (GCC bug 105593) at every inlined use; the warning is off for this file from here on.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

#include "cpu/parallel.h"
#include "cpu/penalties.h"
#include "pydecode/check.h"
#include "pydecode/dtype.h"
#include "pydecode/float_key.h"
#include "pydecode/philox.h"
#include "pydecode/select.h"
#include "pydecode/torch_cpu_math.h"
#include "pydecode/torch_sort.h"

namespace pydecode::cpu {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
// Elements converted per step: 1 KiB of float32 stays in L1 next to its keys.
constexpr int64_t kBlock = 256;
// A row (batch 1) is split across threads only from this many entries: on the 2-vCPU VM a
// parallel_tasks round trip costs ~40 us (the sleeping worker's wake-up), so a one-pass kernel
// such as greedy only gains from ~200K entries (128K: 131 us split vs 117 us inline; 256K:
// 194 us vs 242 us). Batches of >= 2 rows split rows instead, one wake-up per call.
constexpr int64_t kSplitMin = 196608;
// A batch-1 filter chain that reads its row several times (top-p or min-p without a small top-k:
// convert, exponentials, gather) splits from this size: the worker's wake-up is paid on the
// first pass only (it spins between passes), and the passes after it run on both cores.
constexpr int64_t kSplitMinMultiPass = 65536;
// Top-k up to this keep uses the candidate buffer (a few compactions of <= 16K entries);
// larger keeps use radix select (three histogram passes over the row).
constexpr int64_t kSmallK = 4096;
// Top-p is emulated exactly when at most this many entries have a nonzero exponential, and a
// band of the approximate path is sorted rather than histogrammed up to this size: sorting
// 8192 entries costs ~0.3 ms, about what the histogram path costs for a 128K row.
constexpr int64_t kExactTopP = 8192;
// Mass histogram of a band: bucket = exponential's float bits >> 17, i.e. 64 buckets per octave
// (a bucket spans 0.011 in logit units, ~500 entries of a 128K-entry row of standard normal
// logits); exponentials below 2^-40 share bucket 0.
constexpr int kBucketShift = 17;
constexpr uint32_t kBucketLow = (127u - 40u) << (23 - kBucketShift);
constexpr int kBuckets = static_cast<int>((0x3f800000u >> kBucketShift) - kBucketLow) + 1;

PYDECODE_INLINE int bucket_of(float e) {
  const uint32_t b = float_to_bits(e) >> kBucketShift;
  return static_cast<int>(select_bits(mask_if(b > kBucketLow), b - kBucketLow, 0u));
}

// IEEE binary16 -> binary32, exact and branch-free (vectorises, unlike dtype.h's loop): the
// magnitude bits shifted into a float32 are the value times 2^-112, also for subnormals.
PYDECODE_INLINE float half_to_float_fast(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  const float scaled = bits_to_float(em << 13) * 5.192296858534828e+33f;  // 2^112
  const uint32_t mag = em >= 0x7c00u ? ((em << 13) | 0x7f800000u) : float_to_bits(scaled);
  return bits_to_float(sign | mag);
}

void convert(const void* src, DType dtype, int64_t begin, int64_t n, float* dst) {
  switch (dtype) {
    case DType::kFloat32: {
      const float* s = static_cast<const float*>(src) + begin;
      for (int64_t i = 0; i < n; ++i) dst[i] = s[i];
      return;
    }
    case DType::kFloat16: {
      const uint16_t* s = static_cast<const uint16_t*>(src) + begin;
      for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float_fast(s[i]);
      return;
    }
    default: {
      const uint16_t* s = static_cast<const uint16_t*>(src) + begin;
      for (int64_t i = 0; i < n; ++i) dst[i] = bits_to_float(static_cast<uint32_t>(s[i]) << 16);
      return;
    }
  }
}

// One row of input and the float32 transform every stage sees.
struct RowSource {
  const void* data;
  DType dtype;
  Transform transform;
  float temperature;
  // Sparse overlay (the penalised entries): (index << 32 | float32 bits of the new value),
  // ascending; these entries read as the new value, before the transform.
  const uint64_t* patch = nullptr;
  int64_t patches = 0;

  void load(int64_t begin, int64_t n, float* dst) const {
    convert(data, dtype, begin, n, dst);
    if (patches > 0) apply_patches(begin, n, dst);
    if (transform == Transform::kDivide) {
      const float t = temperature;
      for (int64_t i = 0; i < n; ++i) dst[i] = dst[i] / t;
    } else if (transform == Transform::kLog) {
      for (int64_t i = 0; i < n; ++i) dst[i] = log_cr(dst[i]);
    }
  }
  float at(int64_t v) const {
    float y;
    load(v, 1, &y);
    return y;
  }
  // Whether [begin, begin + n) holds a patched entry.
  bool patched(int64_t begin, int64_t n) const {
    const uint64_t* p = first_patch(begin);
    return p != patch + patches && patch_index(*p) < begin + n;
  }
  void apply_patches(int64_t begin, int64_t n, float* dst) const {
    for (const uint64_t* p = first_patch(begin); p != patch + patches && patch_index(*p) < begin + n; ++p) {
      dst[patch_index(*p) - begin] = bits_to_float(static_cast<uint32_t>(*p));
    }
  }
  // The first patch at or after index `begin`.
  const uint64_t* first_patch(int64_t begin) const {
    return std::lower_bound(patch, patch + patches, static_cast<uint64_t>(begin) << 32);
  }
  static int64_t patch_index(uint64_t p) { return static_cast<int64_t>(p >> 32); }
};

// The kept set of a row in cut form: every entry with key >= key (a cut that would split a
// group of equal values is turned into an explicit list instead, see keep_top_n).
struct Cut {
  uint32_t key = 0;
};

// All ones when the entry is kept (a mask, so the loops that use it vectorise).
PYDECODE_INLINE uint32_t cut_mask(uint32_t key, const Cut& cut) { return mask_if(key >= cut.key); }

inline bool in_cut(uint32_t key, const Cut& cut) { return key >= cut.key; }

// The key of a kept, non-NaN entry; 0 (below every key) otherwise.
PYDECODE_INLINE uint32_t kept_key(uint32_t key, const Cut& cut) {
  return key & cut_mask(key, cut) & ~mask_if(key == kNanKey);
}

struct Best {
  float score = -kInf;
  int64_t index = -1;  // -1: no candidate yet
  void offer(float s, int64_t v) {
    if (index < 0 || s > score || (s == score && v < index)) {
      score = s;
      index = v;
    }
  }
};

#if defined(__AVX512F__)
// Word 0 of Philox4x32-10 for 16 tokens at once (philox.h's philox_word, stream 0): the 32x32
// -> 64-bit products come from vpmuludq on the even and odd lanes (4x the scalar loop's speed,
// which GCC only vectorises with 64-bit lanes).
inline __m512i philox16(uint64_t seed, uint64_t offset, __m512i c0) {
  const __m512i m0 = _mm512_set1_epi64(kPhiloxM0);
  const __m512i m1 = _mm512_set1_epi64(kPhiloxM1);
  __m512i c1 = _mm512_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(offset)));
  __m512i c2 = _mm512_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(offset >> 32)));
  __m512i c3 = _mm512_setzero_si512();
  uint32_t k0 = static_cast<uint32_t>(seed);
  uint32_t k1 = static_cast<uint32_t>(seed >> 32);
  constexpr __mmask16 kOdd = 0xAAAA;
  auto mul = [](__m512i a, __m512i b) { return _mm512_mul_epu32(a, b); };
  for (int round = 0; round < kPhiloxRounds; ++round) {
    const __m512i e0 = mul(c0, m0);
    const __m512i o0 = mul(_mm512_srli_epi64(c0, 32), m0);
    const __m512i e1 = mul(c2, m1);
    const __m512i o1 = mul(_mm512_srli_epi64(c2, 32), m1);
    const __m512i hi0 = _mm512_mask_blend_epi32(kOdd, _mm512_srli_epi64(e0, 32), o0);
    const __m512i lo0 = _mm512_mask_blend_epi32(kOdd, e0, _mm512_slli_epi64(o0, 32));
    const __m512i hi1 = _mm512_mask_blend_epi32(kOdd, _mm512_srli_epi64(e1, 32), o1);
    const __m512i lo1 = _mm512_mask_blend_epi32(kOdd, e1, _mm512_slli_epi64(o1, 32));
    const __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(static_cast<int32_t>(k0)));
    const __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(static_cast<int32_t>(k1)));
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return c0;
}
#endif

// Gumbel noise of the contract for tokens tok[0, n).
void noise_for(uint64_t seed, uint64_t offset, const uint32_t* tok, int64_t n, float* g) {
  int64_t i = 0;
#if defined(__AVX512F__)
  const __m512 half = _mm512_set1_ps(0.5f);
  const __m512 scale = _mm512_set1_ps(1.0f / 8388608.0f);
  for (; i + 16 <= n; i += 16) {
    const __m512i w = philox16(seed, offset, _mm512_loadu_si512(tok + i));
    // uniform_open01: ((w >> 9) + 0.5) * 2^-23, every step exact as in philox.h.
    const __m512 u = _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(w, 9)), half), scale);
    _mm512_storeu_ps(g + i, u);
  }
#endif
  for (; i < n; ++i) g[i] = uniform_open01(philox_word(seed, offset, tok[i], 0));
  for (i = 0; i < n; ++i) g[i] = gumbel_cr(g[i]);
}


// A row split across nt > 1 threads is cut into 4 chunks per thread, claimed dynamically: a
// thread that starts late (the second core busy, e.g. with torch's OpenMP worker spinning after
// the model's last op) then holds up a quarter of its share, not all of it.
inline int chunk_count(int nt) { return nt <= 1 ? 1 : 4 * nt; }

// Runs fn(chunk, begin, end) over [0, n) in chunk_count(nt) pieces (64-aligned, in order of c),
// inline when nt == 1. Per-chunk partials are indexed by c < chunk_count(nt).
template <class F>
void for_chunks(int64_t n, int nt, const F& fn) {
  if (nt <= 1) {
    fn(0, int64_t{0}, n);
    return;
  }
  const int chunks = chunk_count(nt);
  parallel_tasks(chunks, [&](int64_t c) {
    const int64_t begin = (n * c / chunks) & ~int64_t{63};
    const int64_t end = c + 1 == chunks ? n : ((n * (c + 1) / chunks) & ~int64_t{63});
    if (begin < end) fn(static_cast<int>(c), begin, end);
  });
}

// Runs fn(segment, begin, end) over fixed segments of kSegment entries on `nt` threads. For the
// float sums of a row (compute_e's masses, the top-p mass histogram): each segment has its own
// partial, combined in segment order, so the sums (and so the tokens) do not depend on how many
// threads split the row: a batch-1 row is split, the same row in a batch is not.
constexpr int64_t kSegment = 32768;  // a multiple of kBlock: segments never cut a block
inline int segments_of(int64_t n) { return static_cast<int>(std::max<int64_t>(1, (n + kSegment - 1) / kSegment)); }
template <class F>
void for_segments(int64_t n, int nt, const F& fn) {
  const int segments = segments_of(n);
  auto one = [&](int64_t g) { fn(static_cast<int>(g), g * kSegment, std::min(n, (g + 1) * kSegment)); };
  if (nt <= 1 || segments == 1) {
    for (int g = 0; g < segments; ++g) one(g);
  } else {
    parallel_tasks(segments, one);
  }
}

struct Scratch {
  std::vector<float> y;  // the transformed row (full path)
  std::vector<float> e;  // exponentials (full path)
  std::vector<uint32_t> cand;      // compute_e<true>: per segment, the indices with e >= the last level
  std::vector<int64_t> cand_count;  // how many of each segment's slots hold one
  std::vector<float> small;
  std::vector<uint64_t> list, list2, tmp, order;
  std::vector<ValueIndex> pairs;
  std::vector<int64_t> picked;
  std::vector<uint32_t> tokens;
  std::vector<float> values, noise;
  std::vector<TopCollector> collectors;
  std::vector<std::vector<uint64_t>> gathered;
  std::vector<double> mass;
  std::vector<uint32_t> count;
};

Scratch& thread_scratch() {
  thread_local Scratch s;
  return s;
}

struct RowCtx {
  RowSource src;
  int64_t vocab;
  int nt;  // threads for this row (1 when rows run in parallel)
  int lanes;
  int64_t top_k;
  double top_p;
  double min_p;
  int64_t mtk;
  uint64_t seed, offset;
  int64_t* token;
  float* logprob;
  float* filtered;
  float filter_value;
  float* renorm;
  const void* raw;  // untransformed row (renorm divides the inputs, not their logs)
  DType raw_dtype;
};

// ------------------------------------------------------------------ exact softmax pieces
// Kept count of top-p over `asc`: the n largest entries of the row, ascending; every other entry
// of the row has a zero exponential (removed before, or underflowing). Emulates transformers'
// sort + softmax + cumsum exactly: the n entries sit at sorted positions [V - n, V). Returns how
// many of the row's largest entries top-p keeps.
int64_t top_p_keep(const std::vector<uint64_t>& asc, int64_t vocab, float ymax, double top_p, int64_t mtk,
                   int lanes, std::vector<float>& e) {
  const int64_t n = static_cast<int64_t>(asc.size());
  e.resize(asc.size());
  LaneSum lanes_sum(lanes);
  const int64_t base = vocab - n;
  for (int64_t i = 0; i < n; ++i) {
    e[i] = torch_expf(key_to_float(entry_key(asc[i])) - ymax);
    if (e[i] > 0.0f) lanes_sum.add(base + i, e[i]);
  }
  const float rsum = 1.0f / lanes_sum.result(vocab);
  const float threshold = static_cast<float>(1.0 - top_p);
  double cum = 0.0;  // torch's CPU cumsum accumulates float32 in double
  int64_t first_kept = n;
  for (int64_t i = 0; i < n; ++i) {
    cum += static_cast<double>(e[i] * rsum);
    if (static_cast<float>(cum) > threshold) {
      first_kept = i;
      break;
    }
  }
  // Can exceed n: min_tokens_to_keep then reaches entries of zero probability.
  return std::min(vocab, std::max(n - first_kept, mtk));
}

// Min-p over entries asc[start, n) (the row's kept set, ascending; e[i] their exponentials):
// softmax over the row in index order; returns how many have p >= float32(min_p) * p_max (a
// suffix: p is monotone in the value) and that limit and 1 / row sum.
int64_t min_p_count(const std::vector<uint64_t>& asc, size_t start, const std::vector<float>& e, int64_t vocab,
                    double min_p, int lanes, std::vector<uint64_t>& order, float* rsum_out, float* limit_out) {
  const size_t n = asc.size();
  order.clear();
  for (size_t i = start; i < n; ++i) order.push_back((static_cast<uint64_t>(entry_index(asc[i])) << 32) | i);
  std::sort(order.begin(), order.end());
  LaneSum lanes_sum(lanes);
  for (uint64_t o : order) {
    const float x = e[static_cast<uint32_t>(o)];
    if (x > 0.0f) lanes_sum.add(static_cast<int64_t>(o >> 32), x);
  }
  const float rsum = 1.0f / lanes_sum.result(vocab);
  // p_max = 1 * rsum: the maximum's exponential is exactly 1 and none is larger.
  const float limit = static_cast<float>(min_p) * rsum;
  int64_t count = 0;
  for (size_t i = start; i < n; ++i) count += (e[i] * rsum >= limit) ? 1 : 0;
  *rsum_out = rsum;
  *limit_out = limit;
  return count;
}

struct Stats {
  float max = -kInf;  // over non-NaN entries
  bool nan = false;
  char pad[56];  // one cache line per chunk
};

// ------------------------------------------------------------------ noise for many candidates
// A float32 logf (fdlibm's kernel, branch-free): within 1 ulp, 4x faster than log_cr.
PYDECODE_INLINE float log_fast(float x) {
  const uint32_t bits = float_to_bits(x);
  int32_t e = static_cast<int32_t>((bits >> 23) & 0xff) - 127;
  uint32_t mb = (bits & 0x7fffffu) | 0x3f800000u;
  const uint32_t high = mask_if(mb > 0x3fb504f3u);  // mantissa > sqrt(2): halve it
  mb -= high & 0x00800000u;
  e += static_cast<int32_t>(high & 1u);
  const float f = bits_to_float(mb) - 1.0f;
  const float s = f / (2.0f + f);
  const float z = s * s;
  const float w = z * z;
  const float r = z * (0.66666662693f + w * 0.28498786688f) + w * (0.40000972152f + w * 0.24279078841f);
  const float hfsq = 0.5f * f * f;
  const float dk = static_cast<float>(e);
  return dk * 6.9313812256e-01f - ((hfsq - (s * (hfsq + r) + dk * 9.0580006145e-06f)) - f);
}

// |-log_fast(-log_fast(u)) - gumbel_cr(u)| over all 2^23 uniforms of the contract is at most
// 9.6e-7 (checked exhaustively); scores from it are compared with this margin and the tokens
// within it of the best are redrawn exactly, so the sampled token is gumbel_cr's.
constexpr float kFastNoiseError = 2e-6f;

inline float score_margin(float best) {
  // noise error on both sides, plus a float32 rounding of each score (|score| * 2^-23).
  return 2.0f * kFastNoiseError + std::fabs(best) * 2.4e-7f;
}

// Approximate noise for tokens tok[0, n) (the uniforms are exact; the logs are log_fast).
void fast_noise_for(uint64_t seed, uint64_t offset, const uint32_t* tok, int64_t n, float* g) {
  int64_t i = 0;
#if defined(__AVX512F__)
  const __m512 half = _mm512_set1_ps(0.5f);
  const __m512 scale = _mm512_set1_ps(1.0f / 8388608.0f);
  for (; i + 16 <= n; i += 16) {
    const __m512i w = philox16(seed, offset, _mm512_loadu_si512(tok + i));
    _mm512_storeu_ps(g + i, _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(w, 9)), half), scale));
  }
#endif
  for (; i < n; ++i) g[i] = uniform_open01(philox_word(seed, offset, tok[i], 0));
  for (i = 0; i < n; ++i) g[i] = -log_fast(-log_fast(g[i]));
}

// Tokens whose approximate score is within the margin of the best approximate score so far.
struct Finalists {
  float best = -kInf;
  std::vector<uint32_t> tok;
  std::vector<float> score;

  float floor() const { return best == kInf ? kInf : best - score_margin(best); }
  void offer(float s, uint32_t v) {
    if (s > best) best = s;
    if (s >= floor()) {
      tok.push_back(v);
      score.push_back(s);
      if (tok.size() >= 256) prune();
    }
  }
  void prune() {
    const float f = floor();
    size_t k = 0;
    for (size_t i = 0; i < tok.size(); ++i) {
      if (score[i] >= f) {
        tok[k] = tok[i];
        score[k++] = score[i];
      }
    }
    tok.resize(k);
    score.resize(k);
  }
};

// ------------------------------------------------------------------ one row
// The kept set is either listed (exactly the entries list[start, n) of an ascending packed list;
// everything else removed) or a Cut over the materialised row y.
struct Row {
  Row(const RowCtx& r_, Scratch& s_, int nt_) : r(r_), s(s_), nt(nt_) {}
  const RowCtx& r;
  Scratch& s;
  int nt;
  bool listed = false;
  std::vector<uint64_t>* list = nullptr;
  size_t start = 0;
  bool list_e = false;  // s.small holds torch_expf(y - ymax) of every list entry
  Cut cut;
  float* y = nullptr;        // materialised transformed row (not listed from the source)
  const float* e = nullptr;  // exponentials of y inside the cut (0 outside), once computed
  bool cands = false;        // s.cand lists every entry with e >= kLevel[kLevels - 1]
  int64_t nonzero = 0;       // entries with e > 0
  double esum = 0.0;         // their sum (double; the approximate top-p path's row sum)
  double level_mass[8] = {};  // compute_e's levels (kLevels)
  int64_t level_count[8] = {};
  float ymax = -kInf;        // largest non-NaN value of the row (of the list when listed from the source)
  bool nan = false;
};

// Top-k by one read of the source: the ascending list of the keep largest (ties included).
// False when >= keep entries are NaN (transformers' top-k then removes nothing).
bool collect_top_k(Row& row, int64_t keep) {
  const RowCtx& r = row.r;
  Scratch& s = row.s;
  const int nt = row.nt;
  const int chunks = chunk_count(nt);
  if (static_cast<int>(s.collectors.size()) < chunks) s.collectors.resize(chunks);
  for (int c = 0; c < chunks; ++c) s.collectors[c].reset(keep);
  // With a temperature, select on x and divide only the candidates: y = x / T is monotone in x,
  // and y >= y_thr needs x >= (y_thr - ulp(y_thr)) * T, so x is compared with that bound widened
  // by 2^-22 relative (vdivps was a fifth of this loop's time).
  const float t = r.src.temperature;
  const bool divide = r.src.transform == Transform::kDivide && t > 0.0f && t < kInf;
  RowSource raw = r.src;
  if (divide) raw.transform = Transform::kNone;
  // A float lower bound on the x of entries that can still enter (NaN always may): a block is
  // skipped when none of its floats reaches it, one vector compare per 16 entries.
  auto x_bound = [t, divide](uint32_t y_key) -> float {
    if (y_key == 0) return -kInf;
    if (y_key == kNanKey) return kInf;
    const float yf = key_to_float(y_key);
    if (!divide || yf == kInf || yf == -kInf) return yf;  // inf / t == inf
    const double y = yf;
    const double lower = (y - std::fabs(y) * 0x1p-22 - 0x1p-148) * static_cast<double>(t);
    float f = static_cast<float>(lower);
    if (static_cast<double>(f) > lower) f = std::nextafter(f, -kInf);
    return f;
  };
  const float* f32 = raw.transform == Transform::kNone && raw.dtype == DType::kFloat32
                         ? static_cast<const float*>(raw.data)
                         : nullptr;  // float32 without a transform is read in place
  for_chunks(r.vocab, nt, [&](int c, int64_t begin, int64_t end) {
    TopCollector& col = s.collectors[c];
    float buf[kBlock];
    uint8_t hit[kBlock];
    uint32_t seen = col.threshold();
    float bound = x_bound(seen);
    for (int64_t b = begin; b < end; b += kBlock) {
      const int64_t n = std::min(kBlock, end - b);
      const float* x = f32 != nullptr ? f32 + b : buf;
      if (f32 == nullptr) {
        raw.load(b, n, buf);
      } else if (raw.patched(b, n)) {  // a penalised entry: read the block through the overlay
        raw.load(b, n, buf);
        x = buf;
      }
      int any = 0;
      for (int64_t i = 0; i < n; ++i) {
        hit[i] = static_cast<uint8_t>((x[i] >= bound) | (x[i] != x[i]));
        any |= hit[i];
      }
      if (any == 0) continue;
      for (int64_t i = n; i < kBlock; ++i) hit[i] = 0;
      for (int64_t i = 0; i < n; ++i) {
        if ((i & 63) == 0) {  // skip 64-entry stretches without a hit (8 word loads)
          uint64_t words[8];
          std::memcpy(words, hit + i, sizeof words);
          if ((words[0] | words[1] | words[2] | words[3] | words[4] | words[5] | words[6] | words[7]) == 0) {
            i += 63;
            continue;
          }
        }
        if (hit[i] == 0) continue;  // rare once the threshold settles: a predictable branch
        const uint32_t key = nan_high_key(divide ? x[i] / t : x[i]);
        if (key >= col.threshold()) col.push(key, static_cast<uint32_t>(b + i));
        if (col.threshold() != seen) {
          seen = col.threshold();
          bound = x_bound(seen);
        }
      }
    }
  });
  TopCollector& col = s.collectors[0];
  for (int c = 1; c < chunks; ++c) col.merge(s.collectors[c]);
  if (col.finish() == kNanKey) return false;
  std::vector<uint64_t>& asc = col.entries();
  sort_entries(asc, s.tmp);
  row.listed = true;
  row.list = &asc;
  row.start = 0;
  size_t top = asc.size();
  while (top > 0 && entry_key(asc[top - 1]) == kNanKey) --top;
  row.nan = top < asc.size();
  row.ymax = top == 0 ? -kInf : key_to_float(entry_key(asc[top - 1]));
  return true;
}

// Materialises y and its statistics.
void load_row(Row& row) {
  const RowCtx& r = row.r;
  Scratch& s = row.s;
  const int nt = row.nt;
  s.y.resize(static_cast<size_t>(r.vocab));
  float* y = s.y.data();
  row.y = y;
  std::vector<Stats> stats(chunk_count(nt));
  for_chunks(r.vocab, nt, [&](int c, int64_t begin, int64_t end) {
    uint32_t top = 0;  // largest non-NaN key (0: none)
    uint32_t nan = 0;
    for (int64_t b = begin; b < end; b += kBlock) {
      const int64_t n = std::min(kBlock, end - b);
      r.src.load(b, n, y + b);
      for (int64_t i = 0; i < n; ++i) {
        const uint32_t key = nan_high_key(y[b + i]);
        const uint32_t is_nan = mask_if(key == kNanKey);
        nan |= is_nan;
        top = std::max(top, key & ~is_nan);
      }
    }
    stats[c].max = top == 0 ? -kInf : key_to_float(top);
    stats[c].nan = nan != 0;
  });
  for (const Stats& st : stats) {
    row.ymax = std::max(row.ymax, st.max);
    row.nan = row.nan || st.nan;
  }
}

// Top-k for keep > kSmallK: the keep-th largest key of y by radix select (three histogram
// passes over the materialised row).
uint32_t radix_kth_key(const Row& row, int64_t keep) {
  const float* y = row.y;
  const int64_t vocab = row.r.vocab;
  const int nt = row.nt;
  int64_t greater = 0;
  return radix_select_desc(
      keep,
      [&](int shift, int width, uint32_t prefix, uint32_t prefix_mask, int64_t* counts) {
        const uint32_t mask = (1u << width) - 1;
        std::vector<std::vector<int64_t>> part(chunk_count(nt), std::vector<int64_t>(size_t{1} << width));
        for_chunks(vocab, nt, [&](int c, int64_t begin, int64_t end) {
          int64_t* h = part[c].data();
          for (int64_t v = begin; v < end; ++v) {
            const uint32_t k = nan_high_key(y[v]);
            if ((k & prefix_mask) == prefix) ++h[(k >> shift) & mask];
          }
        });
        for (const std::vector<int64_t>& h : part)
          for (size_t d = 0; d < h.size(); ++d) counts[d] += h[d];
      },
      &greater);
}

// Levels for the approximate top-p path: the mass and count of e >= 16^-1 ... 16^-4 (2.8 to 11.1
// below the maximum in logit units, every 2.8), so after the pass that computes e the boundary
// is known to lie in one band between two levels; only that band is sorted (or histogrammed).
constexpr int kLevels = 4;
constexpr float kLevel[kLevels] = {0.0625f, 0.00390625f, 0.000244140625f, 1.52587890625e-05f};

// e = torch_expf(y - ymax) inside the cut, 0 outside; counts the nonzero ones and sums them
// (and, for top-p, the levels' masses and counts).
template <bool kWithLevels>
void compute_e(Row& row) {
  const int64_t vocab = row.r.vocab;
  const int nt = row.nt;
  const float* y = row.y;
  const float ymax = row.ymax;
  const Cut cut = row.cut;
  row.s.e.resize(static_cast<size_t>(vocab));
  float* ew = row.s.e.data();
  // Per chunk, 16 double lanes: each block's float lane sums are added lane by lane (a vector
  // convert-and-add; adding the 16 lanes one by one in double per 256-entry block was a fifth
  // of this function's time), and the lanes are summed once at the end.
  struct Part {
    double sum[16] = {};
    double level_mass[kLevels][16] = {};
    int64_t nonzero[16] = {};
    int64_t level_count[kLevels][16] = {};
  };
  std::vector<Part> parts(segments_of(vocab));
  // With the levels, the entries at or above the last one (~4% of a random 128K row) are listed
  // as they are met, so the band gather reads only them (segment g's in slots [g * kSegment, ...)).
  if (kWithLevels) {
    row.s.cand.resize(static_cast<size_t>(vocab));
    row.s.cand_count.assign(parts.size(), 0);
  }
  uint32_t* cand = row.s.cand.data();
  for_segments(vocab, nt, [&](int c, int64_t begin, int64_t end) {
    Part& part = parts[c];
    int64_t listed = 0;  // candidates of this segment, at cand[begin + ...]
    for (int64_t b = begin; b < end; b += kBlock) {
      const int64_t stop = std::min(end, b + kBlock);
      for (int64_t v = b; v < stop; ++v) {
        const uint32_t keep = cut_mask(nan_high_key(y[v]), cut);
        ew[v] = bits_to_float(float_to_bits(torch_expf(y[v] - ymax)) & keep);
      }
      // Per block: float lanes (256 terms: relative error < 2^-15 of a block sum, far below what
      // the approximate path tolerates), then double.
      float acc[16] = {};
      float lmass[kLevels][16] = {};
      int32_t lcount[kLevels][16] = {};
      int32_t nz[16] = {};
      int64_t v = b;
#if defined(__AVX512F__)
      // The same lane sums as the loop below, as masked adds (adding the zero of an entry outside
      // a level changes no sum). Random 128K rows have ~4% of their entries at or above the last
      // level, so about half of the vectors have none and skip the four levels.
      {
        __m512 vacc = _mm512_loadu_ps(acc);
        __m512i vnz = _mm512_loadu_si512(nz);
        __m512 vmass[kLevels];
        __m512i vcount[kLevels];
        for (int k = 0; k < kLevels; ++k) {
          vmass[k] = _mm512_loadu_ps(lmass[k]);
          vcount[k] = _mm512_loadu_si512(lcount[k]);
        }
        const __m512i one = _mm512_set1_epi32(1);
        const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for (; v + 16 <= stop; v += 16) {
          const __m512 x = _mm512_loadu_ps(ew + v);
          vacc = _mm512_add_ps(vacc, x);
          vnz = _mm512_mask_add_epi32(vnz, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ), vnz, one);
          if (!kWithLevels) continue;
          const __mmask16 last = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kLevel[kLevels - 1]), _CMP_GE_OQ);
          if (last == 0) continue;
          const __m512i index = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(v)), lane);
          _mm512_mask_compressstoreu_epi32(cand + begin + listed, last, index);
          listed += __builtin_popcount(last);
          for (int k = 0; k < kLevels; ++k) {
            const __mmask16 in = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kLevel[k]), _CMP_GE_OQ);
            vmass[k] = _mm512_mask_add_ps(vmass[k], in, vmass[k], x);
            vcount[k] = _mm512_mask_add_epi32(vcount[k], in, vcount[k], one);
          }
        }
        _mm512_storeu_ps(acc, vacc);
        _mm512_storeu_si512(nz, vnz);
        for (int k = 0; k < kLevels; ++k) {
          _mm512_storeu_ps(lmass[k], vmass[k]);
          _mm512_storeu_si512(lcount[k], vcount[k]);
        }
      }
#endif
      const int64_t scalar_from = v;
      for (; v + 16 <= stop; v += 16) {
        for (int l = 0; l < 16; ++l) {
          const float x = ew[v + l];
          acc[l] += x;
          nz[l] += x > 0.0f ? 1 : 0;
          for (int k = 0; k < (kWithLevels ? kLevels : 0); ++k) {
            const uint32_t in = mask_if(x >= kLevel[k]);
            lmass[k][l] += bits_to_float(float_to_bits(x) & in);
            lcount[k][l] += static_cast<int32_t>(in & 1);
          }
        }
      }
      for (; v < stop; ++v) {
        const float x = ew[v];
        acc[0] += x;
        nz[0] += x > 0.0f ? 1 : 0;
        for (int k = 0; k < (kWithLevels ? kLevels : 0); ++k) {
          lmass[k][0] += x >= kLevel[k] ? x : 0.0f;
          lcount[k][0] += x >= kLevel[k] ? 1 : 0;
        }
      }
      for (int64_t i = scalar_from; kWithLevels && i < stop; ++i) {  // the entries the vector loop left
        if (ew[i] >= kLevel[kLevels - 1]) cand[begin + listed++] = static_cast<uint32_t>(i);
      }
      for (int l = 0; l < 16; ++l) {
        part.sum[l] += acc[l];
        part.nonzero[l] += nz[l];
      }
      for (int k = 0; k < (kWithLevels ? kLevels : 0); ++k) {
        for (int l = 0; l < 16; ++l) {
          part.level_mass[k][l] += lmass[k][l];
          part.level_count[k][l] += lcount[k][l];
        }
      }
    }
    if (kWithLevels) row.s.cand_count[c] = listed;
  });
  row.e = ew;
  row.cands = kWithLevels;
  row.nonzero = 0;
  row.esum = 0.0;
  for (int k = 0; k < kLevels; ++k) {
    row.level_mass[k] = 0.0;
    row.level_count[k] = 0;
  }
  for (const Part& part : parts) {
    for (int l = 0; l < 16; ++l) {
      row.nonzero += part.nonzero[l];
      row.esum += part.sum[l];
      for (int k = 0; k < kLevels; ++k) {
        row.level_mass[k] += part.level_mass[k][l];
        row.level_count[k] += part.level_count[k][l];
      }
    }
  }
}

// Packed entries of y with want(e) true, ascending. The predicate is evaluated a block at a time
// into flags (vectorised); blocks without a hit are skipped.
template <class Want>
void gather_sorted(const Row& row, const Want& want, std::vector<uint64_t>& out) {
  Scratch& s = row.s;
  const float* y = row.y;
  const float* e = row.e;
  const int chunks = chunk_count(row.nt);
  if (static_cast<int>(s.gathered.size()) < chunks) s.gathered.resize(chunks);
  for_chunks(row.r.vocab, row.nt, [&](int c, int64_t begin, int64_t end) {
    std::vector<uint64_t>& g = s.gathered[c];
    g.clear();
    uint32_t flag[kBlock];
    uint64_t packed[kBlock];
    for (int64_t b = begin; b < end; b += kBlock) {
      const int64_t n = std::min(kBlock, end - b);
      uint32_t any = 0;
      for (int64_t i = 0; i < n; ++i) {
        flag[i] = mask_if(want(e[b + i]));
        any |= flag[i];
      }
      if (any == 0) continue;
      int64_t m = 0;
      for (int64_t i = 0; i < n; ++i) {  // sets are sparse: a predictable branch beats a full compress
        if (flag[i]) packed[m++] = pack_entry(nan_high_key(y[b + i]), static_cast<uint32_t>(b + i));
      }
      g.insert(g.end(), packed, packed + m);
    }
  });
  out.clear();
  for (int c = 0; c < chunks; ++c) out.insert(out.end(), s.gathered[c].begin(), s.gathered[c].end());
  sort_entries(out, s.tmp);
}

// gather_sorted(row, e >= lo) for lo >= kLevel[kLevels - 1], from compute_e<true>'s candidates.
void gather_candidates(const Row& row, float lo, std::vector<uint64_t>& out) {
  Scratch& s = row.s;
  out.clear();
  for (size_t g = 0; g < s.cand_count.size(); ++g) {
    const uint32_t* c = s.cand.data() + g * kSegment;
    for (int64_t j = 0; j < s.cand_count[g]; ++j) {
      const uint32_t i = c[j];
      if (row.e[i] >= lo) out.push_back(pack_entry(nan_high_key(row.y[i]), i));
    }
  }
  sort_entries(out, s.tmp);
}

void set_listed(Row& row, std::vector<uint64_t>& asc, size_t start) {
  row.listed = true;
  row.list = &asc;
  row.start = start;
  row.list_e = false;
}

inline bool splits_group(const std::vector<uint64_t>& asc, size_t pos) {
  return pos > 0 && pos < asc.size() && entry_key(asc[pos - 1]) == entry_key(asc[pos]);
}

// The row as torch's sort sees it after the stages so far: (value, index), -inf where removed.
void row_pairs(const Row& row, std::vector<ValueIndex>& z) {
  const int64_t vocab = row.r.vocab;
  z.resize(static_cast<size_t>(vocab));
  if (row.listed) {
    for (int64_t v = 0; v < vocab; ++v) z[v] = ValueIndex(-kInf, v);
    const std::vector<uint64_t>& asc = *row.list;
    for (size_t i = row.start; i < asc.size(); ++i) {
      const int64_t v = entry_index(asc[i]);
      z[v].first = key_to_float(entry_key(asc[i]));
    }
  } else {
    for (int64_t v = 0; v < vocab; ++v) {
      const float x = row.y[v];
      z[v] = ValueIndex(in_cut(nan_high_key(x), row.cut) ? x : -kInf, v);
    }
  }
}

// Keeps the last n positions of torch.sort's ascending order of the row (transformers' top-p
// keep rule and its min_tokens_to_keep), given the key kb at the cut, how many entries are
// greater and how many equal it: torch's order inside that tie group is replayed. Rare: only
// when a cut falls inside a group of equal values (common with bfloat16 logits).
// `above` (optional): the packed entries greater than kb, when the caller has them.
void keep_top_n_at(Row& row, int64_t n, uint32_t kb, int64_t greater, int64_t ties,
                   const uint64_t* above = nullptr, size_t above_count = 0) {
  Scratch& s = row.s;
  const int64_t vocab = row.r.vocab;
  std::vector<ValueIndex>& z = s.pairs;
  row_pairs(row, z);
  std::vector<uint64_t>& out = s.list2;
  out.clear();
  if (above != nullptr) {
    out.assign(above, above + above_count);
  } else {
    for (int64_t v = 0; v < vocab; ++v) {
      const uint32_t k = nan_high_key(z[v].first);
      if (k > kb) out.push_back(pack_entry(k, static_cast<uint32_t>(v)));
    }
  }
  if (greater + ties <= n) {
    for (int64_t v = 0; v < vocab; ++v) {
      if (nan_high_key(z[v].first) == kb) out.push_back(pack_entry(kb, static_cast<uint32_t>(v)));
    }
  } else {
    sorted_positions(z, vocab - n, vocab - greater);
    for (int64_t p = vocab - n; p < vocab - greater; ++p) {
      out.push_back(pack_entry(kb, static_cast<uint32_t>(z[p].second)));
    }
  }
  sort_entries(out, s.tmp);
  // Kept -inf entries are never candidates and stay -inf; listing them is harmless.
  row.listed = true;
  row.list = &out;
  row.start = 0;
  row.list_e = false;
}

// keep_top_n_at for any n: the key at the cut by radix select over the row.
void keep_top_n(Row& row, int64_t n) {
  const int64_t vocab = row.r.vocab;
  if (n >= vocab) {
    keep_top_n_at(row, vocab, 0, vocab, 0);  // everything (key 0 is below every key)
    return;
  }
  std::vector<ValueIndex>& z = row.s.pairs;
  row_pairs(row, z);
  int64_t greater = 0;
  const uint32_t kb = radix_select_desc(
      n,
      [&](int shift, int width, uint32_t prefix, uint32_t prefix_mask, int64_t* counts) {
        const uint32_t mask = (1u << width) - 1;
        for (int64_t v = 0; v < vocab; ++v) {
          const uint32_t k = nan_high_key(z[v].first);
          if ((k & prefix_mask) == prefix) ++counts[(k >> shift) & mask];
        }
      },
      &greater);
  int64_t ties = 0;
  for (int64_t v = 0; v < vocab; ++v) ties += nan_high_key(z[v].first) == kb ? 1 : 0;
  keep_top_n_at(row, n, kb, greater, ties);
}

// keep_top_n where the cut is position pos of `asc`, an ascending list holding the whole tie
// group at the cut and every entry above it, except `outside_above` greater entries; entries
// missing from it are smaller, or -inf ties (`outside_ties`) when the cut is at -inf.
void keep_top_n_list(Row& row, int64_t n, const std::vector<uint64_t>& asc, size_t pos, int64_t outside_above,
                     int64_t outside_ties) {
  const uint32_t kb = entry_key(asc[pos]);
  size_t g0 = pos, g1 = pos + 1;
  while (g0 > 0 && entry_key(asc[g0 - 1]) == kb) --g0;
  while (g1 < asc.size() && entry_key(asc[g1]) == kb) ++g1;
  const bool have_above = outside_above == 0;  // then the list's tail is everything above the group
  keep_top_n_at(row, n, kb, static_cast<int64_t>(asc.size() - g1) + outside_above,
                static_cast<int64_t>(g1 - g0) + outside_ties, have_above ? asc.data() + g1 : nullptr,
                have_above ? asc.size() - g1 : 0);
}

// min-p when fewer than min_tokens_to_keep entries pass: transformers adds back
// torch.topk(probs, min_tokens_to_keep)'s indices, replayed here (ties in its order).
// p(v) gives the float32 probability of entry v (0 for removed entries).
template <class Prob>
void min_p_keep_topk(Row& row, float limit, const Prob& p) {
  Scratch& s = row.s;
  const int64_t vocab = row.r.vocab;
  std::vector<ValueIndex>& q = s.pairs;
  q.resize(static_cast<size_t>(vocab));
  std::vector<uint64_t>& out = s.list2;
  out.clear();
  for (int64_t v = 0; v < vocab; ++v) {
    const float pv = p(v);
    q[v] = ValueIndex(pv, v);
    if (pv >= limit && pv > 0.0f) out.push_back(static_cast<uint64_t>(v));  // passes min-p
  }
  topk_indices(q, std::min(row.r.mtk, vocab), s.picked);
  for (int64_t v : s.picked) out.push_back(static_cast<uint64_t>(v));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  // Back to packed entries of the current values (-inf where the entry was removed).
  std::vector<ValueIndex>& z = s.pairs;
  row_pairs(row, z);
  for (uint64_t& o : out) {
    const int64_t v = static_cast<int64_t>(o);
    o = pack_entry(nan_high_key(z[v].first), static_cast<uint32_t>(v));
  }
  sort_entries(out, s.tmp);
  row.listed = true;
  row.list = &out;
  row.start = 0;
  row.list_e = false;
}

// Top-p over the whole row (no top-k list): exact when few entries have a nonzero exponential,
// else top-down over the largest entries or, for flat rows, a mass histogram.
void top_p_row(Row& row) {
  const RowCtx& r = row.r;
  Scratch& s = row.s;
  const int64_t vocab = r.vocab;
  compute_e<true>(row);
  const float* e = row.e;
  if (row.nonzero <= kExactTopP) {
    gather_sorted(row, [](float x) { return x > 0.0f; }, s.list);
    const int64_t keep = top_p_keep(s.list, vocab, row.ymax, r.top_p, r.mtk, r.lanes, s.small);
    const size_t pos = static_cast<size_t>(row.nonzero - std::min(keep, row.nonzero));
    if (keep > row.nonzero) {
      keep_top_n(row, keep);  // min_tokens_to_keep reaches zero-probability entries
    } else if (splits_group(s.list, pos)) {
      keep_top_n_list(row, keep, s.list, pos, 0, 0);  // torch.sort's order inside the group
    } else {
      set_listed(row, s.list, pos);
      row.list_e = true;  // top_p_keep left the exponentials in s.small
    }
    return;
  }

  // Approximate row sum from here (see the file comment); everything else as torch.
  const float rsum = 1.0f / static_cast<float>(row.esum);
  const float threshold = static_cast<float>(1.0 - r.top_p);
  const double total = row.esum * static_cast<double>(rsum);

  // The band [lo, hi) of e holding the boundary: the highest level whose mass below it is still
  // <= threshold (so the entry just below the band is removed) and the level above it (whose
  // lowest entry is kept; the maximum's e is 1, so the top band is never empty).
  int band = kLevels;  // below the last level
  for (int k = 0; k < kLevels; ++k) {
    const double below = total - row.level_mass[k] * static_cast<double>(rsum);
    if (static_cast<float>(below) <= threshold) {
      band = k;
      break;
    }
  }
  const float lo = band < kLevels ? kLevel[band] : 0.0f;
  const float hi = band > 0 ? kLevel[band - 1] : kInf;
  double above = band > 0 ? row.level_mass[band - 1] * static_cast<double>(rsum) : 0.0;  // mass of e >= hi
  int64_t kept_above = band > 0 ? row.level_count[band - 1] : 0;
  const int64_t in_band = (band < kLevels ? row.level_count[band] : row.nonzero) - kept_above;

  // Walks an ascending list of entries from the top: the first whose cumulative mass,
  // total - (mass above it), is <= threshold is removed with everything below it. `lowest` is
  // the key of the lowest kept entry seen in an earlier list (0: unknown).
  uint32_t lowest = 0;
  auto settle = [&](int64_t kept, uint32_t key) {
    if (kept >= r.mtk && key != 0) {
      row.cut = Cut{key};  // lists never split a tie group: equal values share e
    } else {
      keep_top_n(row, std::max(kept, r.mtk));  // min_tokens_to_keep (or the key is unknown)
    }
  };
  auto resolve = [&](const std::vector<uint64_t>& asc) -> bool {
    for (size_t i = asc.size(); i-- > 0;) {
      if (static_cast<float>(total - above) <= threshold) {
        const int64_t kept = kept_above + static_cast<int64_t>(asc.size() - 1 - i);
        if (i + 1 < asc.size() && splits_group(asc, i + 1) && kept >= r.mtk) {
          keep_top_n_list(row, kept, asc, i + 1, kept_above, 0);  // torch.sort's order inside the group
        } else {
          settle(kept, i + 1 < asc.size() ? entry_key(asc[i + 1]) : lowest);
        }
        return true;
      }
      above += static_cast<double>(e[entry_index(asc[i])] * rsum);
    }
    kept_above += static_cast<int64_t>(asc.size());
    if (!asc.empty()) lowest = entry_key(asc[0]);
    return false;
  };

  const int64_t from_band = band < kLevels ? row.level_count[band] : row.nonzero;  // entries with e >= lo
  if (from_band <= kExactTopP) {
    // Few enough: sort the band and everything above it, and keep a list (sampling, log-probs and
    // outputs then touch only the list).
    if (band < kLevels && row.cands) {
      gather_candidates(row, lo, s.list);  // lo >= the last level: every such entry was listed
    } else {
      gather_sorted(row, [lo](float x) { return (x > 0.0f) & (x >= lo); }, s.list);
    }
    std::vector<uint64_t>& asc = s.list;
    above = 0.0;
    for (size_t i = asc.size(); i-- > 0;) {
      if (static_cast<float>(total - above) <= threshold) {
        const int64_t kept = std::max(static_cast<int64_t>(asc.size() - 1 - i), r.mtk);
        if (kept > static_cast<int64_t>(asc.size())) {
          keep_top_n(row, kept);
        } else if (splits_group(asc, asc.size() - kept)) {
          keep_top_n_list(row, kept, asc, asc.size() - static_cast<size_t>(kept), 0, 0);
        } else {
          set_listed(row, asc, asc.size() - static_cast<size_t>(kept));
        }
        return;
      }
      above += static_cast<double>(e[entry_index(asc[i])] * rsum);
    }
    // The band's sum rounded the other way (~1.5% of random 128K rows): the whole list is kept.
    // Entries outside it have a smaller e, so the list never splits a tie group.
    if (static_cast<int64_t>(asc.size()) >= r.mtk) {
      set_listed(row, asc, 0);
    } else {
      keep_top_n(row, r.mtk);
    }
    return;
  }
  if (in_band <= kExactTopP) {
    gather_sorted(row, [lo, hi](float x) { return (x > 0.0f) & (x >= lo) & (x < hi); }, s.list);
    if (!resolve(s.list)) settle(kept_above, lowest);  // the band's sum rounded the other way
    return;
  }

  // A wide band (flat rows): mass histogram of the band, 64 buckets per octave of e, then only
  // the buckets at the boundary are sorted, from the top down.
  const int nt = row.nt;
  const int segments = segments_of(vocab);
  const size_t stride = static_cast<size_t>(kBuckets) + 1;  // + the spare bucket
  s.mass.assign(stride * segments, 0.0);
  s.count.assign(stride * segments, 0);
  for_segments(vocab, nt, [&](int c, int64_t begin, int64_t end) {
    double* mass = s.mass.data() + stride * c;
    uint32_t* count = s.count.data() + stride * c;
    int32_t bucket[kBlock];
    for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
      const int64_t n = std::min(kBlock, end - b0);
      // Out-of-band entries go to the spare bucket kBuckets, so the scatter below has no branch.
      for (int64_t i = 0; i < n; ++i) {
        const float x = e[b0 + i];
        const uint32_t in = mask_if(x > 0.0f) & mask_if(x >= lo) & mask_if(x < hi);
        bucket[i] = static_cast<int32_t>(select_bits(in, static_cast<uint32_t>(bucket_of(x)), kBuckets));
      }
      for (int64_t i = 0; i < n; ++i) {
        mass[bucket[i]] += static_cast<double>(e[b0 + i] * rsum);
        ++count[bucket[i]];
      }
    }
  });
  for (int c = 1; c < segments; ++c) {
    for (int b = 0; b < kBuckets; ++b) {
      s.mass[b] += s.mass[stride * c + b];
      s.count[b] += s.count[stride * c + b];
    }
  }
  for (int b = kBuckets - 1; b >= 0; --b) {
    if (s.count[b] == 0) continue;
    if (static_cast<float>(total - (above + s.mass[b])) > threshold) {  // the whole bucket is kept
      above += s.mass[b];
      kept_above += s.count[b];
      lowest = 0;  // its lowest key is not known without gathering it
      continue;
    }
    gather_sorted(row, [b, lo, hi](float x) { return (x > 0.0f) & (x >= lo) & (x < hi) & (bucket_of(x) == b); },
                  s.list);
    if (resolve(s.list)) return;
  }
  settle(kept_above, lowest);
}

// float32 lane sum (torch's order) of the exponentials of kept non-NaN entries, index order.
// Each lane is one element of a GCC vector, so the lanes' sequential sums vectorise exactly.
typedef float Lanes8 __attribute__((vector_size(32)));
typedef float Lanes16 __attribute__((vector_size(64)));
template <int L>
struct LanesOf;
template <>
struct LanesOf<8> {
  using type = Lanes8;
};
template <>
struct LanesOf<16> {
  using type = Lanes16;
};

template <int L>
float lane_sum_kept(const float* y, const float* e, int64_t vocab, const Cut& cut, float ymax) {
  using Lanes = typename LanesOf<L>::type;
  Lanes acc = {};
  float terms[kBlock];
  for (int64_t b = 0; b < vocab; b += kBlock) {
    const int64_t n = std::min(kBlock, vocab - b);
    if (e != nullptr) {
      for (int64_t i = 0; i < n; ++i) terms[i] = e[b + i];
    } else {
      for (int64_t i = 0; i < n; ++i) terms[i] = torch_expf(y[b + i] - ymax);
    }
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t key = nan_high_key(y[b + i]);
      const uint32_t keep = cut_mask(key, cut) & ~mask_if(key == kNanKey);
      terms[i] = bits_to_float(float_to_bits(terms[i]) & keep);
    }
    for (int64_t i = n; i < kBlock; ++i) terms[i] = 0.0f;  // kBlock % L == 0: the tail adds zeros
    for (int64_t i = 0; i < kBlock && b + i < vocab; i += L) {
      Lanes t;
      std::memcpy(&t, terms + i, sizeof t);
      acc += t;
    }
  }
  LaneSum sum(L);
  for (int l = 0; l < L; ++l) sum.acc[l] = acc[l];
  return sum.result(vocab);
}

float lane_sum(int lanes, const float* y, const float* e, int64_t vocab, const Cut& cut, float ymax) {
  return lanes == 8 ? lane_sum_kept<8>(y, e, vocab, cut, ymax) : lane_sum_kept<16>(y, e, vocab, cut, ymax);
}

void min_p_row(Row& row) {
  const RowCtx& r = row.r;
  const int64_t vocab = r.vocab;
  const int nt = row.nt;
  if (row.e == nullptr) compute_e<false>(row);
  const float* y = row.y;
  const float* e = row.e;
  const Cut cut = row.cut;
  const float rsum = 1.0f / lane_sum(r.lanes, y, e, vocab, cut, row.ymax);
  const float limit = static_cast<float>(r.min_p) * rsum;
  // p is monotone in y, so min-p keeps {y >= y*}: find the smallest kept key that passes.
  std::vector<uint32_t> low(chunk_count(nt), kNanKey);
  for_chunks(vocab, nt, [&](int c, int64_t begin, int64_t end) {
    uint32_t m = kNanKey;
    for (int64_t v = begin; v < end; ++v) {
      const uint32_t key = nan_high_key(y[v]);
      m = std::min(m, key | ~(cut_mask(key, cut) & mask_if(e[v] * rsum >= limit)));
    }
    low[c] = m;
  });
  const uint32_t smallest = *std::min_element(low.begin(), low.end());
  Cut out = cut;
  if (smallest > cut.key) out = Cut{smallest};
  if (r.mtk > 1) {
    std::vector<int64_t> counts(chunk_count(nt), 0);
    for_chunks(vocab, nt, [&](int c, int64_t begin, int64_t end) {
      int64_t k = 0;
      for (int64_t v = begin; v < end; ++v) k += cut_mask(nan_high_key(y[v]), out) & 1;
      counts[c] = k;
    });
    int64_t kept = 0;
    for (int64_t k : counts) kept += k;
    if (kept < r.mtk) {
      min_p_keep_topk(row, limit, [&](int64_t v) {
        return in_cut(nan_high_key(y[v]), cut) ? e[v] * rsum : 0.0f;
      });
      return;
    }
  }
  row.cut = out;
}

// Exponentials of the list entries relative to the row maximum.
void ensure_list_e(Row& row) {
  if (row.list_e) return;
  const std::vector<uint64_t>& asc = *row.list;
  row.s.small.resize(asc.size());
  for (size_t i = 0; i < asc.size(); ++i) row.s.small[i] = torch_expf(key_to_float(entry_key(asc[i])) - row.ymax);
  row.list_e = true;
}

// ------------------------------------------------------------------ outputs
void outputs_listed(const Row& row) {
  const RowCtx& r = row.r;
  Scratch& s = row.s;
  const std::vector<uint64_t>& asc = *row.list;
  const size_t n = asc.size();
  const size_t start = row.start;
  const int64_t vocab = r.vocab;
  if (r.token != nullptr) {
    Best best;
    s.tokens.clear();
    s.values.clear();
    for (size_t i = start; i < n; ++i) {
      const uint32_t key = entry_key(asc[i]);
      if (key == kNanKey || key == nan_high_key(-kInf)) continue;
      s.tokens.push_back(entry_index(asc[i]));
      s.values.push_back(key_to_float(key));
    }
    s.noise.resize(s.tokens.size());
    noise_for(r.seed, r.offset, s.tokens.data(), static_cast<int64_t>(s.tokens.size()), s.noise.data());
    for (size_t j = 0; j < s.tokens.size(); ++j) best.offer(s.values[j] + s.noise[j], s.tokens[j]);
    *r.token = best.index < 0 ? 0 : best.index;
    if (r.logprob != nullptr) {
      float lp = -kInf;
      if (best.index >= 0) {
        size_t top = n;  // NaN keys sort last
        while (top > start && entry_key(asc[top - 1]) == kNanKey) --top;
        const float m = key_to_float(entry_key(asc[top - 1]));
        if (m == kInf) {
          lp = kNaN;
        } else {
          s.order.clear();
          for (size_t i = start; i < top; ++i) s.order.push_back(asc[i] & 0xffffffffull);  // 0xffffffff - index
          std::sort(s.order.begin(), s.order.end(), std::greater<uint64_t>());              // index ascending
          LaneSum lanes_sum(r.lanes);
          for (uint64_t o : s.order) {
            const int64_t v = 0xffffffffu - static_cast<uint32_t>(o);
            const float x = torch_expf(r.src.at(v) - m);
            if (x > 0.0f) lanes_sum.add(v, x);
          }
          lp = (r.src.at(best.index) - m) - torch_logf(lanes_sum.result(vocab));
        }
      }
      *r.logprob = lp;
    }
  }
  if (r.filtered != nullptr || r.renorm != nullptr) {
    float* out = r.filtered != nullptr ? r.filtered : r.renorm;
    const float fill = r.renorm != nullptr ? 0.0f : r.filter_value;
    const int nt = vocab >= kSplitMin ? row.nt : 1;
    for_chunks(vocab, nt, [&](int, int64_t begin, int64_t end) {
      for (int64_t v = begin; v < end; ++v) out[v] = fill;
    });
    const uint32_t minus_inf = nan_high_key(-kInf);
    for (size_t i = start; i < n; ++i) {
      const int64_t v = entry_index(asc[i]);
      if (r.renorm != nullptr) {
        convert(r.raw, r.raw_dtype, v, 1, out + v);
      } else {
        // An entry removed by an earlier stage stays -inf even when a later one keeps it
        // (min-p's min_tokens_to_keep re-admits entries whatever their value).
        out[v] = entry_key(asc[i]) == minus_inf ? -kInf : r.src.at(v);
      }
    }
  }
}

void outputs_cut(const Row& row) {
  const RowCtx& r = row.r;
  const int64_t vocab = r.vocab;
  const int nt = row.nt;
  const float* y = row.y;
  const Cut cut = row.cut;
  if (r.token != nullptr) {
    Best best;
    if (row.ymax > -kInf) {
      // Scores with approximate noise first (a block is skipped when its largest kept value
      // plus the largest possible noise cannot reach the best so far); the tokens within the
      // noise error of the best get the exact noise.
      std::vector<Finalists> part(chunk_count(nt));
      for_chunks(vocab, nt, [&](int c, int64_t begin, int64_t end) {
        Finalists& fin = part[c];
        uint32_t tok[64];
        float val[64];
        float g[64];
        for (int64_t b = begin; b < end; b += 64) {
          const int64_t n = std::min<int64_t>(64, end - b);
          uint32_t top = 0;
          for (int64_t i = 0; i < n; ++i) top = std::max(top, kept_key(nan_high_key(y[b + i]), cut));
          const float floor = fin.floor();
          if (top == 0 || key_to_float(top) + kGumbelMax < floor) continue;
          // Candidates: kept, finite or +inf, and able to reach the floor; compressed branch-free.
          uint32_t flag[64];
          for (int64_t i = 0; i < n; ++i) {
            const float x = y[b + i];
            flag[i] = mask_if(kept_key(nan_high_key(x), cut) != 0) & mask_if(x > -kInf) &
                      mask_if(x + kGumbelMax >= floor);
          }
          int64_t m = 0;
          for (int64_t i = 0; i < n; ++i) {
            tok[m] = static_cast<uint32_t>(b + i);
            val[m] = y[b + i];
            m += flag[i] & 1;
          }
          fast_noise_for(r.seed, r.offset, tok, m, g);
          for (int64_t j = 0; j < m; ++j) fin.offer(val[j] + g[j], tok[j]);
        }
      });
      Finalists& all = part[0];
      for (size_t c = 1; c < part.size(); ++c) {
        all.best = std::max(all.best, part[c].best);
        all.tok.insert(all.tok.end(), part[c].tok.begin(), part[c].tok.end());
        all.score.insert(all.score.end(), part[c].score.begin(), part[c].score.end());
      }
      all.prune();
      std::vector<float> g(all.tok.size());
      noise_for(r.seed, r.offset, all.tok.data(), static_cast<int64_t>(all.tok.size()), g.data());
      for (size_t j = 0; j < all.tok.size(); ++j) best.offer(y[all.tok[j]] + g[j], all.tok[j]);
    }
    *r.token = best.index < 0 ? 0 : best.index;
    if (r.logprob != nullptr) {
      float lp = -kInf;
      if (best.index >= 0) {
        lp = row.ymax == kInf ? kNaN
                              : (y[best.index] - row.ymax) -
                                    torch_logf(lane_sum(r.lanes, y, row.e, vocab, cut, row.ymax));
      }
      *r.logprob = lp;
    }
  }
  if (r.filtered != nullptr) {
    float* out = r.filtered;
    const uint32_t fill = float_to_bits(r.filter_value);
    for_chunks(vocab, nt, [&](int, int64_t begin, int64_t end) {
      for (int64_t v = begin; v < end; ++v) {
        const uint32_t keep = cut_mask(nan_high_key(y[v]), cut);
        out[v] = bits_to_float(select_bits(keep, float_to_bits(y[v]), fill));
      }
    });
  }
  if (r.renorm != nullptr) {
    float* out = r.renorm;
    for_chunks(vocab, nt, [&](int, int64_t begin, int64_t end) {
      float p[kBlock];
      for (int64_t b = begin; b < end; b += kBlock) {
        const int64_t n = std::min(kBlock, end - b);
        convert(r.raw, r.raw_dtype, b, n, p);
        for (int64_t i = 0; i < n; ++i) {
          out[b + i] = bits_to_float(float_to_bits(p[i]) & cut_mask(nan_high_key(y[b + i]), cut));
        }
      }
    });
  }
}

void process_row(const RowCtx& r) {
  Row row(r, thread_scratch(), r.nt);  // for_rows gives nt > 1 only to rows worth splitting
  const int64_t keep = std::max(r.top_k, r.mtk);
  bool top_k_on = r.top_k > 0 && keep < r.vocab;
  if (top_k_on && keep <= kSmallK && !collect_top_k(row, keep)) top_k_on = false;
  if (!row.listed) {
    load_row(row);
    if (top_k_on) {  // keep > kSmallK: radix select
      const uint32_t kth = radix_kth_key(row, keep);
      if (kth != kNanKey) row.cut = Cut{kth};  // every tie of the k-th value is kept
      // (>= keep NaNs: the k-th value is NaN and transformers removes nothing)
    }
  }
  // A row with NaN or +inf, or nothing above -inf, has a NaN softmax: top-p and min-p keep it.
  const bool softmax_ok = !row.nan && row.ymax < kInf && row.ymax > -kInf;
  if (r.top_p < 1.0 && softmax_ok) {
    if (row.listed) {
      std::vector<uint64_t>& asc = *row.list;
      const int64_t keep = top_p_keep(asc, r.vocab, row.ymax, r.top_p, r.mtk, r.lanes, row.s.small);
      const size_t pos = asc.size() - static_cast<size_t>(std::min<int64_t>(keep, asc.size()));
      const bool minus_inf_ties =
          entry_key(asc[pos]) == nan_high_key(-kInf) && static_cast<int64_t>(asc.size()) < r.vocab;
      if (keep > static_cast<int64_t>(asc.size())) {
        keep_top_n(row, keep);
      } else if (splits_group(asc, pos) || minus_inf_ties) {  // torch.sort's order inside the group
        keep_top_n_list(row, keep, asc, pos, 0, minus_inf_ties ? r.vocab - static_cast<int64_t>(asc.size()) : 0);
      } else {
        row.start = pos;
        row.list_e = true;
      }
    } else {
      top_p_row(row);
    }
  }
  if (r.min_p > 0.0 && softmax_ok) {
    if (row.listed) {
      ensure_list_e(row);
      std::vector<uint64_t>& asc = *row.list;
      float rsum = 0.0f, limit = 0.0f;
      const int64_t count =
          min_p_count(asc, row.start, row.s.small, r.vocab, r.min_p, r.lanes, row.s.order, &rsum, &limit);
      if (count >= std::min(r.mtk, r.vocab)) {
        row.start = asc.size() - static_cast<size_t>(count);
      } else {
        std::vector<float> p(static_cast<size_t>(r.vocab), 0.0f);
        for (size_t i = row.start; i < asc.size(); ++i) p[entry_index(asc[i])] = row.s.small[i] * rsum;
        min_p_keep_topk(row, limit, [&](int64_t v) { return p[v]; });
      }
    } else {
      min_p_row(row);
    }
  }
  if (row.listed) {
    outputs_listed(row);
  } else {
    outputs_cut(row);
  }
}

void check_rows(const LogitRows& in) {
  require_nonnegative(in.rows, "rows");
  require_nonnegative(in.vocab, "vocab");
  dtype_from_code(in.dtype);
  require(in.vocab <= 0x7fffffff, "vocab must be < 2^31 (token ids are 32-bit Philox counters)");
  // Any stride >= 0: rows may overlap (an expanded row is read, never written).
  require_nonnegative(in.row_stride, "row_stride");
  require_pointer(reinterpret_cast<uintptr_t>(in.data), in.rows * in.vocab, "logits");
}

const void* row_ptr(const LogitRows& in, int64_t b) {
  const int64_t size = dtype_size(static_cast<DType>(in.dtype));
  return static_cast<const char*>(in.data) + b * in.row_stride * size;
}

// Rows in parallel when there are enough of them; otherwise one row at a time, split.
// A single row is split across threads from `split_min` entries.
template <class F>
void for_rows(const LogitRows& in, const F& fn, int64_t split_min = kSplitMin) {
  const int threads = num_threads();
  if (in.rows == 0 || in.vocab == 0) return;
  // Below ~64K entries in all (~60 us of work) a call runs inline: the wake-up would cost more.
  if (in.rows < 2 ? in.vocab < split_min : in.rows * in.vocab < 65536) {
    for (int64_t b = 0; b < in.rows; ++b) fn(b, 1);
  } else if (in.rows >= threads || in.vocab < split_min) {
    parallel_tasks(in.rows, [&](int64_t b) { fn(b, 1); });
  } else {
    for (int64_t b = 0; b < in.rows; ++b) fn(b, threads);
  }
}

// Per-row parameter values, checked here because pydecode/ops/_validate.py skips its Python scans
// when this backend runs (scan_values): the same ranges and the same message form.
std::string row_value_error(const char* name, const char* range, const std::string& got, int64_t row) {
  return std::string(name) + " must be in " + range + " for every row, got " + got + " at row " + std::to_string(row);
}

std::string number_text(double v) {
  std::ostringstream text;
  text << v;
  return text.str();
}

void check_temperatures(const double* temperature, int64_t rows) {
  for (int64_t b = 0; b < rows; ++b) {
    // NaN fails the comparison; +inf is a valid (flat) temperature.
    if (!(temperature[b] > 0.0)) {
      throw std::invalid_argument(row_value_error("temperature", "(0, inf]", number_text(temperature[b]), b) +
                                  "; use greedy decoding (do_sample=False) for temperature 0");
    }
  }
}

void check_unit(const double* values, int64_t rows, const char* name) {
  if (values == nullptr) return;
  for (int64_t b = 0; b < rows; ++b) {
    if (!(values[b] >= 0.0 && values[b] <= 1.0)) {
      throw std::invalid_argument(row_value_error(name, "[0, 1]", number_text(values[b]), b));
    }
  }
}

}  // namespace

void apply_temperature(const LogitRows& in, const double* temperature, float* out) {
  check_rows(in);
  require_pointer(reinterpret_cast<uintptr_t>(temperature), in.rows, "temperature");
  require_pointer(reinterpret_cast<uintptr_t>(out), in.rows * in.vocab, "out");
  check_temperatures(temperature, in.rows);
  const DType dtype = static_cast<DType>(in.dtype);
  for_rows(in, [&](int64_t b, int nt) {
    const RowSource src{row_ptr(in, b), dtype, Transform::kDivide, static_cast<float>(temperature[b])};
    float* o = out + b * in.vocab;
    for_chunks(in.vocab, in.vocab >= kSplitMin ? nt : 1, [&](int, int64_t begin, int64_t end) {
      for (int64_t v = begin; v < end; v += kBlock) src.load(v, std::min(kBlock, end - v), o + v);
    });
  });
}

namespace {

// First maximum of y[0, n) offered to `best` at indices base + i. NaN is skipped here; the
// caller finds NaNs separately. AVX512: per-lane running maximum and the index where it first
// appeared (a strict '>' keeps each lane's first occurrence), then the lowest index among the
// lanes holding the maximum, which is the first occurrence in the span: one read, no branch per
// element (GCC does not vectorise a float max reduction without -ffinite-math-only).
void first_max(const float* y, int64_t n, int64_t base, Best& best, bool& saw_nan) {
  int64_t i = 0;
#if defined(__AVX512F__)
  if (n >= 16) {
    __m512 vmax = _mm512_set1_ps(-kInf);
    __m512i vidx = _mm512_set1_epi32(-1);
    __m512i cur = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i step = _mm512_set1_epi32(16);
    __mmask16 nan = 0;
    for (; i + 16 <= n; i += 16) {
      const __m512 x = _mm512_loadu_ps(y + i);
      const __mmask16 gt = _mm512_cmp_ps_mask(x, vmax, _CMP_GT_OQ);  // false for NaN
      nan |= _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
      vmax = _mm512_mask_mov_ps(vmax, gt, x);
      vidx = _mm512_mask_mov_epi32(vidx, gt, cur);
      cur = _mm512_add_epi32(cur, step);
    }
    const float m = _mm512_reduce_max_ps(vmax);
    const __mmask16 at_max = _mm512_cmp_ps_mask(vmax, _mm512_set1_ps(m), _CMP_EQ_OQ);
    const int first = _mm512_mask_reduce_min_epi32(at_max & _mm512_cmpge_epi32_mask(vidx, _mm512_setzero_si512()),
                                                   vidx);
    if (m > -kInf) best.offer(m, base + first);
    saw_nan = saw_nan || nan != 0;
  }
#endif
  for (; i < n; ++i) {
    if (y[i] != y[i]) {
      saw_nan = true;
    } else if (y[i] > -kInf) {
      best.offer(y[i], base + i);
    }
  }
}

// Index of the first NaN of the row's [begin, end), or -1.
int64_t first_nan(const RowSource& src, int64_t begin, int64_t end) {
  float y[kBlock];
  for (int64_t v = begin; v < end; v += kBlock) {
    const int64_t n = std::min(kBlock, end - v);
    src.load(v, n, y);
    for (int64_t i = 0; i < n; ++i) {
      if (y[i] != y[i]) return v + i;
    }
  }
  return -1;
}

}  // namespace

void greedy(const LogitRows& in, bool nan_is_max, int64_t* out) {
  check_rows(in);
  require_pointer(reinterpret_cast<uintptr_t>(out), in.rows, "out");
  const DType dtype = static_cast<DType>(in.dtype);
  auto row_argmax = [&](int64_t b, int nt) {
    const RowSource src{row_ptr(in, b), dtype, Transform::kNone, 1.0f};
    const int split = in.vocab >= kSplitMin ? nt : 1;
    const int nchunks = chunk_count(split);
    std::vector<Best> part(nchunks);
    std::vector<char> part_nan(nchunks, 0);
    for_chunks(in.vocab, split, [&](int c, int64_t begin, int64_t end) {
      Best local;
      bool saw_nan = false;
      if (dtype == DType::kFloat32) {
        first_max(static_cast<const float*>(src.data) + begin, end - begin, begin, local, saw_nan);
      } else {
        float y[kBlock];
        for (int64_t v = begin; v < end; v += kBlock) {
          const int64_t n = std::min(kBlock, end - v);
          src.load(v, n, y);
          first_max(y, n, v, local, saw_nan);
        }
      }
      if (saw_nan && nan_is_max) local = Best{kNaN, first_nan(src, begin, end)};
      part[c] = local;
      part_nan[c] = saw_nan;
    });
    int64_t index = -1;
    if (nan_is_max) {
      for (int c = 0; c < nchunks && index < 0; ++c) {
        if (part_nan[c]) index = part[c].index;  // torch.argmax: the first NaN is the maximum
      }
    }
    if (index < 0) {
      Best best;
      for (const Best& p : part) {
        if (p.index >= 0) best.offer(p.score, p.index);
      }
      // Nothing above -inf (all -inf, or NaN skipped): torch.argmax's first entry.
      index = best.index < 0 ? 0 : best.index;
    }
    out[b] = index;
  };
  // The vector loop reads ~8 GB/s on one core: below 1M entries (8 x 128K) a call takes
  // < ~0.15 ms inline, less than waking the pool and then leaving a worker spinning next to
  // torch's threads in a decode loop (which calls this once per step).
  if (in.rows * in.vocab < (int64_t{1} << 20)) {
    for (int64_t b = 0; b < in.rows; ++b) row_argmax(b, 1);
  } else {
    for_rows(in, row_argmax);
  }
}

void run_chain(const LogitRows& in, const ChainSpec& spec) {
  check_rows(in);
  require(spec.min_tokens_to_keep >= 1, "min_tokens_to_keep must be >= 1");
  require(spec.softmax_lanes == 8 || spec.softmax_lanes == 16, "softmax_lanes must be 8 or 16");
  require(spec.transform != Transform::kDivide || in.rows == 0 || spec.temperature != nullptr,
          "temperature is required");
  require(static_cast<int>(spec.transform) >= 0 && static_cast<int>(spec.transform) <= 2, "unknown transform");
  if (spec.tokens != nullptr) {
    require_pointer(reinterpret_cast<uintptr_t>(spec.seed), in.rows, "seed");
    require_pointer(reinterpret_cast<uintptr_t>(spec.offset), in.rows, "offset");
  } else {
    require(spec.logprobs == nullptr, "logprobs need tokens");
  }
  require(spec.filtered == nullptr || spec.renorm == nullptr, "filtered and renorm are exclusive");
  if (spec.transform == Transform::kDivide) check_temperatures(spec.temperature, in.rows);
  if (spec.top_k != nullptr) {
    for (int64_t b = 0; b < in.rows; ++b) {
      const int64_t k = spec.top_k[b];
      if (k < 0 || k > in.vocab) {
        throw std::invalid_argument(
            row_value_error("top_k", ("[0, " + std::to_string(in.vocab) + "]").c_str(), std::to_string(k), b));
      }
    }
  }
  check_unit(spec.top_p, in.rows, "top_p");
  check_unit(spec.min_p, in.rows, "min_p");
  const bool penalties = spec.state_tokens != nullptr;
  if (penalties) {
    require(spec.renorm == nullptr && spec.transform != Transform::kLog, "penalties apply to logits, not probabilities");
    check_penalty_state(in.rows, in.vocab, spec.state_tokens, spec.state_in_rep, spec.state_counts,
                        spec.state_lengths, spec.state_capacity, spec.state_stride, spec.repetition_penalty,
                        spec.presence_penalty, spec.frequency_penalty);
  }
  const DType dtype = static_cast<DType>(in.dtype);
  // Multi-pass when the row is not reduced to a short list by a small top-k first.
  bool multi_pass = false;
  for (int64_t b = 0; b < in.rows && !multi_pass; ++b) {
    const int64_t k = spec.top_k != nullptr ? spec.top_k[b] : 0;
    const bool small_k = k > 0 && std::max(k, spec.min_tokens_to_keep) <= kSmallK;
    const bool filters = (spec.top_p != nullptr && spec.top_p[b] < 1.0) || (spec.min_p != nullptr && spec.min_p[b] > 0.0);
    multi_pass = filters && !small_k;
  }
  for_rows(in, [&](int64_t b, int nt) {
    RowCtx r;
    const float t = spec.temperature != nullptr ? static_cast<float>(spec.temperature[b]) : 1.0f;
    Transform tf = spec.transform;
    if (tf == Transform::kDivide && t == 1.0f) tf = Transform::kNone;  // x / 1 == x
    r.src = RowSource{row_ptr(in, b), dtype, tf, t};
    if (penalties) {
      // The row's penalised entries as a sorted overlay (thread_local: this row's thread owns it
      // until process_row returns, also while the row is split across threads).
      thread_local std::vector<uint64_t> patch;
      patch.clear();
      const int64_t* tok = spec.state_tokens + b * spec.state_stride;
      for (int64_t i = 0; i < spec.state_lengths[b]; ++i) {
        const int64_t v = tok[i];  // >= 0 (checked); ids >= vocab are never read
        if (v >= in.vocab) continue;
        float x;
        convert(r.src.data, dtype, v, 1, &x);
        const float s = penalised(x, spec.state_in_rep[b * spec.state_stride + i] != 0,
                                  spec.state_counts[b * spec.state_stride + i], spec.repetition_penalty,
                                  spec.presence_penalty, spec.frequency_penalty, b);
        patch.push_back(static_cast<uint64_t>(v) << 32 | float_to_bits(s));
      }
      std::sort(patch.begin(), patch.end());  // a state lists each token once
      r.src.patch = patch.data();
      r.src.patches = static_cast<int64_t>(patch.size());
    }
    r.raw = r.src.data;
    r.raw_dtype = dtype;
    r.vocab = in.vocab;
    r.nt = nt;
    r.lanes = spec.softmax_lanes;
    r.top_k = spec.top_k != nullptr ? spec.top_k[b] : 0;
    r.top_p = spec.top_p != nullptr ? spec.top_p[b] : 1.0;
    r.min_p = spec.min_p != nullptr ? spec.min_p[b] : 0.0;
    r.mtk = spec.min_tokens_to_keep;
    r.seed = spec.seed != nullptr ? static_cast<uint64_t>(spec.seed[b]) : 0;
    r.offset = spec.offset != nullptr ? static_cast<uint64_t>(spec.offset[b]) : 0;
    r.token = spec.tokens != nullptr ? spec.tokens + b : nullptr;
    r.logprob = spec.logprobs != nullptr ? spec.logprobs + b : nullptr;
    r.filtered = spec.filtered != nullptr ? spec.filtered + b * in.vocab : nullptr;
    r.filter_value = spec.filter_value;
    r.renorm = spec.renorm != nullptr ? spec.renorm + b * in.vocab : nullptr;
    process_row(r);
  }, multi_pass ? kSplitMinMultiPass : kSplitMin);
}

}  // namespace pydecode::cpu
