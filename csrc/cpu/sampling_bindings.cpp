// pybind11 functions of the sampling family (pydecode/ops/sampling.py registers them as the cpu backend).
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cpu/bindings.h"
#include "cpu/sampling.h"
#include "pydecode/check.h"

namespace py = pybind11;

namespace pydecode::cpu {
namespace {

LogitRows rows_in(uintptr_t data, int dtype, int64_t rows, int64_t vocab, int64_t row_stride) {
  require_nonnegative(rows, "rows");
  require_nonnegative(vocab, "vocab");
  require_pointer(data, rows * vocab, "logits");
  return LogitRows{reinterpret_cast<const void*>(data), dtype, rows, vocab, row_stride};
}

}  // namespace

void bind_sampling(pybind11::module_& m) {
  m.def(
      "apply_temperature",
      [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride, uintptr_t temperature,
         uintptr_t out) {
        const LogitRows in = rows_in(logits, dtype, rows, vocab, row_stride);
        require_pointer(temperature, rows, "temperature");
        require_pointer(out, rows * vocab, "out");
        py::gil_scoped_release release;
        apply_temperature(in, as_ptr<const double>(temperature), as_ptr<float>(out));
      },
      py::arg("logits"), py::arg("dtype"), py::arg("rows"), py::arg("vocab"), py::arg("row_stride"),
      py::arg("temperature"), py::arg("out"),
      "out (rows, vocab) float32 = float32(logits) / float32(temperature[b]); temperature float64 (rows,).");

  m.def(
      "greedy",
      [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride, uintptr_t out,
         bool nan_is_max) {
        const LogitRows in = rows_in(logits, dtype, rows, vocab, row_stride);
        require_pointer(out, rows, "out");
        py::gil_scoped_release release;
        greedy(in, nan_is_max, as_ptr<int64_t>(out));
      },
      py::arg("logits"), py::arg("dtype"), py::arg("rows"), py::arg("vocab"), py::arg("row_stride"), py::arg("out"),
      py::arg("nan_is_max") = false,
      "out int64 (rows,) = lowest index of each row's maximum; 0 when nothing is above -inf. NaN is skipped, or "
      "with nan_is_max the first NaN is the maximum (torch.argmax).");

  m.def(
      "filter_chain",
      [](uintptr_t logits, int dtype, int64_t rows, int64_t vocab, int64_t row_stride, int transform,
         uintptr_t temperature, uintptr_t top_k, uintptr_t top_p, uintptr_t min_p, int64_t min_tokens_to_keep,
         int softmax_lanes, uintptr_t seed, uintptr_t offset, uintptr_t tokens, uintptr_t logprobs,
         uintptr_t filtered, float filter_value, uintptr_t renorm, uintptr_t state_tokens, uintptr_t state_in_rep,
         uintptr_t state_counts, uintptr_t state_lengths, int64_t state_capacity, uintptr_t repetition_penalty,
         uintptr_t presence_penalty, uintptr_t frequency_penalty) {
        const LogitRows in = rows_in(logits, dtype, rows, vocab, row_stride);
        require(transform >= 0 && transform <= 2, "transform must be 0 (none), 1 (divide) or 2 (log)");
        require(transform != 1 || rows == 0 || temperature != 0, "transform 1 needs temperature");
        require(tokens != 0 || logprobs == 0, "logprobs need tokens");
        if (tokens != 0) {
          require_pointer(seed, rows, "seed");
          require_pointer(offset, rows, "offset");
        }
        ChainSpec spec;
        spec.transform = static_cast<Transform>(transform);
        spec.temperature = as_ptr<const double>(temperature);
        spec.top_k = as_ptr<const int64_t>(top_k);
        spec.top_p = as_ptr<const double>(top_p);
        spec.min_p = as_ptr<const double>(min_p);
        spec.min_tokens_to_keep = min_tokens_to_keep;
        spec.softmax_lanes = softmax_lanes;
        spec.seed = as_ptr<const int64_t>(seed);
        spec.offset = as_ptr<const int64_t>(offset);
        spec.tokens = as_ptr<int64_t>(tokens);
        spec.logprobs = as_ptr<float>(logprobs);
        spec.filtered = as_ptr<float>(filtered);
        spec.filter_value = filter_value;
        spec.renorm = as_ptr<float>(renorm);
        if (state_tokens != 0) {
          require_nonnegative(state_capacity, "state capacity");
          require_pointer(state_lengths, rows, "state lengths");
          spec.state_tokens = as_ptr<const int64_t>(state_tokens);
          spec.state_in_rep = as_ptr<const uint8_t>(state_in_rep);
          spec.state_counts = as_ptr<const int32_t>(state_counts);
          spec.state_lengths = as_ptr<const int64_t>(state_lengths);
          spec.state_capacity = state_capacity;
          spec.state_stride = state_capacity;
          spec.repetition_penalty = as_ptr<const float>(repetition_penalty);
          spec.presence_penalty = as_ptr<const float>(presence_penalty);
          spec.frequency_penalty = as_ptr<const float>(frequency_penalty);
        }
        py::gil_scoped_release release;
        run_chain(in, spec);
      },
      py::arg("logits"), py::arg("dtype"), py::arg("rows"), py::arg("vocab"), py::arg("row_stride"),
      py::arg("transform"), py::arg("temperature"), py::arg("top_k"), py::arg("top_p"), py::arg("min_p"),
      py::arg("min_tokens_to_keep"), py::arg("softmax_lanes"), py::arg("seed"), py::arg("offset"),
      py::arg("tokens"), py::arg("logprobs"), py::arg("filtered"), py::arg("filter_value"), py::arg("renorm"),
      py::arg("state_tokens") = 0, py::arg("state_in_rep") = 0, py::arg("state_counts") = 0,
      py::arg("state_lengths") = 0, py::arg("state_capacity") = 0, py::arg("repetition_penalty") = 0,
      py::arg("presence_penalty") = 0, py::arg("frequency_penalty") = 0,
      "Penalties from a PenaltyState (contiguous (rows, state_capacity) tokens int64 / in_rep uint8 / counts "
      "int32, lengths int64 (rows,), penalties float32 (rows,) or 0) patched into the rows as they are read, then "
      "temperature (transform 1) or log (transform 2) -> top-k -> top-p -> min-p per row (a 0 address turns a "
      "stage off; per-row arrays: temperature/top_p/min_p float64, top_k/seed/offset int64), then any of: "
      "tokens int64 (rows,) by Philox Gumbel-max, logprobs float32 (rows,), filtered float32 (rows, vocab) "
      "with filter_value at removed entries, renorm float32 (rows, vocab) = kept inputs, 0 elsewhere.");
}

}  // namespace pydecode::cpu
