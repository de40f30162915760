"""Model runners: how the scheduler gets next-token logits out of a model, step by step.

Two kinds, one interface (``prefill``, ``step``, ``reorder_cache``, ``cache``):

* :class:`HFModelRunner` drives a transformers model with the model's own plumbing
  (``_prefill``, ``prepare_inputs_for_generation``, ``_update_model_kwargs_for_generation``,
  the model's cache object and its ``reorder_cache``), exactly as transformers' decoding loops
  do: pydecode reproduces the decoding loop, not the model's input preparation.
* :class:`CallableRunner` drives the plain-PyTorch protocol :class:`StepFunction`.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional, Protocol, runtime_checkable

import torch

__all__ = ["CallableRunner", "HFModelRunner", "StepFunction", "model_cache_key", "output_cache",
           "prepare_encoder_kwargs"]

CACHE_NAMES = ("cache", "past_key_values", "cache_params", "state", "mems", "past_buckets_states")


@runtime_checkable
class StepFunction(Protocol):
    """The plain-PyTorch model protocol: ``logits, cache = fn(input_ids, cache)``.

    * First call: ``input_ids`` is the whole prompt ``(batch, prompt_len)`` int64 and
      ``cache is None``; later calls: only the new tokens ``(batch, 1)`` and the cache the
      previous call returned.
    * ``logits``: ``(batch, vocab)`` (the next-token logits) or ``(batch, seq, vocab)`` (the last
      position is used), any float dtype.
    * ``cache``: anything (a tuple of tensors, a transformers ``Cache``, None for no cache: then
      ``fn`` receives the whole sequence every step).
    * Beam search also needs the cache's rows permuted between steps: ``fn.reorder_cache(cache,
      beam_idx) -> cache`` if ``fn`` has it, else pydecode applies ``index_select(0, beam_idx)``
      to every tensor in (nested tuples/lists/dicts of) the cache, or calls
      ``cache.reorder_cache(beam_idx)`` on an object that has it.
    """

    def __call__(self, input_ids: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]: ...


def prepare_encoder_kwargs(model: Any, inputs: torch.Tensor, model_kwargs: dict, input_name: Optional[str],
                           generation_config: Any) -> dict:
    """Run the model's encoder once before decoding, as ``generate`` does, and return the model kwargs.

    transformers 5.24 has one entry point for text and multimodal encoders
    (``_maybe_prepare_encoder_kwargs_for_generation``); earlier 5.x releases (5.17, say) only have
    the encoder-decoder one, called when the model is an encoder-decoder without ``encoder_outputs``.
    """
    prepare = getattr(model, "_maybe_prepare_encoder_kwargs_for_generation", None)
    if prepare is not None:
        return prepare(inputs, model_kwargs, input_name, generation_config)
    if model.config.is_encoder_decoder and model_kwargs.get("encoder_outputs") is None:
        return model._prepare_encoder_decoder_kwargs_for_generation(inputs, model_kwargs, input_name,
                                                                    generation_config)
    return model_kwargs


def model_cache_key(model: Any) -> str:
    """The keyword that carries the cache into ``prepare_inputs_for_generation`` and the forward:
    ``cache`` in transformers 5.24, ``past_key_values`` in earlier 5.x releases."""
    params = inspect.signature(model.prepare_inputs_for_generation).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(outputs: Any) -> Any:
    """The cache a forward returned, under either name (see :func:`model_cache_key`)."""
    for name in ("cache", "past_key_values"):
        value = getattr(outputs, name, None)
        if value is not None:
            return value
    return None


def _last_logits(logits: torch.Tensor, device: torch.device) -> torch.Tensor:
    if logits.dim() == 3:
        logits = logits[:, -1, :]
    # float32 for the processors (transformers casts too); a copy is made only when needed.
    return logits.to(dtype=torch.float32, device=device)


class HFModelRunner:
    """Step a transformers ``GenerationMixin`` model the way its ``_sample`` / ``_beam_search`` do."""

    # Tests turn this off to compare the fast input path against the model's own method.
    fast_inputs = True

    def __init__(self, model: Any, model_kwargs: dict, generation_config: Any, *, compiled: bool = True) -> None:
        self.model = model
        self.kwargs = model_kwargs
        self.config = generation_config
        self.is_encoder_decoder = bool(model.config.is_encoder_decoder)
        self.keep_outputs = bool(
            generation_config.return_dict_in_generate
            and (generation_config.output_attentions or generation_config.output_hidden_states)
        )
        self.last_outputs: Any = None
        self._fast: Optional[bool] = None
        # transformers' _sample uses the auto-compiled forward when its criteria hold (static caches
        # on GPU); _beam_search always calls the module. Same choice here.
        use_compiled = compiled and model._valid_auto_compile_criteria(model_kwargs, generation_config)
        self.forward = model.get_compiled_call(generation_config.compile_config) if use_compiled else model.__call__

    def _take(self, outputs: Any, device: torch.device) -> torch.Tensor:
        self.kwargs = self.model._update_model_kwargs_for_generation(
            outputs, self.kwargs, is_encoder_decoder=self.is_encoder_decoder
        )
        self.last_outputs = outputs if self.keep_outputs else None
        return _last_logits(outputs.logits, device)

    def prefill(self, input_ids: torch.Tensor) -> torch.Tensor:
        outputs = self.model._prefill(
            input_ids, self.config, self.kwargs, is_first_iteration=not getattr(self.config, "is_assistant", False)
        )
        return self._take(outputs, input_ids.device)

    def step(self, input_ids: torch.Tensor) -> torch.Tensor:
        inputs = self._fast_inputs(input_ids) if self.fast_inputs and self._fast_ok() else None
        if inputs is None:
            next_len = 1 if self.kwargs.get("use_cache", True) else None
            inputs = self.model.prepare_inputs_for_generation(input_ids, next_sequence_length=next_len, **self.kwargs)
        outputs = self.forward(**inputs, return_dict=True)
        return self._take(outputs, input_ids.device)

    def _fast_ok(self) -> bool:
        """Whether :meth:`_fast_inputs` builds exactly what ``prepare_inputs_for_generation`` would.

        Decided once: the model uses transformers' generic ``prepare_inputs_for_generation`` (not an
        override), decoder-only, a dynamic (non-compileable) cache, no inputs_embeds / token types /
        multimodal inputs, not remote code. That generic method costs about as much as a tiny model's
        layer per step (argument inspection and dict building), so the common case skips it.
        """
        if self._fast is None:
            from transformers.generation.utils import MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL, GenerationMixin

            model, kw = self.model, self.kwargs
            cache = self.cache
            special = {"inputs_embeds", "token_type_ids", "mm_token_type_ids", "moe_mm_token_type_ids",
                       *MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL}
            self._fast = bool(
                type(model).prepare_inputs_for_generation is GenerationMixin.prepare_inputs_for_generation
                and not self.is_encoder_decoder
                and kw.get("use_cache", True)
                and cache is not None
                and not getattr(cache, "is_compileable", True)
                and not any(kw.get(k) is not None for k in special)
                and not model.is_remote_code()
                and (kw.get("attention_mask") is None or kw["attention_mask"].dim() == 2)
            )
        return self._fast

    def _fast_inputs(self, input_ids: torch.Tensor) -> dict:
        # The dict transformers' generic prepare_inputs_for_generation returns for one new token
        # with a dynamic cache (same keys, same slicing and contiguous clones).
        inputs = {"input_ids": input_ids[:, -1:].clone(memory_format=torch.contiguous_format)}
        for key, value in self.kwargs.items():
            if key in ("labels", "next_sequence_length", "inputs_embeds", "is_first_iteration"):
                continue
            if key in ("cache", "past_key_values", "attention_mask") and value is None:
                continue
            inputs[key] = value
        position_ids = self.kwargs.get("position_ids")
        if position_ids is not None and position_ids.shape[-1] != 1:
            inputs["position_ids"] = position_ids[..., -1:].clone(memory_format=torch.contiguous_format)
        if input_ids.device != self.model.device and self.model.device.type != "meta":
            return None  # transformers moves inputs to the model device here: let it
        return inputs

    @property
    def cache_key(self) -> Optional[str]:
        return next((k for k in CACHE_NAMES if k in self.kwargs), None)

    @property
    def cache(self) -> Any:
        key = self.cache_key
        return None if key is None else self.kwargs[key]

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        key = self.cache_key
        if key is None:
            return
        if hasattr(self.model, "_reorder_cache"):
            self.kwargs[key] = self.model._reorder_cache(self.kwargs[key], beam_idx)
        elif hasattr(self.kwargs[key], "reorder_cache"):
            self.kwargs[key].reorder_cache(beam_idx)
        else:
            raise ValueError(
                f"{type(self.model).__name__} cannot use beam search with a cache: its cache cannot be reordered"
            )

    def crop_cache(self, length: int) -> None:
        """Drop cache entries past ``length`` tokens (after extra steps run by a deferred stop check)."""
        cache = self.cache
        if cache is None or not hasattr(cache, "crop") or not hasattr(cache, "get_seq_length"):
            return
        # transformers' Cache.crop takes minus the number of tokens to remove (5.24 rejects a
        # positive length; older 5.x read a negative value the same way).
        remove = int(cache.get_seq_length()) - length
        if remove > 0:
            cache.crop(-remove)

    def attentions(self) -> tuple:
        out = self.last_outputs
        if self.is_encoder_decoder:
            return (out.decoder_attentions, out.cross_attentions)
        return (out.attentions, None)

    def hidden_states(self) -> Any:
        out = self.last_outputs
        return out.decoder_hidden_states if self.is_encoder_decoder else out.hidden_states


def _index_rows(cache: Any, beam_idx: torch.Tensor) -> Any:
    if isinstance(cache, torch.Tensor):
        return cache.index_select(0, beam_idx.to(cache.device))
    if isinstance(cache, (tuple, list)):
        return type(cache)(_index_rows(c, beam_idx) for c in cache)
    if isinstance(cache, dict):
        return {k: _index_rows(v, beam_idx) for k, v in cache.items()}
    if hasattr(cache, "reorder_cache"):
        cache.reorder_cache(beam_idx)
        return cache
    if cache is None:
        return None
    raise TypeError(
        f"cannot reorder a cache of type {type(cache).__name__} for beam search: give the step function a "
        "reorder_cache(cache, beam_idx) attribute"
    )


class CallableRunner:
    """Step a :class:`StepFunction` (plain-PyTorch protocol)."""

    is_encoder_decoder = False
    keep_outputs = False

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.cache: Any = None

    def _call(self, ids: torch.Tensor, device: torch.device) -> torch.Tensor:
        result = self.fn(ids, self.cache)
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.Tensor)):
            raise TypeError("a step function must return (logits, cache), logits a (batch, [seq,] vocab) tensor")
        logits, self.cache = result
        if logits.dim() not in (2, 3) or logits.shape[0] != ids.shape[0]:
            raise ValueError(
                f"step function returned logits of shape {tuple(logits.shape)} "
                f"for input_ids of shape {tuple(ids.shape)}"
            )
        return _last_logits(logits, device)

    def prefill(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self._call(input_ids, input_ids.device)

    def step(self, input_ids: torch.Tensor) -> torch.Tensor:
        # With no cache the function sees the whole sequence every step.
        ids = input_ids if self.cache is None else input_ids[:, -1:]
        return self._call(ids, input_ids.device)

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        reorder = getattr(self.fn, "reorder_cache", None)
        self.cache = reorder(self.cache, beam_idx) if reorder is not None else _index_rows(self.cache, beam_idx)

    def crop_cache(self, length: int) -> None:
        if hasattr(self.cache, "crop"):
            self.cache.crop(length)
