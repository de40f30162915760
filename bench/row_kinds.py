"""The logits rows the row-read counters use (bench/triton_row_reads.py, bench/cuda_row_reads.py).

Its own module, free of side effects: importing it changes no environment variable. (The Triton
counter switches the interpreter on when it runs as a script; a test module that imported it for
these rows once switched it on for a whole GPU test session.)
"""

from __future__ import annotations

import torch

ROWS = ("randn x 1", "randn x 3", "peaked", "flat")


def logits(kind: str, rows: int, vocab: int, seed: int) -> torch.Tensor:
    """``rows`` float32 rows of one kind (ROWS), seeded."""
    if kind not in ROWS:
        raise ValueError(f"kind must be one of {ROWS}, got {kind!r}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, vocab, generator=g)
    if kind == "randn x 3":
        x *= 3
    elif kind == "peaked":
        x *= 2
        x[:, :20] = 12 + 6 * torch.rand(rows, 20, generator=g)
    elif kind == "flat":
        x *= 0.3
    return x
