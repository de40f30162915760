"""Entry points: ``pydecode.generate``, ``custom_generate``, ``patch`` / ``unpatch``.

``generate(model, ...)`` takes the arguments of transformers 5.24's ``GenerationMixin.generate``
and prepares the call the way it does, with the model's own methods (config merging with the
model's ``generation_config`` and kwargs, ``validate()``, input / attention-mask / position-id /
encoder-output / cache preparation): pydecode reproduces the decoding loop, not the model's
plumbing. It then builds pydecode's logits processors and stopping criteria (same lists as
transformers' builders), a processor plan, and runs pydecode's scheduler
(:mod:`.scheduler`, :mod:`.beam`; assisted decoding: :mod:`.assisted` when present).

pydecode-only keyword arguments (all optional, consumed before the model sees kwargs):

* ``sampling_backend``: ``"philox"`` (default; pydecode's randomness contract) or ``"hf_exact"``
  (``torch.multinomial`` as transformers draws: identical ids under the same
  ``torch.manual_seed``).
* ``generator``: a ``torch.Generator``; Philox request seeds (or hf_exact draws) come from it.
* ``seed``: Philox request seed(s): an int (row ``i`` uses ``seed + i``) or an int64 tensor with
  one seed per output row (per batch item for beam sampling).

Assisted decoding dispatch: when ``assistant_model`` or ``prompt_lookup_num_tokens`` selects it,
``pydecode.generation.assisted.assisted_decoding`` is called with the arguments of transformers'
``_assisted_decoding`` (``model, input_ids, logits_processor=, stopping_criteria=,
generation_config=, streamer=, inputs_tensor=, assistant_model=, assistant_tokenizer=,
tokenizer=, **model_kwargs``) plus ``sampling_backend=, generator=, seed=``; without that module,
transformers' own ``_assisted_decoding`` runs (with pydecode's processors and criteria).
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Optional

import torch

from . import components
from .beam import beam_search
from .runner import CACHE_NAMES, CallableRunner, HFModelRunner, prepare_encoder_kwargs
from .scheduler import DecodeSettings, StopRule, check_sampling_options, decode

__all__ = ["custom_generate", "generate", "patch", "unpatch"]

logger = logging.getLogger(__name__)

_PYDECODE_KWARGS = ("sampling_backend", "generator", "seed")
_DEPRECATED_MODES = ("dola_generation", "contrastive_search", "group_beam_search", "constrained_beam_search")


def _is_hf_model(model: Any) -> bool:
    return all(hasattr(model, name) for name in ("prepare_inputs_for_generation", "_prepare_generation_config"))


def _pop_pydecode_kwargs(kwargs: dict) -> dict:
    options = {
        "sampling_backend": kwargs.pop("sampling_backend", "philox"),
        "generator": kwargs.pop("generator", None),
        "seed": kwargs.pop("seed", None),
    }
    check_sampling_options(**options)
    return options


def _to_hf_config(generation_config: Any) -> tuple[Any, Any]:
    """A transformers GenerationConfig for the model's preparation methods, and a pydecode-only
    watermarking config set aside (transformers rejects the "pydecode-hash" scheme)."""
    if generation_config is None:
        return None, None
    from .config import GenerationConfig as PDConfig

    if isinstance(generation_config, PDConfig):
        watermark = generation_config.watermarking_config
        if watermark is not None and getattr(watermark, "seeding_scheme", None) == "pydecode-hash":
            stripped = generation_config.copy()
            stripped.watermarking_config = None
            return stripped.to_transformers(), watermark
        return generation_config.to_transformers(), None
    if type(generation_config).__name__ != "GenerationConfig":
        raise TypeError(
            "generation_config must be a pydecode.GenerationConfig or a transformers.GenerationConfig, got "
            f"{type(generation_config).__name__}"
        )
    return generation_config, None


def _check_rows(name: str, value: Any, batch_size: int) -> None:
    if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] != batch_size:
        raise ValueError(
            f"{name} has batch size {value.shape[0]} but the inputs have batch size {batch_size}; they must match"
        )


def _seed_rows(generation_config: Any, batch_size: int) -> int:
    if generation_config.num_beams > 1:
        return batch_size
    return batch_size * max(generation_config.num_beams, generation_config.num_return_sequences)


def _check_seed(seed: Any, rows: int) -> None:
    if isinstance(seed, torch.Tensor) and (seed.dtype not in (torch.int64, torch.int32) or seed.shape != (rows,)):
        raise ValueError(
            f"seed tensor must be int64 of shape ({rows},) (one per output row; one per batch item for beam "
            f"sampling), got {seed.dtype} {tuple(seed.shape)}"
        )


@torch.no_grad()
def generate(
    model: Any,
    inputs: Optional[torch.Tensor] = None,
    generation_config: Any = None,
    logits_processor: Any = None,
    stopping_criteria: Any = None,
    prefix_allowed_tokens_fn: Any = None,
    synced_gpus: Optional[bool] = None,
    assistant_model: Any = None,
    streamer: Any = None,
    negative_prompt_ids: Optional[torch.Tensor] = None,
    negative_prompt_attention_mask: Optional[torch.Tensor] = None,
    **kwargs: Any,
) -> Any:
    """Generate like ``model.generate(...)`` (transformers 5.24 semantics), with pydecode's scheduler.

    ``model``: a transformers causal LM or encoder-decoder model, or a plain-PyTorch step
    function (:class:`pydecode.generation.runner.StepFunction`: ``logits, cache = fn(input_ids,
    cache)``), in which case ``generation_config``/kwargs must give the lengths and token ids and
    there is no attention mask (no padded batches).

    Returns a ``(rows, length)`` LongTensor, or with ``return_dict_in_generate=True``
    transformers' output classes (``GenerateDecoderOnlyOutput``, ``GenerateBeamDecoderOnlyOutput``
    and the encoder-decoder variants) with the same fields.
    """
    options = _pop_pydecode_kwargs(kwargs)
    if not _is_hf_model(model):
        if not callable(model):
            raise TypeError(
                f"model must be a transformers generation model or a step function, got {type(model).__name__}"
            )
        return _generate_plain(
            model, inputs, generation_config, logits_processor, stopping_criteria, prefix_allowed_tokens_fn,
            streamer, options, kwargs,
        )
    return _generate_hf(
        model, inputs, generation_config, logits_processor, stopping_criteria, prefix_allowed_tokens_fn,
        synced_gpus, assistant_model, streamer, negative_prompt_ids, negative_prompt_attention_mask, options, kwargs,
    )


def _generate_hf(
    model: Any, inputs: Any, generation_config: Any, logits_processor: Any, stopping_criteria: Any,
    prefix_allowed_tokens_fn: Any, synced_gpus: Any, assistant_model: Any, streamer: Any,
    negative_prompt_ids: Any, negative_prompt_attention_mask: Any, options: dict, kwargs: dict,
) -> Any:
    from transformers.generation.configuration_utils import GenerationMode
    from transformers.generation.logits_process import LogitsProcessorList
    from transformers.generation.stopping_criteria import StoppingCriteriaList

    kwargs.pop("trust_remote_code", None)
    if kwargs.pop("custom_generate", None) is not None:
        raise ValueError("custom_generate is a transformers option; pydecode.generate runs its own decoding loop")
    if kwargs.get("cache_implementation") == "paged":
        raise ValueError("cache_implementation='paged' (continuous batching) is not supported by pydecode.generate")
    if synced_gpus:
        raise ValueError("synced_gpus=True (DeepSpeed ZeRO-3 / FSDP) is not supported by pydecode.generate")

    # 1. Config: the model's generation_config, then the given config, then kwargs (transformers' rules).
    mode_kwargs = {
        "tokenizer": kwargs.pop("tokenizer", None),
        "assistant_tokenizer": kwargs.pop("assistant_tokenizer", None),
        "assistant_model": assistant_model,
        "streamer": streamer,
    }
    mode_kwargs = {k: v for k, v in mode_kwargs.items() if v is not None}
    hf_config, pd_watermark = _to_hf_config(generation_config)
    has_default_max_length = (
        kwargs.get("max_length") is None
        and (hf_config is None or hf_config.max_length is None)
        and model.generation_config.max_length is None
    )
    has_default_min_length = (
        kwargs.get("min_length") is None
        and (hf_config is None or hf_config.min_length is None)
        and model.generation_config.min_length is None
    )
    generation_config, model_kwargs = model._prepare_generation_config(hf_config, **kwargs)
    if pd_watermark is not None:
        generation_config.watermarking_config = pd_watermark
    generation_mode = generation_config.get_generation_mode(assistant_model)
    if generation_mode.value in _DEPRECATED_MODES:
        raise ValueError(
            f"{generation_mode.value} is not supported by pydecode (transformers moved it to a Hub repository); "
            "supported: greedy, sampling, beam search, beam sampling, assisted decoding"
        )
    model._validate_model_kwargs(model_kwargs.copy())
    model._validate_generation_mode(generation_mode, generation_config, mode_kwargs)
    logits_processor = logits_processor if logits_processor is not None else LogitsProcessorList()
    stopping_criteria = stopping_criteria if stopping_criteria is not None else StoppingCriteriaList()

    forward_params = set(inspect.signature(model.forward).parameters)
    accepts_attention_mask = "attention_mask" in forward_params
    kwargs_has_attention_mask = model_kwargs.get("attention_mask", None) is not None

    # 2. Inputs (and pydecode's own checks, before any model call).
    inputs_tensor, model_input_name, model_kwargs = model._prepare_model_inputs(
        inputs, generation_config.bos_token_id, model_kwargs
    )
    batch_size = inputs_tensor.shape[0]
    for name in ("attention_mask", "position_ids", "decoder_input_ids", "decoder_attention_mask"):
        _check_rows(name, model_kwargs.get(name), batch_size)
    _check_rows("negative_prompt_ids", negative_prompt_ids, batch_size)
    _check_rows("negative_prompt_attention_mask", negative_prompt_attention_mask, batch_size)
    _check_seed(options["seed"], _seed_rows(generation_config, batch_size))
    if (
        not model.config.is_encoder_decoder
        and model_input_name == "input_ids"
        and generation_config.max_new_tokens is None
        and not has_default_max_length
        and inputs_tensor.shape[1] >= generation_config.max_length
    ):
        raise ValueError(
            f"Input length of input_ids is {inputs_tensor.shape[1]}, but `max_length` is set to "
            f"{generation_config.max_length}: the prompt must be shorter than max_length (or set max_new_tokens)"
        )

    device = inputs_tensor.device
    model._prepare_special_tokens(generation_config, kwargs_has_attention_mask, device=device, batch_size=batch_size)
    if not model.config.is_encoder_decoder:
        pad = generation_config._pad_token_tensor
        if pad is not None and batch_size > 1 and inputs_tensor.dim() == 2:
            mask = model_kwargs.get("attention_mask")
            if mask is not None and mask.shape == inputs_tensor.shape:
                right_padded = bool(torch.any(mask[:, -1] == 0))
            else:
                right_padded = bool(torch.sum(inputs_tensor[:, -1] == pad) > 0)
            if right_padded:
                logger.warning(
                    "A decoder-only architecture is being used, but right-padding was detected! For correct "
                    "generation results, please set `padding_side='left'` when initializing the tokenizer."
                )

    # 3. Attention mask, position ids, encoder outputs, decoder inputs (the model's own methods).
    if not model.config.is_encoder_decoder and model_input_name == "inputs_embeds":
        generation_config.use_cache = True
    if not kwargs_has_attention_mask and not model.config.is_encoder_decoder and accepts_attention_mask:
        model_kwargs["attention_mask"] = model._prepare_attention_mask_for_generation(
            inputs_tensor, generation_config, model_kwargs
        )
    elif kwargs_has_attention_mask and model_input_name == "input_ids" and model_kwargs["attention_mask"].dim() > 2:
        raise ValueError("`attention_mask` passed to `generate` must be 2D.")
    if (
        model_kwargs.get("position_ids") is None
        and "position_ids" in forward_params
        and not model.config.is_encoder_decoder
    ):
        model_kwargs["position_ids"] = model._prepare_position_ids_for_generation(inputs_tensor, model_kwargs)
    _drop_all_ones_mask(model, generation_config, model_kwargs, accepts_attention_mask)
    if model_kwargs.get("encoder_outputs") is None or model_kwargs.get("mm_encoder_outputs") is None:
        model_kwargs = prepare_encoder_kwargs(model, inputs_tensor, model_kwargs, model_input_name,
                                              generation_config)
    if model.config.is_encoder_decoder:
        input_ids, model_kwargs = model._prepare_decoder_input_ids_for_generation(
            batch_size=batch_size,
            model_input_name=model_input_name,
            model_kwargs=model_kwargs,
            decoder_start_token_id=generation_config._decoder_start_token_tensor,
            device=inputs_tensor.device,
        )
    else:
        input_ids = inputs_tensor if model_input_name == "input_ids" else model_kwargs.pop("input_ids")
    input_ids, model_kwargs = model._expand_inputs_for_generation(
        input_ids=input_ids,
        expand_size=max(generation_config.num_beams, generation_config.num_return_sequences),
        is_encoder_decoder=model.config.is_encoder_decoder,
        **model_kwargs,
    )
    if generation_config.token_healing:
        input_ids = model.heal_tokens(input_ids, mode_kwargs.get("tokenizer"))
    if streamer is not None:
        streamer.put(input_ids.cpu())

    # 4. Lengths and cache.
    input_ids_length = input_ids.shape[1]
    generation_config = model._prepare_generated_length(
        generation_config=generation_config,
        has_default_max_length=has_default_max_length,
        has_default_min_length=has_default_min_length,
        model_input_name=model_input_name,
        inputs_tensor=inputs_tensor,
        input_ids_length=input_ids_length,
    )
    if model._supports_logits_to_keep() and "logits_to_keep" not in model_kwargs:
        model_kwargs["logits_to_keep"] = 1
    model._validate_generated_length(generation_config, input_ids_length, has_default_max_length)
    max_cache_length = generation_config.max_length - 1
    if (
        inputs_tensor.shape[1] != input_ids_length
        and model_input_name == "inputs_embeds"
        and not model.config.is_encoder_decoder
    ):
        max_cache_length += inputs_tensor.shape[1]
    model._prepare_cache_for_generation(generation_config, model_kwargs, generation_mode, batch_size, max_cache_length)

    # 5. pydecode's processors and stopping criteria (the lists transformers would build).
    processors = components.build_processors(
        model,
        generation_config,
        input_ids_seq_length=input_ids_length,
        encoder_input_ids=inputs_tensor,
        prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
        logits_processor=logits_processor,
        device=inputs_tensor.device,
        model_kwargs=model_kwargs,
        negative_prompt_ids=negative_prompt_ids,
        negative_prompt_attention_mask=negative_prompt_attention_mask,
    )
    criteria = components.build_stopping(
        model, generation_config, stopping_criteria=stopping_criteria, tokenizer=mode_kwargs.get("tokenizer")
    )
    model_kwargs["use_cache"] = generation_config.use_cache

    if generation_mode == GenerationMode.ASSISTED_GENERATION:
        return _assisted(model, input_ids, processors, criteria, generation_config, inputs_tensor, mode_kwargs,
                         model_kwargs, options)
    return run_decoding(model, input_ids, processors, criteria, generation_config, model_kwargs, options,
                        streamer=streamer)


def _drop_all_ones_mask(model: Any, generation_config: Any, model_kwargs: dict, accepts_attention_mask: bool) -> None:
    """transformers drops an all-ones mask (no padding) so attention takes its fast path."""
    from transformers.cache_utils import StaticCache
    from transformers.generation.utils import is_flash_attention_requested

    static = generation_config.cache_implementation == "static" or isinstance(model_kwargs.get("cache"), StaticCache)
    if (
        not model.config.is_encoder_decoder
        and accepts_attention_mask
        and not (is_flash_attention_requested(model.config) and static)
        and (model_kwargs["attention_mask"] == 1).all()
    ):
        generation_config._mask_length = model_kwargs["attention_mask"].shape[1]
        model_kwargs["attention_mask"] = None


def _assisted(model: Any, input_ids: torch.Tensor, processors: Any, criteria: Any, generation_config: Any,
              inputs_tensor: torch.Tensor, mode_kwargs: dict, model_kwargs: dict, options: dict) -> Any:
    try:
        from .assisted import assisted_decoding
    except ImportError:
        assisted_decoding = None
    if assisted_decoding is not None:
        return assisted_decoding(
            model, input_ids, logits_processor=processors, stopping_criteria=criteria,
            generation_config=generation_config, inputs_tensor=inputs_tensor, **options, **mode_kwargs,
            **model_kwargs,
        )
    from transformers.generation.utils import GenerationMixin

    return GenerationMixin._assisted_decoding(
        model, input_ids, logits_processor=processors, stopping_criteria=criteria,
        generation_config=generation_config, inputs_tensor=inputs_tensor, **mode_kwargs, **model_kwargs,
    )


def run_decoding(
    model: Any,
    input_ids: torch.Tensor,
    processors: Any,
    criteria: Any,
    generation_config: Any,
    model_kwargs: dict,
    options: dict,
    *,
    streamer: Any = None,
) -> Any:
    """The decoding loop on prepared inputs (what transformers' ``_sample`` / ``_beam_search`` do)."""
    is_beam = generation_config.num_beams > 1
    sample = bool(generation_config.do_sample)
    strategy = ("beam_sample" if sample else "beam") if is_beam else ("sample" if sample else "greedy")
    plan = components.make_plan(processors, generation_config, strategy)
    settings = DecodeSettings.from_config(
        generation_config, is_encoder_decoder=bool(model.config.is_encoder_decoder), **options
    )
    stop = StopRule(criteria, input_ids.device)
    encoder_outputs = model_kwargs.get("encoder_outputs")
    cache = next((model_kwargs[k] for k in CACHE_NAMES if model_kwargs.get(k) is not None), None)
    if not settings.return_dict and not getattr(cache, "_is_user_defined", False):
        # Nothing of the loop's state outlives the call except the ids: inference mode skips
        # autograd bookkeeping on every op (about 10% of a tiny model's step on CPU), and the
        # result is copied out so the caller gets an ordinary tensor.
        with torch.inference_mode():
            out = _loop(model, input_ids, plan, stop, settings, generation_config, model_kwargs, encoder_outputs,
                        is_beam, len(processors) > 0, streamer)
        return out.clone()
    return _loop(model, input_ids, plan, stop, settings, generation_config, model_kwargs, encoder_outputs, is_beam,
                 len(processors) > 0, streamer)


def _loop(model: Any, input_ids: torch.Tensor, plan: Any, stop: StopRule, settings: DecodeSettings,
          generation_config: Any, model_kwargs: dict, encoder_outputs: Any, is_beam: bool, has_processors: bool,
          streamer: Any) -> Any:
    if is_beam:
        if streamer is not None:
            raise ValueError(
                "`streamer` cannot be used with beam search (yet!). Make sure that `num_beams` is set to 1."
            )
        runner = HFModelRunner(model, model_kwargs, generation_config, compiled=False)
        return beam_search(
            runner, input_ids, plan, has_processors, stop, settings,
            num_beams=generation_config.num_beams,
            num_return_sequences=generation_config.num_return_sequences,
            length_penalty=generation_config.length_penalty,
            early_stopping=generation_config.early_stopping,
            eos_token_id=generation_config._eos_token_tensor,
            encoder_outputs=encoder_outputs,
        )
    runner = HFModelRunner(model, model_kwargs, generation_config)
    with model._optimize_model_for_decode():
        return decode(runner, input_ids, plan, stop, settings, streamer=streamer, encoder_outputs=encoder_outputs)


def custom_generate(
    model: Any,
    input_ids: torch.Tensor,
    logits_processor: Any,
    stopping_criteria: Any,
    generation_config: Any,
    synced_gpus: bool = False,
    streamer: Any = None,
    sampling_backend: str = "philox",
    generator: Optional[torch.Generator] = None,
    seed: Any = None,
    **model_kwargs: Any,
) -> Any:
    """pydecode's decoding loop for ``model.generate(..., custom_generate=pydecode.custom_generate)``.

    transformers prepares everything (config, inputs, cache, its own processor and criteria
    lists) and then calls this function in place of its ``_sample`` / ``_beam_search``; greedy,
    sampling, beam search and beam sampling run on pydecode's scheduler. ``sampling_backend``,
    ``generator`` and ``seed`` can be passed to ``model.generate`` (transformers forwards the
    arguments of this signature it does not know).

    Limits imposed by transformers' calling convention: it does not pass ``streamer`` or
    ``assistant_model`` to a custom decoding function (use :func:`pydecode.generate` or
    :func:`pydecode.patch` for streaming and assisted decoding), and the processors are
    transformers' own objects (each runs unchanged in its place).
    """
    if synced_gpus:
        raise ValueError("synced_gpus=True is not supported by pydecode")
    options = {"sampling_backend": sampling_backend, "generator": generator, "seed": seed}
    check_sampling_options(**options)
    if getattr(generation_config, "assistant_model", None) is not None or generation_config.prompt_lookup_num_tokens:
        raise ValueError("assisted decoding through custom_generate is not supported; use pydecode.generate")
    return run_decoding(model, input_ids, logits_processor, stopping_criteria, generation_config, model_kwargs,
                        options, streamer=streamer)


def patch(model: Any) -> Any:
    """Make ``model.generate`` run :func:`pydecode.generate` (same arguments); returns ``model``.

    The patch is an attribute on this model instance only; :func:`unpatch` removes it. Calls that
    pass ``custom_generate=`` go to transformers' own ``generate``.
    """
    if not _is_hf_model(model):
        raise TypeError(f"patch() needs a transformers generation model, got {type(model).__name__}")
    if "generate" in vars(model) and getattr(vars(model)["generate"], "_pydecode_patch", False):
        return model
    original = model.generate

    @functools.wraps(original)
    def patched(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("custom_generate") is not None:
            return original(*args, **kwargs)
        return generate(model, *args, **kwargs)

    patched._pydecode_patch = True  # type: ignore[attr-defined]
    model.generate = patched
    return model


def unpatch(model: Any) -> Any:
    """Undo :func:`patch` (no-op on a model that is not patched); returns ``model``."""
    patched = vars(model).get("generate")
    if patched is not None and getattr(patched, "_pydecode_patch", False):
        del model.generate
    return model


def _generate_plain(
    fn: Any, inputs: Any, generation_config: Any, logits_processor: Any, stopping_criteria: Any,
    prefix_allowed_tokens_fn: Any, streamer: Any, options: dict, kwargs: dict,
) -> Any:
    """The plain-PyTorch protocol: no transformers model, pydecode's config and components."""
    from .config import GenerationConfig

    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 2 or inputs.dtype != torch.long:
        raise TypeError("inputs must be an int64 (batch, prompt_len) tensor of token ids for a step function")
    if kwargs.get("attention_mask") is not None:
        raise ValueError("a step function gets no attention mask: pass unpadded prompts of equal length")
    if generation_config is None:
        config = GenerationConfig()
    elif isinstance(generation_config, GenerationConfig):
        config = generation_config.copy()
    else:
        config = GenerationConfig.from_transformers(generation_config)
    unused = config.update(**kwargs)
    if unused:
        raise ValueError(f"unknown generation arguments for a step function: {sorted(unused)}")
    has_default_max_length = config.max_length is None
    # transformers' rule: fields left unset (None) take the global defaults.
    config.update(**GenerationConfig._get_default_generation_params(), defaults_only=True)
    config.validate()
    prompt_len = inputs.shape[1]
    if config.max_new_tokens is not None:
        config.max_length = prompt_len + config.max_new_tokens
    elif has_default_max_length:
        config.max_length = prompt_len + config.max_length
    if prompt_len >= config.max_length:
        raise ValueError(f"Input length of input_ids is {prompt_len}, but `max_length` is set to {config.max_length}")
    if config.min_new_tokens is not None:
        config.min_length = config.min_new_tokens + prompt_len
    device = inputs.device
    eos = config.eos_token_id
    eos_list = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    config._eos_token_tensor = torch.tensor(eos_list, device=device) if eos_list else None
    pad = config.pad_token_id
    if pad is None and eos_list:
        pad = eos_list[0]
    config._pad_token_tensor = torch.tensor(pad, device=device) if pad is not None else None
    bos = config.bos_token_id
    config._bos_token_tensor = torch.tensor(bos, device=device) if bos is not None else None
    config._decoder_start_token_tensor = None
    expand = max(config.num_beams, config.num_return_sequences)
    _check_seed(options["seed"], inputs.shape[0] if config.num_beams > 1 else inputs.shape[0] * expand)
    input_ids = inputs.repeat_interleave(expand, dim=0) if expand > 1 else inputs
    if streamer is not None:
        streamer.put(input_ids.cpu())
    processors = components.build_processors(
        None, config, input_ids_seq_length=prompt_len, encoder_input_ids=inputs,
        prefix_allowed_tokens_fn=prefix_allowed_tokens_fn, logits_processor=logits_processor, device=device,
    )
    criteria = components.build_stopping(None, config, stopping_criteria=stopping_criteria)

    return _run_callable(fn, input_ids, processors, criteria, config, options, streamer)


def _run_callable(fn: Any, input_ids: torch.Tensor, processors: Any, criteria: Any, config: Any,
                  options: dict, streamer: Any) -> Any:
    is_beam = config.num_beams > 1
    sample = bool(config.do_sample)
    strategy = ("beam_sample" if sample else "beam") if is_beam else ("sample" if sample else "greedy")
    plan = components.make_plan(processors, config, strategy)
    settings = DecodeSettings.from_config(config, **options)
    stop = StopRule(criteria, input_ids.device)
    runner = CallableRunner(fn)
    if is_beam:
        if streamer is not None:
            raise ValueError("`streamer` cannot be used with beam search. Make sure that `num_beams` is set to 1.")
        return beam_search(
            runner, input_ids, plan, len(processors) > 0, stop, settings,
            num_beams=config.num_beams, num_return_sequences=config.num_return_sequences,
            length_penalty=config.length_penalty, early_stopping=config.early_stopping,
            eos_token_id=config._eos_token_tensor,
        )
    return decode(runner, input_ids, plan, stop, settings, streamer=streamer)

