"""``pydecode bench``: pydecode.generate and transformers' model.generate side by side.

Same model, prompts and generation arguments for both (:mod:`pydecode.benchmarks.generate`);
``min_new_tokens = max_new_tokens`` so every row generates ``--new-tokens`` tokens in both
(EOS is masked until then, by the same processor in both). Prints a table; writes CSV (the
format of ``bench/results/*.csv``; ``p10_us`` / ``p90_us`` hold the min / max of the timed runs),
JSON and a PNG plot on request. Exit status 1 when greedy
or beam search ids differ from transformers'.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Optional

from ._common import (
    DTYPES,
    CLIError,
    add_model_arguments,
    load_model,
    non_negative_int,
    positive_int,
    resolve_device,
    select_backend,
)

MEMORY_NOTE = ("peak mem: the most memory one call added (CPU: resident-set growth sampled every 2 ms; "
               "CUDA: max_memory_allocated)")


def add_parser(sub: Any) -> None:
    from ..benchmarks.generate import STRATEGIES

    parser = sub.add_parser(
        "bench", help="time pydecode.generate against transformers' generate on the same model and inputs",
        description=__doc__.split("\n\n")[1].replace("\n", " "))
    add_model_arguments(parser)
    parser.add_argument("--batch", type=positive_int, nargs="+", default=[1, 8], help="batch sizes (default 1 8)")
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGIES), default=list(STRATEGIES),
                        help="greedy; sample (top-k 50, top-p 0.9, T 0.8, repetition penalty 1.1); beam (4 beams)")
    parser.add_argument("--new-tokens", type=positive_int, default=24, help="new tokens per row (default 24)")
    parser.add_argument("--prompt-len", type=positive_int, default=32, help="prompt tokens per row (default 32)")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="timed runs of each implementation after one warm-up run (default 3)")
    parser.add_argument("--against", choices=["transformers", "none"], default="transformers",
                        help="none: time pydecode alone")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--csv", type=Path, default=None, help="append the rows to this CSV")
    parser.add_argument("--json", type=Path, default=None, help="write the settings and rows to this JSON file")
    parser.add_argument("--plot", type=Path, default=None, metavar="F.png",
                        help="bar chart of tokens/s (needs matplotlib: pip install -e '.[bench]')")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..benchmarks.common import append_csv, environment
    from ..benchmarks.generate import STRATEGIES, compare, prompt_ids

    if args.plot is not None:
        _require_matplotlib()  # fail before minutes of benchmarking, not after
    for flag in ("csv", "json", "plot"):
        path = getattr(args, flag)
        if path is not None and not path.resolve().parent.is_dir():
            raise CLIError(f"--{flag} {path}: the directory {path.parent} does not exist")
    device = resolve_device(args.device)
    select_backend(args.backend, device)
    model, tokenizer = load_model(args.model, DTYPES[args.dtype], device)
    vocab = int(model.config.vocab_size)
    params = sum(p.numel() for p in model.parameters())
    env = environment()
    against = args.against == "transformers"
    print(f"# pydecode bench: model {args.model} ({type(model).__name__}, {params / 1e6:.1f}M parameters, vocab "
          f"{vocab}) on {device.type}, {args.dtype}, ops backend {args.backend}; prompt {args.prompt_len} + "
          f"{args.new_tokens} new tokens per row; median of {args.repeats} run(s) after a warm-up", flush=True)
    print(f"# {env['device']}; torch {env['torch']} ({torch.get_num_threads()} threads), transformers "
          f"{env['transformers']}; git {env['git_sha']}", flush=True)

    pad = model.generation_config.pad_token_id
    pad = pad if pad is not None else (tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    total = len(args.batch) * len(args.strategies) * (1 + args.repeats) * (2 if against else 1)
    rows: list[dict[str, Any]] = []
    with _Progress(total) as progress:
        for batch in args.batch:
            ids = prompt_ids(tokenizer, vocab, batch, args.prompt_len).to(device)
            for strategy in args.strategies:
                progress.label = f"{strategy} batch {batch}"
                kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, pad_token_id=pad,
                              **STRATEGIES[strategy])
                result = compare(model, ids, kwargs, args.repeats, against_transformers=against, seed=args.seed,
                                 progress=progress.tick)
                rows += _rows(strategy, batch, result, args, STRATEGIES[strategy])

    _print_table(rows)
    print(f"# tokens/s: all rows' new tokens / median wall time; ms/token: median wall time / new tokens "
          f"(one decode step of the batch); speed-up: median of per-run ratios transformers / pydecode; "
          f"{MEMORY_NOTE}")
    mismatches = [r for r in rows if r["ids_identical"] is False]
    for r in mismatches:
        print(f"MISMATCH: {r['strategy']} batch {r['batch']}: pydecode's token ids differ from transformers' "
              f"(they must be identical for greedy and beam search)", file=sys.stderr)

    settings = {"model": args.model, "device": device.type, "dtype": args.dtype, "backend": args.backend,
                "vocab": vocab, "parameters": params, "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
                "repeats": args.repeats, "seed": args.seed, "threads": torch.get_num_threads()}
    if args.csv:
        append_csv(args.csv, [_csv_row(r, settings) for r in rows])
        print(f"appended {len(rows)} rows to {args.csv}")
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "settings": settings, "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        _plot(rows, settings, env, args.plot)
        print(f"wrote {args.plot}")
    return 1 if mismatches else 0


def _rows(strategy: str, batch: int, result: Any, args: argparse.Namespace, kwargs: dict) -> list[dict[str, Any]]:
    tokens = batch * args.new_tokens
    identical = result.same  # None: not compared
    out = []
    for provider, times, peak in (("transformers", result.hf_s, result.hf_peak),
                                  ("pydecode", result.pd_s, result.pd_peak)):
        if not times:
            continue
        median = statistics.median(times)
        out.append({
            "strategy": strategy, "batch": batch, "provider": provider,
            "median_s": median, "min_s": min(times), "max_s": max(times),
            "tokens_per_s": tokens / median, "ms_per_token": median / args.new_tokens * 1e3,
            "speedup": (result.speedup if provider == "pydecode" else 1.0) if result.ratios else None,
            "peak_mem_bytes": peak,
            "ids_identical": identical if provider == "pydecode" else None,
            "other_cpu": result.other_cpu, "generation": kwargs,
        })
    return out


def _fmt_mem(value: Optional[int]) -> str:
    if value is None:
        return "?"
    return f"{value / 2**20:.1f} MiB" if value >= 2**20 else f"{value / 2**10:.0f} KiB"


def _print_table(rows: list[dict[str, Any]]) -> None:
    header = ["strategy", "batch", "provider", "tokens/s", "ms/token", "speed-up", "peak mem", "ids vs transformers"]
    table = []
    for r in rows:
        if r["provider"] == "transformers":
            ids = ""
        elif r["ids_identical"] is None:
            ids = "not compared (Philox sampling)" if r["strategy"] == "sample" else "not compared"
        else:
            ids = "identical" if r["ids_identical"] else "MISMATCH"
        speedup = "" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        table.append([r["strategy"], str(r["batch"]), r["provider"], f"{r['tokens_per_s']:.1f}",
                      f"{r['ms_per_token']:.2f}", speedup, _fmt_mem(r["peak_mem_bytes"]), ids])
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for t in table:
        print("  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip())


def _csv_row(r: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "bench": "generate", "case": r["strategy"], "provider": r["provider"],
        "backend": settings["backend"] if r["provider"] == "pydecode" else "generate",
        "batch": r["batch"], "vocab": settings["vocab"], "dtype": settings["dtype"],
        "median_us": r["median_s"] * 1e6, "p10_us": r["min_s"] * 1e6, "p90_us": r["max_s"] * 1e6,
        "speedup_vs_transformers": "" if r["speedup"] is None else r["speedup"],
        "repeats": settings["repeats"], "threads": settings["threads"],
        "other_cpu": "" if r["other_cpu"] is None else round(r["other_cpu"], 3),
        "params": f"model={settings['model']} prompt={settings['prompt_len']} new={settings['new_tokens']} "
                  f"{r['generation']}",
        "tokens_per_s": r["tokens_per_s"], "peak_mem_bytes": "" if r["peak_mem_bytes"] is None else r["peak_mem_bytes"],
        "ids_identical": "" if r["ids_identical"] is None else r["ids_identical"],
    }


def _require_matplotlib() -> Any:
    from ..benchmarks.plots import pyplot

    plt = pyplot()
    if plt is None:
        raise CLIError("--plot needs matplotlib, which is not installed: pip install -e '.[bench]'")
    return plt


def _plot(rows: list[dict[str, Any]], settings: dict[str, Any], env: dict[str, str], path: Path) -> None:
    from ..benchmarks.plots import grouped_bars

    plt = _require_matplotlib()
    tokens = {(r["provider"], r["strategy"], r["batch"]): r["tokens_per_s"] for r in rows}
    grouped_bars(
        plt,
        list(dict.fromkeys((r["strategy"], r["batch"]) for r in rows)),
        list(dict.fromkeys(r["provider"] for r in rows)),
        lambda provider, group: tokens.get((provider, *group), 0.0),
        ylabel="new tokens / s",
        title=f"generate, model {settings['model']} ({settings['device']}, {settings['dtype']}), "
              f"{settings['prompt_len']}+{settings['new_tokens']} tokens",
        footer=f"{env['device']}; torch {env['torch']}, transformers {env['transformers']}, git {env['git_sha']}",
        path=path,
        dpi=120,
    )


class _Progress:
    """tqdm on stderr when importable, else one self-overwriting stderr line."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.label = total, 0, ""
        self._bar: Any = None

    def __enter__(self) -> _Progress:
        try:
            from tqdm import tqdm
        except ImportError:
            return self
        self._bar = tqdm(total=self.total, desc="generate runs", unit="run", file=sys.stderr, leave=False)
        return self

    def tick(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(self.label, refresh=False)
            self._bar.update(1)
        else:
            self._line()

    def _line(self) -> None:
        print(f"\r[{self.done}/{self.total}] {self.label}".ljust(60), end="", file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.done:
            print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)
