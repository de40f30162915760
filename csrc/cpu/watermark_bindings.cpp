// pybind11 functions of the watermark family (pydecode/ops/watermark.py registers them as the cpu backend).
#include "cpu/bindings.h"

namespace pydecode::cpu {

void bind_watermark(pybind11::module_& m) { (void)m; }

}  // namespace pydecode::cpu
