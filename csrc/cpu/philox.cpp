#include "philox.h"

#include "pydecode/check.h"
#include "pydecode/philox.h"

namespace pydecode::cpu {

void philox4x32_10(const uint32_t* counters, const uint32_t* keys, uint32_t* out, int64_t n) {
  require_nonnegative(n, "n");
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t* c = counters + 4 * i;
    const uint32_t* k = keys + 2 * i;
    const Philox4x32 r = pydecode::philox4x32_10(c[0], c[1], c[2], c[3], k[0], k[1]);
    for (int w = 0; w < 4; ++w) out[4 * i + w] = r.v[w];
  }
}

void philox_uniform(const int64_t* seeds, const int64_t* offsets, float* out, int64_t rows,
                    int64_t vocab, uint32_t stream) {
  require_nonnegative(rows, "rows");
  require_nonnegative(vocab, "vocab");
  require(vocab <= int64_t{0xffffffff}, "vocab must fit in 32 bits (token index is counter word 0)");
  for (int64_t b = 0; b < rows; ++b) {
    const uint64_t seed = static_cast<uint64_t>(seeds[b]);
    const uint64_t offset = static_cast<uint64_t>(offsets[b]);
    float* row = out + b * vocab;
    for (int64_t v = 0; v < vocab; ++v) {
      row[v] = uniform_open01(philox_word(seed, offset, static_cast<uint32_t>(v), stream));
    }
  }
}

}  // namespace pydecode::cpu
