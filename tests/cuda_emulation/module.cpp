// pydecode_cuda_model: the CUDA kernels run on the CPU model of emu.h (tests only).
#include <pybind11/pybind11.h>

void bind_sampling_model(pybind11::module_& m);
void bind_beam_model(pybind11::module_& m);

PYBIND11_MODULE(pydecode_cuda_model, m) {
  bind_sampling_model(m);
  bind_beam_model(m);
}
