// pybind11 functions of the beam family (pydecode/ops/beam.py registers them as the cpu backend).
#include "cpu/beam.h"
#include "cpu/bindings.h"
#include "pydecode/check.h"

namespace py = pybind11;

namespace pydecode::cpu {

void bind_beam(pybind11::module_& m) {
  m.def(
      "beam_topk",
      [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride, uintptr_t beam_scores,
         int64_t num_beams, int64_t k, bool apply_log_softmax, int lse_mode, uintptr_t out_scores,
         uintptr_t out_tokens, uintptr_t out_beams) {
        require_nonnegative(rows, "rows");
        require_nonnegative(vocab, "vocab");
        require(num_beams >= 1, "num_beams must be >= 1");
        const int64_t batch = rows / num_beams;
        require_pointer(logits, rows * vocab, "logits");
        require_pointer(beam_scores, rows, "beam_scores");
        require_pointer(out_scores, batch * k, "out_scores");
        require_pointer(out_tokens, batch * k, "out_tokens");
        require_pointer(out_beams, batch * k, "out_beams");
        py::gil_scoped_release release;
        beam_topk(as_ptr<const void>(logits), dtype, rows, vocab, row_stride, as_ptr<const float>(beam_scores),
                  num_beams, k, apply_log_softmax, lse_mode, as_ptr<float>(out_scores),
                  as_ptr<int64_t>(out_tokens), as_ptr<int64_t>(out_beams));
      },
      py::arg("logits"), py::arg("dtype"), py::arg("rows"), py::arg("vocab"), py::arg("row_stride"),
      py::arg("beam_scores"), py::arg("num_beams"), py::arg("k"), py::arg("apply_log_softmax"),
      py::arg("lse_mode"), py::arg("out_scores"), py::arg("out_tokens"), py::arg("out_beams"),
      "Top k of log_softmax(logits) + beam_scores over each item's num_beams rows (beam.h).");
}

}  // namespace pydecode::cpu
