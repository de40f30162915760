"""``torch.library`` registration of pydecode's ops, so they work under ``torch.compile``.

Each public op is defined once as ``torch.ops.pydecode.<name>`` with a fake (meta) kernel.
Eager calls skip the op registry and go straight to the selected backend ("the raw path"):
a call through ``torch.ops`` costs a few microseconds more (``bench/bench_dispatch.py``),
which matters at batch 1 in a decode loop. Under ``torch.compile`` the public functions call
``torch.ops.pydecode.<name>`` so dynamo records one opaque node per op, except where the op runs
on the triton backend: there they call ``torch.ops.pydecode_triton.<name>``, the same launcher
defined with ``torch.library.triton_op``, whose kernel launches go through ``wrap_triton``, so
the compiled graph holds the Triton kernels themselves (torch.compile traces through the op).
"""

from __future__ import annotations

import ast
import inspect
from typing import Any, Callable, Optional

import torch

from ._registry import _IMPLS, _interpret, resolve, resolve_name
from ._validate import env_switch

_LIB = torch.library.Library("pydecode", "FRAGMENT")  # noqa: TOR901 (one library for all ops)
DEFINED: dict[str, str] = {}
_SCHEMAS: dict[str, tuple[str, str]] = {}  # name -> (arguments, returns), without ``backend``
# The ops defined in the pydecode_triton namespace so far (triton_op_for), by name.
TRITON_OPS: dict[str, Any] = {}
# PYDECODE_TRITON_TRACE=0: torch.compile keeps triton-backend ops opaque (torch.ops.pydecode), as
# for the other backends, instead of tracing through them.
TRITON_TRACE_ENV = "PYDECODE_TRITON_TRACE"
# The context in which the Triton launches go through wrap_triton (set_traceable_launches).
_traceable_launches: Optional[Callable[[], Any]] = None


def define_op(name: str, schema: str, fake: Callable[..., Any]) -> None:
    """Define ``pydecode::name`` from ``"(args) -> returns"``; ``str? backend=None`` is appended.

    The first argument must be the tensor whose device selects the backend (the logits).
    """
    args, returns = schema.split("->")
    args = args.strip()
    assert args.startswith("(") and args.endswith(")"), schema
    full = f"{args[:-1]}, str? backend=None) -> {returns.strip()}"
    _LIB.define(name + full)
    DEFINED[name] = full
    _SCHEMAS[name] = (args, returns.strip())

    n_args = len(getattr(torch.ops.pydecode, name).default._schema.arguments) - 1

    def split(op_args: tuple, kwargs: dict) -> tuple[tuple, Optional[str]]:
        # The dispatcher may pass `backend` by keyword or as the last positional argument.
        backend = kwargs.get("backend", op_args[n_args] if len(op_args) > n_args else None)
        return op_args[:n_args], backend

    def run(*op_args: Any, **kwargs: Any) -> Any:
        args, backend = split(op_args, kwargs)
        return resolve(name, args[0].device, backend)(*args)

    def fake_run(*op_args: Any, **kwargs: Any) -> Any:
        return fake(*split(op_args, kwargs)[0])

    _LIB.impl(name, run, "CompositeExplicitAutograd")
    torch.library.register_fake(f"pydecode::{name}", fake_run, lib=_LIB)


_TYPES = {"Tensor": torch.Tensor, "Tensor?": Optional[torch.Tensor], "int": int, "float": float, "bool": bool}


def python_signature(name: str) -> inspect.Signature:
    """The Python signature of op ``name``'s schema without ``backend`` (what triton_op infers its
    schema from: it reads annotations, not schema strings)."""
    args, returns = _SCHEMAS[name]
    params = []
    for arg in args[1:-1].split(","):
        kind_and_name, _, default = arg.strip().partition("=")
        kind, arg_name = kind_and_name.split()
        params.append(inspect.Parameter(
            arg_name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=_TYPES[kind],
            default=ast.literal_eval(default) if default else inspect.Parameter.empty))
    outs = [_TYPES[t.strip()] for t in returns.strip("()").split(",")]
    result = outs[0] if not returns.startswith("(") else tuple[tuple(outs)]  # type: ignore[valid-type]
    return inspect.Signature(params, return_annotation=result)


def set_traceable_launches(traceable: Callable[[], Any]) -> None:
    """Called by pydecode.triton_kernels when it loads: ``traceable()`` is the context in which its
    launches go through ``wrap_triton`` (the body of a pydecode_triton op)."""
    global _traceable_launches
    _traceable_launches = traceable



def triton_op_for(name: str) -> Any:
    """``torch.ops.pydecode_triton.<name>``: the triton backend's launcher of op ``name`` defined
    with ``torch.library.triton_op``, its body the launcher run where launches are traceable;
    defined on first use (each definition takes ~40 ms, which stays out of import). None where the
    triton backend does not implement the op, its kernels have not loaded, or torch has no
    ``triton_op`` (< 2.6)."""
    if name in TRITON_OPS:
        return TRITON_OPS[name]
    triton_op = getattr(torch.library, "triton_op", None)
    impl = _IMPLS.get(name, {}).get("triton")
    if triton_op is None or impl is None or _traceable_launches is None or name not in _SCHEMAS:
        return None
    signature = python_signature(name)
    traceable = _traceable_launches

    def body(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        with traceable():
            return impl(*bound.args)

    body.__signature__ = signature  # type: ignore[attr-defined]
    body.__name__ = body.__qualname__ = name
    triton_op(f"pydecode_triton::{name}", body, mutates_args=())
    TRITON_OPS[name] = getattr(torch.ops.pydecode_triton, name)
    return TRITON_OPS[name]


@torch.compiler.assume_constant_result
def traces_triton(name: str, device_type: str, backend: Optional[str]) -> bool:
    """Whether a compiled call of ``name`` goes through its pydecode_triton op: it runs on the
    triton backend, which is compiled (the interpreter runs kernels on real data only) and
    PYDECODE_TRITON_TRACE is not 0. A trace-time constant to torch.compile."""
    if not env_switch(TRITON_TRACE_ENV) or _interpret():
        return False
    if resolve_name(name, torch.device(device_type), backend) != "triton":
        return False
    return triton_op_for(name) is not None


def call(name: str, backend: Optional[str], *args: Any) -> Any:
    """Run op ``name``: through ``torch.ops.pydecode`` (or ``torch.ops.pydecode_triton`` on the
    triton backend) while compiling, directly otherwise."""
    if torch.compiler.is_compiling():
        if traces_triton(name, args[0].device.type, backend):  # which also defined the op
            return TRITON_OPS[name](*args)
        return getattr(torch.ops.pydecode, name)(*args, backend=backend)
    return resolve(name, args[0].device, backend)(*args)
