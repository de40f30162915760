"""``pydecode show-config``: versions, devices, compiled modules and the backends of every op."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> None:
    show = sub.add_parser("show-config", help="versions, devices, compiled modules and available backends")
    show.add_argument("--json", action="store_true", help="print as JSON")
    show.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import sysinfo

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
