"""README-ready markdown tables (one per case) from a bench_ops CSV.

    python -m bench.render_tables bench/results/ops_cpu.csv [--cases beam_topk ...] [--batch 32] [--vocab 128256]

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

PROVIDER_ORDER = {"floor": 0, "pydecode": 1, "llama.cpp": 2, "transformers": 3}
BACKEND_ORDER = {"read (x.sum)": 0, "copy (dst.copy_)": 1, "cuda": 0, "triton": 1, "cpu": 2, "torch": 3}
CASE_TITLES = {
    "rep_temp_topk_topp_sample": "(a) repetition penalty 1.2 + temperature 0.7 + top-k 50 + top-p 0.9 + sample",
    "temp_topp_sample": "(b) temperature 0.7 + top-p 0.9 + sample",
    "temp_topk_topp_sample": "temperature 0.7 + top-k 50 + top-p 0.9 + sample",
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


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--cases", nargs="+", default=None, help="only these cases (default: all, in CSV order)")
    parser.add_argument("--batch", type=int, nargs="+", default=None, help="only these batch sizes (rows)")
    parser.add_argument("--vocab", type=int, nargs="+", default=None, help="only these vocabularies")
    parser.add_argument("--dtype", default=None, help="only this dtype")
    parser.add_argument("--latest", action="store_true", help="newest rows even when measured under load")
    parser.add_argument("--no-floor", action="store_true", help="leave the floor rows out")
    args = parser.parse_args(argv)

    with args.csv.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("bench") == "ops"]
    if not rows:
        parser.error(f"{args.csv} holds no bench_ops rows")
    rows = _recompute(_latest(rows, prefer_quiet=not args.latest))
    if args.batch:
        rows = [r for r in rows if int(r["batch"]) in args.batch]
    if args.vocab:
        rows = [r for r in rows if int(r["vocab"]) in args.vocab]
    if args.dtype:
        rows = [r for r in rows if r["dtype"] == args.dtype]
    if args.no_floor:
        rows = [r for r in rows if r["provider"] != "floor"]
    cases = args.cases or list(dict.fromkeys(r["case"] for r in rows))
    tables = [render(case_rows, case) for case in cases if (case_rows := [r for r in rows if r["case"] == case])]
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
