"""``torch.library`` registration of pydecode's ops, so they work under ``torch.compile``.

Each public op is defined once as ``torch.ops.pydecode.<name>`` with a fake (meta) kernel.
Eager calls skip the op registry and go straight to the selected backend ("the raw path"):
a call through ``torch.ops`` costs a few microseconds more (``bench/bench_dispatch.py``),
which matters at batch 1 in a decode loop. Under ``torch.compile`` the public functions call
``torch.ops.pydecode.<name>`` so dynamo records one opaque node per op.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from ._registry import resolve

_LIB = torch.library.Library("pydecode", "FRAGMENT")  # noqa: TOR901 (one library for all ops)
DEFINED: dict[str, str] = {}


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


def call(name: str, backend: Optional[str], *args: Any) -> Any:
    """Run op ``name``: through ``torch.ops.pydecode`` while compiling, directly otherwise."""
    if torch.compiler.is_compiling():
        return getattr(torch.ops.pydecode, name)(*args, backend=backend)
    return resolve(name, args[0].device, backend)(*args)
