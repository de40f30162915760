"""The ``pydecode`` command line (also ``python -m pydecode``); one module per subcommand.

Every failure a user can cause (bad flag value, unknown model path, missing file or optional
dependency, unavailable device or backend) ends as one line on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Optional

from ._common import CLIError, Parser, one_line

__all__ = ["CLIError", "build_parser", "main"]


def build_parser() -> Parser:
    from . import bench_cmd, bench_ops_cmd, demo_cmd, detect_cmd, generate_cmd, show_config_cmd

    parser = Parser(prog="pydecode", description="Kernel-accelerated decoding for PyTorch LMs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (generate_cmd, bench_cmd, bench_ops_cmd, detect_cmd, show_config_cmd, demo_cmd):
        module.add_parser(sub)
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
        print(f"pydecode: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"pydecode: error: missing dependency ({one_line(exc)}); install with `pip install -e '.[hf]'`",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pydecode: interrupted", file=sys.stderr)
        return 130
