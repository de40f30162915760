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


def test_min_p_case_samples_from_transformers_min_p_set() -> None:
    """temp_minp_sample: pydecode's call and the transformers provider both sample from the set that
    TemperatureLogitsWarper(0.7) + MinPLogitsWarper(0.1) keep (the case times the same filter on
    both sides), and that set is a real cut: more than one token, far fewer than the vocabulary."""
    import transformers as tf

    case = CASES["temp_minp_sample"]
    rows, vocab = 16, 600
    x = bench_ops.make_inputs(case, rows, vocab, torch.float32, torch.device("cpu"), 3.0, sets=1)[0]
    scores = tf.TemperatureLogitsWarper(bench_ops.TEMPERATURE)(x.ids, x.logits.float())
    kept = torch.isfinite(tf.MinPLogitsWarper(bench_ops.MIN_P)(x.ids, scores))
    sizes = kept.sum(dim=1)
    assert int(sizes.max()) > 1 and int(sizes.max()) < vocab // 4
    for backend in ("cpu", "torch"):
        tokens = bench_ops.pydecode_fn(case, backend, ["filter_and_sample"], vocab)(x)
        assert bool(kept.gather(1, tokens[:, None]).all()), backend
    torch.manual_seed(0)
    tokens = bench_ops.transformers_fn(case, rows, vocab, torch.device("cpu"))(x)
    assert bool(kept.gather(1, tokens[:, None]).all())


def test_flashinfer_sampler_per_case(monkeypatch) -> None:  # noqa: ANN001
    """The FlashInfer provider calls the sampler of each case with the case's parameter (a stand-in
    module records the calls: FlashInfer needs a GPU), and has none for beam top-k."""
    import sys
    import types

    from pydecode.benchmarks import flashinfer_provider

    calls = []

    def sampler(name: str):  # noqa: ANN202
        def fn(x: torch.Tensor, *params: object, deterministic: bool) -> torch.Tensor:
            calls.append((name, params, deterministic))
            return torch.zeros(x.shape[0], dtype=torch.int64)
        return fn

    fs = types.ModuleType("flashinfer.sampling")
    for name in ("top_k_top_p_sampling_from_logits", "top_p_sampling_from_probs", "min_p_sampling_from_probs"):
        setattr(fs, name, sampler(name))
    monkeypatch.setitem(sys.modules, "flashinfer", types.ModuleType("flashinfer"))
    monkeypatch.setitem(sys.modules, "flashinfer.sampling", fs)
    x = types.SimpleNamespace(logits=torch.randn(2, 10))
    for case in ("temp_topk_topp_sample", "temp_topp_sample", "temp_minp_sample"):
        flashinfer_provider.sampler(case, 0.7, 50, 0.9, 0.1)(x)
    assert calls == [("top_k_top_p_sampling_from_logits", (50, 0.9), True),
                     ("top_p_sampling_from_probs", (0.9,), True), ("min_p_sampling_from_probs", (0.1,), True)]
    assert flashinfer_provider.sampler("beam_topk", 0.7, 50, 0.9, 0.1) is None
