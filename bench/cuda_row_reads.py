"""``python -m bench.cuda_row_reads``: how many times the CUDA sampling chain and beam top-k read
each logits row, and how many row barriers a split row passes, counted on the CPU model of the CUDA
kernels (tests/cuda_emulation), with the compact path on and off.

The companion of bench/triton_row_reads.py: the kernels are bandwidth-bound at decode shapes, so a
row read is about one read floor of time, and a split row's barrier (integer atomics and a spin on
device memory) is a fixed cost; both can be counted where there is no GPU. The model runs
csrc/cuda/sampling.cu and beam.cu unchanged (one thread per CUDA thread, 64 per block here) and
counts the bytes they load through ``__ldg``; reads = those bytes / the rows' bytes. Rows: the
kinds of bench/triton_row_reads.py (``randn x 1``, ``randn x 3``, ``peaked``, ``flat``) plus
``rand`` (uniform [0, 1): a nearly flat softmax), bfloat16. Calls (tokens only, the decode-loop
call): temperature 0.7 + top-k 50 + top-p 0.9, temperature 0.7 + top-p 0.9, temperature 0.7 +
min-p 0.1, at one block per row and split in 15 slices (batch 1 x vocab 128256 on a 132-SM card),
and beam top-k (4 beams, k = 8, with and without log-softmax, one block per row and split in 31
slices, as 4 rows of 128256 are on a 132-SM card). ``reads_compact_on``: the calls with their lists
from the key-bin or gap histograms (``PYDECODE_CUDA_TOPK_SCAN=0``); ``reads_top_k_scan``: with the
one-read list (the default for bfloat16 top-k rows with k <= 64, top-p or min-p rows without top-k,
beam rows with k <= 64 and beam slices with k <= 32; the hits' values read again count too), and
``block_syncs_top_k_scan`` its block barriers (``_block_stages``: with the stages on a short list
run by the whole block, ``PYDECODE_CUDA_WARP_FINISH=0``, instead of one warp). ``block_syncs``
(compact path on): the most ``__syncthreads`` one block of the call passes, the chain of block
barriers a row waits through (at batch 1 that sequence, with the row barriers, is the call's
latency). ``scan_list``: the longest one-read list a block built (0: none; an older ``--csrc``
does not report it). The model's 64-thread blocks (``--threads``) are 2 warps; ``--threads 1024``
counts what a GPU block does (slower). Before the pooled thresholds (scan_list.cuh) a GPU block's
32 warps listed ~1300-2300 entries at top-k 50 (each warp's threshold only reached the keep-th of
its own buffer), where 2 warps list ~100-150; top-k rows now list about k at any block size, and
so do split top-p and min-p rows without top-k (64 entries a block); one block's still lists
that many. ``atomics_per_entry`` /
``hot_word_atomics`` (compact path on; ``_top_k_scan``: with the one-read list): the call's
atomics per logits entry, and the most that one word (a histogram bin, mostly) took in one block:
on a GPU a warp's atomics on one shared word run one after another, so a pass that piles its
entries into a few bins costs time its read does not show.

``--csrc DIR`` counts another checkout's kernels (say ``git worktree add /tmp/old REV`` then
``--csrc /tmp/old/csrc``), to compare before and after a change. Needs g++ (C++20) and pybind11;
the build takes ~20 s.

    python -m bench.cuda_row_reads --csv bench/results/cuda_row_reads_cpu.csv
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType

import torch

from bench.common import append_rows, environment, print_table
from bench.row_kinds import logits as row_logits
from pydecode.ops import _cpu

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("randn x 1", "randn x 3", "peaked", "flat", "rand")
CHAIN_CALLS = {"T0.7 top-k 50 top-p 0.9 sample": {"top_k": 50, "top_p": 0.9},
               "T0.7 top-p 0.9 sample": {"top_p": 0.9},
               "T0.7 min-p 0.1 sample": {"top_p": 1.0, "min_p": 0.1}}
THREADS = 64


def pybind11_include() -> str:
    """pybind11's headers: the pybind11 package, else the copy torch ships (as setup.py finds them;
    a build-isolated install leaves no pybind11 package in the environment)."""
    try:
        import pybind11
    except ImportError:
        return str(Path(torch.__file__).parent / "include")
    return pybind11.get_include()


def build_model(csrc: Path, out_dir: Path) -> ModuleType:
    """Compiles the CPU model of ``csrc``'s CUDA kernels (tests/cuda_emulation/README.md) and imports it."""
    tree = out_dir / "tree"
    shutil.copytree(ROOT / "tests" / "cuda_emulation", tree / "tests" / "cuda_emulation")
    shutil.copytree(csrc, tree / "csrc")
    includes = [f"-I{pybind11_include()}", f"-I{sysconfig.get_paths()['include']}"]
    target = out_dir / f"pydecode_cuda_model{sysconfig.get_config_var('EXT_SUFFIX')}"
    src = tree / "tests" / "cuda_emulation"
    subprocess.run(["g++", "-O1", "-std=c++20", "-pthread", "-shared", "-fPIC", "-DPYDECODE_CUDA_EMULATION",
                    "-Istub", "-I../../csrc/include", "-I../../csrc", *includes, "module.cpp", "harness_sampling.cpp",
                    "harness_beam.cpp", "-o", str(target)], cwd=src, check=True)
    spec = importlib.util.spec_from_file_location("pydecode_cuda_model", target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _addr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def chain_reads(model: ModuleType, x: torch.Tensor, top_k: int | None, top_p: float, splits: int,
                compact: bool, filtered: bool = False,
                key_bins: bool = True, top_k_scan: bool = False, temperature: float = 0.7, min_p: float = 0.0,
                min_tokens_to_keep: int = 1, warp_finish: bool = True,
                threads: int = THREADS) -> tuple[float, int, torch.Tensor, torch.Tensor | None]:
    """(row reads, row barriers, tokens, filtered rows or None) of one chain call on rows ``x``,
    at ``temperature``: tokens only (the decode-loop call), or with ``filtered`` also the filtered rows
    (a pass more); key_bins=False: the compact path's lists come from the gap histogram only;
    top_k_scan=True: the one-read list (top-k rows with k <= 64, top-p or min-p rows without top-k);
    warp_finish=False: the stages on a short list run with the whole block (PYDECODE_CUDA_WARP_FINISH=0);
    threads: the model's block size (a GPU's 1024 make the one-read list longer than 64's)."""
    rows, vocab = x.shape
    temps = torch.full((rows,), temperature, dtype=torch.float64)
    k = None if top_k is None else torch.full((rows,), top_k, dtype=torch.int64)
    p = torch.full((rows,), top_p, dtype=torch.float64)
    mp = torch.full((rows,), min_p, dtype=torch.float64) if min_p > 0 else None
    seed, offset = torch.arange(rows, dtype=torch.int64) + 5, torch.zeros(rows, dtype=torch.int64)
    tokens = torch.empty(rows, dtype=torch.int64)
    rows_out = torch.empty(rows, vocab) if filtered else None
    model.take_loaded_bytes()
    model.filter_chain(x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], rows, vocab, vocab, 1, _addr(temps), _addr(k),
                       _addr(p), _addr(mp), min_tokens_to_keep, _addr(seed), _addr(offset), _addr(tokens), 0,
                       _addr(rows_out), float("-inf"), 0, threads, splits, compact, key_bins, top_k_scan, warp_finish)
    return model.take_loaded_bytes() / x.numel() / x.element_size(), model.last_row_barriers(), tokens, rows_out


def beam_reads(model: ModuleType, x: torch.Tensor, beams: int = 4, k: int = 8, log_softmax: bool = True,
               beam_scores: torch.Tensor | None = None,
               key_bins: bool = True, splits: int = 1, top_k_scan: bool = False,
               threads: int = THREADS) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row reads, scores, token ids, beam indices) of one beam top-k call on rows ``x`` (items x
    ``beams``), beam scores 0 unless given; key_bins=False: candidates listed by the gap histogram only;
    splits > 1: the split path with that many slices per row; threads: the model's block size."""
    rows, vocab = x.shape
    cand = torch.empty(rows * min(k, vocab), dtype=torch.int64)
    stats = torch.empty(rows * 2)
    beam_scores = torch.zeros(rows) if beam_scores is None else beam_scores.float().contiguous()
    scores = torch.empty(rows // beams, k)
    tokens, which = (torch.empty(rows // beams, k, dtype=torch.int64) for _ in range(2))
    scratch = torch.empty(rows * splits * model.BEAM_SLICE_WORDS if splits > 1 else 0, dtype=torch.int64)
    model.take_loaded_bytes()
    model.beam_topk(x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], rows, vocab, vocab, beam_scores.data_ptr(), beams, k,
                    log_softmax, cand.data_ptr(), stats.data_ptr(), scores.data_ptr(), tokens.data_ptr(),
                    which.data_ptr(), threads, key_bins, splits, _addr(scratch) if splits > 1 else 0, top_k_scan)
    return model.take_loaded_bytes() / x.numel() / x.element_size(), scores, tokens, which


def rows_of(kind: str, rows: int, vocab: int, seed: int) -> torch.Tensor:
    if kind == "rand":
        return torch.rand(rows, vocab, generator=torch.Generator().manual_seed(seed)).to(torch.bfloat16)
    return row_logits(kind, rows, vocab, seed).to(torch.bfloat16)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--splits", type=int, default=15, help="slices per row of the split chain")
    parser.add_argument("--beam-splits", type=int, default=31,
                        help="slices per row of beam top-k's split path (4 rows x 128256 on a 132-SM card: 31)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--families", nargs="+", default=["chain", "beam"], choices=["chain", "beam"],
                        help="which kernels' reads to count")
    parser.add_argument("--csrc", type=Path, default=ROOT / "csrc", help="the kernels' sources to count")
    parser.add_argument("--csv", type=Path, default=None, help="append the rows to this CSV")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help="the model's threads per block (1024: a GPU block's one-read lists; slower)")
    args = parser.parse_args(argv)
    env = environment()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(args.csrc.resolve(), Path(tmp))
        model.count_atomics(True)
        entries = args.vocab
        rows = []
        for kind in args.kinds:
            x = rows_of(kind, 1, args.vocab, seed=7)
            for call, kw in CHAIN_CALLS.items() if "chain" in args.families else ():
                for splits in (1, args.splits):
                    mp = kw.get("min_p", 0.0)
                    common = {"min_p": mp, "threads": args.threads}
                    off = chain_reads(model, x, kw.get("top_k"), kw["top_p"], splits, compact=False, **common)[0]
                    model.take_block_syncs()
                    model.take_atomics()
                    on, barriers, _, _ = chain_reads(model, x, kw.get("top_k"), kw["top_p"], splits, compact=True,
                                                     **common)
                    syncs, (atomics, hot) = model.take_block_syncs(), model.take_atomics()
                    model.take_scan_list()
                    scan, scan_barriers, _, _ = chain_reads(model, x, kw.get("top_k"), kw["top_p"], splits,
                                                            compact=True, top_k_scan=True, **common)
                    scan, scan_syncs, scan_list = round(scan, 2), model.take_block_syncs(), model.take_scan_list()
                    scan_atomics, scan_hot = model.take_atomics()
                    chain_reads(model, x, kw.get("top_k"), kw["top_p"], splits, compact=True, top_k_scan=True,
                                warp_finish=False, **common)
                    block_stages_syncs = model.take_block_syncs()
                    model.take_atomics()
                    rows.append({"vocab": args.vocab, "logits": kind, "call": call, "splits": splits,
                                 "reads_compact_off": round(off, 2), "reads_compact_on": round(on, 2),
                                 "reads_top_k_scan": scan, "scan_list": scan_list,
                                 "row_barriers": barriers if splits > 1 else "",
                                 "row_barriers_top_k_scan": scan_barriers if splits > 1 else "",
                                 "block_syncs": syncs, "block_syncs_top_k_scan": scan_syncs,
                                 "block_syncs_top_k_scan_block_stages": block_stages_syncs,
                                 "atomics_per_entry": round(atomics / entries, 3),
                                 "atomics_per_entry_top_k_scan": round(scan_atomics / entries, 3),
                                 "hot_word_atomics": hot, "hot_word_atomics_top_k_scan": scan_hot})
            beam_calls = ((True, 1), (False, 1), (True, args.beam_splits), (False, args.beam_splits))
            for log_softmax, splits in beam_calls if "beam" in args.families else ():
                beam_rows = rows_of(kind, 4, args.vocab, seed=7)
                model.take_block_syncs()
                model.take_atomics()
                beam = beam_reads(model, beam_rows, log_softmax=log_softmax, splits=splits, threads=args.threads)[0]
                syncs, (atomics, hot) = model.take_block_syncs(), model.take_atomics()
                model.take_scan_list()
                scan = beam_reads(model, beam_rows, log_softmax=log_softmax, splits=splits, top_k_scan=True,
                                  threads=args.threads)[0]
                scan_syncs, (scan_atomics, scan_hot) = model.take_block_syncs(), model.take_atomics()
                scan_list = model.take_scan_list()
                rows.append({"vocab": args.vocab, "logits": kind,
                             "call": f"beam top-k 8 ({'log-softmax' if log_softmax else 'logits'}, 4 beams)",
                             "splits": splits, "reads_compact_off": "", "reads_compact_on": round(beam, 2),
                             "reads_top_k_scan": round(scan, 2), "scan_list": scan_list, "row_barriers": "",
                             "row_barriers_top_k_scan": "",
                             "block_syncs": syncs, "block_syncs_top_k_scan": scan_syncs,
                             "block_syncs_top_k_scan_block_stages": "",
                             "atomics_per_entry": round(atomics / beam_rows.numel(), 3),
                             "atomics_per_entry_top_k_scan": round(scan_atomics / beam_rows.numel(), 3),
                             "hot_word_atomics": hot, "hot_word_atomics_top_k_scan": scan_hot})
    print(f"# CUDA kernels of {args.csrc} on the CPU model, {args.threads} threads per block, bfloat16 rows of "
          f"{args.vocab}; git {env['git_sha']}")
    print_table(rows, list(rows[0]))
    if args.csv:
        append_rows(args.csv, [{**row, "csrc": str(args.csrc), "git_sha": env["git_sha"]} for row in rows])
        print(f"appended {len(rows)} rows to {args.csv}")
    return rows


if __name__ == "__main__":
    main()
