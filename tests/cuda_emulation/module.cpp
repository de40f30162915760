// pydecode_cuda_model: the CUDA kernels run on the CPU model of emu.h (tests only).
#include <pybind11/pybind11.h>

#include "stub/cuda_runtime.h"

void bind_sampling_model(pybind11::module_& m);
void bind_beam_model(pybind11::module_& m);

PYBIND11_MODULE(pydecode_cuda_model, m) {
  bind_sampling_model(m);
  bind_beam_model(m);
  // Bytes loaded through __ldg since the last call of this function (the logits' reads).
  m.def("take_loaded_bytes", []() { return emu::ldg_bytes.exchange(0); });
  // Atomic counting (emu.h): on / off, and (atomics, the most one address took in one block) over
  // the blocks since the last call.
  m.def("count_atomics", [](bool on) { emu::count_atomics = on; });
  m.def("take_atomics", []() {
    return pybind11::make_tuple(emu::total_atomics.exchange(0), emu::max_word_atomics.exchange(0));
  });
  // The most __syncthreads one block passed in the launches since the last call of this function.
  m.def("take_block_syncs", []() { return emu::max_block_syncs.exchange(0); });
  // The longest one-read list a block built since the last call of this function.
  m.def("take_scan_list", []() { return emu::max_scan_list.exchange(0); });
}
