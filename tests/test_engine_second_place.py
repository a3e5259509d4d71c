"""A document keeps a second KV cache for the place it was at before: after a jump elsewhere, coming
back finds its prompt still cached, closing the document drops both, and both count against the budget."""

from __future__ import annotations

import pytest

from inference.engine import Engine, GenerationParams
from inference.kv_cache import CURRENT, SECOND_PLACE_MIN
from inference.loader import load_model
from tests import checkpoints as ck


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return load_model(ck.make_gpt_bigcode(tmp_path_factory.mktemp("second") / "m", seed=3), dtype="float32",
                      compile_decode=False)


def _prompts(lm):
    ids = lm.encode(ck.CODE_TEXT * 4)
    n = SECOND_PLACE_MIN + 40
    assert len(ids) >= 2 * n
    here, there = ids[:n], ids[n:2 * n]
    assert here[0] != there[0]
    return here, there


def test_jump_away_and_back_reuses_the_first_place(lm):
    here, there = _prompts(lm)
    eng = Engine(lm)
    params = GenerationParams(max_new_tokens=2)
    first = eng.generate(here, params, session="doc")
    away = eng.generate(there, params, session="doc")
    back = eng.generate(here + first.token_ids[:1], params, session="doc")
    assert first.reused_tokens == 0 and away.reused_tokens == 0
    assert back.reused_tokens == len(here)  # the first place was kept, not overwritten
    assert back.token_ids[:1] == eng.generate(here + first.token_ids[:1], params).token_ids[:1]  # same as a fresh run
    again = eng.generate(there, params, session="doc")  # and the other way round
    assert again.reused_tokens == len(there) - 1
    assert eng.kv_stats()["documents"] == 1 and eng.kv_stats()["caches"] == 2
    eng.close_session("doc")
    assert eng.kv_stats() == {"bytes": 0, "documents": 0, "caches": 0}


def test_typing_on_does_not_make_a_second_place(lm):
    here, _ = _prompts(lm)
    eng = Engine(lm)
    params = GenerationParams(max_new_tokens=1)
    eng.generate(here, params, session="doc")
    eng.generate(here + here[:3], params, session="doc")  # the prompt grows: same cache
    eng.generate(here[:-2] + here[:2], params, session="doc")  # a small edit near the end: same cache
    assert eng.kv_stats()["caches"] == 1


def test_second_places_are_evicted_under_the_budget(lm):
    here, there = _prompts(lm)
    eng = Engine(lm)
    params = GenerationParams(max_new_tokens=1)
    eng.generate(here, params, session="doc")
    one = eng.cache_bytes()
    eng.caches.budget_bytes = one  # room for one cache only
    res = eng.generate(there, params, session="doc")
    assert res.reused_tokens == 0 and eng.kv_stats()["caches"] == 1 and eng.cache_bytes() <= one


def test_the_second_place_serves_when_the_current_cache_alone_was_evicted(lm):
    here, there = _prompts(lm)
    eng = Engine(lm)
    params = GenerationParams(max_new_tokens=1)
    eng.generate(here, params, session="doc")
    eng.generate(there, params, session="doc")  # `here` moves to second place
    del eng.caches._lru[("doc", CURRENT)]  # the state least-recently-used eviction may leave
    back = eng.generate(here, params, session="doc")
    assert back.reused_tokens == len(here) - 1
    assert eng.kv_stats()["caches"] == 1
