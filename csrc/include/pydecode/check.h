// Size checks shared by every kernel entry point. Python validates tensors before it passes raw
// pointers; these re-check what a wrong pointer/size pair would turn into a crash, and throw
// std::invalid_argument, which pybind11 turns into a Python ValueError.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace pydecode {

inline void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

inline void require_nonnegative(int64_t value, const char* name) {
  require(value >= 0, std::string(name) + " must be >= 0, got " + std::to_string(value));
}

inline void require_pointer(uintptr_t ptr, int64_t elements, const char* name) {
  require(elements == 0 || ptr != 0, std::string(name) + " is a null pointer for " +
                                         std::to_string(elements) + " elements");
}

}  // namespace pydecode
