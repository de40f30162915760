// pybind11 functions of the sampling family's CUDA kernels (pydecode/ops/sampling.py registers
// them as the cuda backend). Device pointers and the stream arrive as integers.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cuda/pybind_util.h"
#include "cuda/launch.h"
#include "pydecode/check.h"

namespace py = pybind11;

namespace pydecode::cuda {
namespace {

RowsIn rows_in(uintptr_t data, int dtype, int64_t rows, int64_t vocab, int64_t row_stride) {
  require_nonnegative(rows, "rows");
  require_nonnegative(vocab, "vocab");
  require_pointer(data, rows * vocab, "logits");
  RowsIn in;
  in.data = reinterpret_cast<const void*>(data);
  in.dtype = dtype;
  in.rows = rows;
  in.vocab = vocab;
  in.row_stride = row_stride;
  return in;
}

}  // namespace

void bind_sampling(py::module_& m) {
  m.def(
      "apply_temperature",
      [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride, uintptr_t temperature,
         uintptr_t out, uintptr_t stream) {
        const RowsIn in = rows_in(logits, dtype, rows, vocab, row_stride);
        check_cuda(apply_temperature(in, as_device_ptr<const double>(temperature), as_device_ptr<float>(out),
                                     reinterpret_cast<cudaStream_t>(stream)),
                   "apply_temperature launch");
      },
      py::arg("logits"), py::arg("dtype"), py::arg("rows"), py::arg("vocab"), py::arg("row_stride"),
      py::arg("temperature"), py::arg("out"), py::arg("stream"),
      "out (rows, vocab) float32 = float32(logits) * (1 / float32(temperature[b])); temperature float64 (rows,).");

  m.attr("GREEDY_MAX_SPLITS") = kGreedyMaxSplits;
  m.def(
      "greedy",
      [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride, uintptr_t out,
         uintptr_t scratch, int64_t scratch_len, uintptr_t stream) {
        const RowsIn in = rows_in(logits, dtype, rows, vocab, row_stride);
        require_nonnegative(scratch_len, "scratch_len");
        require_pointer(scratch, scratch_len, "scratch");
        check_cuda(greedy(in, as_device_ptr<int64_t>(out), as_device_ptr<uint64_t>(scratch), scratch_len,
                          reinterpret_cast<cudaStream_t>(stream)),
                   "greedy launch");
      },
      py::arg("logits"), py::arg("dtype"), py::arg("rows"), py::arg("vocab"), py::arg("row_stride"), py::arg("out"),
      py::arg("scratch"), py::arg("scratch_len"), py::arg("stream"),
      "out int64 (rows,) = lowest index of each row's maximum (NaN ignored); scratch: uint64 device memory for "
      "the split-vocabulary path of small batches (rows * GREEDY_MAX_SPLITS is always enough; 0 disables it).");

  m.def(
      "filter_chain",
      [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride, int transform,
         uintptr_t temperature, uintptr_t top_k, uintptr_t top_p, uintptr_t min_p, int64_t min_tokens_to_keep,
         uintptr_t seed, uintptr_t offset, uintptr_t tokens, uintptr_t logprobs, uintptr_t filtered,
         float filter_value, uintptr_t renorm, int splits, uintptr_t scratch, int64_t scratch_len, uintptr_t stream,
         bool compact, bool key_bins, bool top_k_scan, bool warp_finish) {
        const RowsIn in = rows_in(logits, dtype, rows, vocab, row_stride);
        ChainSpec spec;
        spec.transform = transform;
        spec.temperature = as_device_ptr<const double>(temperature);
        spec.top_k = as_device_ptr<const int64_t>(top_k);
        spec.top_p = as_device_ptr<const double>(top_p);
        spec.min_p = as_device_ptr<const double>(min_p);
        spec.min_tokens_to_keep = min_tokens_to_keep;
        spec.seed = as_device_ptr<const int64_t>(seed);
        spec.offset = as_device_ptr<const int64_t>(offset);
        spec.tokens = as_device_ptr<int64_t>(tokens);
        spec.logprobs = as_device_ptr<float>(logprobs);
        spec.filtered = as_device_ptr<float>(filtered);
        spec.filter_value = filter_value;
        spec.renorm = as_device_ptr<float>(renorm);
        spec.compact = compact ? 1 : 0;
        spec.key_bins = key_bins ? 1 : 0;
        spec.top_k_scan = top_k_scan ? 1 : 0;
        spec.warp_finish = warp_finish ? 1 : 0;
        require(spec.filtered == nullptr || spec.renorm == nullptr, "filtered and renorm are exclusive");
        require_nonnegative(scratch_len, "scratch_len");
        require_pointer(scratch, scratch_len, "scratch");
        check_cuda(filter_chain(in, spec, splits, as_device_ptr<uint64_t>(scratch), scratch_len,
                                reinterpret_cast<cudaStream_t>(stream)),
                   "filter_chain launch");
      },
      py::arg("logits"), py::arg("dtype"), py::arg("rows"), py::arg("vocab"), py::arg("row_stride"),
      py::arg("transform"), py::arg("temperature"), py::arg("top_k"), py::arg("top_p"), py::arg("min_p"),
      py::arg("min_tokens_to_keep"), py::arg("seed"), py::arg("offset"), py::arg("tokens"), py::arg("logprobs"),
      py::arg("filtered"), py::arg("filter_value"), py::arg("renorm"), py::arg("splits"), py::arg("scratch"),
      py::arg("scratch_len"), py::arg("stream"), py::arg("compact") = true, py::arg("key_bins") = true,
      py::arg("top_k_scan") = false, py::arg("warp_finish") = false,
      "Temperature (transform 1) or log (transform 2) -> top-k -> top-p -> min-p per row on the GPU (a 0 address "
      "turns a stage off), then any of tokens / logprobs / filtered / renorm, like the CPU module's filter_chain. "
      "splits > 1: that many blocks per row (chain_splits), with scratch = zeroed uint64 device memory of "
      "rows * CHAIN_SCRATCH_WORDS. compact=False turns off the candidate-list path, key_bins=False its "
      "key-bin lists (same outputs; for comparisons); top_k_scan=True lists top-k rows with k <= 64 in the "
      "statistics pass (one read; same outputs); warp_finish=True finishes short candidate lists in one warp "
      "(same outputs).");

  m.attr("CHAIN_SCRATCH_WORDS") = kChainScratchWords;
  m.def(
      "chain_splits",
      [](int64_t rows, int64_t vocab, int64_t forced) {
        require_nonnegative(rows, "rows");
        require_nonnegative(vocab, "vocab");
        require_nonnegative(forced, "forced");
        return chain_splits(rows, vocab, forced);
      },
      py::arg("rows"), py::arg("vocab"), py::arg("forced") = 0,
      "Blocks per row filter_chain should use on the current device: `forced` when > 0, else 1 unless the batch "
      "leaves most SMs idle and rows are long (then up to 32 slices of >= 8192 entries).");
  m.def("chain_capacity", &chain_capacity,
        "Blocks of the split filter_chain kernel the current device runs at once (0: no cooperative launch).");
}

}  // namespace pydecode::cuda
