// The sampling kernels of csrc/cuda/sampling.cu compiled for the CPU model in emu.h, exposed to
// Python with the real module's argument conventions plus the block size to emulate.
#include <pybind11/pybind11.h>

#include <cstring>
#include <vector>

#include "../../csrc/cuda/sampling.cu"

namespace py = pybind11;
using namespace pydecode::cuda;

namespace {

// The row barriers row 0 passed in the last split filter_chain call (0 after one block per row).
unsigned long long last_row_barriers = 0;

template <class T>
T* ptr(uintptr_t a) {
  return reinterpret_cast<T*>(a);
}

RowsIn rows_in(uintptr_t data, int dtype, int64_t rows, int64_t vocab, int64_t row_stride) {
  RowsIn in;
  in.data = reinterpret_cast<const void*>(data);
  in.dtype = dtype;
  in.rows = rows;
  in.vocab = vocab;
  in.row_stride = row_stride;
  return in;
}

template <class F>
void by_dtype(int dtype, const F& f) {
  if (dtype == kDTypeF32) f(std::integral_constant<int, kDTypeF32>());
  else if (dtype == kDTypeF16) f(std::integral_constant<int, kDTypeF16>());
  else f(std::integral_constant<int, kDTypeBF16>());
}

}  // namespace

void bind_sampling_model(py::module_& m) {
  // The one-read top-k list's input-side bound of a threshold key, and the float32 factor of a
  // temperature, for the tests of the bound itself.
  m.def("input_floor", [](uint32_t thr, float rcp) { return input_floor(thr, rcp); });
  m.def("temperature_factor", [](double t) { return temperature_factor(t); });
  m.def("filter_chain", [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride,
                           int transform, uintptr_t temperature, uintptr_t top_k, uintptr_t top_p, uintptr_t min_p,
                           int64_t mtk, uintptr_t seed, uintptr_t offset, uintptr_t tokens, uintptr_t logprobs,
                           uintptr_t filtered, float filter_value, uintptr_t renorm, unsigned threads, int splits, bool compact,
                           bool key_bins, bool top_k_scan, bool warp_finish) {
    ChainArgs a;
    a.in = rows_in(logits, dtype, rows, vocab, row_stride);
    a.spec.transform = transform;
    a.spec.temperature = ptr<const double>(temperature);
    a.spec.top_k = ptr<const int64_t>(top_k);
    a.spec.top_p = ptr<const double>(top_p);
    a.spec.min_p = ptr<const double>(min_p);
    a.spec.min_tokens_to_keep = mtk;
    a.spec.seed = ptr<const int64_t>(seed);
    a.spec.offset = ptr<const int64_t>(offset);
    a.spec.tokens = ptr<int64_t>(tokens);
    a.spec.logprobs = ptr<float>(logprobs);
    a.spec.filtered = ptr<float>(filtered);
    a.spec.filter_value = filter_value;
    a.spec.renorm = ptr<float>(renorm);
    a.spec.compact = compact ? 1 : 0;
    a.spec.key_bins = key_bins ? 1 : 0;
    a.spec.top_k_scan = top_k_scan ? 1 : 0;
    a.spec.warp_finish = warp_finish ? 1 : 0;
    // splits > 1: the split-vocabulary kernel, a row's blocks running together on zeroed scratch.
    std::vector<SplitScratch> scratch(splits > 1 ? static_cast<size_t>(rows) : 0);
    if (splits > 1) {
      std::memset(static_cast<void*>(scratch.data()), 0, scratch.size() * sizeof(SplitScratch));
      a.splits = splits;
      a.scratch = scratch.data();
    }
    py::gil_scoped_release release;
    last_row_barriers = 0;
    by_dtype(dtype, [&](auto d) {
      constexpr int D = decltype(d)::value;
      if (splits > 1) {
        emu::launch_rows_together(static_cast<unsigned>(rows), static_cast<unsigned>(splits), threads,
                                  [&]() {
                                    if (top_k_scan && scan_kernel_built(D)) filter_chain_kernel<D, true, true>(a);
                                    else filter_chain_kernel<D, true>(a);
                                  });
        // every block of a row passes each row barrier once: the counter ends at barriers x splits
        last_row_barriers = rows > 0 ? scratch[0].counter / static_cast<unsigned long long>(splits) : 0;
      } else {
        emu::launch(static_cast<unsigned>(rows), 1, threads, [&]() {
          if (top_k_scan && scan_kernel_built(D)) filter_chain_kernel<D, false, true>(a);
          else filter_chain_kernel<D, false>(a);
        });
      }
    });
  }, py::arg("logits"), py::arg("dtype"), py::arg("rows"), py::arg("vocab"), py::arg("row_stride"),
     py::arg("transform"), py::arg("temperature"), py::arg("top_k"), py::arg("top_p"), py::arg("min_p"),
     py::arg("mtk"), py::arg("seed"), py::arg("offset"), py::arg("tokens"), py::arg("logprobs"),
     py::arg("filtered"), py::arg("filter_value"), py::arg("renorm"), py::arg("threads"), py::arg("splits") = 1, py::arg("compact") = true,
     py::arg("key_bins") = true, py::arg("top_k_scan") = false, py::arg("warp_finish") = true);
  m.def("last_row_barriers", []() { return last_row_barriers; });
  m.def("temperature", [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride,
                          uintptr_t temperature, uintptr_t out, unsigned threads) {
    const RowsIn in = rows_in(logits, dtype, rows, vocab, row_stride);
    py::gil_scoped_release release;
    const unsigned blocks = static_cast<unsigned>((vocab + threads - 1) / threads);
    by_dtype(dtype, [&](auto d) {
      emu::launch(blocks, static_cast<unsigned>(rows), threads,
                  [&]() { temperature_kernel<decltype(d)::value>(in, ptr<const double>(temperature), ptr<float>(out)); });
    });
  });
  m.def("greedy", [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride, uintptr_t out,
                     uintptr_t scratch, int splits, unsigned threads) {
    const RowsIn in = rows_in(logits, dtype, rows, vocab, row_stride);
    py::gil_scoped_release release;
    auto* partial = ptr<unsigned long long>(scratch);
    by_dtype(dtype, [&](auto d) {
      emu::launch(static_cast<unsigned>(rows), static_cast<unsigned>(splits), threads,
                  [&]() { greedy_kernel<decltype(d)::value>(in, splits, ptr<int64_t>(out), partial); });
    });
    if (splits > 1) {
      const unsigned blocks = static_cast<unsigned>((rows + 1) / 2);
      emu::launch(blocks, 1, 64, [&]() { greedy_merge_kernel(partial, splits, rows, ptr<int64_t>(out)); });
    }
  });
}
