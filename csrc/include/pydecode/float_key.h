// Order-preserving integer keys of float32 values, for radix/bucket selection without sorting:
// key(a) < key(b) <=> a < b for non-NaN floats, with -0.0 and +0.0 mapped to the same key.
// NaN maps above +inf (callers that treat NaN as -inf must map it themselves first).
#pragma once
#include <cstdint>

#include "pydecode/dtype.h"

namespace pydecode {

inline uint32_t float_key(float f) {
  if (f == 0.0f) f = 0.0f;  // fold -0.0 onto +0.0
  const uint32_t bits = float_to_bits(f);
  // Negative: flip all bits (larger magnitude -> smaller key); positive: set the sign bit.
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

inline float key_to_float(uint32_t key) {
  const uint32_t bits = (key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key;
  return bits_to_float(bits);
}

}  // namespace pydecode
