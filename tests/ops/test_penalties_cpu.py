"""The cpu backend of the penalty ops (csrc/cpu/penalties.cpp) against the torch references,
bit for bit, and PenaltyState against apply_penalties over many decode steps."""

from __future__ import annotations

from typing import Optional

import pytest
import torch

from pydecode import _ext
from pydecode.ops import _cpu
from pydecode.ops import penalties as P
from tests.helpers import assert_same, row_kinds

if _ext.cpu_module() is None:
    pytest.skip(f"the CPU module is not built: {_ext.cpu_unavailable_reason()}", allow_module_level=True)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (batch, vocab): batch 1 to 64, vocab 1 to 262144 with odd sizes; the big ones keep batch small.
SHAPES = [(1, 1), (3, 1), (1, 7), (9, 111), (64, 50), (8, 5003), (2, 32000), (3, 128256), (1, 262144)]
KINDS = 8


# --------------------------------------------------------------------------- inputs
def make_logits(batch: int, vocab: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return row_kinds(batch, vocab, seed, dtype, kinds=KINDS)


def make_ids(batch: int, seq: int, high: int, seed: int, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """Ids in [0, high) with repeats (a small pool plus spread ids)."""
    g = torch.Generator().manual_seed(seed)
    if seq == 0:
        return torch.zeros(batch, 0, dtype=dtype)
    ids = torch.randint(0, max(1, min(high, 16)), (batch, seq), generator=g)
    ids[:, ::3] = torch.randint(0, high, (batch, len(range(0, seq, 3))), generator=g)
    return ids.to(dtype)


def both(fn, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """The op on the cpu backend and on the torch reference."""
    out = fn(*args, **kwargs, backend="cpu")
    assert out.dtype == torch.float32 and out.is_contiguous()
    return out, fn(*args, **kwargs, backend="torch")


def strided(x: torch.Tensor, mode: str) -> torch.Tensor:
    """The same values with other strides: rows of a wider buffer, every other row, or column-major."""
    if mode == "wide":
        wide = torch.full((x.shape[0], x.shape[1] + 5), 7.0, dtype=x.dtype)
        wide[:, 2 : 2 + x.shape[1]] = x
        return wide[:, 2 : 2 + x.shape[1]]
    if mode == "every_other":
        buf = torch.zeros((2 * x.shape[0], x.shape[1]), dtype=x.dtype)
        buf[::2] = x
        return buf[::2]
    return x.t().contiguous().t()


# --------------------------------------------------------------------------- repetition
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_repetition_equals_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    batch, vocab = shape
    logits = make_logits(batch, vocab, seed=batch * 7 + vocab, dtype=dtype)
    ids = make_ids(batch, 40, vocab, seed=vocab)
    for penalty in (1.3, torch.linspace(0.5, 3.0, batch)):
        assert_same(*both(P.repetition_penalty, logits, ids, penalty), what=f"{shape} {dtype}")


@pytest.mark.parametrize("mode", ["wide", "every_other", "column_major"])
def test_repetition_strided_logits_and_ids(mode: str) -> None:
    logits = make_logits(16, 3001, seed=1)
    ids = make_ids(16, 600, 3001, seed=2)
    buffer = torch.zeros(16, 800, dtype=torch.int32)
    buffer[:, :600] = ids
    for x in (strided(logits, mode), strided(logits.bfloat16(), mode)):
        assert_same(*both(P.repetition_penalty, x, buffer[:, :600], 1.7), what=mode)
    # Broadcast rows (stride 0) and a single-column id tensor.
    assert_same(*both(P.repetition_penalty, logits[:1].expand(5, -1), ids[:1].expand(5, -1), 1.2))
    assert_same(*both(P.repetition_penalty, logits, ids[:, ::7][:, :1], 2.0))


def test_repetition_prompt_ignore_length_and_int32() -> None:
    logits = make_logits(9, 700, seed=3)
    ids = make_ids(9, 60, 700, seed=4)
    per_row = torch.tensor([0, 1, 5, 59, 60, 61, 1000, 12, 30])
    for ignore in (0, 7, 60, 100, per_row, per_row.int()):
        for id_dtype in (torch.int64, torch.int32):
            assert_same(
                *both(P.repetition_penalty, logits, ids.to(id_dtype), 1.4, prompt_ignore_length=ignore),
                what=f"ignore={ignore}",
            )


def test_repetition_empty_and_degenerate() -> None:
    for batch, vocab, seq in [(0, 10, 3), (3, 0, 0), (4, 9, 0), (1, 1, 1)]:
        logits = make_logits(batch, vocab, seed=5)
        ids = make_ids(batch, seq, max(vocab, 1), seed=6)
        assert_same(*both(P.repetition_penalty, logits, ids, 1.5), what=f"{(batch, vocab, seq)}")


# Batch 1 rows this long are split across the threads (csrc/cpu/penalties.cpp: 2^18 elements
# per chunk at least), so each thread applies the ids of its half of the vocabulary.
SPLIT_VOCAB = 2**19 + 3


def test_penalties_at_the_vocabulary_split() -> None:
    """Batch 1, a split row: ids at both ends and around the split point."""
    vocab = SPLIT_VOCAB
    logits = make_logits(1, vocab, seed=7)
    half = (vocab + 1) // 2
    edges = [0, 1, vocab - 1] + list(range(half - 40, half + 40)) + list(range(2**18 - 3, 2**18 + 3))
    ids = torch.tensor([edges * 2])
    mask = torch.rand(ids.shape, generator=torch.Generator().manual_seed(1)) < 0.6
    assert_same(*both(P.repetition_penalty, logits, ids, 1.9))
    assert_same(*both(P.presence_frequency_penalty, logits, ids, 0.5, 0.25, output_mask=mask))
    assert_same(*both(P.apply_penalties, logits, ids, ids[:, 50:], repetition_penalty=0.7, frequency_penalty=1.0))
    assert_same(*both(P.encoder_repetition_penalty, logits.bfloat16(), ids, 1.3))
    state = P.PenaltyState(ids, vocab)
    state.update(torch.tensor([half]))
    assert_same(
        *both(P.apply_penalties_from_state, logits, state, repetition_penalty=1.5, presence_penalty=0.5)
    )


# --------------------------------------------------------------------------- encoder repetition
@pytest.mark.parametrize("shape", [(1, 7), (6, 111), (12, 5003), (4, 128256)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_encoder_repetition_equals_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    batch, vocab = shape
    logits = make_logits(batch, vocab, seed=batch + vocab, dtype=dtype)
    for enc_rows in sorted({1, batch // 2 or 1, batch}):
        if batch % enc_rows:
            continue
        enc = make_ids(enc_rows, 33, vocab, seed=enc_rows)
        for penalty in (0.7, torch.linspace(0.5, 2.0, batch)):
            assert_same(*both(P.encoder_repetition_penalty, logits, enc, penalty), what=f"{shape} enc={enc_rows}")
    assert_same(*both(P.encoder_repetition_penalty, strided(logits, "wide"), enc[0], 1.3))


# --------------------------------------------------------------------------- presence / frequency
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_presence_frequency_equals_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    batch, vocab = shape
    logits = make_logits(batch, vocab, seed=batch + 3 * vocab, dtype=dtype)
    ids = make_ids(batch, 50, vocab, seed=batch)
    mask = torch.rand(batch, 50, generator=torch.Generator().manual_seed(vocab)) < 0.7
    params = [(0.5, 0.25), (0.0, -1.5), (torch.linspace(-1, 1, batch), torch.linspace(2, 0, batch))]
    for presence, frequency in params:
        assert_same(*both(P.presence_frequency_penalty, logits, ids, presence, frequency), what=f"{shape}")
        assert_same(
            *both(P.presence_frequency_penalty, logits, ids, presence, frequency, output_mask=mask), what="mask"
        )


def test_presence_frequency_overflow_strided_and_empty() -> None:
    logits = make_logits(8, 300, seed=8)
    ids = make_ids(8, 200, 300, seed=9)
    # frequency * count overflows to inf, presence + inf - inf gives NaN: IEEE as in the reference.
    assert_same(*both(P.presence_frequency_penalty, logits, ids, 3e38, 3e38))
    assert_same(*both(P.presence_frequency_penalty, logits, ids, -3e38, 3e38))
    mask = torch.zeros(8, 400, dtype=torch.bool)
    mask[:, ::2] = True
    wide_ids = torch.zeros(8, 400, dtype=torch.int64)
    wide_ids[:, ::2] = ids
    assert_same(
        *both(P.presence_frequency_penalty, strided(logits, "every_other"), wide_ids[:, ::2], 0.3, 0.2,
              output_mask=mask[:, ::2])
    )
    assert_same(*both(P.presence_frequency_penalty, logits, ids[:, :0], 0.3, 0.2))


# --------------------------------------------------------------------------- fused
@pytest.mark.parametrize("shape", [(1, 1), (5, 111), (33, 5003), (2, 128256), (1, 262144)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_apply_penalties_equals_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    batch, vocab = shape
    logits = make_logits(batch, vocab, seed=vocab, dtype=dtype)
    input_ids = make_ids(batch, 80, vocab, seed=1)
    output_ids = input_ids[:, 50:]
    mask = torch.rand(batch, 30, generator=torch.Generator().manual_seed(2)) < 0.8
    ignore = torch.arange(batch) * 7 % 90
    cases = [
        dict(repetition_penalty=1.3),
        dict(presence_penalty=0.4),
        dict(frequency_penalty=torch.linspace(-1, 1, batch)),
        dict(repetition_penalty=0.8, presence_penalty=0.5, frequency_penalty=0.1, output_mask=mask),
        dict(repetition_penalty=torch.linspace(0.5, 2, batch), presence_penalty=torch.linspace(0, 1, batch),
             frequency_penalty=0.3, prompt_ignore_length=ignore),
        dict(),
    ]
    for kwargs in cases:
        assert_same(*both(P.apply_penalties, logits, input_ids, output_ids, **kwargs), what=f"{shape} {kwargs}")


# --------------------------------------------------------------------------- PenaltyState
def _run_state(batch: int, vocab: int, steps: int, *, seed: int, ignore=None, attention=None, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, vocab, (batch, 37), generator=g)
    prompt[:, ::2] %= min(20, vocab)  # repeats inside the prompt
    state = P.PenaltyState(prompt, vocab, prompt_ignore_length=ignore, attention_mask=attention)
    torch_state = P.PenaltyState(prompt, vocab, prompt_ignore_length=ignore, attention_mask=attention)
    reference_ignore = ignore
    if attention is not None:  # left padding: the same as ignoring the leading zeros
        reference_ignore = (attention.cumsum(1) == 0).sum(1)
    generated = torch.zeros(batch, 0, dtype=torch.int64)
    active = torch.zeros(batch, 0, dtype=torch.bool)
    rep = torch.linspace(0.6, 1.8, batch)
    for step in range(steps):
        if step % 9 == 0 or step == steps - 1:
            logits = make_logits(batch, vocab, seed=step, dtype=dtype)
            for kwargs in (
                dict(repetition_penalty=rep, presence_penalty=0.4, frequency_penalty=torch.linspace(-1, 1, batch)),
                dict(repetition_penalty=1.3),
                dict(frequency_penalty=0.2),
            ):
                expected = P.apply_penalties(
                    logits, torch.cat([prompt, generated], 1), generated, prompt_ignore_length=reference_ignore,
                    output_mask=active, backend="torch", **kwargs,
                )
                for backend in ("cpu", "torch"):
                    got = P.apply_penalties_from_state(logits, state, backend=backend, **kwargs)
                    assert_same(got, expected, what=f"step {step} {backend} {kwargs}")
            assert _entries(state) == _entries(torch_state), f"step {step}: C++ and torch updates differ"
        new = torch.randint(0, min(24, vocab), (batch,), generator=g)
        new[::3] = torch.randint(0, vocab, (len(range(0, batch, 3)),), generator=g)
        live = torch.rand(batch, generator=g) < 0.8
        state.update(new, live if step % 2 else None)
        torch_state.update(new, live if step % 2 else None, backend="torch")
        generated = torch.cat([generated, new[:, None]], 1)
        active = torch.cat([active, (live if step % 2 else torch.ones(batch, dtype=torch.bool))[:, None]], 1)
    return state


def _entries(state: P.PenaltyState) -> list[dict[int, tuple[bool, int]]]:
    """Each row's live entries as {token: (in_rep, count)} (the list order is not part of the state)."""
    rows = []
    for b in range(state.batch):
        n = int(state.lengths[b])
        rows.append({
            int(t): (bool(r), int(c))
            for t, r, c in zip(state.tokens[b, :n], state.in_rep[b, :n], state.counts[b, :n])
        })
        slot = state.slot[b, : state.vocab_size]
        assert sorted(slot[slot >= 0].tolist()) == list(range(n))  # the lookup indexes every entry once
        assert torch.equal(state.tokens[b, slot[slot >= 0].long()], (slot >= 0).nonzero()[:, 0])
    return rows


def test_state_equals_apply_penalties_over_many_steps() -> None:
    state = _run_state(6, 97, 150, seed=0)
    assert state.capacity >= 150  # grew past its initial 64 spare entries
    assert int(state.lengths.max()) <= 97


def test_state_prompt_ignore_length_and_attention_mask() -> None:
    _run_state(5, 300, 30, seed=1, ignore=torch.tensor([0, 3, 36, 37, 45]))
    _run_state(4, 300, 12, seed=2, ignore=10, dtype=torch.bfloat16)
    attention = torch.ones(4, 37, dtype=torch.int64)
    attention[1, :5] = 0
    attention[2, :36] = 0
    attention[3, :] = 0
    _run_state(4, 300, 12, seed=3, attention=attention)


def test_state_big_vocab_batch_one() -> None:
    _run_state(1, 128256, 20, seed=4)


def test_state_errors() -> None:
    state = P.PenaltyState(torch.tensor([[1, 2, 3]]), 10)
    for backend in ("cpu", "torch"):
        with pytest.raises(ValueError):
            state.update(torch.tensor([-1]), backend=backend)
    with pytest.raises(ValueError):
        state.update(torch.tensor([1, 2]))
    with pytest.raises(ValueError):
        state.update(torch.tensor([1]), torch.tensor([1]))
    with pytest.raises(ValueError):
        P.apply_penalties_from_state(torch.zeros(1, 11), state, repetition_penalty=1.2)
    with pytest.raises(ValueError):
        P.apply_penalties_from_state(torch.zeros(1, 10), state, repetition_penalty=0.0)
    with pytest.raises(ValueError):
        P.PenaltyState(torch.tensor([[1, -2]]), 10)
    with pytest.raises(ValueError):
        P.PenaltyState(torch.tensor([[1, 2]]), 0)
    out = state.apply(torch.zeros(1, 10) + 1.0, repetition_penalty=2.0, backend="cpu")
    assert out.tolist() == [[1.0, 0.5, 0.5, 0.5] + [1.0] * 6]


# --------------------------------------------------------------------------- malformed calls
def _raw_args(**overrides) -> dict:
    logits = torch.zeros(2, 10)
    out = torch.empty(2, 10)
    ids = torch.tensor([[1, 2], [3, 4]])
    pen = torch.ones(2)
    args = dict(
        logits=logits.data_ptr(), dtype=0, batch=2, vocab=10, logits_stride=10, out=out.data_ptr(),
        rep_ids=ids.data_ptr(), rep_ids64=True, rep_rows=2, rep_len=2, rep_stride=2, rep_penalty=pen.data_ptr(),
        ignore=0, out_ids=ids.data_ptr(), out_ids64=True, out_len=2, out_stride=2, out_mask=0, mask_stride=0,
        presence=pen.data_ptr(), frequency=pen.data_ptr(), check_vocab=True,
    )
    args.update(overrides)
    return args, (logits, out, ids, pen)


def test_compiled_functions_refuse_malformed_calls() -> None:
    mod = _cpu.module()
    args, keep = _raw_args()
    mod.apply_penalties(**args)  # well-formed
    negative = torch.tensor([[1, -2], [3, 4]])
    negative32 = negative.int()
    oov = torch.tensor([[1, 2], [10, 4]])
    oov32 = oov.int()  # alive through the calls: the kernels get raw addresses
    mod.apply_penalties(**{**args, "rep_ids": oov.data_ptr(), "out_ids": oov.data_ptr(), "check_vocab": False})
    bad = [
        dict(batch=-1), dict(vocab=-3), dict(logits_stride=-1), dict(logits=0), dict(out=0), dict(dtype=3),
        dict(rep_len=-1), dict(rep_ids=0), dict(rep_rows=0), dict(rep_rows=3), dict(rep_stride=-2),
        dict(out_len=-1), dict(out_ids=0), dict(presence=0), dict(mask_stride=-1, out_mask=keep[2].data_ptr()),
        dict(rep_ids=negative.data_ptr()), dict(rep_ids=negative32.data_ptr(), rep_ids64=False),
        dict(out_ids=negative.data_ptr(), presence=0, frequency=0, rep_ids=negative.data_ptr()),
        dict(out_ids=negative.data_ptr()),
    ]
    for override in bad:
        with pytest.raises(ValueError):
            mod.apply_penalties(**{**args, **override})
    # Out-of-range penalties, named in the message: the Python layer leaves these checks to the
    # kernel when the cpu backend runs.
    zero, nan, inf = torch.tensor([1.0, 0.0]), torch.tensor([float("nan"), 1.0]), torch.tensor([1.0, float("inf")])
    minus = torch.tensor([0, -1])
    named = [
        (dict(rep_ids=negative.data_ptr()), "input_ids must hold token ids >= 0"),
        (dict(rep_ids=negative.data_ptr(), check_vocab=False), "input_ids must hold token ids >= 0"),
        (dict(rep_ids=oov.data_ptr()), r"input_ids must hold token ids < 10 \(.*\), got 10 at row 1, position 0"),
        (dict(out_ids=oov.data_ptr()), r"output_ids must hold token ids < 10 \(.*\), got 10 at row 1, position 0"),
        (dict(out_ids=oov32.data_ptr(), out_ids64=False), "output_ids must hold token ids < 10"),
        (dict(rep_penalty=zero.data_ptr()), "repetition_penalty"),
        (dict(rep_penalty=nan.data_ptr()), "repetition_penalty"),
        (dict(presence=inf.data_ptr()), "presence_penalty"),
        (dict(frequency=nan.data_ptr()), "frequency_penalty"),
        (dict(ignore=minus.data_ptr()), "prompt_ignore_length"),
    ]
    for override, message in named:
        with pytest.raises(ValueError, match=message):
            mod.apply_penalties(**{**args, **override})
    # Out-of-range ids are refused on every thread split (batch 1, vocabulary split).
    big = torch.zeros(1, SPLIT_VOCAB)
    out = torch.empty_like(big)
    ids = torch.tensor([[5, 500000, -1]])
    split = {"logits": big.data_ptr(), "out": out.data_ptr(), "batch": 1, "vocab": SPLIT_VOCAB,
             "logits_stride": SPLIT_VOCAB, "rep_ids": ids.data_ptr(), "rep_rows": 1, "rep_len": 3, "rep_stride": 3,
             "out_ids": ids.data_ptr(), "out_len": 3, "out_stride": 3}
    with pytest.raises(ValueError):
        mod.apply_penalties(**{**args, **split, "presence": 0, "frequency": 0})
    with pytest.raises(ValueError):
        mod.apply_penalties(**{**args, **split, "rep_penalty": 0})
    over = torch.tensor([[5, SPLIT_VOCAB]])
    split.update(rep_ids=over.data_ptr(), out_ids=over.data_ptr(), rep_len=2, rep_stride=2, out_len=2, out_stride=2)
    for part in ({"presence": 0, "frequency": 0}, {"rep_penalty": 0}):
        with pytest.raises(ValueError, match=f"must hold token ids < {SPLIT_VOCAB}"):
            mod.apply_penalties(**{**args, **split, **part})
        mod.apply_penalties(**{**args, **split, **part, "check_vocab": False})
    # The scratch counts are left clean by a refused call: the next call is right.
    logits = make_logits(2, 300, seed=11)
    gen = make_ids(2, 40, 300, seed=12)
    assert_same(*both(P.presence_frequency_penalty, logits, gen, 0.5, 0.5))


def test_state_kernel_refuses_malformed_calls() -> None:
    mod = _cpu.module()
    logits, out = torch.zeros(2, 10), torch.empty(2, 10)
    tokens = torch.tensor([[1, 2, 0], [3, 4, 0]])
    in_rep = torch.ones(2, 3, dtype=torch.bool)
    counts = torch.ones(2, 3, dtype=torch.int32)
    lengths = torch.tensor([2, 2])
    pen = torch.ones(2)
    good = dict(logits=logits.data_ptr(), dtype=0, batch=2, vocab=10, logits_stride=10, out=out.data_ptr(),
                tokens=tokens.data_ptr(), in_rep=in_rep.data_ptr(), counts=counts.data_ptr(),
                lengths=lengths.data_ptr(), capacity=3, stride=3, rep_penalty=pen.data_ptr(),
                presence=pen.data_ptr(), frequency=pen.data_ptr())
    mod.apply_penalties_state(**good)
    too_long = torch.tensor([2, 4])
    negative = torch.tensor([[1, -2, 0], [3, 4, 0]])
    zero = torch.tensor([0.0, 1.0])
    for override in [dict(capacity=-1), dict(stride=-1), dict(lengths=too_long.data_ptr()), dict(tokens=0),
                     dict(lengths=0), dict(frequency=0), dict(tokens=negative.data_ptr()), dict(batch=-2),
                     dict(rep_penalty=zero.data_ptr())]:
        with pytest.raises(ValueError):
            mod.apply_penalties_state(**{**good, **override})


def test_state_update_kernel_refuses_malformed_calls() -> None:
    mod = _cpu.module()
    state = P.PenaltyState(torch.tensor([[1, 2, 3], [4, 4, 4]]), 10)
    before = _entries(state)
    cap = state.capacity

    def call(new: torch.Tensor, **override) -> None:
        args = dict(tokens=state.tokens.data_ptr(), in_rep=state.in_rep.data_ptr(), counts=state.counts.data_ptr(),
                    lengths=state.lengths.data_ptr(), slot=state.slot.data_ptr(), batch=2, capacity=cap,
                    stride=cap + 1, vocab=10, new_tokens=new.data_ptr(), active=0, ignore=0, position=3,
                    check_vocab=True)
        mod.penalty_state_update(**{**args, **override})

    ok, negative = torch.tensor([5, 6]), torch.tensor([5, -6])
    full, too_long = torch.tensor([cap, 1]), torch.tensor([1, cap + 1])
    corrupt = state.slot.clone()
    corrupt[0, 5] = 7  # points past the row's 3 entries
    for new, override in [(negative, {}), (negative, dict(check_vocab=False)), (torch.tensor([5, 10]), {}),
                          (ok, dict(batch=-1)), (ok, dict(capacity=-1)),
                          (ok, dict(vocab=-1)),
                          (ok, dict(stride=1)), (ok, dict(tokens=0)), (ok, dict(slot=0)), (ok, dict(new_tokens=0)),
                          (ok, dict(lengths=full.data_ptr())), (ok, dict(lengths=too_long.data_ptr())),
                          (ok, dict(slot=corrupt.data_ptr()))]:
        with pytest.raises(ValueError):
            call(new, **override)
    assert _entries(state) == before  # refused calls change nothing
    call(ok)
    assert _entries(state) == [{1: (True, 0), 2: (True, 0), 3: (True, 0), 5: (True, 1)}, {4: (True, 0), 6: (True, 1)}]


def _reference_count(ids: torch.Tensor, vocab: int, mask: Optional[torch.Tensor]) -> torch.Tensor:
    counts = torch.zeros(ids.shape[0], vocab + 1, dtype=torch.int64)
    use = ids.clamp(max=vocab) if mask is None else torch.where(mask, ids.clamp(max=vocab), vocab)
    return counts.scatter_add_(1, use, torch.ones_like(use))[:, :vocab]


def test_frequency_counts_match_a_dense_count() -> None:
    """With presence 0 and frequency 1 on zero logits, out = -count: the kernel's counts exactly."""
    ids = make_ids(33, 500, 997, seed=13)
    mask = torch.rand(33, 500, generator=torch.Generator().manual_seed(14)) < 0.5
    out = P.presence_frequency_penalty(torch.zeros(33, 997), ids, 0.0, 1.0, output_mask=mask, backend="cpu")
    assert torch.equal(-out, _reference_count(ids, 997, mask).float())
