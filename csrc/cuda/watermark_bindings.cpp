// pybind11 functions of the watermark family's CUDA kernels (pydecode/ops/watermark.py registers
// them as the cuda backend). Addresses arrive as integers.
#include <pybind11/pybind11.h>

#include "cuda/status.h"
#include "cuda/watermark.h"

namespace py = pybind11;

namespace pydecode::cuda {

void bind_watermark(py::module_& m) {
  m.def(
      "watermark_hash_bias",
      [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t logits_stride, uintptr_t prev_tokens,
         int64_t n_prev, uintptr_t threshold, uintptr_t bias, uint64_t hashing_key, uintptr_t out, uintptr_t stream) {
        const LogitsView in{device_ptr<const void>(logits), dtype_from_code(dtype), logits_stride};
        throw_on_error(watermark_hash_bias(in, rows, vocab, device_ptr<const int64_t>(prev_tokens), n_prev,
                                           device_ptr<const int64_t>(threshold), device_ptr<const float>(bias),
                                           hashing_key, device_ptr<float>(out), as_stream(stream)),
                       "watermark_hash_bias launch");
      },
      py::arg("logits"), py::arg("dtype"), py::arg("rows"), py::arg("vocab"), py::arg("logits_stride"),
      py::arg("prev_tokens"), py::arg("n_prev"), py::arg("threshold"), py::arg("bias"), py::arg("hashing_key"),
      py::arg("out"), py::arg("stream"));

  m.def(
      "watermark_scatter_bias",
      [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t logits_stride, uintptr_t green_ids,
         bool ids64, int64_t n_ids, int64_t ids_stride, uintptr_t bias, uintptr_t out, uintptr_t stream) {
        const LogitsView in{device_ptr<const void>(logits), dtype_from_code(dtype), logits_stride};
        const IdView ids{device_ptr<const void>(green_ids), ids64, rows, n_ids, ids_stride};
        throw_on_error(watermark_scatter_bias(in, rows, vocab, ids, device_ptr<const float>(bias),
                                              device_ptr<float>(out), as_stream(stream)),
                       "watermark_scatter_bias launch");
      },
      py::arg("logits"), py::arg("dtype"), py::arg("rows"), py::arg("vocab"), py::arg("logits_stride"),
      py::arg("green_ids"), py::arg("ids64"), py::arg("n_ids"), py::arg("ids_stride"), py::arg("bias"),
      py::arg("out"), py::arg("stream"));
}

}  // namespace pydecode::cuda
