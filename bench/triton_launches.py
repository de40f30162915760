"""pytest plugin: record every Triton kernel launch the interpreted op tests make.

Loaded by bench/triton_compile_check.py as ``-p bench.triton_launches`` in a run with
``TRITON_INTERPRET=1``. Each launch is written as: the kernel (module and name), every argument
as a type (tensor dtype, int / float / bool / None with its value) and the launch options
(``num_warps``, ``enable_fp_fusion``, ...). Distinct launches go to the JSON file named by
``PYDECODE_TRITON_LAUNCHES`` when the session ends.
"""

from __future__ import annotations

import inspect
import json
import os
from typing import Any

import torch

_LAUNCHES: dict[str, dict] = {}


def _describe(value: Any) -> list:
    if isinstance(value, torch.Tensor):
        return ["tensor", str(value.dtype).removeprefix("torch.")]
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int):
        return ["int", value]
    if isinstance(value, float):
        return ["float", value]
    if value is None:
        return ["none", None]
    return ["other", repr(value)]


def _install() -> None:
    from triton.runtime.interpreter import InterpretedFunction

    original = InterpretedFunction.run

    def run(self, *args: Any, grid: Any, warmup: Any, **kwargs: Any) -> Any:  # noqa: ANN001
        if not self.fn.__module__.startswith("pydecode."):  # a test's own kernel: not the package's to compile
            return original(self, *args, grid=grid, warmup=warmup, **kwargs)
        params = inspect.signature(self.fn).parameters
        names = list(params)
        constexpr = {n for n, p in params.items() if "constexpr" in str(p.annotation)}
        bound = dict(zip(names, args))
        bound.update({k: v for k, v in kwargs.items() if k in names})
        options = {k: v for k, v in kwargs.items() if k not in names}
        launch = {
            "module": self.fn.__module__,
            "kernel": self.fn.__name__,
            "args": {name: _describe(bound[name]) for name in names if name in bound},
            "options": options,
        }
        # A runtime int's value does not change the compiled code, only its width (i32 / i64) does.
        key_args = {
            n: (["int", -(2**31) <= d[1] < 2**31] if d[0] == "int" and n not in constexpr else d)
            for n, d in launch["args"].items()
        }
        key = json.dumps([launch["module"], launch["kernel"], key_args, options], sort_keys=True, default=str)
        _LAUNCHES.setdefault(key, launch)
        return original(self, *args, grid=grid, warmup=warmup, **kwargs)

    InterpretedFunction.run = run


def pytest_configure(config: Any) -> None:  # noqa: ARG001
    _install()


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:  # noqa: ARG001
    path = os.environ.get("PYDECODE_TRITON_LAUNCHES")
    if path:
        with open(path, "w") as f:
            json.dump(list(_LAUNCHES.values()), f, indent=1, default=str)
