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
  // The most __syncthreads one block passed in the launches since the last call of this function.
  m.def("take_block_syncs", []() { return emu::max_block_syncs.exchange(0); });
}
