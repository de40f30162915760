"""The CUDA sampling chain on the CPU model of the kernels (tests/cuda_emulation, built by
bench/cuda_row_reads.py): row reads of the compact paths, and their tokens and kept sets against
the full-row path and the split rows. The full comparison (every output, bit for bit, many more
rows) is tests/cuda_emulation/check_model.py, outside the suite."""

from __future__ import annotations

import itertools
import math
import shutil
from pathlib import Path

import pytest
import torch

from bench import cuda_row_reads as reads
from tests.ops import beam_cases

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CPU model of the CUDA kernels needs g++")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return reads.build_model(reads.ROOT / "csrc", Path(tmp_path_factory.mktemp("cuda_model")))


# (logits, vocab) -> reads of (top-k 50 + top-p, one block), (the same, split), (top-p alone, either):
# top-k: statistics with the key-bin histogram, list (split rows: statistics, gap histogram, list);
# top-p alone: narrow nucleus 3 (statistics, gap histogram, list), wide ones 4 (the bounds' bins
# fit the list: statistics, histogram, list, sample) or 5 (randn x 1 at 128256: exact histograms of
# the bounds' bins first). The full-row path reads 9-11 times.
READS = {("randn x 1", 128256): (2, 3, 5), ("randn x 3", 30000): (2, 3, 3), ("rand", 30000): (2, 3, 4)}


@pytest.mark.parametrize(("kind", "vocab"), list(READS))
def test_chain_reads_and_outputs(model, kind: str, vocab: int) -> None:  # noqa: ANN001
    x = reads.rows_of(kind, 1, vocab, seed=3)
    top_k_one, top_k_split, top_p = READS[kind, vocab]
    for top_k, expected in ((50, {1: top_k_one, 3: top_k_split}), (None, {1: top_p, 3: top_p})):
        want = None
        for splits, count in expected.items():
            off = reads.chain_reads(model, x, top_k, 0.9, splits, compact=False)[0]
            on, barriers, _, _ = reads.chain_reads(model, x, top_k, 0.9, splits, compact=True)
            assert on == pytest.approx(count) and off >= 9, (kind, top_k, splits, on, off)
            assert (barriers > 0) == (splits > 1)
            if top_k is not None and splits == 1:  # PYDECODE_CUDA_KEY_BINS=0: the gap histogram's read back
                gap = reads.chain_reads(model, x, top_k, 0.9, splits, compact=True, key_bins=False)[0]
                assert gap == pytest.approx(3), (kind, gap)
            if top_k is not None:  # PYDECODE_CUDA_TOPK_SCAN=1: one read, and the hits' values again
                scan, scan_barriers, _, _ = reads.chain_reads(model, x, top_k, 0.9, splits, compact=True,
                                                              top_k_scan=True)
                assert 1 <= scan < 1.05, (kind, splits, scan)
                # a split row's one row barrier: the lists' merge also merges the row's statistics
                assert scan_barriers == (1 if splits > 1 else 0), (kind, splits, scan_barriers)
            # the same token and kept set as the full-row path, split or not, whichever list
            for compact, key_bins, scan in ((False, True, False), (True, True, False), (True, False, False),
                                            (True, True, True)):
                _, _, tokens, rows = reads.chain_reads(model, x, top_k, 0.9, splits, compact, True, key_bins, scan)
                want = (tokens, rows) if want is None else want
                assert torch.equal(tokens, want[0]) and torch.equal(rows, want[1]), (kind, top_k, splits, compact)


@pytest.mark.parametrize("top_k", [1, 64])
def test_top_k_scan_on_hard_rows(model, top_k: int) -> None:  # noqa: ANN001
    """The one-read top-k list on rows that make its warps' buffers work: ascending values (every
    entry beats the running threshold when it arrives), a few values with thousands of ties (a
    buffer of ties cannot make room: the statistics pass and another list follow), -inf entries,
    fewer finite entries than k (the full-row path), one block per row and split in 3: the same
    tokens and filtered rows as without it. (The list is built for bfloat16 rows only.)"""
    g = torch.Generator().manual_seed(4)
    v = 6000
    with_inf = torch.randn(v, generator=g)
    with_inf[::3] = float("-inf")
    few = torch.full((v,), float("-inf"))
    few[:20] = torch.randn(20, generator=g)
    x = torch.stack([torch.arange(v, dtype=torch.float32) / 100, torch.randint(0, 3, (v,), generator=g).float(),
                     with_inf, few, torch.randn(v, generator=g) * 3])
    for dtype in (torch.bfloat16,):
        rows = x.to(dtype)
        for splits in (1, 3):
            for i in range(rows.shape[0]):
                row = rows[i : i + 1]
                want = reads.chain_reads(model, row, top_k, 0.9, splits, True, True)
                got = reads.chain_reads(model, row, top_k, 0.9, splits, True, True, top_k_scan=True)
                assert torch.equal(got[2], want[2]) and torch.equal(got[3], want[3]), (dtype, splits, i)
                plain = reads.chain_reads(model, row, top_k, 0.9, splits, True, top_k_scan=True)[0]
                # one read, and each hit's value again: every entry of the ascending row (row 0), a few
                # percent of the others; a buffer of ties (row 1) stops the read and sends the row to the
                # statistics pass and its list (one block: the key-bin list, + 1; split: the gap
                # list, + 2), fewer finite entries than k (row 3 at k 64) on to the full-row path
                lists = 1 if splits == 1 else 2
                if i == 3 and top_k > 20:
                    assert plain > 3, (dtype, splits, i, plain)
                elif i == 1:
                    assert 1 + lists < plain <= 2.2 + lists, (dtype, splits, i, plain)
                else:
                    assert 1 <= plain <= (2 if i == 0 else 1.15), (dtype, splits, i, plain)


def _list_rows() -> dict[str, torch.Tensor]:
    """Rows of 6000 for the one-read list's top-p and min-p rows: a ramp of 300 values 0.01 apart
    (mass ~ 0.986^i at T 0.7) among values ~40 lower (no mass, and no ties: a list of ties cannot
    make room), fewer finite entries than the list's 64, a NaN, -inf entries, three values tied."""
    g = torch.Generator().manual_seed(6)
    v = 6000
    ramp = torch.randn(v, generator=g) - 40.0
    ramp[torch.randperm(v, generator=g)[:300]] = -0.01 * torch.arange(300, dtype=torch.float32)
    few = torch.full((v,), float("-inf"))
    few[:20] = torch.randn(20, generator=g)
    with_nan = torch.randn(v, generator=g) * 4
    with_nan[77] = float("nan")
    with_inf = torch.randn(v, generator=g) * 4
    with_inf[::3] = float("-inf")
    ties = torch.randint(0, 3, (v,), generator=g).float()
    return {"ramp": ramp, "few": few, "nan": with_nan, "-inf": with_inf, "ties": ties}


def _same_as_full_row(model, x: torch.Tensor, kw: dict) -> None:  # noqa: ANN001
    """Tokens and filtered rows with the one-read list, without it and on the full-row path, at
    one block and 3 slices, bit for bit (NaN kept as NaN)."""
    args = {"min_p": kw.get("min_p", 0.0), "min_tokens_to_keep": kw.get("min_tokens_to_keep", 1)}
    for splits in (1, 3):
        want = reads.chain_reads(model, x, None, kw.get("top_p", 1.0), splits, False, True, **args)
        for scan in (False, True):
            got = reads.chain_reads(model, x, None, kw.get("top_p", 1.0), splits, True, True, top_k_scan=scan, **args)
            same_rows = torch.allclose(got[3], want[3], rtol=0, atol=0, equal_nan=True)
            assert torch.equal(got[2], want[2]) and same_rows, (kw, splits, scan)


def test_top_p_on_the_one_read_list(model) -> None:  # noqa: ANN001
    """Top-p without top-k on the one-read list (the 64 largest entries and their ties): 2 reads
    where the list's mass reaches top-p's limit (the list, then the row's mass), 3 where it falls
    short (the gap histogram's list follows, as without the list), and the full-row path's tokens
    and filtered rows either way. The ramp row's nucleus grows with p from ~25 to ~300 entries,
    across the list's size; min_tokens_to_keep past the list, min-p, ties, -inf entries, fewer
    finite entries than the list's 64 and a NaN send the row to the other paths. (The model's
    2-warp blocks list at most 256 entries.)"""
    rows = _list_rows()
    calls = [(rows["ramp"], {"top_p": p}) for p in (0.3, 0.5, 0.7, 0.9, 0.95, 0.99)]
    calls += [(rows["ramp"], {"top_p": 0.3, "min_tokens_to_keep": 280}), (rows["ramp"], {"top_p": 0.9, "min_p": 0.2})]
    hard = torch.stack([rows[kind] for kind in ("few", "nan", "-inf", "ties")])  # one call, four rows
    calls += [(hard, {"top_p": 0.9})]
    for row, kw in calls:
        x = row.to(torch.bfloat16).reshape(-1, row.shape[-1])
        _same_as_full_row(model, x, kw)
        if row is rows["ramp"] and len(kw) == 1:
            probs = torch.softmax(x.float()[0] / 0.7, 0).sort(descending=True).values
            nucleus = int((probs.cumsum(0) < kw["top_p"]).sum())
            on = reads.chain_reads(model, x, None, kw["top_p"], 1, True, top_k_scan=True)[0]
            off = reads.chain_reads(model, x, None, kw["top_p"], 1, True)[0]
            assert off == pytest.approx(3) and on < off + 0.1, (kw, on, off)  # the hits again: < 0.1
            if nucleus < 40:  # well inside the list: the list (and its hits' values again) and the mass
                assert 2 <= on < 2.1, (kw, nucleus, on)


def test_top_p_list_that_surely_holds_the_nucleus(model) -> None:  # noqa: ANN001
    """Top-p without top-k whose one-read list shows by itself that it holds the nucleus (its mass
    reaches the limit on the list's mass plus, for every entry off it, the mass of its smallest)
    sums the row's mass without the gap histogram: 2 reads and no atomic per entry. Rows: 20
    entries at 0 above the rest at -gap - 4 + randn (T 1, top-p 0.9; the normal's upper tail keeps
    the list's entries untied in bfloat16): at gap 2 the nucleus reaches far off the list; from
    about 6.3 the bound holds; from about 4.4 the list holds the nucleus, the bound showing it or
    not (the histogram then, as before). The full-row path's tokens and filtered rows for every
    gap, one block and 3 slices."""
    v = 6000
    g = torch.Generator().manual_seed(9)
    noise = torch.randn(v, generator=g)
    model.count_atomics(True)
    try:
        for gap in (2.0, 4.0, 5.0, 6.0, 6.5, 7.0, 9.0):
            x = (noise - gap - 4.0).reshape(1, v)
            x[0, :20] = 0.0
            x = x.to(torch.bfloat16)
            kw = {"top_p": 0.9, "temperature": 1.0}
            for splits in (1, 3):
                want = reads.chain_reads(model, x, None, 0.9, splits, False, True, temperature=1.0)
                got = reads.chain_reads(model, x, None, 0.9, splits, True, True, top_k_scan=True, temperature=1.0)
                assert torch.equal(got[2], want[2]) and torch.equal(got[3], want[3]), (gap, splits)
            model.take_atomics()
            on = reads.chain_reads(model, x, None, 0.9, 1, True, top_k_scan=True, temperature=1.0)[0]
            atomics = model.take_atomics()[0] / v
            if gap == 2.0:  # the gap histogram's list (the full-row path would read ~10 times)
                assert 2.9 < on < 3.5 and atomics > 0.9, (kw, gap, on, atomics)
            if gap >= 7.0:  # the list's own atomics: a few for each of its ~150 entries
                assert 2 <= on < 2.1 and atomics < 0.2, (kw, gap, on, atomics)
        # A peaked row of the benchmarks' kinds: the same, at p 0.5 and 0.99.
        x = reads.rows_of("peaked", 1, 30000, seed=3)
        for p in (0.5, 0.99):
            model.take_atomics()
            on = reads.chain_reads(model, x, None, p, 1, True, top_k_scan=True)[0]
            atomics = model.take_atomics()[0] / x.numel()
            assert 2 <= on < 2.1 and atomics < 0.05, (p, on, atomics)
    finally:
        model.count_atomics(False)


def test_min_p_on_the_one_read_list(model) -> None:  # noqa: ANN001
    """Min-p without top-k or top-p on the one-read list: 1 read where the list's smallest value is
    below min-p's bar (the kept set is on the list), the full-row path's 3 where it is not, and
    that path's tokens and filtered rows either way. On the ramp min-p keeps ~48 entries at 0.5
    (on the list), ~113 at 0.2 and ~210 at 0.05; min_tokens_to_keep past the list and the other
    rows send it to the full-row path."""
    rows = _list_rows()
    calls = [(rows["ramp"], {"min_p": m}) for m in (0.9, 0.5, 0.2, 0.05)]
    calls += [(rows["ramp"], {"min_p": 0.5, "min_tokens_to_keep": 280})]
    calls += [(torch.stack([rows[kind] for kind in ("few", "nan", "-inf", "ties")]), {"min_p": 0.1})]
    for row, kw in calls:
        x = row.to(torch.bfloat16).reshape(-1, row.shape[-1])
        _same_as_full_row(model, x, kw)
        if row is rows["ramp"] and len(kw) == 1:
            probs = torch.softmax(x.float()[0] / 0.7, 0)
            kept = int((probs >= kw["min_p"] * probs.max()).sum())
            on = reads.chain_reads(model, x, None, 1.0, 1, True, top_k_scan=True, min_p=kw["min_p"])[0]
            off = reads.chain_reads(model, x, None, 1.0, 1, True, min_p=kw["min_p"])[0]
            assert off == pytest.approx(3) and on < off + 0.1, (kw, on, off)
            if kept < 40:
                assert 1 <= on < 1.1, (kw, kept, on)


def test_split_list_is_a_top_prefix(model) -> None:  # noqa: ANN001
    """A split row's one-read list is every entry at or above the highest of its blocks' floors,
    a top prefix of the sorted row, as top-p's and min-p's stages need. The blocks' lists alone are
    not one: here the first of 3 slices holds a ramp (0, -0.001, ...) and lists its ~70 largest,
    and the other two list their 64 entries at -0.1, below ~30 unlisted ramp entries. Top-p with
    its boundary in the -0.1 groups, and min-p with its bar among those unlisted entries, need
    them: the union of the lists kept 30 entries too many (top-p) or 9-20 too few (min-p)."""
    v = 3 * 2048
    x = torch.full((1, v), float("-inf"))
    x[0, :2048] = -0.001 * torch.arange(2048, dtype=torch.float32)
    x[0, 2048:2112] = -0.1
    x[0, 4096:4160] = -0.1
    x = x.to(torch.bfloat16)
    for kw in ({"top_p": 0.12}, {"top_p": 0.15}, {"min_p": math.exp(-0.08)}, {"min_p": math.exp(-0.09)}):
        args = {"temperature": 1.0, "min_p": kw.get("min_p", 0.0)}
        want = reads.chain_reads(model, x, None, kw.get("top_p", 1.0), 3, False, True, **args)
        got = reads.chain_reads(model, x, None, kw.get("top_p", 1.0), 3, True, True, top_k_scan=True, **args)
        assert torch.equal(got[2], want[2]) and torch.equal(got[3].isfinite(), want[3].isfinite()), kw
        assert torch.equal(got[3], want[3]), kw


def test_pooled_thresholds_on_a_wider_block(model) -> None:  # noqa: ANN001
    """Top-k rows pool their warps' largest keys for the one-read list's threshold: with 8 warps
    (256 threads) a 20000-entry row lists about k entries (~400-600 at k 50 without the pool), with
    the full-row path's tokens and filtered rows, on rows whose ties make the pool's counts matter
    (integers, a few tied maxima, ties at the k-th), an ascending row, -inf entries, at one block
    and 3 slices; and the list then fits the warp finish with no cut (fewer barriers)."""
    g = torch.Generator().manual_seed(13)
    v = 20000
    tied_kth = torch.randn(v, generator=g)
    tied_kth[torch.randperm(v, generator=g)[:120]] = 4.0  # top-k 50 cuts inside a group of 120
    rows = {
        "randn x 3": torch.randn(v, generator=g) * 3,
        "integers": torch.randint(0, 40, (v,), generator=g).float(),
        "tied tops": torch.where(torch.rand(v, generator=g) < 0.001, 5.0, torch.randn(v, generator=g)),
        "tied k-th": tied_kth,
        "ascending": torch.arange(v, dtype=torch.float32) / 1000,
        "-inf": torch.where(torch.arange(v) % 3 == 0, float("-inf"), torch.randn(v, generator=g)),
    }
    short = 0
    for kind, row in rows.items():
        x = row.to(torch.bfloat16)[None]
        for top_k, splits in ((1, 1), (8, 3), (50, 1), (50, 3), (64, 1)):
            want = reads.chain_reads(model, x, top_k, 0.9, splits, False, True, threads=256)
            got = reads.chain_reads(model, x, top_k, 0.9, splits, True, True, top_k_scan=True, threads=256)
            assert torch.equal(got[2], want[2]) and torch.equal(got[3], want[3]), (kind, top_k, splits)
            if kind in ("randn x 3", "-inf"):
                # A bound too high leaves fewer than k entries listed, and the row falls back to the
                # statistics pass (correct, a read more): the untied rows list k to 2k + 8 in one read.
                model.take_scan_list()
                once = reads.chain_reads(model, x, top_k, 0.9, splits, True, top_k_scan=True, threads=256)[0]
                listed = model.take_scan_list()
                short += top_k <= listed <= 2 * top_k + 8 and once < 1.05
    assert short == 10, short
    x = rows["randn x 3"].to(torch.bfloat16)[None]
    warp, block = (_tokens_and_logprobs(model, x, {"top_k": 50, "top_p": 0.9}, 1, on, threads=256)
                   for on in (True, False))
    assert torch.equal(warp[0], block[0]) and torch.equal(warp[1], block[1])
    assert warp[2] + 10 <= block[2], (warp[2], block[2])


def test_split_top_p_and_min_p_rows_pool(model) -> None:  # noqa: ANN001
    """Split top-p and min-p rows without top-k pool their warps' keys too (one block's rows do
    not): with 8 warps (256 threads) each block of 3 lists about 64 entries of its slice, and the
    merged list from the highest floor down still holds a small nucleus or min-p set (one read for
    min-p, two for top-p), with the full-row path's tokens and filtered rows on the rows of the
    pooled-threshold test and a row whose top entries all lie in one slice (the merged list is then
    that slice's ~64: a wider nucleus takes the histogram's list)."""
    g = torch.Generator().manual_seed(17)
    v = 20000
    one_slice = torch.randn(v, generator=g) - 20.0
    one_slice[:300] = -0.01 * torch.arange(300, dtype=torch.float32)  # ~300 top entries, slice 0
    rows = {
        "randn x 3": torch.randn(v, generator=g) * 3,
        "integers": torch.randint(0, 40, (v,), generator=g).float(),
        "-inf": torch.where(torch.arange(v) % 3 == 0, float("-inf"), torch.randn(v, generator=g) * 3),
        "one slice": one_slice,
    }
    calls = ({"top_p": 0.9}, {"min_p": 0.1}, {"top_p": 0.9, "min_tokens_to_keep": 70})
    for kind, row in rows.items():
        x = row.to(torch.bfloat16)[None]
        for kw in calls:
            args = {"min_p": kw.get("min_p", 0.0), "min_tokens_to_keep": kw.get("min_tokens_to_keep", 1),
                    "threads": 256}
            top_p = kw.get("top_p", 1.0)
            want = reads.chain_reads(model, x, None, top_p, 1, False, True, **args)  # any split count: the same
            for splits in (1, 3) if kind == "randn x 3" else (3,):
                model.take_scan_list()
                got = reads.chain_reads(model, x, None, top_p, splits, True, True, top_k_scan=True, **args)
                listed = model.take_scan_list()
                assert torch.equal(got[2], want[2]) and torch.equal(got[3], want[3]), (kind, kw, splits)
                if kind == "randn x 3":  # untied: pooled blocks list ~64, one block its 8 warps' ~400
                    assert (listed <= 2 * 64 + 8) == (splits > 1), (kw, splits, listed)
    x = rows["randn x 3"].to(torch.bfloat16)[None]
    once = reads.chain_reads(model, x, None, 1.0, 3, True, top_k_scan=True, min_p=0.5, threads=256)[0]
    twice = reads.chain_reads(model, x, None, 0.5, 3, True, top_k_scan=True, threads=256)[0]
    assert 1 <= once < 1.1 and 2 <= twice < 2.1, (once, twice)


def test_split_top_k_rows_copy_about_k(model) -> None:  # noqa: ANN001
    """A split top-k row's blocks publish their lists' largest keys in a row pool, and the merged
    list starts at the highest key with k of them at or above it: about k entries, which the warp
    finish takes as they are, where the highest of the blocks' floors alone let ~150 through and a
    radix select cut them (3 slices of 12000 at 256 threads: 23 -> 10 block barriers). Same tokens
    and filtered rows as the full-row path on untied, -inf, integer and tied-k-th rows and on rows
    whose top entries crowd one slice or two (a slice may hold more of them than it publishes: the
    pool then undercounts, a lower bound, still a bound)."""
    g = torch.Generator().manual_seed(19)
    v, slices = 12000, 3
    tied_kth = torch.randn(v, generator=g)
    tied_kth[torch.randperm(v, generator=g)[:120]] = 4.0
    one_slice = torch.randn(v, generator=g) - 20.0
    one_slice[:200] = -0.01 * torch.arange(200, dtype=torch.float32)
    two_slices = torch.randn(v, generator=g) - 20.0
    two_slices[torch.arange(150) % 2 * 4000 + torch.arange(150) // 2] = -0.01 * torch.arange(150.0)
    rows = {
        "randn x 3": torch.randn(v, generator=g) * 3,
        "-inf": torch.where(torch.arange(v) % 3 == 0, float("-inf"), torch.randn(v, generator=g) * 3),
        "integers": torch.randint(0, 40, (v,), generator=g).float(),
        "tied k-th": tied_kth,
        "one slice": one_slice,
        "two slices": two_slices,
    }
    for kind, row in rows.items():
        x = row.to(torch.bfloat16)[None]
        for top_k in (8, 50) if kind in ("randn x 3", "-inf") else (50,):
            want = reads.chain_reads(model, x, top_k, 0.9, 1, False, True, threads=256)
            got = reads.chain_reads(model, x, top_k, 0.9, slices, True, True, top_k_scan=True, threads=256)
            assert torch.equal(got[2], want[2]) and torch.equal(got[3], want[3]), (kind, top_k)
            model.take_block_syncs()  # the decode-loop call (tokens only) finishes in a warp
            once, _, tokens, _ = reads.chain_reads(model, x, top_k, 0.9, slices, True, top_k_scan=True, threads=256)
            syncs = model.take_block_syncs()
            assert torch.equal(tokens, want[2]), (kind, top_k)
            if kind in ("randn x 3", "-inf", "one slice", "two slices"):
                assert once < 1.05 and syncs <= 10, (kind, top_k, once, syncs)


def _sort_keys(y: torch.Tensor) -> torch.Tensor:
    """sort_key of float32 values (no NaN): negatives' bits flipped, positives' sign bit set, +-0 as one."""
    bits = y.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    keys = torch.where(bits >= 0x80000000, bits ^ 0xFFFFFFFF, bits | 0x80000000)
    return torch.where(y == 0, torch.full_like(keys, 0x80000000), keys)


def test_input_floor_bounds_every_bfloat16_input(model) -> None:  # noqa: ANN001
    """input_floor(thr, r): every bfloat16 x whose float32(x * r) has a sort key >= thr is >= it, for
    every threshold a row of them can set (each product's key), at factors with inexact reciprocals,
    1, huge and subnormal ones (products that round far: 1e39) and tiny products; and, where the
    products are normal floats, it lies within a 64th of the input below the first that reaches
    thr (a bound far below would make every entry a hit)."""
    x = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16).view(torch.bfloat16).float()
    x = x[~torch.isnan(x) & ~torch.isinf(x)].unique()  # ascending
    for temperature in (0.7, 1.1, 3.1, 1.0, 1e-30, 1e30, 1e39, 2.0e-38):
        r = model.temperature_factor(temperature)
        y = (x * torch.tensor(r, dtype=torch.float32)).float()
        keys = _sort_keys(y)
        assert bool((keys[1:] >= keys[:-1]).all()), temperature  # non-decreasing in x
        for i in range(0, len(x), 97):  # thresholds: the keys of the products, every 97th input
            thr = int(keys[i])
            first = int(torch.searchsorted(keys, thr))  # the smallest input whose key reaches thr
            floor = model.input_floor(thr, r)
            assert x[first].item() >= floor, (temperature, thr, x[first].item(), floor)
            if first > 0 and 2**-126 <= abs(y[first].item()) < float("inf"):  # normal products: tight
                below = x[first - 1].item()  # the input below: the bound is not far under it
                assert floor > below - abs(below) * 2**-6, (temperature, below, floor)


def test_top_k_scan_compares_inputs_at_any_temperature(model) -> None:  # noqa: ANN001
    """The one-read list compares the inputs with an input-side bound of its threshold (input_floor):
    at temperatures whose factor rounds many inputs to one value (1e39: subnormal products, ties at
    0), whose reciprocal is inexact (0.7, 3.1) or is not finite (1e-39: the list is off), on
    rows of few distinct bfloat16 values around the threshold, it keeps what the key-bin list keeps."""
    g = torch.Generator().manual_seed(11)
    v = 4000
    near = 1.0 + torch.randint(0, 6, (v,), generator=g).float() / 128  # adjacent bfloat16 values
    x = torch.stack([torch.randn(v, generator=g) * 3, near, -near, torch.randn(v, generator=g) * 1e-30])
    x = x.to(torch.bfloat16)
    for temperature in (0.7, 3.1, 1e39, 1e-39):
        for top_k in (1, 64):
            want = reads.chain_reads(model, x, top_k, 0.9, 1, True, True, temperature=temperature)
            got = reads.chain_reads(model, x, top_k, 0.9, 1, True, True, top_k_scan=True, temperature=temperature)
            assert torch.equal(got[2], want[2]) and torch.equal(got[3], want[3]), (temperature, top_k)


def test_constant_row_top_p(model) -> None:  # noqa: ANN001
    """Top-p alone on a row of one value longer than the list (no gap bins to narrow: the full-row
    path), with the model's shared memory starting as a non-zero pattern, as on a GPU: no state of
    the compact path may be read before it is set (the wide-nucleus bins once were)."""
    x = torch.full((1, 5000), 1.5, dtype=torch.bfloat16)
    for splits in (1, 3):
        want = reads.chain_reads(model, x, None, 0.9, splits, False, filtered=True)
        got = reads.chain_reads(model, x, None, 0.9, splits, True, filtered=True)
        assert torch.equal(got[2], want[2]) and torch.equal(got[3], want[3]), splits


@pytest.mark.parametrize("log_softmax", [True, False])
def test_beam_reads_and_outputs(model, log_softmax: bool) -> None:  # noqa: ANN001
    """Beam top-k lists its candidates by the logits' key bins from the statistics pass: 2 reads
    with log-softmax (statistics, then the sum and the list in one read), 2 without (statistics,
    list), and the reference's candidates; a k-th
    score that rounding ties with an unlisted logit's sends the select back to the row."""
    from pydecode.ops import beam as B

    x = reads.rows_of("randn x 3", 8, 20000, seed=5).float()
    bonus = torch.randn(8, generator=torch.Generator().manual_seed(1)) - 3
    want = B.beam_topk(x, bonus, 4, 8, apply_log_softmax=log_softmax, backend="torch")
    for key_bins, count in ((True, 2), (False, 4 if log_softmax else 3)):
        got_reads, scores, tokens, beams = reads.beam_reads(model, x, 4, 8, log_softmax, bonus, key_bins)
        assert got_reads == pytest.approx(count), key_bins
        assert torch.equal(tokens, want.token_ids) and torch.equal(beams, want.beam_indices)
        torch.testing.assert_close(scores, want.scores, atol=1e-5 if log_softmax else 0, rtol=0)
    if not log_softmax:  # the reference's own add, so the tie is the same there
        x, bonus = beam_cases.tie_at_bin_edge(8, 9000), torch.full((8,), -3e4)
        for k in (8, 20):
            got_reads, scores, tokens, beams = reads.beam_reads(model, x, 4, k, False, bonus)
            assert got_reads > 2, "the key-bin list stood although an unlisted logit tied its k-th score"
            want = B.beam_topk(x, bonus, 4, k, apply_log_softmax=False, backend="torch")
            assert torch.equal(tokens, want.token_ids) and torch.equal(scores, want.scores), k
    else:  # the list taken in the sum's read checks its largest unlisted logit the same way
        x, bonus = beam_cases.tie_at_bin_edge(8, 9000), torch.full((8,), -3e4)
        for k in (8, 20):
            fused = reads.beam_reads(model, x, 4, k, True, bonus)
            row = reads.beam_reads(model, x, 4, k, True, bonus, False)  # the gap histogram's list
            assert fused[0] > 2, "the key-bin list stood although an unlisted logit tied its k-th score"
            assert all(torch.equal(a, b) for a, b in zip(fused[1:], row[1:])), k


def test_beam_key_bin_list_by_value_at_bin_edges(model) -> None:  # noqa: ANN001
    """The sum's read lists an entry when `x >= KeyBinList::lowest()`, one comparison where the key
    and its bin were taken: rows of values on key-bin edges (an eighth of an octave apart), one
    ulp either side of them, of both signs, +-0 and -inf, with ties, at k whose k-th value is such
    an edge: the candidates of the gap histogram's list. (Not the torch reference's: with this many
    equal scores torch.topk picks among ties its own way.)"""
    edges = torch.tensor([1.0, 1.125, 1.25, 0.5, 0.5625, 2.0, -1.0, -1.125, -0.5, -2.0, 0.0, -0.0])
    values = torch.cat([edges, torch.nextafter(edges, torch.tensor(float("inf"))),
                        torch.nextafter(edges, torch.tensor(float("-inf"))), torch.tensor([float("-inf")])])
    g = torch.Generator().manual_seed(9)
    x = values[torch.randint(0, len(values), (8, 3000), generator=g)]
    bonus = torch.zeros(8)
    for log_softmax in (True, False):
        for k in (1, 8, 20):
            fused = reads.beam_reads(model, x, 4, k, log_softmax, bonus)
            gap = reads.beam_reads(model, x, 4, k, log_softmax, bonus, False)
            assert fused[0] == pytest.approx(2), "the key-bin list took the sum's read"
            assert all(torch.equal(a, b) for a, b in zip(fused[1:], gap[1:])), (log_softmax, k)


def test_block_syncs_count_a_calls_barriers(model) -> None:  # noqa: ANN001
    """take_block_syncs: the most __syncthreads one block passed since the last take, the same for
    the same call, reset by the take; a split row's blocks each pass the statistics' barriers too."""
    x = reads.rows_of("randn x 3", 1, 20000, seed=3)
    model.take_block_syncs()
    counts = []
    for _ in range(2):
        reads.chain_reads(model, x, 50, 0.9, 1, compact=True)
        counts.append(model.take_block_syncs())
    assert counts[0] == counts[1] > 10
    assert model.take_block_syncs() == 0
    reads.chain_reads(model, x, 50, 0.9, 3, compact=True)
    assert model.take_block_syncs() > 10


def _beam_same(a: tuple, b: tuple) -> bool:
    """Whether two beam_reads results have the same scores (NaN where NaN), token ids and beams."""
    return all(torch.equal(x.nan_to_num(), y.nan_to_num()) and torch.equal(x.isnan(), y.isnan())
               for x, y in zip(a[1:], b[1:]))


@pytest.mark.parametrize("kind", ["float32", "bfloat16", "bad rows", "integer ties", "bin-edge tie"])
def test_beam_split_rows_match_one_block(model, kind: str) -> None:  # noqa: ANN001
    """Beam top-k's split path (slices' lists, their exact sums, the item's merge) gives what one
    block per row gives, bit for bit, and the reference's tokens and beams, on rows that take every
    branch: lists that decide, and items handed back to the row algorithm. (More split counts and
    shapes: tests/cuda_emulation/check_model.py.)"""
    from pydecode.ops import beam as B

    x, bonus = beam_cases.split_rows(5000, seed=7)[kind]
    for log_softmax, k in ((True, 8), (False, 20)):
        one = reads.beam_reads(model, x, 4, k, log_softmax, bonus)
        want = B.beam_topk(x, bonus, 4, k, apply_log_softmax=log_softmax, backend="torch")
        assert torch.equal(one[2], want.token_ids) and torch.equal(one[3], want.beam_indices), (kind, k)
        got = reads.beam_reads(model, x, 4, k, log_softmax, bonus, splits=3)
        assert _beam_same(got, one), (kind, k)


def test_beam_split_falls_back_where_the_lists_cannot_decide(model) -> None:  # noqa: ANN001
    """The reads show which branch ran: the lists decide plain rows (each slice read a few times:
    statistics, radix passes, list); a rounding tie between a slice's left-out logit and the k-th
    rank, or slices with more ties than their lists hold (values 0-2: too many for the row
    algorithm's key-bin list as well), send the item to the row algorithm, which reads its rows again."""
    rows = beam_cases.split_rows(5000, seed=7)
    def split_reads(x: torch.Tensor, bonus: torch.Tensor, k: int) -> float:
        return reads.beam_reads(model, x, 4, k, False, bonus, splits=7)[0]
    plain = split_reads(*rows["float32"], 20)
    tie = split_reads(*rows["bin-edge tie"], 20)
    ties = split_reads(torch.randint(0, 3, (4, 13000), generator=torch.Generator().manual_seed(8)).float(),
                       torch.zeros(4), 8)
    assert plain < 8 and tie > plain + 4 and ties > plain + 4, (plain, tie, ties)


def test_atomic_counts(model) -> None:  # noqa: ANN001
    """The model's atomic counts (bench/cuda_row_reads.py's atomics columns): the histogram paths
    make about one shared atomic per entry, their hottest bin thousands; the one-read list
    (top-k 50, min-p) makes a few per list entry, not per row entry. The counts are off unless a
    tool turns them on."""
    x = reads.rows_of("randn x 3", 1, 30000, seed=3)
    model.take_atomics()
    reads.chain_reads(model, x, 50, 0.9, 1, compact=True)
    assert model.take_atomics() == (0, 0)  # counting is off by default
    model.count_atomics(True)
    try:
        reads.chain_reads(model, x, 50, 0.9, 1, compact=True)
        atomics, hot = model.take_atomics()
        assert 0.95 <= atomics / x.numel() < 1.2 and hot > 300, (atomics, hot)
        for top_k, min_p in ((50, 0.0), (None, 0.1)):
            reads.chain_reads(model, x, top_k, 1.0 if min_p else 0.9, 1, compact=True, top_k_scan=True, min_p=min_p)
            atomics, hot = model.take_atomics()
            assert atomics < 0.02 * x.numel() and hot < 100, (top_k, atomics, hot)
    finally:
        model.count_atomics(False)


@pytest.mark.parametrize("log_softmax", [True, False])
def test_beam_one_read_list(model, log_softmax: bool) -> None:  # noqa: ANN001
    """Beam top-k's one-read list (bfloat16 rows, min(k, vocab) <= 64; PYDECODE_CUDA_TOPK_SCAN): the
    row's 64 largest logits listed as the row is read, so 1 read without log-softmax (2 with: its
    sum), not 2, and the statistics pass's outputs bit for bit: plain rows at k 8, 32 and 64 (the
    list's size), one block per row and split (slices list their 64 largest for k <= 32: 1 read,
    2 with the sum, where the statistics, radix passes and copy took 6, 7 with the sum); a list whose
    smallest score rounds to the k-th (beam scores -3e9: the row decides, and reads again); rows it
    cannot serve (NaN, +inf, -inf, a dead beam; integer logits, whose ties fill a warp's buffer),
    which take the statistics pass; and the split path's items handed back to the row algorithm."""
    plain = reads.rows_of("randn x 3", 8, 20000, seed=5)
    bonus = torch.randn(8, generator=torch.Generator().manual_seed(1)) - 3
    one_read = (2 if log_softmax else 1, 2.1 if log_softmax else 1.1)
    for k in (8, 32, 64):
        for splits in (1, 3):
            off = reads.beam_reads(model, plain, 4, k, log_softmax, bonus, splits=splits)
            on = reads.beam_reads(model, plain, 4, k, log_softmax, bonus, splits=splits, top_k_scan=True)
            assert _beam_same(on, off), (k, splits)
            if splits == 1 or k <= 32:
                assert one_read[0] <= on[0] < one_read[1], (k, splits, on[0])
                assert off[0] == pytest.approx(2) if splits == 1 else off[0] >= 6, (k, splits, off[0])
            else:  # slices list at most 32 on the one-read list
                assert on[0] == pytest.approx(off[0]), (k, splits)
    rounded = reads.rows_of("randn x 1", 8, 9000, seed=6)
    rounded[:, 1000:1080] = (8 + torch.arange(80) / 16).to(torch.bfloat16)  # one score at -3e9 (float32 ulp 256)
    for k in (8, 20):
        if log_softmax:
            break
        off = reads.beam_reads(model, rounded, 4, k, False, torch.full((8,), -3e9))
        on = reads.beam_reads(model, rounded, 4, k, False, torch.full((8,), -3e9), top_k_scan=True)
        assert _beam_same(on, off) and on[0] > 2, ("the list stood although its smallest score tied the k-th", k)
    for kind in ("bad rows", "integer ties", "bin-edge tie"):
        x, scores = beam_cases.split_rows(5000, seed=7)[kind]
        x = x.to(torch.bfloat16)
        for splits in (1, 3):
            off = reads.beam_reads(model, x, 4, 8, log_softmax, scores, splits=splits)
            on = reads.beam_reads(model, x, 4, 8, log_softmax, scores, splits=splits, top_k_scan=True)
            assert _beam_same(on, off), (kind, splits)


def test_beam_pooled_thresholds(model) -> None:  # noqa: ANN001
    """Beam top-k's one-read lists pool their warps' keys too (scan_list.cuh) for k <= 32: with 8
    warps (256 threads) a 20000-logit row, or a slice of one, lists about its 64 largest in one
    read, with the statistics pass's outputs bit for bit, at one block and 3 slices; k 64 keeps the
    warps' own thresholds (a list of about 64 would leave the select no entry below its 64th: the
    row would be read again), one read too; the rows it cannot serve (integer ties, NaN and dead
    beams) as without the list."""
    plain = reads.rows_of("randn x 3", 4, 20000, seed=5)
    for k, splits in ((8, 1), (32, 3), (64, 1)):
        off = reads.beam_reads(model, plain, 4, k, False, splits=splits, threads=256)
        model.take_scan_list()
        on = reads.beam_reads(model, plain, 4, k, False, splits=splits, top_k_scan=True, threads=256)
        listed = model.take_scan_list()
        assert _beam_same(on, off), (k, splits)
        if k <= 32:
            assert 64 <= listed <= 2 * 64 + 8 and on[0] < 1.05, (k, splits, listed, on[0])
        else:
            assert on[0] < 1.1, (k, on[0])
    for kind in ("bad rows", "integer ties"):
        x, scores = beam_cases.split_rows(5000, seed=7)[kind]
        x = x.to(torch.bfloat16)
        for splits in (1, 3):
            off = reads.beam_reads(model, x, 4, 8, True, scores, splits=splits, threads=256)
            on = reads.beam_reads(model, x, 4, 8, True, scores, splits=splits, top_k_scan=True, threads=256)
            assert _beam_same(on, off), (kind, splits)


def _tokens_and_logprobs(model, x: torch.Tensor, kw: dict, splits: int, warp: bool,  # noqa: ANN001
                         threads: int = reads.THREADS) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Tokens, log-probs (float32 bits) and block barriers of one chain call on the one-read list."""
    rows, vocab = x.shape
    full = lambda v, dt: None if v is None else torch.full((rows,), v, dtype=dt)  # noqa: E731
    args = [full(kw.get("temperature", 0.7), torch.float64), full(kw.get("top_k"), torch.int64),
            full(kw.get("top_p"), torch.float64), full(kw.get("min_p"), torch.float64)]
    seed, offset = torch.arange(rows, dtype=torch.int64) * 977 + 3, torch.zeros(rows, dtype=torch.int64)
    tokens, logprobs = torch.full((rows,), -7, dtype=torch.int64), torch.full((rows,), 123.0)
    addr = lambda t: 0 if t is None else t.data_ptr()  # noqa: E731
    model.take_block_syncs()
    transform = 0 if args[0] is None else 1
    model.filter_chain(x.data_ptr(), 2, rows, vocab, vocab, transform, *(addr(t) for t in args), kw.get("mtk", 1),
                       seed.data_ptr(), offset.data_ptr(), tokens.data_ptr(), logprobs.data_ptr(), 0,
                       float("-inf"), 0, threads, splits, True, True, True, warp)
    return tokens, logprobs.view(torch.int32), model.take_block_syncs()


# Calls whose later stages all run on the list: top-k with top-p, min-p and min_tokens_to_keep in
# the ways that make each stage decide (p 0: top-p keeps min_tokens_to_keep; min-p past the
# top-k's set; min_tokens_to_keep above what top-p or min-p keep), top-p or min-p alone.
_WARP_CALLS = [
    {"top_k": 50, "top_p": 0.9}, {"top_k": 50}, {"top_k": 20, "top_p": 0.5, "temperature": None},
    {"top_k": 50, "top_p": 0.9, "min_p": 0.05}, {"top_k": 40, "top_p": 0.2, "min_p": 0.3, "mtk": 3},
    {"top_k": 8, "top_p": 0.0, "mtk": 5}, {"top_k": 64, "top_p": 0.95, "min_p": 0.5, "mtk": 7},
    {"top_k": 64, "min_p": 0.9, "mtk": 30, "temperature": 1.0}, {"top_k": 1, "top_p": 0.9},
    {"top_p": 0.9}, {"top_p": 0.3}, {"top_p": 0.0}, {"top_p": 0.6, "min_p": 0.2, "mtk": 9},
    {"min_p": 0.1, "temperature": 1.3},
]


def test_warp_finish_matches_the_block_stages(model) -> None:  # noqa: ANN001
    """warp_finish (a short list's stages in one warp, by rank on the sorted list) gives the block
    stages' tokens and log-probs bit for bit, one block and 3 slices a row, on rows whose lists hold
    ties (integers, a few tied maxima, bin-edge ties), a peaked and a flat softmax, and -inf entries;
    and it passes fewer block barriers where it runs. Vocab 300 lists fit the warp as they are;
    6000's top-k lists are cut to top-k's set first (prune_list)."""
    g = torch.Generator().manual_seed(11)
    kinds = {
        "randn x 3": lambda v: torch.randn(2, v, generator=g) * 3,
        "integers": lambda v: torch.randint(0, 6, (2, v), generator=g).float(),
        "tied tops": lambda v: torch.where(torch.rand(2, v, generator=g) < 0.01, 5.0, torch.randn(2, v, generator=g)),
        "peaked": lambda v: torch.randn(2, v, generator=g) + torch.where(torch.arange(v) % 97 == 0, 8.0, 0.0),
        "flat": lambda v: torch.randn(2, v, generator=g) * 0.1,
        "-inf": lambda v: torch.where(torch.arange(v) % 3 == 0, float("-inf"), torch.randn(2, v, generator=g)),
    }
    fewer = 0
    for (kind, make), vocab in itertools.product(kinds.items(), (300, 6000)):
        if vocab > 300 and kind in ("flat", "-inf", "peaked"):  # the cut lists: three kinds are enough
            continue
        x = make(vocab).to(torch.bfloat16)
        for i, kw in enumerate(_WARP_CALLS):
            for splits in (1, 3) if (i + vocab // 300) % 3 == 0 else (1,):  # a third split, all kinds alike
                warp, block = (_tokens_and_logprobs(model, x, kw, splits, on) for on in (True, False))
                assert torch.equal(warp[0], block[0]) and torch.equal(warp[1], block[1]), (kind, vocab, kw, splits)
                fewer += warp[2] < block[2]
    assert fewer >= len(kinds) * len(_WARP_CALLS), fewer  # the warp ran on most of the calls
    # min_tokens_to_keep past what top-p (p 0.1) or min-p (0.9) keep: the 30th largest lies in a
    # group of 40 tied entries, of which top-p keeps the highest indices and min-p the lowest.
    x = torch.randn(8, 300, generator=g) * 0.5 - 3.0
    for row in x:
        at = torch.randperm(300, generator=g)
        row[at[:3]] = 5.0
        row[at[3:43]] = 2.0
    x = x.to(torch.bfloat16)
    for kw in ({"top_k": 64, "min_p": 0.9}, {"top_k": 64, "top_p": 0.1}, {"top_p": 0.1}, {"min_p": 0.9}):
        kw = {**kw, "mtk": 30, "temperature": 2.0}
        warp, block = (_tokens_and_logprobs(model, x, kw, 1, on) for on in (True, False))
        assert torch.equal(warp[0], block[0]) and torch.equal(warp[1], block[1]), kw
        assert warp[2] < block[2], kw


def test_warp_finish_on_a_gpu_sized_block(model) -> None:  # noqa: ANN001
    """With a GPU's 1024 threads a block's one-read list at top-k 50 holds over a thousand entries
    (each warp's threshold only reaches the keep-th of its own buffer); prune_list cuts it to top-k's
    set for the warp: same token and log-prob, and 10 or more block barriers fewer (15-24 counted)."""
    x = reads.rows_of("randn x 3", 1, 128256, seed=5)
    warp, block = (_tokens_and_logprobs(model, x, {"top_k": 50, "top_p": 0.9}, 1, on, threads=1024)
                   for on in (True, False))
    assert torch.equal(warp[0], block[0]) and torch.equal(warp[1], block[1])
    assert warp[2] + 10 <= block[2], (warp[2], block[2])
