"""The ``pydecode`` command line (also ``python -m pydecode``).

Every failure a user can cause (bad flag value, missing optional dependency, unavailable
backend) ends as one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Optional


class CLIError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def _show_config(args: argparse.Namespace) -> int:
    from . import sysinfo

    info = sysinfo.collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"pydecode {info['pydecode']} (git {info['git_sha']}), Python {info['python']}, {info['platform']}")
    print(
        "versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + f"; torch CUDA {info['torch_cuda']}"
    )
    print(f"cpu: {info['devices']['cpu']}")
    cuda = info["devices"]["cuda"]
    print(f"cuda devices: {', '.join(cuda) if isinstance(cuda, list) else cuda}")
    print("compiled modules:")
    for name, state in info["compiled_modules"].items():
        print(f"  {name}: {state}")
    print(f"backends (selected: {info['backend_selected']}):")
    if not info["gpu_kernels_in_auto"]:
        print("  (auto on CUDA tensors: torch reference; the cuda/triton kernels are not yet GPU-verified,"
              " PYDECODE_GPU_KERNELS=1 or an explicit backend opts in)")
    for name, state in info["backends"].items():
        print(f"  {name:7s} {state}")
    print("ops (backends that implement them):")
    for op, impls in info["ops"].items():
        print(f"  {op:36s} {', '.join(impls)}")
    if info["environment"]:
        print("environment: " + ", ".join(f"{k}={v}" for k, v in info["environment"].items()))
    return 0


def _demo(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise CLIError(f"--steps must be >= 1, got {args.steps}")
    if args.batch < 1:
        raise CLIError(f"--batch must be >= 1, got {args.batch}")
    from .demo import run_demo

    return run_demo(steps=args.steps, batch=args.batch, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pydecode", description="Kernel-accelerated decoding for PyTorch LMs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    show = sub.add_parser("show-config", help="versions, devices, compiled modules and available backends")
    show.add_argument("--json", action="store_true", help="print as JSON")
    show.set_defaults(func=_show_config)
    demo = sub.add_parser(
        "demo",
        help="decode with pydecode.ops on a tiny random Llama and check the tokens against transformers",
    )
    demo.add_argument("--steps", type=int, default=24, help="new tokens per sequence (default 24)")
    demo.add_argument("--batch", type=int, default=2, help="sequences (default 2)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the model weights, prompts and sampling")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (CLIError, ValueError) as exc:  # ValueError: a bad value reached pydecode (e.g. PYDECODE_BACKEND)
        print(f"pydecode: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"pydecode: error: missing dependency ({exc}); install with `pip install -e '.[hf]'`", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
