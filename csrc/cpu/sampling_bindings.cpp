// pybind11 functions of the sampling family (pydecode/ops/sampling.py registers them as the cpu backend).
#include "cpu/bindings.h"

namespace pydecode::cpu {

void bind_sampling(pybind11::module_& m) { (void)m; }

}  // namespace pydecode::cpu
