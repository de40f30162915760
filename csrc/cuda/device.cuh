// Device-side building blocks shared by the CUDA kernels of the sampling and beam families:
// input conversion with 16-byte vector loads, order-preserving float keys, deterministic block
// reductions, warp-parallel radix-bucket selection and the correctly rounded Gumbel noise of
// the randomness contract. Only included by .cu files.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "pydecode/philox.h"
#if defined(PYDECODE_CUDA_EMULATION)
#include "pydecode/dtype.h"
#endif

namespace pydecode::cuda {

constexpr int kDTypeF32 = 0;  // pydecode::DType codes (csrc/include/pydecode/dtype.h)
constexpr int kDTypeF16 = 1;
constexpr int kDTypeBF16 = 2;

// NaN ranks above +inf (key 0xFF800000), as torch.topk / torch.sort rank it.
constexpr uint32_t kNanKey = 0xFFFFFFFFu;

template <int D>
struct Elem;
template <>
struct Elem<kDTypeF32> {
  using T = float;
  static __device__ __forceinline__ float get(float x) { return x; }
};
template <>
struct Elem<kDTypeF16> {
  using T = uint16_t;
  static __device__ __forceinline__ float get(uint16_t h) {
#if defined(PYDECODE_CUDA_EMULATION)  // tests/cuda_emulation: the CPU model of these kernels
    return fp16_to_float(h);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));  // exact, subnormals and NaN included
    return f;
#endif
  }
};
template <>
struct Elem<kDTypeBF16> {
  using T = uint16_t;
  static __device__ __forceinline__ float get(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }
};

// f(v, x) for every element v of the row [0, vocab) this thread owns. With a 16-byte aligned row
// a thread owns runs of 16 bytes (4 float32 or 8 half/bfloat16 values, one vector load each),
// else single elements. The assignment depends only on (vocab, alignment, blockDim), so a
// per-thread accumulation followed by a fixed-shape tree is deterministic.
template <int D, class F>
__device__ __forceinline__ void for_row(const void* row, int vocab, F&& f) {
  using T = typename Elem<D>::T;
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  const T* p = static_cast<const T*>(row);
  int tail = 0;
  if ((reinterpret_cast<uintptr_t>(p) & 15u) == 0) {
    const int nvec = vocab / kVec;
    const uint4* pv = reinterpret_cast<const uint4*>(p);
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
      const uint4 raw = __ldg(pv + i);
      T vals[kVec];
      static_assert(sizeof(vals) == sizeof(raw), "one 16-byte load");
      memcpy(vals, &raw, sizeof(raw));
#pragma unroll
      for (int j = 0; j < kVec; ++j) f(i * kVec + j, Elem<D>::get(vals[j]));
    }
    tail = nvec * kVec;
  }
  for (int v = tail + static_cast<int>(threadIdx.x); v < vocab; v += blockDim.x) f(v, Elem<D>::get(__ldg(p + v)));
}

// A __shared__ variable of the block. The CPU model runs the blocks of one row's split launch
// concurrently, so there it is the block's own storage rather than a static.
#if defined(PYDECODE_CUDA_EMULATION)
#define PYDECODE_BLOCK_SHARED(T, name) T& name = emu::block_shared<T>()
#else
#define PYDECODE_BLOCK_SHARED(T, name) __shared__ T name
#endif

// A load that bypasses L1 (whose lines may be stale for memory other blocks update with
// atomics) and that the compiler may not hoist out of a spin loop.
template <class T>
__device__ __forceinline__ T coherent_load(const T* p) {
#if defined(PYDECODE_CUDA_EMULATION)
  return emu::atomic_load(p);
#else
  return *static_cast<const volatile T*>(p);
#endif
}

template <int D>
__device__ __forceinline__ float load_one(const void* row, int v) {
  return Elem<D>::get(static_cast<const typename Elem<D>::T*>(row)[v]);
}

// Order-preserving key: a < b <=> key(a) < key(b) for non-NaN floats; -0.0 == +0.0; every NaN
// maps to kNanKey, above +inf.
__device__ __forceinline__ uint32_t sort_key(float f) {
  const uint32_t bits = __float_as_uint(f);
  const uint32_t mag = bits & 0x7FFFFFFFu;
  if (mag > 0x7F800000u) return kNanKey;
  if (mag == 0) return 0x80000000u;
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

__device__ __forceinline__ float key_to_float(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key);
}

// logf correctly rounded (up to the double log's 1-ulp error landing on a float midpoint, odds
// ~2^-29 per input): the CPU kernels' log_cr (torch_cpu_math.h) rounds the same exact value,
// so CPU and CUDA draw the same Gumbel noise.
__device__ __forceinline__ float log_cr(float x) { return static_cast<float>(log(static_cast<double>(x))); }

// The contract's Gumbel noise for (seed, offset, token), stream 0 (STREAM_SAMPLE).
__device__ __forceinline__ float gumbel_noise(uint64_t seed, uint64_t offset, uint32_t token) {
  const float u = uniform_open01(philox_word(seed, offset, token, 0u));
  return -log_cr(-log_cr(u));
}

// Block-wide reduction; every thread gets the result. `scratch` holds >= 32 values. The warp
// butterfly gives every lane the same value and the cross-warp fold runs in warp order, so float
// sums are deterministic for a fixed block size.
template <class T, class Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  const int warps = static_cast<int>(blockDim.x >> 5);
  __syncthreads();  // scratch may still be read by a previous reduction
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  T r = scratch[0];
  for (int w = 1; w < warps; ++w) r = op(r, scratch[w]);
  return r;
}

struct AddOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a > b ? a : b; }
};
struct MinOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a < b ? a : b; }
};

// Warp 0 helpers over 256 histogram bins, visited from the highest bin down. Lane l owns bins
// 255 - 8l ... 248 - 8l. Returns, to lane 0 (and all of warp 0), the exclusive suffix sum of
// every lane's first bin.
template <class T>
__device__ __forceinline__ T lane_exclusive_suffix(const T* bins, int lane, T* lane_total) {
  T total = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) total += bins[255 - 8 * lane - j];
  T incl = total;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const T up = __shfl_up_sync(0xFFFFFFFFu, incl, o);
    if (lane >= o) incl += up;
  }
  *lane_total = total;
  return incl - total;
}

// Radix step of an n-th largest selection: the bin b holding the `remaining`-th largest element
// (counted from bin 255 down), and the count of elements in higher bins. Call from warp 0 only.
__device__ __forceinline__ void select_bin(const uint32_t* hist, uint32_t remaining, int* bin_out,
                                           uint32_t* above_out) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  uint32_t total;
  uint32_t above = lane_exclusive_suffix(hist, lane, &total);
  int found = -1;
  uint32_t found_above = 0;
  if (above < remaining && above + total >= remaining) {
    for (int j = 0; j < 8; ++j) {
      const int b = 255 - 8 * lane - j;
      if (above + hist[b] >= remaining) {
        found = b;
        found_above = above;
        break;
      }
      above += hist[b];
    }
  }
  const unsigned owner = __ballot_sync(0xFFFFFFFFu, found >= 0);
  const int src = owner ? __ffs(owner) - 1 : 0;
  *bin_out = __shfl_sync(0xFFFFFFFFu, found, src);
  *above_out = __shfl_sync(0xFFFFFFFFu, found_above, src);
}

// Shared state of radix_nth.
struct RadixShared {
  uint32_t hist[256];
  int bin;
  uint32_t above;
  uint32_t bin_count;
};

// A histogram merge that does nothing: the block reads the whole row.
struct NoMerge {
  __device__ __forceinline__ void operator()(uint32_t*) const {}
};

// The n-th largest (1-based) key among the elements where keyfn(v, x, &key) is true (n must not
// exceed their count). *above: how many have a larger key; *ties: how many have this key.
// `row` may be one slice of a longer row: its entries are numbered from `base` for keyfn, and
// merge(sh.hist) turns the slice's histogram into the row's (the split-vocabulary path; it must
// end with the merged counts in sh.hist, visible to the whole block).
template <int D, class KeyFn, class Merge = NoMerge>
__device__ uint32_t radix_nth(const void* row, int vocab, uint32_t n, KeyFn keyfn, RadixShared& sh, uint32_t* above,
                              uint32_t* ties, int base = 0, Merge merge = Merge()) {
  uint32_t prefix = 0, mask = 0, remaining = n;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) sh.hist[i] = 0;
    __syncthreads();
    for_row<D>(row, vocab, [&](int v, float x) {
      uint32_t key;
      if (keyfn(base + v, x, &key) && (key & mask) == prefix) atomicAdd(&sh.hist[(key >> shift) & 255u], 1u);
    });
    __syncthreads();
    merge(sh.hist);
    if (threadIdx.x < 32) {
      int bin;
      uint32_t ab;
      select_bin(sh.hist, remaining, &bin, &ab);
      if (threadIdx.x == 0) {
        bin = bin < 0 ? 0 : bin;  // unreachable when n <= count; keeps the shift defined
        sh.bin = bin;
        sh.above = ab;
        sh.bin_count = sh.hist[bin];
      }
    }
    __syncthreads();
    prefix |= static_cast<uint32_t>(sh.bin) << shift;
    mask |= 255u << shift;
    remaining -= sh.above;
    *ties = sh.bin_count;
  }
  *above = n - remaining;
  return prefix;
}

}  // namespace pydecode::cuda
