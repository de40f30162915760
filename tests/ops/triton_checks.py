"""Shared inputs and boundary-tolerant checks for the Triton sampling / beam tests.

Where the Triton kernels are not bit-equal to the torch reference, and why (triton_kernels/sampling.py):
top-p sums the softmax masses in another order than torch's cumsum and keeps or removes a group
of values tied at the boundary together; min-p's ``p < min_p * p_max`` uses the kernel's own
softmax sum; ``min_tokens_to_keep`` keeps every entry tied with the keep-th largest. So a
decision may differ from the reference only for an entry (a) whose reference cumulative mass
band (mass strictly below it + its own mass .. mass at or below its value) is within ``eps`` of
``1 - top_p``, (b) whose probability is within relative ``eps`` of ``min_p * p_max``, or (c) that
is tied with the keep-th largest value. The checks below assert exactly that, and that the
differing entries are a keep-versus-remove choice (the kept value or ``filter_value``).
"""

from __future__ import annotations

from typing import Optional

import torch

NEG_INF, INF, NAN = float("-inf"), float("inf"), float("nan")


def _rows_param(value: object, rows: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype)
    return torch.full((rows,), value, dtype=dtype, device=device)


def _keep_floor(before: torch.Tensor, min_keep: int) -> torch.Tensor:
    k = min(min_keep, before.shape[-1])
    return torch.topk(before.nan_to_num(nan=NEG_INF), k, dim=-1).values[:, -1:]


def _check_choices(got: torch.Tensor, want: torch.Tensor, before: torch.Tensor, filter_value: float,
                   allowed: torch.Tensor, what: str) -> int:
    same = (got == want) | (torch.isnan(got) & torch.isnan(want))
    bad = ~same
    if not bool(bad.any()):
        return 0
    fv = torch.tensor(filter_value, dtype=got.dtype, device=got.device)
    choice = ((got == before) | (got == fv)) & ((want == before) | (want == fv))
    ok = allowed | same
    assert bool((choice | same).all()), f"{what}: values other than keep/remove differ"
    where = (~ok).nonzero()[:5].tolist()
    assert bool(ok.all()), (
        f"{what}: {int((~ok).sum())} decisions differ away from the boundary, first {where}: "
        f"{[(float(got[r, c]), float(want[r, c]), float(before[r, c])) for r, c in where]}"
    )
    return int(bad.any(-1).sum())


def top_p_allowed(before: torch.Tensor, top_p: object, min_keep: int, eps: float) -> torch.Tensor:
    """Entries whose top-p decision may differ from the reference (see the module docstring)."""
    rows, vocab = before.shape
    x = before.double()
    probs = torch.softmax(x, dim=-1)
    srt, idx = torch.sort(x, dim=-1)
    sp = probs.gather(-1, idx)
    cum = sp.cumsum(-1)
    # per entry: mass of strictly smaller values, and mass of values <= it
    lt = torch.searchsorted(srt.contiguous(), x.contiguous(), right=False)
    le = torch.searchsorted(srt.contiguous(), x.contiguous(), right=True)
    cum0 = torch.cat([torch.zeros(rows, 1, dtype=cum.dtype, device=cum.device), cum], dim=-1)
    mass_lt = cum0.gather(-1, lt)
    mass_le = cum0.gather(-1, le)
    p = _rows_param(top_p, rows, torch.float64, before.device)
    threshold = (1 - p).to(torch.float32).double()[:, None]
    near = (threshold >= mass_lt + probs - eps) & (threshold <= mass_le + eps)
    tied_floor = before == _keep_floor(before, min_keep)
    return near | tied_floor


def min_p_allowed(before: torch.Tensor, min_p: object, min_keep: int, eps: float) -> torch.Tensor:
    rows = before.shape[0]
    probs = torch.softmax(before.double(), dim=-1)
    pmax = probs.amax(-1, keepdim=True)
    mp = _rows_param(min_p, rows, torch.float64, before.device).to(torch.float32).double()[:, None]
    near = (probs - mp * pmax).abs() <= eps * pmax
    # transformers keeps topk(probs, min_keep): ties in float32 probability (underflowed zeros)
    probs32 = torch.softmax(before, dim=-1)
    return near | (before == _keep_floor(before, min_keep)) | (probs32 == _keep_floor(probs32, min_keep))


def check_top_p(got: torch.Tensor, want: torch.Tensor, before: torch.Tensor, top_p: object, *,
                min_keep: int = 1, filter_value: float = NEG_INF, eps: float = 1e-5, what: str = "") -> int:
    """Asserts the top-p mask ``got`` equals ``want`` up to boundary decisions; returns rows that differ."""
    return _check_choices(got, want, before, filter_value, top_p_allowed(before, top_p, min_keep, eps), what)


def check_min_p(got: torch.Tensor, want: torch.Tensor, before: torch.Tensor, min_p: object, *,
                min_keep: int = 1, filter_value: float = NEG_INF, eps: float = 1e-5, what: str = "") -> int:
    return _check_choices(got, want, before, filter_value, min_p_allowed(before, min_p, min_keep, eps), what)


def gumbel_tokens(filtered: torch.Tensor, seed: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """The randomness contract's tokens for already filtered rows (the reference sampler)."""
    from pydecode.ops.sampling import _gumbel_argmax

    return _gumbel_argmax(filtered, seed.to(filtered.device), offset.to(filtered.device))


def chosen_logprobs(filtered: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    from pydecode.ops.sampling import _chosen_logprobs

    return _chosen_logprobs(filtered, tokens.to(filtered.device))


def seeds(rows: int, device: torch.device, base: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    seed = torch.arange(rows, dtype=torch.int64, device=device) * 7919 + base
    offset = torch.arange(rows, dtype=torch.int64, device=device) % 5
    return seed, offset


def mismatch_rows(a: torch.Tensor, b: torch.Tensor) -> Optional[list[int]]:
    bad = ~((a == b) | (torch.isnan(a) & torch.isnan(b)))
    if bad.dim() > 1:
        bad = bad.any(-1)
    return bad.nonzero().flatten().tolist() or None


class Launches:
    """Wraps a jitted kernel to count its launches (the tests prove a split path ran)."""

    def __init__(self, kernel) -> None:  # noqa: ANN001
        self.kernel, self.count = kernel, 0

    def __getitem__(self, grid):  # noqa: ANN001, ANN204
        self.count += 1
        return self.kernel[grid]
