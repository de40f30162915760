"""``pydecode demo``: the ops-level decode loop on a tiny random Llama, checked against transformers
(:mod:`pydecode.demo`)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import CLIError


def add_parser(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="decode with pydecode.ops on a tiny random Llama and check the tokens against transformers",
    )
    demo.add_argument("--steps", type=int, default=24, help="new tokens per sequence (default 24)")
    demo.add_argument("--batch", type=int, default=2, help="sequences (default 2)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the model weights, prompts and sampling")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise CLIError(f"--steps must be >= 1, got {args.steps}")
    if args.batch < 1:
        raise CLIError(f"--batch must be >= 1, got {args.batch}")
    from ..demo import run_demo

    return run_demo(steps=args.steps, batch=args.batch, seed=args.seed)
