"""The command line, run as a user runs it: ``python -m pydecode ...`` in a subprocess.

The model is a tiny random Llama with a byte-level BPE tokenizer saved to a temporary
directory (``--model PATH``), so these tests check the command line, not the demo model
(``tests/test_demo_model.py`` covers that). Expected outputs come from the Python API in this
process (``pydecode.generate``, ``WatermarkDetector``).
"""

from __future__ import annotations

import concurrent.futures
import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

PROMPT = "the quick brown"


def run_cli(*args: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pydecode", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer Llama (vocab ~300) with a trained byte-level BPE tokenizer, saved as a model dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny_model")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog. def f(x): return x + 1"] * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256, bos_token_id=1,
                         eos_token_id=2, pad_token_id=0)
    LlamaForCausalLM(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


# ------------------------------------------------------------------ generate
def test_generate_greedy_text_and_stream_equal_the_api(tiny_model: Path) -> None:
    import pydecode

    model, tokenizer = _load(tiny_model)
    enc = tokenizer(PROMPT, return_tensors="pt")
    ids = pydecode.generate(model, enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=12,
                            min_new_tokens=12, do_sample=False)
    expected = tokenizer.decode(ids[0], skip_special_tokens=True)
    assert ids.shape[1] == enc["input_ids"].shape[1] + 12
    flags = ["--model", str(tiny_model), "--strategy", "greedy", "--max-new-tokens", "12", "--min-new-tokens", "12"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        plain, streamed = pool.map(lambda extra: run_cli("generate", PROMPT, *flags, *extra), ([], ["--stream"]))
    for out in (plain, streamed):
        assert out.returncode == 0, out.stderr
        assert out.stdout == expected + "\n"


def test_generate_watermark_reports_the_detector_score(tiny_model: Path) -> None:
    import pydecode
    from pydecode.generation.watermark_detector import WatermarkDetector

    model, tokenizer = _load(tiny_model)
    enc = tokenizer(PROMPT, return_tensors="pt")
    config = pydecode.WatermarkingConfig(seeding_scheme="pydecode-hash")
    ids = pydecode.generate(model, enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=40,
                            do_sample=True, seed=5, watermarking_config=config)
    new = ids[:, enc["input_ids"].shape[1]:]
    z = float(WatermarkDetector(model.config, "cpu", config)(new, return_dict=True).z_score[0])
    assert z > 3.0  # the bias shows on a random model too: the test means something

    out = run_cli("generate", PROMPT, "--model", str(tiny_model), "--watermark", "--seed", "5",
                  "--max-new-tokens", "40")
    assert out.returncode == 0, out.stderr
    text, line = out.stdout.rstrip("\n").rsplit("\n", 1)
    assert text == tokenizer.decode(ids[0], skip_special_tokens=True)
    assert line.startswith("watermark (pydecode-hash") and f"z-score {z:.2f}," in line


def test_detect_matches_the_detector(tiny_model: Path, tmp_path: Path) -> None:
    from pydecode import WatermarkingConfig
    from pydecode.generation.watermark_detector import WatermarkDetector

    model, tokenizer = _load(tiny_model)
    text = "the lazy dog jumps over the quick brown fox; def f(x): return x + 1"
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    expected = WatermarkDetector(model.config, "cpu", WatermarkingConfig(seeding_scheme="lefthash"))(
        ids, return_dict=True)
    path = tmp_path / "text.txt"
    path.write_text(text)
    out = run_cli("detect", "--file", str(path), "--model", str(tiny_model), "--scheme", "hf")
    assert out.returncode == 0, out.stderr
    assert f"z-score: {float(expected.z_score[0]):.3f}" in out.stdout
    assert f"p-value: {float(expected.p_value[0]):.3g}" in out.stdout
    assert f"tokens scored: {int(expected.num_tokens_scored[0])}" in out.stdout
    assert re.search(r"^prediction: (not )?watermarked", out.stdout, re.M)


# ------------------------------------------------------------------ bench
def test_bench_prints_the_table_and_writes_csv_and_json(tiny_model: Path, tmp_path: Path) -> None:
    plot = ["--plot", str(tmp_path / "b.png")] if importlib.util.find_spec("matplotlib") else []
    out = run_cli("bench", "--model", str(tiny_model), "--new-tokens", "4", "--batch", "1", "--repeats", "1",
                  "--prompt-len", "8", "--csv", str(tmp_path / "b.csv"), "--json", str(tmp_path / "b.json"), *plot)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("strategy"))
    for column in ("tokens/s", "ms/token", "speed-up", "peak mem", "ids vs transformers"):
        assert column in lines[header]
    table = [line.split() for line in lines[header + 1 : header + 7]]
    assert [(r[0], r[1], r[2]) for r in table] == [
        (s, "1", p) for s in ("greedy", "sample", "beam") for p in ("transformers", "pydecode")]
    assert table[1][-1] == "identical" and table[5][-1] == "identical"

    data = json.loads((tmp_path / "b.json").read_text())
    assert data["settings"]["new_tokens"] == 4 and len(data["rows"]) == 6
    assert all(r["tokens_per_s"] > 0 for r in data["rows"])
    with (tmp_path / "b.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["case"], r["provider"]) for r in rows] == [(r["strategy"], r["provider"]) for r in data["rows"]]
    assert {r["ids_identical"] for r in rows if r["case"] != "sample" and r["provider"] == "pydecode"} == {"True"}
    assert all(float(r["median_us"]) > 0 and r["bench"] == "generate" for r in rows)
    if plot:
        assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_ops_tiny(tmp_path: Path) -> None:
    out = run_cli("bench-ops", "--cases", "beam_topk", "--batch", "4", "--vocab", "1000", "--repeats", "3",
                  "--budget", "0.01", "--wait-idle", "0", "--retries", "0", "--csv", str(tmp_path / "ops.csv"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "## beam_topk" in out.stdout and "x floor" in out.stdout
    with (tmp_path / "ops.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    providers = {(r["provider"], r["backend"]) for r in rows}
    assert {("floor", "read (x.sum)"), ("pydecode", "torch"), ("transformers", "processors")} <= providers
    assert all(float(r["ratio_to_floor"]) > 0 for r in rows)
    assert not any("DIFFERS" in r["note"] for r in rows)  # every kernel agreed with the torch reference


# ------------------------------------------------------------------ show-config, demo
def test_show_config() -> None:
    out = run_cli("show-config")
    assert out.returncode == 0, out.stderr
    for needle in ("pydecode 0.", "torch", "backends", "torch   available", "philox_uniform"):
        assert needle in out.stdout


def test_show_config_json() -> None:
    out = run_cli("show-config", "--json")
    info = json.loads(out.stdout)
    assert set(info["backends"]) == {"cuda", "triton", "cpu", "torch"}
    assert info["backends"]["torch"] == "available"
    assert "philox_uniform" in info["ops"]


def test_no_command_prints_help_and_fails() -> None:
    out = run_cli()
    assert out.returncode == 2
    for command in ("generate", "bench", "bench-ops", "detect", "show-config"):
        assert command in out.stdout


def test_every_command_has_help() -> None:
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(lambda c: run_cli(c, "--help"), ("generate", "bench", "bench-ops", "detect")))
    for out in outs:
        assert out.returncode == 0 and out.stdout.startswith("usage: pydecode ")
    generate_help = outs[0].stdout
    for flag in ("--max-new-tokens INT", "--temperature FLOAT", "--do-sample BOOL", "--eos-token-id JSON",
                 "--stream", "--watermark", "--backend"):
        assert flag in generate_help


def test_demo_checks_pass() -> None:
    out = run_cli("demo", "--steps", "6", "--batch", "3")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "identical token ids   : yes" in out.stdout and "all checks passed" in out.stdout


# ------------------------------------------------------------------ errors: one line, exit status != 0
ERRORS = {
    "empty prompt": (["generate", "  "], "the prompt is empty"),
    "bad int flag": (["generate", "x", "--top-k", "abc"], "argument --top-k: expected an integer, got 'abc'"),
    "bad bool flag": (["generate", "x", "--do-sample", "maybe"], "expected true or false"),
    "invalid config value": (["generate", "x", "--max-new-tokens", "0"], "`max_new_tokens` must be greater than 0"),
    "strategy contradicts a flag": (["generate", "x", "--strategy", "greedy", "--num-beams", "3"],
                                    "--strategy greedy contradicts num_beams=3"),
    "unknown model path": (["generate", "x", "--model", "/no/such/model"], "model path '/no/such/model' does not"),
    "missing config file": (["generate", "x", "--config", "/no/such/generation_config.json"], "no such file"),
    "gpu backend without a gpu": (["generate", "x", "--backend", "cuda"], "--backend cuda is not available"),
    "gpu device without a gpu": (["bench", "--device", "cuda"], "--device cuda: no CUDA device"),
    "bench-ops on a missing gpu": (["bench-ops", "--device", "cuda"], "--device cuda: no CUDA device"),
    "bench bad batch": (["bench", "--batch", "0"], "argument --batch: expected an integer >= 1, got '0'"),
    "detect missing file": (["detect", "--file", "/no/such/file.txt"], "--file /no/such/file.txt: no such file"),
    "plot without matplotlib": (["bench", "--plot", "out.png"], "--plot needs matplotlib"),
    "bad PYDECODE_BACKEND": (["show-config"], "PYDECODE_BACKEND"),
}
if torch.cuda.is_available():  # the GPU cases are only errors without a GPU
    for key in ("gpu backend without a gpu", "gpu device without a gpu", "bench-ops on a missing gpu"):
        del ERRORS[key]
if importlib.util.find_spec("matplotlib") is not None:
    del ERRORS["plot without matplotlib"]


@pytest.fixture(scope="module")
def error_runs() -> dict[str, subprocess.CompletedProcess]:
    """All error cases at once (each is mostly interpreter start-up: run them side by side)."""
    bad_env = dict(os.environ, PYDECODE_BACKEND="tpu")

    def one(key: str) -> subprocess.CompletedProcess:
        return run_cli(*ERRORS[key][0], env=bad_env if key == "bad PYDECODE_BACKEND" else None)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return dict(zip(ERRORS, pool.map(one, ERRORS)))


@pytest.mark.parametrize("key", list(ERRORS))
def test_errors_are_one_line(key: str, error_runs: dict[str, subprocess.CompletedProcess]) -> None:
    out = error_runs[key]
    assert out.returncode != 0, out.stdout
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert re.match(r"^pydecode( [\w-]+)?: error: ", lines[0]) and ERRORS[key][1] in lines[0], lines[0]
