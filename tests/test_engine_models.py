"""Each family, loaded by infill-ls from a tiny random checkpoint, computes what transformers computes."""

from __future__ import annotations

import pytest
import torch

from inference.engine import Engine, GenerationParams
from inference.loader import load_model
from tests import checkpoints as ck

KINDS = ["gpt_bigcode_mqa", "gpt_bigcode_mha", "codegen", "codegen2", "xglm"]

PROMPTS = [
    "def fibonacci(n):\n    if n < 2:",
    "class Stack:\n    def push(self, item):\n",
    "for (let i = 0; i < items.length; i++) {",
    "x",
]


def build(kind: str, root):
    """(infill-ls folder, transformers reference folder) for a kind."""
    if kind == "gpt_bigcode_mqa":
        return (ck.make_gpt_bigcode(root / kind, multi_query=True),) * 2
    if kind == "gpt_bigcode_mha":
        return (ck.make_gpt_bigcode(root / kind, multi_query=False, seed=1),) * 2
    if kind == "codegen":
        return (ck.make_codegen(root / kind, seed=2),) * 2
    if kind == "codegen2":
        return ck.make_codegen2(root / kind, reference_dir=root / (kind + "_ref"), seed=3), root / (kind + "_ref")
    return (ck.make_xglm(root / kind, seed=4),) * 2


@pytest.fixture(scope="module", params=KINDS)
def pair(request, tmp_path_factory):
    folder, ref_folder = build(request.param, tmp_path_factory.mktemp("models"))
    lm = load_model(folder, dtype="float32")
    ref = ck.load_reference(ref_folder)
    return request.param, lm, ref


def long_prompt(lm, n=400):
    ids = lm.encode(ck.CODE_TEXT * 3)
    return ids[:n]


def test_family_is_detected(pair):
    kind, lm, _ = pair
    assert lm.family == kind.replace("_mqa", "").replace("_mha", "")


def test_logits_match_transformers(pair):
    _, lm, ref = pair
    for ids in [lm.encode(p) for p in PROMPTS] + [long_prompt(lm)]:
        ours = lm.full_logits(ids)
        with torch.no_grad():
            theirs = ref(torch.tensor([ids])).logits[0].float()
        assert ours.shape == theirs.shape
        assert torch.allclose(ours, theirs, atol=1e-4, rtol=0), (ours - theirs).abs().max()


def test_greedy_generation_matches_transformers_generate(pair):
    _, lm, ref = pair
    eng = Engine(lm)
    longest = 0
    for ids in [lm.encode(p) for p in PROMPTS]:
        res = eng.generate(ids, GenerationParams(max_new_tokens=40))
        with torch.no_grad():
            theirs = ref.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                  max_new_tokens=40, do_sample=False, eos_token_id=list(lm.eos_token_ids),
                                  pad_token_id=lm.eos_token_ids[0])[0, len(ids):].tolist()
        n = len(res.token_ids)
        assert res.token_ids == theirs[:n]
        if res.stop_reason == "eos":
            assert theirs[n] in lm.eos_token_ids
        else:
            assert n == 40
        longest = max(longest, n)
    assert longest >= 32


def test_one_token_at_a_time_equals_full_forward(pair):
    _, lm, _ = pair
    ids = long_prompt(lm, 120)
    full = lm.full_logits(ids)
    from inference.kv_cache import SessionKV

    kv = SessionKV(lm.kv_spec())
    kv.reserve(len(ids))
    steps = []
    with torch.inference_mode():
        # a chunk, then single tokens
        hidden = lm.model.forward(torch.tensor(ids[:50]), kv)
        kv.advance(ids[:50])
        steps.append(lm.model.logits(hidden))
        for t in ids[50:]:
            steps.append(lm.model.logits(lm.model.forward(torch.tensor([t]), kv)))
            kv.advance([t])
    assert torch.allclose(torch.cat(steps), full, atol=1e-4, rtol=0)


def test_cache_reuse_after_edit_gives_same_tokens_as_fresh_run(pair):
    _, lm, _ = pair
    eng = Engine(lm)
    text = ck.CODE_TEXT[:600]
    first = lm.encode(text)
    r1 = eng.generate(first, GenerationParams(max_new_tokens=12), session="doc")
    assert r1.reused_tokens == 0
    assert eng.session_tokens("doc") == first + r1.token_ids[:-1] or r1.stop_reason == "eos"
    edited = lm.encode(text[:400] + "    value = compute(x)\n" + text[400:])
    common = next(i for i, (a, b) in enumerate(zip(first, edited)) if a != b)
    r2 = eng.generate(edited, GenerationParams(max_new_tokens=12), session="doc")
    fresh = Engine(lm).generate(edited, GenerationParams(max_new_tokens=12))
    assert r2.reused_tokens == common > 50
    assert r2.prefill_tokens == len(edited) - common
    assert r2.token_ids == fresh.token_ids
    # the same prompt again: everything but the last token comes from the cache
    r3 = eng.generate(edited, GenerationParams(max_new_tokens=12), session="doc")
    assert r3.reused_tokens == len(edited) - 1 and r3.token_ids == fresh.token_ids


def test_budget_evicts_least_recently_used(pair):
    _, lm, _ = pair
    per_session = 256 * lm.kv_spec().bytes_per_position()  # one growth step
    eng = Engine(lm, kv_budget_bytes=int(2.5 * per_session))
    ids = lm.encode(PROMPTS[0])
    for name in ("a", "b", "c"):
        eng.generate(ids, GenerationParams(max_new_tokens=2), session=name)
    assert eng.cache_bytes() <= 2.5 * per_session
    eng.generate(ids, GenerationParams(max_new_tokens=2), session="b")  # b is now the most recent
    eng.generate(ids, GenerationParams(max_new_tokens=2), session="d")  # evicts c
    assert eng.session_tokens("a") == [] and eng.session_tokens("c") == []
    assert eng.session_tokens("b")[: len(ids)] == ids and eng.session_tokens("d")[: len(ids)] == ids
    eng.close_session("b")
    assert eng.session_tokens("b") == [] and eng.cache_bytes() == per_session
