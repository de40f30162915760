// CUDA kernels of the sampling family (pydecode/ops/sampling.py): temperature, greedy and one
// fused filter chain (temperature or log -> top-k -> top-p -> min-p -> outputs), one thread block
// per row. What they reproduce is the torch reference run on CUDA (= transformers' warpers):
//
// * y = float32(x) * (1 / float32(T)) (torch turns the division by a Python float into that
//   reciprocal multiply on CUDA), or log(x) for probability inputs.
// * Top-k: radix select of the keep-th largest order-preserving key (NaN ranks highest, like
//   torch.topk): 4 passes of 8 bits with integer shared-memory histograms. Every tie of the
//   k-th value is kept, as transformers keeps it.
// * Top-p: transformers keeps token i iff the softmax mass of the tokens after it in the
//   ascending sort is < 1 - float32(1 - top_p). Masses are summed in 32.32 fixed point
//   (exp(y - max) * 2^32 rounded to an integer): integer sums are exact and order-free, so the
//   boundary is deterministic, found by a radix descent over the keys with mass histograms (no
//   float atomics). Inside a group of equal values the ascending sort is stable, so the group's
//   highest indices are the ones kept. The float32 cumsum of the reference rounds differently,
//   so a token whose mass lies within ~1e-6 of the threshold can be decided the other way.
// * Min-p: keep exp(y - max) >= float32(min_p) (p >= min_p * p_max with the common 1/sum
//   factor cancelled); min_tokens_to_keep by a top-n select (ties: lowest index, torch.topk's).
// * Sampling: Gumbel-max with the Philox noise of the randomness contract, correctly rounded
//   logs (the CPU kernels' log_cr), ties to the lowest index through a 64-bit packed
//   (score key, ~index) integer max, so the result does not depend on the reduction order.
#include <cfloat>
#include <climits>
#include <cmath>
#include <string>

#include "cuda/device.cuh"
#include "cuda/launch.h"
#include "pydecode/check.h"

namespace pydecode::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr float kInf = INFINITY;

// The kept set of a row: key > key, or key == key and tie_lo <= index <= tie_hi.
struct Cut {
  uint32_t key;
  int tie_lo;
  int tie_hi;
};

__device__ __forceinline__ bool kept(const Cut& c, uint32_t key, int v) {
  return key > c.key || (key == c.key && v >= c.tie_lo && v <= c.tie_hi);
}

struct Shared : RadixShared {
  unsigned long long mass[256];
  uint32_t u32[32];
  unsigned long long u64[32];
  float f32[32];
  unsigned long long mass_above;
};

// Keeps the n largest of the kept set (n <= its size); inside the group of equal values at the
// boundary the highest (tie_high) or lowest indices.
template <int D, class YFn>
__device__ Cut keep_top_n(const void* row, int vocab, const YFn& yof, const Cut cut, uint32_t n, bool tie_high,
                          Shared& sh) {
  uint32_t above, ties;
  const uint32_t k = radix_nth<D>(
      row, vocab, n,
      [&](int v, float x, uint32_t* key) {
        *key = sort_key(yof(x));
        return kept(cut, *key, v);
      },
      sh, &above, &ties);
  const uint32_t need = n - above;
  const int lo = cut.key == k ? cut.tie_lo : 0;
  const int hi = cut.key == k ? cut.tie_hi : INT_MAX;
  if (need >= ties) return Cut{k, lo, hi};
  uint32_t a2, t2;
  const uint32_t pick = radix_nth<D>(
      row, vocab, need,
      [&](int v, float x, uint32_t* key) {
        *key = tie_high ? static_cast<uint32_t>(v) : 0xFFFFFFFFu - static_cast<uint32_t>(v);
        const uint32_t sk = sort_key(yof(x));
        return sk == k && kept(cut, sk, v);
      },
      sh, &a2, &t2);
  return tie_high ? Cut{k, static_cast<int>(pick), hi} : Cut{k, lo, static_cast<int>(0xFFFFFFFFu - pick)};
}

// Top-p boundary by a radix descent on mass histograms: the lowest key K of the kept set whose
// mass strictly above it is < limit. Returns K; *mass_above / *count_above: mass and count of
// kept entries with a larger key; *ties: kept entries with key K.
template <int D, class YFn, class EFn>
__device__ uint32_t mass_descent(const void* row, int vocab, const YFn& yof, const EFn& efix, const Cut cut,
                                 double limit, Shared& sh, unsigned long long* mass_above, uint32_t* count_above,
                                 uint32_t* ties) {
  uint32_t prefix = 0, mask = 0;
  unsigned long long a_hi = 0;
  uint32_t c_hi = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
      sh.hist[i] = 0;
      sh.mass[i] = 0;
    }
    __syncthreads();
    for_row<D>(row, vocab, [&](int v, float x) {
      const float y = yof(x);
      const uint32_t key = sort_key(y);
      if (kept(cut, key, v) && (key & mask) == prefix) {
        const uint32_t d = (key >> shift) & 255u;
        atomicAdd(&sh.hist[d], 1u);
        atomicAdd(&sh.mass[d], efix(y));
      }
    });
    __syncthreads();
    if (threadIdx.x < 32) {
      const int lane = static_cast<int>(threadIdx.x);
      unsigned long long mtot;
      uint32_t ctot;
      unsigned long long run = lane_exclusive_suffix(sh.mass, lane, &mtot);
      uint32_t crun = lane_exclusive_suffix(sh.hist, lane, &ctot);
      int found = -1;
      unsigned long long found_mass = 0;
      uint32_t found_count = 0;
      for (int j = 0; j < 8; ++j) {
        const int b = 255 - 8 * lane - j;
        if (sh.hist[b] > 0 && static_cast<double>(a_hi + run) < limit) {
          found = b;  // keeps the lowest qualifying bin of this lane's run
          found_mass = run;
          found_count = crun;
        }
        run += sh.mass[b];
        crun += sh.hist[b];
      }
      // Bins descend with the lane: the lowest qualifying bin is in the highest lane that has one.
      const unsigned owners = __ballot_sync(0xFFFFFFFFu, found >= 0);
      const int src = owners ? 31 - __clz(owners) : 0;
      found = __shfl_sync(0xFFFFFFFFu, found, src);
      found_mass = __shfl_sync(0xFFFFFFFFu, found_mass, src);
      found_count = __shfl_sync(0xFFFFFFFFu, found_count, src);
      if (lane == 0) {
        found = found < 0 ? 255 : found;  // unreachable for limit > 0 (the top bin qualifies)
        sh.bin = found;
        sh.mass_above = found_mass;
        sh.above = found_count;
        sh.bin_count = sh.hist[found];
      }
    }
    __syncthreads();
    prefix |= static_cast<uint32_t>(sh.bin) << shift;
    mask |= 255u << shift;
    a_hi += sh.mass_above;
    c_hi += sh.above;
    *ties = sh.bin_count;
  }
  *mass_above = a_hi;
  *count_above = c_hi;
  return prefix;
}

struct ChainArgs {
  RowsIn in;
  ChainSpec spec;
};

template <int D>
__global__ void __launch_bounds__(kThreads) filter_chain_kernel(const ChainArgs a) {
  __shared__ Shared sh;
  const int row = static_cast<int>(blockIdx.x);
  const int vocab = static_cast<int>(a.in.vocab);
  const void* src = static_cast<const char*>(a.in.data) +
                    static_cast<int64_t>(row) * a.in.row_stride * static_cast<int64_t>(sizeof(typename Elem<D>::T));
  const ChainSpec& s = a.spec;
  int tf = s.transform;
  float rcp = 1.0f;
  if (tf == 1) {
    const float t = static_cast<float>(s.temperature[row]);
    if (t == 1.0f) {
      tf = 0;
    } else {
      rcp = 1.0f / t;
    }
  }
  const auto yof = [tf, rcp](float x) -> float { return tf == 0 ? x : (tf == 1 ? x * rcp : log_cr(x)); };

  // Row statistics: the largest non-NaN key, and whether a NaN is present.
  uint32_t kmax = 0, nan = 0;
  for_row<D>(src, vocab, [&](int, float x) {
    const uint32_t key = sort_key(yof(x));
    if (key == kNanKey) {
      nan = 1;
    } else {
      kmax = key > kmax ? key : kmax;
    }
  });
  kmax = block_reduce(kmax, MaxOp(), sh.u32);
  nan = block_reduce(nan, MaxOp(), sh.u32);
  const float ymax = kmax == 0 ? -kInf : key_to_float(kmax);  // kmax 0: every entry is NaN
  // A row with NaN or +inf, or nothing above -inf, has a NaN softmax: top-p and min-p keep it.
  const bool softmax_ok = nan == 0 && kmax != 0 && ymax < kInf && ymax > -kInf;
  const uint32_t mtk = static_cast<uint32_t>(s.min_tokens_to_keep < vocab ? s.min_tokens_to_keep : vocab);

  Cut cut{0u, 0, INT_MAX};
  uint32_t kept_count = static_cast<uint32_t>(vocab);

  if (s.top_k != nullptr && s.top_k[row] > 0) {
    const int64_t keep = s.top_k[row] > s.min_tokens_to_keep ? s.top_k[row] : s.min_tokens_to_keep;
    if (keep < vocab) {
      uint32_t above, ties;
      const uint32_t k = radix_nth<D>(
          src, vocab, static_cast<uint32_t>(keep),
          [&](int, float x, uint32_t* key) {
            *key = sort_key(yof(x));
            return true;
          },
          sh, &above, &ties);
      // (>= keep NaNs: the k-th value is NaN and transformers removes nothing.)
      if (k != kNanKey) {
        cut = Cut{k, 0, INT_MAX};
        kept_count = above + ties;
      }
    }
  }

  const auto efix = [ymax](float y) -> unsigned long long {
    return __float2ull_rn(expf(y - ymax) * 4294967296.0f);  // 32.32 fixed point, exact scaling
  };

  if (s.top_p != nullptr && s.top_p[row] < 1.0 && softmax_ok) {
    const float threshold = static_cast<float>(1.0 - s.top_p[row]);
    unsigned long long total = 0;
    const Cut c0 = cut;
    for_row<D>(src, vocab, [&](int v, float x) {
      const float y = yof(x);
      if (kept(c0, sort_key(y), v)) total += efix(y);
    });
    total = block_reduce(total, AddOp(), sh.u64);
    const double limit = (1.0 - static_cast<double>(threshold)) * static_cast<double>(total);
    uint32_t keep_count = 0, group = 0, ties = 0, key = 0;
    if (limit > 0.0) {
      unsigned long long mass_above;
      uint32_t count_above;
      key = mass_descent<D>(src, vocab, yof, efix, c0, limit, sh, &mass_above, &count_above, &ties);
      const unsigned long long e = efix(key_to_float(key));
      // The j-th highest member of the group has mass_above + j * e above it; kept while < limit.
      const double room = limit - static_cast<double>(mass_above);
      double n = e == 0 ? static_cast<double>(ties) : ceil(room / static_cast<double>(e));
      n = n < 1.0 ? 1.0 : (n > ties ? static_cast<double>(ties) : n);
      group = static_cast<uint32_t>(n);
      keep_count = count_above + group;
    }
    const uint32_t need = mtk < kept_count ? mtk : kept_count;
    if (keep_count < need) {
      cut = keep_top_n<D>(src, vocab, yof, c0, need, true, sh);
      kept_count = need;
    } else {
      if (group < ties) {
        // Stable ascending sort: the group's highest indices are the last positions, the kept ones.
        uint32_t a2, t2;
        const uint32_t pick = radix_nth<D>(
            src, vocab, group,
            [&](int v, float x, uint32_t* k2) {
              *k2 = static_cast<uint32_t>(v);
              const uint32_t sk = sort_key(yof(x));
              return sk == key && kept(c0, sk, v);
            },
            sh, &a2, &t2);
        cut = Cut{key, static_cast<int>(pick), c0.key == key ? c0.tie_hi : INT_MAX};
      } else if (key != c0.key) {
        cut = Cut{key, 0, INT_MAX};
      }
      kept_count = keep_count;
    }
  }

  if (s.min_p != nullptr && s.min_p[row] > 0.0 && softmax_ok) {
    const float mp = static_cast<float>(s.min_p[row]);
    uint32_t count = 0, kmin = 0xFFFFFFFFu;
    const Cut c0 = cut;
    for_row<D>(src, vocab, [&](int v, float x) {
      const float y = yof(x);
      const uint32_t key = sort_key(y);
      if (kept(c0, key, v) && expf(y - ymax) >= mp) {
        ++count;
        kmin = key < kmin ? key : kmin;
      }
    });
    count = block_reduce(count, AddOp(), sh.u32);
    kmin = block_reduce(kmin, MinOp(), sh.u32);
    const uint32_t need = mtk < kept_count ? mtk : kept_count;
    if (count >= need) {
      if (count > 0 && kmin > cut.key) cut = Cut{kmin, 0, INT_MAX};
      kept_count = count;
    } else {
      cut = keep_top_n<D>(src, vocab, yof, c0, need, false, sh);
      kept_count = need;
    }
  }

  if (s.tokens != nullptr) {
    const uint64_t seed = static_cast<uint64_t>(s.seed[row]);
    const uint64_t offset = static_cast<uint64_t>(s.offset[row]);
    const bool want_lp = s.logprobs != nullptr;
    unsigned long long best = 0;
    float z = 0.0f;
    const Cut c0 = cut;
    for_row<D>(src, vocab, [&](int v, float x) {
      const float y = yof(x);
      const uint32_t key = sort_key(y);
      if (key == kNanKey || !kept(c0, key, v)) return;
      if (y > -kInf) {
        const float score = y + gumbel_noise(seed, offset, static_cast<uint32_t>(v));
        const unsigned long long packed =
            (static_cast<unsigned long long>(sort_key(score)) << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(v));
        best = packed > best ? packed : best;
      }
      if (want_lp) z += expf(y - ymax);
    });
    best = block_reduce(best, MaxOp(), sh.u64);
    if (want_lp) z = block_reduce(z, AddOp(), sh.f32);
    if (threadIdx.x == 0) {
      const int token = best == 0 ? 0 : static_cast<int>(0xFFFFFFFFu - static_cast<uint32_t>(best));
      s.tokens[row] = token;
      if (want_lp) {
        s.logprobs[row] = best == 0 ? -kInf : (yof(load_one<D>(src, token)) - ymax) - logf(z);
      }
    }
  }

  if (s.filtered != nullptr || s.renorm != nullptr) {
    float* filtered = s.filtered != nullptr ? s.filtered + static_cast<int64_t>(row) * vocab : nullptr;
    float* renorm = s.renorm != nullptr ? s.renorm + static_cast<int64_t>(row) * vocab : nullptr;
    const float fv = s.filter_value;
    const Cut c0 = cut;
    for_row<D>(src, vocab, [&](int v, float x) {
      const float y = yof(x);
      const bool keep = kept(c0, sort_key(y), v);
      if (filtered != nullptr) filtered[v] = keep ? y : fv;
      if (renorm != nullptr) renorm[v] = keep ? x : 0.0f;
    });
  }
}

// Greedy over vocabulary slice blockIdx.y of `splits` (all of the row when splits == 1): the best
// (key << 32 | ~index) of the slice, to out[row] as a token (splits == 1) or to
// partial[row * splits + slice] for greedy_merge_kernel. Slices start at multiples of 8 entries,
// so a 16-byte aligned row gives 16-byte aligned slices.
template <int D>
__global__ void __launch_bounds__(kThreads) greedy_kernel(const RowsIn in, int splits, int64_t* out,
                                                         unsigned long long* partial) {
  __shared__ unsigned long long scratch[32];
  const int row = static_cast<int>(blockIdx.x);
  const int vocab = static_cast<int>(in.vocab);
  const int chunk = ((vocab + splits - 1) / splits + 7) & ~7;
  const int begin = static_cast<int>(blockIdx.y) * chunk;
  const int end = begin + chunk < vocab ? begin + chunk : vocab;
  const char* src = static_cast<const char*>(in.data) +
                    (static_cast<int64_t>(row) * in.row_stride + begin) * static_cast<int64_t>(sizeof(typename Elem<D>::T));
  unsigned long long best = 0;
  for_row<D>(src, end > begin ? end - begin : 0, [&](int v, float x) {
    const uint32_t key = sort_key(x);
    if (key == kNanKey) return;
    const unsigned long long packed =
        (static_cast<unsigned long long>(key) << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(v + begin));
    best = packed > best ? packed : best;
  });
  best = block_reduce(best, MaxOp(), scratch);
  if (threadIdx.x != 0) return;
  if (splits > 1) {
    partial[static_cast<int64_t>(row) * splits + blockIdx.y] = best;
  } else {
    // A row of -inf picks its first entry (-inf's key is above 0); an all-NaN row gives 0 too.
    out[row] = best == 0 ? 0 : static_cast<int64_t>(0xFFFFFFFFu - static_cast<uint32_t>(best));
  }
}

// One warp per row: the maximum of the row's slice results (an integer max: order-free).
__global__ void greedy_merge_kernel(const unsigned long long* partial, int splits, int64_t rows, int64_t* out) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= rows) return;  // whole warps exit together
  const int lane = static_cast<int>(threadIdx.x & 31);
  unsigned long long best = 0;
  for (int i = lane; i < splits; i += 32) {
    const unsigned long long p = partial[row * splits + i];
    best = p > best ? p : best;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned long long other = __shfl_xor_sync(0xFFFFFFFFu, best, o);
    best = other > best ? other : best;
  }
  if (lane == 0) out[row] = best == 0 ? 0 : static_cast<int64_t>(0xFFFFFFFFu - static_cast<uint32_t>(best));
}

template <int D>
__global__ void temperature_kernel(const RowsIn in, const double* temperature, float* out) {
  const int row = static_cast<int>(blockIdx.y);
  const int vocab = static_cast<int>(in.vocab);
  const typename Elem<D>::T* src = static_cast<const typename Elem<D>::T*>(in.data) + row * in.row_stride;
  const float rcp = 1.0f / static_cast<float>(temperature[row]);
  float* dst = out + static_cast<int64_t>(row) * vocab;
  for (int v = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x); v < vocab;
       v += static_cast<int>(gridDim.x * blockDim.x)) {
    dst[v] = Elem<D>::get(__ldg(src + v)) * rcp;
  }
}

void check_rows(const RowsIn& in) {
  require_nonnegative(in.rows, "rows");
  require_nonnegative(in.vocab, "vocab");
  require_nonnegative(in.row_stride, "row_stride");
  require(in.dtype >= 0 && in.dtype <= 2, "dtype code must be 0 (float32), 1 (float16) or 2 (bfloat16), got " +
                                              std::to_string(in.dtype));
  require(in.vocab < (int64_t{1} << 31) - 1, "vocab must be < 2^31 - 1 for the CUDA kernels");
  require(in.rows <= INT_MAX, "rows must be < 2^31 for the CUDA kernels");
  require_pointer(reinterpret_cast<uintptr_t>(in.data), in.rows * in.vocab, "logits");
}

}  // namespace

#if !defined(PYDECODE_CUDA_EMULATION)  // the launchers use <<<>>>; the CPU model calls kernels directly
cudaError_t apply_temperature(const RowsIn& in, const double* temperature, float* out, cudaStream_t stream) {
  check_rows(in);
  require_pointer(reinterpret_cast<uintptr_t>(temperature), in.rows, "temperature");
  require_pointer(reinterpret_cast<uintptr_t>(out), in.rows * in.vocab, "out");
  require(in.rows <= 65535, "rows must be <= 65535 (grid y dimension)");
  if (in.rows == 0 || in.vocab == 0) return cudaSuccess;
  constexpr int kT = 256;
  const int64_t blocks = (in.vocab + kT - 1) / kT;
  const dim3 grid(static_cast<unsigned>(blocks < 512 ? blocks : 512), static_cast<unsigned>(in.rows));
  switch (in.dtype) {
    case kDTypeF32: temperature_kernel<kDTypeF32><<<grid, kT, 0, stream>>>(in, temperature, out); break;
    case kDTypeF16: temperature_kernel<kDTypeF16><<<grid, kT, 0, stream>>>(in, temperature, out); break;
    default: temperature_kernel<kDTypeBF16><<<grid, kT, 0, stream>>>(in, temperature, out); break;
  }
  return cudaGetLastError();
}

int greedy_splits(int64_t rows, int64_t vocab) {
  // Split a row over several blocks while the batch alone would leave most SMs idle (132 on an
  // H100): aim for ~2 blocks per SM, slices of >= 4096 entries, at most kGreedyMaxSplits.
  if (rows <= 0 || rows >= 128) return 1;
  int64_t splits = (256 + rows - 1) / rows;
  const int64_t by_size = vocab / 4096;
  splits = splits < by_size ? splits : by_size;
  splits = splits < kGreedyMaxSplits ? splits : kGreedyMaxSplits;
  return splits < 1 ? 1 : static_cast<int>(splits);
}

cudaError_t greedy(const RowsIn& in, int64_t* out, uint64_t* scratch, int64_t scratch_len, cudaStream_t stream) {
  check_rows(in);
  require_pointer(reinterpret_cast<uintptr_t>(out), in.rows, "out");
  if (in.rows == 0 || in.vocab == 0) return cudaSuccess;
  int splits = greedy_splits(in.rows, in.vocab);
  if (scratch == nullptr || scratch_len < in.rows * splits) splits = 1;
  unsigned long long* partial = reinterpret_cast<unsigned long long*>(scratch);
  const dim3 grid(static_cast<unsigned>(in.rows), static_cast<unsigned>(splits));
  switch (in.dtype) {
    case kDTypeF32: greedy_kernel<kDTypeF32><<<grid, kThreads, 0, stream>>>(in, splits, out, partial); break;
    case kDTypeF16: greedy_kernel<kDTypeF16><<<grid, kThreads, 0, stream>>>(in, splits, out, partial); break;
    default: greedy_kernel<kDTypeBF16><<<grid, kThreads, 0, stream>>>(in, splits, out, partial); break;
  }
  if (splits > 1) {
    constexpr int kRowsPerBlock = 8;  // one warp per row
    const unsigned blocks = static_cast<unsigned>((in.rows + kRowsPerBlock - 1) / kRowsPerBlock);
    greedy_merge_kernel<<<blocks, 32 * kRowsPerBlock, 0, stream>>>(partial, splits, in.rows, out);
  }
  return cudaGetLastError();
}

cudaError_t filter_chain(const RowsIn& in, const ChainSpec& spec, cudaStream_t stream) {
  check_rows(in);
  require(spec.transform >= 0 && spec.transform <= 2, "transform must be 0 (none), 1 (divide) or 2 (log)");
  require(spec.transform != 1 || in.rows == 0 || spec.temperature != nullptr, "transform 1 needs temperature");
  require(spec.min_tokens_to_keep >= 1, "min_tokens_to_keep must be >= 1");
  if (spec.tokens != nullptr) {
    require_pointer(reinterpret_cast<uintptr_t>(spec.seed), in.rows, "seed");
    require_pointer(reinterpret_cast<uintptr_t>(spec.offset), in.rows, "offset");
  } else {
    require(spec.logprobs == nullptr, "logprobs need tokens");
  }
  if (in.rows == 0 || in.vocab == 0) return cudaSuccess;
  const ChainArgs args{in, spec};
  const dim3 grid(static_cast<unsigned>(in.rows));
  switch (in.dtype) {
    case kDTypeF32: filter_chain_kernel<kDTypeF32><<<grid, kThreads, 0, stream>>>(args); break;
    case kDTypeF16: filter_chain_kernel<kDTypeF16><<<grid, kThreads, 0, stream>>>(args); break;
    default: filter_chain_kernel<kDTypeBF16><<<grid, kThreads, 0, stream>>>(args); break;
  }
  return cudaGetLastError();
}

#endif  // !PYDECODE_CUDA_EMULATION

}  // namespace pydecode::cuda
