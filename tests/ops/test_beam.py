"""beam_topk: transformers' beam-search step (log_softmax + beam scores + top-k over beams * vocab)."""

from __future__ import annotations

import math

import pytest
import torch

from pydecode.ops import beam
from pydecode.ops.beam import BeamTopK, beam_candidates, beam_topk
from tests.helpers import assert_same

NEG_INF = float("-inf")
NAN = float("nan")


def _step_scores(logits: torch.Tensor, beam_scores: torch.Tensor, num_beams: int, log_softmax: bool = True):
    """transformers' step ops (generation/utils.py `_beam_search`): (batch, num_beams * vocab) float32."""
    rows, vocab = logits.shape
    batch = rows // num_beams
    x = logits.to(copy=True, dtype=torch.float32)
    lp = torch.nn.functional.log_softmax(x, dim=-1) if log_softmax else x
    lp = lp.reshape(batch, num_beams, vocab) + beam_scores.reshape(batch, num_beams)[:, :, None]
    return torch.reshape(lp, (batch, -1))


def hf_step(logits, beam_scores, num_beams, k, log_softmax=True):
    """transformers' selection: torch.topk (tie order unspecified)."""
    vocab = logits.shape[1]
    values, flat = torch.topk(_step_scores(logits, beam_scores, num_beams, log_softmax), k=k)
    return values, flat % vocab, flat // vocab


def stable_oracle(logits, beam_scores, num_beams, k, log_softmax=True):
    """The contract: a stable descending sort of the whole row (NaN first, ties by lowest flat index)."""
    vocab = logits.shape[1]
    s = _step_scores(logits, beam_scores, num_beams, log_softmax)
    values, flat = torch.sort(s, dim=1, descending=True, stable=True)
    return values[:, :k], flat[:, :k] % vocab, flat[:, :k] // vocab


def python_oracle(logits, beam_scores, num_beams, k, log_softmax=True):
    """The same contract in plain Python, independent of torch's sort."""
    s = _step_scores(logits, beam_scores, num_beams, log_softmax).tolist()
    vocab = logits.shape[1]
    out_ids, out_beams = [], []
    for row in s:
        order = sorted(range(len(row)), key=lambda i: (0, 0.0, i) if math.isnan(row[i]) else (1, -row[i], i))[
            :k
        ]
        out_ids.append([i % vocab for i in order])
        out_beams.append([i // vocab for i in order])
    return torch.tensor(out_ids, dtype=torch.int64), torch.tensor(out_beams, dtype=torch.int64)


def assert_result(got: BeamTopK, expected, what: str, bits: bool = True) -> None:
    scores, ids, beams = expected
    assert got.scores.dtype == torch.float32 and got.token_ids.dtype == torch.int64
    assert got.beam_indices.dtype == torch.int64
    assert_same(got.token_ids, ids, what=f"{what}: token_ids")
    assert_same(got.beam_indices, beams, what=f"{what}: beam_indices")
    assert_same(got.scores, scores, what=f"{what}: scores")
    if bits:  # bit-identical, sign of zero included (NaN payloads aside)
        nan = torch.isnan(scores)
        assert_same(
            got.scores.view(torch.int32)[~nan], scores.view(torch.int32)[~nan], what=f"{what}: score bits"
        )


# --------------------------------------------------------------------------- against transformers
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("num_beams", [1, 2, 3, 5])
@pytest.mark.parametrize("vocab", [1, 3, 257])
def test_matches_hf_step_random(batch: int, num_beams: int, vocab: int) -> None:
    logits = torch.randn(batch * num_beams, vocab) * 3
    beam_scores = -torch.rand(batch * num_beams) * 10
    for k in sorted({1, min(beam_candidates(num_beams), num_beams * vocab), num_beams * vocab}):
        got = beam_topk(logits, beam_scores, num_beams, k)
        # float32 random scores have no ties, so torch.topk's order is unambiguous.
        assert_result(got, hf_step(logits, beam_scores, num_beams, k), f"k={k}")
        assert_result(got, stable_oracle(logits, beam_scores, num_beams, k), f"k={k} stable")


def test_matches_hf_first_step_init() -> None:
    """The first step: beam 0 scores 0, the others -1e9 (as transformers initialises them)."""
    batch, num_beams, vocab = 3, 4, 100
    logits = torch.randn(batch * num_beams, vocab)
    beam_scores = torch.zeros(batch, num_beams)
    beam_scores[:, 1:] = -1e9
    k = beam_candidates(num_beams, n_eos=2)
    got = beam_topk(logits, beam_scores, num_beams, k)
    assert_result(got, hf_step(logits, beam_scores, num_beams, k), "init")
    assert bool((got.beam_indices[:, :vocab] == 0).all())


def test_processed_log_probs() -> None:
    """apply_log_softmax=False: the input already is transformers' processed log-probs."""
    logits = torch.log_softmax(torch.randn(10, 64), dim=-1)
    logits[3, :5] = NEG_INF
    beam_scores = torch.randn(10)
    got = beam_topk(logits, beam_scores, 5, 10, apply_log_softmax=False)
    assert_result(got, hf_step(logits, beam_scores, 5, 10, log_softmax=False), "processed")


# --------------------------------------------------------------------------- ties and ordering
@pytest.mark.parametrize("num_beams", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("batch", [1, 7])
def test_planted_ties(num_beams: int, batch: int) -> None:
    """Few distinct values: ties everywhere, inside and across beams; lowest flat index wins."""
    vocab = 9
    logits = torch.randint(0, 3, (batch * num_beams, vocab)).float()
    beam_scores = torch.randint(-1, 1, (batch * num_beams,)).float()
    for log_softmax in (True, False):
        for k in range(1, num_beams * vocab + 1, 3):
            got = beam_topk(logits, beam_scores, num_beams, k, apply_log_softmax=log_softmax)
            assert_result(got, stable_oracle(logits, beam_scores, num_beams, k, log_softmax), f"k={k}")
            ids, beams = python_oracle(logits, beam_scores, num_beams, k, log_softmax)
            assert_same(got.token_ids, ids, what="python oracle ids")
            assert_same(got.beam_indices, beams, what="python oracle beams")


def test_flat_rows_take_lowest_flat_index() -> None:
    logits = torch.zeros(2 * 3, 5)
    got = beam_topk(logits, torch.zeros(6), 3, 7)
    assert got.beam_indices.tolist() == [[0] * 5 + [1] * 2] * 2
    assert got.token_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1]] * 2


def test_tie_created_by_adding_the_beam_score() -> None:
    """Distinct log-probs that round to one sum rank by flat index, not by log-prob.

    A ranking of each beam row by its log-probs alone (then adding the constant) would pick
    token 1 here: 1 + 1e8 == 1.0000001 + 1e8 in float32.
    """
    logits = torch.tensor([[1.0, 1.0000001, -5.0]])
    got = beam_topk(logits, torch.tensor([1e8]), 1, 1, apply_log_softmax=False)
    assert got.token_ids.tolist() == [[0]]
    assert_result(got, stable_oracle(logits, torch.tensor([1e8]), 1, 1, False), "rounded tie")


def test_signed_zero_ties() -> None:
    logits = torch.tensor([[-0.0, 0.0, -0.0], [0.0, -0.0, -1.0]])
    beam_scores = torch.tensor([-0.0, 0.0])
    got = beam_topk(logits, beam_scores, 2, 6, apply_log_softmax=False)
    assert got.token_ids.tolist() == [[0, 1, 2, 0, 1, 2]]
    assert got.beam_indices.tolist() == [[0, 0, 0, 1, 1, 1]]
    assert_result(got, stable_oracle(logits, beam_scores, 2, 6, False), "signed zeros")


# --------------------------------------------------------------------------- bad rows
def test_dead_beams_rank_last() -> None:
    batch, num_beams, vocab = 2, 3, 4
    logits = torch.randn(batch * num_beams, vocab)
    beam_scores = torch.tensor([0.0, NEG_INF, -2.0, NEG_INF, NEG_INF, -1.0])
    k = num_beams * vocab
    got = beam_topk(logits, beam_scores, num_beams, k)
    assert_result(got, stable_oracle(logits, beam_scores, num_beams, k), "dead beams")
    assert_same(got.scores[:, :8], hf_step(logits, beam_scores, num_beams, k)[0][:, :8], what="vs hf")
    # Item 0: 8 live candidates, then beam 1's four -inf candidates in token order.
    assert got.beam_indices[0, 8:].tolist() == [1, 1, 1, 1] and got.token_ids[0, 8:].tolist() == [0, 1, 2, 3]
    assert bool(torch.isneginf(got.scores[0, 8:]).all())
    # Item 1: 4 live candidates, then the -inf ones by lowest flat index (beam 0 before beam 1).
    assert got.beam_indices[1, 4:].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_masked_and_all_neg_inf_rows() -> None:
    """-inf logits stay out; an all -inf row's log-softmax is NaN, which ranks first (as in torch.topk)."""
    num_beams, vocab = 3, 6
    logits = torch.randn(2 * num_beams, vocab)
    logits[0, ::2] = NEG_INF
    logits[4] = NEG_INF
    beam_scores = torch.zeros(2 * num_beams)
    k = 8
    got = beam_topk(logits, beam_scores, num_beams, k)
    assert_result(got, stable_oracle(logits, beam_scores, num_beams, k), "masked")
    assert not bool(((got.beam_indices[0] == 0) & (got.token_ids[0] % 2 == 0)).any())
    assert got.beam_indices[1, :vocab].tolist() == [1] * vocab and got.token_ids[1, :vocab].tolist() == list(
        range(vocab)
    )
    assert bool(torch.isnan(got.scores[1, :vocab]).all()) and not bool(
        torch.isnan(got.scores[1, vocab:]).any()
    )
    hf_values = hf_step(logits, beam_scores, num_beams, k)[0]
    assert_same(got.scores, hf_values, what="same scores as torch.topk")


def test_nan_rows_rank_first() -> None:
    num_beams, vocab = 2, 5
    logits = torch.randn(2 * num_beams, vocab)
    logits[1, 3] = NAN  # whole row NaN after log_softmax
    logits[2, 0] = -NAN
    k = 7
    got = beam_topk(logits, torch.zeros(4), num_beams, k)
    assert_result(got, stable_oracle(logits, torch.zeros(4), num_beams, k), "nan rows")
    assert got.beam_indices[:, :vocab].tolist() == [[1] * vocab, [0] * vocab]
    assert bool(torch.isnan(got.scores[:, :vocab]).all()) and not bool(
        torch.isnan(got.scores[:, vocab:]).any()
    )


def test_nan_and_inf_values_ordering() -> None:
    """Processed scores: NaN (either sign) > +inf > finite > -inf; ties by flat index."""
    logits = torch.tensor([[1.0, NEG_INF, -NAN, float("inf"), NAN, 2.0]])
    got = beam_topk(logits, torch.zeros(1), 1, 6, apply_log_softmax=False)
    assert got.token_ids.tolist() == [[2, 4, 3, 5, 0, 1]]
    ids, _ = python_oracle(logits, torch.zeros(1), 1, 6, False)
    assert got.token_ids.tolist() == ids.tolist()


def test_nan_beam_score() -> None:
    logits = torch.randn(4, 3)
    beam_scores = torch.tensor([0.0, NAN, -1.0, 0.0])
    got = beam_topk(logits, beam_scores, 2, 4)
    assert_result(got, stable_oracle(logits, beam_scores, 2, 4), "nan beam score")
    assert got.beam_indices[0, :3].tolist() == [1, 1, 1]


# --------------------------------------------------------------------------- shapes, dtypes, layouts
def test_vocab_one() -> None:
    num_beams = 4
    logits = torch.randn(3 * num_beams, 1)
    beam_scores = torch.randn(3 * num_beams)
    got = beam_topk(logits, beam_scores, num_beams, num_beams)
    assert bool((got.token_ids == 0).all())
    assert_result(got, hf_step(logits, beam_scores, num_beams, num_beams), "V=1")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32(dtype: torch.dtype) -> None:
    logits = (torch.randn(7 * 3, 300) * 4).to(dtype)  # many ties after rounding
    beam_scores = -torch.rand(21)
    k = beam_candidates(3, 1)
    got = beam_topk(logits, beam_scores, 3, k)
    assert_result(got, beam_topk(logits.float(), beam_scores, 3, k), "half vs float32")
    assert_result(got, stable_oracle(logits, beam_scores, 3, k), "half stable")
    assert_same(got.scores, hf_step(logits, beam_scores, 3, k)[0], what="half vs hf values")
    half_scores = beam_topk(logits, beam_scores.to(dtype), 3, k)
    assert_result(half_scores, stable_oracle(logits, beam_scores.to(dtype).float(), 3, k), "half beam scores")


def test_strided_inputs() -> None:
    base = torch.randn(2 * 4, 2 * 50)
    logits = base[:, ::2]
    transposed = torch.randn(50, 8).t()
    scores_base = torch.randn(16)
    beam_scores = scores_base[::2]
    for x in (logits, transposed):
        assert not x.is_contiguous()
        got = beam_topk(x, beam_scores, 4, 8)
        assert_result(got, beam_topk(x.contiguous(), beam_scores.contiguous(), 4, 8), "strided")
        assert_result(got, hf_step(x, beam_scores, 4, 8), "strided vs hf")


def test_two_dim_beam_scores() -> None:
    logits = torch.randn(6, 10)
    beam_scores = torch.randn(2, 3)
    assert_result(
        beam_topk(logits, beam_scores, 3, 6),
        beam_topk(logits, beam_scores.reshape(6), 3, 6),
        "2-d beam scores",
    )


def test_empty_batch() -> None:
    got = beam_topk(torch.randn(0, 5), torch.zeros(0), 2, 3)
    assert got.scores.shape == (0, 3) and got.token_ids.shape == (0, 3)


def test_returns_new_tensors() -> None:
    logits = torch.randn(1, 4)
    got = beam_topk(logits, torch.zeros(1), 1, 4, apply_log_softmax=False)
    assert got.scores.data_ptr() != logits.data_ptr()
    assert isinstance(got, BeamTopK) and isinstance(got, tuple)


def test_device(device: torch.device) -> None:
    logits = torch.randint(0, 4, (12, 33)).float()
    beam_scores = torch.randn(12)
    got = beam_topk(logits.to(device), beam_scores.to(device), 4, 8)
    cpu = beam_topk(logits, beam_scores, 4, 8)
    for a, b in zip(got, cpu):
        assert_same(a.cpu(), b, what=f"{device} vs cpu")


def test_beam_candidates() -> None:
    assert beam_candidates(4) == 8
    assert beam_candidates(4, 1) == 8
    assert beam_candidates(3, 2) == 9
    assert beam_candidates(1, 5) == 6
    with pytest.raises(ValueError, match="num_beams"):
        beam_candidates(0)
    with pytest.raises(ValueError, match="n_eos"):
        beam_candidates(2, -1)
    with pytest.raises(TypeError, match="num_beams"):
        beam_candidates(2.0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- bad inputs
def test_bad_inputs() -> None:
    logits, scores = torch.randn(6, 5), torch.zeros(6)
    with pytest.raises(ValueError, match="logits"):
        beam_topk(logits, scores, 4, 2)
    with pytest.raises(ValueError, match="logits"):
        beam_topk(torch.randn(6), scores, 3, 2)
    with pytest.raises(TypeError, match="logits"):
        beam_topk(torch.zeros(6, 5, dtype=torch.int64), scores, 3, 2)
    with pytest.raises(ValueError, match="num_beams"):
        beam_topk(logits, scores, 0, 2)
    with pytest.raises(TypeError, match="num_beams"):
        beam_topk(logits, scores, 3.0, 2)  # type: ignore[arg-type]
    for k in (0, -1, 16):
        with pytest.raises(ValueError, match=r"\bk\b"):
            beam_topk(logits, scores, 3, k)
    for k in (2.0, True):
        with pytest.raises(TypeError, match=r"\bk\b"):
            beam_topk(logits, scores, 3, k)  # type: ignore[arg-type]
    for bad in (torch.zeros(5), torch.zeros(3, 2), torch.zeros(6, 1), torch.zeros(())):
        with pytest.raises(ValueError, match="beam_scores"):
            beam_topk(logits, bad, 3, 2)
    for bad in (torch.zeros(6, dtype=torch.int64), torch.zeros(6, dtype=torch.float64)):
        with pytest.raises(TypeError, match="beam_scores"):
            beam_topk(logits, bad, 3, 2)
    with pytest.raises(TypeError, match="beam_scores"):
        beam_topk(logits, [0.0] * 6, 3, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="apply_log_softmax"):
        beam_topk(logits, scores, 3, 2, apply_log_softmax=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beam_scores"):
        beam_topk(logits, torch.zeros(6, device="meta"), 3, 2)


# --------------------------------------------------------------------------- reference structure
def test_two_stage_reference_equals_single_pass() -> None:
    """The registered reference (per-row top-k, then merge) equals one top-k over num_beams * vocab."""
    gen = torch.Generator().manual_seed(1)
    for trial in range(40):
        num_beams = 1 + trial % 5
        vocab = int(torch.randint(1, 20, (), generator=gen))
        batch = 1 + trial % 3
        logits = torch.randint(-2, 2, (batch * num_beams, vocab), generator=gen).float()
        beam_scores = torch.randint(-2, 1, (batch * num_beams,), generator=gen).float() * 0.5
        k = int(torch.randint(1, num_beams * vocab + 1, (), generator=gen))
        got = beam.beam_topk_torch(logits, beam_scores, num_beams, k, True)
        assert_result(BeamTopK(*got), stable_oracle(logits, beam_scores, num_beams, k), f"trial {trial}")


@pytest.mark.slow
def test_torch_compile() -> None:
    def step(x: torch.Tensor, s: torch.Tensor) -> BeamTopK:
        return beam_topk(x * 1.0, s, 3, 6)

    logits = torch.randint(0, 3, (9, 40)).float()
    beam_scores = torch.randn(9)
    compiled = torch.compile(step, fullgraph=False)
    got = compiled(logits, beam_scores)
    assert isinstance(got, BeamTopK)
    assert_result(got, step(logits, beam_scores), "compiled")
