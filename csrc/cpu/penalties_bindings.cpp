// pybind11 functions of the penalties family (pydecode/ops/penalties.py registers them as the cpu backend).
#include <pybind11/pybind11.h>

#include "cpu/bindings.h"
#include "cpu/penalties.h"
#include "pydecode/check.h"

namespace py = pybind11;

namespace pydecode::cpu {

void bind_penalties(pybind11::module_& m) {
  m.def(
      "apply_penalties",
      [](uintptr_t logits, int dtype, int64_t batch, int64_t vocab, int64_t logits_stride, uintptr_t out,
         uintptr_t rep_ids, bool rep_ids64, int64_t rep_rows, int64_t rep_len, int64_t rep_stride,
         uintptr_t rep_penalty, uintptr_t ignore, uintptr_t out_ids, bool out_ids64, int64_t out_len,
         int64_t out_stride, uintptr_t out_mask, int64_t mask_stride, uintptr_t presence, uintptr_t frequency,
         bool check_vocab) {
        const LogitsIn in = logits_in(logits, dtype, batch, vocab, logits_stride);
        const IdRows rep = id_rows(rep_ids, rep_ids64, rep_rows, rep_len, rep_stride);
        const IdRows gen = id_rows(out_ids, out_ids64, batch, out_len, out_stride);
        py::gil_scoped_release release;
        apply_penalties(in, as_ptr<float>(out), rep, as_ptr<const float>(rep_penalty), as_ptr<const int64_t>(ignore),
                        gen, as_ptr<const uint8_t>(out_mask), mask_stride, as_ptr<const float>(presence),
                        as_ptr<const float>(frequency), check_vocab);
      },
      py::arg("logits"), py::arg("dtype"), py::arg("batch"), py::arg("vocab"), py::arg("logits_stride"),
      py::arg("out"), py::arg("rep_ids"), py::arg("rep_ids64"), py::arg("rep_rows"), py::arg("rep_len"),
      py::arg("rep_stride"), py::arg("rep_penalty"), py::arg("ignore"), py::arg("out_ids"), py::arg("out_ids64"),
      py::arg("out_len"), py::arg("out_stride"), py::arg("out_mask"), py::arg("mask_stride"), py::arg("presence"),
      py::arg("frequency"), py::arg("check_vocab"),
      "out = float32(logits), then the repetition penalty (rep_penalty != 0) over rep_ids (row b uses ids row "
      "b / (batch / rep_rows), from position ignore[b]), then presence/frequency (presence != 0) over out_ids "
      "where out_mask. Address 0 = absent. check_vocab: ids >= vocab raise ValueError (else they are ignored).");

  m.def(
      "apply_penalties_state",
      [](uintptr_t logits, int dtype, int64_t batch, int64_t vocab, int64_t logits_stride, uintptr_t out,
         uintptr_t tokens, uintptr_t in_rep, uintptr_t counts, uintptr_t lengths, int64_t capacity, int64_t stride,
         uintptr_t rep_penalty, uintptr_t presence, uintptr_t frequency) {
        const LogitsIn in = logits_in(logits, dtype, batch, vocab, logits_stride);
        py::gil_scoped_release release;
        apply_penalties_state(in, as_ptr<float>(out), as_ptr<const int64_t>(tokens), as_ptr<const uint8_t>(in_rep),
                              as_ptr<const int32_t>(counts), as_ptr<const int64_t>(lengths), capacity, stride,
                              as_ptr<const float>(rep_penalty), as_ptr<const float>(presence),
                              as_ptr<const float>(frequency));
      },
      py::arg("logits"), py::arg("dtype"), py::arg("batch"), py::arg("vocab"), py::arg("logits_stride"),
      py::arg("out"), py::arg("tokens"), py::arg("in_rep"), py::arg("counts"), py::arg("lengths"),
      py::arg("capacity"), py::arg("stride"), py::arg("rep_penalty"), py::arg("presence"), py::arg("frequency"),
      "out = float32(logits) with the penalties of a PenaltyState's distinct tokens. Address 0 = penalty off.");

  m.def(
      "penalty_state_update",
      [](uintptr_t tokens, uintptr_t in_rep, uintptr_t counts, uintptr_t lengths, uintptr_t slot, int64_t batch,
         int64_t capacity, int64_t stride, int64_t vocab, uintptr_t new_tokens, uintptr_t active, uintptr_t ignore,
         int64_t position, bool check_vocab) {
        // O(batch): too small to be worth releasing the GIL.
        penalty_state_update(as_ptr<int64_t>(tokens), as_ptr<uint8_t>(in_rep), as_ptr<int32_t>(counts),
                             as_ptr<int64_t>(lengths), as_ptr<int32_t>(slot), batch, capacity, stride, vocab,
                             as_ptr<const int64_t>(new_tokens), as_ptr<const uint8_t>(active),
                             as_ptr<const int64_t>(ignore), position, check_vocab);
      },
      py::arg("tokens"), py::arg("in_rep"), py::arg("counts"), py::arg("lengths"), py::arg("slot"), py::arg("batch"),
      py::arg("capacity"), py::arg("stride"), py::arg("vocab"), py::arg("new_tokens"), py::arg("active"),
      py::arg("ignore"), py::arg("position"), py::arg("check_vocab"),
      "One step of PenaltyState.update in place (active / ignore: address 0 = all rows / none; check_vocab: "
      "a token >= vocab raises ValueError, else it is ignored).");
}

}  // namespace pydecode::cpu
