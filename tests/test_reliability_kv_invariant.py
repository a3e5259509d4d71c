"""The central invariant, property-tested on tiny random checkpoints of every family: whatever the
sequence of edits, documents, evictions and cancellations, the greedy completion served from a
document's reused KV state equals a fresh engine's completion of the same prompt."""

from __future__ import annotations

import contextlib
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inference.engine
from inference.engine import Engine, GenerationParams
from inference.kv_cache import GROW
from inference.loader import load_model
from tests.checkpoints import make_codegen, make_codegen2, make_gpt_bigcode, make_xglm
from tests.compiled import assert_ran_compiled
from tests.reliability_text_model import concrete_change, edit_scripts, texts

BUILDERS = {
    "gpt_bigcode": lambda d: make_gpt_bigcode(d),
    "gpt_bigcode_mha": lambda d: make_gpt_bigcode(d, multi_query=False),
    "santacoder": lambda d: make_gpt_bigcode(d, fim_style="santacoder"),
    "codegen": lambda d: make_codegen(d),
    "codegen2": lambda d: make_codegen2(d),
    "xglm": lambda d: make_xglm(d),
}
REAL_PREFILL_CHUNK = inference.engine.PREFILL_CHUNK


pytestmark = pytest.mark.usefixtures("one_torch_thread")


KIND = {"gpt_bigcode": "gpt_bigcode_mqa"}  # this file's family names -> tests.compiled.KINDS


@pytest.fixture(scope="module")
def models(family_models):
    """The compiled CPU build users run (shared with the parity tests); a fallback to eager fails."""
    used = set()

    def get(name):
        used.add(KIND.get(name, name))
        return family_models.compiled(KIND.get(name, name))

    yield get
    for kind in used:
        assert_ran_compiled(family_models.compiled(kind))


def prompt_for(lm, text: str, cursor: float, layout: str) -> list[int]:
    """The prompt the server would build: FIM (PSM or SPM) around a cursor, or the prefix alone."""
    cut = int(cursor * len(text))
    prefix, suffix = "# " + text[:cut], text[cut:]
    if lm.fim is None or layout == "prefix":
        return lm.encode(prefix)
    pre, suf = lm.encode_plain(prefix), lm.encode_plain(suffix)
    if layout == "spm" and lm.fim.supports_spm:
        return lm.fim.spm(pre, suf)
    return lm.fim.psm(pre, suf)


steps = st.lists(st.tuples(
    st.integers(0, 2),                          # which document
    edit_scripts(max_edits=3),                  # edits to it (its initial text used only on first touch)
    st.floats(0, 1),                            # cursor
    st.sampled_from(["psm", "spm", "prefix"]),  # prompt layout
    # cancel after this many tokens (0: before the start), or ("forward", n): after n forward calls,
    # i.e. between prefill chunks
    st.sampled_from([None, None, None, 0, 1, 3, ("forward", 1), ("forward", 2)]),
    st.booleans(),                              # close the document afterwards
), min_size=1, max_size=6)


def check_family(lm, fresh: Engine, budget_sessions: float, script) -> None:
    bytes_per_session = lm.kv_spec().bytes_per_position() * GROW
    budget = int(bytes_per_session * budget_sessions)
    eng = Engine(lm, kv_budget_bytes=budget)
    docs: dict[int, str] = {}
    for doc, (initial, edits), cursor, layout, cancel_after, close in script:
        text = docs.get(doc, initial)
        for edit in edits:
            text = concrete_change(text, edit, "utf-32")[1]
        docs[doc] = text
        prompt = prompt_for(lm, text, cursor, layout)
        params = GenerationParams(max_new_tokens=6, stop_token_ids=tuple(lm.fim.stop_token_ids) if lm.fim else ())
        expected = fresh.generate(prompt, params).token_ids

        cancel, seen = threading.Event(), []
        if cancel_after == 0:
            cancel.set()
        by_tokens = cancel_after if isinstance(cancel_after, int) else None

        def on_token(token, seen=seen, cancel=cancel, limit=by_tokens):
            seen.append(token)
            if limit is not None and len(seen) >= limit:
                cancel.set()

        session = f"doc{doc}"
        model, forward, calls = lm.model, lm.model.forward, []
        if isinstance(cancel_after, tuple):
            def counting(*a, **k):
                calls.append(1)
                if len(calls) >= cancel_after[1]:
                    cancel.set()
                return forward(*a, **k)

            model.forward = counting
        try:
            got = eng.generate(prompt, params, session=session, cancel=cancel, on_token=on_token)
        finally:
            model.forward = forward
        if got.stop_reason == "cancelled":
            assert got.token_ids == expected[:len(got.token_ids)]  # a cut-short run is a prefix of the truth
        else:
            assert got.token_ids == expected, (lm.family, layout, text)
        held = eng.session_tokens(session)
        assert held == (prompt + got.token_ids)[:len(held)]  # the cache holds exactly those ids
        assert eng.cache_bytes() <= budget  # evictions keep the total under the budget
        if close:
            eng.close_session(session)
            docs.pop(doc)
    # after everything, each document's state still serves exactly what a fresh engine would
    for doc, text in docs.items():
        prompt = prompt_for(lm, text, 1.0, "psm")
        params = GenerationParams(max_new_tokens=6)
        assert eng.generate(prompt, params, session=f"doc{doc}").token_ids == fresh.generate(prompt, params).token_ids


@pytest.mark.parametrize("family", list(BUILDERS))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=steps, budget_sessions=st.sampled_from([0.5, 1.0, 1.5, 100.0]),
       prefill_chunk=st.sampled_from([512, 512, 5, 16]))
def test_reused_kv_state_gives_the_fresh_engines_greedy_completion(models, family, script, budget_sessions,
                                                                   prefill_chunk):
    """prefill_chunk: the engine's prefill chunk, made small so prompts are prefilled in pieces and
    a cancel can land between them (the fresh engine always uses the real one)."""
    lm = models(family)
    with prefill_chunk_of(prefill_chunk):
        check_family(lm, FreshEngine(lm), budget_sessions, script)


@contextlib.contextmanager
def prefill_chunk_of(n: int):
    import inference.engine as engine_module

    real = engine_module.PREFILL_CHUNK
    engine_module.PREFILL_CHUNK = n
    try:
        yield real
    finally:
        engine_module.PREFILL_CHUNK = real


class FreshEngine(Engine):
    """The reference: no session, and the engine's real prefill chunk whatever the test set."""

    def generate(self, prompt_ids, params, session=None, cancel=None, on_token=None):
        with prefill_chunk_of(REAL_PREFILL_CHUNK):
            return super().generate(prompt_ids, params)


@pytest.mark.parametrize("family", ["gpt_bigcode", "codegen", "xglm"])
def test_typing_one_character_at_a_time_with_evictions_between_keystrokes(models, family):
    """The server's pattern: append a character, complete; another document evicts this one's
    state under a budget of one session, every third keystroke."""
    lm = models(family)
    fresh = Engine(lm)
    eng = Engine(lm, kv_budget_bytes=lm.kv_spec().bytes_per_position() * GROW)
    text, reused = "def add(a, b):\n    ", 0
    params = GenerationParams(max_new_tokens=4)
    for i, ch in enumerate("return a + b  # 中文 😀"):
        text += ch
        prompt = lm.encode(text)
        got = eng.generate(prompt, params, session="typed")
        assert got.token_ids == fresh.generate(prompt, params).token_ids
        reused += got.reused_tokens
        if i % 3 == 2:
            other = lm.encode("x = 1\n" * 5)
            eng.generate(other, params, session="other")
            assert eng.session_tokens("typed") == []  # evicted
    assert reused > 0  # keystrokes between evictions did reuse the cache



@pytest.mark.parametrize("family", ["gpt_bigcode_mha", "codegen"])
def test_through_the_server_every_served_generation_equals_a_fresh_engines(family, tmp_path, monkeypatch):
    """The invariant end to end: an in-process server, five documents typed into without waiting
    for answers (so generations are superseded mid-way), a 1 MiB KV budget (evictions). Every
    generation the worker ran is checked against a fresh engine on the same prompt ids. The server
    compiles its decode, as a user's does (the suite's other servers run eager: see conftest)."""
    import dataclasses

    DOCS = 5
    monkeypatch.delenv("INFILL_LS_NO_COMPILE", raising=False)
    monkeypatch.setenv("INFILL_LS_COMPILE_MIN_MB", "0")  # the tiny models compile too, as a real one would

    from tests.reliability_inprocess import InProcessServer

    folder = BUILDERS[family](tmp_path / family)
    ips = InProcessServer()
    client = ips.client
    records = []
    try:
        client.initialize({"model": str(folder), "kvBudgetMb": 1, "maxNewTokensSingleLine": 6,
                           "maxNewTokensMultiLine": 6, "requestTimeoutMs": 5000})
        worker = ips.server.worker  # made at initialize, for the backend the options name
        run_job = worker._do_generate

        def recording(job):
            result = run_job(job)
            records.append((list(job.prompt_ids), job.params, result))
            return result

        worker._do_generate = recording
        assert client.wait_model()["model"]["status"] == "ready"
        # the server serves eagerly while it compiles in the background; the scenario runs once the
        # compiled decode is swapped in (tests/test_startup.py covers the swap itself)
        worker.compiled_swap.result(timeout=300)
        assert client.stats()["model"]["decode"] == "compiled"
        docs = {f"file:///w/d{i}.py": [f"def f{i}(a, b):\n    x = a * {i}\n    ", 1] for i in range(DOCS)}
        for uri, (text, _) in docs.items():
            client.open(uri, text)
        pending = []
        for step, ch in enumerate("return x + b  # 中文 😀\n    y = f(x)"):
            uri = list(docs)[step % DOCS]
            text, version = docs[uri]
            line, col = text.count("\n"), len(text.split("\n")[-1].encode("utf-16-le")) // 2
            client.change(uri, version + 1, [{"range": {"start": {"line": line, "character": col},
                                                        "end": {"line": line, "character": col}}, "text": ch}])
            text += ch
            docs[uri] = [text, version + 1]
            pending.append(client.inline_async(uri, text.count("\n"), len(text.split("\n")[-1].encode("utf-16-le")) // 2))
        for rid in pending:
            answer = client.wait_response(rid, 30)
            assert "result" in answer or answer["error"]["code"] == -32800, answer  # served or cancelled
        lm = worker.lm
        s = client.stats()
    finally:
        ips.close()
    fresh = Engine(lm)
    served = [(p, params, r) for p, params, r in records if r is not None]
    assert len(served) >= 5 and s["errors"] == 0
    assert s["kvSessions"] < DOCS  # 256 KiB per document under a 1 MiB budget: some were evicted
    for prompt, params, result in served:
        expected = fresh.generate(prompt, dataclasses.replace(params, time_limit_s=None)).token_ids
        if result.stop_reason in ("cancelled", "time"):  # cut short: superseded, or stopped at a block end
            assert result.token_ids == expected[:len(result.token_ids)]
        else:
            assert result.token_ids == expected
    assert any(r.reused_tokens > 0 for _, _, r in served)  # the per-document state was really reused
    assert_ran_compiled(lm)
