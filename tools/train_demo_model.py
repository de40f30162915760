#!/usr/bin/env python
"""Train pydecode's built-in demo model: a small Llama on Python's standard-library sources.

The demo model exists so that ``pydecode generate`` / ``pydecode bench`` run offline on a fresh
machine and print text that means something (streaming, beam search and watermark detection
need a model whose output is recognisable). Everything here is reproducible from the running
interpreter alone: no download, fixed seeds, a sorted file list.

Corpus
    The ``.py`` files under ``sysconfig.get_paths()["stdlib"]``, sorted by relative path, minus
    test suites (``test``/``tests`` folders, ``test_*.py``), ``idlelib``, ``turtledemo``,
    ``lib2to3``, ``site-packages``/``dist-packages`` (not the standard library), ``encodings``
    (mostly generated code-page tables, which teach hex literals rather than Python) and any
    file over ``--max-file-bytes`` (the few generated giants such as ``pydoc_data/topics.py``).
    Every ``--holdout-every``-th file of that list is held out for the validation loss.
    ``manifest.json`` records the Python version, the file count, the byte count and a
    sha256 over (relative path, contents) of every file, so a rerun can be checked against the
    shipped weights (``--check-manifest`` compares without training).

Tokenizer
    A byte-level BPE (``tokenizers``) trained on the training files, ``--vocab-size`` tokens
    including the special tokens ``<s>`` (bos), ``</s>`` (eos) and ``<pad>``. Byte-level
    means any text round-trips exactly (indentation, unicode). Saved as tokenizer.json +
    tokenizer_config.json, loadable offline with ``AutoTokenizer.from_pretrained(dir)``.

Model (why this size)
    ``LlamaForCausalLM``: hidden 192, 4 layers, 6 heads of 32, 2 key/value heads (grouped
    query attention, so demos exercise the GQA cache path), SwiGLU width 512, tied input and
    output embeddings (the 4096 x 192 embedding is a third of the weights; untied it would be
    half), 2.36 M parameters. The budget is ~30 minutes on 2 CPU cores shared with other
    jobs, under ``nice``: measured there (float32), a step of 8 x 256 tokens took 0.3-0.9 s
    at load average 2-7 (the shipped run: 2400 steps, 4.9 M tokens, 2.2 passes over the
    corpus in 27 minutes), and hidden 256 / SwiGLU 688 (3.95 M) costs about 1.5x more per
    step, so it would see about 1.5 passes: a smaller model trained longer beats a bigger one
    undertrained. The vocabulary (4096) keeps the output layer cheap while
    still merging Python's keywords, indentation runs and common identifiers into tokens.

Training
    Each file becomes ``<s> text </s>``; the files are concatenated into one token stream and
    training windows of ``--seq-len`` tokens are cut at offsets drawn from a seeded
    ``torch.Generator`` (deterministic order). AdamW (betas 0.9/0.95, weight decay 0.1 on
    matrices only, peak lr 3e-3), linear warm-up, then a cosine decay to 10 % of the peak,
    gradient clipping at 1.0, float32 (``--bf16`` autocast exists but measured about 2x slower
    than float32 for these small matrices on our 2 cores).

    Two ways to size the run. ``--steps N`` is a fixed schedule (warm-up, constant until
    ``--decay-start``, which defaults to the end of warm-up, i.e. plain warm-up + cosine).
    Without ``--steps`` (budget mode, used for the shipped model because the shared machine's
    step rate varies 5x) the rate stays at its peak until ``1 - --decay-fraction`` of
    ``--minutes`` has passed; the script then measures the recent step rate, fixes the number
    of steps so the cosine decay ends within the budget, and records that schedule in
    ``manifest.json`` (``schedule``, ``reproduce``): rerunning with those ``--steps`` /
    ``--decay-start`` replays the same schedule with no timing involved. (Warm-up, stable
    phase, decay: the "WSD" shape of MiniCPM, Hu et al. 2024, with a cosine decay phase.)
    ``--minutes`` also stops any run that overruns it (``stopped_early`` in the manifest; the
    recorded replay command then adds ``--stop-at``).

The weights are saved with ``save_pretrained`` as float16 safetensors (half the size; the
loader upcasts to the requested dtype). Reproducibility: the corpus and the tokenizer are
determined by the Python version (check with ``--check-manifest``); the weights are the same
for the same torch build, thread count and CPU (float reduction order differs elsewhere, so a
rerun on another machine gives a comparable, not an identical, model).

Usage::

    nice -n 10 python tools/train_demo_model.py --minutes 30 --out pydecode/demo_model   # budget mode
    nice -n 10 python tools/train_demo_model.py --steps N --decay-start M --minutes 1000  # replay
    python tools/train_demo_model.py --check-manifest pydecode/demo_model/manifest.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import sysconfig
import time
from pathlib import Path

EXCLUDED_DIRS = {"test", "tests", "idlelib", "turtledemo", "lib2to3", "site-packages", "dist-packages",
                 "encodings", "__pycache__"}
SPECIAL_TOKENS = ["<s>", "</s>", "<pad>"]


def corpus_files(max_file_bytes: int) -> tuple[Path, list[Path]]:
    """The stdlib root and the sorted list of corpus files (see the module docstring)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root)
        if any(part in EXCLUDED_DIRS for part in rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        if not path.is_file() or path.stat().st_size > max_file_bytes:
            continue
        files.append(path)
    return root, files


def read_corpus(max_file_bytes: int, holdout_every: int) -> tuple[list[str], list[str], dict]:
    root, files = corpus_files(max_file_bytes)
    digest = hashlib.sha256()
    train, held = [], []
    n_bytes = 0
    for i, path in enumerate(files):
        data = path.read_bytes()
        n_bytes += len(data)
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + data + b"\0")
        # Undecodable files would make the corpus depend on the error handler; none exist in
        # CPython 3.9-3.13's stdlib, but replacing keeps the script total.
        text = data.decode("utf-8", errors="replace")
        (held if holdout_every and i % holdout_every == holdout_every - 1 else train).append(text)
    info = {
        "python_version": platform.python_version(),
        "stdlib": str(root),
        "files": len(files),
        "bytes": n_bytes,
        "sha256": digest.hexdigest(),
        "train_files": len(train),
        "heldout_files": len(held),
        "max_file_bytes": max_file_bytes,
        "holdout_every": holdout_every,
        "excluded_dirs": sorted(EXCLUDED_DIRS),
    }
    return train, held, info


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # add_prefix_space=False: a prompt is encoded exactly as written.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def wrap_tokenizer(tok):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        model_max_length=1024, clean_up_tokenization_spaces=False,
        # Left padding: a decoder-only model continues the last real token of each row.
        padding_side="left",
    )


def encode_stream(tok, texts: list[str]):
    import torch

    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    ids: list[int] = []
    for enc in tok.encode_batch(texts):
        ids.append(bos)
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.int32)


def build_model(vocab_size: int, args: argparse.Namespace, special: dict[str, int]):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        max_position_embeddings=1024, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
        bos_token_id=special["<s>"], eos_token_id=special["</s>"], pad_token_id=special["<pad>"],
        initializer_range=0.02,
    )
    return LlamaForCausalLM(config)


def evaluate(model, stream, seq_len: int, max_windows: int, bf16: bool) -> float:
    """Mean next-token loss over consecutive, non-overlapping windows of the held-out stream."""
    import torch

    n = min(max_windows, (len(stream) - 1) // seq_len)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, n, 8):
            rows = [stream[i * seq_len:(i + 1) * seq_len + 1].long() for i in range(start, min(n, start + 8))]
            batch = torch.stack(rows)
            logits = model(input_ids=batch[:, :-1]).logits.float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                                     reduction="sum")
            total += loss.item()
            count += batch[:, 1:].numel()
    model.train()
    return total / max(count, 1)


def lr_at(step: int, args: argparse.Namespace, steps: int | None, decay_start: int | None) -> float:
    """Linear warm-up, constant until ``decay_start``, then cosine decay to 10 % at ``steps``.

    ``decay_start == warmup`` is the plain warm-up + cosine schedule. ``steps is None`` (budget
    mode, before the decay has been scheduled) holds the peak rate.
    """
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if steps is None or decay_start is None or step < decay_start:
        return args.lr
    progress = (step - decay_start) / max(1, steps - decay_start)
    return args.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def file_hashes(out: Path) -> dict[str, str]:
    """sha256 of the weights and tokenizer, so a rerun's output can be compared file by file."""
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest()
            for name in ("model.safetensors", "tokenizer.json")}


def check_manifest(path: Path) -> int:
    manifest = json.loads(path.read_text())
    _, _, info = read_corpus(manifest["corpus"]["max_file_bytes"], manifest["corpus"]["holdout_every"])
    ok = True
    for key in ("python_version", "files", "bytes", "sha256"):
        same = info[key] == manifest["corpus"][key]
        ok &= same
        print(f"{key:15s} {'ok' if same else 'DIFFERS'}  shipped={manifest['corpus'][key]}  here={info[key]}")
    print("corpus matches the shipped manifest" if ok else "corpus differs: a retrain will not reproduce the weights")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("pydecode/demo_model"), help="output directory")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps: a fixed, reproducible schedule. Without it the run is sized by "
                             "--minutes (budget mode) and the manifest records the --steps/--decay-start that "
                             "reproduce it")
    parser.add_argument("--decay-start", type=int, default=None,
                        help="with --steps: the step where the cosine decay starts (default: end of warm-up, i.e. "
                             "plain warm-up + cosine)")
    parser.add_argument("--stop-at", type=int, default=None,
                        help="with --steps: stop after this many steps without changing the schedule (replays a run "
                             "that --minutes cut short)")
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="wall-clock budget: budget mode schedules its decay to end within it; any run stops "
                             "when it is reached")
    parser.add_argument("--decay-fraction", type=float, default=0.4,
                        help="budget mode: the share of --minutes spent in the cosine decay")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=192)
    parser.add_argument("--intermediate", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8, help="sequences per step")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast (slower than float32 for this model size on our 2-core machine)")
    parser.add_argument("--max-file-bytes", type=int, default=150_000)
    parser.add_argument("--holdout-every", type=int, default=25, help="every N-th corpus file is held out")
    parser.add_argument("--check-manifest", type=Path, metavar="MANIFEST",
                        help="only compare this machine's corpus with MANIFEST and exit (0: same)")
    args = parser.parse_args(argv)
    if args.check_manifest is not None:
        return check_manifest(args.check_manifest)
    if args.steps is not None and args.steps <= args.warmup:
        parser.error(f"--steps must be greater than --warmup ({args.warmup}), got {args.steps}")
    if args.decay_start is not None and (args.steps is None or not args.warmup <= args.decay_start <= args.steps):
        parser.error("--decay-start needs --steps and must lie between --warmup and --steps")
    if args.stop_at is not None and (args.steps is None or not 0 < args.stop_at <= args.steps):
        parser.error("--stop-at needs --steps and must lie between 1 and --steps")
    if not 0.0 < args.decay_fraction < 1.0 or args.minutes <= 0:
        parser.error("--decay-fraction must be in (0, 1) and --minutes positive")

    # Passive OpenMP waiting: on a shared machine a spinning thread burns the time slice its
    # partner needs, and each step ends at a barrier. Measured on our 2 busy cores (load 6-7):
    # 6-15 s/step with the default spin-wait, 1-3 s/step passive. Must be set before torch
    # loads libgomp.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    train_texts, held_texts, corpus = read_corpus(args.max_file_bytes, args.holdout_every)
    print(f"corpus: {corpus['files']} files, {corpus['bytes']} bytes, sha256 {corpus['sha256'][:16]}...", flush=True)
    tok = train_tokenizer(train_texts, args.vocab_size)
    special = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    train_stream = encode_stream(tok, train_texts)
    held_stream = encode_stream(tok, held_texts)
    print(f"tokenizer: vocab {tok.get_vocab_size()}, train {len(train_stream)} tokens, held-out {len(held_stream)} "
          f"tokens ({time.time() - t0:.0f}s)", flush=True)

    model = build_model(tok.get_vocab_size(), args, special)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters", flush=True)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    data_gen = torch.Generator().manual_seed(args.seed)
    max_start = len(train_stream) - args.seq_len - 1
    model.train()
    start = time.time()
    deadline = start + args.minutes * 60
    train_loss, steps_done, stopped_early = float("nan"), 0, False
    smooth = None
    steps = args.steps
    decay_start = (args.decay_start if args.decay_start is not None else args.warmup) if steps is not None else None
    step_times: list[float] = []
    step = 0
    while steps is None or step < steps:
        if steps is None and time.time() - start >= (1.0 - args.decay_fraction) * args.minutes * 60:
            # Budget mode: the machine is shared, so the step rate is only known now. Size the
            # decay from the recent rate (10 % margin); the manifest records the resulting
            # --steps/--decay-start, which replay this exact schedule without any timing.
            recent = step_times[-50:]
            per_step = (recent[-1] - recent[0]) / max(1, len(recent) - 1) if len(recent) > 1 else 1.0
            remaining = deadline - time.time()
            decay_start = step
            steps = step + max(1, int(0.9 * remaining / max(per_step, 1e-3)))
            print(f"budget mode: cosine decay from step {decay_start} to {steps} "
                  f"({per_step:.2f}s/step recently)", flush=True)
        lr = lr_at(step, args, steps, decay_start)
        for group in opt.param_groups:
            group["lr"] = lr
        offsets = torch.randint(0, max_start, (args.batch,), generator=data_gen)
        batch = torch.stack([train_stream[o:o + args.seq_len + 1] for o in offsets.tolist()]).long()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                                 batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        steps_done = step + 1
        step_times.append(time.time())
        smooth = loss.item() if smooth is None else 0.98 * smooth + 0.02 * loss.item()
        if step % 25 == 0 or step + 1 == steps:
            elapsed = time.time() - start
            print(f"step {step:5d} loss {loss.item():.3f} (smoothed {smooth:.3f}) lr {lr:.2e} "
                  f"{elapsed / steps_done:.2f}s/step elapsed {elapsed / 60:.1f}min", flush=True)
        if args.eval_every and step > 0 and step % args.eval_every == 0:
            held = evaluate(model, held_stream, args.seq_len, 64, args.bf16)
            print(f"step {step:5d} held-out loss {held:.3f} (first 64 windows)", flush=True)
        step += 1
        if step == args.stop_at:
            stopped_early = step != steps
            print(f"--stop-at {args.stop_at}: stopping", flush=True)
            break
        if time.time() > deadline and step != steps:
            stopped_early = True
            print(f"--minutes {args.minutes} reached after {steps_done} of {steps} steps: stopping", flush=True)
            break
    train_loss = smooth
    train_minutes = (time.time() - start) / 60
    # Final numbers on fixed data: every held-out window, and as many training windows.
    heldout_loss = evaluate(model, held_stream, args.seq_len, 10_000, args.bf16)
    # The first 128 training windows (the same for every rerun): a fixed sample, not the running average.
    train_eval_loss = evaluate(model, train_stream, args.seq_len, 128, args.bf16)
    print(f"final: train loss {train_eval_loss:.3f}, held-out loss {heldout_loss:.3f} "
          f"(uniform ln(V) = {math.log(tok.get_vocab_size()):.3f})", flush=True)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    # No max_length: transformers warns on every generate(max_new_tokens=...) call when the
    # model's generation config sets one; callers pick the length (default: 20 new tokens).
    model.generation_config.update(
        bos_token_id=special["<s>"], eos_token_id=special["</s>"], pad_token_id=special["<pad>"], do_sample=False,
    )
    model.to(torch.float16).save_pretrained(out, safe_serialization=True)
    wrap_tokenizer(tok).save_pretrained(out)
    # transformers 5 records its internal class name (TokenizersBackend); the public alias also
    # loads with transformers 4.x.
    tok_config_path = out / "tokenizer_config.json"
    tok_config = json.loads(tok_config_path.read_text())
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_config_path.write_text(json.dumps(tok_config, indent=2) + "\n")
    manifest = {
        "description": "pydecode demo model, trained by tools/train_demo_model.py",
        "command": "python tools/train_demo_model.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "corpus": corpus,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "tokenizers": __import__("tokenizers").__version__,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "parameters": n_params,
        "train_tokens": len(train_stream),
        "heldout_tokens": len(held_stream),
        "steps_done": steps_done,
        "schedule": {"steps": steps, "decay_start": decay_start, "warmup": args.warmup, "lr": args.lr},
        # argparse keeps the last of repeated options: the original command with the schedule fixed.
        "reproduce": " ".join(["python tools/train_demo_model.py", *(sys.argv[1:] if argv is None else argv),
                               f"--steps {steps} --decay-start {decay_start} --minutes 1000",
                               *([f"--stop-at {steps_done}"] if steps_done != steps else [])]),
        "stopped_early": stopped_early,
        "train_minutes": round(train_minutes, 1),
        "final_train_loss_smoothed": round(train_loss, 4),
        "final_train_loss": round(train_eval_loss, 4),
        "final_heldout_loss": round(heldout_loss, 4),
        "uniform_loss": round(math.log(tok.get_vocab_size()), 4),
    }
    manifest["files_sha256"] = file_hashes(out)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"saved to {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
