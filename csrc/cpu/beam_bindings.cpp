// pybind11 functions of the beam family (pydecode/ops/beam.py registers them as the cpu backend).
#include "cpu/bindings.h"

namespace pydecode::cpu {

void bind_beam(pybind11::module_& m) { (void)m; }

}  // namespace pydecode::cpu
