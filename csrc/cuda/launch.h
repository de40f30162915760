// CUDA launchers: raw device pointers, sizes and a cudaStream_t in, a cudaError_t out.
// Each launcher checks its sizes (throwing std::invalid_argument like the CPU kernels) and
// returns the launch status, which the bindings turn into a Python exception.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace pydecode::cuda {

// out[b][v] = uniform_open01(philox_word(seeds[b], offsets[b], v, stream_id)); device pointers.
cudaError_t philox_uniform(const int64_t* seeds, const int64_t* offsets, float* out, int64_t rows,
                           int64_t vocab, uint32_t stream_id, cudaStream_t stream);

}  // namespace pydecode::cuda
