"""Generation controls: sampling, stops, limits, cancellation, streaming, FIM prompts."""

from __future__ import annotations

import threading

import pytest
import torch

from inference.engine import Engine, GenerationParams
from inference.loader import load_model
from inference.sampling import pick_token
from tests import checkpoints as ck


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return load_model(ck.make_gpt_bigcode(tmp_path_factory.mktemp("gen") / "m", seed=11))


@pytest.fixture
def eng(lm):
    return Engine(lm)


PROMPT = "def fibonacci(n):\n    if n < 2:"


def greedy(eng, lm, n=24, **kw):
    return eng.generate(lm.encode(PROMPT), GenerationParams(max_new_tokens=n, **kw))


def test_max_new_tokens(eng, lm):
    res = greedy(eng, lm, n=5)
    assert len(res.token_ids) == 5 and res.stop_reason == "max_tokens"
    assert res.text == lm.decode(res.token_ids) and res.prompt_tokens == len(lm.encode(PROMPT))


def test_zero_new_tokens_only_prefills_the_session(eng, lm):
    ids = lm.encode(PROMPT)
    res = eng.generate(ids, GenerationParams(max_new_tokens=0), session="warm")
    assert res.token_ids == [] and res.stop_reason == "max_tokens" and eng.session_tokens("warm") == ids
    again = eng.generate(ids + [40], GenerationParams(max_new_tokens=3), session="warm")
    assert again.reused_tokens == len(ids) and again.prefill_tokens == 1


def test_sampling_is_reproducible_with_seed_and_varies_without(eng, lm):
    params = GenerationParams(max_new_tokens=16, temperature=1.0, seed=123)
    a = eng.generate(lm.encode(PROMPT), params).token_ids
    b = eng.generate(lm.encode(PROMPT), params).token_ids
    c = eng.generate(lm.encode(PROMPT), GenerationParams(max_new_tokens=16, temperature=1.0, seed=7)).token_ids
    assert a == b and a != c
    assert a != greedy(eng, lm, n=16).token_ids


def test_top_p_keeps_only_the_nucleus():
    logits = torch.tensor([3.0, 2.9, -5.0, -6.0])
    gen = torch.Generator().manual_seed(0)
    picks = {pick_token(logits, 1.0, 0.9, gen) for _ in range(200)}  # p = .52, .47, tiny, tiny
    assert picks <= {0, 1} and picks == {0, 1}
    assert {pick_token(logits, 1.0, 0.5, gen) for _ in range(50)} == {0}  # the best token alone reaches .5
    assert pick_token(logits, 0.0, 1.0, None) == 0


def test_stop_token_ids_end_generation_and_are_excluded(eng, lm):
    full = greedy(eng, lm).token_ids
    stop = full[6]
    first = full.index(stop)
    res = greedy(eng, lm, stop_token_ids=(stop,))
    assert res.stop_reason == "eos" and res.token_ids == full[:first]


def test_stop_strings_cut_the_text(eng, lm):
    full = greedy(eng, lm)
    text = full.text
    needle = text[10:13]
    res = greedy(eng, lm, stop_strings=(needle,))
    assert res.stop_reason == "stop_string"
    assert res.text == text[: text.find(needle)]
    assert needle not in res.text and len(res.token_ids) <= len(full.token_ids)


def test_on_token_streams_every_generated_token(eng, lm):
    seen = []
    res = eng.generate(lm.encode(PROMPT), GenerationParams(max_new_tokens=10), on_token=seen.append)
    assert seen == res.token_ids


def test_cancel_from_another_thread_stops_at_the_next_step(eng, lm):
    cancel = threading.Event()
    seen = []

    def on_token(t):
        seen.append(t)
        if len(seen) == 3:
            threading.Thread(target=cancel.set).start()
            threading.Event().wait(0.05)  # give the other thread time to set it

    res = eng.generate(lm.encode(PROMPT), GenerationParams(max_new_tokens=50), cancel=cancel, on_token=on_token)
    assert res.stop_reason == "cancelled" and len(res.token_ids) == 3


def test_cancel_already_set_generates_nothing(eng, lm):
    cancel = threading.Event()
    cancel.set()
    res = eng.generate(lm.encode(PROMPT), GenerationParams(max_new_tokens=50), cancel=cancel)
    assert res.stop_reason == "cancelled" and res.token_ids == []


def test_time_limit(eng, lm):
    res = eng.generate(lm.encode(PROMPT), GenerationParams(max_new_tokens=200, time_limit_s=0.0))
    assert res.stop_reason == "time" and len(res.token_ids) == 1


def test_context_limit(eng, lm):
    with pytest.raises(ValueError, match="context"):
        eng.generate([5] * lm.max_context, GenerationParams())
    with pytest.raises(ValueError, match="empty"):
        eng.generate([], GenerationParams())
    res = eng.generate([5] * (lm.max_context - 3), GenerationParams(max_new_tokens=10))
    assert len(res.token_ids) <= 3


def test_starcoder_fim_prompts(lm):
    fim = lm.fim
    assert fim.name == "starcoder" and fim.supports_spm and fim.filename_token_id == 5
    pre, suf = [10, 11], [12]
    assert fim.psm(pre, suf) == [1, 10, 11, 3, 12, 2]
    assert fim.spm(pre, suf) == [1, 3, 12, 2, 10, 11]
    assert set(fim.stop_token_ids) == {0, 4}


def test_santacoder_and_codegen2_fim_prompts(tmp_path):
    santa = load_model(ck.make_gpt_bigcode(tmp_path / "santa", fim_style="santacoder"))
    t = santa.tokenizer.token_to_id
    assert santa.fim.name == "santacoder"
    assert santa.fim.psm([7], [8]) == [t("<fim-prefix>"), 7, t("<fim-suffix>"), 8, t("<fim-middle>")]
    cg2 = load_model(ck.make_codegen2(tmp_path / "cg2"))
    t = cg2.tokenizer.token_to_id
    assert cg2.fim.psm([7], [8]) == [7, t("<mask_1>"), 8, t("<|endoftext|>"), t("<sep>"), t("<mask_1>")]
    assert t("<eom>") in cg2.fim.stop_token_ids and t("<eom>") in cg2.eos_token_ids
    with pytest.raises(ValueError):
        cg2.fim.spm([7], [8])
    assert load_model(ck.make_xglm(tmp_path / "x")).fim is None


def test_first_token_ids_restrict_only_the_first_token(eng, lm):
    ids = lm.encode(ck.CODE_TEXT[:120])
    free = eng.generate(ids, GenerationParams(max_new_tokens=6))
    allowed = tuple(t for t in range(40, 60) if t != free.token_ids[0])
    res = eng.generate(ids, GenerationParams(max_new_tokens=6, first_token_ids=allowed))
    assert res.token_ids[0] in allowed
    with torch.inference_mode():
        logits = lm.full_logits(ids)[-1]
    assert res.token_ids[0] == max(allowed, key=lambda t: logits[t].item())  # greedy among the allowed
