"""Helpers shared by the test suite: the one tolerance helper (failures print the count and first
mismatches) and the row kinds the kernel tests feed every op."""

from __future__ import annotations

import math

import torch


def assert_same(actual: torch.Tensor, expected: torch.Tensor, *, atol: float = 0.0, rtol: float = 0.0,
                what: str = "values", show: int = 5) -> None:
    """Assert equal shapes and values within ``atol + rtol * |expected|`` (exact by default).

    NaN equals NaN and infinities must match exactly (same sign, same positions).
    """
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a = actual.detach().to("cpu", torch.float64) if actual.is_floating_point() else actual.detach().cpu()
    e = expected.detach().to("cpu", torch.float64) if expected.is_floating_point() else expected.detach().cpu()
    if a.is_floating_point() or e.is_floating_point():
        a, e = a.to(torch.float64), e.to(torch.float64)
        both_nan = torch.isnan(a) & torch.isnan(e)
        inf = torch.isinf(a) | torch.isinf(e)
        close = (a - e).abs() <= atol + rtol * e.abs()
        ok = both_nan | torch.where(inf, a == e, close)
    else:
        ok = a == e
    if bool(ok.all()):
        return
    bad = (~ok).nonzero()
    first = [tuple(i.tolist()) for i in bad[:show]]
    pairs = ", ".join(f"{idx}: {a[idx].item()} vs {e[idx].item()}" for idx in first)
    raise AssertionError(f"{what}: {bad.shape[0]} of {ok.numel()} differ (atol={atol}, rtol={rtol}); first {pairs}")


def row_kinds(
    batch: int,
    vocab: int,
    seed: int,
    dtype: torch.dtype = torch.float32,
    *,
    scale: float = 3.0,
    peak: float = 30.0,
    kinds: int = 8,
) -> torch.Tensor:
    """``(batch, vocab)`` logits whose rows cycle through ``kinds`` kinds, then cast to ``dtype``:
    0 random ``randn * scale`` (with +0.0 and -0.0 entries, as every kind starts), 1 peaked (one
    entry ``peak``), 2 flat, 3 tied (three values), 4 half -inf, 5 all -inf, 6 NaN entries, 7 +inf
    and -inf entries, and with ``kinds=9`` also 8: large values whose log-probs round into ties."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, vocab, generator=g) * scale
    x[:, ::5] = 0.0
    x[:, 1::7] = -0.0
    for b in range(batch):
        kind = b % kinds
        if kind == 1:
            x[b, int(torch.randint(0, max(vocab, 1), (1,), generator=g)) % max(vocab, 1) :][:1] = peak
        elif kind == 2:
            x[b] = 0.5
        elif kind == 3:
            x[b] = torch.tensor([-1.0, 0.0, 1.5])[torch.randint(0, 3, (vocab,), generator=g)]
        elif kind == 4:
            x[b, torch.rand(vocab, generator=g) < 0.5] = -math.inf
        elif kind == 5:
            x[b] = -math.inf
        elif kind == 6:
            x[b, ::3] = math.nan
        elif kind == 7:
            x[b, ::4] = math.inf
            x[b, 1::4] = -math.inf
        elif kind == 8:
            x[b] = 1e4 + torch.randint(0, 50, (vocab,), generator=g).float() * 1e-3
    return x.to(dtype)


def edge_rows(vocab: int, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """11 rows: random, peaked, flat, tied, ties at multiples of 0.5, half -inf, all -inf, NaN
    entries, +inf entries, mostly underflowing, and one-hot far below zero."""
    g = torch.Generator().manual_seed(seed)

    def randn() -> torch.Tensor:
        return torch.randn(vocab, generator=g)

    def mask(p: float) -> torch.Tensor:
        return torch.rand(vocab, generator=g) < p

    out = [
        randn() * 3,
        randn() * 8,  # peaked
        torch.zeros(vocab),  # flat: one tie group
        torch.randint(0, 4, (vocab,), generator=g).float(),  # a few big tie groups
        (randn() * 2).round() / 2,  # ties at multiples of 0.5
        randn().masked_fill(mask(0.5), -math.inf),
        torch.full((vocab,), -math.inf),
        randn().masked_fill(mask(0.3), math.nan),
        randn().masked_fill(mask(0.2), math.inf),
        randn() * 200,  # most probabilities underflow to exactly 0
        randn() - 1e4,
    ]
    out[-1][vocab // 2] = 30.0  # one-hot peak
    return torch.stack(out).to(device)


def clamp_top_k(params: dict, vocab: int) -> dict:
    """``params`` with ``top_k`` clamped to ``vocab``: the ops take k in [0, vocab] (larger is a
    malformed call), while transformers' ``TopKLogitsWarper`` clamps k to the vocabulary itself."""
    k = params.get("top_k")
    if k is None:
        return params
    return {**params, "top_k": k.clamp(max=vocab) if isinstance(k, torch.Tensor) else min(k, vocab)}
