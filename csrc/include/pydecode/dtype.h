// Logits dtypes the kernels read (float32, float16, bfloat16) and their conversion to float32,
// bit-exact with torch's `.float()`. Torch-free: the Python side passes a dtype code.
#pragma once
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

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

// Converts a whole row to float32 (the loop is specialised per dtype so it vectorises).
inline void row_to_float(const void* src, DType dtype, int64_t n, float* dst) {
  switch (dtype) {
    case DType::kFloat32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kFloat16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_float(s[i]);
      return;
    }
    default: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(s[i]);
      return;
    }
  }
}

inline int64_t dtype_size(DType dtype) { return dtype == DType::kFloat32 ? 4 : 2; }

}  // namespace pydecode
