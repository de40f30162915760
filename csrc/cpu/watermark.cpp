// Watermark bias kernels (pydecode/ops/watermark.py) on CPU: one pass that writes the float32
// copy of each row with the bias already added on green tokens.
//
// * hash scheme: the greenlist hash (pydecode/hash.h) is computed in registers for each token
//   while the row is copied: two 32-bit multiplies and three shift-xors per token, vectorised.
// * HF-exact scheme: the copy, then a scatter-add of the bias at the row's precomputed green ids
//   while the freshly written slice is still in cache.
//
// Rows are spread over the threads; a few long rows are cut into slices (multiples of 64
// elements) so that batch 1 uses every core too.
#include "watermark.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__x86_64__) || defined(_M_X64)
// GCC 12 reports its own _mm512_undefined_* placeholders as maybe-uninitialized once inlined
// (GCC bug 105593, fixed in 13): silence it for the intrinsics header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

#include "cpu/parallel.h"
#include "pydecode/check.h"
#include "pydecode/dtype.h"
#include "pydecode/hash.h"

namespace pydecode::cpu {
namespace {

// A slice of 16384 elements (64 KiB of float32 in and out) takes ~5-10 us, the order of one
// thread-pool dispatch: smaller slices would spend their time waking threads.
constexpr int64_t kMinSlice = 16384;
// 16-bit rows are converted in blocks of 2048 elements (8 KiB of float32, L1-resident), then
// biased into the output.
constexpr int64_t kConvertBlock = 2048;


// Runs fn(row, begin, end) over [0, vocab) of every row, the rows (or their slices of at least
// min_slice elements) spread over the pool; small problems run inline on the calling thread.
template <class Fn>
void for_row_slices(int64_t rows, int64_t vocab, int64_t min_slice, const Fn& fn) {
  if (rows == 0 || vocab == 0) return;
  const int64_t threads = num_threads();
  int64_t slices = 1;
  if (rows < 8 * threads) {
    // Enough slices for ~8 per thread, each >= min_slice, a multiple of the thread count when
    // that many fit (parallel_for hands each thread one contiguous run of them).
    slices = std::min<int64_t>((8 * threads + rows - 1) / rows, vocab / min_slice);
    if (slices >= threads) slices -= slices % threads;
    slices = std::max<int64_t>(slices, 1);
  }
  const int64_t slice_len = ((vocab + slices - 1) / slices + 63) / 64 * 64;
  const int64_t grain = std::max<int64_t>(1, min_slice / slice_len);
  parallel_for(rows * slices, grain, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t r = u / slices;
      const int64_t begin = (u % slices) * slice_len;
      const int64_t end = std::min(vocab, begin + slice_len);
      if (begin < end) fn(r, begin, end);
    }
  });
}

// o[i] = x[i] + bias where hash(v0 + i) < threshold, else x[i].
void hash_bias(const float* x, float* o, int64_t v0, int64_t n, uint32_t ctx, int64_t threshold, float bias) {
  if (threshold <= 0) {  // nothing is green
    if (x != o) std::memcpy(o, x, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  if (threshold > int64_t{0xFFFFFFFF}) {  // everything is green
    for (int64_t i = 0; i < n; ++i) o[i] = x[i] + bias;
    return;
  }
  const uint32_t t = static_cast<uint32_t>(threshold);
  const uint32_t first = static_cast<uint32_t>(v0);
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t h = hash_token(ctx, first + static_cast<uint32_t>(i));
    const float xv = x[i];
    o[i] = h < t ? xv + bias : xv;
  }
}

const char* row_address(const void* base, int64_t r, int64_t row_stride, int64_t elem) {
  return static_cast<const char*>(base) + r * row_stride * elem;
}

}  // namespace

void watermark_hash_bias(const void* logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride,
                         const int64_t* prev_tokens, int64_t n_prev, const int64_t* threshold,
                         const float* bias, uint64_t hashing_key, float* out) {
  const DType dt = dtype_from_code(dtype);
  require_nonnegative(rows, "rows");
  require_nonnegative(vocab, "vocab");
  require_nonnegative(row_stride, "row_stride");
  require_nonnegative(n_prev, "n_prev");
  require(vocab <= (int64_t{1} << 32), "vocab must be <= 2**32 (token ids are hashed as 32-bit words)");
  if (rows == 0 || vocab == 0) return;
  require(logits != nullptr && threshold != nullptr && bias != nullptr && out != nullptr &&
              (n_prev == 0 || prev_tokens != nullptr),
          "watermark_hash_bias: null pointer");
  const int64_t elem = dtype_size(dt);
  for_row_slices(rows, vocab, kMinSlice, [&](int64_t r, int64_t begin, int64_t end) {
    const uint32_t ctx = hash_context(hashing_key, prev_tokens + r * n_prev, n_prev);
    const char* src = row_address(logits, r, row_stride, elem);
    float* o = out + r * vocab;
    if (dt == DType::kFloat32) {
      hash_bias(reinterpret_cast<const float*>(src) + begin, o + begin, begin, end - begin, ctx, threshold[r], bias[r]);
      return;
    }
    // Convert into an L1 block, not in place: x == o would defeat the loop's vectorisation
    // (the compiler's overlap check fails for identical pointers).
    alignas(64) float block[kConvertBlock];
    for (int64_t b = begin; b < end; b += kConvertBlock) {
      const int64_t n = std::min(kConvertBlock, end - b);
      row_to_float(src + b * elem, dt, n, block);
      hash_bias(block, o + b, b, n, ctx, threshold[r], bias[r]);
    }
  });
}

void watermark_scatter_bias(const void* logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride,
                            const void* green_ids, bool ids_int64, int64_t n_ids, int64_t ids_row_stride,
                            const float* bias, float* out) {
  const DType dt = dtype_from_code(dtype);
  require_nonnegative(rows, "rows");
  require_nonnegative(vocab, "vocab");
  require_nonnegative(row_stride, "row_stride");
  require_nonnegative(n_ids, "n_ids");
  require_nonnegative(ids_row_stride, "ids_row_stride");
  if (rows == 0 || vocab == 0) {
    require(rows == 0 || n_ids == 0, "green_ids must be -1 (padding) when vocab is 0");
    return;
  }
  require(logits != nullptr && bias != nullptr && out != nullptr && (n_ids == 0 || green_ids != nullptr),
          "watermark_scatter_bias: null pointer");
  const int64_t elem = dtype_size(dt);
  // Every slice of a row scans all of the row's ids, and one of s slices keeps only 1/s of them
  // behind an unpredictable branch (~10 cycles an id against ~0.3 a copied element): slicing pays
  // only when the row is >= 32 times longer than its id list.
  const int64_t min_slice = std::max<int64_t>(kMinSlice, 32 * n_ids);
  for_row_slices(rows, vocab, min_slice, [&](int64_t r, int64_t begin, int64_t end) {
    float* o = out + r * vocab;
    row_to_float(row_address(logits, r, row_stride, elem) + begin * elem, dt, end - begin, o + begin);
    const float b = bias[r];
    const int64_t* ids64 = static_cast<const int64_t*>(green_ids) + r * ids_row_stride;
    const int32_t* ids32 = static_cast<const int32_t*>(green_ids) + r * ids_row_stride;
    for (int64_t j = 0; j < n_ids; ++j) {
      const int64_t id = ids_int64 ? ids64[j] : ids32[j];
      if (id >= begin && id < end) {
        o[id] += b;  // one float32 addition per occurrence, in list order (scatter-add)
      } else if (id < -1 || id >= vocab) {
        throw std::invalid_argument("green_ids must hold token ids in [0, " + std::to_string(vocab) +
                                    ") or -1 (padding), got " + std::to_string(id) + " in row " +
                                    std::to_string(r));
      }
    }
  });
}

}  // namespace pydecode::cpu
