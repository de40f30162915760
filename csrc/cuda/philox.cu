#include "launch.h"
#include "pydecode/check.h"
#include "pydecode/philox.h"

namespace pydecode::cuda {
namespace {

// One thread per (row, token); grid-stride so any vocab fits a bounded grid.
__global__ void _philox_uniform_kernel(const int64_t* __restrict__ seeds,
                                       const int64_t* __restrict__ offsets, float* __restrict__ out,
                                       int64_t vocab, uint32_t stream_id) {
  const int64_t row = blockIdx.y;
  const uint64_t seed = static_cast<uint64_t>(seeds[row]);
  const uint64_t offset = static_cast<uint64_t>(offsets[row]);
  for (int64_t v = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; v < vocab;
       v += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[row * vocab + v] =
        uniform_open01(philox_word(seed, offset, static_cast<uint32_t>(v), stream_id));
  }
}

}  // namespace

cudaError_t philox_uniform(const int64_t* seeds, const int64_t* offsets, float* out, int64_t rows,
                           int64_t vocab, uint32_t stream_id, cudaStream_t stream) {
  require_nonnegative(rows, "rows");
  require_nonnegative(vocab, "vocab");
  require(rows <= 65535, "rows must be <= 65535 (grid y dimension)");
  require(vocab <= int64_t{0xffffffff}, "vocab must fit in 32 bits");
  if (rows == 0 || vocab == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t blocks_x = (vocab + kThreads - 1) / kThreads;
  const dim3 grid(static_cast<unsigned>(blocks_x < 1024 ? blocks_x : 1024),
                  static_cast<unsigned>(rows));
  _philox_uniform_kernel<<<grid, kThreads, 0, stream>>>(seeds, offsets, out, vocab, stream_id);
  return cudaGetLastError();
}

}  // namespace pydecode::cuda
