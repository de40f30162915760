"""`GenerationConfig`, `WatermarkingConfig` and `GenerationMode`, compatible with transformers 5.x.

These classes reproduce `transformers.GenerationConfig` (checked against transformers 5.24.0): the same
fields, the same `None` ("unset, use the model's value or the global default") defaults, the same
validation errors and "minor issue" warnings, and the same JSON on disk, so a `generation_config.json`
written by either library loads in the other with equal values.

transformers is never imported when this module is imported. It is imported lazily, and only by
`GenerationConfig.to_transformers()`.

What pydecode writes as metadata: `to_dict()` sets `"transformers_version"` to the version of the
installed transformers, or to "5.24.0" (the version these classes reproduce) when transformers is not
installed. No `pydecode_version` key is written: transformers turns unknown keys into attributes, so an
extra key would make a config loaded by transformers differ from the one pydecode saved.

Differences from transformers, all deliberate:
- Local files only: `from_pretrained` never downloads. A missing file raises `FileNotFoundError` naming the
  path; malformed JSON raises `InvalidGenerationConfigFileError` (a `ValueError` that is also an
  `OSError`, the type transformers raises) naming the file.
- `WatermarkingConfig.seeding_scheme` also accepts `"pydecode-hash"` (see `WatermarkingConfig`).
- `presence_penalty` and `frequency_penalty` (OpenAI semantics) are custom entries that `update()` accepts
  without `allow_custom_entries=True`, and `validate()` requires them to be numbers when set.
- transformers objects (`GenerationConfig`, `WatermarkingConfig`) are accepted where natural: `__eq__`,
  `from_transformers`, and `watermarking_config` values (converted to pydecode's class).
- `from_model_config` does not modify a dict passed to it (transformers pops `_from_model_config` from it).
- The "once" logging helpers key on the message like transformers' `warning_once`, but keep their own cache.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, is_dataclass
from enum import Enum
from importlib import metadata as importlib_metadata
from typing import TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:
    import transformers

logger = logging.getLogger("pydecode.generation.config")

GENERATION_CONFIG_NAME = "generation_config.json"
# The transformers release whose GenerationConfig these classes reproduce; written as
# `transformers_version` when transformers is not installed.
REFERENCE_TRANSFORMERS_VERSION = "5.24.0"

METADATA_FIELDS = ("_from_model_config", "_commit_hash", "_original_object_hash", "transformers_version")
STATIC_CACHE_IMPLEMENTATIONS = ("static", "offloaded_static")
DYNAMIC_CACHE_IMPLEMENTATIONS = ("dynamic", "offloaded", "quantized")
# Deprecated aliases of the static caches that transformers still accepts.
DEPRECATED_STATIC_CACHE_IMPLEMENTATIONS = (
    "sliding_window",
    "hybrid",
    "hybrid_chunked",
    "offloaded_hybrid",
    "offloaded_hybrid_chunked",
)
ALL_STATIC_CACHE_IMPLEMENTATIONS = STATIC_CACHE_IMPLEMENTATIONS + DEPRECATED_STATIC_CACHE_IMPLEMENTATIONS
ALL_CACHE_IMPLEMENTATIONS = ALL_STATIC_CACHE_IMPLEMENTATIONS + DYNAMIC_CACHE_IMPLEMENTATIONS
# "paged" routes to continuous batching in transformers; valid in a config, but not a cache class.
VALID_CACHE_IMPLEMENTATIONS = ALL_CACHE_IMPLEMENTATIONS + ("paged",)

WATERMARK_SEEDING_SCHEMES = ("lefthash", "selfhash", "pydecode-hash")
# Custom entries with OpenAI semantics that pydecode understands (not fields of transformers' config).
CUSTOM_PENALTY_FIELDS = ("presence_penalty", "frequency_penalty")

# Arguments of `generate()` that people put in the config by mistake; transformers rejects them.
_GENERATE_ONLY_ARGUMENTS = (
    "logits_processor",
    "stopping_criteria",
    "prefix_allowed_tokens_fn",
    "synced_gpus",
    "assistant_model",
    "streamer",
    "negative_prompt_ids",
    "negative_prompt_attention_mask",
)

# Every field of transformers 5.24's GenerationConfig, in its order. All default to None.
GENERATION_FIELDS: tuple[str, ...] = (
    # length of the output
    "max_length",
    "max_new_tokens",
    "min_length",
    "min_new_tokens",
    "early_stopping",
    "max_time",
    "stop_strings",
    # strategy
    "do_sample",
    "num_beams",
    "use_mtp",
    # cache
    "use_cache",
    "cache_implementation",
    "cache_config",
    "max_cache_len",
    # logits manipulation
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "top_h",
    "typical_p",
    "epsilon_cutoff",
    "eta_cutoff",
    "repetition_penalty",
    "encoder_repetition_penalty",
    "length_penalty",
    "no_repeat_ngram_size",
    "bad_words_ids",
    "renormalize_logits",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "remove_invalid_values",
    "exponential_decay_length_penalty",
    "suppress_tokens",
    "begin_suppress_tokens",
    "sequence_bias",
    "token_healing",
    "guidance_scale",
    "watermarking_config",
    # outputs
    "num_return_sequences",
    "output_attentions",
    "output_hidden_states",
    "output_scores",
    "output_logits",
    "return_dict_in_generate",
    # special tokens
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    # encoder-decoder only
    "encoder_no_repeat_ngram_size",
    "decoder_start_token_id",
    # assisted / speculative decoding
    "is_assistant",
    "num_assistant_tokens",
    "num_assistant_tokens_schedule",
    "assistant_confidence_threshold",
    "prompt_lookup_num_tokens",
    "max_matching_ngram_size",
    "assistant_early_exit",
    "assistant_lookbehind",
    "target_lookbehind",
    "assistant_ensemble_weight",
    "speculation_type",
    # performance / compilation
    "compile_config",
    "disable_compile",
    # deprecated in transformers (kept so old configs load and round-trip)
    "continuous_batching_config",
    "low_memory",
    "penalty_alpha",
    "dola_layers",
    "diversity_penalty",
    "num_beam_groups",
    "constraints",
    "force_words_ids",
    "prefill_chunk_size",
)


class InvalidGenerationConfigFileError(ValueError, OSError):
    """A generation config file that is not valid JSON (or not a JSON object).

    A `ValueError` as pydecode documents, and an `OSError` because that is what transformers raises, so
    `except OSError` written for transformers still catches it.
    """


class _SaveDirectoryIsAFileError(NotADirectoryError, AssertionError):
    """`save_pretrained` was given a file. transformers raises `AssertionError`; this is both."""


@functools.cache
def _transformers_version() -> str:
    """The installed transformers' version (read from package metadata, no import), else the reference one."""
    try:
        return importlib_metadata.version("transformers")
    except importlib_metadata.PackageNotFoundError:
        return REFERENCE_TRANSFORMERS_VERSION


# Messages already emitted by `_log_once`. transformers' `warning_once`/`info_once` are lru caches keyed
# on the message: a message is logged at most once per process. Tests clear this set.
_LOGGED_ONCE: set[tuple[int, str]] = set()


def _log_once(level: int, message: str) -> None:
    key = (level, message)
    if key in _LOGGED_ONCE:
        return
    _LOGGED_ONCE.add(key)
    logger.log(level, message)


def _should_warn(outer_attr: str, inner_attr: str, user_set_attributes: Optional[set[str]]) -> bool:
    """Whether a warning about `inner_attr` (e.g. top_p) under `outer_attr` (e.g. do_sample) fires.

    With no provenance information (`user_set_attributes is None`) it always fires. Otherwise it is muted
    only when the caller set `outer_attr` explicitly but did not set `inner_attr`: e.g. a user asking for
    `do_sample=False` on a model whose generation_config.json sets `top_p` needs no warning.
    """
    if user_set_attributes is None:
        return True
    return not (outer_attr in user_set_attributes and inner_attr not in user_set_attributes)


def _is_transformers_object(obj: Any, class_name: str) -> bool:
    """True when `obj` is an instance of transformers' `class_name` (or a subclass), without importing it."""
    return any(
        klass.__name__ == class_name and klass.__module__.startswith("transformers.")
        for klass in type(obj).__mro__
    )


def _is_compile_config(obj: Any) -> bool:
    # transformers' CompileConfig (or a subclass); matched by name so this needs no transformers import.
    return any(klass.__name__ == "CompileConfig" for klass in type(obj).__mro__)


class GenerationMode(str, Enum):
    """The decoding method a `GenerationConfig` selects; same members and values as transformers 5.24.

    Several of these (contrastive search, DoLa, constrained and group beam search) moved to the Hub in
    transformers, which still reports them from `get_generation_mode`; they are listed so pydecode reports
    the same mode. Which ones pydecode's scheduler runs is decided by the scheduler, not here.
    """

    # single-sequence methods
    CONTRASTIVE_SEARCH = "contrastive_search"
    GREEDY_SEARCH = "greedy_search"
    SAMPLE = "sample"
    ASSISTED_GENERATION = "assisted_generation"
    DOLA_GENERATION = "dola_generation"
    # beam methods
    BEAM_SEARCH = "beam_search"
    BEAM_SAMPLE = "beam_sample"
    CONSTRAINED_BEAM_SEARCH = "constrained_beam_search"
    GROUP_BEAM_SEARCH = "group_beam_search"

    @classmethod
    def _missing_(cls, value: object) -> GenerationMode:
        allowed = [member.value for member in cls]
        raise ValueError(f"{value!r} is not a valid {cls.__name__}; expected one of {allowed}")


@dataclass(eq=True)
class WatermarkingConfig:
    """Arguments of the "green list" watermark of Kirchenbauer et al. (https://arxiv.org/abs/2306.04634).

    Same fields, defaults, checks and serialisation as transformers' `WatermarkingConfig`.

    Args:
        greenlist_ratio: fraction of the vocabulary that is "green" at each step, in [0, 1]. Default 0.25.
        bias: value added to the logits of green tokens. Default 2.0.
        hashing_key: key mixed into the greenlist seed. Default 15485863 (the millionth prime).
        seeding_scheme: how the greenlist is chosen:
            - "lefthash" (default): seeded from the previous `context_width` tokens (Algorithm 2 of the
              paper), exactly as transformers does it, so transformers' detector finds the watermark.
            - "selfhash": also depends on the candidate token itself (Algorithm 3); slower, as every
              candidate is tried. Same greenlists as transformers.
            - "pydecode-hash": pydecode's fast scheme. Greenlist membership = hash of key, previous tokens
              and token compared against greenlist_ratio*2**32; not detectable by transformers' detector
              (use pydecode's detector). transformers' `validate()` rejects this name.
        context_width: number of previous tokens used in seeding, >= 1. Default 1.

    Differences from transformers: `validate()` accepts "pydecode-hash", and its message for a bad
    `greenlist_ratio` reports the ratio (transformers reports the seeding scheme there). Equality compares
    the field values, also against a transformers `WatermarkingConfig` (transformers' dataclass has no
    fields, so any two of its instances compare equal), and `repr` shows the JSON (transformers' dataclass
    decorator turns its repr into a bare `WatermarkingConfig()`).
    """

    greenlist_ratio: float = 0.25
    bias: float = 2.0
    hashing_key: int = 15485863
    seeding_scheme: str = "lefthash"
    context_width: int = 1

    @classmethod
    def from_dict(cls, config_dict: Mapping[str, Any], **kwargs: Any) -> WatermarkingConfig:
        """Build from a dict (unknown keys raise `TypeError`); `kwargs` naming existing fields override it."""
        config = cls(**config_dict)
        for key, value in kwargs.items():
            if hasattr(config, key):
                setattr(config, key, value)
        return config

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the fields as a dict."""
        return copy.deepcopy(self.__dict__)

    def __iter__(self):  # type: ignore[no-untyped-def]
        yield from copy.deepcopy(self.__dict__).items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, WatermarkingConfig) or _is_transformers_object(other, "WatermarkingConfig"):
            return self.to_dict() == dict(other.__dict__)
        return NotImplemented

    # A mutable config with value equality is unhashable, as transformers' dataclass is.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{self.__class__.__name__} {self.to_json_string()}"

    def to_json_string(self) -> str:
        """The fields as indented JSON in field order (not sorted, like transformers), newline-terminated."""
        return json.dumps(self.__dict__, indent=2) + "\n"

    def to_json_file(self, json_file_path: Union[str, os.PathLike]) -> None:
        """Write the fields as indented JSON with sorted keys."""
        with open(json_file_path, "w", encoding="utf-8") as writer:
            writer.write(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    def update(self, **kwargs: Any) -> None:
        """Set the given fields; keys that are not fields are ignored."""
        for key, value in kwargs.items():
            if hasattr(self, key):
                setattr(self, key, value)

    def validate(self) -> None:
        """Raise `ValueError` naming the field if seeding_scheme, greenlist_ratio or context_width is bad."""

        def bad(key: str, expected: str, found: Any) -> ValueError:
            return ValueError(
                f"`watermarking_config` has an invalid `{key}`: it must be {expected}, but got {found!r}."
            )

        if self.seeding_scheme not in WATERMARK_SEEDING_SCHEMES:
            raise bad("seeding_scheme", f"one of {list(WATERMARK_SEEDING_SCHEMES)}", self.seeding_scheme)
        if not 0.0 <= self.greenlist_ratio <= 1.0:
            raise bad("greenlist_ratio", "between 0.0 and 1.0", self.greenlist_ratio)
        if not self.context_width >= 1:
            raise bad("context_width", "a positive integer", self.context_width)

    def to_transformers(self) -> Any:
        """The equivalent `transformers.WatermarkingConfig` (imports transformers).

        Raises `ValueError` for the "pydecode-hash" scheme, which transformers cannot run or detect.
        """
        if self.seeding_scheme == "pydecode-hash":
            raise ValueError(
                "`watermarking_config.seeding_scheme='pydecode-hash'` is a pydecode-only scheme; "
                "transformers only supports 'lefthash' and 'selfhash', so this config cannot be converted."
            )
        hf_watermarking_config = _import_transformers_generation().WatermarkingConfig
        return hf_watermarking_config(**self.to_dict())


def _import_transformers_generation() -> Any:
    try:
        from transformers.generation import configuration_utils
    except ImportError as err:  # pragma: no cover - transformers is a test dependency
        raise ImportError(
            "Converting to transformers objects needs transformers (pip install 'pydecode[hf]')."
        ) from err
    return configuration_utils


def _coerce_watermarking_config(value: Any) -> Any:
    """dicts and transformers' WatermarkingConfig become pydecode's; anything else (e.g. SynthID) is kept."""
    if isinstance(value, dict):
        return WatermarkingConfig.from_dict(value)
    if not isinstance(value, WatermarkingConfig) and _is_transformers_object(value, "WatermarkingConfig"):
        return WatermarkingConfig.from_dict(copy.deepcopy(value.__dict__))
    return value


def _to_json_compatible(config_dict: dict[str, Any]) -> dict[str, Any]:
    """Prepare a config dict for `json.dumps` the way transformers does.

    Keys of nested dicts become strings (e.g. sequence_bias tuple keys), then top-level values that are
    config objects become their `to_dict()`. Like transformers, a dataclass without `to_dict` becomes None.
    """

    def keys_to_str(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {str(key): keys_to_str(value) for key, value in obj.items()}
        if isinstance(obj, list):
            return [keys_to_str(item) for item in obj]
        return obj

    def objects_to_dict(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {key: objects_to_dict(value) for key, value in obj.items()}
        if is_dataclass(obj) and not isinstance(obj, type):
            return obj.to_dict() if hasattr(obj, "to_dict") else None
        return obj

    return objects_to_dict(keys_to_str(config_dict))


class GenerationConfig:
    """How `generate` decodes: length, strategy, cache, logits processing, outputs and special tokens.

    A drop-in equivalent of `transformers.GenerationConfig` (5.24): construct it with keyword arguments
    (`GenerationConfig(do_sample=True, top_p=0.9)`), load it with `from_pretrained`, save it with
    `save_pretrained`. The decoding method follows from the fields (see `get_generation_mode`):
    greedy (`num_beams=1`, `do_sample=False`), sampling (`do_sample=True`), beam search (`num_beams>1`),
    beam sampling (both), assisted decoding (an assistant model, `prompt_lookup_num_tokens`, ...).

    Every field defaults to `None`, meaning "not set": `generate` first takes the model's own
    generation config, then `_get_default_generation_params()` (e.g. `max_length=20`, `top_k=50`,
    `num_beams=1`). Set a field explicitly to override both. The fields are listed in
    `GENERATION_FIELDS`; their meanings are those of transformers' documentation. Keyword arguments that
    are not fields become attributes ("custom entries") and are saved with the config.

    Validation happens in `__init__`, `update` and `save_pretrained` (strict when the config was
    modified since loading). Impossible settings raise `ValueError` naming the field; settings that are
    merely ignored (e.g. `temperature` while `do_sample` is not True) are "minor issues", logged once on
    the `pydecode.generation.config` logger (the details at INFO level), or raised by `validate(strict=True)`.

    See the module docstring for the (few) deliberate differences from transformers.
    """

    # Output flags that need `return_dict_in_generate=True` to have an effect.
    extra_output_flags = ("output_attentions", "output_hidden_states", "output_scores", "output_logits")

    # Field types, for readers and type checkers (annotations only: they create no class attributes).
    max_length: Optional[int]
    max_new_tokens: Optional[int]
    min_length: Optional[int]
    min_new_tokens: Optional[int]
    early_stopping: Optional[Union[bool, str]]
    max_time: Optional[float]
    stop_strings: Optional[Union[str, list[str]]]
    do_sample: Optional[bool]
    num_beams: Optional[int]
    use_mtp: Optional[bool]
    use_cache: Optional[bool]
    cache_implementation: Optional[str]
    cache_config: Optional[dict[str, Any]]
    max_cache_len: Optional[int]
    temperature: Optional[float]
    top_k: Optional[int]
    top_p: Optional[float]
    min_p: Optional[float]
    top_h: Optional[float]
    typical_p: Optional[float]
    epsilon_cutoff: Optional[float]
    eta_cutoff: Optional[float]
    repetition_penalty: Optional[float]
    encoder_repetition_penalty: Optional[float]
    length_penalty: Optional[float]
    no_repeat_ngram_size: Optional[int]
    bad_words_ids: Optional[list[list[int]]]
    renormalize_logits: Optional[bool]
    forced_bos_token_id: Optional[int]
    forced_eos_token_id: Optional[Union[int, list[int]]]
    remove_invalid_values: Optional[bool]
    exponential_decay_length_penalty: Optional[tuple[int, float]]
    suppress_tokens: Optional[list[int]]
    begin_suppress_tokens: Optional[list[int]]
    sequence_bias: Optional[Any]
    token_healing: Optional[bool]
    guidance_scale: Optional[float]
    watermarking_config: Optional[Any]
    num_return_sequences: Optional[int]
    output_attentions: Optional[bool]
    output_hidden_states: Optional[bool]
    output_scores: Optional[bool]
    output_logits: Optional[bool]
    return_dict_in_generate: Optional[bool]
    pad_token_id: Optional[int]
    bos_token_id: Optional[int]
    eos_token_id: Optional[Union[int, list[int]]]
    encoder_no_repeat_ngram_size: Optional[int]
    decoder_start_token_id: Optional[Union[int, list[int]]]
    is_assistant: Optional[bool]
    num_assistant_tokens: Optional[int]
    num_assistant_tokens_schedule: Optional[str]
    assistant_confidence_threshold: Optional[float]
    prompt_lookup_num_tokens: Optional[int]
    max_matching_ngram_size: Optional[int]
    assistant_early_exit: Optional[int]
    assistant_lookbehind: Optional[int]
    target_lookbehind: Optional[int]
    assistant_ensemble_weight: Optional[float]
    speculation_type: Optional[str]
    compile_config: Optional[Any]
    disable_compile: Optional[bool]
    continuous_batching_config: Optional[Any]
    low_memory: Optional[bool]
    penalty_alpha: Optional[float]
    dola_layers: Optional[Union[str, list[int]]]
    diversity_penalty: Optional[float]
    num_beam_groups: Optional[int]
    constraints: Optional[list[Any]]
    force_words_ids: Optional[list[Any]]
    prefill_chunk_size: Optional[int]
    _from_model_config: Optional[bool]
    transformers_version: Optional[str]

    def __init__(self, **kwargs: Any) -> None:
        # The keys the caller passed, before they are consumed: `validate` only reports flag combinations
        # the caller chose, not values inherited from a model's generation_config.json.
        user_set_attributes = set(kwargs)

        for name in GENERATION_FIELDS:
            setattr(self, name, kwargs.pop(name, None))
        self.watermarking_config = _coerce_watermarking_config(self.watermarking_config)
        if self.continuous_batching_config is not None:
            warnings.warn(
                "Setting `continuous_batching_config` on a GenerationConfig is deprecated (transformers "
                "removes it in v5.19); pass it to the continuous-batching API as its own "
                "`continuous_batching_config` argument.",
                FutureWarning,
                stacklevel=2,
            )

        # Metadata. `_commit_hash` may appear in files saved by old transformers versions; it is dropped.
        kwargs.pop("_commit_hash", None)
        self._from_model_config = kwargs.pop("_from_model_config", None)
        self.transformers_version = kwargs.pop("transformers_version", None)

        if not self._from_model_config:
            # Custom entries. Built from a model config, the remaining keys are model hyper-parameters
            # (vocab_size, hidden_size, ...) and are not copied.
            for key, value in kwargs.items():
                try:
                    setattr(self, key, value)
                except AttributeError:
                    logger.error(f"Cannot set the custom entry {key}={value!r} on {self}")
                    raise
        elif kwargs.get("force_bos_token_to_be_generated", False):
            # Old model configs asked for the BOS token to be forced this way.
            self.forced_bos_token_id = self.bos_token_id
            _log_once(
                logging.WARNING,
                f"The model config uses `force_bos_token_to_be_generated`; make sure the generation config "
                f"sets `forced_bos_token_id={self.bos_token_id}`.",
            )

        self.validate(user_set_attributes=user_set_attributes)

    # ----------------------------------------------------------------------------------------------
    # identity

    def __hash__(self) -> int:
        return hash(self.to_json_string(ignore_metadata=True))

    def __eq__(self, other: object) -> bool:
        """Equal when all fields (metadata excluded) give the same JSON; also against transformers' config."""
        if _is_transformers_object(other, "GenerationConfig"):
            other = GenerationConfig.from_transformers(other)
        if not isinstance(other, GenerationConfig):
            return False
        mine = self.to_json_string(use_diff=False, ignore_metadata=True)
        theirs = other.to_json_string(use_diff=False, ignore_metadata=True)
        return mine == theirs

    def __repr__(self) -> str:
        return f"{self.__class__.__name__} {self.to_json_string(ignore_metadata=True)}"

    def copy(self) -> GenerationConfig:
        """A deep copy (what `generate` works on, so the caller's config is never modified)."""
        return copy.deepcopy(self)

    # ----------------------------------------------------------------------------------------------
    # semantics

    def get_generation_mode(self, assistant_model: Optional[Any] = None) -> GenerationMode:
        """The decoding method these fields select, exactly as transformers decides it.

        Args:
            assistant_model: a draft model passed to `generate`; if given, greedy search and sampling become
                assisted generation (as do `use_mtp`, `prompt_lookup_num_tokens` and `assistant_early_exit`).
                With beam methods it is ignored and a warning is logged.
        """
        mode: GenerationMode
        if self.constraints is not None or self.force_words_ids is not None:
            mode = GenerationMode.CONSTRAINED_BEAM_SEARCH
        elif self.num_beams is None or self.num_beams == 1:
            if self.do_sample is True:
                mode = GenerationMode.SAMPLE
            elif (
                self.top_k is not None
                and self.top_k > 1
                and self.penalty_alpha is not None
                and self.penalty_alpha > 0
            ):
                mode = GenerationMode.CONTRASTIVE_SEARCH
            else:
                mode = GenerationMode.GREEDY_SEARCH
        elif self.num_beam_groups is not None and self.num_beam_groups > 1:
            mode = GenerationMode.GROUP_BEAM_SEARCH
        elif self.do_sample is True:
            mode = GenerationMode.BEAM_SAMPLE
        else:
            mode = GenerationMode.BEAM_SEARCH

        base_modes = (GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE)
        wants_assisted = (
            assistant_model is not None
            or self.use_mtp
            or self.prompt_lookup_num_tokens is not None
            or self.assistant_early_exit is not None
        )
        if wants_assisted:
            if mode in base_modes:
                mode = GenerationMode.ASSISTED_GENERATION
            else:
                logger.warning(
                    "An assistant model, `use_mtp`, `prompt_lookup_num_tokens` or `assistant_early_exit` "
                    "asks for assisted generation, which only extends greedy search and sampling; the flags "
                    "select "
                    f"{mode.value!r}, so the assisted-generation flags are ignored."
                )
        if self.dola_layers is not None:
            if mode in base_modes:
                mode = GenerationMode.DOLA_GENERATION
            else:
                logger.warning(
                    "`dola_layers` asks for DoLa decoding, which only extends greedy search and sampling; "
                    f"the flags select {mode.value!r}, so `dola_layers` is ignored."
                )
        return mode

    @staticmethod
    def _get_default_generation_params() -> dict[str, Any]:
        """Global defaults that `generate` applies to fields left `None` by both the user and the model.

        The same values as transformers 5.24 (e.g. 20 tokens of output, top-k 50 when sampling).
        """
        return {
            "max_length": 20,
            "min_length": 0,
            "do_sample": False,
            "use_cache": True,
            "early_stopping": False,
            "num_beams": 1,
            "temperature": 1.0,
            "top_k": 50,
            "top_p": 1.0,
            "typical_p": 1.0,
            "repetition_penalty": 1.0,
            "length_penalty": 1.0,
            "no_repeat_ngram_size": 0,
            "encoder_no_repeat_ngram_size": 0,
            "bad_words_ids": None,
            "num_return_sequences": 1,
            "output_scores": False,
            "return_dict_in_generate": False,
            "forced_bos_token_id": None,
            "forced_eos_token_id": None,
            "remove_invalid_values": False,
            "exponential_decay_length_penalty": None,
            "suppress_tokens": None,
            "begin_suppress_tokens": None,
            "epsilon_cutoff": 0.0,
            "eta_cutoff": 0.0,
            "encoder_repetition_penalty": 1.0,
            "num_assistant_tokens": 20,
            "num_assistant_tokens_schedule": "constant",
            "assistant_confidence_threshold": 0.4,
            "assistant_lookbehind": 10,
            "target_lookbehind": 10,
            # deprecated in transformers (moved to the Hub), still defaulted there
            "num_beam_groups": 1,
            "diversity_penalty": 0.0,
        }

    def validate(self, strict: bool = False, user_set_attributes: Optional[set[str]] = None) -> None:
        """Check the fields; same errors and warnings as transformers 5.24.

        Raises `ValueError` (naming the field and what is allowed) for settings that cannot work: an invalid
        `early_stopping`, `max_new_tokens <= 0`, `assistant_ensemble_weight` outside (0, 1), an unknown
        `cache_implementation`, a `compile_config` that is not a CompileConfig, an invalid watermarking
        config, `num_return_sequences > 1` with greedy search or `> num_beams`, a forced token that is also
        suppressed, and `generate()` arguments stored in the config. pydecode also requires
        `presence_penalty` / `frequency_penalty`, when set, to be numbers.

        "Minor issues" (flags that will be ignored, a negative `pad_token_id`) are logged once as a warning
        listing the fields, with details at INFO level; with `strict=True` they raise `ValueError` instead.

        Args:
            strict: raise on minor issues instead of logging them.
            user_set_attributes: the fields the caller set explicitly. When given, a warning about a sampling-
                or beam-only flag is muted if the caller set `do_sample` / `num_beams` but not that flag
                (it came from the model's defaults). `None` treats every field as set by the caller.
        """
        minor_issues: dict[str, str] = {}

        # 1. single fields
        if self.early_stopping not in {None, True, False, "never"}:
            raise ValueError(
                f"`early_stopping` must be True, False or 'never', but got {self.early_stopping!r}."
            )
        if self.max_new_tokens is not None and self.max_new_tokens <= 0:
            raise ValueError(f"`max_new_tokens` must be greater than 0, but got {self.max_new_tokens}.")
        if self.assistant_ensemble_weight is not None and not 0.0 < self.assistant_ensemble_weight < 1.0:
            raise ValueError(
                "`assistant_ensemble_weight` must lie in the open interval (0.0, 1.0), but got "
                f"{self.assistant_ensemble_weight}; leave it None for lossless speculative decoding."
            )
        if self.pad_token_id is not None and self.pad_token_id < 0:
            minor_issues["pad_token_id"] = (
                f"`pad_token_id` should be a non-negative token id, but it is {self.pad_token_id}. Batched "
                "generation with padding will fail; set `generation_config.pad_token_id` to a valid id."
            )
        if (
            self.cache_implementation is not None
            and self.cache_implementation not in VALID_CACHE_IMPLEMENTATIONS
        ):
            raise ValueError(
                f"`cache_implementation` is {self.cache_implementation!r}, which is not valid; choose one of "
                f"{VALID_CACHE_IMPLEMENTATIONS}."
            )
        if (
            self.max_cache_len is not None
            and self.cache_implementation not in ALL_STATIC_CACHE_IMPLEMENTATIONS
        ):
            _log_once(
                logging.WARNING,
                f"`max_cache_len` only sizes static caches {STATIC_CACHE_IMPLEMENTATIONS}; it is ignored "
                f"with `cache_implementation={self.cache_implementation!r}`.",
            )
        if self.compile_config is not None and not _is_compile_config(self.compile_config):
            raise ValueError(
                f"`compile_config` must be a `CompileConfig` (e.g. transformers.CompileConfig), but it is a "
                f"{type(self.compile_config)}."
            )
        if self.watermarking_config is not None:
            self.watermarking_config.validate()
        for name in CUSTOM_PENALTY_FIELDS:
            value = self.__dict__.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(
                    f"`{name}` must be a number (OpenAI semantics, e.g. 0.5), but got {value!r}."
                )

        # 2. combinations
        # 2.1 sampling-only flags without sampling. `is not True`: None means the default, False.
        if self.do_sample is not True:
            # (flag, value that means "off" or None when any value counts)
            sampling_flags = (
                ("temperature", 1.0),
                ("top_p", 1.0),
                ("min_p", None),
                ("top_h", None),
                ("typical_p", 1.0),
                ("top_k", 50),
                ("epsilon_cutoff", 0.0),
                ("eta_cutoff", 0.0),
            )
            for flag, neutral in sampling_flags:
                value = getattr(self, flag)
                if value is None or (neutral is not None and value == neutral):
                    continue
                if _should_warn("do_sample", flag, user_set_attributes):
                    minor_issues[flag] = (
                        f"`do_sample` is not True, yet `{flag}` is set to `{value}`; this flag only affects "
                        f"sampling-based decoding. Set `do_sample=True` or unset `{flag}`."
                    )

        # 2.2 beam-only flags without beams
        if self.num_beams is None or self.num_beams == 1:
            beam_flags = (
                ("early_stopping", self.early_stopping is not None and self.early_stopping is not False),
                ("length_penalty", self.length_penalty is not None and self.length_penalty != 1.0),
            )
            for flag, is_set in beam_flags:
                if is_set and _should_warn("num_beams", flag, user_set_attributes):
                    minor_issues[flag] = (
                        f"`num_beams` is {self.num_beams}, yet `{flag}` is set to `{getattr(self, flag)}`; "
                        f"this flag only affects beam-based decoding. Set `num_beams>1` or unset `{flag}`."
                    )

        # 2.3 num_return_sequences
        if self.num_return_sequences is not None and self.num_return_sequences > 1:
            if self.num_beams is None or self.num_beams == 1:
                if not self.do_sample:
                    raise ValueError(
                        "`num_return_sequences` must be 1 for greedy decoding (do_sample not True, no beams),"
                        " "
                        f"but got {self.num_return_sequences}."
                    )
            elif self.num_return_sequences > self.num_beams:
                raise ValueError(
                    f"`num_return_sequences` ({self.num_return_sequences}) must be smaller than or equal to "
                    f"`num_beams` ({self.num_beams})."
                )

        # 2.4 cache arguments without a cache. Only a warning: `use_cache=False` is a common quick fix.
        if self.use_cache is False:
            for name in ("cache_implementation", "cache_config"):
                value = getattr(self, name)
                if value is not None:
                    minor_issues[name] = (
                        f"`use_cache` is not True, but `{name}` is set to {value}; `{name}` has no effect."
                    )

        # 2.5 extra outputs that are only returned with return_dict_in_generate
        if self.return_dict_in_generate is not True:
            for flag in self.extra_output_flags:
                if getattr(self, flag) is True:
                    minor_issues[flag] = (
                        f"`{flag}` is True but `return_dict_in_generate` is not, so `{flag}` is ignored."
                    )

        # 2.6 forcing a token that is also suppressed leaves only -inf logits: nan probabilities, a crash.
        if self.suppress_tokens is not None:
            suppressed = set(self.suppress_tokens)
            for forced_attr in ("forced_bos_token_id", "forced_eos_token_id"):
                forced = getattr(self, forced_attr)
                if forced is None:
                    continue
                forced_set = {forced} if isinstance(forced, int) else set(forced)
                if forced_set and forced_set.issubset(suppressed):
                    raise ValueError(
                        f"Every token of `{forced_attr}` ({sorted(forced_set)}) is also in `suppress_tokens`:"
                        " "
                        "all logits would be -inf at the forcing step and generation would fail. Remove the "
                        f"token(s) from `{forced_attr}` or `suppress_tokens` (to prevent an early EOS, use "
                        "`min_new_tokens`)."
                    )

        # 3. generate() arguments stored in the config by mistake
        for arg in _GENERATE_ONLY_ARGUMENTS:
            if hasattr(self, arg):
                raise ValueError(
                    f"`{arg}` is an argument of `generate()`, not a field of `GenerationConfig`; pass it to "
                    "`generate()` directly."
                )

        if not minor_issues:
            return
        details = "\n".join(f"- `{name}`: {text}" for name, text in minor_issues.items())
        details += (
            "\nFor a pretrained model, some of these values may come from its `generation_config.json`."
        )
        if strict:
            raise ValueError("GenerationConfig is invalid:\n" + details)
        message = f"These generation flags are invalid and may be ignored: {list(minor_issues)}."
        if not logger.isEnabledFor(logging.INFO):
            message += " Set the `pydecode` logger to INFO for details."
        _log_once(logging.WARNING, message)
        _log_once(logging.INFO, details)

    # ----------------------------------------------------------------------------------------------
    # loading and saving

    def save_pretrained(
        self,
        save_directory: Union[str, os.PathLike],
        config_file_name: Optional[Union[str, os.PathLike]] = None,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> None:
        """Write the config (only non-default fields) to `save_directory/config_file_name`.

        `config_file_name` defaults to "generation_config.json"; the directory is created if needed.
        Like transformers, the config is validated first, strictly (minor issues raise `ValueError`) unless
        it is unchanged since `from_pretrained`/`from_model_config`, and `compile_config` is not saved.
        `push_to_hub=True` is not supported (pydecode never uses the network); other kwargs are ignored.
        """
        if push_to_hub:
            raise NotImplementedError(
                "pydecode does not push to the Hub; convert with `to_transformers()` and use transformers' "
                "`push_to_hub`."
            )
        was_modified = getattr(self, "_original_object_hash", None) != hash(self)
        try:
            self.validate(strict=was_modified)
        except ValueError as exc:
            raise ValueError(f"{exc}\n\nFix these issues to save the configuration.") from exc

        if os.path.isfile(save_directory):
            raise _SaveDirectoryIsAFileError(
                f"`save_directory` ({os.fspath(save_directory)}) must be a directory, not a file."
            )
        os.makedirs(save_directory, exist_ok=True)
        name = config_file_name if config_file_name is not None else GENERATION_CONFIG_NAME
        output_file = os.path.join(save_directory, name)
        self.to_json_file(output_file, use_diff=True, keys_to_pop=["compile_config"])
        logger.info(f"Generation config saved in {output_file}")

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: Union[str, os.PathLike],
        config_file_name: Optional[Union[str, os.PathLike]] = None,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: Optional[Union[str, bool]] = None,
        revision: str = "main",
        **kwargs: Any,
    ) -> Any:
        """Load a config from a local directory (holding `config_file_name`) or a local JSON file.

        Args:
            pretrained_model_name_or_path: a directory containing "generation_config.json" (or
                `config_file_name`), or the path of a JSON file. Never a Hub id: nothing is downloaded.
            config_file_name: file name inside the directory; default "generation_config.json".
            cache_dir, force_download, local_files_only, token, revision: accepted for signature
                compatibility with transformers and ignored (they only matter for downloads). `subfolder`
                (a kwarg) is honoured: the file is looked up in that subdirectory.
            kwargs: values that override the loaded ones. As in transformers, keys that are not fields still
                become attributes (custom entries). `return_unused_kwargs=True` returns
                `(config, unused_kwargs)`; like transformers, unused_kwargs is then empty in practice,
                because every kwarg was already set on the config.

        Raises:
            FileNotFoundError: the path or the file in the directory does not exist (the message names it).
            InvalidGenerationConfigFileError: the file is not valid JSON or not a JSON object (a
                `ValueError` and an `OSError`; transformers raises `OSError`).
        """
        del cache_dir, force_download, local_files_only, token, revision  # download-only options
        kwargs.pop("proxies", None)
        subfolder = kwargs.pop("subfolder", "")
        kwargs.pop("_from_pipeline", None)
        kwargs.pop("_from_auto", False)

        resolved_file = cls._resolve_local_config_file(
            pretrained_model_name_or_path, config_file_name, subfolder
        )
        config_dict = cls._dict_from_json_file(resolved_file)
        logger.info(f"loading generation config file {resolved_file}")

        if kwargs.get("_from_model_config", False):
            return cls.from_model_config(config_dict)
        if kwargs.get("return_unused_kwargs") is True:
            config, unused_kwargs = cls.from_dict(config_dict, **kwargs)
            config._original_object_hash = hash(config)
            return config, unused_kwargs
        config = cls.from_dict(config_dict, **kwargs)
        config._original_object_hash = hash(config)
        return config

    @staticmethod
    def _resolve_local_config_file(
        path: Union[str, os.PathLike], config_file_name: Optional[Union[str, os.PathLike]], subfolder: str
    ) -> str:
        base = os.fspath(path)
        if subfolder:
            base = os.path.join(base, subfolder)
        if config_file_name is None and os.path.isfile(base):
            return base
        name = os.fspath(config_file_name) if config_file_name is not None else GENERATION_CONFIG_NAME
        candidate = os.path.join(base, name)
        if os.path.isfile(candidate):
            return candidate
        if os.path.isdir(base):
            raise FileNotFoundError(
                f"No generation config file '{name}' in directory '{base}' ({candidate})."
            )
        raise FileNotFoundError(
            f"'{base}' is neither a local directory nor a local file. pydecode loads generation configs from "
            "local paths only; download the model first (e.g. with huggingface_hub.snapshot_download)."
        )

    @classmethod
    def _dict_from_json_file(cls, json_file: Union[str, os.PathLike]) -> dict[str, Any]:
        try:
            with open(json_file, encoding="utf-8") as reader:
                config_dict = json.loads(reader.read())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InvalidGenerationConfigFileError(
                f"The generation config file '{os.fspath(json_file)}' is not valid JSON: {err}"
            ) from err
        if not isinstance(config_dict, dict):
            raise InvalidGenerationConfigFileError(
                f"The generation config file '{os.fspath(json_file)}' must hold a JSON object, "
                f"not a {type(config_dict).__name__}."
            )
        return config_dict

    @classmethod
    def from_dict(cls, config_dict: Mapping[str, Any], **kwargs: Any) -> Any:
        """Build a config from `config_dict`, with `kwargs` overriding it.

        Same as transformers: kwargs that are not fields become custom entries, and with
        `return_unused_kwargs=True` the result is `(config, unused_kwargs)`.
        """
        return_unused_kwargs = kwargs.pop("return_unused_kwargs", False)
        kwargs.pop("_from_auto", None)  # telemetry flags of transformers
        kwargs.pop("_from_pipeline", None)

        config = cls(**{**config_dict, **kwargs})
        unused_kwargs = config.update(**kwargs)
        logger.debug(f"Generation config {config}")
        if return_unused_kwargs:
            return config, unused_kwargs
        return config

    @classmethod
    def from_model_config(cls, model_config: Any) -> GenerationConfig:
        """Build a config from a model config (a transformers `PretrainedConfig` or its `to_dict()`).

        As in transformers: `None` values of the model config are skipped, the other fields are taken from
        it, fields still unset are taken from the decoder's text config (`get_text_config(decoder=True)`, or
        a "decoder" / "generator" / "text_config" entry of a dict), and any `output_*` flag turns on
        `return_dict_in_generate`. The result counts as unmodified for `save_pretrained`.
        """
        if isinstance(model_config, Mapping):
            config_dict = dict(model_config)
        else:
            config_dict = model_config.to_dict()
        config_dict.pop("_from_model_config", None)
        config_dict = {key: value for key, value in config_dict.items() if value is not None}
        generation_config = cls.from_dict(config_dict, return_unused_kwargs=False, _from_model_config=True)

        # Some models keep generation attributes in their decoder config.
        text_config: Any
        if isinstance(model_config, Mapping):
            text_config = model_config
            for name in ("decoder", "generator", "text_config"):
                sub_config = model_config.get(name)
                if sub_config:
                    text_config = sub_config
                    break
        elif hasattr(model_config, "get_text_config"):
            text_config = model_config.get_text_config(decoder=True)
        else:
            text_config = model_config
        if not isinstance(text_config, Mapping) and hasattr(text_config, "to_dict"):
            text_config = text_config.to_dict()

        default_config = GenerationConfig()
        for attr in generation_config.to_dict():
            is_unset = getattr(generation_config, attr) == getattr(default_config, attr)
            if attr in text_config and is_unset:
                setattr(generation_config, attr, text_config[attr])

        if not generation_config.return_dict_in_generate and any(
            getattr(generation_config, flag, False) for flag in generation_config.extra_output_flags
        ):
            generation_config.return_dict_in_generate = True

        generation_config._original_object_hash = hash(generation_config)
        return generation_config

    def update(
        self, defaults_only: bool = False, allow_custom_entries: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        """Set the attributes named in `kwargs` and return the kwargs that were not used.

        Args:
            defaults_only: only set attributes that are currently `None`.
            allow_custom_entries: also set keys that are not attributes yet (custom entries).
            kwargs: candidate values; a dict for `watermarking_config` becomes a `WatermarkingConfig`.

        Returns:
            The kwargs that were not applied (the input dict is not modified). The config is validated
            afterwards, counting only the applied keys as set by the caller.

        Difference from transformers: `presence_penalty` and `frequency_penalty` are applied even without
        `allow_custom_entries` (transformers would return them as unused).
        """
        applied = []
        for key, value in kwargs.items():
            exists = hasattr(self, key)
            if not exists and (allow_custom_entries or key in CUSTOM_PENALTY_FIELDS):
                setattr(self, key, value)
                applied.append(key)
            elif exists and (not defaults_only or getattr(self, key) is None):
                if key == "watermarking_config":
                    value = _coerce_watermarking_config(value)
                setattr(self, key, value)
                applied.append(key)

        self.validate(user_set_attributes=set(applied))
        return {key: value for key, value in kwargs.items() if key not in applied}

    # ----------------------------------------------------------------------------------------------
    # serialisation

    def dict_dtype_to_str(self, d: dict[str, Any]) -> None:
        """In place: a non-string `dtype` (e.g. `torch.float16`) becomes "float16", in nested dicts too."""
        if d.get("dtype") is not None and not isinstance(d["dtype"], str):
            d["dtype"] = str(d["dtype"]).split(".")[1]
        for value in d.values():
            if isinstance(value, dict):
                self.dict_dtype_to_str(value)

    def to_dict(self) -> dict[str, Any]:
        """All attributes (deep-copied) minus runtime-only ones, with `transformers_version` (see module doc).

        Nested config objects (watermarking, compile) stay objects, as in transformers.
        """
        output = copy.deepcopy(self.__dict__)
        for runtime_key in ("_commit_hash", "_original_object_hash", "_mask_length"):
            output.pop(runtime_key, None)
        output["transformers_version"] = _transformers_version()
        self.dict_dtype_to_str(output)
        return output

    def to_diff_dict(self) -> dict[str, Any]:
        """`to_dict()` without the entries equal to `GenerationConfig()`'s (keeps `transformers_version`)."""
        config_dict = self.to_dict()
        default_dict = GenerationConfig().to_dict()
        diff = {
            key: value
            for key, value in config_dict.items()
            if key not in default_dict or key == "transformers_version" or value != default_dict[key]
        }
        self.dict_dtype_to_str(diff)
        return diff

    def to_json_string(
        self, use_diff: bool = True, ignore_metadata: bool = False, keys_to_pop: Optional[list[str]] = None
    ) -> str:
        """JSON with sorted keys and a trailing newline, byte-identical to transformers' for the same config.

        Args:
            use_diff: only the entries that differ from `GenerationConfig()` (plus `transformers_version`).
            ignore_metadata: drop `_from_model_config`, `_commit_hash`, `_original_object_hash` and
                `transformers_version`.
            keys_to_pop: further keys to drop.
        """
        config_dict = self.to_diff_dict() if use_diff is True else self.to_dict()
        for key in keys_to_pop or ():
            config_dict.pop(key, None)
        if ignore_metadata:
            for key in METADATA_FIELDS:
                config_dict.pop(key, None)
        return json.dumps(_to_json_compatible(config_dict), indent=2, sort_keys=True) + "\n"

    def to_json_file(
        self,
        json_file_path: Union[str, os.PathLike],
        use_diff: bool = True,
        keys_to_pop: Optional[list[str]] = None,
    ) -> None:
        """Write `to_json_string(use_diff, keys_to_pop=keys_to_pop)` to `json_file_path`."""
        with open(json_file_path, "w", encoding="utf-8") as writer:
            writer.write(self.to_json_string(use_diff=use_diff, keys_to_pop=keys_to_pop))

    # ----------------------------------------------------------------------------------------------
    # conversion to and from transformers

    @classmethod
    def from_transformers(cls, hf_config: Any) -> GenerationConfig:
        """A pydecode copy of a `transformers.GenerationConfig` (or of a pydecode one).

        Every attribute is deep-copied, custom entries and metadata included; a transformers
        `WatermarkingConfig` becomes pydecode's. Nothing is re-validated (this is a copy, like
        `copy.deepcopy`), so no warning is repeated. transformers is not imported.
        """
        if isinstance(hf_config, GenerationConfig):
            return hf_config.copy()
        if not _is_transformers_object(hf_config, "GenerationConfig"):
            raise TypeError(
                f"Expected a transformers or pydecode GenerationConfig, got {type(hf_config).__name__}."
            )
        state = copy.deepcopy(hf_config.__dict__)
        state["watermarking_config"] = _coerce_watermarking_config(state.get("watermarking_config"))
        config = cls.__new__(cls)
        for name in GENERATION_FIELDS + ("_from_model_config", "transformers_version"):
            config.__dict__[name] = None  # fields an older transformers may not have
        config.__dict__.update(state)
        return config

    def to_transformers(self) -> transformers.GenerationConfig:
        """The equivalent `transformers.GenerationConfig` (imports transformers; ImportError without it).

        Attributes are deep-copied, custom entries included; the watermarking config becomes transformers'
        (a "pydecode-hash" watermark raises `ValueError`: transformers cannot run it). Not re-validated.
        """
        hf_module = _import_transformers_generation()
        state = copy.deepcopy(self.__dict__)
        watermarking = state.get("watermarking_config")
        if isinstance(watermarking, WatermarkingConfig):
            state["watermarking_config"] = watermarking.to_transformers()
        hf_config = hf_module.GenerationConfig()
        hf_config.__dict__.update(state)
        return hf_config


__all__ = [
    "ALL_CACHE_IMPLEMENTATIONS",
    "CUSTOM_PENALTY_FIELDS",
    "GENERATION_CONFIG_NAME",
    "GENERATION_FIELDS",
    "GenerationConfig",
    "GenerationMode",
    "InvalidGenerationConfigFileError",
    "WatermarkingConfig",
    "WATERMARK_SEEDING_SCHEMES",
]
