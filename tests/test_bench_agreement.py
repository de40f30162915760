"""The op benchmark's check that a kernel backend agrees with the torch reference before its time
counts (pydecode/benchmarks/ops.py): exact for tokens and masks; for beam top-k, ids and beam
indices exact and scores within BEAM_SCORE_RTOL (the kernels' exact log-softmax sums and torch's
float32 one differ in the last bits, which the GPU run reported as a disagreement)."""

from __future__ import annotations

import torch

from pydecode.benchmarks import ops as bench_ops

CASES = bench_ops.CASES


def test_tokens_must_be_identical() -> None:
    case = CASES["temp_topk_topp_sample"]
    t = torch.tensor([3, 1, 4])
    assert bench_ops._agreement(case, t, t.clone()) == (True, "")
    assert not bench_ops._agreement(case, t, torch.tensor([3, 1, 5]))[0]


def test_beam_scores_within_tolerance_ids_exact() -> None:
    case = CASES["beam_topk"]
    scores = torch.tensor([[-1.25, -2.5, -float("inf")]])
    ids, beams = torch.tensor([[7, 9, 0]]), torch.tensor([[0, 1, 0]])
    ref = (scores, ids, beams)
    near = (scores * (1 + 2e-6), ids, beams)
    agrees, note = bench_ops._agreement(case, near, ref)
    assert agrees and "scores within" in note
    assert bench_ops._agreement(case, ref, ref) == (True, "")
    assert not bench_ops._agreement(case, (scores * (1 + 1e-3), ids, beams), ref)[0]
    assert not bench_ops._agreement(case, (scores, torch.tensor([[7, 8, 0]]), beams), ref)[0]
    assert not bench_ops._agreement(case, (scores, ids, torch.tensor([[1, 1, 0]])), ref)[0]
    finite_for_inf = torch.tensor([[-1.25, -2.5, -30.0]])
    assert not bench_ops._agreement(case, (finite_for_inf, ids, beams), ref)[0]
