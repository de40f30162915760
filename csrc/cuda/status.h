// Host side of the penalties / ngram / watermark CUDA bindings: a failed launch becomes a Python
// exception (RuntimeError naming the op and CUDA's message; size errors are std::invalid_argument
// -> ValueError, thrown by the launchers before anything is launched).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace pydecode::cuda {

inline void throw_on_error(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
  }
}

template <typename T>
inline T* device_ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

inline cudaStream_t as_stream(uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }

}  // namespace pydecode::cuda
