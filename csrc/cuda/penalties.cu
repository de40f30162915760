// CUDA kernels of the penalties family (pydecode/ops/penalties.py). Two launches per call:
//   1. row_map: the float32 copy of every row (16-byte loads), the only O(vocab) work;
//   2. a sparse kernel that rewrites just the history's tokens: O(history) per row.
// Float arithmetic is that of the torch references on CUDA, operation for operation, with the
// _rn intrinsics so that nvcc cannot contract a multiply and an add into an FMA:
//   repetition  s < 0 ? s * float(p) : s * float(1.0 / p)   with p a double: transformers divides
//               by a Python float, and torch on CUDA multiplies by that scalar's reciprocal taken in
//               double and rounded to float32 (measured on an H200: for p = 3.1 this differs from
//               1.0f / float(p) by one ulp). The encoder penalty passes q = 1 / penalty here.
//   presence    s - (presence + frequency * float(count))
#include <cuda_runtime.h>

#include <string>

#include "cuda/penalties.h"
#include "cuda/rowwise.cuh"
#include "pydecode/check.h"
#include "pydecode/hash.h"

namespace pydecode::cuda {
namespace {

// The count table of one row (open addressing, int32 keys, -1 = empty) lives in shared memory
// up to 4096 slots (32 KiB: under the 48 KiB a block gets without opting in), i.e. up to 2048
// generated ids; longer histories use a global workspace, one table per block.
constexpr int kMaxSharedSlots = 4096;
constexpr int kMinSlots = 64;
// Blocks of the sparse kernel: each loops over rows. 264 = 2 per SM of an H100.
constexpr int64_t kMaxSparseBlocks = 264;
// A global count table per block; fewer blocks when the tables would exceed 64 MiB in all
// (generations of more than ~30K tokens at large batch).
constexpr int64_t kMaxWorkspaceBytes = int64_t{64} << 20;

// The two float32 factors of the repetition penalty p (a double per row): s < 0 takes float(p),
// torch's `s * p`; s >= 0 takes float(1.0 / p), torch's CUDA `s / p`. Computed once per row.
struct RepFactors {
  float negative;
  float positive;
};

__device__ __forceinline__ RepFactors repetition_factors(double p) {
  return RepFactors{__double2float_rn(p), __double2float_rn(__drcp_rn(p))};
}

__device__ __forceinline__ float repetition(float s, RepFactors f) {
  return s < 0.0f ? __fmul_rn(s, f.negative) : __fmul_rn(s, f.positive);
}

__device__ __forceinline__ float presence_frequency(float s, float presence, float frequency, int32_t count) {
  return __fsub_rn(s, __fadd_rn(presence, __fmul_rn(frequency, static_cast<float>(count))));
}

int table_slots_log2(int64_t out_len) {
  int log2 = 0;
  while ((int64_t{1} << log2) < kMinSlots || (int64_t{1} << log2) < 2 * out_len) ++log2;
  return log2;
}

// Blocks of the sparse kernel for `batch` rows, with count tables of `slots` in global memory
// when `global_tables`.
int64_t sparse_blocks(int64_t batch, int64_t slots, bool global_tables) {
  int64_t blocks = batch < kMaxSparseBlocks ? batch : kMaxSparseBlocks;
  if (global_tables) {
    const int64_t fit = kMaxWorkspaceBytes / (2 * slots * static_cast<int64_t>(sizeof(int32_t)));
    blocks = blocks < fit ? blocks : (fit > 0 ? fit : 1);
  }
  return blocks;
}

// Adds one occurrence of token t (>= 0) to the table; the table holds at least twice as many
// slots as there are ids to insert, so a free slot is always found.
__device__ __forceinline__ void count_token(int32_t* keys, int32_t* counts, uint32_t mask, int32_t t) {
  uint32_t slot = hash_mix32(static_cast<uint32_t>(t)) & mask;
  while (true) {
    const int32_t prev = atomicCAS(keys + slot, -1, t);
    if (prev == -1 || prev == t) {
      atomicAdd(counts + slot, 1);  // integer: exact, order-independent
      return;
    }
    slot = (slot + 1) & mask;
  }
}

// One block per row (looping when there are more rows than blocks). The repetition part may
// write a token several times (once per listing), always the same value computed from the
// input, so listings need no de-duplication. Presence/frequency counts distinct tokens in the
// table, then updates each once, after the repetition writes (ordered by __syncthreads).
__global__ void __launch_bounds__(kRowThreads)
    penalties_sparse_kernel(LogitsView x, float* __restrict__ out, int64_t batch, int64_t vocab, IdView rep_ids,
                            int64_t group, const double* __restrict__ rep_penalty, const int64_t* __restrict__ ignore,
                            IdView out_ids, const uint8_t* __restrict__ mask, int64_t mask_stride,
                            const float* __restrict__ presence, const float* __restrict__ frequency,
                            int32_t* __restrict__ global_table, int slots_log2) {
  extern __shared__ int32_t shared_table[];
  const int64_t slots = int64_t{1} << slots_log2;
  int32_t* keys = global_table != nullptr ? global_table + static_cast<int64_t>(blockIdx.x) * 2 * slots : shared_table;
  int32_t* counts = keys + slots;
  // Plain reads of the table after the atomics: volatile, so they are not served from a line
  // this SM cached before the atomics (which complete in L2 for a global table).
  const volatile int32_t* vkeys = keys;
  const volatile int32_t* vcounts = counts;
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    float* orow = out + b * vocab;
    if (rep_penalty != nullptr) {
      const int64_t r = b / group;
      const RepFactors p = repetition_factors(rep_penalty[b]);
      int64_t start = ignore != nullptr ? ignore[b] : 0;
      start = start < 0 ? 0 : (start > rep_ids.len ? rep_ids.len : start);
      for (int64_t j = start + threadIdx.x; j < rep_ids.len; j += blockDim.x) {
        const int64_t id = rep_ids.at(r, j);
        if (id >= 0 && id < vocab) orow[id] = repetition(load_logit(x, b, id), p);
      }
    }
    if (presence == nullptr) continue;
    for (int64_t i = threadIdx.x; i < slots; i += blockDim.x) {
      keys[i] = -1;
      counts[i] = 0;
    }
    __syncthreads();  // the table is clear, and the repetition writes are visible
    const uint8_t* mrow = mask != nullptr ? mask + b * mask_stride : nullptr;
    for (int64_t j = threadIdx.x; j < out_ids.len; j += blockDim.x) {
      if (mrow != nullptr && mrow[j] == 0) continue;
      const int64_t id = out_ids.at(b, j);
      if (id >= 0 && id < vocab) count_token(keys, counts, static_cast<uint32_t>(slots - 1), static_cast<int32_t>(id));
    }
    __syncthreads();
    const float pres = presence[b], freq = frequency[b];
    for (int64_t i = threadIdx.x; i < slots; i += blockDim.x) {
      const int32_t t = vkeys[i];
      if (t >= 0) orow[t] = presence_frequency(orow[t], pres, freq, vcounts[i]);
    }
    __syncthreads();  // the table is read before the next row clears it
  }
}

// One thread per (row, state entry): the entries of a row are distinct tokens, so no two threads
// write the same element.
__global__ void __launch_bounds__(kRowThreads)
    penalties_state_kernel(LogitsView x, float* __restrict__ out, int64_t batch, int64_t vocab,
                           const int64_t* __restrict__ tokens, const uint8_t* __restrict__ in_rep,
                           const int32_t* __restrict__ counts, const int64_t* __restrict__ lengths, int64_t capacity,
                           int64_t stride, const double* __restrict__ rep_penalty, const float* __restrict__ presence,
                           const float* __restrict__ frequency) {
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    int64_t n = lengths[b];
    n = n < 0 ? 0 : (n > capacity ? capacity : n);  // a corrupted length cannot reach past the row
    const RepFactors p = repetition_factors(rep_penalty != nullptr ? rep_penalty[b] : 1.0);
    const float pres = presence != nullptr ? presence[b] : 0.0f;
    const float freq = frequency != nullptr ? frequency[b] : 0.0f;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int64_t e = b * stride + i;
      const int64_t t = tokens[e];
      if (t < 0 || t >= vocab) continue;
      float s = load_logit(x, b, t);
      if (rep_penalty != nullptr && in_rep[e] != 0) s = repetition(s, p);
      if (presence != nullptr && counts[e] > 0) s = presence_frequency(s, pres, freq, counts[e]);
      out[b * vocab + t] = s;
    }
  }
}

void check_common(const LogitsView& logits, int64_t batch, int64_t vocab, const float* out) {
  require_nonnegative(batch, "batch");
  require_nonnegative(vocab, "vocab");
  require_nonnegative(logits.row_stride, "logits row stride");
  require(vocab <= int64_t{0x7FFFFFFF}, "vocab must be < 2**31 (token ids are int32 in the kernels)");
  require_pointer(reinterpret_cast<uintptr_t>(logits.data), batch * vocab, "logits");
  require_pointer(reinterpret_cast<uintptr_t>(out), batch * vocab, "out");
}

void check_ids(const IdView& ids, const char* name) {
  require_nonnegative(ids.rows, name);
  require_nonnegative(ids.len, name);
  require_nonnegative(ids.row_stride, name);
  require_pointer(reinterpret_cast<uintptr_t>(ids.data), ids.rows * ids.len, name);
}

}  // namespace

int64_t penalties_workspace_size(int64_t batch, int64_t out_len) {
  require_nonnegative(batch, "batch");
  require_nonnegative(out_len, "out_len");
  require(out_len < (int64_t{1} << 30), "output_ids rows must be shorter than 2**30");
  const int64_t slots = int64_t{1} << table_slots_log2(out_len);
  if (slots <= kMaxSharedSlots || batch == 0) return 0;
  return sparse_blocks(batch, slots, true) * 2 * slots;
}

cudaError_t apply_penalties(const LogitsView& logits, int64_t batch, int64_t vocab, float* out,
                            const IdView& rep_ids, const double* rep_penalty, const int64_t* ignore,
                            const IdView& out_ids, const uint8_t* out_mask, int64_t mask_stride,
                            const float* presence, const float* frequency, int32_t* workspace,
                            int64_t workspace_size, cudaStream_t stream) {
  check_common(logits, batch, vocab, out);
  int64_t group = 1;
  if (rep_penalty != nullptr) {
    check_ids(rep_ids, "input_ids");
    require(batch == 0 || (rep_ids.rows >= 1 && batch % rep_ids.rows == 0),
            "input_ids must have a number of rows that divides the batch (" + std::to_string(batch) + "), got " +
                std::to_string(rep_ids.rows));
    if (batch > 0) group = batch / rep_ids.rows;
  }
  require((presence == nullptr) == (frequency == nullptr), "presence and frequency penalties must be given together");
  int slots_log2 = 0;
  if (presence != nullptr) {
    check_ids(out_ids, "output_ids");
    require(out_ids.rows == batch,
            "output_ids must have " + std::to_string(batch) + " rows, got " + std::to_string(out_ids.rows));
    if (out_mask != nullptr) require_nonnegative(mask_stride, "output_mask row stride");
    const int64_t need = penalties_workspace_size(batch, out_ids.len);
    require(workspace_size >= need && (need == 0 || workspace != nullptr),
            "workspace must hold " + std::to_string(need) + " int32, got " + std::to_string(workspace_size));
    slots_log2 = table_slots_log2(out_ids.len);
  }
  if (batch == 0 || vocab == 0) return cudaSuccess;

  cudaError_t status = launch_row_map(logits, out, batch, vocab, CopyOp{}, stream);
  if (status != cudaSuccess) return status;
  if (rep_penalty == nullptr && presence == nullptr) return cudaSuccess;
  const int64_t slots = int64_t{1} << slots_log2;
  const bool shared = presence != nullptr && slots <= kMaxSharedSlots;
  const size_t shared_bytes = shared ? static_cast<size_t>(2 * slots) * sizeof(int32_t) : 0;
  const int64_t blocks = sparse_blocks(batch, slots, presence != nullptr && !shared);
  penalties_sparse_kernel<<<static_cast<unsigned>(blocks), kRowThreads, shared_bytes, stream>>>(
      logits, out, batch, vocab, rep_ids, group, rep_penalty, ignore, out_ids, out_mask, mask_stride, presence,
      frequency, (presence != nullptr && !shared) ? workspace : nullptr, slots_log2);
  return cudaGetLastError();
}

cudaError_t apply_penalties_state(const LogitsView& logits, int64_t batch, int64_t vocab, float* out,
                                  const int64_t* tokens, const uint8_t* in_rep, const int32_t* counts,
                                  const int64_t* lengths, int64_t capacity, int64_t stride,
                                  const double* rep_penalty, const float* presence, const float* frequency,
                                  cudaStream_t stream) {
  check_common(logits, batch, vocab, out);
  require_nonnegative(capacity, "capacity");
  require_nonnegative(stride, "state row stride");
  require(batch <= 1 || stride >= capacity, "state row stride must be >= capacity");
  require_pointer(reinterpret_cast<uintptr_t>(lengths), batch, "lengths");
  require_pointer(reinterpret_cast<uintptr_t>(tokens), batch * capacity, "tokens");
  require_pointer(reinterpret_cast<uintptr_t>(in_rep), batch * capacity, "in_rep");
  require_pointer(reinterpret_cast<uintptr_t>(counts), batch * capacity, "counts");
  require((presence == nullptr) == (frequency == nullptr), "presence and frequency penalties must be given together");
  if (batch == 0 || vocab == 0) return cudaSuccess;
  cudaError_t status = launch_row_map(logits, out, batch, vocab, CopyOp{}, stream);
  if (status != cudaSuccess) return status;
  if ((rep_penalty == nullptr && presence == nullptr) || capacity == 0) return cudaSuccess;
  penalties_state_kernel<<<item_grid(capacity, batch), kRowThreads, 0, stream>>>(
      logits, out, batch, vocab, tokens, in_rep, counts, lengths, capacity, stride, rep_penalty, presence,
      frequency);
  return cudaGetLastError();
}

}  // namespace pydecode::cuda
