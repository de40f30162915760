// Float32 math that reproduces, bit for bit, what PyTorch's CPU kernels compute, so the cpu
// backend matches the torch references (and so transformers) exactly. Torch-free, header-only.
//
// Measured against torch 2.13 (AVX512 and AVX2 builds, `ATEN_CPU_CAPABILITY=avx2`):
// * torch_expf = Sleef_expf_u10 (FMA variant), what Vectorized<float>::exp() calls: softmax and
//   log_softmax use it. Equal to torch.softmax's exponentials on every probed input; monotone
//   and <= 1 on [-104, 0] (checked exhaustively over every float there).
// * torch_logf = Sleef_logf_u10, what Vectorized<float>::log() calls: log_softmax takes it of
//   the row sum.
// * LaneSum = vec::reduce_all's float32 sum: L lanes (16 on AVX512, 8 on AVX2), each a
//   sequential sum of the positions congruent to it mod L, then a butterfly; rows shorter than
//   L are summed sequentially. Zero terms may be skipped (x + 0 == x for x >= +0).
// * log_cr = correctly rounded logf. torch.log(tensor) calls MKL's vsLn, which is not public;
//   it differs from the correctly rounded value on ~0.09% of inputs (by one ulp), so log_cr is
//   the closest reproducible choice (exhaustive check over the 2^23 Philox uniforms: the Gumbel
//   noise -log(-log(u)) equals torch's for 99.905% of them, and is one ulp off otherwise).
//
// Every function here is branch-free where it matters, so GCC vectorises loops that call it.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "pydecode/dtype.h"

// Forced inlining: the loops that call these are only vectorised when they are inlined, and
// GCC's size heuristics otherwise keep torch_expf out of line where it is used often.
#if defined(__GNUC__)
#define PYDECODE_INLINE inline __attribute__((always_inline))
#else
#define PYDECODE_INLINE inline
#endif

namespace pydecode {

// All ones when c, else zero; and a bitwise select: the branch-free forms GCC vectorises.
PYDECODE_INLINE uint32_t mask_if(bool c) { return 0u - static_cast<uint32_t>(c); }
PYDECODE_INLINE uint32_t select_bits(uint32_t mask, uint32_t a, uint32_t b) { return (a & mask) | (b & ~mask); }
PYDECODE_INLINE uint64_t mask64_if(bool c) { return uint64_t{0} - static_cast<uint64_t>(c); }

// 2^q for q in [-126, 127] from its bit pattern (Sleef's vpow2i).
PYDECODE_INLINE float pow2i_f(int32_t q) { return bits_to_float(static_cast<uint32_t>(q + 0x7f) << 23); }

// Sleef_expf_u10 with fused multiply-adds (Sleef's AVX2/AVX512 builds), which torch's
// Vectorized<float>::exp() calls. NaN in, NaN out.
PYDECODE_INLINE float torch_expf(float d) {
  constexpr float kLog2e = 1.442695040888963407359924681001892137426645954152985934135449406931f;
  constexpr float kL2U = 0.693145751953125f;
  constexpr float kL2L = 1.428606765330187045e-06f;
  // Sleef converts with round-to-nearest-even; clamping first keeps the int conversion defined
  // for huge/infinite/NaN d (those results are overridden below anyway).
  float t = d * kLog2e;
  t = t >= -200.0f ? t : -200.0f;
  t = t <= 200.0f ? t : 200.0f;
  const int32_t q = static_cast<int32_t>(std::nearbyint(t));
  const float qf = static_cast<float>(q);
  float s = std::fma(qf, -kL2U, d);
  s = std::fma(qf, -kL2L, s);
  float u = 0.000198527617612853646278381f;
  u = std::fma(u, s, 0.00139304355252534151077271f);
  u = std::fma(u, s, 0.00833336077630519866943359f);
  u = std::fma(u, s, 0.0416664853692054748535156f);
  u = std::fma(u, s, 0.166666671633720397949219f);
  u = std::fma(u, s, 0.5f);
  u = 1.0f + std::fma(s * s, u, s);
  u = u * pow2i_f(q >> 1) * pow2i_f(q - (q >> 1));
  // d < -104 -> 0, d > ln(FLT_MAX) -> inf, NaN -> NaN; as bit selects, which GCC vectorises
  // (float selects on several comparisons it does not, under the default -ftrapping-math).
  uint32_t bits = float_to_bits(u) & ~mask_if(d < -104.0f);
  bits = select_bits(mask_if(d > 88.72283905206835f), 0x7f800000u, bits);
  return bits_to_float(select_bits(mask_if(d != d), float_to_bits(d), bits));
}

// Sleef_logf_u10's core: log(m * 2^e) for a mantissa m in [0.75, 1.5) and an exponent e, as
// double-float arithmetic with fused multiply-adds.
PYDECODE_INLINE float sleef_log_from(float m, float e) {
  // s = dfmul((ln2_hi, ln2_lo), e)
  const float sx = 0.69314718246459960938f * e;
  const float sy = std::fma(-1.904654323148236017e-09f, e, std::fma(0.69314718246459960938f, e, -sx));
  // x = dfdiv(dfadd2(-1, m), dfadd2(1, m))
  const float nx = -1.0f + m;
  const float nv = nx - (-1.0f);
  const float ny = (-1.0f - (nx - nv)) + (m - nv);
  const float dx = 1.0f + m;
  const float dv = dx - 1.0f;
  const float dy = (1.0f - (dx - dv)) + (m - dv);
  const float t = 1.0f / dx;
  const float qx = nx * t;
  const float u = std::fma(t, nx, -qx);
  const float v = std::fma(-dy, t, std::fma(-dx, t, 1.0f));
  const float qy = std::fma(qx, v, std::fma(ny, t, u));
  const float x2 = qx * qx;
  const float poly = std::fma(std::fma(0.3027294874f, x2, 0.3996108174f), x2, 0.6666694880f);
  // s = dfadd(s, dfscale(x, 2)); s = dfadd(s, x2 * x * poly); return s.x + s.y
  const float ax = qx * 2.0f;
  const float ay = qy * 2.0f;
  const float s2x = sx + ax;
  const float s2y = (((sx - s2x) + ax) + sy) + ay;
  const float w = (x2 * qx) * poly;
  const float s3x = s2x + w;
  const float s3y = ((s2x - s3x) + w) + s2y;
  return s3x + s3y;
}

// Special values as logf: NaN and negatives -> NaN, 0 -> -inf, +inf -> +inf; `ok` is false for them.
inline float log_special(float d, bool* ok) {
  *ok = d > 0.0f && d != std::numeric_limits<float>::infinity();
  if (*ok) return 0.0f;
  if (d == 0.0f) return -std::numeric_limits<float>::infinity();
  return d > 0.0f ? d : std::numeric_limits<float>::quiet_NaN();
}

// Sleef_logf_u10 (AVX512 getexp/getmant variant), which torch's Vectorized<float>::log() calls
// on AVX512. Subnormal inputs are scaled into the normal range first (Sleef's AVX512 code can
// differ there by an ulp; the kernels only take the log of row sums >= 1).
inline float torch_logf(float d) {
  bool ok;
  const float special = log_special(d, &ok);
  if (!ok) return special;
  float ebias = 0.0f;
  if (d < std::numeric_limits<float>::min()) {
    d *= 18446744073709551616.0f;  // 2^64
    ebias = -64.0f;
  }
  const float y = d * (1.0f / 0.75f);
  const float e = static_cast<float>(static_cast<int32_t>((float_to_bits(y) >> 23) & 0xff) - 127) + ebias;
  const uint32_t mant = float_to_bits(d) & 0x7fffffu;
  // getmant with the [0.75, 1.5) interval: exponent 126 when the mantissa is >= 1.5.
  const float m = bits_to_float(((mant & 0x400000u) ? 126u : 127u) << 23 | mant);
  return sleef_log_from(m, e);
}

// The AVX2 variant of Sleef_logf_u10 (integer exponent split: m = d * 2^-e by adding to the
// exponent bits), torch's Vectorized<float>::log on AVX2. It differs from torch_logf in the last
// bit for some inputs (beam.cpp reproduces both capabilities). Normal positive inputs only (the
// row sums it is used on are >= 1); special values as torch_logf.
inline float torch_logf_avx2(float d) {
  bool ok;
  const float special = log_special(d, &ok);
  if (!ok) return special;
  const uint32_t scaled = float_to_bits(d * (1.0f / 0.75f));
  const int32_t e = static_cast<int32_t>((scaled >> 23) & 0xffu) - 0x7f;
  const float m = bits_to_float(float_to_bits(d) + (static_cast<uint32_t>(-e) << 23));
  return sleef_log_from(m, static_cast<float>(e));
}

// Correctly rounded natural log of a float32 (NaN and negatives -> NaN, +-0 -> -inf, inf -> inf).
// Double-precision argument reduction and series (relative error about 2^-51 before the final
// rounding), so the float result is the correctly rounded one except when the exact log lies
// within ~2^-51 relative of a float32 rounding boundary (a few in 10^9 inputs).
PYDECODE_INLINE float log_cr(float x) {
  const double d = static_cast<double>(x);
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  const int64_t e0 = static_cast<int64_t>((bits >> 52) & 0x7ff) - 1023;
  // m in [1, 2); fold [sqrt(2), 2) to [sqrt(1/2), 1) so |s| <= 0.1716 below (the exponent
  // field is decremented instead of multiplying by 0.5: same value, no conditional arithmetic).
  const uint64_t mbits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
  const uint64_t high = mask64_if(mbits > 0x3ff6a09e667f3bcdull);  // m > sqrt(2)
  uint64_t fbits = mbits - (high & 0x0010000000000000ull);
  double m;
  std::memcpy(&m, &fbits, sizeof m);
  const int64_t e = e0 + static_cast<int64_t>(high & 1);
  const double f = m - 1.0;
  const double s = f / (2.0 + f);
  const double z = s * s;
  // log(1+f) = 2 atanh(s) = 2s (1 + z/3 + z^2/5 + ...); z <= 0.0295, so z^11/23 < 2^-60.
  double r = 1.0 / 21.0;
  r = r * z + 1.0 / 19.0;
  r = r * z + 1.0 / 17.0;
  r = r * z + 1.0 / 15.0;
  r = r * z + 1.0 / 13.0;
  r = r * z + 1.0 / 11.0;
  r = r * z + 1.0 / 9.0;
  r = r * z + 1.0 / 7.0;
  r = r * z + 1.0 / 5.0;
  r = r * z + 1.0 / 3.0;
  const double two_s = 2.0 * s;
  const double log1pf = two_s + two_s * (z * r);
  // ln 2 split so e * hi is exact for |e| < 2^11.
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  const double ed = static_cast<double>(e);
  const float out = static_cast<float>(ed * kLn2Hi + (ed * kLn2Lo + log1pf));
  // Special values last, as bit selects (the arithmetic above is garbage for them).
  uint32_t ob = float_to_bits(out);
  ob = select_bits(mask_if(x == std::numeric_limits<float>::infinity()), 0x7f800000u, ob);
  ob = select_bits(mask_if(x == 0.0f), 0xff800000u, ob);
  ob = select_bits(mask_if(!(x >= 0.0f)), 0x7fc00000u, ob);  // negative or NaN
  return bits_to_float(ob);
}

// torch's float32 Gumbel noise -log(-log(u)) for u in (0, 1), with correctly rounded logs.
PYDECODE_INLINE float gumbel_cr(float u) { return -log_cr(-log_cr(u)); }

// The largest noise gumbel_cr can return: u <= 1 - 2^-24 (uniform_open01), -log(u) >=
// 5.96e-8, so g <= 16.6355. Used as a bound to skip tokens that cannot win.
constexpr float kGumbelMax = 16.64f;

// vec::reduce_all's float32 sum emulated over positions [0, n): add(pos, x) in increasing
// position order per lane; terms never added count as +0.
struct LaneSum {
  static constexpr int kMaxLanes = 16;
  int lanes;
  float acc[kMaxLanes];

  explicit LaneSum(int lanes_) : lanes(lanes_) {
    for (int l = 0; l < kMaxLanes; ++l) acc[l] = 0.0f;
  }
  inline void add(int64_t pos, float x) {
    float& a = acc[pos & (lanes - 1)];
    a = a + x;
  }
  // n: the row length (rows shorter than `lanes` are summed sequentially, lane i = position i).
  float result(int64_t n) const {
    if (n < lanes) {
      float s = acc[0];
      for (int64_t i = 1; i < n; ++i) s = s + acc[i];
      return s;
    }
    float v[kMaxLanes];
    for (int l = 0; l < lanes; ++l) v[l] = acc[l];
    for (int step = lanes / 2; step >= 1; step /= 2) {
      float w[kMaxLanes];
      for (int l = 0; l < lanes; ++l) w[l] = v[l] + v[l ^ step];
      for (int l = 0; l < lanes; ++l) v[l] = w[l];
    }
    return v[0];
  }
};

}  // namespace pydecode
