// Device plumbing shared by the penalties, ngram and watermark CUDA kernels: reading a logits
// element of any dtype as float32 (bit-exact with torch's `.float()` on CUDA, which converts with
// the same __half2float / bit shift), token-id rows of int32 or int64, and `row_map`: one pass
// over every (row, token) that writes a new contiguous float32 row, f(token, float32(logit)),
// with 16-byte loads (and 16-byte stores where the output allows).
//
// The sparse kernels of each family run after row_map on the same stream, so they see the
// float32 copy and only touch the few tokens they change.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/views.h"
#include "pydecode/dtype.h"

namespace pydecode::cuda {

constexpr int kRowThreads = 256;
// Rows go on grid.y, which CUDA limits to 65535; more rows are looped over.
constexpr int64_t kMaxGridY = 65535;

__device__ __forceinline__ float half_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float bf16_bits_to_float(uint16_t h) {
  return __uint_as_float(static_cast<uint32_t>(h) << 16);
}

// Element v of row r as float32 (a uniform branch: the dtype is the same for every thread).
__device__ __forceinline__ float load_logit(const LogitsView& x, int64_t r, int64_t v) {
  const int64_t i = r * x.row_stride + v;
  switch (x.dtype) {
    case DType::kFloat32:
      return static_cast<const float*>(x.data)[i];
    case DType::kFloat16:
      return half_bits_to_float(static_cast<const uint16_t*>(x.data)[i]);
    default:
      return bf16_bits_to_float(static_cast<const uint16_t*>(x.data)[i]);
  }
}

// Per-dtype element access for row_map: the storage type and how many fit in 16 bytes.
template <DType D>
struct RowElem;
template <>
struct RowElem<DType::kFloat32> {
  using T = float;
  static constexpr int kVec = 4;
  __device__ static float scalar(const T* p, int64_t i) { return p[i]; }
  __device__ static void vector(const T* p, float (&x)[kVec]) {
    const float4 w = *reinterpret_cast<const float4*>(p);
    x[0] = w.x;
    x[1] = w.y;
    x[2] = w.z;
    x[3] = w.w;
  }
};
template <DType D>
struct RowElem16 {
  using T = uint16_t;
  static constexpr int kVec = 8;
  __device__ static float convert(uint16_t h) {
    return D == DType::kFloat16 ? half_bits_to_float(h) : bf16_bits_to_float(h);
  }
  __device__ static float scalar(const T* p, int64_t i) { return convert(p[i]); }
  __device__ static void vector(const T* p, float (&x)[kVec]) {
    const uint4 w = *reinterpret_cast<const uint4*>(p);
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      x[2 * k] = convert(static_cast<uint16_t>(words[k] & 0xFFFFu));
      x[2 * k + 1] = convert(static_cast<uint16_t>(words[k] >> 16));
    }
  }
};
template <>
struct RowElem<DType::kFloat16> : RowElem16<DType::kFloat16> {};
template <>
struct RowElem<DType::kBFloat16> : RowElem16<DType::kBFloat16> {};

// out[r][v] = op.row(r)(v, float32(in[r][v])) for every row r < rows and v < vocab; out is a
// contiguous (rows, vocab) float32 array. Each row is cut at the first 16-byte boundary of its
// input: a scalar head, then whole 16-byte vectors, then a scalar tail, so any row stride and
// any offset of a view work. Stores are 16-byte wide when the output is aligned at the same
// element (always for contiguous float32 input and vocab % 4 == 0), else scalar.
template <DType D, class Op>
__global__ void __launch_bounds__(kRowThreads)
    row_map_kernel(const void* __restrict__ in, int64_t in_stride, float* __restrict__ out, int64_t rows,
                   int64_t vocab, Op op) {
  using E = RowElem<D>;
  using T = typename E::T;
  constexpr int kVec = E::kVec;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const T* src = static_cast<const T*>(in) + r * in_stride;
    float* dst = out + r * vocab;
    const auto f = op.row(r);
    const uintptr_t addr = reinterpret_cast<uintptr_t>(src);
    int64_t head = static_cast<int64_t>(((16u - (addr & 15u)) & 15u) / sizeof(T));
    if (head > vocab) head = vocab;
    const int64_t nvec = (vocab - head) / kVec;
    const int64_t body_end = head + nvec * kVec;
    const bool aligned_out = (reinterpret_cast<uintptr_t>(dst + head) & 15u) == 0;
    for (int64_t k = tid; k < nvec; k += nthreads) {
      const int64_t v0 = head + k * kVec;
      float x[kVec];
      E::vector(src + v0, x);
#pragma unroll
      for (int j = 0; j < kVec; ++j) x[j] = f(v0 + j, x[j]);
      if (aligned_out) {
#pragma unroll
        for (int j = 0; j < kVec; j += 4) {
          *reinterpret_cast<float4*>(dst + v0 + j) = make_float4(x[j], x[j + 1], x[j + 2], x[j + 3]);
        }
      } else {
#pragma unroll
        for (int j = 0; j < kVec; ++j) dst[v0 + j] = x[j];
      }
    }
    // Head and tail: fewer than 2 * kVec elements per row.
    for (int64_t i = tid; i < head + (vocab - body_end); i += nthreads) {
      const int64_t v = i < head ? i : body_end + (i - head);
      dst[v] = f(v, E::scalar(src, v));
    }
  }
}

// Launches row_map_kernel for the logits' dtype. Blocks per row: enough for ~4 vectors per
// thread at large batch (fewer, longer-lived blocks), ~1 at small batch (a single row of 128K
// float32 then spreads over ~128 blocks, about one per SM of an H100).
template <class Op>
cudaError_t launch_row_map(const LogitsView& x, float* out, int64_t rows, int64_t vocab, const Op& op,
                           cudaStream_t stream) {
  if (rows == 0 || vocab == 0) return cudaSuccess;
  const int vec = x.dtype == DType::kFloat32 ? 4 : 8;
  const int64_t per_thread = rows >= 16 ? 4 : 1;
  const int64_t per_block = static_cast<int64_t>(kRowThreads) * vec * per_thread;
  int64_t blocks_x = (vocab + per_block - 1) / per_block;
  if (blocks_x > 65535) blocks_x = 65535;  // grid-stride covers the rest
  const dim3 grid(static_cast<unsigned>(blocks_x), static_cast<unsigned>(rows < kMaxGridY ? rows : kMaxGridY));
  switch (x.dtype) {
    case DType::kFloat32:
      row_map_kernel<DType::kFloat32><<<grid, kRowThreads, 0, stream>>>(x.data, x.row_stride, out, rows, vocab, op);
      break;
    case DType::kFloat16:
      row_map_kernel<DType::kFloat16><<<grid, kRowThreads, 0, stream>>>(x.data, x.row_stride, out, rows, vocab, op);
      break;
    default:
      row_map_kernel<DType::kBFloat16><<<grid, kRowThreads, 0, stream>>>(x.data, x.row_stride, out, rows, vocab, op);
      break;
  }
  return cudaGetLastError();
}

// The identity op: the float32 copy the sparse kernels then edit.
struct CopyOp {
  struct Row {
    __device__ float operator()(int64_t, float x) const { return x; }
  };
  __device__ Row row(int64_t) const { return Row{}; }
};

// Grid for kernels with one thread per (row, item): items on x, rows on y (looped past 65535).
inline dim3 item_grid(int64_t items, int64_t rows) {
  int64_t blocks_x = (items + kRowThreads - 1) / kRowThreads;
  if (blocks_x < 1) blocks_x = 1;
  if (blocks_x > 65535) blocks_x = 65535;
  return dim3(static_cast<unsigned>(blocks_x), static_cast<unsigned>(rows < kMaxGridY ? rows : kMaxGridY));
}

}  // namespace pydecode::cuda
