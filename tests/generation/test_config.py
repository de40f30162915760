"""Parity of pydecode.generation.config with transformers' GenerationConfig (the installed 5.x version).

Everything is compared against transformers at test time: the field list, defaults, JSON on disk,
validation errors and warnings, generation modes and `from_model_config`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

transformers = pytest.importorskip("transformers")

import transformers.generation.configuration_utils as hf_config_module  # noqa: E402
import transformers.utils.logging as hf_logging  # noqa: E402
from transformers import CompileConfig  # noqa: E402
from transformers import GenerationConfig as HFGenerationConfig  # noqa: E402
from transformers.generation import GenerationMode as HFGenerationMode  # noqa: E402
from transformers.generation import WatermarkingConfig as HFWatermarkingConfig  # noqa: E402

import pydecode.generation.config as pd_config_module  # noqa: E402
from pydecode.generation import GenerationConfig, GenerationMode, WatermarkingConfig  # noqa: E402
from pydecode.generation.config import InvalidGenerationConfigFileError  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
HF_LOGGER = "transformers.generation.configuration_utils"
PD_LOGGER = "pydecode.generation.config"


# ------------------------------------------------------------------------------------------------
# helpers


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def capture_logs(logger_name: str):
    """Records of `logger_name` (works although transformers' loggers do not propagate)."""
    handler = _ListHandler()
    log = logging.getLogger(logger_name)
    log.addHandler(handler)
    try:
        yield handler.records
    finally:
        log.removeHandler(handler)


def reset_once_caches() -> None:
    """Both libraries log some messages only once per process; forget what was logged."""
    hf_logging.warning_once.cache_clear()
    hf_logging.info_once.cache_clear()
    pd_config_module._LOGGED_ONCE.clear()


def run_outcome(fn, logger_name: str) -> tuple[Exception | None, list[str]]:
    """Call `fn`; return (ValueError or None, warning messages logged or warned)."""
    reset_once_caches()
    error = None
    with capture_logs(logger_name) as records, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fn()
        except ValueError as exc:
            error = exc
    messages = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    messages += [str(w.message) for w in caught]
    return error, messages


def rich_kwargs() -> dict[str, Any]:
    """Many non-default fields (valid, no minor issues) plus custom entries."""
    return {
        "max_new_tokens": 32,
        "min_new_tokens": 2,
        "early_stopping": "never",
        "max_time": 3.5,
        "stop_strings": ["\n\n", "END"],
        "do_sample": True,
        "num_beams": 4,
        "use_cache": True,
        "cache_implementation": "static",
        "max_cache_len": 256,
        "temperature": 0.7,
        "top_k": 10,
        "top_p": 0.9,
        "min_p": 0.05,
        "typical_p": 0.95,
        "epsilon_cutoff": 3e-4,
        "eta_cutoff": 1e-3,
        "repetition_penalty": 1.1,
        "encoder_repetition_penalty": 1.05,
        "length_penalty": 0.8,
        "no_repeat_ngram_size": 3,
        "bad_words_ids": [[5], [6, 7]],
        "renormalize_logits": True,
        "forced_bos_token_id": 0,
        "forced_eos_token_id": [1, 2],
        "remove_invalid_values": True,
        "exponential_decay_length_penalty": [5, 1.1],
        "suppress_tokens": [3],
        "begin_suppress_tokens": [4],
        "sequence_bias": [[[11, 12], -1.5]],
        "guidance_scale": 1.5,
        "watermarking_config": {"greenlist_ratio": 0.5, "bias": 1.5, "seeding_scheme": "selfhash"},
        "num_return_sequences": 2,
        "output_scores": True,
        "output_logits": True,
        "return_dict_in_generate": True,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": [2, 3, 9],
        "decoder_start_token_id": 0,
        "num_assistant_tokens": 7,
        "num_assistant_tokens_schedule": "heuristic",
        "disable_compile": True,
        # custom entries (OpenAI penalties and an arbitrary one)
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "my_custom_flag": {"nested": [1, 2]},
    }


CONFIG_CASES = {
    "default": {},
    "rich": rich_kwargs(),
    "greedy_eos_list": {"max_new_tokens": 5, "eos_token_id": [7, 8], "pad_token_id": 7},
    "lefthash": {"do_sample": True, "watermarking_config": {"context_width": 3, "hashing_key": 7}},
}


# ------------------------------------------------------------------------------------------------
# fields and defaults


def test_fields_and_defaults_match_transformers():
    hf, pd = HFGenerationConfig(), GenerationConfig()
    hf_fields = set(vars(hf))
    assert set(vars(pd)) == hf_fields, (hf_fields - set(vars(pd)), set(vars(pd)) - hf_fields)
    for name in hf_fields:
        assert getattr(pd, name) == getattr(hf, name), name
    assert (
        set(pd_config_module.GENERATION_FIELDS) | {"_from_model_config", "transformers_version"} == hf_fields
    )
    assert (
        GenerationConfig._get_default_generation_params()
        == HFGenerationConfig._get_default_generation_params()
    )
    assert GenerationConfig.extra_output_flags == HFGenerationConfig.extra_output_flags


def test_module_constants_match_transformers():
    assert pd_config_module.ALL_CACHE_IMPLEMENTATIONS == hf_config_module.ALL_CACHE_IMPLEMENTATIONS
    assert (
        pd_config_module.ALL_STATIC_CACHE_IMPLEMENTATIONS == hf_config_module.ALL_STATIC_CACHE_IMPLEMENTATIONS
    )
    assert pd_config_module.METADATA_FIELDS == hf_config_module.METADATA_FIELDS


def test_generation_mode_values_match_transformers():
    assert {m.name: m.value for m in GenerationMode} == {m.name: m.value for m in HFGenerationMode}
    assert GenerationMode("sample") is GenerationMode.SAMPLE
    assert GenerationMode.BEAM_SEARCH == "beam_search" == HFGenerationMode.BEAM_SEARCH
    with pytest.raises(ValueError, match="greedy_search"):
        GenerationMode("nope")


def test_watermarking_defaults_match_transformers():
    assert WatermarkingConfig().to_dict() == HFWatermarkingConfig().to_dict()
    assert WatermarkingConfig().to_json_string() == HFWatermarkingConfig().to_json_string()
    # transformers' @dataclass replaces its JSON repr by "WatermarkingConfig()"; pydecode keeps the JSON.
    assert repr(WatermarkingConfig()) == "WatermarkingConfig " + WatermarkingConfig().to_json_string()


def test_default_serialisation_matches_transformers():
    hf, pd = HFGenerationConfig(), GenerationConfig()
    assert pd.to_dict() == hf.to_dict()
    assert pd.to_diff_dict() == hf.to_diff_dict()
    for use_diff in (True, False):
        for ignore_metadata in (True, False):
            assert pd.to_json_string(use_diff, ignore_metadata) == hf.to_json_string(
                use_diff, ignore_metadata
            )
    assert repr(pd) == repr(hf)
    assert hash(pd) == hash(hf)
    assert pd.to_dict()["transformers_version"] == transformers.__version__


def test_transformers_version_fallback(monkeypatch):
    def not_installed(name):
        raise pd_config_module.importlib_metadata.PackageNotFoundError(name)

    monkeypatch.setattr(pd_config_module.importlib_metadata, "version", not_installed)
    assert pd_config_module._transformers_version.__wrapped__() == "5.24.0"


def test_import_does_not_import_transformers():
    code = "import sys, pydecode.generation.config; assert 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(REPO_ROOT))


# ------------------------------------------------------------------------------------------------
# serialisation round trips


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_same_json_as_transformers(case):
    kwargs = CONFIG_CASES[case]
    hf, pd = HFGenerationConfig(**copy.deepcopy(kwargs)), GenerationConfig(**copy.deepcopy(kwargs))
    assert pd.to_dict() == hf.to_dict()
    assert pd.to_diff_dict() == hf.to_diff_dict()
    for use_diff in (True, False):
        assert pd.to_json_string(use_diff=use_diff) == hf.to_json_string(use_diff=use_diff)
    assert pd == hf
    assert hash(pd) == hash(hf)


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_pydecode_save_transformers_load(case, tmp_path):
    pd = GenerationConfig(**copy.deepcopy(CONFIG_CASES[case]))
    pd.save_pretrained(tmp_path)
    hf_loaded = HFGenerationConfig.from_pretrained(tmp_path)
    pd_loaded = GenerationConfig.from_pretrained(tmp_path)
    assert pd_loaded.to_dict() == hf_loaded.to_dict()
    assert hf_loaded.to_json_string() == pd.to_json_string()
    assert pd_loaded == pd
    if case == "rich":
        assert hf_loaded.presence_penalty == 0.5 and hf_loaded.frequency_penalty == 0.25
        assert isinstance(hf_loaded.watermarking_config, HFWatermarkingConfig)
        assert hf_loaded.watermarking_config.seeding_scheme == "selfhash"


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_transformers_save_pydecode_load(case, tmp_path):
    hf = HFGenerationConfig(**copy.deepcopy(CONFIG_CASES[case]))
    hf.save_pretrained(tmp_path, config_file_name="gen.json")
    pd_loaded = GenerationConfig.from_pretrained(tmp_path, "gen.json")
    hf_loaded = HFGenerationConfig.from_pretrained(tmp_path, "gen.json")
    assert pd_loaded.to_dict() == hf_loaded.to_dict()
    assert pd_loaded.to_json_string() == hf.to_json_string()
    if case == "rich":
        assert isinstance(pd_loaded.watermarking_config, WatermarkingConfig)
        assert pd_loaded.presence_penalty == 0.5


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_from_transformers_to_transformers(case):
    hf = HFGenerationConfig(**copy.deepcopy(CONFIG_CASES[case]))
    pd = GenerationConfig.from_transformers(hf)
    assert isinstance(pd, GenerationConfig)
    assert pd.to_dict() == hf.to_dict()
    back = pd.to_transformers()
    assert type(back) is HFGenerationConfig
    assert back.to_dict() == hf.to_dict()
    assert back.to_json_string(use_diff=False) == hf.to_json_string(use_diff=False)
    if hf.watermarking_config is not None:
        assert isinstance(pd.watermarking_config, WatermarkingConfig)
        assert isinstance(back.watermarking_config, HFWatermarkingConfig)
    # a pydecode config is accepted too (a copy)
    again = GenerationConfig.from_transformers(pd)
    assert again == pd and again is not pd
    with pytest.raises(TypeError):
        GenerationConfig.from_transformers({"do_sample": True})


def test_conversion_keeps_compile_config_and_private_state():
    hf = HFGenerationConfig(compile_config=CompileConfig(fullgraph=True), do_sample=True)
    pd = GenerationConfig.from_transformers(hf)
    assert pd.compile_config == CompileConfig(fullgraph=True)
    assert pd.to_json_string() == hf.to_json_string()
    back = pd.to_transformers()
    assert back.compile_config == hf.compile_config


def test_save_pretrained_drops_compile_config(tmp_path):
    pd = GenerationConfig(compile_config=CompileConfig(), top_k=5, do_sample=True)
    pd.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    assert "compile_config" not in saved and saved["top_k"] == 5


def test_sequence_bias_tuple_keys_serialise_like_transformers():
    kwargs = {"sequence_bias": {(1, 2): 0.5, (3,): -1.0}}
    assert GenerationConfig(**kwargs).to_json_string() == HFGenerationConfig(**kwargs).to_json_string()


def test_dtype_values_become_strings():
    import torch

    kwargs = {"cache_config": {"dtype": torch.float16, "inner": {"dtype": torch.bfloat16}}}
    pd, hf = GenerationConfig(**kwargs), HFGenerationConfig(**kwargs)
    assert pd.to_dict()["cache_config"] == {"dtype": "float16", "inner": {"dtype": "bfloat16"}}
    assert pd.to_json_string() == hf.to_json_string()


def test_to_json_file(tmp_path):
    pd = GenerationConfig(do_sample=True, top_p=0.5)
    hf = HFGenerationConfig(do_sample=True, top_p=0.5)
    for use_diff in (True, False):
        pd.to_json_file(tmp_path / "pd.json", use_diff=use_diff)
        hf.to_json_file(tmp_path / "hf.json", use_diff=use_diff)
        assert (tmp_path / "pd.json").read_text() == (tmp_path / "hf.json").read_text()


def test_copy_deepcopy_pickle_and_eq():
    pd = GenerationConfig(**copy.deepcopy(rich_kwargs()))
    for clone in (pd.copy(), copy.deepcopy(pd), pickle.loads(pickle.dumps(pd))):
        assert clone == pd and clone is not pd
        assert clone.watermarking_config is not pd.watermarking_config
    clone = pd.copy()
    clone.bad_words_ids.append([99])
    assert pd.bad_words_ids == [[5], [6, 7]]
    assert clone != pd
    assert pd != "not a config"
    # metadata is ignored by equality
    assert GenerationConfig(transformers_version="4.0.0") == GenerationConfig()


# ------------------------------------------------------------------------------------------------
# watermarking


def test_watermarking_dict_becomes_config_and_api():
    pd = GenerationConfig(watermarking_config={"bias": 3.0})
    assert isinstance(pd.watermarking_config, WatermarkingConfig)
    assert pd.watermarking_config.bias == 3.0
    pd.update(watermarking_config={"greenlist_ratio": 0.1})
    assert pd.watermarking_config == WatermarkingConfig(greenlist_ratio=0.1)
    # transformers' object is converted too
    pd = GenerationConfig(watermarking_config=HFWatermarkingConfig(context_width=2))
    assert type(pd.watermarking_config) is WatermarkingConfig and pd.watermarking_config.context_width == 2

    wm = WatermarkingConfig.from_dict({"bias": 1.0}, hashing_key=5, unknown=1)
    assert (wm.bias, wm.hashing_key) == (1.0, 5)
    wm.update(context_width=4, unknown=2)
    assert wm.context_width == 4 and not hasattr(wm, "unknown")
    assert dict(wm) == wm.to_dict()
    assert wm != WatermarkingConfig()  # field values matter (transformers' dataclass compares no fields)
    assert wm == HFWatermarkingConfig(**wm.to_dict()) and HFWatermarkingConfig(**wm.to_dict()) == wm
    with pytest.raises(TypeError):
        WatermarkingConfig.from_dict({"not_a_field": 1})


def test_watermarking_to_json_file_matches_transformers(tmp_path):
    kwargs = {"greenlist_ratio": 0.3, "seeding_scheme": "selfhash"}
    WatermarkingConfig(**kwargs).to_json_file(tmp_path / "pd.json")
    HFWatermarkingConfig(**kwargs).to_json_file(tmp_path / "hf.json")
    assert (tmp_path / "pd.json").read_text() == (tmp_path / "hf.json").read_text()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({}, None),
        ({"seeding_scheme": "selfhash"}, None),
        ({"seeding_scheme": "righthash"}, "seeding_scheme"),
        ({"greenlist_ratio": 1.5}, "greenlist_ratio"),
        ({"greenlist_ratio": -0.1}, "greenlist_ratio"),
        ({"greenlist_ratio": 0.0}, None),
        ({"greenlist_ratio": 1.0}, None),
        ({"context_width": 0}, "context_width"),
        ({"context_width": 4}, None),
    ],
)
def test_watermarking_validate_parity(kwargs, field):
    hf_error = pd_error = None
    try:
        HFWatermarkingConfig(**kwargs).validate()
    except ValueError as exc:
        hf_error = exc
    try:
        WatermarkingConfig(**kwargs).validate()
    except ValueError as exc:
        pd_error = exc
    assert (hf_error is None) == (pd_error is None) == (field is None)
    if field is not None:
        assert field in str(pd_error)


def test_pydecode_hash_scheme(tmp_path):
    wm = WatermarkingConfig(seeding_scheme="pydecode-hash")
    wm.validate()  # pydecode accepts its own scheme ...
    with pytest.raises(ValueError):
        HFWatermarkingConfig(seeding_scheme="pydecode-hash").validate()  # ... transformers does not
    pd = GenerationConfig(do_sample=True, watermarking_config={"seeding_scheme": "pydecode-hash"})
    pd.save_pretrained(tmp_path)
    assert GenerationConfig.from_pretrained(tmp_path) == pd
    with pytest.raises(ValueError, match="pydecode-hash"):
        pd.to_transformers()
    assert "pydecode-hash" in (WatermarkingConfig.__doc__ or "")


# ------------------------------------------------------------------------------------------------
# validate()

# (kwargs, field the message must name or None). Outcome (error / warning / nothing) must equal
# transformers' for construction, for validate() and for validate(strict=True).
VALIDATION_CASES = [
    ({}, None),
    ({"early_stopping": "sometimes"}, "early_stopping"),
    ({"early_stopping": "never", "num_beams": 2}, None),
    ({"early_stopping": True}, "early_stopping"),
    ({"early_stopping": True, "num_beams": 1}, "early_stopping"),
    ({"num_beams": 1}, None),
    ({"length_penalty": 2.0}, "length_penalty"),
    ({"length_penalty": 1.0}, None),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": -3}, "max_new_tokens"),
    ({"max_new_tokens": 1}, None),
    ({"assistant_ensemble_weight": 0.0}, "assistant_ensemble_weight"),
    ({"assistant_ensemble_weight": 1.0}, "assistant_ensemble_weight"),
    ({"assistant_ensemble_weight": 0.5}, None),
    ({"pad_token_id": -1}, "pad_token_id"),
    ({"pad_token_id": 0}, None),
    ({"cache_implementation": "foo"}, "cache_implementation"),
    ({"cache_implementation": "paged"}, None),
    ({"cache_implementation": "hybrid"}, None),
    ({"cache_implementation": "quantized"}, None),
    ({"max_cache_len": 64}, "max_cache_len"),
    ({"max_cache_len": 64, "cache_implementation": "dynamic"}, "max_cache_len"),
    ({"max_cache_len": 64, "cache_implementation": "static"}, None),
    ({"compile_config": {"fullgraph": True}}, "compile_config"),
    ({"compile_config": CompileConfig()}, None),
    ({"watermarking_config": {"seeding_scheme": "foo"}}, "seeding_scheme"),
    ({"watermarking_config": {"greenlist_ratio": 2.0}}, "greenlist_ratio"),
    ({"watermarking_config": {"context_width": 0}}, "context_width"),
    ({"temperature": 0.7}, "temperature"),
    ({"temperature": 1.0}, None),
    ({"temperature": 0.7, "do_sample": False}, "temperature"),
    ({"temperature": 0.7, "do_sample": True}, None),
    ({"top_p": 0.9}, "top_p"),
    ({"min_p": 0.1}, "min_p"),
    ({"top_h": 0.4}, "top_h"),
    ({"typical_p": 0.9}, "typical_p"),
    ({"top_k": 10}, "top_k"),
    ({"top_k": -1}, "top_k"),
    ({"top_k": 50}, None),
    ({"top_k": -1, "do_sample": True}, None),
    ({"epsilon_cutoff": 0.01}, "epsilon_cutoff"),
    ({"eta_cutoff": 0.01}, "eta_cutoff"),
    ({"num_return_sequences": 2}, "num_return_sequences"),
    ({"num_return_sequences": 2, "do_sample": True}, None),
    ({"num_return_sequences": 3, "num_beams": 2}, "num_return_sequences"),
    ({"num_return_sequences": 2, "num_beams": 4}, None),
    ({"use_cache": False, "cache_implementation": "static"}, "cache_implementation"),
    ({"use_cache": False, "cache_config": {}}, "cache_config"),
    ({"use_cache": False}, None),
    ({"output_scores": True}, "output_scores"),
    ({"output_logits": True}, "output_logits"),
    ({"output_attentions": True}, "output_attentions"),
    ({"output_hidden_states": True}, "output_hidden_states"),
    ({"output_scores": True, "return_dict_in_generate": True}, None),
    ({"suppress_tokens": [1], "forced_eos_token_id": 1}, "forced_eos_token_id"),
    ({"suppress_tokens": [1, 2], "forced_bos_token_id": 2}, "forced_bos_token_id"),
    ({"suppress_tokens": [1], "forced_eos_token_id": [1, 2]}, None),
    ({"suppress_tokens": [1], "forced_eos_token_id": []}, None),
    ({"logits_processor": []}, "logits_processor"),
    ({"streamer": None}, "streamer"),
    ({"assistant_model": None}, "assistant_model"),
    ({"negative_prompt_ids": None}, "negative_prompt_ids"),
    ({"temperature": 0.5, "top_p": 0.5, "pad_token_id": -2}, "temperature"),
    ({"continuous_batching_config": {"page_size": 16}}, "continuous_batching_config"),
]


def _case_id(case):
    return ",".join(f"{k}={v!r}" for k, v in case[0].items()) or "empty"


@pytest.mark.parametrize("kwargs, field", VALIDATION_CASES, ids=[_case_id(c) for c in VALIDATION_CASES])
def test_validate_on_construction_parity(kwargs, field):
    hf_error, hf_warnings = run_outcome(lambda: HFGenerationConfig(**copy.deepcopy(kwargs)), HF_LOGGER)
    pd_error, pd_warnings = run_outcome(lambda: GenerationConfig(**copy.deepcopy(kwargs)), PD_LOGGER)
    assert (pd_error is None) == (hf_error is None), (pd_error, hf_error)
    assert bool(pd_warnings) == bool(hf_warnings), (pd_warnings, hf_warnings)
    assert len(pd_warnings) == len(hf_warnings)
    if field is None:
        assert pd_error is None and not pd_warnings
    else:
        text = str(pd_error) if pd_error is not None else " ".join(pd_warnings)
        assert field in text


def _configure(cls, kwargs):
    config = cls()
    for key, value in copy.deepcopy(kwargs).items():
        if key == "watermarking_config":
            value = (WatermarkingConfig if cls is GenerationConfig else HFWatermarkingConfig)(**value)
        setattr(config, key, value)
    return config


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("kwargs, field", VALIDATION_CASES, ids=[_case_id(c) for c in VALIDATION_CASES])
def test_validate_method_parity(kwargs, field, strict):
    # Fields set after construction: validate() without provenance treats every field as user-set.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf, pd = _configure(HFGenerationConfig, kwargs), _configure(GenerationConfig, kwargs)
    hf_error, hf_warnings = run_outcome(lambda: hf.validate(strict=strict), HF_LOGGER)
    pd_error, pd_warnings = run_outcome(lambda: pd.validate(strict=strict), PD_LOGGER)
    assert (pd_error is None) == (hf_error is None), (pd_error, hf_error)
    assert bool(pd_warnings) == bool(hf_warnings), (pd_warnings, hf_warnings)
    if pd_error is not None:
        assert field in str(pd_error)


def test_minor_issue_warning_is_logged_once_with_details(caplog):
    reset_once_caches()
    with caplog.at_level(logging.INFO, logger=PD_LOGGER):
        GenerationConfig(temperature=0.3)
        GenerationConfig(temperature=0.3)
    warning_records = [r for r in caplog.records if r.levelno == logging.WARNING]
    info_records = [
        r for r in caplog.records if r.levelno == logging.INFO and "`temperature`" in r.getMessage()
    ]
    assert len(warning_records) == 1 and "temperature" in warning_records[0].getMessage()
    assert len(info_records) == 1 and "do_sample" in info_records[0].getMessage()
    assert all(r.name == PD_LOGGER for r in warning_records)


def test_strict_error_lists_every_minor_issue():
    config = GenerationConfig()
    config.temperature, config.output_scores, config.pad_token_id = 0.5, True, -1
    with pytest.raises(ValueError) as info:
        config.validate(strict=True)
    for field in ("temperature", "output_scores", "pad_token_id"):
        assert f"`{field}`" in str(info.value)


@pytest.mark.parametrize(
    "user_set",
    [
        None,
        set(),
        {"do_sample"},
        {"top_p"},
        {"do_sample", "top_p"},
        {"num_beams"},
        {"num_beams", "length_penalty"},
    ],
)
def test_user_set_attributes_filtering_parity(user_set):
    def make(cls):
        config = cls()
        config.do_sample, config.top_p, config.num_beams, config.length_penalty = False, 0.8, 1, 2.0
        return config

    hf, pd = make(HFGenerationConfig), make(GenerationConfig)
    for strict in (False, True):
        hf_outcome = run_outcome(
            lambda strict=strict: hf.validate(strict=strict, user_set_attributes=user_set), HF_LOGGER
        )
        pd_outcome = run_outcome(
            lambda strict=strict: pd.validate(strict=strict, user_set_attributes=user_set), PD_LOGGER
        )
        assert (hf_outcome[0] is None) == (pd_outcome[0] is None)
        assert bool(hf_outcome[1]) == bool(pd_outcome[1])
        if hf_outcome[0] is not None:
            for field in ("top_p", "length_penalty"):
                assert (f"`{field}`" in str(hf_outcome[0])) == (f"`{field}`" in str(pd_outcome[0]))


@pytest.mark.parametrize("value, ok", [(0.5, True), (-2, True), (None, True), ("high", False), (True, False)])
def test_custom_penalties_validation(value, ok):
    for name in ("presence_penalty", "frequency_penalty"):
        if ok:
            GenerationConfig(**{name: value})
        else:
            with pytest.raises(ValueError, match=name):
                GenerationConfig(**{name: value})


def test_model_config_inheritance_does_not_warn():
    # A model default (top_p) is harmless when the user explicitly asks for greedy decoding.
    for cls, logger_name in ((HFGenerationConfig, HF_LOGGER), (GenerationConfig, PD_LOGGER)):
        config = cls(top_p=0.9, do_sample=True)
        _, messages = run_outcome(lambda config=config: config.update(do_sample=False), logger_name)
        assert messages == []


# ------------------------------------------------------------------------------------------------
# from_pretrained / save_pretrained


def test_from_pretrained_directory_file_and_name(tmp_path):
    GenerationConfig(do_sample=True, top_k=3).save_pretrained(tmp_path)
    GenerationConfig(num_beams=3).save_pretrained(tmp_path, config_file_name="beams.json")
    assert GenerationConfig.from_pretrained(tmp_path).top_k == 3
    assert GenerationConfig.from_pretrained(str(tmp_path), "beams.json").num_beams == 3
    assert GenerationConfig.from_pretrained(tmp_path / "beams.json").num_beams == 3
    (tmp_path / "sub").mkdir()
    GenerationConfig(max_new_tokens=9).save_pretrained(tmp_path / "sub")
    assert GenerationConfig.from_pretrained(tmp_path, subfolder="sub").max_new_tokens == 9


def test_from_pretrained_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="generation_config.json") as info:
        GenerationConfig.from_pretrained(tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(FileNotFoundError, match="other.json"):
        GenerationConfig.from_pretrained(tmp_path, "other.json")
    missing = tmp_path / "does-not-exist"
    with pytest.raises(OSError, match="does-not-exist"):
        GenerationConfig.from_pretrained(missing)
    with pytest.raises(FileNotFoundError, match="local"):
        GenerationConfig.from_pretrained("some-org/some-hub-model-that-is-not-a-path")


@pytest.mark.parametrize("content", ['{"do_sample": true,', "\xff\xfe not json", "[1, 2]"])
def test_from_pretrained_malformed_json(tmp_path, content):
    path = tmp_path / "generation_config.json"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(ValueError, match="generation_config.json") as info:
        GenerationConfig.from_pretrained(tmp_path)
    assert isinstance(info.value, InvalidGenerationConfigFileError)
    assert isinstance(info.value, OSError)  # what transformers raises, so its callers' handlers still work
    assert str(path) in str(info.value)


def test_from_pretrained_kwargs_override_and_unused_kwargs(tmp_path):
    GenerationConfig(do_sample=True, top_k=3, temperature=0.5).save_pretrained(tmp_path)
    for cls in (GenerationConfig, HFGenerationConfig):
        config = cls.from_pretrained(tmp_path, top_k=1, foo=False)
        assert (config.top_k, config.temperature, config.foo) == (1, 0.5, False)

    pd_config, pd_unused = GenerationConfig.from_pretrained(
        tmp_path, top_k=1, foo=False, return_unused_kwargs=True
    )
    hf_config, hf_unused = HFGenerationConfig.from_pretrained(
        tmp_path, top_k=1, foo=False, return_unused_kwargs=True
    )
    assert pd_unused == hf_unused == {}  # transformers sets every kwarg, so none is ever unused
    assert pd_config.to_dict() == hf_config.to_dict()
    assert isinstance(
        GenerationConfig.from_pretrained(tmp_path, return_unused_kwargs=False), GenerationConfig
    )
    # download-only options are accepted and ignored
    GenerationConfig.from_pretrained(
        tmp_path, cache_dir="x", revision="v1", token=None, local_files_only=True
    )


def test_from_pretrained_from_model_config_flag(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "vocab_size": 10}))
    pd = GenerationConfig.from_pretrained(tmp_path, _from_model_config=True)
    hf = HFGenerationConfig.from_pretrained(tmp_path, _from_model_config=True)
    assert pd.to_dict() == hf.to_dict()


def test_save_pretrained_strictness_parity(tmp_path):
    # A loaded config with a minor issue can be saved back unchanged, but not once modified.
    (tmp_path / "generation_config.json").write_text(json.dumps({"temperature": 0.5}))
    for cls in (GenerationConfig, HFGenerationConfig):
        loaded = cls.from_pretrained(tmp_path)
        loaded.save_pretrained(tmp_path / cls.__module__)
        loaded.top_k = 5
        with pytest.raises(ValueError, match="temperature"):
            loaded.save_pretrained(tmp_path / "modified")
    fresh = GenerationConfig()
    fresh.temperature = 0.5
    with pytest.raises(ValueError, match="Fix these issues"):
        fresh.save_pretrained(tmp_path / "fresh")


def test_save_pretrained_to_a_file_fails(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(AssertionError):
        HFGenerationConfig().save_pretrained(target)
    with pytest.raises(NotADirectoryError, match="file"):
        GenerationConfig().save_pretrained(target)
    with pytest.raises(AssertionError):
        GenerationConfig().save_pretrained(target)
    with pytest.raises(NotImplementedError):
        GenerationConfig().save_pretrained(tmp_path / "d", push_to_hub=True)


def test_save_pretrained_creates_directory(tmp_path):
    GenerationConfig(max_new_tokens=4).save_pretrained(tmp_path / "a" / "b")
    saved = json.loads((tmp_path / "a" / "b" / "generation_config.json").read_text())
    assert saved == {"max_new_tokens": 4, "transformers_version": transformers.__version__}


# ------------------------------------------------------------------------------------------------
# update() / from_dict()

UPDATE_CASES = [
    ({"top_k": 5, "foo": 1}, {}),
    ({"top_k": 5, "foo": 1}, {"allow_custom_entries": True}),
    ({"top_k": 5, "num_beams": 2, "bar": None}, {"defaults_only": True}),
    ({"watermarking_config": {"bias": 4.0}}, {}),
    ({"do_sample": False, "max_length": 12}, {"defaults_only": True, "allow_custom_entries": True}),
]


@pytest.mark.parametrize("kwargs, flags", UPDATE_CASES)
def test_update_parity(kwargs, flags):
    hf = HFGenerationConfig(do_sample=True, top_k=7, temperature=0.9)
    pd = GenerationConfig(do_sample=True, top_k=7, temperature=0.9)
    hf_unused = hf.update(**flags, **copy.deepcopy(kwargs))
    pd_unused = pd.update(**flags, **copy.deepcopy(kwargs))
    assert pd_unused == hf_unused
    assert pd.to_dict() == hf.to_dict()


def test_update_does_not_mutate_input_and_validates():
    pd = GenerationConfig()
    kwargs = {"top_k": 3, "nope": 1}
    assert pd.update(**kwargs) == {"nope": 1}
    assert kwargs == {"top_k": 3, "nope": 1}
    with pytest.raises(ValueError, match="max_new_tokens"):
        pd.update(max_new_tokens=0)


def test_update_accepts_openai_penalties():
    # pydecode difference: these two custom entries are applied without allow_custom_entries.
    pd = GenerationConfig()
    assert pd.update(presence_penalty=0.4, frequency_penalty=0.1, other=2) == {"other": 2}
    assert (pd.presence_penalty, pd.frequency_penalty) == (0.4, 0.1)
    assert pd.update(defaults_only=True, presence_penalty=0.9) == {"presence_penalty": 0.9}  # already set
    assert pd.presence_penalty == 0.4
    assert HFGenerationConfig().update(presence_penalty=0.4) == {"presence_penalty": 0.4}


def test_generate_style_update_chain_matches_transformers():
    # As transformers' generate does: model config first (custom entries carried over), then global defaults.
    model_kwargs = {"do_sample": True, "top_p": 0.8, "eos_token_id": [1, 2], "presence_penalty": 0.3}
    results = []
    for cls in (HFGenerationConfig, GenerationConfig):
        model_config = cls(**model_kwargs)
        config = cls(max_new_tokens=5)
        config.update(**model_config.to_dict(), defaults_only=True, allow_custom_entries=True)
        config.update(**cls._get_default_generation_params(), defaults_only=True)
        results.append(config.to_dict())
    assert results[0] == results[1]
    assert (
        results[1]["top_k"] == 50 and results[1]["max_length"] == 20 and results[1]["presence_penalty"] == 0.3
    )


def test_from_dict_parity():
    config_dict = {"do_sample": True, "top_k": 4, "transformers_version": "4.40.0", "_commit_hash": "abc"}
    pd_config, pd_unused = GenerationConfig.from_dict(config_dict, top_k=2, baz=3, return_unused_kwargs=True)
    hf_config, hf_unused = HFGenerationConfig.from_dict(
        config_dict, top_k=2, baz=3, return_unused_kwargs=True
    )
    assert pd_unused == hf_unused
    assert pd_config.to_dict() == hf_config.to_dict()
    assert pd_config.transformers_version == "4.40.0"
    assert not hasattr(pd_config, "_commit_hash")


# ------------------------------------------------------------------------------------------------
# generation mode

MODE_CASES = [
    ({}, False),
    ({"do_sample": True}, False),
    ({"do_sample": False}, False),
    ({"num_beams": 1}, False),
    ({"num_beams": 3}, False),
    ({"num_beams": 3, "do_sample": True}, False),
    ({"penalty_alpha": 0.6, "top_k": 4}, False),
    ({"penalty_alpha": 0.6, "top_k": 1}, False),
    ({"num_beams": 4, "num_beam_groups": 2}, False),
    ({"num_beams": 4, "num_beam_groups": 2, "do_sample": True}, False),
    ({"force_words_ids": [[1, 2]]}, False),
    ({"constraints": []}, False),
    ({"dola_layers": "low"}, False),
    ({"dola_layers": "high", "do_sample": True}, False),
    ({"dola_layers": "low", "num_beams": 2}, False),
    ({"prompt_lookup_num_tokens": 3}, False),
    ({"prompt_lookup_num_tokens": 3, "do_sample": True}, False),
    ({"prompt_lookup_num_tokens": 3, "num_beams": 2}, False),
    ({"assistant_early_exit": 2}, False),
    ({"use_mtp": True}, False),
    ({}, True),
    ({"do_sample": True}, True),
    ({"num_beams": 2}, True),
    ({"num_beams": 2, "do_sample": True}, True),
]


@pytest.mark.parametrize("kwargs, with_assistant", MODE_CASES)
def test_generation_mode_parity(kwargs, with_assistant):
    assistant = object() if with_assistant else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf, pd = HFGenerationConfig(**kwargs), GenerationConfig(**kwargs)
    hf_mode: list = []
    pd_mode: list = []
    _, hf_warnings = run_outcome(lambda: hf_mode.append(hf.get_generation_mode(assistant)), HF_LOGGER)
    _, pd_warnings = run_outcome(lambda: pd_mode.append(pd.get_generation_mode(assistant)), PD_LOGGER)
    assert isinstance(pd_mode[0], GenerationMode)
    assert pd_mode[0].value == hf_mode[0].value
    assert bool(pd_warnings) == bool(hf_warnings)


# ------------------------------------------------------------------------------------------------
# from_model_config


def _tiny_model_configs():
    return [
        transformers.LlamaConfig(
            vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
        ),
        transformers.GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2),
        transformers.T5Config(vocab_size=64, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8),
        transformers.BartConfig(
            vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, forced_bos_token_id=0
        ),
        transformers.LlamaConfig(num_hidden_layers=1, pad_token_id=5, eos_token_id=[2, 3]),
    ]


@pytest.mark.parametrize("index", range(5))
def test_from_model_config_parity(index):
    model_config = _tiny_model_configs()[index]
    pd = GenerationConfig.from_model_config(model_config)
    hf = HFGenerationConfig.from_model_config(model_config)
    assert pd.to_dict() == hf.to_dict()
    assert pd.to_json_string() == hf.to_json_string()
    assert pd._original_object_hash == hash(pd)  # counts as unmodified
    # from the dict form too
    pd_from_dict = GenerationConfig.from_model_config(model_config.to_dict())
    hf_from_dict = HFGenerationConfig.from_model_config(model_config.to_dict())
    assert pd_from_dict.to_dict() == hf_from_dict.to_dict()


@pytest.mark.parametrize(
    "model_dict",
    [
        {"bos_token_id": 3, "decoder": {"eos_token_id": 4, "pad_token_id": 1}},
        {"text_config": {"eos_token_id": [4, 5], "bos_token_id": 9}, "bos_token_id": 3},
        {"generator": {"decoder_start_token_id": 2}, "output_scores": True},
        {"force_bos_token_to_be_generated": True, "bos_token_id": 0, "vocab_size": 100},
        {"_from_model_config": True, "eos_token_id": 1, "hidden_size": None},
    ],
)
def test_from_model_config_dict_parity(model_dict):
    pd_input = copy.deepcopy(model_dict)
    pd = GenerationConfig.from_model_config(pd_input)
    hf = HFGenerationConfig.from_model_config(copy.deepcopy(model_dict))
    assert pd.to_dict() == hf.to_dict()
    assert pd_input == model_dict  # pydecode leaves the caller's dict alone
    assert not hasattr(pd, "vocab_size")
