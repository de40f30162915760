// pybind11 function of the beam family's CUDA kernels (pydecode/ops/beam.py registers it as the
// cuda backend). Device pointers and the stream arrive as integers.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cuda/pybind_util.h"
#include "cuda/launch.h"
#include "pydecode/check.h"

namespace py = pybind11;

namespace pydecode::cuda {

void bind_beam(py::module_& m) {
  m.attr("BEAM_MERGE_LIMIT") = beam_merge_limit();
  m.attr("BEAM_SLICE_WORDS") = kBeamSliceWords;
  m.def("beam_splits", &beam_splits, py::arg("rows"), py::arg("vocab"), py::arg("num_beams"), py::arg("k"),
        py::arg("forced") = 0,
        "Slices per row beam_topk's split path takes for these sizes (forced > 0: that many, bounded by what the "
        "path supports); 1: one block per row.");
  m.def(
      "beam_topk",
      [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride, uintptr_t beam_scores,
         int64_t num_beams, int64_t k, bool apply_log_softmax, uintptr_t candidates, uintptr_t row_stats,
         uintptr_t scores, uintptr_t tokens, uintptr_t beams, uintptr_t stream, bool key_bins, int splits,
         uintptr_t split_scratch, int64_t split_scratch_len, bool top_k_scan) {
        RowsIn in;
        in.data = reinterpret_cast<const void*>(logits);
        in.dtype = dtype;
        in.rows = rows;
        in.vocab = vocab;
        in.row_stride = row_stride;
        check_cuda(beam_topk(in, as_device_ptr<const float>(beam_scores), num_beams, k, apply_log_softmax,
                             as_device_ptr<uint64_t>(candidates), as_device_ptr<float>(row_stats),
                             as_device_ptr<float>(scores), as_device_ptr<int64_t>(tokens),
                             as_device_ptr<int64_t>(beams), reinterpret_cast<cudaStream_t>(stream), key_bins, splits,
                             as_device_ptr<uint64_t>(split_scratch), split_scratch_len, top_k_scan),
                   "beam_topk launch");
      },
      py::arg("logits"), py::arg("dtype"), py::arg("rows"), py::arg("vocab"), py::arg("row_stride"),
      py::arg("beam_scores"), py::arg("num_beams"), py::arg("k"), py::arg("apply_log_softmax"),
      py::arg("candidates"), py::arg("row_stats"), py::arg("scores"), py::arg("tokens"), py::arg("beams"),
      py::arg("stream"), py::arg("key_bins") = true, py::arg("splits") = 1, py::arg("split_scratch") = 0,
      py::arg("split_scratch_len") = 0, py::arg("top_k_scan") = true,
      "Top k per batch item of log_softmax(logits) + beam_scores over num_beams * vocab (ties: lowest flat "
      "index); candidates: rows * min(k, vocab) uint64 scratch, row_stats: rows * 2 float32 scratch. "
      "key_bins=False lists the row candidates by the gap histogram only (same outputs; for comparisons). "
      "splits > 1 (beam_splits): each row in that many slices, split_scratch holding rows * splits * "
      "BEAM_SLICE_WORDS uint64 (same outputs). top_k_scan=False: bfloat16 rows with min(k, vocab) <= 64 take the "
      "statistics pass instead of the one-read list (same outputs; for comparisons).");
}

}  // namespace pydecode::cuda
