// Each op family of the CPU backend defines its pybind11 functions in cpu/<family>_bindings.cpp;
// csrc/bindings.cpp calls them all. Together those files are the cpu backend's op inventory.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>

namespace pydecode::cpu {

void bind_sampling(pybind11::module_& m);
void bind_penalties(pybind11::module_& m);
void bind_ngram(pybind11::module_& m);
void bind_watermark(pybind11::module_& m);
void bind_beam(pybind11::module_& m);

template <typename T>
inline T* as_ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

}  // namespace pydecode::cpu
