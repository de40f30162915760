"""``pydecode bench-ops``: the kernel benchmarks of :mod:`pydecode.benchmarks.ops`."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import CLIError, one_line


def add_parser(sub: Any) -> None:
    from ..benchmarks import ops as bench_ops

    parser = sub.add_parser(
        "bench-ops", help="logits-processing ops: every available backend vs transformers' processors, the torch "
                          "reference and the one-pass memory floor",
        description=bench_ops.__doc__.split("\n\n")[0], epilog="\n".join(bench_ops.__doc__.splitlines()[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_ops.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..benchmarks import ops as bench_ops

    try:
        bench_ops.run(args)
    except ValueError as exc:
        raise CLIError(one_line(exc)) from None
    return 0
