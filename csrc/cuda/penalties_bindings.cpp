// pybind11 functions of the penalties family's CUDA kernels (pydecode/ops/penalties.py registers
// them as the cuda backend). Addresses arrive as integers; 0 = absent.
#include <pybind11/pybind11.h>

#include "cuda/penalties.h"
#include "cuda/status.h"

namespace py = pybind11;

namespace pydecode::cuda {

void bind_penalties(py::module_& m) {
  m.def("penalties_workspace_size", &penalties_workspace_size, py::arg("batch"), py::arg("out_len"),
        "int32 elements of the workspace apply_penalties needs (0: none).");

  m.def(
      "apply_penalties",
      [](uintptr_t logits, int dtype, int64_t batch, int64_t vocab, int64_t logits_stride, uintptr_t out,
         uintptr_t rep_ids, bool rep_ids64, int64_t rep_rows, int64_t rep_len, int64_t rep_stride,
         uintptr_t rep_penalty, uintptr_t ignore, uintptr_t out_ids, bool out_ids64, int64_t out_len,
         int64_t out_stride, uintptr_t out_mask, int64_t mask_stride, uintptr_t presence, uintptr_t frequency,
         uintptr_t workspace, int64_t workspace_size, uintptr_t stream) {
        const LogitsView in{device_ptr<const void>(logits), dtype_from_code(dtype), logits_stride};
        const IdView rep{device_ptr<const void>(rep_ids), rep_ids64, rep_rows, rep_len, rep_stride};
        const IdView gen{device_ptr<const void>(out_ids), out_ids64, batch, out_len, out_stride};
        throw_on_error(apply_penalties(in, batch, vocab, device_ptr<float>(out), rep,
                                       device_ptr<const double>(rep_penalty), device_ptr<const int64_t>(ignore), gen,
                                       device_ptr<const uint8_t>(out_mask), mask_stride,
                                       device_ptr<const float>(presence), device_ptr<const float>(frequency),
                                       device_ptr<int32_t>(workspace), workspace_size, as_stream(stream)),
                       "apply_penalties launch");
      },
      py::arg("logits"), py::arg("dtype"), py::arg("batch"), py::arg("vocab"), py::arg("logits_stride"),
      py::arg("out"), py::arg("rep_ids"), py::arg("rep_ids64"), py::arg("rep_rows"), py::arg("rep_len"),
      py::arg("rep_stride"), py::arg("rep_penalty"), py::arg("ignore"), py::arg("out_ids"), py::arg("out_ids64"),
      py::arg("out_len"), py::arg("out_stride"), py::arg("out_mask"), py::arg("mask_stride"), py::arg("presence"),
      py::arg("frequency"), py::arg("workspace"), py::arg("workspace_size"), py::arg("stream"),
      "out = float32(logits), then the repetition penalty (rep_penalty != 0: float64 rows) over rep_ids (row b "
      "uses ids row b / (batch / rep_rows), from position ignore[b]), then presence/frequency (presence != 0: "
      "float32 rows) over out_ids where out_mask. Device addresses; 0 = absent.");

  m.def(
      "apply_penalties_state",
      [](uintptr_t logits, int dtype, int64_t batch, int64_t vocab, int64_t logits_stride, uintptr_t out,
         uintptr_t tokens, uintptr_t in_rep, uintptr_t counts, uintptr_t lengths, int64_t capacity, int64_t stride,
         uintptr_t rep_penalty, uintptr_t presence, uintptr_t frequency, uintptr_t stream) {
        const LogitsView in{device_ptr<const void>(logits), dtype_from_code(dtype), logits_stride};
        throw_on_error(apply_penalties_state(in, batch, vocab, device_ptr<float>(out), device_ptr<const int64_t>(tokens),
                                             device_ptr<const uint8_t>(in_rep), device_ptr<const int32_t>(counts),
                                             device_ptr<const int64_t>(lengths), capacity, stride,
                                             device_ptr<const double>(rep_penalty), device_ptr<const float>(presence),
                                             device_ptr<const float>(frequency), as_stream(stream)),
                       "apply_penalties_state launch");
      },
      py::arg("logits"), py::arg("dtype"), py::arg("batch"), py::arg("vocab"), py::arg("logits_stride"),
      py::arg("out"), py::arg("tokens"), py::arg("in_rep"), py::arg("counts"), py::arg("lengths"),
      py::arg("capacity"), py::arg("stride"), py::arg("rep_penalty"), py::arg("presence"), py::arg("frequency"),
      py::arg("stream"),
      "out = float32(logits) with the penalties of a PenaltyState's distinct tokens (rep_penalty float64, "
      "presence and frequency float32). Device addresses; 0 = off.");
}

}  // namespace pydecode::cuda
