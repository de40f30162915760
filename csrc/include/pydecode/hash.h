// The "pydecode-hash" watermark greenlist (pydecode/ops/watermark.py), torch-free and shareable by
// the CPU, CUDA and Triton kernels. All arithmetic is modulo 2^32:
//   mix(x)   = lowbias32 (Chris Wellons): x ^= x >> 16; x *= 0x7FEB352D; x ^= x >> 15;
//              x *= 0x846CA68B; x ^= x >> 16
//   ctx      = mix(mix(key & 0xFFFFFFFF) ^ (key >> 32)), then ctx = mix(ctx ^ t) for each previous
//              token t (its low 32 bits, two's complement), oldest first
//   green(v) = mix(ctx ^ (v * 0x9E3779B9)) < threshold, threshold = floor(ratio * 2^32)
// Membership is a pure function of (key, context, token): no permutation, no host work.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define PYDECODE_HASH_HD __host__ __device__ __forceinline__
#else
#define PYDECODE_HASH_HD inline
#endif

namespace pydecode {

constexpr uint32_t kHashMix1 = 0x7FEB352Du;
constexpr uint32_t kHashMix2 = 0x846CA68Bu;
constexpr uint32_t kHashGolden = 0x9E3779B9u;

PYDECODE_HASH_HD uint32_t hash_mix32(uint32_t x) {
  x ^= x >> 16;
  x *= kHashMix1;
  x ^= x >> 15;
  x *= kHashMix2;
  x ^= x >> 16;
  return x;
}

// The row's context word from the hashing key and its n previous tokens (tokens[i * stride]).
PYDECODE_HASH_HD uint32_t hash_context(uint64_t hashing_key, const int64_t* tokens, int64_t n, int64_t stride = 1) {
  uint32_t ctx = hash_mix32(hash_mix32(static_cast<uint32_t>(hashing_key)) ^ static_cast<uint32_t>(hashing_key >> 32));
  for (int64_t i = 0; i < n; ++i) ctx = hash_mix32(ctx ^ static_cast<uint32_t>(tokens[i * stride]));
  return ctx;
}

// The token's hash; the token is green iff it is below the row's threshold.
PYDECODE_HASH_HD uint32_t hash_token(uint32_t ctx, uint32_t token) { return hash_mix32(ctx ^ (token * kHashGolden)); }

}  // namespace pydecode
