"""``pydecode detect "text" | --file F``: green-list watermark detection (z-score, p-value, prediction)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import DTYPES, CLIError, add_model_arguments, load_model, one_line, read_text_file, resolve_device
from .generate_cmd import SCHEMES


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "detect", help="detect a green-list watermark in text (z-score, p-value, prediction)",
        description="Score text for the green-list watermark that `pydecode generate --watermark` (or "
                    "transformers' WatermarkLogitsProcessor, --scheme hf) adds. The text is tokenized with the "
                    "model's tokenizer; the model's vocabulary size selects the greenlists.")
    parser.add_argument("text", nargs="?", default=None, help="the text to score (or --file)")
    parser.add_argument("--file", default=None, help="read the text from this file")
    add_model_arguments(parser, backend=False)
    parser.add_argument("--scheme", choices=list(SCHEMES), default="hash",
                        help="hash: pydecode's hash greenlists (default); hf: transformers' lefthash")
    parser.add_argument("--greenlist-ratio", type=float, default=0.25, help="gamma used at generation (0.25)")
    parser.add_argument("--hashing-key", type=int, default=15485863, help="key used at generation")
    parser.add_argument("--context-width", type=int, default=1, help="context tokens seeding each greenlist (1)")
    parser.add_argument("--z-threshold", type=float, default=3.0, help="predict 'watermarked' above this z (3.0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.file is None):
        raise CLIError("give the text either as an argument or with --file, not both or neither")
    text = read_text_file(args.file, "--file") if args.file is not None else args.text
    if not text.strip():
        raise CLIError("the text is empty" if args.file is None else f"--file {args.file}: the file is empty")
    from ..generation.config import WatermarkingConfig
    from ..generation.watermark_detector import WatermarkDetector

    try:
        config = WatermarkingConfig(greenlist_ratio=args.greenlist_ratio, hashing_key=args.hashing_key,
                                    seeding_scheme=SCHEMES[args.scheme], context_width=args.context_width)
        config.validate()
    except (ValueError, TypeError) as exc:
        raise CLIError(one_line(exc)) from None
    device = resolve_device(args.device)
    model, tokenizer = load_model(args.model, DTYPES[args.dtype], device)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    try:
        detector = WatermarkDetector(model.config, device, config)
        result = detector(ids, z_threshold=args.z_threshold, return_dict=True)
    except ValueError as exc:  # too short to score, say
        raise CLIError(f"cannot score this text: {one_line(exc)}") from None
    scored, green = int(result.num_tokens_scored[0]), int(result.num_green_tokens[0])
    print(f"scheme: {config.seeding_scheme} (greenlist ratio {config.greenlist_ratio}, "
          f"context width {config.context_width})")
    print(f"tokens scored: {scored}")
    print(f"green tokens: {green} ({green / scored:.1%})")
    print(f"z-score: {float(result.z_score[0]):.3f}")
    print(f"p-value: {float(result.p_value[0]):.3g}")
    watermarked = bool(result.prediction[0])
    print(f"prediction: {'watermarked' if watermarked else 'not watermarked'} "
          f"(z {'>' if watermarked else '<='} {args.z_threshold})")
    return 0

