// The pybind11 module of the CUDA kernels (pydecode._C_cuda): one m.def per op. Built only when
// nvcc is found (PYDECODE_BUILD_CUDA). Torch-free: device pointers and the stream arrive as
// integers (tensor.data_ptr(), torch.cuda.current_stream().cuda_stream).
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/launch.h"
#include "cuda/pybind_util.h"
#include "pydecode/check.h"

namespace py = pybind11;

// Op families defined in csrc/cuda/<family>_bindings.cpp.
namespace pydecode::cuda {
void bind_penalties(py::module_& m);
void bind_ngram(py::module_& m);
void bind_watermark(py::module_& m);
}  // namespace pydecode::cuda

static void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
  }
}

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "pydecode CUDA kernels (torch-free; called through pydecode.ops)";
  m.attr("ABI_VERSION") = 1;
  m.attr("CUDA_RUNTIME_VERSION") = CUDART_VERSION;

  // (count, error): a machine without a driver reports its error instead of crashing.
  m.def("device_count", []() -> py::tuple {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
      cudaGetLastError();  // clear the sticky error so later calls see a clean state
      return py::make_tuple(0, std::string(cudaGetErrorString(status)));
    }
    return py::make_tuple(count, std::string());
  });

  m.def(
      "philox_uniform",
      [](uintptr_t seeds, uintptr_t offsets, uintptr_t out, int64_t rows, int64_t vocab,
         uint32_t stream_id, uintptr_t stream) {
        pydecode::require_nonnegative(rows, "rows");
        pydecode::require_nonnegative(vocab, "vocab");
        pydecode::require_pointer(seeds, rows, "seeds");
        pydecode::require_pointer(offsets, rows, "offsets");
        pydecode::require_pointer(out, rows * vocab, "out");
        check_cuda(pydecode::cuda::philox_uniform(
                       reinterpret_cast<const int64_t*>(seeds), reinterpret_cast<const int64_t*>(offsets),
                       reinterpret_cast<float*>(out), rows, vocab, stream_id,
                       reinterpret_cast<cudaStream_t>(stream)),
                   "philox_uniform launch");
      },
      py::arg("seeds"), py::arg("offsets"), py::arg("out"), py::arg("rows"), py::arg("vocab"),
      py::arg("stream_id"), py::arg("stream"));

  pydecode::cuda::bind_penalties(m);
  pydecode::cuda::bind_ngram(m);
  pydecode::cuda::bind_watermark(m);
  pydecode::cuda::bind_sampling(m);
  pydecode::cuda::bind_beam(m);
}
