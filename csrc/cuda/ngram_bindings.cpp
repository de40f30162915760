// pybind11 functions of the ngram family's CUDA kernels (pydecode/ops/ngram.py registers them as
// the cuda backend). Addresses arrive as integers.
#include <pybind11/pybind11.h>

#include "cuda/ngram.h"
#include "cuda/status.h"

namespace py = pybind11;

namespace pydecode::cuda {

void bind_ngram(py::module_& m) {
  m.def(
      "no_repeat_ngram_mask",
      [](uintptr_t logits, int dtype, int64_t batch, int64_t vocab, int64_t logits_stride, uintptr_t out,
         uintptr_t ids, bool ids64, int64_t ids_len, int64_t ids_stride, int64_t ngram_size, uintptr_t stream) {
        const LogitsView in{device_ptr<const void>(logits), dtype_from_code(dtype), logits_stride};
        const IdView id_view{device_ptr<const void>(ids), ids64, batch, ids_len, ids_stride};
        throw_on_error(no_repeat_ngram_mask(in, batch, vocab, device_ptr<float>(out), id_view, ngram_size,
                                            as_stream(stream)),
                       "no_repeat_ngram_mask launch");
      },
      py::arg("logits"), py::arg("dtype"), py::arg("batch"), py::arg("vocab"), py::arg("logits_stride"),
      py::arg("out"), py::arg("ids"), py::arg("ids64"), py::arg("ids_len"), py::arg("ids_stride"),
      py::arg("ngram_size"), py::arg("stream"));

  m.def(
      "encoder_no_repeat_ngram_mask",
      [](uintptr_t logits, int dtype, int64_t batch, int64_t vocab, int64_t logits_stride, uintptr_t out,
         uintptr_t ids, bool ids64, int64_t ids_len, int64_t ids_stride, uintptr_t enc, bool enc64, int64_t enc_rows,
         int64_t enc_len, int64_t enc_stride, int64_t ngram_size, uintptr_t stream) {
        const LogitsView in{device_ptr<const void>(logits), dtype_from_code(dtype), logits_stride};
        const IdView id_view{device_ptr<const void>(ids), ids64, batch, ids_len, ids_stride};
        const IdView enc_view{device_ptr<const void>(enc), enc64, enc_rows, enc_len, enc_stride};
        throw_on_error(encoder_no_repeat_ngram_mask(in, batch, vocab, device_ptr<float>(out), id_view, enc_view,
                                                    ngram_size, as_stream(stream)),
                       "encoder_no_repeat_ngram_mask launch");
      },
      py::arg("logits"), py::arg("dtype"), py::arg("batch"), py::arg("vocab"), py::arg("logits_stride"),
      py::arg("out"), py::arg("ids"), py::arg("ids64"), py::arg("ids_len"), py::arg("ids_stride"), py::arg("enc"),
      py::arg("enc64"), py::arg("enc_rows"), py::arg("enc_len"), py::arg("enc_stride"), py::arg("ngram_size"),
      py::arg("stream"));

  m.def(
      "sequence_bias",
      [](uintptr_t logits, int dtype, int64_t batch, int64_t vocab, int64_t logits_stride, uintptr_t out,
         uintptr_t ids, bool ids64, int64_t ids_len, int64_t ids_stride, uintptr_t order, uintptr_t sorted_tokens,
         int64_t n_single, uintptr_t single_biases, int64_t n_long, uintptr_t prefixes, int64_t width,
         uintptr_t biases, uintptr_t stream) {
        const LogitsView in{device_ptr<const void>(logits), dtype_from_code(dtype), logits_stride};
        const IdView id_view{device_ptr<const void>(ids), ids64, batch, ids_len, ids_stride};
        throw_on_error(sequence_bias(in, batch, vocab, device_ptr<float>(out), id_view, device_ptr<const int64_t>(order),
                                     device_ptr<const int64_t>(sorted_tokens), n_single,
                                     device_ptr<const float>(single_biases), n_long,
                                     device_ptr<const int64_t>(prefixes), width, device_ptr<const float>(biases),
                                     as_stream(stream)),
                       "sequence_bias launch");
      },
      py::arg("logits"), py::arg("dtype"), py::arg("batch"), py::arg("vocab"), py::arg("logits_stride"),
      py::arg("out"), py::arg("ids"), py::arg("ids64"), py::arg("ids_len"), py::arg("ids_stride"), py::arg("order"),
      py::arg("sorted_tokens"), py::arg("n_single"), py::arg("single_biases"), py::arg("n_long"),
      py::arg("prefixes"), py::arg("width"), py::arg("biases"), py::arg("stream"));
}

}  // namespace pydecode::cuda
