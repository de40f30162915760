// pybind11 functions of the ngram family (pydecode/ops/ngram.py registers them as the cpu backend).
#include "cpu/bindings.h"

namespace pydecode::cpu {

void bind_ngram(pybind11::module_& m) { (void)m; }

}  // namespace pydecode::cpu
