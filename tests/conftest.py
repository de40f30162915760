"""Shared fixtures: deterministic seeds, the device list, and the `gpu` marker's skip."""

from __future__ import annotations

import os

import pytest
import torch

# Without a GPU, Triton kernels run on CPU tensors through the interpreter in the normal test
# run (set before triton is imported anywhere). With a GPU they are compiled and tested for real.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# The interpreter setting the session started with. A module that changes it on import (a bench
# module did, through a test that imported it) makes every later test run the interpreter's code
# paths on the GPU: whole-row blocks that ptxas takes minutes over, no split rows, division
# instead of the reciprocal. Every test checks it at setup (_interpreter_setting_unchanged).
_INTERPRET_AT_START = os.environ.get("TRITON_INTERPRET")


# PYDECODE_TEST_REPORT=FILE: every failed test (with its traceback) and every test slower than 5 s
# is appended to FILE as soon as it finishes, so a run killed by a time limit (the GPU check's)
# still says what failed; pytest's own summary only comes at the end. Written by the main process
# only (pytest-xdist forwards the workers' reports to it).
_REPORT_FILE = os.environ.get("PYDECODE_TEST_REPORT")
_IS_XDIST_WORKER = False


def pytest_configure(config: pytest.Config) -> None:
    global _IS_XDIST_WORKER
    _IS_XDIST_WORKER = hasattr(config, "workerinput")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not _REPORT_FILE or _IS_XDIST_WORKER:
        return
    if report.failed or (report.when == "call" and report.duration > 5.0):
        with open(_REPORT_FILE, "a") as handle:
            handle.write(f"{report.outcome.upper()} {report.nodeid} [{report.when}] {report.duration:.1f} s\n")
            if report.failed:
                handle.write(report.longreprtext[-6000:] + "\n\n")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _interpreter_setting_unchanged() -> None:
    now = os.environ.get("TRITON_INTERPRET")
    if now != _INTERPRET_AT_START:
        pytest.fail(f"TRITON_INTERPRET is {now!r} at this test's start, but the session started with "
                    f"{_INTERPRET_AT_START!r}: an import or an earlier test changed it for the whole process")


@pytest.fixture(params=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)
