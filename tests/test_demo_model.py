"""The shipped demo model (pydecode/demo_model): loads offline, tokenizes Python, has learned
Python, and decodes the same with pydecode as with transformers. Never trains."""

from __future__ import annotations

import json
import math

import pytest
import torch

transformers = pytest.importorskip("transformers")

import pydecode  # noqa: E402
from pydecode.demo_model import DEMO_MODEL_DIR, load_demo_model, load_model  # noqa: E402

# Written for this test (not taken from the standard library the model was trained on), so the
# loss below is a held-out loss.
SNIPPET = '''import os


class Inventory:
    """Keep track of items and their counts."""

    def __init__(self, path=None):
        self.path = path
        self.items = {}

    def add(self, name, count=1):
        if count < 0:
            raise ValueError("count must be non-negative")
        self.items[name] = self.items.get(name, 0) + count
        return self.items[name]

    def save(self):
        with open(self.path, "w") as f:
            for name, count in sorted(self.items.items()):
                f.write(f"{name}\\t{count}\\n")
'''


@pytest.fixture(scope="module")
def demo():
    return load_demo_model()


def _mean_loss(model, ids: torch.Tensor) -> float:
    with torch.no_grad():
        return model(input_ids=ids, labels=ids).loss.item()


def test_files_and_manifest():
    names = {p.name for p in DEMO_MODEL_DIR.iterdir()}
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "manifest.json", "README.md"):
        assert name in names
    total = sum(p.stat().st_size for p in DEMO_MODEL_DIR.iterdir() if p.is_file())
    assert total < 25 * 2**20
    manifest = json.loads((DEMO_MODEL_DIR / "manifest.json").read_text())
    corpus = manifest["corpus"]
    assert corpus["files"] > 100 and corpus["bytes"] > 1_000_000 and len(corpus["sha256"]) == 64
    assert manifest["final_heldout_loss"] < manifest["uniform_loss"]


def test_loads_offline_in_eval_mode(demo, monkeypatch):
    model, tokenizer = demo
    assert isinstance(model, transformers.LlamaForCausalLM) and not model.training
    assert isinstance(tokenizer, transformers.PreTrainedTokenizerFast)
    assert next(model.parameters()).dtype == torch.float32
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.eos_token_id == model.generation_config.eos_token_id == model.config.eos_token_id
    assert tokenizer.pad_token_id == model.generation_config.pad_token_id
    assert tokenizer.padding_side == "left"
    # Any attempt to reach the Hub would fail under HF_HUB_OFFLINE; the bf16 load must not need it.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model16, _ = load_demo_model(dtype=torch.bfloat16)
    assert next(model16.parameters()).dtype == torch.bfloat16


def test_tokenizer_round_trips_python(demo):
    _, tokenizer = demo
    text = SNIPPET + "\tx = 'caf\u00e9 \u2192 \U0001f40d'  # tabs, accents, astral planes\n\n\n"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    # A subword vocabulary, not bytes: Python compresses well (keywords, indentation are tokens).
    assert len(ids) < len(text.encode()) / 2.5
    assert tokenizer.decode(tokenizer("    def self")["input_ids"]) == "    def self"


def test_heldout_loss_far_below_uniform(demo):
    model, tokenizer = demo
    ids = tokenizer(SNIPPET, return_tensors="pt")["input_ids"]
    uniform = math.log(model.config.vocab_size)
    trained = _mean_loss(model, ids)
    # The same architecture with fresh random weights sits at about ln(vocab): the bound below
    # separates a trained model from an untrained one by a wide margin.
    torch.manual_seed(0)
    random_model = transformers.LlamaForCausalLM(model.config).eval()
    assert _mean_loss(random_model, ids) > 0.9 * uniform
    assert trained < 0.5 * uniform, (trained, uniform)


def test_greedy_matches_transformers(demo):
    model, tokenizer = demo
    prompt = "    def __init__(self, name"
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    kwargs = dict(max_new_tokens=24, do_sample=False)
    expected = model.generate(ids, **kwargs)
    got = pydecode.generate(model, ids, **kwargs)
    assert torch.equal(got, expected)
    assert expected.shape[1] > ids.shape[1]


def test_beam_search_batch_matches_transformers(demo):
    model, tokenizer = demo
    batch = tokenizer(["import ", "    for i in range("], return_tensors="pt", padding=True)
    kwargs = dict(max_new_tokens=12, num_beams=3, do_sample=False)
    assert torch.equal(pydecode.generate(model, **batch, **kwargs), model.generate(**batch, **kwargs))


def test_load_model_demo_and_directory(demo):
    model, tokenizer = load_model(str(DEMO_MODEL_DIR))
    reference, _ = demo
    assert isinstance(model, transformers.LlamaForCausalLM)
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    model_demo, _ = load_model("demo", dtype=torch.float16)
    assert next(model_demo.parameters()).dtype == torch.float16


def test_load_model_errors(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=r"'.*nope' does not exist.*'demo' or a local directory"):
        load_model(str(missing))
    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"\0")
    with pytest.raises(ValueError, match="weights.bin' is not a model directory"):
        load_model(str(a_file))
    with pytest.raises(ValueError, match="no config.json"):
        load_model(str(tmp_path))
    not_a_model = tmp_path / "junk"
    not_a_model.mkdir()
    (not_a_model / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(ValueError, match="junk' could not be loaded as a causal LM"):
        load_model(str(not_a_model))
    # A config without weights or tokenizer files.
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text((DEMO_MODEL_DIR / "config.json").read_text())
    with pytest.raises(ValueError, match="half' could not be loaded"):
        load_model(str(half))
    with pytest.raises(TypeError, match="dtype"):
        load_model("demo", dtype="float32")
    with pytest.raises(TypeError, match="dtype"):
        load_demo_model(dtype=torch.int64)
    with pytest.raises(ValueError, match="device"):
        load_model("demo", device="gpu0")
    with pytest.raises(TypeError, match="model must be"):
        load_model(None)
