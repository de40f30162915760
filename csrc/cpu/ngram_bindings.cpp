// pybind11 functions of the ngram family (pydecode/ops/ngram.py registers them as the cpu backend).
#include <pybind11/pybind11.h>

#include "cpu/bindings.h"
#include "cpu/ngram.h"
#include "pydecode/check.h"

namespace py = pybind11;

namespace pydecode::cpu {

void bind_ngram(pybind11::module_& m) {
  m.def(
      "no_repeat_ngram_mask",
      [](uintptr_t logits, int dtype, int64_t batch, int64_t vocab, int64_t logits_stride, uintptr_t out,
         uintptr_t ids, bool ids64, int64_t seq, int64_t ids_stride, int64_t ngram_size) {
        const LogitsIn in = logits_in(logits, dtype, batch, vocab, logits_stride);
        const IdRows rows = id_rows(ids, ids64, batch, seq, ids_stride);
        py::gil_scoped_release release;
        no_repeat_ngram_mask(in, as_ptr<float>(out), rows, ngram_size);
      },
      py::arg("logits"), py::arg("dtype"), py::arg("batch"), py::arg("vocab"), py::arg("logits_stride"),
      py::arg("out"), py::arg("ids"), py::arg("ids64"), py::arg("seq"), py::arg("ids_stride"),
      py::arg("ngram_size"), "out = float32(logits) with transformers' no-repeat-ngram bans at -inf.");

  m.def(
      "encoder_no_repeat_ngram_mask",
      [](uintptr_t logits, int dtype, int64_t batch, int64_t vocab, int64_t logits_stride, uintptr_t out,
         uintptr_t ids, bool ids64, int64_t seq, int64_t ids_stride, uintptr_t enc, bool enc64, int64_t enc_rows,
         int64_t enc_len, int64_t enc_stride, int64_t ngram_size) {
        const LogitsIn in = logits_in(logits, dtype, batch, vocab, logits_stride);
        const IdRows rows = id_rows(ids, ids64, batch, seq, ids_stride);
        const IdRows enc_rows_ = id_rows(enc, enc64, enc_rows, enc_len, enc_stride);
        py::gil_scoped_release release;
        encoder_no_repeat_ngram_mask(in, as_ptr<float>(out), rows, enc_rows_, ngram_size);
      },
      py::arg("logits"), py::arg("dtype"), py::arg("batch"), py::arg("vocab"), py::arg("logits_stride"),
      py::arg("out"), py::arg("ids"), py::arg("ids64"), py::arg("seq"), py::arg("ids_stride"), py::arg("enc"),
      py::arg("enc64"), py::arg("enc_rows"), py::arg("enc_len"), py::arg("enc_stride"), py::arg("ngram_size"),
      "out = float32(logits) with transformers' encoder no-repeat-ngram bans at -inf.");

  m.def(
      "sequence_bias",
      [](uintptr_t logits, int dtype, int64_t batch, int64_t vocab, int64_t logits_stride, uintptr_t out,
         uintptr_t ids, bool ids64, int64_t seq, int64_t ids_stride, uintptr_t single_ids, uintptr_t single_biases,
         int64_t n_single, uintptr_t prefixes, int64_t width, uintptr_t last_tokens, uintptr_t biases,
         int64_t n_long) {
        const LogitsIn in = logits_in(logits, dtype, batch, vocab, logits_stride);
        const IdRows rows = id_rows(ids, ids64, batch, seq, ids_stride);
        py::gil_scoped_release release;
        sequence_bias(in, as_ptr<float>(out), rows, as_ptr<const int64_t>(single_ids),
                      as_ptr<const float>(single_biases), n_single, as_ptr<const int64_t>(prefixes), width,
                      as_ptr<const int64_t>(last_tokens), as_ptr<const float>(biases), n_long);
      },
      py::arg("logits"), py::arg("dtype"), py::arg("batch"), py::arg("vocab"), py::arg("logits_stride"),
      py::arg("out"), py::arg("ids"), py::arg("ids64"), py::arg("seq"), py::arg("ids_stride"),
      py::arg("single_ids"), py::arg("single_biases"), py::arg("n_single"), py::arg("prefixes"), py::arg("width"),
      py::arg("last_tokens"), py::arg("biases"), py::arg("n_long"),
      "out = float32(logits) + the biases of a SequenceBiasTable (transformers' SequenceBiasLogitsProcessor).");
}

}  // namespace pydecode::cpu
