"""Detector for green-list watermarks (Kirchenbauer et al. 2023, arXiv:2306.04634).

:class:`WatermarkDetector` takes the constructor arguments of transformers' ``WatermarkDetector``
(5.24) and returns the same outputs (numpy arrays in a :class:`WatermarkDetectorOutput`, or the
boolean predictions). It scores every n-gram of a passage: for each scored token, is it in the
greenlist its context selects? With ``T`` tokens scored and ``G`` of them green,
``z = (G - gamma * T) / sqrt(T * gamma * (1 - gamma))`` and ``p = 0.5 * erfc(z / sqrt(2))``
(one-sided normal tail), where ``gamma`` is ``greenlist_ratio``.

Schemes (``watermarking_config.seeding_scheme``):

* ``"lefthash"`` / ``"selfhash"``: transformers' greenlists (:func:`pydecode.ops.hf_greenlist_ids`,
  a CPU ``torch.randperm`` seeded as transformers seeds it). The n-grams and counts follow
  transformers' detector, so on the same input the outputs are equal to transformers' for text
  generated on CPU (by transformers' ``WatermarkLogitsProcessor`` or pydecode's). transformers
  draws the permutation with a generator of the ``device`` it is given, so text watermarked by
  transformers on a GPU has other greenlists; pydecode always uses the CPU stream.
* ``"pydecode-hash"``: pydecode's fast scheme (:func:`pydecode.ops.hash_greenlist_mask`): the
  token at position ``t`` is scored against the hash greenlist of the ``context_width`` tokens
  before it, like ``"lefthash"``.

A leading BOS token (``model_config.bos_token_id``, or ``decoder_start_token_id`` for
encoder-decoder models) is dropped when every row starts with it, as in transformers; rows that
disagree raise ``ValueError``. Differences: a config without a BOS id skips that step
(transformers fails comparing with ``None``), and arguments are checked up front.
"""

from __future__ import annotations

import collections
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import torch

from ..ops.watermark import HASH_SCHEME, HF_SCHEMES, hash_greenlist_mask, hf_greenlist_ids

__all__ = ["WatermarkDetector", "WatermarkDetectorOutput"]

# Rows of hash contexts scored per call: each row expands to (max token id + 1) int64 hashes,
# so 256 rows x 32k vocab stay near 64 MB of temporaries.
_HASH_CHUNK_ROWS = 256


@dataclass
class WatermarkDetectorOutput:
    """Per-row detection results (numpy arrays of shape ``(batch,)``), transformers' fields:
    ``num_tokens_scored``, ``num_green_tokens``, ``green_fraction``, ``z_score``, ``p_value``,
    ``prediction`` (``z_score > z_threshold``) and ``confidence`` (``1 - p_value``)."""

    num_tokens_scored: Optional[np.ndarray] = None
    num_green_tokens: Optional[np.ndarray] = None
    green_fraction: Optional[np.ndarray] = None
    z_score: Optional[np.ndarray] = None
    p_value: Optional[np.ndarray] = None
    prediction: Optional[np.ndarray] = None
    confidence: Optional[np.ndarray] = None


def _config_dict(watermarking_config: Any) -> dict[str, Any]:
    if isinstance(watermarking_config, Mapping):
        config = dict(watermarking_config)
    elif hasattr(watermarking_config, "to_dict"):
        config = dict(watermarking_config.to_dict())
    else:
        raise TypeError(
            "watermarking_config must be a WatermarkingConfig (pydecode's or transformers') or a dict, "
            f"got {type(watermarking_config).__name__}"
        )
    defaults = {"greenlist_ratio": 0.25, "bias": 2.0, "hashing_key": 15485863, "seeding_scheme": "lefthash",
                "context_width": 1}
    unknown = set(config) - set(defaults)
    if unknown:
        raise TypeError(f"watermarking_config has unknown keys {sorted(unknown)}; allowed: {sorted(defaults)}")
    return {**defaults, **config}


class WatermarkDetector:
    """Detect green-list watermarked text (see the module docstring).

    Args:
        model_config: the generating model's config (reads ``vocab_size``, ``bos_token_id``,
            ``is_encoder_decoder`` and ``decoder_start_token_id``); any object with those attributes.
        device: the device the text was generated on (transformers' argument; the greenlists are
            always drawn on CPU, see the module docstring). Input ids may live on any device.
        watermarking_config: the config used at generation (pydecode's or transformers'
            ``WatermarkingConfig``, or a dict of its fields).
        ignore_repeated_ngrams: count each distinct n-gram once.
        max_cache_size: LRU size of the per-context greenlist cache.
    """

    def __init__(
        self,
        model_config: Any,
        device: Union[str, torch.device],
        watermarking_config: Any,
        ignore_repeated_ngrams: bool = False,
        max_cache_size: int = 128,
    ):
        config = _config_dict(watermarking_config)
        scheme = config["seeding_scheme"]
        if scheme not in HF_SCHEMES + (HASH_SCHEME,):
            raise ValueError(f"seeding_scheme must be one of {list(HF_SCHEMES + (HASH_SCHEME,))}, got {scheme!r}")
        ratio = config["greenlist_ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio < 1.0:
            raise ValueError(f"greenlist_ratio must be a number in (0, 1) exclusive, got {ratio!r}")
        width = config["context_width"]
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"context_width must be an int >= 1, got {width!r}")
        key = config["hashing_key"]
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < 2**63:
            raise ValueError(f"hashing_key must be an int in [0, 2**63), got {key!r}")
        vocab_size = getattr(model_config, "vocab_size", None)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"model_config.vocab_size must be a positive int, got {vocab_size!r}")
        if isinstance(max_cache_size, bool) or not isinstance(max_cache_size, int) or max_cache_size < 1:
            raise ValueError(f"max_cache_size must be a positive int, got {max_cache_size!r}")

        self.device = torch.device(device)
        self.vocab_size = vocab_size
        self.greenlist_ratio = float(ratio)
        self.seeding_scheme = scheme
        self.context_width = width
        self.hashing_key = key
        self.ignore_repeated_ngrams = bool(ignore_repeated_ngrams)
        is_encoder_decoder = bool(getattr(model_config, "is_encoder_decoder", False))
        self.bos_token_id = getattr(
            model_config, "decoder_start_token_id" if is_encoder_decoder else "bos_token_id", None
        )
        # Greenlists depend only on the context tokens the seed reads, so they are cached by those.
        self._greenlist = functools.lru_cache(maxsize=max_cache_size)(self._hf_greenlist)

    # ------------------------------------------------------------------ scoring
    def _hf_greenlist(self, context: tuple[int, ...]) -> frozenset:
        ids = hf_greenlist_ids(
            torch.tensor(context, dtype=torch.int64),
            vocab_size=self.vocab_size,
            greenlist_ratio=self.greenlist_ratio,
            hashing_key=self.hashing_key,
            seeding_scheme=self.seeding_scheme,
            context_width=self.context_width,
        )
        return frozenset(ids.tolist())

    def _ngram_size(self) -> int:
        # selfhash seeds with the scored token itself (its last context_width tokens include it),
        # lefthash and the hash scheme with the context_width tokens before it.
        return self.context_width if self.seeding_scheme == "selfhash" else self.context_width + 1

    def _green_hf(self, ngrams: list[tuple[int, ...]]) -> list[bool]:
        width = self.context_width
        out = []
        for ngram in ngrams:
            # selfhash: the seed reads the last context_width tokens of the whole n-gram (target
            # included); lefthash: only the last token before the target.
            context = ngram[-width:] if self.seeding_scheme == "selfhash" else ngram[-2:-1]
            out.append(ngram[-1] in self._greenlist(context))
        return out

    def _green_hash(self, ngrams: list[tuple[int, ...]]) -> list[bool]:
        grams = torch.tensor(ngrams, dtype=torch.int64)
        green = torch.empty(len(ngrams), dtype=torch.bool)
        for start in range(0, len(ngrams), _HASH_CHUNK_ROWS):
            chunk = grams[start : start + _HASH_CHUNK_ROWS]
            targets = chunk[:, -1]
            mask = hash_greenlist_mask(
                chunk[:, :-1], int(targets.max()) + 1, greenlist_ratio=self.greenlist_ratio,
                hashing_key=self.hashing_key,
            )
            green[start : start + chunk.shape[0]] = mask.gather(1, targets[:, None])[:, 0]
        return green.tolist()

    def _score_rows(self, input_ids: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        n = self._ngram_size()
        rows = input_ids.tolist()
        scored = np.zeros(len(rows))
        green = np.zeros(len(rows))
        for b, row in enumerate(rows):
            counts = collections.Counter(tuple(row[i : i + n]) for i in range(len(row) - n + 1))
            grams = list(counts)
            flags = self._green_hash(grams) if self.seeding_scheme == HASH_SCHEME else self._green_hf(grams)
            if self.ignore_repeated_ngrams:
                scored[b] = len(grams)
                green[b] = sum(flags)
            else:
                scored[b] = sum(counts.values())
                green[b] = sum(counts[g] for g, f in zip(grams, flags) if f)
        return scored, green

    def _z_score(self, green: np.ndarray, scored: np.ndarray) -> np.ndarray:
        gamma = self.greenlist_ratio
        return (green - gamma * scored) / np.sqrt(scored * gamma * (1 - gamma))

    @staticmethod
    def _p_value(z: np.ndarray) -> np.ndarray:
        # Upper normal tail, computed with erfc in float64 so large z keep their precision.
        return 0.5 * torch.special.erfc(torch.as_tensor(z / math.sqrt(2))).numpy()

    # ------------------------------------------------------------------ public
    def __call__(
        self, input_ids: torch.Tensor, z_threshold: float = 3.0, return_dict: bool = False
    ) -> Union[WatermarkDetectorOutput, np.ndarray]:
        """Score ``input_ids`` (``(batch, length)`` integer tensor; drop the prompt for best results).

        Returns the ``(batch,)`` bool predictions ``z_score > z_threshold``, or with
        ``return_dict=True`` a :class:`WatermarkDetectorOutput`.
        """
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
        if input_ids.dim() != 2 or input_ids.is_floating_point() or input_ids.dtype == torch.bool:
            raise ValueError(f"input_ids must be a 2-D integer tensor, got {input_ids.dtype} {tuple(input_ids.shape)}")
        if isinstance(z_threshold, bool) or not isinstance(z_threshold, (int, float)):
            raise TypeError(f"z_threshold must be a number, got {type(z_threshold).__name__}")
        input_ids = input_ids.to("cpu", torch.int64)
        if self.bos_token_id is not None and input_ids.shape[0] > 0 and input_ids.shape[1] > 0:
            has_bos = input_ids[:, 0] == self.bos_token_id
            if bool(has_bos.any()) != bool(has_bos.all()):
                raise ValueError(
                    "Some batch contains inconsistent leading BOS token. Make sure "
                    "to prepare input with the same tokenization parameters."
                )
            if bool(has_bos[0]):
                input_ids = input_ids[:, 1:]
        if input_ids.shape[-1] - self.context_width < 1:
            raise ValueError(
                f"Must have at least `1` token to score after the first "
                f"min_prefix_len={self.context_width} tokens required by the seeding scheme."
            )
        if self.seeding_scheme == HASH_SCHEME and bool(((input_ids < 0) | (input_ids >= 2**31)).any()):
            raise ValueError(f"input_ids must hold token ids in [0, 2**31) for the {HASH_SCHEME!r} scheme")

        scored, green = self._score_rows(input_ids)
        z_score = self._z_score(green, scored)
        prediction = z_score > z_threshold
        if not return_dict:
            return prediction
        p_value = self._p_value(z_score)
        return WatermarkDetectorOutput(
            num_tokens_scored=scored,
            num_green_tokens=green,
            green_fraction=green / scored,
            z_score=z_score,
            p_value=p_value,
            prediction=prediction,
            confidence=1 - p_value,
        )
