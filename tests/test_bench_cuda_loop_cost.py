"""bench/cuda_loop_cost.py: the CUDA kernels' full-row loops found in a SASS listing and counted per
bfloat16 entry; end to end on a probe kernel compiled with nvcc for sm_90 (no GPU)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench import cuda_loop_cost


def test_kernel_names() -> None:
    """Itanium lengths, also after a hash's digits; only the bfloat16 instantiation names a row."""
    beam = "_ZN8pydecode4cuda39_GLOBAL__N__cb51fbaa_7_beam_cu_679162b416beam_rows_kernelILi2EEEvNS1_8BeamArgsE"
    chain = ("_ZN8pydecode4cuda44_GLOBAL__N__edae59dc_11_sampling_cu_0813445519filter_chain_kernelILi2ELb1ELb0EEEv"
             "NS1_9ChainArgsE")
    assert cuda_loop_cost.kernel_name(beam) == "beam_rows_kernel<bf16>"
    assert cuda_loop_cost.kernel_name(chain) == "filter_chain_kernel<bf16, 1, 0>"
    assert cuda_loop_cost.kernel_name(chain.replace("ILi2E", "ILi0E")) is None  # float32
    assert cuda_loop_cost.kernel_name("_ZN8pydecode4cuda18greedy_merge_kernelEPKyixPl") is None


def _listing(body: list[str]) -> str:
    return "\n".join(f"        /*{16 * i:04x}*/                   {text} ;" for i, text in enumerate(body))


def test_row_loops_of_a_listing() -> None:
    """The innermost loop with 4 16-byte loads counts, per entry of its 32 (4 loads x 8 bfloat16),
    with its branches, barriers and atomics; an outer loop around inner ones and a loop with one
    load (the tail's) do not."""
    fast = ["LDG.E.128.CONSTANT R4, desc[UR4][R2.64]"] * 4 + ["BSSY B0, 0x100", "ATOMS.POPC.INC.32 RZ, [R6]",
                                                               "MUFU.EX2 R7, R7", "DFMA R8, R8, R8, R8"]
    body = ["MOV R1, c[0x0][0x28]", *fast, "@P0 BRA 0x10",  # the fast loop: 0x10 .. 0x90
            "LDG.E.128.CONSTANT R4, desc[UR4][R2.64]", "@P1 BRA 0xa0",  # a one-load tail loop
            "LDG.E.128.CONSTANT R4, desc[UR4][R2.64]", "@P2 BRA 0xc0",  # inner loops of an outer one ...
            "LDG.E.128.CONSTANT R4, desc[UR4][R2.64]", "LDG.E.128.CONSTANT R4, desc[UR4][R2.64]",
            "LDG.E.128.CONSTANT R4, desc[UR4][R2.64]", "@P3 BRA 0xc0",  # ... whose range holds 4 loads
            "EXIT"]
    sass = ("\t\tFunction : _ZN8pydecode4cuda12probe_kernelILi2EEEvPKvi\n" + _listing(body)
            + "\n\t\tFunction : _ZN8pydecode4cuda12probe_kernelILi0EEEvPKvi\n" + _listing(body))
    rows = cuda_loop_cost.row_loops(sass)
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["kernel"] == "probe_kernel<bf16>" and row["loop_at"] == "0x10"
    assert row["instructions"] == 9 and row["per_entry"] == round(9 / 32, 1)
    assert row["branches"] == round(1 / 32, 2) and row["convergence_barriers"] == round(1 / 32, 2)
    assert row["shared_atomics"] == row["exps"] == row["double_ops"] == round(1 / 32, 2)
    assert row["hot_per_entry"] == row["per_entry"]  # nothing inside it to skip


def test_shortest_path_skips_what_a_branch_may_jump_over() -> None:
    """A round that skips its rare part: the shortest path takes the forward branch over it; a
    BRA.DIV may fall through, a bare BRA may not, and a branch out of the loop is not a way on."""
    body = ["LDG.E.128.CONSTANT R4, desc[UR4][R2.64]",  # 0x00: head
            "BRA.DIV UR4, 0x400",  # 0x10: conditional (divergence): falls through
            "VOTE.ANY R6, PT, P0",  # 0x20
            "@!P0 BRA 0x80",  # 0x30: the common round skips 0x40..0x70
            "CALL.REL.NOINC 0x500", "MOV R7, R8", "BRA 0x80", "MOV R9, R9",  # 0x40..0x70; 0x70 unreachable
            "IADD3 R2, R2, 0x10, RZ",  # 0x80
            "@P1 BRA 0x0"]  # 0x90: the back edge
    rows = [(16 * i, text) for i, text in enumerate(body)]
    assert cuda_loop_cost.shortest_path(rows, 0x0, 0x90) == 6  # 0x00 0x10 0x20 0x30 0x80 0x90
    rows[3] = (0x30, "BRA 0x40")  # no way round the rare part now: through the bare BRA at 0x60
    assert cuda_loop_cost.shortest_path(rows, 0x0, 0x90) == 9


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
def test_a_probe_compiled_for_sm90(tmp_path: Path) -> None:
    """A statistics pass written with branches and the same pass written with selects (as
    csrc/cuda's now are), through nvcc and cuobjdump: the select version has fewer instructions per
    entry and no branch or convergence barrier inside its loop."""
    source = tmp_path / "probe.cu"
    source.write_text(r'''
#include "cuda/device.cuh"
namespace pydecode::cuda {
template <int D, bool kSelects>
__global__ void probe_kernel(const void* row, int vocab, unsigned* out) {
  unsigned kmax = 0, nan = 0;
  for_row<D, kFastLoads>(row, vocab, [&](int, float x) {
    const unsigned key = sort_key(x);
    if (kSelects) {
      nan |= key == kNanKey ? 1u : 0u;
      kmax = key != kNanKey && key > kmax ? key : kmax;
    } else if (key == kNanKey) {
      nan = 1;
    } else if (x > -INFINITY) {
      kmax = key > kmax ? key : kmax;
    }
  });
  out[threadIdx.x] = kmax + nan;
}
template __global__ void probe_kernel<kDTypeBF16, true>(const void*, int, unsigned*);
template __global__ void probe_kernel<kDTypeBF16, false>(const void*, int, unsigned*);
}  // namespace pydecode::cuda
''')
    rows = cuda_loop_cost.row_loops(cuda_loop_cost.compile_sass(source, cuda_loop_cost.ROOT / "csrc", 90))
    by_kernel = {r["kernel"]: r for r in rows}
    assert set(by_kernel) == {"probe_kernel<bf16, 1>", "probe_kernel<bf16, 0>"}, rows
    selects, branchy = by_kernel["probe_kernel<bf16, 1>"], by_kernel["probe_kernel<bf16, 0>"]
    assert selects["convergence_barriers"] == 0 and selects["branches"] < 0.05  # the back edge only
    assert branchy["convergence_barriers"] > 0
    assert selects["per_entry"] < branchy["per_entry"]
