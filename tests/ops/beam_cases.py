"""Beam top-k inputs shared by the CUDA kernels' tests on a GPU (tests/ops/test_beam_cuda.py) and
on the CPU model (tests/test_cuda_model_reads.py)."""

from __future__ import annotations

import torch


def tie_at_bin_edge(rows: int, vocab: int) -> torch.Tensor:
    """Logits whose k-th beam score (x + -3e4, float32) ties across two key bins: 7.9995 and 8.0
    score alike, and the 7.9995s have the lower indices."""
    x = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(6)) * 0.5
    x[:, 100:110] = 7.9995
    x[:, 200:220] = 8.0
    x[:, 300:303] = 12.0
    return x


def split_rows(vocab: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Rows (2 items x 4 beams) for the split path, with their beam scores: plain (float32, and
    bfloat16 / float16, whose many equal values put ties on the slices' lists), NaN / +inf / -inf
    rows and a dead beam (the row algorithm serves those items), integer logits (more ties at a
    slice's last entry than its list holds), and the key-bin tie (a slice's left-out logit scores
    like the k-th rank at k 20: the merge must hand the item to the row algorithm)."""
    g = torch.Generator().manual_seed(seed)
    plain = torch.randn(8, vocab, generator=g) * 3
    bad = plain.clone()
    bad[1, 5] = float("nan")
    bad[2, ::3] = float("-inf")
    bad[3, 7] = float("inf")
    bad[5] = float("-inf")
    bonus = torch.randn(8, generator=g) - 3
    dead = bonus.clone()
    dead[6] = float("-inf")
    return {
        "float32": (plain, bonus),
        "bfloat16": (plain.bfloat16(), bonus),
        "float16": (plain.half(), bonus),
        "bad rows": (bad, dead),
        "integer ties": (torch.randint(0, 3, (8, vocab), generator=g).float(), bonus),
        "bin-edge tie": (tie_at_bin_edge(8, vocab), torch.full((8,), -3e4)),
    }
