// Shared by the sampling and beam binding files (csrc/cuda/<family>_bindings.cpp): their bind
// functions, which bindings.cpp calls, and the launch-status check that turns a CUDA error into a
// Python RuntimeError.
#pragma once
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace pydecode::cuda {

inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
  }
}

template <class T>
T* as_device_ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

void bind_sampling(pybind11::module_& m);
void bind_beam(pybind11::module_& m);

}  // namespace pydecode::cuda
