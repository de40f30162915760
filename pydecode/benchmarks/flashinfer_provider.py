"""FlashInfer's GPU samplers as a benchmark provider (used by bench/bench_ops.py when importable).

FlashInfer (https://github.com/flashinfer-ai/flashinfer) samples with rejection sampling over
pivots rather than transformers' sort + cumsum: its tokens follow the same distribution as
transformers' top-k/top-p but not the same random stream, so only time is compared, never
tokens. Cases without a FlashInfer counterpart (penalties, beam search, watermarks) are skipped.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Optional

import torch


def unavailable_reason() -> str:
    """'' when ``flashinfer.sampling`` imports, else why not."""
    try:
        importlib.import_module("flashinfer.sampling")
    except Exception as exc:  # not installed, or built for another torch/CUDA
        return f"flashinfer is not importable ({type(exc).__name__}: {str(exc)[:80]})"
    return ""


def version() -> str:
    try:
        return str(importlib.import_module("flashinfer").__version__)
    except Exception:
        return "unknown"


def sampler(case: str, temperature: float, top_k: int, top_p: float,
            min_p: float = 0.1) -> Optional[Callable[[Any], Any]]:
    """A function of a bench input set (``.logits``) for ``case``, or None when FlashInfer has no counterpart.

    The temperature is applied by a torch division first (FlashInfer's logits samplers take none),
    counted in FlashInfer's time as it would be in a decode loop.
    """
    fs = importlib.import_module("flashinfer.sampling")
    if case == "temp_topk_topp_sample":
        fn = getattr(fs, "top_k_top_p_sampling_from_logits", None)
        if fn is None:
            return None

        def run(x: Any) -> torch.Tensor:
            return fn(x.logits.float() / temperature, top_k, top_p, deterministic=True)
        return run
    # The samplers from probabilities: softmax of the tempered logits first, counted in their time.
    from_probs = {"temp_topp_sample": ("top_p_sampling_from_probs", top_p),
                  "temp_minp_sample": ("min_p_sampling_from_probs", min_p)}
    if case in from_probs:
        name, param = from_probs[case]
        fn_probs = getattr(fs, name, None)
        if fn_probs is None:
            return None

        def run_probs(x: Any) -> torch.Tensor:
            probs = torch.softmax(x.logits.float() / temperature, dim=-1)
            return fn_probs(probs, param, deterministic=True)
        return run_probs
    return None
