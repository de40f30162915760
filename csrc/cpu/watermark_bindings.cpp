// pybind11 functions of the watermark family (pydecode/ops/watermark.py registers them as the cpu backend).
#include "cpu/bindings.h"
#include "cpu/watermark.h"
#include "pydecode/check.h"

namespace py = pybind11;

namespace pydecode::cpu {

void bind_watermark(pybind11::module_& m) {
  m.def(
      "watermark_hash_bias",
      [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride, uintptr_t prev_tokens,
         int64_t n_prev, uintptr_t threshold, uintptr_t bias, uint64_t hashing_key, uintptr_t out) {
        require_nonnegative(rows, "rows");
        require_nonnegative(vocab, "vocab");
        require_nonnegative(n_prev, "n_prev");
        require_pointer(logits, rows * vocab, "logits");
        require_pointer(prev_tokens, rows * n_prev, "prev_tokens");
        require_pointer(threshold, rows, "threshold");
        require_pointer(bias, rows, "bias");
        require_pointer(out, rows * vocab, "out");
        py::gil_scoped_release release;
        watermark_hash_bias(as_ptr<const void>(logits), dtype, rows, vocab, row_stride,
                            as_ptr<const int64_t>(prev_tokens), n_prev, as_ptr<const int64_t>(threshold),
                            as_ptr<const float>(bias), hashing_key, as_ptr<float>(out));
      },
      py::arg("logits"), py::arg("dtype"), py::arg("rows"), py::arg("vocab"), py::arg("row_stride"),
      py::arg("prev_tokens"), py::arg("n_prev"), py::arg("threshold"), py::arg("bias"), py::arg("hashing_key"),
      py::arg("out"),
      "out = float32 logits + bias on pydecode-hash green tokens (int64 prev_tokens (rows, n_prev), "
      "int64 threshold and float32 bias (rows,)).");

  m.def(
      "watermark_scatter_bias",
      [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride, uintptr_t green_ids,
         bool ids_int64, int64_t n_ids, int64_t ids_row_stride, uintptr_t bias, uintptr_t out) {
        require_nonnegative(rows, "rows");
        require_nonnegative(vocab, "vocab");
        require_nonnegative(n_ids, "n_ids");
        require_pointer(logits, rows * vocab, "logits");
        require_pointer(green_ids, rows * n_ids, "green_ids");
        require_pointer(bias, rows, "bias");
        require_pointer(out, rows * vocab, "out");
        py::gil_scoped_release release;
        watermark_scatter_bias(as_ptr<const void>(logits), dtype, rows, vocab, row_stride,
                               as_ptr<const void>(green_ids), ids_int64, n_ids, ids_row_stride,
                               as_ptr<const float>(bias), as_ptr<float>(out));
      },
      py::arg("logits"), py::arg("dtype"), py::arg("rows"), py::arg("vocab"), py::arg("row_stride"),
      py::arg("green_ids"), py::arg("ids_int64"), py::arg("n_ids"), py::arg("ids_row_stride"), py::arg("bias"),
      py::arg("out"),
      "out = float32 logits, + bias[r] at each green_ids[r, j] >= 0 (ids < vocab; -1 = padding).");
}

}  // namespace pydecode::cpu
