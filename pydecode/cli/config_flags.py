"""Command-line flags derived from ``pydecode.GenerationConfig``'s fields, with typed parsing.

Every field of :data:`pydecode.generation.config.GENERATION_FIELDS` (plus the custom
``presence_penalty`` / ``frequency_penalty``) becomes ``--field-name``; the value is parsed
by the field's annotation: ``int``, ``float``, ``bool`` (true/false/1/0/yes/no), ``str``, and
JSON for lists, dicts and unions (``--eos-token-id 2`` or ``--eos-token-id "[2, 3]"``,
``--bad-words-ids "[[5, 6]]"``). Left out: fields holding objects (``watermarking_config``:
use ``--watermark``; ``compile_config``, ``constraints``, ...) and the output flags
(``output_scores``, ``return_dict_in_generate``, ...), which change what generate returns
rather than the text.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from ..generation.config import CUSTOM_PENALTY_FIELDS, GENERATION_FIELDS, GenerationConfig

EXCLUDED = frozenset({
    "watermarking_config", "compile_config", "continuous_batching_config", "constraints", "force_words_ids",
    "output_attentions", "output_hidden_states", "output_scores", "output_logits", "return_dict_in_generate",
    "is_assistant",
})
PREFIX = "gc_"  # argparse dest prefix: keeps the fields apart from the commands' own options


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _typed(kind: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        try:
            return kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name}, got {value!r}") from None
    return parse


def _json_or_str(allow_str: bool, allow_bool: bool, annotation: str) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        if allow_bool and value.strip().lower() in ("true", "false"):
            return parse_bool(value)
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            if allow_str:
                return value
            raise argparse.ArgumentTypeError(f"expected a JSON value of type {annotation}, got {value!r}") from None
        # A str member takes any scalar as written ("--stop-strings 42" is the string "42").
        return value if allow_str and not isinstance(parsed, (list, dict)) else parsed
    return parse


def _parser_for(annotation: str) -> tuple[Callable[[str], Any], str]:
    inner = annotation[len("Optional["):-1] if annotation.startswith("Optional[") else annotation
    simple = {"int": (_typed(int, "an integer"), "INT"), "float": (_typed(float, "a number"), "FLOAT"),
              "bool": (parse_bool, "BOOL"), "str": (str, "STR")}
    if inner in simple:
        return simple[inner]
    members = _union_members(inner)
    return _json_or_str("str" in members, "bool" in members, inner), "JSON"


def _union_members(annotation: str) -> list[str]:
    """``"Union[str, list[int]]"`` -> ``["str", "list[int]"]``; anything else -> ``[annotation]``."""
    if not annotation.startswith("Union[") or not annotation.endswith("]"):
        return [annotation]
    members, depth, current = [], 0, ""
    for char in annotation[len("Union["):-1]:
        depth += (char == "[") - (char == "]")
        if char == "," and depth == 0:
            members.append(current.strip())
            current = ""
        else:
            current += char
    return members + [current.strip()]


def fields() -> list[str]:
    return [f for f in GENERATION_FIELDS + CUSTOM_PENALTY_FIELDS if f not in EXCLUDED]


def add_generation_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "generation config fields (pydecode.GenerationConfig / transformers.GenerationConfig; "
        "unset ones come from --config, then the model's generation_config.json)")
    annotations = GenerationConfig.__annotations__
    for name in fields():
        annotation = annotations.get(name, "Optional[float]")  # the custom penalties are floats
        parse, metavar = _parser_for(annotation)
        group.add_argument("--" + name.replace("_", "-"), dest=PREFIX + name, type=parse, default=None,
                           metavar=metavar, help=argparse.SUPPRESS if name in _HIDDEN else annotation)


# Deprecated in transformers: accepted, not listed in --help.
_HIDDEN = frozenset({"low_memory", "penalty_alpha", "dola_layers", "diversity_penalty", "num_beam_groups",
                     "prefill_chunk_size", "use_mtp"})


def collect(args: argparse.Namespace) -> dict[str, Any]:
    """The fields given on the command line, as GenerationConfig keyword arguments."""
    return {name: value for name in fields() if (value := getattr(args, PREFIX + name, None)) is not None}
