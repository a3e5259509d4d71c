"""The completion pipeline's stages, each on its own, over a scripted engine that implements the
engine boundary (inference.api.EngineClient); and the boundary itself: the editor side imports
nothing of inference/ but inference.api, which loads no torch."""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path

import pytest

from inference.api import GenerationResult, ModelInfo
from inference.loader import load_model
from lsp_server import completion
from lsp_server.postprocess import generation_can_stop
from lsp_server.prompt import PromptBuilder
from lsp_server.server import InfillServer
from tests.checkpoints import make_gpt_bigcode, make_xglm

ROOT = Path(__file__).resolve().parent.parent


class ScriptedEngine:
    """An EngineClient whose every run 'generates' `self.reply` (token ids); it records the jobs."""

    def __init__(self) -> None:
        self.model_generation = 1
        self.reply: list[int] = []
        self.jobs: list = []
        self.prefills: list = []

    def _answer(self, job) -> Future:
        fut: Future = Future()
        fut.set_result(GenerationResult(list(self.reply) if job.params.max_new_tokens else [], "engine text",
                                        "max_tokens", len(job.prompt_ids), 0, len(job.prompt_ids), 1.0, 2.0))
        return fut

    def generate(self, job) -> Future:
        self.jobs.append(job)
        return self._answer(job)

    def prefill(self, job) -> Future:
        self.prefills.append(job)
        return self._answer(job)

    def cancel(self, job) -> None:
        job.cancel.set()

    def close_session(self, session) -> Future:
        fut: Future = Future()
        fut.set_result(None)
        return fut

    def snapshot(self) -> dict:
        return {"kvCacheBytes": 0, "kvSessions": 0}

    def shutdown(self, timeout: float = 2.0) -> None:
        pass


@pytest.fixture(scope="module")
def starcoder_info(tmp_path_factory) -> ModelInfo:
    return load_model(make_gpt_bigcode(tmp_path_factory.mktemp("st") / "sc", n_positions=512)).info()


@pytest.fixture(scope="module")
def xglm(tmp_path_factory):
    return load_model(make_xglm(tmp_path_factory.mktemp("st") / "xglm"))


def ready_server(info: ModelInfo) -> InfillServer:
    server = InfillServer(ScriptedEngine())
    state = server.model
    state.info, state.builder, state.status, state.worker_generation = info, PromptBuilder(info), "ready", 1
    return server


def test_lsp_server_imports_only_the_engine_api_and_that_loads_no_torch():
    # lsp_server/cli.py is the `infill-ls` entry point that dispatches to either side (`serve` or the
    # engine's own `complete`/`convert`), not part of the editor side
    for path in sorted(p for p in (ROOT / "lsp_server").rglob("*.py") if p.name != "cli.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            for name in names:
                if name == "inference" or name.startswith("inference."):
                    assert name == "inference.api", f"{path.relative_to(ROOT)} imports {name}"
    code = ("import sys, lsp_server.server, lsp_server.completion, lsp_server.prefetch, lsp_server.model_state; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('inference')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['inference', 'inference.api', 'inference.fim']"


def test_resolve_context_reads_the_open_document_and_refuses_other_places(starcoder_info):
    server = ready_server(starcoder_info)
    server.docs.open("file:///a.py", "def f(x):\n    return x\n", "python", 1)
    place = completion.resolve_context(server, completion.Request("file:///a.py", 1, 4))
    assert place.offset == 14 and place.ctx.prefix == "def f(x):\n    " and place.ctx.suffix == "return x\n"
    assert completion.resolve_context(server, completion.Request("file:///a.py", 9, 0)) is None
    assert completion.resolve_context(server, completion.Request("file:///b.py", 0, 0)) is None
    assert server.stats.counts["invalid"] == 2


def test_build_prompt_and_the_result_cache_stage(starcoder_info):
    server = ready_server(starcoder_info)
    server.docs.open("file:///a.py", "def f(x):\n    return x\n", "python", 1)
    ctx = completion.resolve_context(server, completion.Request("file:///a.py", 1, 4)).ctx
    plan = completion.build_prompt(server.config, server.model.builder, ctx)
    fim = starcoder_info.fim
    assert plan.prompt.layout == "spm" and plan.prompt.ids[0] == fim.prefix_token and fim.middle_tokens[0] in plan.prompt.ids
    assert plan.max_new == server.config.max_new_tokens(ctx.multi_line) and plan.cacheable
    assert completion.cached(server, plan) is None
    several = completion.build_prompt(server.config, server.model.builder, ctx, candidates=3)
    assert several.prompt.ids == plan.prompt.ids and not several.cacheable and completion.cached(server, several) is None


def test_suggest_runs_the_model_once_then_answers_from_the_cache_and_warm_prefills_only(
        starcoder_info, tmp_path, monkeypatch):
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("INFILL_LS_TRACE", str(trace))
    server = ready_server(starcoder_info)
    engine: ScriptedEngine = server.worker
    builder = server.model.builder
    server.docs.open("file:///a.py", "def f(x):\n    return \n", "python", 1)
    engine.reply = builder._encode("x + 1")
    req = completion.Request("file:///a.py", 1, 11)
    first = asyncio.run(completion.suggest(server, req))
    assert first.source == "model" and [s.text for s in first.suggestions] == ["x + 1"]
    job = engine.jobs[-1]
    assert set(starcoder_info.stop_ids) <= set(job.params.stop_token_ids) and job.session == "file:///a.py"
    server.typing.forget("file:///a.py")
    second = asyncio.run(completion.suggest(server, req))
    assert second.source == "cache" and [s.text for s in second.suggestions] == ["x + 1"] and len(engine.jobs) == 1
    server.typing.forget("file:///a.py")
    warmed = asyncio.run(completion.warm(server, req))
    assert warmed is not None and engine.prefills and engine.prefills[-1].params.max_new_tokens == 0
    assert len(engine.jobs) == 1 and server.stats.counts["prefetch.modelRuns"] == 1
    # each answer's structured record, in the trace and in the stats answer
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [(r["what"], r["source"], r["suggestions"], len(r["runs"])) for r in records] == [
        ("completion", "model", 1, 1), ("completion", "cache", 1, 0), ("prefetch", "model", 0, 1)]
    run = records[0]["runs"][0]
    assert run["prompt_tokens"] == len(job.prompt_ids) and run["tokens"] == len(engine.reply) and run["decode_ms"] == 2.0
    assert records[2]["runs"][0]["tokens"] == 0 and server.stats_json()["recentRequests"] == records


def test_shown_text_is_what_the_stop_check_and_the_shaping_both_see_on_a_sentencepiece_model(xglm):
    builder = PromptBuilder(xglm.info())
    assert not builder.concatenative
    server = ready_server(xglm.info())
    server.docs.open("file:///x.py", "x = 1\ny =", "python", 1)
    place = completion.resolve_context(server, completion.Request("file:///x.py", 1, 3))
    plan = completion.build_prompt(server.config, server.model.builder, place.ctx)
    generated = xglm.encode_plain(" 2 + 3")
    shown = server.model.builder.shown_text(plan.prompt, generated)
    assert shown == " 2 + 3" and xglm.decode(generated) != shown  # the plain decode drops the space
    result = GenerationResult(generated, xglm.decode(generated), "max_tokens", 1, 0, 1, 1.0, 1.0)
    assert completion.shape_result(server.model.builder, place.ctx, plan.prompt, result).text == " 2 + 3"
    ticket = server.scheduler.begin(place.uri)
    ran = asyncio.run(completion.run_model(server, ticket, place.ctx, plan, 0.0, plan.max_new))
    assert ran is not None and ran[1]["prompt_layout"] == "prefix"
    stop_check = server.worker.jobs[-1].stop_check
    seen: list[str] = []
    real = server.model.builder.shown_text
    server.model.builder.shown_text = lambda prompt, ids: seen.append(real(prompt, ids)) or seen[-1]
    assert stop_check(generated) == generation_can_stop(place.ctx, shown) and seen == [" 2 + 3"]
