"""pydecode's built-in demo model, and the loader that resolves a ``--model`` spec.

The demo model is a small Llama (about 2 M parameters, byte-level BPE vocabulary of 4096)
trained on Python's standard-library sources by ``tools/train_demo_model.py``; its files ship
in this package so that pydecode's CLI and demos run offline on a fresh machine. See
README.md in this directory for what it is and how it was trained.

Loading needs ``transformers`` (``pip install "pydecode[hf]"``); nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import torch

DEMO_MODEL_DIR: Path = Path(__file__).resolve().parent

_EXPECTED = "'demo' or a local directory holding a transformers causal LM (config.json, weights and tokenizer files)"


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - transformers is installed wherever the tests run
        raise ImportError('loading a model needs transformers: pip install "pydecode[hf]"') from exc
    return transformers


def _check_dtype_device(dtype: Any, device: Any) -> torch.device:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype (torch.float32, torch.float16, torch.bfloat16), "
                        f"got {dtype!r}")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from exc


def _load(path: Path, dtype: torch.dtype, device: torch.device) -> tuple[Any, Any]:
    transformers = _import_transformers()
    # local_files_only: a directory is read as-is, never resolved against the Hub.
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model.to(device).eval(), tokenizer


def load_demo_model(dtype: torch.dtype = torch.float32, device: Union[str, torch.device] = "cpu") -> tuple[Any, Any]:
    """The demo model in eval mode and its tokenizer (a ``PreTrainedTokenizerFast``); offline.

    The weights are stored as float16 and converted to ``dtype``.
    """
    return _load(DEMO_MODEL_DIR, dtype, _check_dtype_device(dtype, device))


def load_model(
    spec: str, dtype: torch.dtype = torch.float32, device: Union[str, torch.device] = "cpu"
) -> tuple[Any, Any]:
    """Resolve a model spec: ``"demo"`` -> :func:`load_demo_model`; else a local model directory.

    A directory is loaded with ``AutoModelForCausalLM`` / ``AutoTokenizer`` and
    ``local_files_only=True``. A missing path, or a directory that does not hold a causal LM and
    its tokenizer, raises ``ValueError`` naming the path.
    """
    if not isinstance(spec, (str, Path)):
        raise TypeError(f"model must be {_EXPECTED}, got {type(spec).__name__}")
    target = _check_dtype_device(dtype, device)
    if str(spec) == "demo":
        return load_demo_model(dtype, target)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ValueError(f"model path {str(spec)!r} does not exist: expected {_EXPECTED}")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ValueError(f"model path {str(spec)!r} is not a model directory (no config.json): expected {_EXPECTED}")
    try:
        return _load(path, dtype, target)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # transformers reports an unsupported architecture, missing weights or missing tokenizer
        # files with several exception types and long messages; keep one sentence plus its reason.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"model path {str(spec)!r} could not be loaded as a causal LM with its tokenizer "
                         f"({reason}): expected {_EXPECTED}") from exc


__all__ = ["DEMO_MODEL_DIR", "load_demo_model", "load_model"]
