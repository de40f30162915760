// Beam search step (pydecode/ops/beam.py, beam_topk) on CPU.
//
// Per beam row: max, sum of exp(x - max) and c = log(sum) exactly as torch's CPU log_softmax
// computes them (see LseMode in beam.h), then one pass that forms each score
// s = ((x - max) - c) + beam_score, the reference's float32 arithmetic in its order, and keeps
// the row's top k in a small buffer behind a running threshold. The per-row candidates are then
// merged into each batch item's top k (pydecode/beam_merge.h). With torch's constant reproduced,
// scores are bit-identical to the reference, so ids and ties are too.
//
// Why not one pass with an online (rescaled) sum: its rounding differs from torch's, which moves
// c by an ulp or so and can flip near-ties. So the row is read three times (max, exp-sum,
// select); the second and third reads hit L2 (a 128256-float row is 501 KiB). exp is the cost:
// ~22 vector instructions per 16 elements; the select pass skips 16 logits per compare once its
// threshold settles. Measured on one core at vocab 128256, row in cache: max + exp-sum ~42 us,
// select ~13 us.
#include "beam.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
// GCC 12 reports its own _mm512_undefined_* placeholders as (maybe-)uninitialized wherever the
// intrinsics are inlined (GCC bug 105593, fixed in 13; -O1 sanitizer builds say "is used
// uninitialized"): both warnings are off for this file from here on.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#endif

#include "cpu/parallel.h"
#include "pydecode/beam_merge.h"
#include "pydecode/check.h"
#include "pydecode/dtype.h"
#include "pydecode/torch_cpu_math.h"

namespace pydecode::cpu {
namespace {

// ------------------------------------------------------------------ torch's arithmetic, scalar
constexpr float kRLn2 = 1.442695040888963407359924681001892137426645954152985934135449406931f;
constexpr float kL2U = 0.693145751953125f;
constexpr float kL2L = 1.428606765330187045e-06f;
constexpr uint32_t kAllOnes = 0xFFFFFFFFu;
constexpr float kInf = std::numeric_limits<float>::infinity();

// torch's Vectorized<float> maximum: x86 max (the second operand unless a > b, so on equal
// zeros too), NaN when either is NaN. Only the sign of a zero maximum depends on operand order.
inline float torch_max(float a, float b) {
  if (a != a || b != b) return bits_to_float(kAllOnes);
  return a > b ? a : b;
}

// torch's Vectorized<float>::log of a row sum (>= 1, or NaN) on AVX512 or AVX2 (torch_cpu_math.h):
// a NaN sum comes back as itself (sign and payload), as from Sleef's vector code.
inline float sleef_log_row_sum(float d, bool avx512) {
  if (d != d) return d;
  return avx512 ? torch_logf(d) : torch_logf_avx2(d);
}

// ------------------------------------------------------------------ lane models of torch's kernel
// Each model is torch's Vectorized<float> for one CPU capability: lane count, exp, log, maximum and
// the final reduction of the lanes (a shuffle tree, or lane 0 folding lanes 1.. in order).
template <int kLanes, bool kSleef>
struct ScalarLanes {
  static constexpr int L = kLanes;
  static constexpr bool kTree = kSleef;
  struct V {
    float v[kLanes];
  };
  static V load(const float* p) {
    V r;
    std::memcpy(r.v, p, sizeof r.v);
    return r;
  }
  static V load_tail(const float* p, int t) {
    V r{};
    std::memcpy(r.v, p, static_cast<size_t>(t) * sizeof(float));
    return r;
  }
  static V vmax(const V& a, const V& b) {
    V r;
    for (int j = 0; j < L; ++j) r.v[j] = torch_max(a.v[j], b.v[j]);
    return r;
  }
  static V add(const V& a, const V& b) {
    V r;
    for (int j = 0; j < L; ++j) r.v[j] = a.v[j] + b.v[j];
    return r;
  }
  static V exp_sub(const V& x, float m) {
    V r;
    for (int j = 0; j < L; ++j) r.v[j] = kSleef ? torch_expf(x.v[j] - m) : std::exp(x.v[j] - m);
    return r;
  }
  static V set_first(V a, const V& b, int t) {
    for (int j = 0; j < t; ++j) a.v[j] = b.v[j];
    return a;
  }
  static void store(float* p, const V& a) { std::memcpy(p, a.v, sizeof a.v); }
  static float log1(float d) { return kSleef ? sleef_log_row_sum(d, L == 16) : std::log(d); }
};

// Sleef's expf_u10 (FMA build) on a vector, what torch's Vectorized<float>::exp computes on
// AVX512 and AVX2 (torch_cpu_math.h's torch_expf is the same algorithm on one lane; its overflow
// bound differs, but beam rows only take exp(x - max) <= 1). S supplies the intrinsics.
template <class S>
typename S::V sleef_exp(typename S::V d) {
  using V = typename S::V;
  const typename S::I q = S::round_int(S::mul(d, S::set1(kRLn2)));  // round to nearest even
  const V qf = S::to_float(q);
  V s = S::fma(qf, S::set1(-kL2U), d);
  s = S::fma(qf, S::set1(-kL2L), s);
  V u = S::set1(0.000198527617612853646278381f);
  u = S::fma(u, s, S::set1(0.00139304355252534151077271f));
  u = S::fma(u, s, S::set1(0.00833336077630519866943359f));
  u = S::fma(u, s, S::set1(0.0416664853692054748535156f));
  u = S::fma(u, s, S::set1(0.166666671633720397949219f));
  u = S::fma(u, s, S::set1(0.5f));
  u = S::add(S::set1(1.0f), S::fma(S::mul(s, s), u, s));
  const typename S::I h = S::half(q);
  u = S::mul(S::mul(u, S::pow2i(h)), S::pow2i(S::sub(q, h)));
  return S::inf_above(S::zero_below(u, d, -104.0f), d, 100.0f);
}

#if defined(__AVX512F__)
struct Avx512Lanes {
  static constexpr int L = 16;
  static constexpr bool kTree = true;
  using V = __m512;
  static __mmask16 mask(int t) { return static_cast<__mmask16>((1u << t) - 1u); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load_tail(const float* p, int t) { return _mm512_maskz_loadu_ps(mask(t), p); }
  static V vmax(V a, V b) {
    const __mmask16 nan = _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q);
    return _mm512_mask_mov_ps(_mm512_max_ps(a, b), nan, _mm512_castsi512_ps(_mm512_set1_epi32(-1)));
  }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V set_first(V a, V b, int t) { return _mm512_mask_mov_ps(a, mask(t), b); }
  static void store(float* p, V a) { _mm512_storeu_ps(p, a); }
  static float log1(float d) { return sleef_log_row_sum(d, true); }
  static V exp_sub(V x, float m) { return exp(_mm512_sub_ps(x, _mm512_set1_ps(m))); }
  // The intrinsics sleef_exp (below) is written in.
  using I = __m512i;
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static I round_int(V x) { return _mm512_cvtps_epi32(x); }
  static V to_float(I q) { return _mm512_cvtepi32_ps(q); }
  static V pow2i(I q) {  // 2^q by the exponent bits
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(q, _mm512_set1_epi32(0x7f)), 23));
  }
  static I half(I q) { return _mm512_srai_epi32(q, 1); }
  static I sub(I a, I b) { return _mm512_sub_epi32(a, b); }
  static V zero_below(V u, V d, float lo) {
    return _mm512_mask_mov_ps(u, _mm512_cmp_ps_mask(d, _mm512_set1_ps(lo), _CMP_LT_OQ), _mm512_setzero_ps());
  }
  static V inf_above(V u, V d, float hi) {
    return _mm512_mask_mov_ps(u, _mm512_cmp_ps_mask(_mm512_set1_ps(hi), d, _CMP_LT_OQ), _mm512_set1_ps(kInf));
  }
  static V exp(V d) { return sleef_exp<Avx512Lanes>(d); }
};
using Sleef16 = Avx512Lanes;
#else
using Sleef16 = ScalarLanes<16, true>;
#endif

#if defined(__AVX2__) && defined(__FMA__)
struct Avx2Lanes {
  static constexpr int L = 8;
  static constexpr bool kTree = true;
  using V = __m256;
  static __m256i mask(int t) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(t), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load_tail(const float* p, int t) { return _mm256_maskload_ps(p, mask(t)); }
  static V vmax(V a, V b) { return _mm256_or_ps(_mm256_max_ps(a, b), _mm256_cmp_ps(a, b, _CMP_UNORD_Q)); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V set_first(V a, V b, int t) { return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(mask(t))); }
  static void store(float* p, V a) { _mm256_storeu_ps(p, a); }
  static float log1(float d) { return sleef_log_row_sum(d, false); }
  static V exp_sub(V x, float m) { return exp(_mm256_sub_ps(x, _mm256_set1_ps(m))); }
  // The intrinsics sleef_exp (below) is written in.
  using I = __m256i;
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static I round_int(V x) { return _mm256_cvtps_epi32(x); }
  static V to_float(I q) { return _mm256_cvtepi32_ps(q); }
  static V pow2i(I q) {  // 2^q by the exponent bits
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(q, _mm256_set1_epi32(0x7f)), 23));
  }
  static I half(I q) { return _mm256_srai_epi32(q, 1); }
  static I sub(I a, I b) { return _mm256_sub_epi32(a, b); }
  static V zero_below(V u, V d, float lo) {
    return _mm256_andnot_ps(_mm256_cmp_ps(d, _mm256_set1_ps(lo), _CMP_LT_OQ), u);
  }
  static V inf_above(V u, V d, float hi) {
    return _mm256_blendv_ps(u, _mm256_set1_ps(kInf), _mm256_cmp_ps(_mm256_set1_ps(hi), d, _CMP_LT_OQ));
  }
  static V exp(V d) { return sleef_exp<Avx2Lanes>(d); }
};
using Sleef8 = Avx2Lanes;
#else
using Sleef8 = ScalarLanes<8, true>;
#endif

using Libm8 = ScalarLanes<8, false>;

// The final reduction of the lane accumulators (lane values in a[0, L), clobbered).
template <class S>
float reduce_lanes(float* a, bool is_max) {
  if (!S::kTree) {  // torch's generic vec_reduce_all: lane 0 folds lanes 1, 2, ... in order
    float r = a[0];
    for (int j = 1; j < S::L; ++j) r = is_max ? torch_max(r, a[j]) : r + a[j];
    return r;
  }
  // VecReduceAllSIMD: v = f(v, shuffle(v)) pairing lane i with i^8 (AVX512 only), i^4, i^2, i^1.
  float t[16];
  for (int h = S::L / 2; h >= 1; h /= 2) {
    for (int j = 0; j < S::L; ++j) t[j] = is_max ? torch_max(a[j], a[j ^ h]) : a[j] + a[j ^ h];
    std::memcpy(a, t, sizeof(float) * S::L);
  }
  return a[0];
}

// Lane accumulators of torch's reduce_all(maximum) over the full vectors [vb, ve) of a row, then
// the partial vector of `tail` elements after them when tail > 0 (n >= L). Four accumulators over
// contiguous quarters run in parallel and combine in order: torch_max folds are associative
// bit for bit (ties keep the later operand either way), so the grouping does not change a bit.
template <class S>
void max_lanes(const float* x, int64_t vb, int64_t ve, int tail, float* out) {
  using V = typename S::V;
  const int64_t quarter = (ve - vb) / 4;
  V acc;
  if (quarter >= 2) {
    const float* p0 = x + vb * S::L;
    const float* p1 = p0 + quarter * S::L;
    const float* p2 = p1 + quarter * S::L;
    const float* p3 = p2 + quarter * S::L;
    V a0 = S::load(p0), a1 = S::load(p1), a2 = S::load(p2), a3 = S::load(p3);
    for (int64_t i = 1; i < quarter; ++i) {
      a0 = S::vmax(a0, S::load(p0 + i * S::L));
      a1 = S::vmax(a1, S::load(p1 + i * S::L));
      a2 = S::vmax(a2, S::load(p2 + i * S::L));
      a3 = S::vmax(a3, S::load(p3 + i * S::L));
    }
    for (int64_t v = vb + 4 * quarter; v < ve; ++v) a3 = S::vmax(a3, S::load(x + v * S::L));
    acc = S::vmax(S::vmax(S::vmax(a0, a1), a2), a3);
  } else {
    acc = S::load(x + vb * S::L);
    for (int64_t v = vb + 1; v < ve; ++v) acc = S::vmax(acc, S::load(x + v * S::L));
  }
  if (tail > 0) acc = S::set_first(acc, S::vmax(acc, S::load_tail(x + ve * S::L, tail)), tail);
  S::store(out, acc);
}

// torch's map_reduce_all(exp(x - m), +) over a whole row: the log-softmax sum. While it computes
// (~40 us a 128256 row), it prefetches `prefetch_bytes` of the next row into L2, one piece per
// vector, so that the next row's max pass does not wait on DRAM.
template <class S>
float exp_sum(const float* x, int64_t n, float m, const char* prefetch = nullptr, int64_t prefetch_bytes = 0) {
  using V = typename S::V;
  alignas(64) float a[16];
  if (n < S::L) {  // the slow path: lane 0 folds the n exp values in order
    S::store(a, S::exp_sub(S::load_tail(x, static_cast<int>(n)), m));
    float s = a[0];
    for (int64_t i = 1; i < n; ++i) s = s + a[i];
    return s;
  }
  const int64_t full = n / S::L;
  const int64_t step = full > 0 ? (prefetch_bytes + full - 1) / full : 0;  // bytes per vector
  V acc = S::exp_sub(S::load(x), m);
  for (int64_t v = 1; v < full; ++v) {
    if (prefetch != nullptr) __builtin_prefetch(prefetch + v * step, 0, 2);  // 2: into L2
    acc = S::add(acc, S::exp_sub(S::load(x + v * S::L), m));
  }
  const int tail = static_cast<int>(n - full * S::L);
  if (tail > 0) acc = S::set_first(acc, S::add(acc, S::exp_sub(S::load_tail(x + full * S::L, tail), m)), tail);
  S::store(a, acc);
  return reduce_lanes<S>(a, false);
}

template <class S>
float row_max(const float* x, int64_t n) {
  alignas(64) float a[16];
  if (n < S::L) {
    float r = x[0];
    for (int64_t i = 1; i < n; ++i) r = torch_max(r, x[i]);
    return r;
  }
  const int64_t full = n / S::L;
  max_lanes<S>(x, 0, full, static_cast<int>(n - full * S::L), a);
  return reduce_lanes<S>(a, true);
}

// out[i] = exp(x[i] - m) for i in [b, e): the values exp_sum adds (element-wise).
template <class S>
void exp_into(const float* x, int64_t b, int64_t e, float m, float* out) {
  alignas(64) float a[16];
  int64_t i = b;
  for (; i + S::L <= e; i += S::L) S::store(out + i, S::exp_sub(S::load(x + i), m));
  if (i < e) {
    S::store(a, S::exp_sub(S::load_tail(x + i, static_cast<int>(e - i)), m));
    std::memcpy(out + i, a, static_cast<size_t>(e - i) * sizeof(float));
  }
}

// The lane accumulators of torch's exp-sum over the first ve full vectors of a row (ve >= 1).
template <class S>
void exp_sum_lanes(const float* x, int64_t ve, float m, float* lanes) {
  typename S::V acc = S::exp_sub(S::load(x), m);
  for (int64_t v = 1; v < ve; ++v) acc = S::add(acc, S::exp_sub(S::load(x + v * S::L), m));
  S::store(lanes, acc);
}

// Continues those accumulators with exp values already computed (ex[i] = exp(x[i] - m)) for the
// full vectors [vb, full) and the `tail` elements after them, then reduces: exp_sum's result.
template <class S>
float finish_exp_sum(float* lanes, const float* ex, int64_t vb, int64_t full, int tail) {
  typename S::V acc = S::load(lanes);
  for (int64_t v = vb; v < full; ++v) acc = S::add(acc, S::load(ex + v * S::L));
  if (tail > 0) acc = S::set_first(acc, S::add(acc, S::load_tail(ex + full * S::L, tail)), tail);
  S::store(lanes, acc);
  return reduce_lanes<S>(lanes, false);
}

// ------------------------------------------------------------------ selection of a row's top k
// Keeps the best `keep` candidates of what it is given, in index order: once `keep` are held, a
// later element can only enter with a strictly larger score key (an equal key loses the tie on
// its larger flat index), so one integer compare per element rejects almost everything.
//
// The score is a non-decreasing function of the logit (each float op is, for a finite or -inf
// beam score), so a logit <= the worst kept candidate's cannot score above it: `x_floor` lets the
// scan skip 16 logits with one compare before forming any score.
struct Selector {
  BeamCandidate* buf;
  int64_t cap;  // buffer size; prunes to `keep` when full (cap == keep: all pushes fit, never)
  int64_t keep;
  const float* row;  // the row's logits, token 0 first (for x_floor)
  uint32_t flat0;    // flat index of token 0
  bool monotone;     // the beam score is not +inf (x = -inf would then score NaN, above the rest)
  int64_t n = 0;
  uint32_t threshold = 0;  // accept key > threshold; every real key is >= 0x007FFFFF (-inf)
  float x_floor = std::numeric_limits<float>::quiet_NaN();  // skip x <= x_floor (NaN: skip none)

  void push(uint32_t key, uint32_t flat, float score) {
    buf[n++] = BeamCandidate{beam_rank(key, flat), score};
    if (n == cap && cap > keep) {
      n = beam_keep_best(buf, n, keep);
      threshold = static_cast<uint32_t>(buf[keep - 1].rank >> 32);
      if (monotone) x_floor = row[beam_rank_flat(buf[keep - 1].rank) - flat0];
    }
  }
};

// The scores of x[begin, end) (token indices) into the selector: ((x - m) - c) + b when
// log_softmax, else x + b, in float32 as the reference computes them. Blocks of 64 compute the
// scores and keys in a vectorisable loop; a block is scanned only when its best key passes.
void select_range(const float* x, int64_t begin, int64_t end, bool log_softmax, float m, float c,
                  float b, uint32_t flat0, Selector& sel) {
#if defined(__AVX512F__)
  // 16 scores and keys per step in registers (beam_score_key's integer recipe); the auto-vectorised
  // loop below runs at ~2 cycles per element (measured), this at ~0.3.
  const __m512 vm = _mm512_set1_ps(m), vc = _mm512_set1_ps(c), vb = _mm512_set1_ps(b);
  const __m512i high = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  const __m512i nan_key = _mm512_set1_epi32(static_cast<int>(kBeamNanKey));
  alignas(64) float s16[16];
  alignas(64) uint32_t key16[16];
  for (int64_t i = begin; i < end; i += 16) {
    const int cnt = static_cast<int>(std::min<int64_t>(16, end - i));
    const __mmask16 valid = static_cast<__mmask16>((1u << cnt) - 1u);
    const __m512 xv = _mm512_maskz_loadu_ps(valid, x + i);
    // not (x <= x_floor): NaN logits (and a NaN floor) pass
    if (!_mm512_mask_cmp_ps_mask(valid, xv, _mm512_set1_ps(sel.x_floor), _CMP_NLE_UQ)) continue;
    const __m512 sv = log_softmax ? _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(xv, vm), vc), vb) : _mm512_add_ps(xv, vb);
    const __m512i bits = _mm512_castps_si512(sv);
    __m512i key = _mm512_xor_si512(bits, _mm512_or_si512(_mm512_srai_epi32(bits, 31), high));
    key = _mm512_mask_mov_epi32(key, _mm512_cmp_ps_mask(sv, _mm512_setzero_ps(), _CMP_EQ_OQ), high);
    key = _mm512_mask_mov_epi32(key, _mm512_cmp_ps_mask(sv, sv, _CMP_UNORD_Q), nan_key);
    __mmask16 pass = _mm512_mask_cmpgt_epu32_mask(valid, key, _mm512_set1_epi32(static_cast<int>(sel.threshold)));
    if (pass == 0) continue;
    _mm512_store_ps(s16, sv);
    _mm512_store_si512(key16, key);
    while (pass) {
      const int j = __builtin_ctz(pass);
      pass = static_cast<__mmask16>(pass & (pass - 1));
      if (key16[j] > sel.threshold) sel.push(key16[j], flat0 + static_cast<uint32_t>(i + j), s16[j]);
    }
  }
#else
  constexpr int kBlock = 64;
  alignas(64) float s[kBlock];
  alignas(64) uint32_t key[kBlock];
  for (int64_t i = begin; i < end; i += kBlock) {
    const int cnt = static_cast<int>(std::min<int64_t>(kBlock, end - i));
    const float* xi = x + i;
    if (log_softmax) {
      for (int j = 0; j < cnt; ++j) s[j] = ((xi[j] - m) - c) + b;
    } else {
      for (int j = 0; j < cnt; ++j) s[j] = xi[j] + b;
    }
    uint32_t best = 0;
    for (int j = 0; j < cnt; ++j) {
      key[j] = beam_score_key(s[j]);
      best = std::max(best, key[j]);
    }
    if (best <= sel.threshold) continue;
    for (int j = 0; j < cnt; ++j) {
      if (key[j] > sel.threshold) sel.push(key[j], flat0 + static_cast<uint32_t>(i + j), s[j]);
    }
  }
#endif
}

int64_t selector_cap(int64_t keep, int64_t len) {
  // 2 * keep + 1024: a prune (nth_element over cap) every >= keep + 1024 accepted elements keeps
  // pruning at O(len) even for an ascending row, where every element is accepted.
  return std::min(len, 2 * keep + 1024);
}

// ------------------------------------------------------------------ rows to float32

template <typename T>
T* scratch(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

struct Problem {
  const char* logits;
  DType dtype;
  int64_t elem;
  int64_t rows, vocab, row_stride;
  const float* beam_scores;
  int64_t num_beams, k, keep;
  bool log_softmax;
  const void* row(int64_t r) const { return logits + r * row_stride * elem; }
  uint32_t flat0(int64_t r) const { return static_cast<uint32_t>((r % num_beams) * vocab); }
};

// One task per row: convert (16-bit dtypes), stats, select; candidates to cand[r * keep, +keep).
template <class S>
void rows_whole(const Problem& p, BeamCandidate* cand) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, p.vocab));
  parallel_for(p.rows, grain, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> conv;
    thread_local std::vector<BeamCandidate> buffer;
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = static_cast<const float*>(p.row(r));
      if (p.dtype != DType::kFloat32) {
        float* dst = scratch(conv, p.vocab);
        row_to_float(p.row(r), p.dtype, p.vocab, dst);
        x = dst;
      }
      float m = 0.0f, c = 0.0f;
      if (p.log_softmax) {
        m = row_max<S>(x, p.vocab);
        // The next row of this thread's run, if any: prefetched while exp runs.
        const char* next = r + 1 < r1 ? static_cast<const char*>(p.row(r + 1)) : nullptr;
        c = S::log1(exp_sum<S>(x, p.vocab, m, next, p.vocab * p.elem));
      }
      const int64_t cap = selector_cap(p.keep, p.vocab);
      Selector sel{scratch(buffer, cap), cap, p.keep, x, p.flat0(r), p.beam_scores[r] != kInf};
      select_range(x, 0, p.vocab, p.log_softmax, m, c, p.beam_scores[r], p.flat0(r), sel);
      const int64_t got = beam_keep_best(sel.buf, sel.n, p.keep);
      std::copy(sel.buf, sel.buf + got, cand + r * p.keep);
    }
  });
}

// Few rows, long vocabulary: every row split into `chunks` slices (multiples of 64 elements) so
// that all threads work. Max lanes combine exactly (see max_lanes); the sum must follow torch's
// lane order, so slices after the first write their exp values and one thread per row adds them
// in order (~4 cycles a vector: a sequential chain that no split can shorten).
template <class S>
void rows_split(const Problem& p, int64_t chunks, BeamCandidate* cand, int64_t* counts) {
  const int64_t V = p.vocab;
  const int64_t full = V / S::L;
  const int tail = static_cast<int>(V - full * S::L);
  // Vector ranges of the slices: [vb[c], vb[c + 1]), sizes multiples of 64 / L vectors.
  std::vector<int64_t> vb(static_cast<size_t>(chunks + 1));
  const int64_t step = 64 / S::L;
  const int64_t per = ((full + chunks - 1) / chunks + step - 1) / step * step;
  for (int64_t c = 0; c <= chunks; ++c) vb[c] = std::min(full, c * per);
  auto elem_begin = [&](int64_t c) { return vb[c] * S::L; };
  auto elem_end = [&](int64_t c) { return c + 1 == chunks ? V : vb[c + 1] * S::L; };

  thread_local std::vector<float> conv_store, exp_store, lane_store, stats_store;
  const bool convert = p.dtype != DType::kFloat32;
  float* conv = convert ? scratch(conv_store, p.rows * V) : nullptr;
  float* ex = p.log_softmax ? scratch(exp_store, p.rows * V) : nullptr;
  float* lanes = scratch(lane_store, p.rows * chunks * S::L);
  float* stats = scratch(stats_store, 2 * p.rows);  // (m, c) per row
  auto row_ptr = [&](int64_t r) {
    return convert ? conv + r * V : static_cast<const float*>(p.row(r));
  };
  const int64_t tasks = p.rows * chunks;

  if (p.log_softmax || convert) {
    parallel_tasks(tasks, [&](int64_t t) {
      const int64_t r = t / chunks, c = t % chunks;
      if (convert) {
        const int64_t b = elem_begin(c), e = elem_end(c);
        row_to_float(static_cast<const char*>(p.row(r)) + b * p.elem, p.dtype, e - b, conv + r * V + b);
      }
      if (p.log_softmax && vb[c] < vb[c + 1]) max_lanes<S>(row_ptr(r), vb[c], vb[c + 1], 0, lanes + t * S::L);
    });
  }
  if (p.log_softmax) {
    for (int64_t r = 0; r < p.rows; ++r) {
      alignas(64) float acc[16] = {};
      const int64_t first = r * chunks;
      std::memcpy(acc, lanes + first * S::L, sizeof(float) * S::L);
      for (int64_t c = 1; c < chunks; ++c) {
        if (vb[c] >= vb[c + 1]) continue;
        const float* part = lanes + (first + c) * S::L;
        for (int j = 0; j < S::L; ++j) acc[j] = torch_max(acc[j], part[j]);
      }
      // torch's partial last vector: lanes j < tail take max(acc, x[full * L + j]).
      const float* x = row_ptr(r) + full * S::L;
      for (int j = 0; j < tail; ++j) acc[j] = torch_max(acc[j], x[j]);
      stats[2 * r] = reduce_lanes<S>(acc, true);
    }
    // The first slice of a row sums its exp values into lane accumulators directly while the
    // other slices store theirs; the row's thread then only adds the stored ones, in order.
    parallel_tasks(tasks, [&](int64_t t) {
      const int64_t r = t / chunks, c = t % chunks;
      if (c == 0) {
        exp_sum_lanes<S>(row_ptr(r), vb[1], stats[2 * r], lanes + t * S::L);
      } else {
        exp_into<S>(row_ptr(r), elem_begin(c), elem_end(c), stats[2 * r], ex + r * V);
      }
    });
    parallel_tasks(p.rows, [&](int64_t r) {
      stats[2 * r + 1] = S::log1(finish_exp_sum<S>(lanes + r * chunks * S::L, ex + r * V, vb[1], full, tail));
    });
  }
  parallel_tasks(tasks, [&](int64_t t) {
    thread_local std::vector<BeamCandidate> buffer;
    const int64_t r = t / chunks, c = t % chunks;
    const int64_t b = elem_begin(c), e = elem_end(c);
    const int64_t keep = std::min(p.keep, e - b);
    const int64_t cap = selector_cap(keep, e - b);
    Selector sel{scratch(buffer, cap), cap, keep, row_ptr(r), p.flat0(r), p.beam_scores[r] != kInf};
    const float m = p.log_softmax ? stats[2 * r] : 0.0f;
    const float lse = p.log_softmax ? stats[2 * r + 1] : 0.0f;
    select_range(row_ptr(r), b, e, p.log_softmax, m, lse, p.beam_scores[r], p.flat0(r), sel);
    counts[t] = beam_keep_best(sel.buf, sel.n, keep);
    std::copy(sel.buf, sel.buf + counts[t], cand + t * p.keep);
  });
}

template <class S>
void run(const Problem& p, float* out_scores, int64_t* out_tokens, int64_t* out_beams) {
  const int64_t batch = p.rows / p.num_beams;
  // Split rows only when whole rows would leave a thread idle (fewer rows than threads, or an
  // odd share) and a slice stays long (>= 16384 elements, 64 KiB) against the three phases'
  // synchronisation (~10 us each).
  const int64_t threads = num_threads();
  int64_t chunks = 1;
  if (p.vocab >= 2 * 16384 && p.rows % threads != 0 && p.rows < 8 * threads) {
    chunks = std::min<int64_t>(threads, p.vocab / 16384);
  }
  const int64_t parts_per_item = p.num_beams * chunks;
  thread_local std::vector<BeamCandidate> cand_store;
  thread_local std::vector<int64_t> count_store;
  BeamCandidate* cand = scratch(cand_store, p.rows * chunks * p.keep);
  int64_t* counts = scratch(count_store, p.rows * chunks);
  if (chunks == 1) {
    rows_whole<S>(p, cand);
    std::fill(counts, counts + p.rows, p.keep);
  } else {
    rows_split<S>(p, chunks, cand, counts);
  }
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, parts_per_item * p.keep));
  parallel_for(batch, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      // Compact the item's parts (each holds counts[part] of its p.keep slots) and merge.
      BeamCandidate* base = cand + b * parts_per_item * p.keep;
      int64_t n = 0;
      for (int64_t part = 0; part < parts_per_item; ++part) {
        const int64_t got = counts[b * parts_per_item + part];
        std::copy(base + part * p.keep, base + part * p.keep + got, base + n);
        n += got;
      }
      beam_merge(base, n, p.k, p.vocab, out_scores + b * p.k, out_tokens + b * p.k, out_beams + b * p.k);
    }
  });
}

}  // namespace

void beam_topk(const void* logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride,
               const float* beam_scores, int64_t num_beams, int64_t k, bool apply_log_softmax,
               int lse_mode, float* out_scores, int64_t* out_tokens, int64_t* out_beams) {
  const DType dt = dtype_from_code(dtype);
  require_nonnegative(rows, "rows");
  require_nonnegative(row_stride, "row_stride");
  require(num_beams >= 1, "num_beams must be >= 1, got " + std::to_string(num_beams));
  require(vocab >= 1, "vocab must be >= 1, got " + std::to_string(vocab));
  require(rows % num_beams == 0, "rows must be a multiple of num_beams");
  require(num_beams <= int64_t{0xFFFFFFFF} / vocab, "num_beams * vocab must be < 2**32");
  require(k >= 1 && k <= num_beams * vocab,
          "k must be in [1, num_beams * vocab] = [1, " + std::to_string(num_beams * vocab) + "], got " +
              std::to_string(k));
  require(lse_mode == kLseLibm8 || lse_mode == kLseSleef8 || lse_mode == kLseSleef16 ||
              lse_mode == kLseSleef8Scalar || lse_mode == kLseSleef16Scalar,
          "lse_mode must be 1, 8, 16, -8 or -16, got " + std::to_string(lse_mode));
  if (rows == 0) return;
  require(logits != nullptr && beam_scores != nullptr && out_scores != nullptr && out_tokens != nullptr &&
              out_beams != nullptr,
          "beam_topk: null pointer");
  const Problem p{static_cast<const char*>(logits), dt, dtype_size(dt), rows, vocab, row_stride, beam_scores,
                  num_beams, k, std::min(k, vocab), apply_log_softmax};
  switch (lse_mode) {
    case kLseSleef16:
      run<Sleef16>(p, out_scores, out_tokens, out_beams);
      break;
    case kLseSleef8:
      run<Sleef8>(p, out_scores, out_tokens, out_beams);
      break;
    case kLseSleef16Scalar:
      run<ScalarLanes<16, true>>(p, out_scores, out_tokens, out_beams);
      break;
    case kLseSleef8Scalar:
      run<ScalarLanes<8, true>>(p, out_scores, out_tokens, out_beams);
      break;
    default:
      run<Libm8>(p, out_scores, out_tokens, out_beams);
      break;
  }
}

}  // namespace pydecode::cpu
