"""What every ``pydecode`` subcommand shares: the one-line error contract, an argument parser
that keeps to it, value types for flags, and the model / device / backend choices."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, NoReturn, Optional

import torch


class CLIError(Exception):
    """A user-facing failure: printed as one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, except that a usage error is one line on stderr (exit 2), not usage + message."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message.splitlines()[0] if message else 'bad arguments'}", file=sys.stderr)
        sys.exit(2)


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if number < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value!r}")
        return number

    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BACKEND_CHOICES = ("auto", "cpu", "torch", "triton", "cuda")


def add_model_arguments(parser: argparse.ArgumentParser, *, backend: bool = True) -> None:
    parser.add_argument("--model", default="demo", metavar="demo|PATH",
                        help="'demo' (the built-in demo model, default) or a local transformers model directory")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where the model runs (auto: cuda when available, else cpu)")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES), help="model weights dtype")
    if backend:
        parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                            help="pydecode ops backend (auto: the fastest available for the device)")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    return torch.device(name)


def select_backend(name: str, device: torch.device) -> None:
    """Make ``name`` the process-wide ops backend, or fail with the reason it cannot run here."""
    from .. import ops

    if name == "auto":
        ops.set_backend(None)
        return
    why = ops.backend_unavailable_reason(name, device)
    if why:
        raise CLIError(f"--backend {name} is not available for {device.type} tensors here: {why}")
    ops.set_backend(name)


def load_model(spec: str, dtype: torch.dtype, device: torch.device) -> tuple[Any, Any]:
    """(model, tokenizer) for ``--model``; a spec that does not load is a one-line CLIError."""
    try:
        from ..demo_model import load_model as load
    except ImportError as exc:
        if "demo_model" not in str(exc):
            raise
        raise CLIError("pydecode.demo_model is missing from this installation") from None
    _quiet_transformers()
    try:
        return load(spec, dtype=dtype, device=device)
    except (ValueError, TypeError, OSError) as exc:
        raise CLIError(f"--model {spec}: {exc}") from None


def _quiet_transformers() -> None:
    """transformers' info / warning chatter (pad token, generation flags) would interleave with the
    text the commands print; errors still show."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars


def read_text_file(path: str, flag: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise CLIError(f"{flag} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"{flag} {path}: cannot read it ({type(exc).__name__}: {exc})") from None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def first_line(text: Optional[str]) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""
