"""pytest-benchmark suites for the ops and for generate (not part of the normal test run:
``testpaths`` is ``tests/``). Run them explicitly:

    python -m pytest bench/pytest -q                                  # small default grid
    python -m pytest bench/pytest/test_ops_bench.py --ops-batch 32 --ops-vocab 128256 \\
        --bench-csv bench/results/ops_cpu.csv
    python -m pytest bench/pytest/test_generate_bench.py --gen-model demo --bench-csv bench/results/generate_cpu.csv

Each benchmark sets ``benchmark.extra_info`` to its CSV key (case, provider, backend, batch, vocab,
dtype, bytes, ...); at the end of the session the rows are appended to ``--bench-csv`` in the
format of ``bench/results/*.csv`` (:data:`pydecode.benchmarks.common.CSV_FIELDS`), with GB/s and
the ratio to the one-pass floors measured in the same session, and speed-ups over transformers
and the torch reference computed from the rows of the same shape. ``p10_us`` / ``p90_us`` hold
pytest-benchmark's min / max (it keeps no percentiles).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

_RESULTS: list[dict[str, Any]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pydecode benchmarks")
    group.addoption("--bench-csv", type=Path, default=None, help="append the results to this CSV")
    group.addoption("--ops-batch", type=int, nargs="+", default=[8], help="ops: batch sizes (rows)")
    group.addoption("--ops-vocab", type=int, nargs="+", default=[32000], help="ops: vocabulary sizes")
    group.addoption("--ops-cases", nargs="+", default=None, help="ops: cases (default: all)")
    group.addoption("--ops-device", default="cpu", choices=["cpu", "cuda"])
    group.addoption("--gen-model", default="demo", help="generate: 'demo' or a local model dir")
    group.addoption("--gen-batch", type=int, nargs="+", default=[1, 8])
    group.addoption("--gen-new-tokens", type=int, default=32)
    group.addoption("--gen-prompt-len", type=int, default=32)


def pytest_configure(config: pytest.Config) -> None:
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")  # as tests/conftest.py: triton registers, but is not timed


@pytest.fixture(autouse=True)
def _record(benchmark: Any) -> Any:
    """After each benchmark (every test here is one), keep its CSV row. Depending on ``benchmark``
    keeps that fixture alive until this teardown has read its stats."""
    yield
    stats = getattr(benchmark, "stats", None)
    if stats is None or not benchmark.extra_info:  # --benchmark-disable, or skipped
        return
    s = stats.stats
    _RESULTS.append({**benchmark.extra_info, "median_us": s.median * 1e6, "p10_us": s.min * 1e6, "p90_us": s.max * 1e6,
                     "repeats": s.rounds, "threads": torch.get_num_threads()})


def _derived(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """GB/s, floor ratios and speed-ups from the rows of the same (bench, case, batch, vocab, dtype)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["bench"], row.get("case"), row["batch"], row["vocab"], row["dtype"]), []).append(row)
    floors: dict[tuple, dict[str, float]] = {}
    for row in rows:
        if row["provider"] == "floor":
            floors.setdefault((row["batch"], row["vocab"], row["dtype"]), {})[row["floor_of"]] = row["median_us"]
    out = []
    for group in groups.values():
        medians = {(r["provider"], r["backend"]): r["median_us"] for r in group}
        hf = next((t for (p, _), t in medians.items() if p == "transformers"), None)
        ref = medians.get(("pydecode", "torch"))
        for row in group:
            row = dict(row)
            t = row["median_us"]
            if row.get("bytes"):
                row["gbps"] = row["bytes"] / t / 1e3
            fl = floors.get((row["batch"], row["vocab"], row["dtype"]), {})
            if row.get("floor_kind") in fl:
                row["floor_us"] = fl[row["floor_kind"]]
                row["ratio_to_floor"] = t / fl[row["floor_kind"]]
            if "copy" in fl:
                row["ratio_to_copy_floor"] = t / fl["copy"]
            if hf:
                row["speedup_vs_transformers"] = hf / t
            if ref and row["bench"] == "ops":
                row["speedup_vs_torch"] = ref / t
            if row["bench"] == "generate" and row.get("new_tokens"):
                row["tokens_per_s"] = row["batch"] * row["new_tokens"] / (t / 1e6)
            out.append(row)
    return out


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--bench-csv", default=None)
    if not path or not _RESULTS:
        return
    from pydecode.benchmarks.common import append_csv

    rows = _derived(_RESULTS)
    # One copy of the floors per ops case of the same shape: render_tables shows them in each case's table.
    shape = lambda r: (r["batch"], r["vocab"], r["dtype"])  # noqa: E731
    cases = {(r["case"], shape(r)) for r in rows if r["bench"] == "ops" and r["provider"] != "floor"}
    floors = [r for r in rows if r["provider"] == "floor"]
    rows = [r for r in rows if r["provider"] != "floor"]
    rows += [{**f, "case": case} for case, key in sorted(cases) for f in floors if shape(f) == key]
    append_csv(path, rows)
    print(f"\nappended {len(_RESULTS)} rows to {path}")
