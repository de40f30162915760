"""Backend selection: auto picks quietly, an explicit missing backend fails loudly."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pydecode import _ext, ops
from pydecode.ops import _registry, philox
from pydecode.ops._registry import BackendUnavailableError, resolve_name

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _auto_backend(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PYDECODE_BACKEND", raising=False)
    ops.set_backend(None)
    yield
    ops.set_backend(None)


def test_every_op_has_a_torch_reference() -> None:
    registered = ops.registered_ops()
    assert registered, "no ops registered"
    missing = [op for op, impls in registered.items() if "torch" not in impls]
    assert not missing, f"ops without a torch reference: {missing}"


def test_every_op_is_a_torch_library_op() -> None:
    for op in ops.registered_ops():
        assert hasattr(torch.ops.pydecode, op), f"torch.ops.pydecode.{op} is not defined"


def test_auto_prefers_cpu_kernels_on_cpu_tensors() -> None:
    expected = "cpu" if _ext.cpu_module() is not None else "torch"
    assert resolve_name("philox_uniform", CPU) == expected


@pytest.fixture
def reference_only_op():
    """An op that has only a torch reference, registered for one test."""
    name = "_test_reference_only"
    _registry.register(name, "torch")(lambda x: x.clone())
    yield name
    del _registry._IMPLS[name]
    _registry._resolve_cached.cache_clear()


def test_auto_falls_back_quietly_when_an_op_has_no_kernel(reference_only_op: str) -> None:
    assert resolve_name(reference_only_op, CPU) == "torch"


def test_auto_never_picks_triton_for_cpu_tensors() -> None:
    assert resolve_name("philox_uniform", CPU) != "triton"


def test_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYDECODE_BACKEND", "torch")
    assert resolve_name("philox_uniform", CPU) == "torch"
    monkeypatch.setenv("PYDECODE_BACKEND", "auto")
    assert resolve_name("philox_uniform", CPU) != "torch" or _ext.cpu_module() is None


def test_argument_beats_set_backend_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYDECODE_BACKEND", "cuda")
    ops.set_backend("torch")
    assert resolve_name("philox_uniform", CPU) == "torch"
    assert ops.get_backend() == "torch"
    if _ext.cpu_module() is not None:
        assert resolve_name("philox_uniform", CPU, backend="cpu") == "cpu"


def test_unknown_backend_name_is_a_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.set_backend("tpu")
    monkeypatch.setenv("PYDECODE_BACKEND", "gpu")
    with pytest.raises(ValueError, match="backend must be one of"):
        philox.philox_uniform(1, 0, 4)


def test_explicit_unavailable_backend_raises_with_reason() -> None:
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="cuda.*unavailable"):
            philox.philox_uniform(1, 0, 4, backend="cuda")


def test_explicit_backend_without_the_op_raises(reference_only_op: str) -> None:
    if _ext.cpu_module() is None:
        pytest.skip("CPU module not built")
    with pytest.raises(BackendUnavailableError, match="has no cpu implementation"):
        _registry.resolve(reference_only_op, CPU, "cpu")


def test_triton_on_cpu_needs_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    if _registry._triton_unavailable_reason():
        pytest.skip("triton not installed")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET=1"):
        philox.philox_uniform(1, 0, 4, backend="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_name("philox_uniform", CPU, backend="triton") == "triton"


def test_unknown_op() -> None:
    with pytest.raises(KeyError, match="unknown pydecode op"):
        _registry.resolve("no_such_op", CPU)


def test_registering_for_an_unknown_backend_fails() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        _registry.register("x", "metal")


def test_import_without_compiled_modules() -> None:
    """`import pydecode` and the torch backend work when no extension can be imported."""
    code = (
        "import sys\n"
        "sys.modules['pydecode._C'] = None\n"  # makes `import pydecode._C` raise ImportError
        "sys.modules['pydecode._C_cuda'] = None\n"
        "import torch, pydecode\n"
        "from pydecode import _ext\n"
        "from pydecode.ops import philox, resolve_name\n"
        "assert _ext.cpu_module() is None and 'not importable' in _ext.cpu_unavailable_reason()\n"
        "assert resolve_name('philox_uniform', torch.device('cpu')) == 'torch'\n"
        "print(philox.philox_uniform(0, 0, 1).item())\n"
        "try:\n"
        "    philox.philox_uniform(0, 0, 1, backend='cpu')\n"
        "except pydecode.ops.BackendUnavailableError as e:\n"
        "    print('loud:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "loud: backend 'cpu' requested" in out.stdout and "pip install -e ." in out.stdout


def test_auto_keeps_unverified_gpu_kernels_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend every backend can run on CUDA tensors, so the choice itself is what is tested.
    monkeypatch.setattr(_registry, "backend_unavailable_reason", lambda name, device: "")
    monkeypatch.setattr(_registry, "_load_triton_kernels", lambda: None)
    cuda = torch.device("cuda")
    monkeypatch.delenv("PYDECODE_GPU_KERNELS", raising=False)
    _registry._resolve_cached.cache_clear()
    assert resolve_name("philox_uniform", cuda) == ("cuda" if _registry.GPU_KERNELS_VERIFIED else "torch")
    assert resolve_name("philox_uniform", cuda, backend="cuda") == "cuda"
    monkeypatch.setenv("PYDECODE_GPU_KERNELS", "1")
    assert resolve_name("philox_uniform", cuda) == "cuda"
    _registry._resolve_cached.cache_clear()
