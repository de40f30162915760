"""pytest-benchmark suite of generate: ``pydecode.generate`` and transformers' ``model.generate``
on the same model and prompts (``--gen-model``: the demo model by default), per strategy of
:data:`pydecode.benchmarks.generate.STRATEGIES` and batch size. Every row generates
``--gen-new-tokens`` tokens in both (``min_new_tokens`` = ``max_new_tokens``); greedy and beam
ids are checked to be identical before timing."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from pydecode.benchmarks.generate import STRATEGIES, prompt_ids

PROVIDERS = ("transformers", "pydecode")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "strategy" in metafunc.fixturenames:
        params = [(s, b, p) for b in metafunc.config.getoption("--gen-batch") for s in STRATEGIES for p in PROVIDERS]
        metafunc.parametrize("strategy, batch, provider", params, ids=[f"{s}-b{b}-{p}" for s, b, p in params])


@pytest.fixture(scope="module")
def model_and_tokenizer(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    from pydecode.demo_model import load_model

    return load_model(request.config.getoption("--gen-model"))


def _kwargs(request: pytest.FixtureRequest, strategy: str, pad: int) -> dict[str, Any]:
    new = request.config.getoption("--gen-new-tokens")
    return dict(max_new_tokens=new, min_new_tokens=new, pad_token_id=pad, **STRATEGIES[strategy])


def test_generate(benchmark: Any, request: pytest.FixtureRequest, model_and_tokenizer: tuple[Any, Any],
                  strategy: str, batch: int, provider: str) -> None:
    import pydecode

    model, tokenizer = model_and_tokenizer
    ids = prompt_ids(tokenizer, model.config.vocab_size, batch, request.config.getoption("--gen-prompt-len"))
    mask = torch.ones_like(ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    kwargs = _kwargs(request, strategy, pad)
    sampling = bool(kwargs.get("do_sample"))

    def hf() -> torch.Tensor:
        torch.manual_seed(0)
        with torch.no_grad():
            return model.generate(ids, attention_mask=mask, **kwargs)

    def ours() -> torch.Tensor:
        return pydecode.generate(model, ids, attention_mask=mask, **({"seed": 0} if sampling else {}), **kwargs)

    if provider == "pydecode" and not sampling:  # parity first: a fast wrong answer is not a result
        assert torch.equal(ours(), hf()), f"{strategy}: pydecode's ids differ from transformers'"
    new = request.config.getoption("--gen-new-tokens")
    benchmark.extra_info = {
        "bench": "generate", "case": strategy, "provider": provider,
        "backend": "auto" if provider == "pydecode" else "generate", "batch": batch,
        "vocab": int(model.config.vocab_size), "dtype": str(model.dtype).replace("torch.", ""), "new_tokens": new,
        "ids_identical": True if provider == "pydecode" and not sampling else "",
        "params": f"model={request.config.getoption('--gen-model')} "
                  f"prompt={request.config.getoption('--gen-prompt-len')} new={new} {STRATEGIES[strategy]} "
                  "(pytest-benchmark)",
    }
    benchmark.pedantic(ours if provider == "pydecode" else hf, rounds=3, warmup_rounds=1, iterations=1)
