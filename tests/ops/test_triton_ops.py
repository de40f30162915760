"""The triton backend's ops as ``torch.library.triton_op`` (``torch.ops.pydecode_triton``), which
torch.compile traces through: every op is defined, with the public op's schema; its body is the
launcher (same outputs); and every kernel launch goes through ``_common.launch`` (wrap_triton
inside the op's body). Tracing itself needs compiled Triton kernels: the ``gpu`` tests check that
the compiled graph holds the kernels, not an opaque op."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from pydecode.ops import _library, _registry
from pydecode.ops import beam as B
from pydecode.ops import sampling as S
from tests.helpers import assert_same

CPU = torch.device("cpu")
_why = _registry.backend_unavailable_reason("triton", CPU)
interpreted = pytest.mark.skipif(bool(_why), reason=f"triton on CPU tensors: {_why}")
needs_triton_op = pytest.mark.skipif(not hasattr(torch.library, "triton_op"), reason="torch < 2.6: no triton_op")
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
KERNELS = Path(__file__).resolve().parents[2] / "triton_kernels"


def _same(got: object, want: object, what: str) -> None:
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), what
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, what=f"{what}[{i}]")
    else:
        assert_same(got, want, what=what)


def _triton_impls() -> dict:
    _registry._load_triton_kernels()
    return {op: impls["triton"] for op, impls in _registry._IMPLS.items() if "triton" in impls}


@interpreted
@needs_triton_op
def test_every_triton_op_is_a_triton_op_with_the_public_schema() -> None:
    impls = _triton_impls()
    assert all(_library.triton_op_for(name) is not None for name in impls)
    assert _library.triton_op_for("argmax") is None  # no triton implementation
    assert set(_library.TRITON_OPS) == set(impls)
    for name in impls:
        public = getattr(torch.ops.pydecode, name).default._schema
        traced = getattr(torch.ops.pydecode_triton, name).default._schema
        # the same arguments in the same order, less `backend` (triton_op may write int as SymInt)
        def kinds(arguments: list) -> list[tuple[str, str]]:
            return [(a.name, str(a.type).replace("SymInt", "int")) for a in arguments if a.name != "backend"]

        assert kinds(traced.arguments) == kinds(public.arguments), name
        assert [str(r.type) for r in traced.returns] == [str(r.type) for r in public.returns], name


def test_python_signature_of_a_schema() -> None:
    sig = _library.python_signature("repetition_penalty")
    assert list(sig.parameters) == ["logits", "input_ids", "penalty", "prompt_ignore_length", "check_vocab"]
    assert sig.parameters["check_vocab"].default is False and sig.parameters["check_vocab"].annotation is bool
    assert sig.return_annotation is torch.Tensor
    assert _library.python_signature("beam_topk").return_annotation == tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@interpreted
@needs_triton_op
def test_triton_op_bodies_give_the_launchers_outputs() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 700, generator=g) * 3
    f64 = torch.float64
    seed, offset = torch.arange(4) + 1, torch.zeros(4, dtype=torch.int64)
    sample_args = (x, torch.full((4,), 0.8, dtype=f64), torch.full((4,), 20), torch.full((4,), 0.9, dtype=f64),
                   torch.zeros(4, dtype=f64), 1, seed, offset, True, True)
    cases = {
        "filter_and_sample": sample_args,
        "greedy": (x,),
        "beam_topk": (x, torch.randn(4, generator=g), 2, 4, True),
        "top_p_mask_logits": (x, torch.full((4,), 0.7, dtype=f64), float("-inf"), 1),
    }
    impls = _triton_impls()
    for name, args in cases.items():
        got = _library.triton_op_for(name)(*args)
        want = impls[name](*args)
        _same(got, want, name)


def test_every_kernel_launch_goes_through_launch() -> None:
    """A kernel subscripted directly (``_x_kernel[grid](...)``) would launch untraced inside a
    pydecode_triton op: torch.compile could not see it."""
    direct = [(f.name, m.group(0)) for f in KERNELS.glob("*.py")
              for m in re.finditer(r"\b_\w*kernel\[", f.read_text())]
    assert direct == []
    assert sum(f.read_text().count("launch(_") for f in KERNELS.glob("*.py")) >= 16


@interpreted
def test_launch_wraps_only_inside_traceable_launches(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydecode.triton_kernels import _common

    monkeypatch.setattr(torch.library, "wrap_triton", lambda kernel: ("wrapped", kernel), raising=False)
    kernel = object()
    assert _common.launch(kernel) is kernel
    with _common.traceable_launches():
        assert _common.launch(kernel) == ("wrapped", kernel)
    assert _common.launch(kernel) is kernel


@interpreted
def test_compile_keeps_the_opaque_op_where_it_cannot_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Interpreted kernels run only on real data, and PYDECODE_TRITON_TRACE=0 opts out: then the
    compiled call is the opaque torch.ops.pydecode op; other backends never take the triton op."""
    _triton_impls()
    assert not _library.traces_triton("filter_and_sample", "cpu", "triton")  # the interpreter
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not _library.traces_triton("filter_and_sample", "cpu", "torch")
    monkeypatch.setenv(_library.TRITON_TRACE_ENV, "0")
    assert not _library.traces_triton("filter_and_sample", "cuda", "triton")
    monkeypatch.setenv(_library.TRITON_TRACE_ENV, "yes")
    with pytest.raises(ValueError, match="PYDECODE_TRITON_TRACE must be 0 or 1"):
        _library.traces_triton("filter_and_sample", "cuda", "triton")


@pytest.mark.slow
def test_compiled_call_routes_to_the_traced_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where traces_triton says yes, the compiled public op calls TRITON_OPS[name] (a stand-in here:
    the opaque op without a backend argument, since interpreted kernels cannot be traced) with the
    op's arguments, in one graph (fullgraph) and with eager's outputs."""
    from torch._dynamo.testing import CompileCounterWithBackend

    monkeypatch.setattr(_library, "traces_triton",
                        torch.compiler.assume_constant_result(lambda name, device_type, backend: True))
    monkeypatch.setitem(_library.TRITON_OPS, "filter_and_sample", torch.ops.pydecode.filter_and_sample)
    x = torch.randn(4, 3000, generator=torch.Generator().manual_seed(0)) * 3
    seed, offset = torch.full((4,), 5, dtype=torch.int64), torch.zeros(4, dtype=torch.int64)

    def step(logits: torch.Tensor) -> torch.Tensor:
        return S.filter_and_sample(logits * 1.0, top_k=20, seed=seed, offset=offset, backend="cpu").tokens

    counter = CompileCounterWithBackend("eager")
    torch._dynamo.reset()
    assert torch.equal(torch.compile(step, fullgraph=True, backend=counter)(x), step(x))
    calls = [n for g in counter.graphs for n in g.graph.nodes
             if n.op == "call_function" and "filter_and_sample" in str(n.target)]
    assert len(calls) == 1 and "backend" not in calls[0].kwargs  # the stand-in, not the opaque op's call
    torch._dynamo.reset()


# --------------------------------------------------------------------------- GPU (compiled)
def _compiled_graphs(fn, *args):  # noqa: ANN001, ANN002, ANN202
    """(compiled fn(*args), the AOT forward graphs' call targets) under torch.compile(fullgraph)."""
    from torch._dynamo.backends.common import aot_autograd

    targets: list[str] = []

    def forward(gm: torch.fx.GraphModule, _inputs: list) -> object:
        targets.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    out = torch.compile(fn, fullgraph=True, backend=aot_autograd(fw_compiler=forward))(*args)
    return out, targets


@pytest.mark.gpu
@needs_triton_op
@pytest.mark.parametrize("trace", ["1", "0"])
def test_gpu_compile_traces_through_triton_ops(monkeypatch: pytest.MonkeyPatch, trace: str) -> None:
    """The compiled graph of a sampling step and a beam step on the triton backend holds the Triton
    kernels (triton_kernel_wrapper_functional), not the pydecode op, and gives eager's outputs;
    with PYDECODE_TRITON_TRACE=0 it holds the opaque op instead."""
    monkeypatch.setenv(_library.TRITON_TRACE_ENV, trace)
    x = (torch.randn(8, 32000, generator=torch.Generator().manual_seed(0)) * 3).cuda()
    seed, offset = torch.arange(8, device="cuda") + 1, torch.zeros(8, dtype=torch.int64, device="cuda")
    scores = torch.randn(8, generator=torch.Generator().manual_seed(1)).cuda()

    def step(logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sampled = S.filter_and_sample(logits * 1.0, temperature=0.7, top_k=20, top_p=0.9, seed=seed, offset=offset,
                                      backend="triton")
        beams = B.beam_topk(logits, scores, 4, 8, backend="triton")
        return sampled.tokens, beams.scores, beams.token_ids, beams.beam_indices

    got, targets = _compiled_graphs(step, x)
    _same(got, step(x), "compiled vs eager")
    kernels = [t for t in targets if "triton_kernel_wrapper" in t]
    opaque = [t for t in targets if t.startswith("pydecode")]
    if trace == "1":
        assert kernels and not opaque, targets
    else:
        assert opaque and not kernels, targets


@pytest.mark.gpu
@needs_triton_op
def test_gpu_inductor_compiles_the_traced_triton_ops() -> None:
    """Inductor compiles the traced kernels (user-defined Triton kernels) and gives eager's outputs.
    Small kernels (temperature, greedy: do_not_specialize arguments, constexpr blocks, num_warps),
    so Inductor's own compile of them stays well inside the GPU run's 120 s test limit; the sampling
    chain and beam top-k are traced by the test above."""
    x = (torch.randn(4, 32000, generator=torch.Generator().manual_seed(2)) * 3).cuda()

    def step(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scaled = S.apply_temperature(logits * 1.0, 0.7, backend="triton")
        return scaled, S.greedy(scaled, backend="triton")

    torch._dynamo.reset()
    _same(torch.compile(step, fullgraph=True)(x), step(x), "inductor vs eager")
