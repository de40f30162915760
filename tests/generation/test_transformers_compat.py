"""The seams that let generate run with transformers releases before 5.24 (the GPU host has 5.17),
checked with stand-ins for the older API (CI installs the pinned 5.24 only)."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Optional

import torch

from pydecode.generation import outputs
from pydecode.generation.runner import model_cache_key, output_cache, prepare_encoder_kwargs

from ._generate_models import tiny_model


class _OldEncoderDecoder:
    """transformers 5.17's entry point: only the encoder-decoder preparation exists."""

    config = SimpleNamespace(is_encoder_decoder=True)

    def _prepare_encoder_decoder_kwargs_for_generation(self, inputs, model_kwargs, name, config):  # noqa: ANN001, ANN202
        return {**model_kwargs, "encoder_outputs": ("encoded", name)}

    def prepare_inputs_for_generation(self, input_ids, next_sequence_length=None, past_key_values=None,  # noqa: ANN001, ANN201
                                      **kwargs):
        return {}


def test_encoder_prepared_through_the_older_entry_point() -> None:
    model = _OldEncoderDecoder()
    got = prepare_encoder_kwargs(model, torch.zeros(1, 2), {"a": 1}, "input_ids", None)
    assert got == {"a": 1, "encoder_outputs": ("encoded", "input_ids")}
    already = {"encoder_outputs": "given"}
    assert prepare_encoder_kwargs(model, torch.zeros(1, 2), already, "input_ids", None) is already
    decoder_only = SimpleNamespace(config=SimpleNamespace(is_encoder_decoder=False))
    assert prepare_encoder_kwargs(decoder_only, torch.zeros(1, 2), already, "input_ids", None) is already


def test_cache_keyword_under_the_installed_name() -> None:
    assert model_cache_key(_OldEncoderDecoder()) == "past_key_values"
    assert model_cache_key(tiny_model("llama")) == "cache"  # the pinned transformers


def test_output_class_without_a_cache_field_gets_past_key_values(monkeypatch) -> None:  # noqa: ANN001
    @dataclass
    class OldOutput:
        sequences: Any = None
        scores: Optional[tuple] = None
        logits: Optional[tuple] = None
        attentions: Optional[tuple] = None
        hidden_states: Optional[tuple] = None
        past_key_values: Any = None

    monkeypatch.setattr(outputs, "GenerateDecoderOnlyOutput", OldOutput)
    out = outputs.output_object(encoder_decoder=False, sequences=torch.ones(1, 2), scores=None, logits=None,
                                cache="the cache")
    assert isinstance(out, OldOutput) and out.past_key_values == "the cache"
    assert output_cache(SimpleNamespace(past_key_values="old")) == "old"
    assert output_cache(SimpleNamespace(cache="new", past_key_values=None)) == "new"
    assert output_cache(SimpleNamespace()) is None
