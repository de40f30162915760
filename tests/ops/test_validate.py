"""Argument validation shared by every op: clear errors that name the argument and the range."""

from __future__ import annotations

import math

import pytest
import torch

from pydecode.ops._registry import backend_unavailable_reason
from pydecode.ops._validate import (
    check_index_tensor,
    check_int,
    check_logits,
    check_token_ids,
    env_count,
    env_switch,
    row_param,
    scan_values,
)

CPU = torch.device("cpu")


def test_check_logits_accepts_float_2d_any_strides() -> None:
    x = torch.randn(4, 6)
    assert check_logits(x.t()) is not None
    for dtype in (torch.float16, torch.bfloat16):
        check_logits(x.to(dtype))


@pytest.mark.parametrize(
    "value, error, match",
    [
        ([1.0], TypeError, "torch.Tensor"),
        (torch.randn(4), ValueError, r"shape \(batch, vocab\)"),
        (torch.randn(2, 3, 4), ValueError, r"shape \(batch, vocab\)"),
        (torch.ones(2, 3, dtype=torch.int64), TypeError, "float32, float16 or bfloat16"),
        (torch.ones(2, 3, dtype=torch.float64), TypeError, "float32, float16 or bfloat16"),
    ],
)
def test_check_logits_errors(value: object, error: type, match: str) -> None:
    with pytest.raises(error, match=f"logits.*{match}|{match}"):
        check_logits(value)  # type: ignore[arg-type]


def test_row_param_scalar_and_tensor() -> None:
    out = row_param(0.5, "top_p", 3, CPU, low=0, high=1)
    assert out.tolist() == [0.5] * 3 and out.dtype == torch.float32
    t = torch.tensor([0.1, 0.2, 1.0])
    assert torch.equal(row_param(t, "top_p", 3, CPU, low=0, high=1), t)
    assert row_param(torch.tensor(0.3), "top_p", 2, CPU, low=0, high=1).shape == (2,)
    ints = row_param(torch.tensor([1, 2], dtype=torch.int32), "top_k", 2, CPU, dtype=torch.int64, low=0)
    assert ints.dtype == torch.int64


@pytest.mark.parametrize(
    "value, kwargs, error, match",
    [
        (0.0, {"low": 0, "low_open": True}, ValueError, r"temperature must be in \(0, inf\], got 0.0"),
        (math.nan, {"low": 0}, ValueError, r"temperature must be in \[0, inf\], got nan"),
        (1.5, {"low": 0, "high": 1}, ValueError, r"temperature must be in \[0, 1\]"),
        (
            torch.tensor([0.5, math.nan]),
            {"low": 0},
            ValueError,
            "temperature must be in .* for every row, got nan at row 1",
        ),
        (torch.tensor([0.5, -1.0]), {"low": 0}, ValueError, "got -1.0 at row 1"),
        (torch.tensor([0.5, 0.5, 0.5]), {}, ValueError, r"scalar or a \(2,\) tensor"),
        ("0.5", {}, TypeError, "temperature must be a number"),
        (True, {}, TypeError, "temperature must be a number"),
    ],
)
def test_row_param_errors(value: object, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        row_param(value, "temperature", 2, CPU, **kwargs)  # type: ignore[arg-type]


def test_row_param_integer_rules() -> None:
    with pytest.raises(TypeError, match="top_k must be an integer"):
        row_param(2.5, "top_k", 2, CPU, dtype=torch.int64, low=0)
    with pytest.raises(TypeError, match="top_k must be an integer tensor"):
        row_param(torch.tensor([1.0, 2.0]), "top_k", 2, CPU, dtype=torch.int64, low=0)
    with pytest.raises(ValueError, match=r"top_k must be in \[0, inf\], got -1"):
        row_param(-1, "top_k", 2, CPU, dtype=torch.int64, low=0)


def test_value_checks_can_be_disabled_for_hot_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYDECODE_CHECK_VALUES", "0")
    row_param(torch.tensor([math.nan, 1.0]), "top_p", 2, CPU, low=0, high=1)  # no sync, no error
    with pytest.raises(ValueError, match="top_p"):  # scalars cost nothing to check: still checked
        row_param(math.nan, "top_p", 2, CPU, low=0, high=1)


def test_check_index_tensor() -> None:
    ids = torch.zeros(2, 5, dtype=torch.int64)
    assert check_index_tensor(ids, "input_ids", CPU, batch=2) is ids
    with pytest.raises(TypeError, match="input_ids must be int64 or int32"):
        check_index_tensor(ids.float(), "input_ids", CPU)
    with pytest.raises(ValueError, match="input_ids must have 3 rows"):
        check_index_tensor(ids, "input_ids", CPU, batch=3)
    with pytest.raises(ValueError, match="input_ids must have 2 dimensions"):
        check_index_tensor(ids[0], "input_ids", CPU)
    with pytest.raises(ValueError, match="must be on meta"):
        check_index_tensor(ids, "input_ids", torch.device("meta"))


def test_check_token_ids_range() -> None:
    ids = torch.tensor([[0, 4], [2, 3]])
    assert check_token_ids(ids, "input_ids", CPU, batch=2, vocab=5) is ids
    with pytest.raises(ValueError, match=r"input_ids must hold token ids < 5 \(the vocabulary of logits\), got 5"):
        check_token_ids(ids + 1, "input_ids", CPU, vocab=5)
    with pytest.raises(ValueError, match="input_ids must hold token ids >= 0, got -1"):
        check_token_ids(ids - 1, "input_ids", CPU, vocab=5)
    check_token_ids(ids + 10, "input_ids", CPU, vocab=5, values=False)  # left to the kernel


def test_scan_values_skips_only_for_kernels_that_check() -> None:
    # The torch backend relies on the Python scans; the cpu kernels check values in C++.
    assert scan_values("filter_and_sample", CPU, "torch")
    if not backend_unavailable_reason("cpu"):
        assert not scan_values("filter_and_sample", CPU, "cpu")
        assert not scan_values("apply_penalties", CPU, None)
    row_param(torch.tensor([math.nan, 1.0]), "top_p", 2, CPU, low=0, high=1, values=False)  # no scan


def test_check_int() -> None:
    assert check_int(3, "num_beams", low=1) == 3
    with pytest.raises(ValueError, match="num_beams must be >= 1, got 0"):
        check_int(0, "num_beams", low=1)
    with pytest.raises(TypeError, match="num_beams must be an int"):
        check_int(2.0, "num_beams", low=1)


def test_environment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The PYDECODE_* switches (0/1, default 1) and counts (positive integers; unset or empty: not
    forced), one parser each for every backend."""
    name = "PYDECODE_TEST_SETTING"
    monkeypatch.delenv(name, raising=False)
    assert env_switch(name) and env_count(name, "things") is None
    for value, count in (("", None), (" 4 ", 4), ("1", 1)):
        monkeypatch.setenv(name, value)
        assert env_count(name, "things") == count
    for value in ("0", "-2", "+3", "2.0", "two"):
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError, match=rf"{name} must be a positive integer \(things\), got"):
            env_count(name, "things")
    monkeypatch.setenv(name, "0")
    assert not env_switch(name)
    monkeypatch.setenv(name, "yes")
    with pytest.raises(ValueError, match=f"{name} must be 0 or 1"):
        env_switch(name)
