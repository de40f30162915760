"""The cuda backend of the penalty ops (csrc/cuda/penalties.cu) against the torch references on
the same CUDA tensors, bit for bit, and against the cpu backend. GPU only (`gpu` marker); tests
named `big` run the full shapes and are left out of the compute-sanitizer run."""

from __future__ import annotations

import pytest
import torch

from pydecode import _ext
from pydecode.ops import penalties as P
from tests.helpers import assert_same
from tests.ops.logit_cases import BIG_SHAPES, DTYPES, SMALL_SHAPES, assert_exact, make_ids, make_logits

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _need_cuda_module() -> None:
    if not torch.cuda.is_available() or _ext.cuda_module() is None:
        pytest.skip(f"the CUDA module cannot run here: {_ext.cuda_unavailable_reason()}")


def _both(fn, *args, **kwargs):
    # make_ids plants ids >= vocab: the stateless ops run on their out_of_vocab="ignore" path.
    kwargs.setdefault("out_of_vocab", "ignore")
    return fn(*args, backend="cuda", **kwargs), fn(*args, backend="torch", **kwargs)


def _check_apply(batch: int, vocab: int, dtype: torch.dtype, seq: int, gen: int, seed: int) -> None:
    logits = make_logits(batch, vocab, seed, dtype)
    input_ids = make_ids(batch, seq, vocab, seed + 1)
    output_ids = make_ids(batch, gen, vocab, seed + 2, torch.int32)
    rep = torch.linspace(0.5, 2.0, batch, device="cuda")
    presence = torch.linspace(-1.0, 1.5, batch, device="cuda")
    mask = (torch.arange(gen, device="cuda")[None, :] % 5 != 1).expand(batch, gen).contiguous()
    got, want = _both(
        P.apply_penalties, logits, input_ids, output_ids, repetition_penalty=rep, presence_penalty=presence,
        frequency_penalty=0.3, prompt_ignore_length=seq // 4, output_mask=mask,
    )
    assert_exact(got, want, "apply_penalties")
    for name, fn, args, kwargs in [
        ("repetition", P.repetition_penalty, (logits, input_ids, rep), {}),
        ("presence_frequency", P.presence_frequency_penalty, (logits, output_ids, presence, 0.7), {}),
    ]:
        got, want = _both(fn, *args, **kwargs)
        assert_exact(got, want, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BIG_SHAPES)
def test_big_penalties_equal_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    _check_apply(*shape, dtype, seq=640, gen=300, seed=shape[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SMALL_SHAPES)
def test_penalties_equal_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    _check_apply(*shape, dtype, seq=37, gen=19, seed=7)


def test_penalties_long_generation_uses_the_global_table() -> None:
    # 5000 generated ids need a count table of 16384 slots: past shared memory, in the workspace.
    _check_apply(3, 1031, torch.float32, seq=50, gen=5000, seed=3)
    _check_apply(300, 111, torch.bfloat16, seq=10, gen=2100, seed=4)  # more rows than table blocks


def test_penalties_strided_views_and_int32() -> None:
    base = make_logits(6, 1200, 11)
    input_ids = make_ids(6, 90, 1000, 12, torch.int32)
    output_ids = make_ids(12, 40, 1000, 13)[::2]  # row stride 80
    for logits in (base[:, 1:1001], base[::2, 3:1003], base[:, :1000].t().contiguous().t(), base[:1, 5:].expand(6, -1)):
        batch = logits.shape[0]
        got, want = _both(
            P.apply_penalties, logits, input_ids[:batch], output_ids[:batch], repetition_penalty=1.3,
            presence_penalty=0.25, frequency_penalty=-0.5,
        )
        assert_exact(got, want, f"strides {logits.stride()}")


def test_encoder_repetition_groups() -> None:
    logits = make_logits(12, 333, 21, torch.float16)
    enc = make_ids(3, 50, 333, 22)
    penalty = torch.linspace(0.3, 3.0, 12, device="cuda")
    got, want = _both(P.encoder_repetition_penalty, logits, enc, penalty)
    assert_exact(got, want, "encoder repetition")
    got, want = _both(P.encoder_repetition_penalty, logits, enc[0], 1.7)
    assert_exact(got, want, "encoder repetition, one prompt")


def test_penalties_degenerate_shapes() -> None:
    for batch, vocab, seq in [(0, 10, 3), (2, 0, 3), (2, 10, 0)]:
        logits = make_logits(batch, vocab, 1) if vocab else torch.zeros(batch, 0, device="cuda")
        ids = make_ids(batch, seq, max(vocab, 1), 2)
        got, want = _both(P.apply_penalties, logits, ids, ids, repetition_penalty=1.5, presence_penalty=1.0)
        assert_exact(got, want, f"{batch}x{vocab}, seq {seq}")


def test_penalties_match_cpu_backend() -> None:
    logits = make_logits(9, 5003, 31)
    input_ids = make_ids(9, 200, 5003, 32)
    output_ids = make_ids(9, 80, 5003, 33)
    # The cpu backend divides (s / p) where torch on CUDA multiplies by 1 / p: one ulp apart at most.
    got = P.repetition_penalty(logits, input_ids, 1.7, backend="cuda", out_of_vocab="ignore")
    cpu = P.repetition_penalty(logits.cpu(), input_ids.cpu(), 1.7, backend="cpu", out_of_vocab="ignore")
    assert_same(got, cpu, rtol=2.0**-22, what="repetition, cuda vs cpu")
    # No division in presence/frequency: the same bits.
    got = P.presence_frequency_penalty(logits, output_ids, 0.5, 0.25, backend="cuda", out_of_vocab="ignore")
    cpu = P.presence_frequency_penalty(logits.cpu(), output_ids.cpu(), 0.5, 0.25, backend="cpu", out_of_vocab="ignore")
    assert_exact(got, cpu.cuda(), "presence/frequency, cuda vs cpu")


def _state_steps(batch: int, vocab: int, prompt: int, steps: int, dtype: torch.dtype) -> None:
    prompt_ids = make_ids(batch, prompt, vocab, 41)
    state = P.PenaltyState(prompt_ids, vocab, prompt_ignore_length=prompt // 3, out_of_vocab="ignore")
    history = [prompt_ids]
    active_rows = []
    g = torch.Generator().manual_seed(42)
    for step in range(steps):
        tokens = torch.randint(0, vocab + 2, (batch,), generator=g).to("cuda")
        tokens[: batch // 2] = tokens[: batch // 2] % 7  # repeats
        active = (torch.arange(batch) % 4 != step % 4).to("cuda")
        state.update(tokens, active)
        history.append(tokens[:, None])
        active_rows.append(active[:, None])
    logits = make_logits(batch, vocab, 43, dtype)
    kwargs = dict(repetition_penalty=torch.linspace(0.6, 1.6, batch, device="cuda"), presence_penalty=0.4,
                  frequency_penalty=0.15)
    got = P.apply_penalties_from_state(logits, state, backend="cuda", **kwargs)
    want = P.apply_penalties_from_state(logits, state, backend="torch", **kwargs)
    assert_exact(got, want, "state")
    full = P.apply_penalties(
        logits, torch.cat(history, 1), torch.cat(history[1:], 1), prompt_ignore_length=prompt // 3,
        output_mask=torch.cat(active_rows, 1), out_of_vocab="ignore", backend="torch", **kwargs,
    )
    assert_exact(got, full, "state vs apply_penalties")
    only_rep = P.apply_penalties_from_state(logits, state, repetition_penalty=1.9, backend="cuda")
    assert_exact(only_rep, P.apply_penalties_from_state(logits, state, repetition_penalty=1.9, backend="torch"))


def test_state_equals_references() -> None:
    _state_steps(7, 1031, 30, 70, torch.float32)  # 70 steps: one doubling of the state's capacity


@pytest.mark.parametrize("dtype", DTYPES)
def test_big_state_equals_references(dtype: torch.dtype) -> None:
    _state_steps(64, 152064, 500, 20, dtype)


def test_out_of_vocab_ids_raise_on_cuda_tensors() -> None:
    """out_of_vocab="raise" (the default) on CUDA tensors: the Python scan refuses ids >= vocab for the
    cuda and torch backends alike (the kernels only skip them), naming the argument, vocab and id."""
    logits = make_logits(2, 20, 51)
    oov = torch.tensor([[3, 25, 4], [7, 1, 1]], device="cuda")
    calls = [
        ("input_ids", lambda b: P.repetition_penalty(logits, oov, 1.3, backend=b)),
        ("input_ids", lambda b: P.apply_penalties(logits, oov, oov, repetition_penalty=1.3, backend=b)),
        ("output_ids", lambda b: P.presence_frequency_penalty(logits, oov.int(), 0.5, 0.2, backend=b)),
        ("encoder_input_ids", lambda b: P.encoder_repetition_penalty(logits, oov, 1.3, backend=b)),
    ]
    for name, call in calls:
        for backend in ("cuda", "torch"):
            with pytest.raises(ValueError, match=rf"{name} must hold token ids < 20 \(.*\), got 25"):
                call(backend)
    state = P.PenaltyState(oov.clamp(max=19), 20)
    with pytest.raises(ValueError, match=r"new_tokens must hold token ids < 20 \(vocab_size\), got 20"):
        state.update(torch.tensor([20, 3], device="cuda"))
    with pytest.raises(ValueError, match="prompt_ids must hold token ids < 20"):
        P.PenaltyState(oov, 20)


def test_kernels_refuse_malformed_calls() -> None:
    mod = _ext.cuda_module()
    logits = make_logits(2, 10, 1)
    out = torch.empty_like(logits)
    ids = make_ids(2, 4, 10, 2)
    with pytest.raises(ValueError, match="batch"):
        mod.apply_penalties(logits.data_ptr(), 0, -1, 10, 10, out.data_ptr(), ids.data_ptr(), True, 2, 4, 4,
                            0, 0, 0, True, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="divides the batch"):
        mod.apply_penalties(logits.data_ptr(), 0, 2, 10, 10, out.data_ptr(), ids.data_ptr(), True, 3, 4, 4,
                            logits.data_ptr(), 0, 0, True, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="together"):
        mod.apply_penalties(logits.data_ptr(), 0, 2, 10, 10, out.data_ptr(), 0, True, 0, 0, 0,
                            0, 0, ids.data_ptr(), True, 4, 4, 0, 0, logits.data_ptr(), 0, 0, 0, 0)
    with pytest.raises(ValueError, match="workspace"):
        mod.apply_penalties(logits.data_ptr(), 0, 2, 10, 10, out.data_ptr(), 0, True, 0, 0, 0, 0, 0,
                            ids.data_ptr(), True, 5000, 4, 0, 0, logits.data_ptr(), logits.data_ptr(), 0, 0, 0)
    with pytest.raises(ValueError, match="dtype code"):
        mod.apply_penalties_state(logits.data_ptr(), 7, 2, 10, 10, out.data_ptr(), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="null pointer"):
        mod.apply_penalties_state(logits.data_ptr(), 0, 2, 10, 10, out.data_ptr(), 0, 0, 0, 0, 4, 4, 0, 0, 0, 0)
