"""Issue 22: the server's model is ready with eager decode ops; the compiled ops and attention are
built on a thread of their own and swapped in between jobs, without changing a token."""

from __future__ import annotations

import threading

import pytest

import inference.blocks as blocks
import inference.worker as worker_module
from inference.acceleration import choose
from inference.api import GenerationJob, GenerationParams, ModelSpec
from inference.worker import InferenceWorker
from tests import checkpoints as ck

PROMPT = [5, 17, 33, 2, 91, 40, 7, 12, 64, 3, 18]


@pytest.fixture(scope="module")
def mha_model(tmp_path_factory):
    """Multi-head GPTBigCode: its decode steps use the compiled block ops and the compiled attention."""
    return ck.make_gpt_bigcode(tmp_path_factory.mktemp("startup") / "mha", multi_query=False, seed=11)


@pytest.fixture
def compiling(monkeypatch):
    monkeypatch.delenv("INFILL_LS_NO_COMPILE", raising=False)
    monkeypatch.setenv("INFILL_LS_COMPILE_MIN_MB", "0")  # the tiny test models compile too


@pytest.fixture
def gated(monkeypatch):
    """The background build waits for the returned event (so a test decides when it may finish)."""
    go = threading.Event()
    real = worker_module._prepare_compiled

    def waiting(lm):
        assert go.wait(120)
        real(lm)

    monkeypatch.setattr(worker_module, "_prepare_compiled", waiting)
    return go


def generate(w, n=12):
    return w.generate(GenerationJob(list(PROMPT), GenerationParams(max_new_tokens=n))).result(120)


def count_compiled_calls(ops, names):
    """Wrap every compiled graph of the named ops: {name: calls}."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        op = getattr(ops, name)
        for key, fn in list(op.compiled.items()):
            def counted(*ts, fn=fn, name=name):
                calls[name] += 1
                return fn(*ts)
            op.compiled[key] = counted
    return calls


def test_choose_says_compile_in_background_only_where_something_is_compiled():
    assert choose("cpu", __import__("torch").float32, env={}, compile_in_background=True).compile_in_background
    assert not choose("cpu", __import__("torch").float32, env={}).compile_in_background
    off = choose("cpu", __import__("torch").float32, env={"INFILL_LS_NO_COMPILE": "1"}, compile_in_background=True)
    assert not off.compile_in_background and not off.compiled_decode_ops


def test_ready_before_the_compile_and_the_swap_keeps_every_token(mha_model, compiling, gated):
    w = InferenceWorker()
    try:
        w.load(ModelSpec(str(mha_model), "cpu", "float32", 2**22)).result(120)
        ops = w.lm.model.decode_ops
        attention = w.lm.model.decode_attention
        # ready while the build is held back: the request below cannot have waited for a compile
        assert w.decode == "compiling" and not w.compiled_swap.done()
        before = generate(w)
        assert before.token_ids and not w.compiled_swap.done()
        assert all(not op.compiled and not op.pending for op in vars(ops).values())  # it ran eager
        assert not attention.compiled
        go = gated
        go.set()
        assert w.compiled_swap.result(300) is True
        assert w.decode == "compiled"
        assert ops.head.compiled and ops.attn_in.compiled and ops.sequential_out.compiled and attention.compiled
        calls = count_compiled_calls(ops, ("head", "attn_in", "sequential_out"))
        after = generate(w)
        assert after.token_ids == before.token_ids
        # every decode step ran the compiled graphs (the head also serves the prefill's last row, and
        # a step whose token ends the suggestion is not in token_ids)
        steps = calls["head"] - 1
        assert steps >= max(1, len(after.token_ids) - 1)
        assert calls["attn_in"] == calls["sequential_out"] == steps * w.lm.model.n_layers
    finally:
        w.shutdown()


def test_a_failed_background_compile_leaves_eager_for_good(mha_model, compiling, monkeypatch):
    def broken(self, args, tensors):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(blocks._CompiledOrEager, "_compile", broken)
    w = InferenceWorker()
    try:
        w.load(ModelSpec(str(mha_model), "cpu", "float32", 2**22)).result(120)
        reference = generate(w)
        assert w.compiled_swap.result(300) is False
        assert w.decode == "eager" and w.lm.model.decode_ops.head.compiled is None
        assert generate(w).token_ids == reference.token_ids
    finally:
        w.shutdown()


def test_no_compile_means_no_background_build(mha_model, monkeypatch):
    monkeypatch.setenv("INFILL_LS_NO_COMPILE", "1")
    w = InferenceWorker()
    try:
        w.load(ModelSpec(str(mha_model), "cpu", "float32", 2**22)).result(120)
        assert w.decode == "eager" and w.compiled_swap is None and w.lm.model.decode_ops is None
        assert generate(w).token_ids
    finally:
        w.shutdown()


def test_a_small_model_stays_eager_in_the_server_and_a_large_one_would_compile(mha_model, monkeypatch):
    """Compiling costs ~150 MB resident for a gain of ~2 ms a token on a 20 MB model: under
    INFILL_LS_COMPILE_MIN_MB of weights the server decodes eagerly and builds nothing."""
    from inference.worker import compile_pays, weight_bytes

    monkeypatch.delenv("INFILL_LS_NO_COMPILE", raising=False)
    monkeypatch.delenv("INFILL_LS_COMPILE_MIN_MB", raising=False)
    w = InferenceWorker()
    try:
        w.load(ModelSpec(str(mha_model), "cpu", "float32", 2**22)).result(120)
        assert w.decode == "eager" and w.compiled_swap is None
        assert generate(w).token_ids  # and it answers
        size = weight_bytes(w.lm.model)
        embedding = w.lm.model.wte.numel() * 4  # fp32
        assert embedding * 1.5 < size < 64 * 2**20  # more than the embedding: the layers are counted too
        assert not compile_pays(w.lm) and compile_pays(w.lm, {"INFILL_LS_COMPILE_MIN_MB": "0"})
        assert compile_pays(w.lm, {"INFILL_LS_COMPILE_MIN_MB": str(size / 2**20 * 0.99)})
    finally:
        w.shutdown()


@pytest.mark.parametrize("model", [None, "/nonexistent/infill-ls-model"], ids=["shipped", "missing"])
async def test_start_up_collects_young_garbage_only_and_the_first_load_restores_the_collector(model):
    """`infill-ls serve` starts collecting young objects only (full passes over what importing torch
    and the LSP stack makes were a fifth of the start-up); the first load's end, ready or failed,
    freezes start-up's objects out of later passes and restores CPython's thresholds."""
    from lsp_server.start_up_gc import PYTHON_THRESHOLDS
    from tests.server_harness import running_server, stats, wait_model

    async with running_server({"model": model} if model else None) as lsp:
        s = await wait_model(lsp, 120)
        assert s["model"]["status"] == ("ready" if model is None else "failed"), s["model"]
        after = (await stats(lsp))["garbageCollector"]
    assert after["thresholds"] == list(PYTHON_THRESHOLDS)
    assert after["frozenObjects"] > 50_000, after  # frozen: so start-up had changed it, and the load's end froze
