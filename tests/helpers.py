"""The one tolerance helper of the test suite: failures print the count and first mismatches."""

from __future__ import annotations

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
