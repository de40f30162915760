"""README-ready markdown tables (one per case) and PNG plots from the benchmark CSVs.

    python -m bench.render_tables bench/results/ops_cpu.csv [--cases beam_topk ...] [--batch 32] [--vocab 128256]
    python -m bench.render_tables bench/results/generate_cpu.csv --plots bench/results/plots

Ops rows (``bench_ops`` / ``pydecode bench-ops`` / ``bench/pytest/test_ops_bench.py``) give one
table per case; generate rows (``pydecode bench --csv``, ``bench_generate.py``,
``bench/pytest/test_generate_bench.py``) one table per model setting. ``--plots DIR`` also writes
one PNG per table (needs matplotlib: ``pip install -e '.[bench]'``): ops as median time per
provider/backend on a log scale, generate as new tokens/s per strategy and batch.

When the CSV holds several runs of the same (case, provider, backend, batch, vocab, dtype), the
newest row measured on a quiet machine wins (``other_cpu`` below 0.1: other processes took
less than 10% of the CPU meanwhile); the newest of all only when none was quiet, or with
``--latest``. Rows measured under load keep their note in the backend column. Each table gets
a caption line naming the device, the torch / transformers versions, the thread count and the
git sha(s) of its rows.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Optional

from pydecode.benchmarks.plots import grouped_bars
from pydecode.benchmarks.plots import pyplot as _pyplot

PROVIDER_ORDER = {"floor": 0, "pydecode": 1, "llama.cpp": 2, "transformers": 3}
BACKEND_ORDER = {"read (x.sum)": 0, "copy (dst.copy_)": 1, "cuda": 0, "triton": 1, "cpu": 2, "torch": 3}
CASE_TITLES = {
    "rep_temp_topk_topp_sample": "(a) repetition penalty 1.2 + temperature 0.7 + top-k 50 + top-p 0.9 + sample",
    "temp_topp_sample": "(b) temperature 0.7 + top-p 0.9 + sample",
    "temp_topk_topp_sample": "temperature 0.7 + top-k 50 + top-p 0.9 + sample",
    "temp_minp_sample": "temperature 0.7 + min-p 0.1 + sample",
    "beam_topk": "(c) beam top-k: items x 4 beams, k = 8",
    "repetition_penalty": "(d) repetition penalty 1.2",
    "watermark_hash": "(e) watermark bias (pydecode hash scheme; transformers lefthash)",
    "watermark_hf": "watermark bias, transformers' lefthash scheme (bit-identical)",
    "no_repeat_ngram": "(f) no-repeat n-gram, n = 3",
}


def _float(value: str) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _ms(us: str) -> str:
    v = _float(us)
    if v is None:
        return ""
    ms = v / 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def _x(value: str, digits_below_10: int = 2) -> str:
    v = _float(value)
    if v is None:
        return ""
    return f"{v:.{digits_below_10}f}x" if v < 10 else f"{v:,.0f}x"


QUIET = 0.1


def _quiet(row: dict[str, str]) -> bool:
    busy = _float(row.get("other_cpu", ""))
    return busy is None or busy < QUIET


def _latest(rows: list[dict[str, str]], prefer_quiet: bool = True) -> list[dict[str, str]]:
    keyed: dict[tuple, dict[str, str]] = {}
    for row in rows:
        key = (row["case"], row["provider"], row["backend"], row["batch"], row["vocab"], row["dtype"])
        if prefer_quiet and key in keyed and _quiet(keyed[key]) and not _quiet(row):
            continue  # a quiet measurement beats a newer one taken under load
        keyed.pop(key, None)  # re-insert: the newest occurrence keeps its position last
        keyed[key] = row
    return list(keyed.values())


FLOOR_BACKENDS = {"read": "read (x.sum)", "copy": "copy (dst.copy_)"}


def _recompute(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Speed-ups and floor ratios from the rows shown, so a table that mixes runs (quiet rows
    kept from an earlier run) stays consistent; the CSV's own values where a peer is missing."""
    groups: dict[tuple, list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault((row["case"], row["batch"], row["vocab"], row["dtype"]), []).append(row)
    out = []
    for group in groups.values():
        medians = {(r["provider"], r["backend"]): _float(r["median_us"]) for r in group}
        hf = medians.get(("transformers", "processors"))
        ref = medians.get(("pydecode", "torch"))
        for row in group:
            row = dict(row)
            t = _float(row["median_us"])
            floor = medians.get(("floor", FLOOR_BACKENDS.get(row.get("floor_kind", ""), "")))
            if t:
                if hf:
                    row["speedup_vs_transformers"] = str(hf / t)
                if ref:
                    row["speedup_vs_torch"] = str(ref / t)
                if floor:
                    row["ratio_to_floor"] = str(t / floor)
                copy = medians.get(("floor", FLOOR_BACKENDS["copy"]))
                if copy:
                    row["ratio_to_copy_floor"] = str(t / copy)
            out.append(row)
    return out


def _sort_key(row: dict[str, str]) -> tuple:
    return (
        int(row["batch"]), int(row["vocab"]), PROVIDER_ORDER.get(row["provider"], 9),
        BACKEND_ORDER.get(row["backend"], 9), row["backend"],
    )


def _joined(rows: list[dict[str, str]], field: str) -> str:
    values = sorted({row.get(field) or "?" for row in rows})
    return " / ".join(values)


def render(rows: list[dict[str, str]], case: str) -> str:
    rows = sorted(rows, key=_sort_key)
    first = rows[0]
    title = CASE_TITLES.get(case, case)
    lines = [
        f"**{title}** (`{case}`; {first.get('params', '')}; {first['dtype']}; "
        f"floor = {first.get('floor_kind', '')} pass)",
        "",
        f"_{_joined(rows, 'device')}, {_joined(rows, 'threads')} threads; torch {_joined(rows, 'torch')}, "
        f"transformers {_joined(rows, 'transformers')}; git {_joined(rows, 'git_sha')}; "
        f"{' / '.join(sorted({(row.get('timestamp') or '?')[:10] for row in rows}))}_",
        "",
        "| provider | backend | batch | vocab | median ms | ms / row | vs transformers | vs torch ref "
        "| GB/s | x floor | x copy |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        provider = row["provider"]
        note = row.get("note") or ""
        backend = row["backend"] + (f" ({note})" if note else "")
        gbps = _float(row.get("gbps", ""))
        ratio = _float(row.get("ratio_to_floor", ""))
        copy_ratio = _float(row.get("ratio_to_copy_floor", ""))
        lines.append(
            f"| {provider} | {backend} | {row['batch']} | {row['vocab']} | {_ms(row['median_us'])} "
            f"| {_ms(row.get('us_per_row', ''))} | {_x(row.get('speedup_vs_transformers', ''))} "
            f"| {_x(row.get('speedup_vs_torch', ''))} | {'' if gbps is None else f'{gbps:.2f}'} "
            f"| {'' if ratio is None else f'{ratio:.2f}'} | {'' if copy_ratio is None else f'{copy_ratio:.2f}'} |"
        )
    return "\n".join(lines)


def _generate_key(row: dict[str, str]) -> str:
    return row.get("params", "").split(" {")[0]  # "model=demo prompt=32 new=32": one table per setting


def render_generate(rows: list[dict[str, str]]) -> str:
    first = rows[0]
    lines = [
        f"**generate** ({_generate_key(first)}; {first['dtype']}; vocab {first['vocab']})",
        "",
        f"_{_joined(rows, 'device')}, {_joined(rows, 'threads')} threads; torch {_joined(rows, 'torch')}, "
        f"transformers {_joined(rows, 'transformers')}; git {_joined(rows, 'git_sha')}; "
        f"{' / '.join(sorted({(row.get('timestamp') or '?')[:10] for row in rows}))}_",
        "",
        "| strategy | batch | provider | median ms | new tokens / s | speed-up vs transformers | ids identical |",
        "|---|--:|---|--:|--:|--:|---|",
    ]
    for row in rows:
        tok_s = _float(row.get("tokens_per_s", ""))
        same = row.get("ids_identical") or ""
        lines.append(
            f"| {row['case']} | {row['batch']} | {row['provider']} | {_ms(row['median_us'])} "
            f"| {'' if tok_s is None else f'{tok_s:.1f}'} | {_x(row.get('speedup_vs_transformers', ''))} "
            f"| {'yes' if same == 'True' else 'NO' if same == 'False' else ''} |"
        )
    return "\n".join(lines)


def plot_ops(rows: list[dict[str, str]], case: str, path: Path) -> None:
    plt = _pyplot()
    rows = sorted(rows, key=_sort_key)
    labels = [f"{r['provider']}/{r['backend']}  ({r['batch']}x{r['vocab']})" for r in rows]
    values = [(_float(r["median_us"]) or 0.0) / 1e3 for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    ax.barh(range(len(rows)), values, color=["#888" if r["provider"] == "floor" else "C0" if r["provider"] == "pydecode"
                                              else "C1" for r in rows])
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median ms (log scale)")
    ax.set_title(f"{CASE_TITLES.get(case, case)}\n{_joined(rows, 'device')}, git {_joined(rows, 'git_sha')}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_generate(rows: list[dict[str, str]], path: Path) -> None:
    tokens = {(r["provider"], r["case"], r["batch"]): _float(r.get("tokens_per_s", "")) or 0.0 for r in rows}
    grouped_bars(
        _pyplot(),
        list(dict.fromkeys((r["case"], r["batch"]) for r in rows)),
        list(dict.fromkeys(r["provider"] for r in rows)),
        lambda provider, group: tokens.get((provider, *group), 0.0),
        ylabel="new tokens / s",
        title=f"generate ({_generate_key(rows[0])})\n{_joined(rows, 'device')}, git {_joined(rows, 'git_sha')}",
        path=path,
    )


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--cases", nargs="+", default=None, help="only these cases (default: all, in CSV order)")
    parser.add_argument("--batch", type=int, nargs="+", default=None, help="only these batch sizes (rows)")
    parser.add_argument("--vocab", type=int, nargs="+", default=None, help="only these vocabularies")
    parser.add_argument("--dtype", default=None, help="only this dtype")
    parser.add_argument("--latest", action="store_true", help="newest rows even when measured under load")
    parser.add_argument("--no-floor", action="store_true", help="leave the floor rows out")
    parser.add_argument("--plots", type=Path, default=None, metavar="DIR", help="also write one PNG per table here")
    args = parser.parse_args(argv)
    if args.plots is not None and _pyplot() is None:
        parser.error("--plots needs matplotlib: pip install -e '.[bench]'")

    with args.csv.open(newline="") as handle:
        all_rows = list(csv.DictReader(handle))
    rows = [r for r in all_rows if r.get("bench") == "ops"]
    generate = [r for r in all_rows if r.get("bench") == "generate"]
    if not rows and not generate:
        parser.error(f"{args.csv} holds no bench_ops or generate rows")
    rows = _recompute(_latest(rows, prefer_quiet=not args.latest))
    generate = _latest_generate(generate, prefer_quiet=not args.latest)
    for name in ("batch", "vocab"):
        wanted = getattr(args, name)
        if wanted:
            rows = [r for r in rows if int(r[name]) in wanted]
            generate = [r for r in generate if int(r[name]) in wanted]
    if args.dtype:
        rows = [r for r in rows if r["dtype"] == args.dtype]
        generate = [r for r in generate if r["dtype"] == args.dtype]
    if args.no_floor:
        rows = [r for r in rows if r["provider"] != "floor"]
    if args.cases:
        generate = [r for r in generate if r["case"] in args.cases]
    cases = args.cases or list(dict.fromkeys(r["case"] for r in rows))
    tables = []
    if args.plots is not None:
        args.plots.mkdir(parents=True, exist_ok=True)
    for case in cases:
        case_rows = [r for r in rows if r["case"] == case]
        if case_rows:
            tables.append(render(case_rows, case))
            if args.plots is not None:
                plot_ops(case_rows, case, args.plots / f"ops_{case}.png")
    settings = list(dict.fromkeys(_generate_key(r) for r in generate))
    for i, key in enumerate(settings):
        setting_rows = [r for r in generate if _generate_key(r) == key]
        tables.append(render_generate(setting_rows))
        if args.plots is not None:
            plot_generate(setting_rows, args.plots / f"generate_{i}.png")
    print("\n\n".join(tables))
    if args.plots is not None:
        print(f"\n(plots written to {args.plots})")


def _latest_generate(rows: list[dict[str, str]], prefer_quiet: bool = True) -> list[dict[str, str]]:
    """The newest row per (setting, strategy, provider, backend, batch, vocab, dtype), quiet first."""
    keyed: dict[tuple, dict[str, str]] = {}
    for row in rows:
        key = (_generate_key(row), row["case"], row["provider"], row["backend"], row["batch"], row["vocab"],
               row["dtype"])
        if prefer_quiet and key in keyed and _quiet(keyed[key]) and not _quiet(row):
            continue
        keyed.pop(key, None)
        keyed[key] = row
    return list(keyed.values())


if __name__ == "__main__":
    main()
