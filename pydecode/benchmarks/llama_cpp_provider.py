"""llama.cpp's CPU sampler chain as a benchmark peer (optional: needs ``llama-cpp-python``).

Runs llama.cpp's own samplers through llama-cpp-python's low-level ctypes API, with no model:
one ``llama_sampler_chain_init`` chain per row (the penalties sampler keeps per-sequence
history), each applied with ``llama_sampler_apply`` to a ``llama_token_data_array`` built from
that row's logits. Building the array is timed too: ``llama_sampler_sample`` rebuilds it from
the logits on every call, ``{id, logit, p = 0}`` for every token, since the samplers reorder
and truncate it in place. The sampled token is then ``llama_sampler_accept``-ed, as
``llama_sampler_sample`` does (it updates the penalties' ring of recent tokens).

Stage order. ``order="hf"`` (default) chains penalties -> temperature -> top-k -> top-p -> min-p -> dist,
the order of transformers' processors and pydecode's fused op, so every provider samples from
the same filtered distribution (llama.cpp's penalty rule ``l <= 0 ? l * p : l / p`` equals
transformers' except at exactly 0). ``order="llama"`` is llama.cpp's default CLI order,
penalties -> top-k -> top-p -> min-p -> temperature -> dist: the nucleus is then taken before the
temperature, so it is larger (and llama.cpp's top-p falls back to a full sort once the nucleus
exceeds its 256-candidate partial sort).

The chains hold C state; :meth:`LlamaSamplerChains.close` (or garbage collection) frees them.
"""

from __future__ import annotations

import ctypes
import importlib.util
from collections.abc import Sequence
from typing import Optional

import torch

ORDERS = ("hf", "llama")


def unavailable_reason() -> str:
    """Why the llama.cpp peer cannot run here; '' when it can."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install llama-cpp-python; builds llama.cpp from source)"
    try:
        _api()
    except Exception as exc:  # a broken build must not break the benchmark
        return f"llama_cpp fails to load ({type(exc).__name__}: {exc})"
    return ""


def _api():
    import llama_cpp  # optional dependency, imported on use

    return llama_cpp


def version() -> str:
    """llama-cpp-python's version (and the bundled llama.cpp's build string when it has one)."""
    api = _api()
    text = getattr(api, "__version__", "unknown")
    try:
        native = api.llama_version()
        if native:
            text += f" (llama.cpp {native.decode() if isinstance(native, bytes) else native})"
    except (AttributeError, TypeError):  # older bindings: no llama_version()
        pass
    return text


def _check_layout(api) -> None:
    """The token buffers assume ``llama_token_data`` is ``{int32 id; float logit; float p}``."""
    fields = [(name, ctypes.sizeof(ctype), getattr(api.llama_token_data, name).offset)
              for name, ctype in api.llama_token_data._fields_]
    if fields != [("id", 4, 0), ("logit", 4, 4), ("p", 4, 8)] or ctypes.sizeof(api.llama_token_data) != 12:
        raise RuntimeError(f"unexpected llama_token_data layout {fields}")


class LlamaSamplerChains:
    """One llama.cpp sampler chain per row of a ``(batch, vocab)`` logits tensor.

    Args:
        batch, vocab: the shape of the logits :meth:`sample` receives.
        temperature, top_k, top_p, min_p: stage parameters; None leaves the stage out.
        repetition_penalty: None, or the penalty of llama.cpp's penalties sampler (frequency and
            presence 0), applied over ``history``.
        history: ``(batch, n)`` int token ids accepted into each row's chain before timing
            (the prompt + generated tokens); ``penalty_last_n`` is ``n``.
        seed: seed of row ``b``'s ``dist`` sampler is ``seed + b``.
        order: ``"hf"`` or ``"llama"`` (module docstring).
    """

    def __init__(
        self,
        batch: int,
        vocab: int,
        *,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        min_p: Optional[float] = None,
        repetition_penalty: Optional[float] = None,
        history: Optional[torch.Tensor] = None,
        seed: int = 1234,
        order: str = "hf",
    ) -> None:
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if repetition_penalty is not None and history is None:
            raise ValueError("history is needed with repetition_penalty")
        self._api = api = _api()
        self.batch, self.vocab = batch, vocab
        self._chains = []
        hist = None if history is None else history.to(torch.int64).cpu().tolist()
        for b in range(batch):
            params = api.llama_sampler_chain_default_params()
            params.no_perf = True
            chain = api.llama_sampler_chain_init(params)
            stages = []
            if repetition_penalty is not None:
                stages.append(api.llama_sampler_init_penalties(vocab, len(hist[b]), repetition_penalty, 0.0, 0.0))
            temp = [api.llama_sampler_init_temp(temperature)] if temperature is not None else []
            if order == "hf":
                stages += temp
            if top_k is not None:
                stages.append(api.llama_sampler_init_top_k(top_k))
            if top_p is not None:
                stages.append(api.llama_sampler_init_top_p(top_p, 1))
            if min_p is not None:
                stages.append(api.llama_sampler_init_min_p(min_p, 1))
            if order == "llama":
                stages += temp
            stages.append(api.llama_sampler_init_dist(seed + b))
            for stage in stages:
                api.llama_sampler_chain_add(chain, stage)  # the chain owns and frees its stages
            if hist is not None:
                for token in hist[b]:
                    api.llama_sampler_accept(chain, token)
            self._chains.append(chain)
        # Per-row token buffers, reused across calls like llama.cpp's own `cur` vector: (vocab, 3)
        # int32 tensors laid out as llama_token_data {int32 id; float logit; float p}. Filling one
        # with torch.stack costs about what llama_sampler_sample's own fill loop does (a numpy
        # structured-field assignment is twice as slow and would flatter pydecode).
        _check_layout(api)
        self._ids = torch.arange(vocab, dtype=torch.int32)
        self._zeros = torch.zeros(vocab, dtype=torch.int32)
        self._buffers = [torch.zeros(vocab, 3, dtype=torch.int32) for _ in range(batch)]
        self._arrays = [api.llama_token_data_array() for _ in range(batch)]

    def sample_row(self, b: int, row: torch.Tensor) -> int:
        """Sample row ``b`` from its contiguous float32 CPU logits ``row`` (``(vocab,)``)."""
        api = self._api
        buf, arr = self._buffers[b], self._arrays[b]
        torch.stack([self._ids, row.view(torch.int32), self._zeros], dim=1, out=buf)
        # The samplers may move `data` and shrink `size`: reset them on every call.
        arr.data = ctypes.cast(buf.data_ptr(), api.llama_token_data_p)
        arr.size = self.vocab
        arr.selected = -1
        arr.sorted = False
        chain = self._chains[b]
        api.llama_sampler_apply(chain, ctypes.byref(arr))
        if arr.selected < 0:
            raise RuntimeError("llama.cpp's chain selected no token")
        token = int(arr.data[arr.selected].id)
        api.llama_sampler_accept(chain, token)
        return token

    def sample(self, logits: torch.Tensor, rows: Optional[Sequence[int]] = None) -> list[int]:
        """One token per row (all rows, or ``rows``) of ``(batch, vocab)`` CPU logits."""
        x = logits.detach().to("cpu", torch.float32).contiguous()
        return [self.sample_row(b, x[b]) for b in (range(self.batch) if rows is None else rows)]

    def close(self) -> None:
        for chain in self._chains:
            self._api.llama_sampler_free(chain)
        self._chains = []

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may already be gone
            pass
