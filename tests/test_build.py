"""The compiled modules: built where they should be, and torch-free."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pydecode import _ext

ROOT = Path(__file__).resolve().parent.parent


def test_cpu_module_is_built() -> None:
    # A pip install on a machine with a C++ compiler always builds it (setup.py).
    assert _ext.cpu_module() is not None, _ext.cpu_unavailable_reason()


@pytest.mark.skipif(os.environ.get("PYDECODE_BUILD_CUDA") != "1", reason="PYDECODE_BUILD_CUDA=1 not set")
def test_cuda_module_compiles_without_a_gpu() -> None:
    """CI builds with PYDECODE_BUILD_CUDA=1: the module must exist and import with no GPU."""
    assert _ext.cuda_module_built(), _ext.cuda_unavailable_reason()
    module = _ext._load("_C_cuda")[0]
    count, error = module.device_count()
    assert (count > 0) == (error == "")


def test_kernel_sources_do_not_include_torch() -> None:
    """csrc is torch-free by design (DESIGN.md): the build must not need torch headers."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "csrc").rglob("*")
        if path.suffix in {".h", ".cpp", ".cu", ".cuh"}
        and re.search(r"#include\s*[<\"](torch|ATen|c10)/", path.read_text())
    ]
    assert not offenders, offenders


def test_every_cpp_binding_is_called_from_python() -> None:
    """Each m.def of the CPU module is called from pydecode (no dead kernels)."""
    sources = [ROOT / "csrc" / "bindings.cpp", *sorted((ROOT / "csrc" / "cpu").glob("*_bindings.cpp"))]
    names = [n for src in sources for n in re.findall(r'm\.def\(\s*"(\w+)"', src.read_text())]
    python = "\n".join(p.read_text() for p in (ROOT / "pydecode").rglob("*.py"))
    unused = [n for n in names if f".{n}(" not in python]
    assert names and not unused, unused
