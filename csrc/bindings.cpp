// The one pybind11 module of the CPU kernels (pydecode._C). Philox and the thread pool are bound
// here; each op family binds its kernels in cpu/<family>_bindings.cpp (see cpu/bindings.h). Arguments are raw addresses (tensor.data_ptr()) and sizes:
// the module is torch-free (see DESIGN.md, "The compiled extension").
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cpu/bindings.h"
#include "cpu/parallel.h"
#include "cpu/philox.h"
#include "pydecode/check.h"

namespace py = pybind11;
using pydecode::require_pointer;

using pydecode::cpu::as_ptr;

PYBIND11_MODULE(_C, m) {
  m.doc() = "pydecode CPU kernels (torch-free; called through pydecode.ops)";
  m.attr("ABI_VERSION") = 1;

  m.def("num_threads", &pydecode::cpu::num_threads,
        "Threads the CPU kernels use (PYDECODE_NUM_THREADS, else the hardware count).");

  m.def(
      "philox4x32_10",
      [](uintptr_t counters, uintptr_t keys, uintptr_t out, int64_t n) {
        pydecode::require_nonnegative(n, "n");
        require_pointer(counters, n, "counters");
        require_pointer(keys, n, "keys");
        require_pointer(out, n, "out");
        py::gil_scoped_release release;
        pydecode::cpu::philox4x32_10(as_ptr<const uint32_t>(counters), as_ptr<const uint32_t>(keys),
                                     as_ptr<uint32_t>(out), n);
      },
      py::arg("counters"), py::arg("keys"), py::arg("out"), py::arg("n"),
      "out[i] = Philox4x32-10(counters[i], keys[i]); uint32 arrays of shape (n,4), (n,2), (n,4).");

  m.def(
      "philox_uniform",
      [](uintptr_t seeds, uintptr_t offsets, uintptr_t out, int64_t rows, int64_t vocab,
         uint32_t stream) {
        pydecode::require_nonnegative(rows, "rows");
        pydecode::require_nonnegative(vocab, "vocab");
        require_pointer(seeds, rows, "seeds");
        require_pointer(offsets, rows, "offsets");
        require_pointer(out, rows * vocab, "out");
        py::gil_scoped_release release;
        pydecode::cpu::philox_uniform(as_ptr<const int64_t>(seeds), as_ptr<const int64_t>(offsets),
                                      as_ptr<float>(out), rows, vocab, stream);
      },
      py::arg("seeds"), py::arg("offsets"), py::arg("out"), py::arg("rows"), py::arg("vocab"),
      py::arg("stream"),
      "out[b, v] = uniform in (0,1) of Philox(seed=seeds[b], counter=(v, offsets[b], stream)).");

  pydecode::cpu::bind_sampling(m);
  pydecode::cpu::bind_penalties(m);
  pydecode::cpu::bind_ngram(m);
  pydecode::cpu::bind_watermark(m);
  pydecode::cpu::bind_beam(m);
}
