"""bench/top_p_tile_fit.py: its count of the rows the Triton chain's top-p tile serves follows the
kernel's rule (class bound of a rank over column classes, ties on the tile, mass below it against
(1 - p) * Z) on rows built so that the answer is known."""

from __future__ import annotations

import math

import torch

from bench.top_p_tile_fit import class_maxima, split_class_maxima, tile_fit


def test_tile_fit_rule() -> None:
    classes, vocab = 4, 16
    # row 0: 4 large entries in 4 classes, the rest far below: the rank-4 bound is the smallest of
    # them, the tile holds exactly those 4 and the mass below is ~0 (served at any p < 1)
    spread = torch.full((vocab,), -30.0)
    spread[[0, 5, 10, 15]] = torch.tensor([4.0, 3.0, 2.0, 1.0])
    # row 1: the 4 large entries share class 0 (columns 0, 4, 8, 12): the other classes' maxima are
    # -30, so the rank-4 bound is -30 and all 16 entries reach it (over a cap of 8)
    crowded = torch.full((vocab,), -30.0)
    crowded[[0, 4, 8, 12]] = torch.tensor([4.0, 3.0, 2.0, 1.0])
    # row 2: flat: every entry ties with the bound
    flat = torch.zeros(vocab)
    rows = torch.stack([spread, crowded, flat])
    fit = tile_fit(rows, 0.9, class_maxima(rows, classes), rank=4, cap=8)
    assert fit["n_on"].tolist() == [4, 16, 16]
    assert fit["served"] == 1
    # nucleus at p = 0.9 of row 0: exp(0), exp(-1) are 0.64 + 0.24 = 0.88 of the mass, so 3 tokens
    weights = [math.exp(v - 4.0) for v in (4.0, 3.0, 2.0, 1.0)]
    kept = next(i + 1 for i in range(4) if sum(weights[: i + 1]) >= 0.9 * sum(weights))
    assert fit["nucleus"].tolist()[0] == kept == 3
    assert fit["nucleus"].tolist()[2] == 15  # a flat row: the ascending cumsum passes 0.1 after 1 of 16
    # rank 2 on row 0: the entries 2 and 1 are below the bound, 0.12 of the mass: served at p = 0.5
    # (the nucleus on the tile), not at p = 0.95 (it reaches below the bound)
    maxima = class_maxima(rows[:1], classes)
    assert tile_fit(rows[:1], 0.5, maxima, rank=2, cap=8)["served"] == 1
    assert tile_fit(rows[:1], 0.95, maxima, rank=2, cap=8)["served"] == 0


def test_split_class_maxima() -> None:
    """A split row's classes: per slice (slices of a multiple of 16), position in the slice mod the
    fold (split_rows' rule: 512 / splits rounded up to a power of two, at least 16, at most the
    slice's block)."""
    x = torch.arange(100, dtype=torch.float32)[None]  # 2 slices of 64 and 36; fold 256 capped at 64
    maxima = split_class_maxima(x, 2)
    assert maxima.shape == (1, 128)
    assert maxima[0, :64].tolist() == list(range(64))  # slice 0: one entry a class
    assert maxima[0, 64:100].tolist() == list(range(64, 100)) and maxima[0, 100:].eq(float("-inf")).all()
    x = torch.arange(1000, dtype=torch.float32)[None]  # 15 splits: 13 slices of 80, fold 64
    maxima = split_class_maxima(x, 15)
    assert maxima.shape == (1, 13 * 64)
    assert maxima[0, 0].item() == 64.0 and maxima[0, 15].item() == 79.0 and maxima[0, 16].item() == 16.0
