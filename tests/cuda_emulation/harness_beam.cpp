// The beam kernels of csrc/cuda/beam.cu compiled for the CPU model in emu.h (see harness_sampling.cpp).
#include <pybind11/pybind11.h>

#include "../../csrc/cuda/beam.cu"

namespace py = pybind11;
using namespace pydecode::cuda;

void bind_beam_model(py::module_& m) {
  m.attr("BEAM_SLICE_WORDS") = kBeamSliceWords;
  m.def("beam_topk", [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride,
                        uintptr_t beam_scores, int num_beams, int k, bool lsm, uintptr_t candidates,
                        uintptr_t row_stats, uintptr_t scores, uintptr_t tokens, uintptr_t beams, unsigned threads,
                        bool key_bins, int splits, uintptr_t split_scratch, bool top_k_scan) {
    BeamArgs a;
    a.in.data = reinterpret_cast<const void*>(logits);
    a.in.dtype = dtype;
    a.in.rows = rows;
    a.in.vocab = vocab;
    a.in.row_stride = row_stride;
    a.beam_scores = reinterpret_cast<const float*>(beam_scores);
    a.num_beams = num_beams;
    a.row_k = static_cast<int>(k < vocab ? k : vocab);
    a.k = k;
    a.log_softmax = lsm;
    a.key_bins = key_bins;
    a.top_k_scan = top_k_scan;
    a.candidates = reinterpret_cast<unsigned long long*>(candidates);
    a.row_stats = reinterpret_cast<float*>(row_stats);
    a.scores = reinterpret_cast<float*>(scores);
    a.tokens = reinterpret_cast<int64_t*>(tokens);
    a.beams = reinterpret_cast<int64_t*>(beams);
    const SliceArgs sa{splits, reinterpret_cast<SliceRecord*>(split_scratch)};
    py::gil_scoped_release release;
    const unsigned batch = static_cast<unsigned>(rows / num_beams);
    auto run = [&](auto d) {
      constexpr int D = decltype(d)::value;
      if (splits > 1) {  // the launcher's split path (beam.cu)
        const unsigned grid_y = static_cast<unsigned>(splits);
        emu::launch(static_cast<unsigned>(rows), grid_y, threads, [&]() {
          if constexpr (D == kDTypeBF16) {
            if (slice_scan(a, D)) return beam_slice_kernel<D, true>(a, sa);
          }
          beam_slice_kernel<D>(a, sa);
        });
        if (lsm) emu::launch(static_cast<unsigned>(rows), grid_y, threads, [&]() { beam_slice_sum_kernel<D>(a, sa); });
        emu::launch(batch, 1, threads, [&]() { beam_split_merge_kernel<D>(a, sa); });
        return;
      }
      emu::launch(static_cast<unsigned>(rows), 1, threads, [&]() { beam_rows_kernel<D>(a); });
      emu::launch(batch, 1, threads, [&]() { beam_merge_kernel<D>(a); });
    };
    if (dtype == kDTypeF32) run(std::integral_constant<int, kDTypeF32>());
    else if (dtype == kDTypeF16) run(std::integral_constant<int, kDTypeF16>());
    else run(std::integral_constant<int, kDTypeBF16>());
  });
}
