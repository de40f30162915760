"""pytest-benchmark suite of the logits-processing ops (the cases of :mod:`pydecode.benchmarks.ops`):
every pydecode backend that can run here, transformers' processors, and the one-pass floors
(``x.sum()`` read, ``dst.copy_(src)`` copy) on buffers of the logits' bytes."""

from __future__ import annotations

import itertools
from typing import Any, Callable

import pytest
import torch

from pydecode.benchmarks import ops as bops


def _grid(config: pytest.Config) -> list[tuple[str, int, int]]:
    cases = config.getoption("--ops-cases") or bops.DEFAULT_CASES
    unknown = set(cases) - set(bops.CASES)
    if unknown:
        raise pytest.UsageError(f"--ops-cases: unknown {sorted(unknown)}; choose from {bops.DEFAULT_CASES}")
    return [(c, b, v) for c in cases for b in config.getoption("--ops-batch") for v in config.getoption("--ops-vocab")]


def _providers(case: bops.Case, device: torch.device) -> list[str]:
    chosen, _ = bops.pydecode_backends(case, device, None)
    return [f"pydecode/{b}" for b in chosen] + ["transformers/processors"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    device = torch.device(metafunc.config.getoption("--ops-device"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--ops-device cuda: no CUDA device")
    grid = _grid(metafunc.config)
    if "provider" in metafunc.fixturenames:
        params = [(c, b, v, p) for c, b, v in grid for p in _providers(bops.CASES[c], device)]
        metafunc.parametrize("case_name, batch, vocab, provider", params,
                             ids=[f"{c}-{b}x{v}-{p}" for c, b, v, p in params])
    elif "floor" in metafunc.fixturenames:
        shapes = sorted({(bops.rows_for(bops.CASES[c], b), v) for c, b, v in grid})
        params = [(r, v, f) for r, v in shapes for f in (bops.READ, bops.COPY)]
        metafunc.parametrize("rows, vocab, floor", params, ids=[f"{r}x{v}-{f}" for r, v, f in params])


def _cycle(fn: Callable[[Any], Any], inputs: list, device: torch.device) -> Callable[[], Any]:
    """A no-argument call of ``fn`` on the next input set (rotation: caches do not flatter it)."""
    it = itertools.cycle(inputs)

    def call() -> Any:
        out = fn(next(it))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out
    return call


def test_op(benchmark: Any, request: pytest.FixtureRequest, case_name: str, batch: int, vocab: int,
            provider: str) -> None:
    device = torch.device(request.config.getoption("--ops-device"))
    case = bops.CASES[case_name]
    rows = bops.rows_for(case, batch)
    nbytes = rows * vocab * 4
    inputs = bops.make_inputs(case, rows, vocab, torch.float32, device, 3.0, bops.num_sets(nbytes))
    who, backend = provider.split("/")
    if who == "pydecode":
        stage_ops = bops.pydecode_backends(case, device, [backend])[0][backend]
        fn = bops.pydecode_fn(case, backend, stage_ops, vocab)
    else:
        fn = bops.transformers_fn(case, rows, vocab, device)
    benchmark.extra_info = {"bench": "ops", "case": case_name, "provider": who, "backend": backend, "batch": rows,
                            "vocab": vocab, "dtype": "float32", "bytes": nbytes, "floor_kind": case.floor_kind,
                            "params": f"{case.params} std=3.0 (pytest-benchmark)"}
    benchmark(_cycle(fn, inputs, device))


def test_floor(benchmark: Any, request: pytest.FixtureRequest, rows: int, vocab: int, floor: str) -> None:
    device = torch.device(request.config.getoption("--ops-device"))
    n = rows * vocab
    sets = bops.num_sets(n * 4)
    src = [torch.rand(n, device=device) for _ in range(sets)]
    dst = [torch.empty(n, device=device) for _ in range(sets)]
    if floor == bops.READ:
        fn, inputs, backend = (lambda x: x.sum()), src, "read (x.sum)"
    else:
        fn, inputs, backend = (lambda p: p[1].copy_(p[0])), list(zip(src, dst)), "copy (dst.copy_)"
    benchmark.extra_info = {"bench": "ops", "case": "floor", "provider": "floor", "backend": backend, "batch": rows,
                            "vocab": vocab, "dtype": "float32", "bytes": n * 4, "floor_of": floor}
    benchmark(_cycle(fn, inputs, device))
