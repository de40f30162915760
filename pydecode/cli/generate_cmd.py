"""``pydecode generate "prompt"``: decode a prompt with ``pydecode.generate`` and print the text."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from . import config_flags
from ._common import DTYPES, CLIError, add_model_arguments, load_model, one_line, resolve_device, select_backend

STRATEGIES = ("greedy", "sample", "beam")
DEFAULT_NEW_TOKENS = 64
DEFAULT_BEAMS = 4
SCHEMES = {"hash": "pydecode-hash", "hf": "lefthash"}


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "generate", help="generate text from a prompt with pydecode.generate",
        description="Generate text from a prompt with pydecode.generate (transformers' generate semantics). "
                    f"Without a length flag, --max-new-tokens {DEFAULT_NEW_TOKENS}.")
    parser.add_argument("prompt", help="the prompt text")
    add_model_arguments(parser)
    parser.add_argument("--strategy", choices=STRATEGIES, default=None,
                        help=f"greedy (do_sample false), sample (do_sample true) or beam (num_beams "
                             f"{DEFAULT_BEAMS} unless --num-beams); default: the config's own choice")
    parser.add_argument("--config", type=Path, default=None, metavar="generation_config.json",
                        help="a generation config JSON file; flags override its fields")
    parser.add_argument("--stream", action="store_true", help="print the text token by token as it is generated")
    parser.add_argument("--watermark", action="store_true",
                        help="watermark the sampled text with pydecode's processor and print the detection "
                             "z-score and p-value after it")
    parser.add_argument("--scheme", choices=list(SCHEMES), default="hash",
                        help="watermark scheme: hash (pydecode's fast hash greenlists, default) or hf "
                             "(transformers' lefthash)")
    parser.add_argument("--seed", type=int, default=None,
                        help="sampling seed (pydecode's Philox stream): the same seed gives the same text")
    config_flags.add_generation_flags(parser)
    parser.set_defaults(func=run)


def generation_kwargs(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """(the --config GenerationConfig or None, the keyword arguments the flags give), validated."""
    from ..generation.config import GenerationConfig, WatermarkingConfig

    base = None
    if args.config is not None:
        if not args.config.is_file():
            raise CLIError(f"--config {args.config}: no such file")
        try:
            base = GenerationConfig.from_pretrained(args.config.parent, config_file_name=args.config.name)
        except (OSError, ValueError) as exc:
            raise CLIError(f"--config {args.config}: {one_line(exc)}") from None
    kwargs = config_flags.collect(args)
    given = {**(base.to_diff_dict() if base is not None else {}), **kwargs}

    strategy = args.strategy or ("sample" if args.watermark and "do_sample" not in given else None)
    if strategy == "greedy":
        _conflict(given, "num_beams", lambda v: v not in (None, 1), strategy)
        _conflict(given, "do_sample", lambda v: v is True, strategy)
        kwargs.update(do_sample=False, num_beams=1)
    elif strategy == "sample":
        _conflict(given, "do_sample", lambda v: v is False, strategy)
        kwargs["do_sample"] = True
    elif strategy == "beam":
        _conflict(given, "num_beams", lambda v: v is not None and v < 2, strategy)
        kwargs.setdefault("num_beams", given.get("num_beams") or DEFAULT_BEAMS)
    if "max_new_tokens" not in given and "max_length" not in given:
        kwargs["max_new_tokens"] = DEFAULT_NEW_TOKENS
    if args.watermark:
        kwargs["watermarking_config"] = WatermarkingConfig(seeding_scheme=SCHEMES[args.scheme])
    try:  # every bad value now, before the model loads
        merged = base.copy() if base is not None else GenerationConfig()
        merged.update(**kwargs)
        merged.validate()
    except (ValueError, TypeError) as exc:
        raise CLIError(one_line(exc)) from None
    return base, kwargs


def _conflict(given: dict, field: str, bad: Any, strategy: str) -> None:
    if field in given and bad(given[field]):
        raise CLIError(f"--strategy {strategy} contradicts {field}={given[field]!r}")


def run(args: argparse.Namespace) -> int:
    if not args.prompt.strip():
        raise CLIError("the prompt is empty")
    base, kwargs = generation_kwargs(args)
    device = resolve_device(args.device)
    select_backend(args.backend, device)
    model, tokenizer = load_model(args.model, DTYPES[args.dtype], device)

    import pydecode

    encoded = tokenizer(args.prompt, return_tensors="pt")
    input_ids = encoded["input_ids"].to(device)
    if input_ids.shape[1] == 0:
        raise CLIError("the prompt encodes to no tokens")
    if _pad_id(model, tokenizer, base, kwargs) is None:
        kwargs["pad_token_id"] = tokenizer.eos_token_id  # quiets transformers' "Setting pad_token_id" notice
    streamer = None
    if args.stream:
        from transformers import TextStreamer

        streamer = TextStreamer(tokenizer, skip_special_tokens=True)
    seed_kw = {} if args.seed is None else {"seed": args.seed}
    try:
        out = pydecode.generate(model, input_ids, attention_mask=encoded["attention_mask"].to(device),
                                generation_config=base, streamer=streamer, **seed_kw, **kwargs)
    except (ValueError, TypeError) as exc:  # a combination only generate can judge (e.g. streaming beams)
        raise CLIError(one_line(exc)) from None
    if not args.stream:
        texts = tokenizer.batch_decode(out, skip_special_tokens=True)
        print("\n\n".join(texts) if len(texts) > 1 else texts[0], flush=True)
    if args.watermark:
        print(_detection_line(model, kwargs["watermarking_config"], out[:, input_ids.shape[1]:], device))
    return 0


def _pad_id(model: Any, tokenizer: Any, base: Any, kwargs: dict) -> Any:
    for source in (kwargs, vars(base) if base is not None else {}, vars(model.generation_config)):
        if source.get("pad_token_id") is not None:
            return source["pad_token_id"]
    return tokenizer.pad_token_id


def _detection_line(model: Any, watermarking_config: Any, new_tokens: torch.Tensor, device: torch.device) -> str:
    from ..generation.watermark_detector import WatermarkDetector

    detector = WatermarkDetector(model.config, device, watermarking_config)
    try:
        result = detector(new_tokens[:1], return_dict=True)
    except ValueError as exc:
        return f"watermark: not enough new tokens to score ({one_line(exc)})"
    return (f"watermark ({watermarking_config.seeding_scheme}, greenlist ratio "
            f"{watermarking_config.greenlist_ratio}): z-score {float(result.z_score[0]):.2f}, "
            f"p-value {float(result.p_value[0]):.3g}, {int(result.num_green_tokens[0])} of "
            f"{int(result.num_tokens_scored[0])} scored tokens green")
