// CPU launchers for the Philox generator (pydecode.ops.philox).
#pragma once
#include <cstdint>

namespace pydecode::cpu {

// out[i][0..3] = Philox4x32-10(counter[i][0..3], key[i][0..1]) for i < n.
void philox4x32_10(const uint32_t* counters, const uint32_t* keys, uint32_t* out, int64_t n);

// out[b][v] = uniform_open01(philox_word(seeds[b], offsets[b], v, stream)) for a (rows, vocab) block.
void philox_uniform(const int64_t* seeds, const int64_t* offsets, float* out, int64_t rows,
                    int64_t vocab, uint32_t stream);

}  // namespace pydecode::cpu
