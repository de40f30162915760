// Philox4x32-10 counter-based generator (Salmon et al., "Parallel random numbers: as easy
// as 1, 2, 3", SC'11), written to be bit-identical to Random123 and to Triton's
// tl.philox / tl.randint4x, so every pydecode backend draws the same stream.
//
// The randomness contract of pydecode (DESIGN.md) maps a draw to
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (token index, offset & 0xffffffff, offset >> 32, stream)
// and a sampler uses word 0 of the output. Torch-free and usable from host and device code.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define PYDECODE_HD __host__ __device__ __forceinline__
#else
#define PYDECODE_HD inline
#endif

namespace pydecode {

struct Philox4x32 {
  uint32_t v[4];
};

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;
constexpr int kPhiloxRounds = 10;

PYDECODE_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

PYDECODE_HD Philox4x32 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                     uint32_t k0, uint32_t k1) {
  for (int round = 0; round < kPhiloxRounds; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(kPhiloxM0, c0, hi0, lo0);
    mulhilo32(kPhiloxM1, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return Philox4x32{{c0, c1, c2, c3}};
}

// Word 0 of the draw for (seed, offset, token, stream): the one sampling uses.
PYDECODE_HD uint32_t philox_word(uint64_t seed, uint64_t offset, uint32_t token, uint32_t stream) {
  return philox4x32_10(token, static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32),
                       stream, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32))
      .v[0];
}

// A uniform in the open interval (0, 1) from the top 23 bits: (k + 0.5) * 2^-23 is exact in
// float32 for every k < 2^23, so every backend gets the same float (never 0, never 1).
PYDECODE_HD float uniform_open01(uint32_t word) {
  return (static_cast<float>(word >> 9) + 0.5f) * (1.0f / 8388608.0f);
}

}  // namespace pydecode
