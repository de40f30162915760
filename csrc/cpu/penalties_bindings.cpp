// pybind11 functions of the penalties family (pydecode/ops/penalties.py registers them as the cpu backend).
#include "cpu/bindings.h"

namespace pydecode::cpu {

void bind_penalties(pybind11::module_& m) { (void)m; }

}  // namespace pydecode::cpu
