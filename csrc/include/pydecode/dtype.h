// Logits dtypes the kernels read (float32, float16, bfloat16) and their conversion to float32,
// bit-exact with torch's `.float()`. Torch-free: the Python side passes a dtype code.
#pragma once
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__F16C__) || defined(__AVX512F__)
// GCC 12 reports its own _mm512_undefined_* placeholders as maybe-uninitialized once inlined
// (GCC bug 105593, fixed in 13): silence it for the intrinsics header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

#include "pydecode/check.h"

namespace pydecode {

// Codes shared with pydecode/ops/_cpu.py (DTYPE_CODES).
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

inline DType dtype_from_code(int code) {
  require(code >= 0 && code <= 2, "dtype code must be 0 (float32), 1 (float16) or 2 (bfloat16), got " +
                                       std::to_string(code));
  return static_cast<DType>(code);
}

inline float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint32_t float_to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

inline float bf16_to_float(uint16_t h) { return bits_to_float(static_cast<uint32_t>(h) << 16); }

// IEEE binary16 -> binary32, exact for every input (subnormals, inf, NaN payload kept).
inline float fp16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1Fu;
  uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0x1Fu) return bits_to_float(sign | 0x7F800000u | (mantissa << 13));  // inf / NaN
  if (exponent == 0) {
    if (mantissa == 0) return bits_to_float(sign);  // +-0
    // Subnormal: normalise the mantissa.
    exponent = 1;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    mantissa &= 0x3FFu;
  }
  return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

// float16 -> float32 as torch's .float() gives it on this CPU: the F16C instruction torch's
// vectorised conversion uses (it quiets signalling NaNs, which fp16_to_float keeps; every other
// value is the same). fp16_to_float where F16C is missing.
inline float half_to_float(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  return fp16_to_float(h);
#endif
}

// n float16 values to float32, 16 or 8 at a time with F16C: the portable loop does not vectorise
// (a 32x128256 repetition penalty took 3.7 ms from float16 with it vs 0.8 ms from bfloat16).
inline void halfs_to_floats(const uint16_t* src, int64_t n, float* dst) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  }
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  }
#endif
  for (; i < n; ++i) dst[i] = half_to_float(src[i]);
}

// Reads element i of a row of any supported dtype as float32.
struct RowReader {
  const void* data;
  DType dtype;
  inline float operator[](int64_t i) const {
    switch (dtype) {
      case DType::kFloat32:
        return static_cast<const float*>(data)[i];
      case DType::kFloat16:
        return fp16_to_float(static_cast<const uint16_t*>(data)[i]);
      default:
        return bf16_to_float(static_cast<const uint16_t*>(data)[i]);
    }
  }
};

// Converts a whole row to float32, bit-exact with torch's .float() (the loop is specialised per
// dtype so it vectorises).
inline void row_to_float(const void* src, DType dtype, int64_t n, float* dst) {
  switch (dtype) {
    case DType::kFloat32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kFloat16:
      halfs_to_floats(static_cast<const uint16_t*>(src), n, dst);
      return;
    default: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(s[i]);
      return;
    }
  }
}

inline int64_t dtype_size(DType dtype) { return dtype == DType::kFloat32 ? 4 : 2; }

}  // namespace pydecode
