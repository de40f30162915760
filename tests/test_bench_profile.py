"""bench/profile_ops.py on CPU (host_ops and eager_us; the CUDA columns need a GPU)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from bench import profile_ops


def test_short_kernel_names() -> None:
    names = {
        "void pydecode::cuda::(anonymous namespace)::filter_chain_kernel<2, true>(pydecode::cuda::ChainArgs)":
            "filter_chain_kernel<2, true>",
        "_chain_kernel": "_chain_kernel",
        "Memset (Device)": "Memset",
        "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<long>, std::array<char*, 1ul> >"
        "(int, at::native::FillFunctor<long>, std::array<char*, 1ul>)":
            "vectorized_elementwise_kernel<4, at::native::FillF...>",
    }
    for name, want in names.items():
        assert profile_ops.short_name(name) == want


def test_profile_ops_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    rows = profile_ops.main(["--device", "cpu", "--batch", "1", "4", "--vocab", "300", "--cases",
                             "temp_topk_topp_sample", "beam_topk", "--backends", "cpu", "torch", "--repeats", "2",
                             "--calls", "2", "--csv", str(out)])
    floors = [r for r in rows if r["case"] == profile_ops.FLOOR_CASE]
    rows = [r for r in rows if r["case"] != profile_ops.FLOOR_CASE]
    assert {(r["case"], r["backend"]) for r in rows} == {
        (c, b) for c in ("temp_topk_topp_sample", "beam_topk") for b in ("cpu", "torch")}
    assert all(r["eager_us"] > 0 and r["host_us"] > 0 and r["host_ops"] >= 1 for r in rows)
    # one read floor per shape (beam_topk's batch counts rows, like the sampling case's), and every
    # row's time over its shape's floor: on CPU the eager times
    assert sorted((f["batch"], f["vocab"], f["bytes"]) for f in floors) == [(1, 300, 600), (4, 300, 2400)]  # bfloat16
    floor_of = {f["batch"]: f for f in floors}
    for r in rows:
        f = floor_of[r["batch"]]
        assert r["x_read_floor"] == pytest.approx(r["eager_us"] / f["eager_us"])
        assert r["gbps"] == pytest.approx(f["bytes"] / r["eager_us"] / 1e3)
    assert all(f["x_read_floor"] == 1.0 for f in floors)
    # the cpu kernel's call allocates its outputs and runs no other aten op; the torch reference
    # is a chain of them
    fused = [r["host_ops"] for r in rows if r["backend"] == "cpu" and r["case"] == "temp_topk_topp_sample"]
    reference = [r["host_ops"] for r in rows if r["backend"] == "torch" and r["case"] == "temp_topk_topp_sample"]
    assert max(fused) < min(reference)
    written = list(csv.DictReader(out.open()))
    assert len(written) == len(rows) + len(floors)
    assert {"host_us", "graph_us", "device_us", "x_read_floor", "gbps", "launches", "git_sha"} <= set(written[0])
