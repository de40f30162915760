"""Runs the CUDA kernels on the CPU model (see README.md) against the torch reference and the cpu backend."""
# ruff: noqa: B023, E501, E702  (a dev script: each lambda runs inside its loop iteration)
import os
import sys

import torch

sys.path.insert(0, os.environ.get("PYDECODE_EMU_DIR", "/tmp/cs_emu"))
import pydecode_cuda_model as M

from pydecode.ops import _cpu
from pydecode.ops import beam as B
from pydecode.ops import sampling as S
from tests.helpers import assert_same
from tests.ops.test_sampling_cuda import check_near_threshold, rows, stable_cum  # noqa: E402

NEG_INF = float("-inf")
TH = int(sys.argv[1]) if len(sys.argv) > 1 else 64
# Split counts of the split-vocabulary chain compared with the one-block path (bit for bit) on
# every chain call below; "0" as the second argument skips them.
SPLITS = (2, 3, 7) if len(sys.argv) <= 2 or sys.argv[2] != "0" else ()

def addr(t): return 0 if t is None else t.data_ptr()

def chain_once(x, transform=0, temperature=None, top_k=None, top_p=None, min_p=None, mtk=1, seed=None, offset=None,
               tokens=False, logprobs=False, filtered=False, fv=NEG_INF, renorm=False, splits=1, compact=True,
               top_k_scan=False, warp_finish=True):
    x = _cpu.rows_view(x); b, v = x.shape
    tok = torch.full((b,), -7, dtype=torch.int64) if tokens else None
    lp = torch.full((b,), 12345.0) if logprobs else None
    out = torch.full((b, v), 12345.0) if (filtered or renorm) else None
    M.filter_chain(x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], b, v, _cpu.row_stride(x), transform, addr(temperature),
                   addr(top_k), addr(top_p), addr(min_p), mtk, addr(seed), addr(offset), addr(tok), addr(lp),
                   addr(out) if filtered else 0, fv, addr(out) if renorm else 0, TH, splits, compact, True, top_k_scan,
                   warp_finish)
    return tok, lp, out

split_checks = 0
compact_checks = 0
def chain(x, **kw):
    """The one-block result, after checking that the full-row path (compact=False), the one-read
    list (top_k_scan=True: top-k, top-p and min-p rows, one block and 3 splits a row; its short
    lists finished by one warp and by the block: warp_finish) and every
    split count in SPLITS give the same bits (with 3 splits also on a row-strided copy, whose rows are not 16-byte aligned)."""
    global split_checks, compact_checks
    want = chain_once(x, **kw)
    others = [("compact=False", chain_once(x, compact=False, **kw)), ("top_k_scan", chain_once(x, top_k_scan=True, **kw)),
              ("top_k_scan warp_finish=False", chain_once(x, top_k_scan=True, warp_finish=False, **kw))]
    if SPLITS:
        others.append(("top_k_scan split=3", chain_once(x, top_k_scan=True, splits=3, **kw)))
    for label, got in others:
        for name, g, w in zip(("tokens", "logprobs", "rows"), got, want):
            if w is not None:
                compact_checks += 1
                report(f"{label} {name} V={x.shape[-1]} {sorted(kw)}", lambda: assert_same(g, w, atol=0, rtol=0))
    views = [x]
    if x.dim() == 2 and x.shape[-1] > 1:
        wide = torch.full((x.shape[0], x.shape[1] + 3), 7.0, dtype=x.dtype); wide[:, : x.shape[1]] = x
        views.append(wide[:, : x.shape[1]])
    for splits in SPLITS:
        for i, view in enumerate(views if splits == 3 else views[:1]):
            got = chain_once(view, splits=splits, **kw)
            for name, g, w in zip(("tokens", "logprobs", "rows"), got, want):
                if w is not None:
                    split_checks += 1
                    report(f"split={splits} view={i} {name} V={x.shape[-1]} {sorted(kw)}", lambda: assert_same(g, w, atol=0, rtol=0))
    return want

def rowsp(val, n, dt):
    return torch.as_tensor(val, dtype=dt).expand(n).contiguous()

fails = 0
def report(what, fn):
    global fails
    try:
        fn()
    except AssertionError as e:
        fails += 1
        print("FAIL", what, str(e)[:400])

# greedy incl. split
for vocab in (1, 7, 1000, 4099):
    x = rows(vocab, seed=vocab)
    for dt in (torch.float32, torch.bfloat16, torch.float16):
        xx = x.to(dt)
        want = S.greedy(xx, backend="torch")
        for splits in (1, 3):
            out = torch.empty(x.shape[0], dtype=torch.int64); scr = torch.empty(x.shape[0] * splits, dtype=torch.int64)
            M.greedy(xx.data_ptr(), _cpu.DTYPE_CODES[dt], x.shape[0], vocab, vocab, out.data_ptr(), scr.data_ptr(), splits, TH)
            report(f"greedy V={vocab} {dt} s={splits}", lambda: assert_same(out, want))
print("greedy done", fails)

# top-k masks exact
for vocab in (1, 5, 111, 3000):
    x = rows(vocab, seed=1)
    n = x.shape[0]
    for dt in (torch.float32, torch.bfloat16):
        xx = x.to(dt)
        for k in [kk for kk in (1, 2, 50, vocab - 1, vocab, 0) if 0 <= kk <= vocab]:
            for m in (1, 3):
                got = chain(xx, top_k=rowsp(k, n, torch.int64), mtk=m, filtered=True)[2]
                want = S.top_k_mask_logits(xx, k, min_tokens_to_keep=m, backend="torch")
                report(f"topk V={vocab} k={k} m={m} {dt}", lambda: assert_same(got, want))
print("topk done", fails)

for vocab in (1, 2, 17, 111, 3000):
    x = rows(vocab, seed=3)
    n = x.shape[0]
    for p in (0.0, 0.3, 0.9, 0.999, 1.0):
        for m in (1, 3):
            got = chain(x, top_p=rowsp(p, n, torch.float64), mtk=m, filtered=True)[2]
            want = S.top_p_mask_logits(x, p, min_tokens_to_keep=m, backend="torch")
            thr = (1 - torch.full((n,), p, dtype=torch.float64)).to(torch.float32)
            report(f"topp V={vocab} p={p} m={m}", lambda: check_near_threshold(got, want, stable_cum(x), thr, "topp", values=x))
            got = chain(x, min_p=rowsp(p, n, torch.float64), mtk=m, filtered=True)[2]
            want = S.min_p_mask_logits(x, p, min_tokens_to_keep=m, backend="torch")
            ratio = torch.exp(x.double() - x.double().amax(-1, keepdim=True))
            report(f"minp V={vocab} p={p} m={m}", lambda: check_near_threshold(got, want, ratio, torch.full((n,), p).float(), "minp", values=torch.softmax(x, -1)))
print("topp/minp done", fails)

# sampling vs reference (CPU reference divides; use T = 0.5)
for vocab in (3, 1000):
    x = torch.randn(9, vocab, generator=torch.Generator().manual_seed(vocab)) * 3
    n = 9
    seed = torch.arange(n) * 7919 - 5
    off = torch.full((n,), 11)
    for kw in ({}, {"top_k": 1}, {"top_k": 50}, {"top_k": 40, "temperature": 0.5}, {"top_k": 64, "top_p": 0.8, "min_p": 0.02}):
        kw = {**kw, "top_k": min(kw["top_k"], vocab)} if "top_k" in kw else kw
        t = rowsp(kw.get("temperature", 1.0), n, torch.float64)
        tok, lp, filt = chain(x, transform=1, temperature=t,
                              top_k=rowsp(kw.get("top_k", 0), n, torch.int64), top_p=rowsp(kw.get("top_p", 1.0), n, torch.float64),
                              min_p=rowsp(kw.get("min_p", 0.0), n, torch.float64), seed=seed, offset=off, tokens=True,
                              logprobs=True, filtered=True)
        want = S.filter_and_sample(x, seed=seed, offset=11, return_logprobs=True, return_filtered=True, backend="cpu", **kw)
        report(f"sample V={vocab} {kw}", lambda: assert_same(tok, want.tokens))
        report(f"sample filt V={vocab} {kw}", lambda: assert_same(filt, want.filtered))
        report(f"sample lp V={vocab} {kw}", lambda: assert_same(lp, want.logprobs, atol=2e-5, rtol=1e-5))
print("sample done", fails)

# temperature: torch on CUDA multiplies by float32(1.0 / T), the reciprocal in double (transformers
# divides by a Python float); these T make 1.0f / float32(T) differ from it by one ulp.
for vocab in (7, 1000):
    x = torch.randn(5, vocab, generator=torch.Generator().manual_seed(vocab)) * 3
    x[:, ::4] = 1.5
    for T in (3.1, 1.1, 0.85, 2.3, 0.7):
        t = rowsp(T, 5, torch.float64)
        want = S._temperature(x, t, reciprocal=True)
        report(f"temperature reference T={T}", lambda: assert_same(want, x * float(torch.tensor(1.0 / T, dtype=torch.float32))))
        filt = chain(x, transform=1, temperature=t, filtered=True)[2]
        report(f"temperature chain V={vocab} T={T}", lambda: assert_same(filt, want))
        out = torch.full_like(x, 12345.0)
        M.temperature(x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], 5, vocab, vocab, t.data_ptr(), out.data_ptr(), TH)
        report(f"temperature kernel V={vocab} T={T}", lambda: assert_same(out, want))
print("temperature done", fails)

# compact path (candidate list) on rows longer than its 4096 entries: top-k lists, top-p lists
# whose mass reaches the limit, and top-p on a flat row (the list's mass falls short: the full-row
# path). chain() compares every call with compact=False and with split rows, bit for bit.
g = torch.Generator().manual_seed(11)
x = torch.cat([torch.randn(3, 9000, generator=g) * 3, torch.randn(2, 9000, generator=g) * 0.3,
               torch.randint(0, 3, (1, 9000), generator=g).float(), torch.full((1, 9000), 1.5)])
x[1, ::3] = NEG_INF
x[2, 17] = -1e30
n = x.shape[0]
x32 = x  # (bfloat16 too: the one-read top-k list is built for bfloat16 rows)
for x, kw in [(xd, kw) for xd in (x32, x32.to(torch.bfloat16)) for kw in (
        {"top_k": 50, "temperature": 0.5, "top_p": 0.9}, {"top_p": 0.9, "temperature": 0.5}, {"top_k": 4096},
        {"top_p": 0.5, "mtk": 40}, {"top_k": 20, "min_p": 0.1}, {"top_k": 64, "temperature": 0.7})]:
    seed = torch.arange(n) * 7919 - 5
    tok, lp, filt = chain(x, transform=1, temperature=rowsp(kw.get("temperature", 1.0), n, torch.float64),
                          top_k=rowsp(kw.get("top_k", 0), n, torch.int64), top_p=rowsp(kw.get("top_p", 1.0), n, torch.float64),
                          min_p=rowsp(kw.get("min_p", 0.0), n, torch.float64), mtk=kw.get("mtk", 1), seed=seed,
                          offset=rowsp(3, n, torch.int64), tokens=True, logprobs=True, filtered=True)
    ref = {k: v for k, v in kw.items() if k != "mtk"}
    want = S.filter_and_sample(x, seed=seed, offset=3, min_tokens_to_keep=kw.get("mtk", 1), return_filtered=True, backend="cpu", **ref)
    # (rows 5 and 6 tie: at a top-p boundary inside a tied group the backends may keep different members)
    report(f"compact tokens {kw}", lambda: assert_same(tok[:5], want.tokens[:5]))
print("compact done", fails)

# top-p without top-k on wide nuclei (more entries than the list holds): the boundary's bins are
# listed (wide_top_p). Rows: randn at T = 0.7 (the bins the gap bounds allow hold > 4096 entries:
# exact bin histograms first), a flat row, randn * 0.5, a row with -inf entries, each in float32 and
# bfloat16 (ties at the boundary). Each row must be read at most 5 times (stats, histogram, exact
# bins, list, sample; min-p one more; min_tokens_to_keep past the nucleus takes the full-row path),
# and every call gives compact=False's and the split rows' bits (chain()).
def wide_args(kw, seeds):
    n = seeds.shape[0]
    return dict(transform=1, temperature=rowsp(0.7, n, torch.float64), top_p=rowsp(kw["top_p"], n, torch.float64),
                min_p=rowsp(kw.get("min_p", 0.0), n, torch.float64), mtk=kw.get("mtk", 1), seed=seeds,
                offset=rowsp(1, n, torch.int64), tokens=True, logprobs=True)

def at_most(reads, limit):
    assert reads <= limit + 0.01, f"{reads:.2f} reads of the row, more than {limit}"

g = torch.Generator().manual_seed(12)
V = 30000
wide = torch.cat([torch.randn(1, V, generator=g), torch.rand(1, V, generator=g), torch.randn(1, V, generator=g) * 0.5,
                  torch.randn(1, V, generator=g)])
wide[3, ::4] = NEG_INF
for dt in (torch.float32, torch.bfloat16):
    xw = wide.to(dt)
    n = xw.shape[0]
    seed = torch.arange(n) * 31 + 2
    for kw in ({"top_p": 0.9}, {"top_p": 0.95, "min_p": 0.02}, {"top_p": 0.5, "mtk": 5}, {"top_p": 0.9, "mtk": 6000}):
        limit = 99 if kw.get("mtk", 1) == 6000 else 5 + ("min_p" in kw)
        for i in range(n):
            M.take_loaded_bytes()
            chain_once(xw[i : i + 1], **wide_args(kw, seed[i : i + 1]))
            reads = M.take_loaded_bytes() / (V * xw.element_size())
            report(f"wide reads {dt} row {i} {kw}", lambda: at_most(reads, limit))
        tok, lp, filt = chain(xw, filtered=True, **wide_args(kw, seed))
        ref = {k: v for k, v in kw.items() if k != "mtk"}
        want = S.filter_and_sample(xw, temperature=0.7, seed=seed, offset=1, min_tokens_to_keep=kw.get("mtk", 1),
                                   return_filtered=True, backend="cpu", **ref)
        if dt == torch.float32:  # (bfloat16 ties at the boundary: the backends may keep different members)
            report(f"wide tokens {kw}", lambda: assert_same(tok, want.tokens))
            report(f"wide kept set {kw}", lambda: assert_same(torch.isinf(filt), torch.isinf(want.filtered)))
print("wide nucleus done", fails)

# edge rows
INF, NAN = float("inf"), float("nan")
x = torch.stack([torch.full((7,), NEG_INF), torch.full((7,), NAN), torch.tensor([0.0, NAN, 1.0, NEG_INF, 2.0, NAN, -1.0]),
                 torch.tensor([0.0, INF, 1.0, INF, 2.0, 0.0, -1.0]), torch.tensor([NEG_INF] * 6 + [3.0])])
n = 5
for kw in ({}, {"top_k": 3}, {"top_k": 7}, {"top_p": 0.0}, {"top_p": 1.0}, {"min_p": 0.5},
           {"top_k": 2, "top_p": 0.5, "min_p": 0.1, "temperature": 0.5}):
    tok, lp, filt = chain(x, transform=1, temperature=rowsp(kw.get("temperature", 1.0), n, torch.float64),
                          top_k=rowsp(kw.get("top_k", 0), n, torch.int64), top_p=rowsp(kw.get("top_p", 1.0), n, torch.float64),
                          min_p=rowsp(kw.get("min_p", 0.0), n, torch.float64), seed=rowsp(5, n, torch.int64),
                          offset=rowsp(0, n, torch.int64), tokens=True, logprobs=True, filtered=True)
    want = S.filter_and_sample(x, seed=5, return_logprobs=True, return_filtered=True, backend="torch", **kw)
    report(f"edge tok {kw}", lambda: assert_same(tok, want.tokens))
    report(f"edge filt {kw}", lambda: assert_same(filt, want.filtered))
    report(f"edge lp {kw}", lambda: assert_same(lp, want.logprobs, atol=1e-5))
print("edge done", fails)

# renorm
for vocab in (1, 9, 2000):
    lg = torch.randn(6, vocab, generator=torch.Generator().manual_seed(vocab)) * 2
    lg[1] = 0.0
    probs = torch.softmax(lg, -1); probs[2] = 0.0
    for k in sorted({0, 1, min(5, vocab), vocab}):
        kept = chain(probs, transform=2, top_k=rowsp(k, 6, torch.int64), renorm=True)[2]
        total = kept.sum(-1, keepdim=True); got = torch.where(total == 0, 0.0, kept / total)
        report(f"topk renorm V={vocab} k={k}", lambda: assert_same(got, S.top_k_renorm_probs(probs, k, backend="torch")))
print("renorm done", fails)

# beam
def beam_once(logits, scores, W, k, lsm, splits, scan=False):
    rws, v = logits.shape; b = rws // W; rk = min(k, v)
    cand = torch.empty(rws * rk, dtype=torch.int64); st = torch.empty(rws * 2)
    sc = torch.empty(b, k); tk = torch.empty(b, k, dtype=torch.int64); bm = torch.empty(b, k, dtype=torch.int64)
    scratch = torch.empty(rws * splits * M.BEAM_SLICE_WORDS if splits > 1 else 0, dtype=torch.int64)
    x = _cpu.rows_view(logits)
    M.beam_topk(x.data_ptr(), _cpu.DTYPE_CODES[x.dtype], rws, v, _cpu.row_stride(x), scores.data_ptr(), W, k, lsm,
                cand.data_ptr(), st.data_ptr(), sc.data_ptr(), tk.data_ptr(), bm.data_ptr(), TH, True, splits,
                scratch.data_ptr() if splits > 1 else 0, scan)
    return sc, tk, bm
def beam(logits, scores, W, k, lsm):
    """One block per row; where the split path applies (min(k, vocab) < vocab, <= 64), every split
    count in SPLITS must give the same outputs, bit for bit. The rows in bfloat16: the one-read list
    (top_k_scan) on and off give the same outputs, bit for bit, one block per row and split."""
    global split_checks
    got = beam_once(logits, scores, W, k, lsm, 1)
    half = logits.to(torch.bfloat16)
    for splits in (1, 3) if min(k, logits.shape[1]) < logits.shape[1] and k <= 64 else (1,):
        if splits <= logits.shape[1]:
            off, on = (beam_once(half, scores, W, k, lsm, splits, scan) for scan in (False, True))
            report(f"beam one-read list bf16 splits {splits} {tuple(logits.shape)} W={W} k={k} lsm={lsm}",
                   lambda: [assert_same(a, b, atol=0, rtol=0) for a, b in zip(on, off)])
    if min(k, logits.shape[1]) < logits.shape[1] and k <= 64:
        for splits in SPLITS:
            if splits <= logits.shape[1]:
                other = beam_once(logits, scores, W, k, lsm, splits)
                report(f"beam split {splits} {tuple(logits.shape)} W={W} k={k} lsm={lsm}",
                       lambda: [assert_same(a, b, atol=0, rtol=0) for a, b in zip(other, got)])
                split_checks += 1
    return got
g = torch.Generator().manual_seed(0)
for batch, W, vocab in ((1, 1, 5), (3, 4, 111), (2, 8, 301)):
    logits = torch.randn(batch * W, vocab, generator=g) * 3
    scores = torch.randn(batch * W, generator=g) - 5
    for k in sorted({1, 2 * W, min(3 * W, W * vocab), W * vocab if vocab < 10 else 7}):
        for lsm in (True, False):
            sc, tk, bm = beam(logits, scores, W, k, lsm)
            want = B.beam_topk(logits, scores, W, k, apply_log_softmax=lsm, backend="torch")
            report(f"beam {batch},{W},{vocab} k={k} lsm={lsm} sc", lambda: assert_same(sc, want.scores, atol=0 if not lsm else 1e-5))
            report(f"beam {batch},{W},{vocab} k={k} lsm={lsm} tk", lambda: assert_same(tk, want.token_ids))
            report(f"beam {batch},{W},{vocab} k={k} lsm={lsm} bm", lambda: assert_same(bm, want.beam_indices))
logits = torch.randint(0, 3, (8, 50), generator=torch.Generator().manual_seed(1)).float()
logits[2, 7] = NAN; logits[5] = NEG_INF
scores = torch.zeros(8); scores[3] = NEG_INF
for lsm in (True, False):
    for k in (1, 4, 8, 30):
        sc, tk, bm = beam(logits, scores, 4, k, lsm)
        want = B.beam_topk(logits, scores, 4, k, apply_log_softmax=lsm, backend="torch")
        report(f"beam ties k={k} lsm={lsm}", lambda: (assert_same(sc, want.scores, atol=1e-5), assert_same(tk, want.token_ids), assert_same(bm, want.beam_indices)))
# beam rows longer than a candidate list: the compact path (randn rows) and the full-row path (a
# row of two values, whose top bin holds more than 4096 entries; a NaN row).
logits = torch.randn(8, 9000, generator=torch.Generator().manual_seed(2)) * 3
logits[1] = torch.randint(0, 2, (9000,), generator=torch.Generator().manual_seed(3)).float()
logits[2, 77] = NAN; logits[3, ::2] = NEG_INF
scores = torch.randn(8, generator=torch.Generator().manual_seed(4)) - 3
for lsm in (True, False):
    for k in (8, 40):
        sc, tk, bm = beam(logits, scores, 4, k, lsm)
        want = B.beam_topk(logits, scores, 4, k, apply_log_softmax=lsm, backend="torch")
        report(f"beam long rows k={k} lsm={lsm}", lambda: (assert_same(sc, want.scores, atol=1e-5), assert_same(tk, want.token_ids), assert_same(bm, want.beam_indices)))
# key-bin lists (the candidates listed by the logits' key bins) whose k-th score ties with an
# unlisted entry's: with beam scores of -3e4 (no log-softmax: x + b, the reference's own float32
# add) logits 8.0 and 7.9995, in different key bins, score alike, and the lower indices (7.9995)
# come first; the kernel must notice and select on the row.
logits = torch.randn(8, 9000, generator=torch.Generator().manual_seed(6)) * 0.5
logits[:, 100:110] = 7.9995; logits[:, 200:220] = 8.0; logits[:, 300:303] = 12.0
scores = torch.full((8,), -3e4)
for k in (8, 20):
    sc, tk, bm = beam(logits, scores, 4, k, False)
    want = B.beam_topk(logits, scores, 4, k, apply_log_softmax=False, backend="torch")
    report(f"beam key-bin tie k={k}", lambda: (assert_same(sc, want.scores), assert_same(tk, want.token_ids), assert_same(bm, want.beam_indices)))
print("beam done", fails)
print("split-vs-unsplit comparisons", split_checks, "compact-vs-full-row", compact_checks, "threads", TH, "splits", SPLITS)
sys.exit(1 if fails else 0)
