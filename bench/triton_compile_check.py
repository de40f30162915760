"""Compile every Triton kernel launch of the op tests for an NVIDIA target, without a GPU.

The interpreter (TRITON_INTERPRET=1, the CPU test run) executes the kernels' Python and so does
not catch what only the compiler rejects (a loop-carried variable changing type, a constexpr
reassigned, a zero-size tile on a dead branch, or a compiler bug of the installed triton: 3.6,
the GPU host's version, failed a layout pass on the filter chain that 3.9 compiles). So:

1. the Triton op tests (tests/ops/test_*_triton.py, test_philox.py) run interpreted in a
   subprocess with the bench/triton_launches.py plugin, which records every distinct launch:
   kernel, argument types, constexpr values and launch options (num_warps, fp fusion);
2. each of those launches is lowered to PTX and cubin for sm_90 with triton's bundled ptxas.

    python -m bench.triton_compile_check [--launches FILE] [--target 90]   # a few minutes

Exit status 1 when any launch fails to compile (each failure is printed).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/ops/test_sampling_triton.py", "tests/ops/test_beam_triton.py", "tests/ops/test_penalties_triton.py",
         "tests/ops/test_ngram_triton.py", "tests/ops/test_watermark_triton.py", "tests/ops/test_philox.py"]
POINTER_TYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64", "int64": "i64",
                 "int32": "i32", "int16": "i16", "int8": "i8", "uint8": "u8", "bool": "i1"}


def record_launches(path: Path) -> None:
    """Run the interpreted Triton op tests, recording their launches into ``path``."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYDECODE_TRITON_LAUNCHES=str(path))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "bench.triton_launches", "-p", "no:cacheprovider", *TESTS]
    print("recording launches:", " ".join(cmd[2:]), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the interpreted Triton tests failed (exit {done.returncode}); fix them first")


def signature_of(kernel, launch: dict) -> tuple[dict, dict]:  # noqa: ANN001
    """triton.compile's signature and constexprs for one recorded launch."""
    constexpr_names = {p.name for p in kernel.params if p.is_constexpr}
    signature, constexprs = {}, {}
    for name, (kind, value) in launch["args"].items():
        if name in constexpr_names or kind == "none":
            signature[name] = "constexpr"
            constexprs[name] = value
        elif kind == "tensor":
            signature[name] = "*" + POINTER_TYPES[value]
        elif kind == "int":
            signature[name] = "i32" if -(2**31) <= value < 2**31 else "i64"
        elif kind == "float":
            signature[name] = "fp32"
        elif kind == "bool":
            signature[name] = "i1"
        else:
            raise TypeError(f"{launch['kernel']}: cannot type argument {name}={value}")
    return signature, constexprs


def divisibility_of(kernel, launch: dict) -> dict:  # noqa: ANN001
    """The divisibility a launch specialises as triton's JIT does: pointers (assumed 16-byte
    aligned, as torch allocates) and the integers that are multiples of 16, unless the kernel
    does not specialise them (do_not_specialize). That is what lets a row's loads vectorise."""
    skip = {p.name for p in kernel.params if p.do_not_specialize or p.is_constexpr}
    aligned = [["tt.divisibility", 16]]
    attrs = {}
    for name, (kind, value) in launch["args"].items():
        if name in skip:
            continue
        if kind == "tensor" or (kind == "int" and value % 16 == 0):
            attrs[(kernel.arg_names.index(name),)] = aligned
    return attrs


def compile_launch(launch: dict, target: GPUTarget) -> bool:
    kernel = getattr(importlib.import_module(launch["module"]), launch["kernel"])
    signature, constexprs = signature_of(kernel, launch)
    name = f"{launch['kernel']} {constexprs} {launch['options']}"
    start = time.perf_counter()
    try:
        triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs,
                                 attrs=divisibility_of(kernel, launch)), target=target, options=launch["options"])
    except Exception as exc:  # report every failing launch, not just the first
        print(f"FAIL {name}: {str(exc)[-4000:]}", flush=True)
        return False
    print(f"ok   {name} ({time.perf_counter() - start:.1f} s)", flush=True)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=Path, default=None,
                        help="a launches JSON written by an earlier run (default: record anew)")
    parser.add_argument("--target", type=int, default=90, help="compute capability to compile for (90 = H100)")
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("run without TRITON_INTERPRET=1: this script compiles the kernels")
    path = args.launches
    if path is None:
        path = Path(tempfile.mkdtemp()) / "launches.json"
        record_launches(path)
    launches = json.loads(path.read_text())
    print(f"triton {triton.__version__}: compiling {len(launches)} distinct launches for sm_{args.target}", flush=True)
    target = GPUTarget("cuda", args.target, 32)
    failed = sum(not compile_launch(launch, target) for launch in launches)
    kernels = sorted({launch["kernel"] for launch in launches})
    print(f"{len(launches) - failed} of {len(launches)} launches compiled "
          f"({len(kernels)} kernels: {', '.join(kernels)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
