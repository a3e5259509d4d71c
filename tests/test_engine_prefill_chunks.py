"""Chunked prefill: same tokens as one forward; a cancelled or timed-out long prefill keeps what it
computed in the session, and the next request for that session goes on from there."""

from __future__ import annotations

import threading

import pytest

from inference import engine as engine_module
from inference.engine import Engine, GenerationParams
from inference.loader import load_model
from tests import checkpoints as ck


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return load_model(ck.make_gpt_bigcode(tmp_path_factory.mktemp("chunks") / "m", seed=5))


def prompt_ids(lm) -> list[int]:
    return lm.encode(ck.CODE_TEXT[:400])


def test_chunked_prefill_matches_one_forward(lm, monkeypatch):
    ids = prompt_ids(lm)
    assert len(ids) > 20
    one = Engine(lm).generate(ids, GenerationParams(max_new_tokens=12))
    monkeypatch.setattr(engine_module, "PREFILL_CHUNK", 7)
    chunked = Engine(lm).generate(ids, GenerationParams(max_new_tokens=12))
    assert chunked.token_ids == one.token_ids and chunked.prefill_tokens == len(ids)
    eng = Engine(lm)
    eng.generate(ids, GenerationParams(max_new_tokens=0), session="s")
    assert eng.session_tokens("s") == ids


def test_timed_out_prefill_keeps_its_chunks_for_the_next_request(lm, monkeypatch):
    monkeypatch.setattr(engine_module, "PREFILL_CHUNK", 8)
    ids = prompt_ids(lm)
    eng = Engine(lm)
    res = eng.generate(ids, GenerationParams(max_new_tokens=4, time_limit_s=0.0), session="doc")
    assert res.stop_reason == "time" and res.token_ids == []
    assert eng.session_tokens("doc") == ids[:8]  # the first chunk was computed and kept
    nxt = eng.generate(ids, GenerationParams(max_new_tokens=4), session="doc")
    assert nxt.reused_tokens == 8 and nxt.prefill_tokens == len(ids) - 8
    assert nxt.token_ids == Engine(lm).generate(ids, GenerationParams(max_new_tokens=4)).token_ids


def test_cancel_during_prefill_stops_between_chunks(lm, monkeypatch):
    monkeypatch.setattr(engine_module, "PREFILL_CHUNK", 8)
    ids = prompt_ids(lm)
    eng = Engine(lm)
    cancel = threading.Event()
    forward = lm.model.forward
    calls = []

    def counting_forward(x, kv):
        calls.append(len(x))
        if len(calls) == 2:
            cancel.set()  # set from "another thread" while the second chunk runs
        return forward(x, kv)

    monkeypatch.setattr(lm.model, "forward", counting_forward)
    res = eng.generate(ids, GenerationParams(max_new_tokens=4), session="doc", cancel=cancel)
    assert res.stop_reason == "cancelled" and res.token_ids == []
    assert calls == [8, 8] and eng.session_tokens("doc") == ids[:16]


def test_long_prefill_runs_on_prefill_threads_and_decode_on_the_others(lm, monkeypatch):
    import torch

    ids = prompt_ids(lm)
    assert len(ids) >= engine_module.LONG_PREFILL
    seen: list[tuple[int, int]] = []  # (tokens in the forward, torch threads during it)
    forward = lm.model.forward

    def recording(x, kv):
        seen.append((x.shape[0], torch.get_num_threads()))
        return forward(x, kv)

    monkeypatch.setattr(lm.model, "forward", recording)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        eng = Engine(lm)
        eng.prefill_threads = 2
        plain = Engine(lm).generate(ids, GenerationParams(max_new_tokens=3))
        seen.clear()
        res = eng.generate(ids, GenerationParams(max_new_tokens=3), session="d")
        assert res.token_ids == plain.token_ids
        assert seen[0] == (len(ids), 2) and all(s == (1, 1) for s in seen[1:])
        assert torch.get_num_threads() == 1
        seen.clear()
        eng.generate(ids + ids[:5], GenerationParams(max_new_tokens=1), session="d")  # a short prefill
        assert seen[0][1] == 1
    finally:
        torch.set_num_threads(before)
