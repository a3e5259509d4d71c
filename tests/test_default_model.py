"""The shipped default model (inference/default_model/): it loads with the engine and with transformers,
its held-out loss is what its model card says, and it fills in obvious middles correctly."""

from __future__ import annotations

import hashlib
import re

import pytest
import torch

from inference.engine import Engine, GenerationParams
from inference.loader import DEFAULT_MODEL_DIR, load_model

CARD = DEFAULT_MODEL_DIR / "MODEL_CARD.md"
SHIPPED = ("config.json", "model.safetensors", "tokenizer.json", "MODEL_CARD.md", "CORPUS.tsv")


def card_value(name: str) -> str:
    m = re.search(rf"^- {re.escape(name)}: `([^`]+)`", CARD.read_text(), re.M)
    assert m, f"MODEL_CARD.md has no line '- {name}: `...`'"
    return m.group(1)


@pytest.fixture(scope="module")
def lm():
    return load_model(None)


@pytest.fixture(scope="module")
def eng(lm):
    return Engine(lm)


def test_shipped_files_fit_the_package_budget():
    sizes = {name: (DEFAULT_MODEL_DIR / name).stat().st_size for name in SHIPPED}
    assert sum(sizes.values()) <= 25 * 2**20, sizes


def test_engine_loads_the_default_as_a_starcoder_style_fim_model(lm):
    assert lm.family == "gpt_bigcode"
    assert lm.fim is not None and lm.fim.name == "starcoder" and lm.fim.supports_spm
    names = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<filename>"]
    assert [lm.tokenizer.token_to_id(n) for n in names] == list(range(6))
    assert 0 in lm.eos_token_ids
    assert lm.decode(lm.encode("def f(x):\n    return x\n")) == "def f(x):\n    return x\n"


def test_held_out_loss_matches_the_model_card():
    """Recomputed here with transformers on the card's fixed sample: the first 256 tokens of each of
    the first 8 held-out stdlib files (sorted by path) that are that long."""
    transformers = pytest.importorskip("transformers")
    from training.data import split_files, stdlib_files

    model = transformers.GPTBigCodeForCausalLM.from_pretrained(DEFAULT_MODEL_DIR, dtype=torch.float32).eval()
    tok = load_model(None).tokenizer
    _, held = split_files(stdlib_files())
    rows, digest = [], hashlib.sha256()
    for f in held:
        ids = tok.encode(f.text, add_special_tokens=False).ids
        if len(ids) >= 256:
            rows.append(ids[:256])
            digest.update(f.rel_path.encode() + b"\0" + f.text.encode())
        if len(rows) == 8:
            break
    if digest.hexdigest() != card_value("held-out sample sha256"):
        pytest.skip("this interpreter's stdlib differs from the one the card's sample was taken from")
    x = torch.tensor(rows)
    with torch.no_grad():
        logits = model(input_ids=x).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
    assert loss.item() == pytest.approx(float(card_value("held-out sample loss")), abs=0.01)


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_lower_precision_weights_keep_the_held_out_loss(lm, dtype):
    """What a user gives up for the smaller weights, on the card's held-out sample through the engine
    itself: the loss stays within 0.02 nats of float32's (measured: bf16 -0.0004, int8 +0.0004 nats)
    and the predicted token is float32's at nearly every position (measured: 98.8% and 97.1%)."""
    from training.evaluate import heldout_sample

    rows, digest = heldout_sample(lm.tokenizer)
    if digest != card_value("held-out sample sha256"):
        pytest.skip("this interpreter's stdlib differs from the one the card's sample was taken from")
    low = load_model(None, dtype=dtype, compile_decode=False)
    nats = {"float32": [], dtype: []}
    same = total = 0
    with torch.inference_mode():
        for row in rows.tolist():
            target = torch.tensor(row[1:])
            ref, got = lm.full_logits(row)[:-1].float(), low.full_logits(row)[:-1].float()
            nats["float32"].append(torch.nn.functional.cross_entropy(ref, target))
            nats[dtype].append(torch.nn.functional.cross_entropy(got, target))
            same += int((got.argmax(-1) == ref.argmax(-1)).sum())
            total += len(target)
    losses = {name: torch.stack(values).mean().item() for name, values in nats.items()}
    assert losses["float32"] == pytest.approx(float(card_value("held-out sample loss")), abs=0.01), losses
    assert abs(losses[dtype] - losses["float32"]) <= 0.02, losses
    assert same / total >= 0.95, f"{same}/{total} positions predict float32's token"


def test_engine_and_transformers_agree_on_the_default_model(lm, eng):
    transformers = pytest.importorskip("transformers")
    model = transformers.GPTBigCodeForCausalLM.from_pretrained(DEFAULT_MODEL_DIR, dtype=torch.float32).eval()
    prompt = lm.encode("import os\n\n\ndef read_config(path):\n    with open(path) as f:\n")
    ours = eng.generate(prompt, GenerationParams(max_new_tokens=16)).token_ids
    with torch.no_grad():
        ref = model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False,
                             eos_token_id=list(lm.eos_token_ids), pad_token_id=0)[0, len(prompt):].tolist()
    assert ours == ref[: len(ours)] and (len(ours) == len(ref) or ref[len(ours)] in lm.eos_token_ids)


def test_the_suffix_helps_the_model_predict_the_middle():
    """Trained FIM at work: a held-out line costs fewer nats given prefix and suffix (PSM and SPM
    prompts) than given the prefix alone; a model without FIM training has no use for the suffix."""
    transformers = pytest.importorskip("transformers")
    from training.data import split_files, stdlib_files

    model = transformers.GPTBigCodeForCausalLM.from_pretrained(DEFAULT_MODEL_DIR, dtype=torch.float32).eval()
    lm = load_model(None)
    pre_id, mid_id, suf_id = lm.fim.prefix_token, lm.fim.middle_tokens[0], lm.fim.suffix_token

    def middle_nll(context: list[int], middle: list[int]) -> float:
        x = torch.tensor([context + middle])
        with torch.no_grad():
            logp = model(input_ids=x).logits[0].log_softmax(-1)
        at = torch.arange(len(context) - 1, len(context) - 1 + len(middle))
        return -logp[at, torch.tensor(middle)].sum().item()

    totals = {"psm": 0.0, "spm": 0.0, "prefix only": 0.0}
    files = [f for f in split_files(stdlib_files())[1] if f.text.count("\n") >= 40][:24]
    assert len(files) >= 12
    for f in files:
        lines = f.text.split("\n")
        i = len(lines) // 2
        while not lines[i].strip():
            i += 1
        p = lm.encode("\n".join(lines[i - 12 : i]) + "\n")
        m = lm.encode(lines[i])
        s = lm.encode("\n" + "\n".join(lines[i + 1 : i + 12]))
        totals["psm"] += middle_nll([pre_id, *p, suf_id, *s, mid_id], m)
        totals["spm"] += middle_nll([pre_id, suf_id, *s, mid_id, *p], m)
        totals["prefix only"] += middle_nll(p, m)
    assert totals["psm"] < totals["prefix only"], totals
    assert totals["spm"] < totals["prefix only"], totals


OBVIOUS = {
    "missing return": (
        "def add(a, b):\n█\n\n\ndef sub(a, b):\n    return a - b\n",
        "    return a + b",
    ),
    "main guard body": (
        "import unittest\n\n\nclass TestAdd(unittest.TestCase):\n    def test_add(self):\n"
        "        self.assertEqual(1 + 1, 2)\n\n\nif __name__ == \"__main__\":\n█\n",
        "    unittest.main()",
    ),
    "second attribute": (
        "class Point:\n    def __init__(self, x, y):\n        self.x = x\n█\n\n    def norm(self):\n"
        "        return (self.x ** 2 + self.y ** 2) ** 0.5\n",
        "        self.y = y",
    ),
    "return the result": (
        "def area(width, height):\n    result = width * height\n█\n\n\nprint(area(2, 3))\n",
        "    return result",
    ),
}
# Obvious to a person, not yet to this model (v2 writes "return a - b", copying the function below;
# v1 got that one and failed the other two as v2 does)
NOT_YET = {"missing return", "second attribute", "return the result"}


@pytest.fixture(scope="module")
def server_pipeline():
    from bench.quality import ServerPipeline

    pipe = ServerPipeline(None)  # the shipped model, loaded as the server loads it
    yield pipe
    pipe.close()


@pytest.mark.parametrize("name", sorted(OBVIOUS))
def test_obvious_infills_through_the_server_pipeline(server_pipeline, name, request):
    """What an editor shows: the server's SPM prompt (token healing) and shaping, greedy."""
    if name in NOT_YET:
        request.applymarker(pytest.mark.xfail(strict=True, reason="the shipped 5 M-parameter model gets "
                                              "this one wrong; strict, so it fails loudly once a better model does"))
    code, expected = OBVIOUS[name]
    prefix, suffix = code.split("█")
    got = server_pipeline.complete(prefix, suffix, "spm")
    assert got.split("\n")[0].rstrip() == expected, (name, got)


def _quality(spm, l2r, rep, low=0.01):
    """A bench/quality.py table: ES per (single, multi) and the paired lead's lower bound."""
    def mode(es, lead_low=None):
        out = {k: {"n": 100, "exact_match": 0.0, "edit_similarity": v} for k, v in zip(("single", "multi"), es)}
        if lead_low is not None:
            out["spm_lead"] = {k: {"mean": 0.0, "low": lead_low, "high": 0.1} for k in ("single", "multi")}
        return out
    return {"fim-spm": mode(spm), "l2r": mode(l2r, low), "repeat-line": mode(rep, 0.05)}


def test_model_card_verdict_needs_margin_and_interval():
    from training.model_card import verdict

    assert "beat left-to-right completion and the repeat-the-line baseline clearly" in verdict(
        _quality((0.50, 0.40), (0.45, 0.35), (0.30, 0.20)))
    # a 5-point lead whose interval reaches below zero is not clear
    assert "clear on neither task kind" in verdict(_quality((0.50, 0.40), (0.45, 0.35), (0.30, 0.20), low=-0.01))
    # under the margin on multi-line tasks only
    assert "clear only on single-line tasks" in verdict(_quality((0.50, 0.40), (0.45, 0.39), (0.30, 0.20)))
    assert "does NOT yet beat the trivial baseline" in verdict(_quality((0.50, 0.40), (0.45, 0.35), (0.49, 0.20)))


def test_the_corpus_manifest_ships_beside_the_card():
    """Every package the shipped model trained on, with its license, is in CORPUS.tsv."""
    from training.corpus import MANIFEST

    assert (DEFAULT_MODEL_DIR / "CORPUS.tsv").read_bytes() == MANIFEST.read_bytes()
    assert "CORPUS.tsv" in CARD.read_text()
