"""The completion pipeline as named stages, each callable on its own:

    resolve_context -> typing_through -> build_prompt -> cached -> run_model -> shape_result

`suggest` answers a request with the first stage that can answer (the suggestion being typed
through, then an identical prompt's result, then the model). `warm` is the prefetch where the cursor
came to rest (lsp_server.prefetch): the same stages at the lowest priority, answering nobody; what it
leaves behind is the document's KV cache filled with that place's prompt and its suggestion kept for
typing through. When the result is already known it runs a prefill only (no decoding). Its figures
are counted apart (`prefetch.*`).

The model is reached only through the engine boundary (inference.api): a GenerationJob in, a
GenerationResult of token ids out. Every wait is bounded; a failure anywhere gives an empty answer
and a log line, never a crash.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from inference.api import GenerationJob, GenerationParams, GenerationResult
from lsp_server.config import Config
from lsp_server.context import CursorContext
from lsp_server.documents import window_chars
from lsp_server.postprocess import Suggestion, generation_can_stop, shape
from lsp_server.prompt import Budget, Prompt, PromptBuilder

SAMPLING_TEMPERATURE = 0.8  # for candidates after the first when `temperature` is 0
WAIT_SLACK_S = 1.0
LONG_LINE_MAX_NEW_TOKENS = 12  # a suggestion inside a line longer than the context window
BACKGROUND_TIME_LIMIT_S = 60.0  # a prefetch may take a long file's whole prefill: any request cancels it


@dataclass
class Request:
    uri: str
    line: int
    character: int
    invoked: bool = False  # explicit gesture: several candidates
    selected: tuple[int, int, int, int, str] | None = None  # selectedCompletionInfo: range + text


@dataclass
class Answer:
    ctx: CursorContext
    offset: int
    suggestions: list[Suggestion]
    source: str  # "model" | "typingThrough" | "cache"
    request_id: int


@dataclass(frozen=True)
class Place:
    """Where a request asks: its document (the object, to see whether it closed meanwhile), the
    cursor offset and the context there."""
    uri: str
    doc: object
    offset: int
    ctx: CursorContext


@dataclass(frozen=True)
class Plan:
    """What a model run will do: the prompt, how many tokens and candidates, and whether its results
    go to the result cache (not when sampling or for several candidates)."""
    prompt: Prompt
    prompt_ms: float
    max_new: int
    candidates: int
    multi_line: bool
    cacheable: bool


# -- the stages

def resolve_context(server, req: Request, what: str = "completion") -> Place | None:
    """Stage 1: the open document, the cursor offset and the context there; None (counted as
    invalid, logged) for a closed document or a position outside it, or a language turned off."""
    doc = server.docs.get(req.uri)
    if doc is None:
        server.stats.count("invalid")
        server.client_log.log("debug", f"{what} for a document that is not open: {req.uri}")
        return None
    if not server.config.language_enabled(doc.language_id):
        return None
    offset = doc.offset_at(req.line, req.character, server.encoding)
    if offset is None:
        server.stats.count("invalid")
        server.client_log.log("debug", f"{what} at a position outside the document: {req.uri} "
                                       f"{req.line}:{req.character}")
        return None
    replace = None
    if req.selected is not None:
        sl, sc, el, ec, text = req.selected
        start = doc.offset_at(sl, sc, server.encoding)
        end = doc.offset_at(el, ec, server.encoding)
        if start is not None and end is not None and start <= offset:
            replace = (start, end, text)
    ctx = doc.context_at(offset, doc.language_id, req.uri, replace,
                         window_chars(server.config.context_tokens, server.model.info))
    return Place(req.uri, doc, offset, ctx)


def typing_through(server, place: Place) -> list[Suggestion] | None:
    """Stage 2a: the rest of the suggestion just shown, when the user typed its start."""
    return server.typing.continue_from(place.uri, place.ctx) or None


def build_prompt(cfg: Config, builder: PromptBuilder, ctx: CursorContext, candidates: int = 1) -> Plan:
    """Stage 3: the prompt for `ctx` within the configured budget, and what the run will do."""
    max_new = cfg.max_new_tokens(ctx.multi_line)
    if ctx.in_long_line:  # minified code has no line end to stop at: one expression, not a screenful
        max_new = min(max_new, LONG_LINE_MAX_NEW_TOKENS)
    reserve = max(cfg.max_new_tokens_multi_line, cfg.max_new_tokens_single_line)
    budget = Budget.for_model(builder.info.max_context, cfg.context_tokens, reserve, cfg.suffix_fraction,
                              builder.layout)
    t0 = time.perf_counter()
    prompt = builder.build(ctx, budget)
    prompt_ms = (time.perf_counter() - t0) * 1000
    return Plan(prompt, prompt_ms, max_new, candidates, ctx.multi_line, cfg.temperature == 0 and candidates == 1)


def cached(server, plan: Plan) -> list[Suggestion] | None:
    """Stage 2b: the suggestions an identical prompt got recently (None: not seen, or not cacheable)."""
    return server.cache.get(_cache_key(server, plan)) if plan.cacheable else None


def _cache_key(server, plan: Plan) -> tuple:
    return server.cache.key(plan.prompt.ids, server.model.generation, plan.max_new, plan.multi_line,
                            server.config.top_p)


async def run_model(server, ticket, ctx: CursorContext, plan: Plan, temperature: float, max_new: int,
                    time_limit_s: float | None = None) -> tuple[GenerationResult, dict] | None:
    """Stage 4: one model run for `ticket` (max_new 0: a prefill only); (result, timings), or None
    when cancelled, timed out or failed. The time limit is the request timeout unless given."""
    prompt = plan.prompt
    limit_s = time_limit_s or server.config.request_timeout_ms / 1000
    job = generation_job(server.config, server.model.builder, ctx, plan, temperature, max_new, limit_s,
                         session=ticket.uri, cancel=ticket.new_job_event(),
                         model_generation=server.model.worker_generation)
    future = server.worker.generate(job) if max_new > 0 else server.worker.prefill(job)
    result = await _wait(server, ticket.uri, job, future, limit_s + WAIT_SLACK_S)
    if result is None or (result.stop_reason == "cancelled" and not job.stopped_early):
        return None
    timings = {"prefill_tokens": result.prefill_tokens, "reused_tokens": result.reused_tokens,
               "prompt_tokens": result.prompt_tokens, "prefill_ms": round(result.prefill_ms, 2),
               "decode_ms": round(result.decode_ms, 2), "tokens": len(result.token_ids),
               "stop": "block_end" if job.stopped_early else result.stop_reason,
               "prompt_ms": round(plan.prompt_ms, 2), "prompt_layout": prompt.layout,
               "prompt_prefix_tokens": prompt.prefix_tokens, "prompt_suffix_tokens": prompt.suffix_tokens}
    return result, timings


def generation_job(cfg: Config, builder: PromptBuilder, ctx: CursorContext, plan: Plan, temperature: float,
                   max_new: int, time_limit_s: float | None, **job) -> GenerationJob:
    """The job for one model run of `plan`: the configured sampling, the model's stop ids, token
    healing, and an early stop judged on the text the user will see (`PromptBuilder.shown_text`)."""
    prompt = plan.prompt
    params = GenerationParams(max_new_tokens=max_new, temperature=temperature, top_p=cfg.top_p,
                              stop_token_ids=builder.stop_ids, first_token_ids=prompt.first_token_ids,
                              time_limit_s=time_limit_s)
    return GenerationJob(prompt.ids, params, stop_check=lambda ids: generation_can_stop(ctx, builder.shown_text(prompt, ids)),
                         **job)


def shape_result(builder: PromptBuilder, ctx: CursorContext, prompt: Prompt, result: GenerationResult) -> Suggestion:
    """Stage 5: the generated ids as the suggestion to show (the text the stop check judged, shaped)."""
    return shape(ctx, builder.shown_text(prompt, result.token_ids))


# -- the pipelines

async def suggest(server, req: Request) -> Answer | None:
    """A completion request: the first stage that can answer does."""
    t0 = time.perf_counter()
    server.stats.count("requests")
    place = resolve_context(server, req, "completion")
    if place is None:
        return None
    if not server.model.ready:
        server.stats.count("notReady")
        return None
    request_id = server.next_request_id()
    rest = typing_through(server, place)
    if rest:
        server.typing.remember(place.uri, place.ctx, rest)
        return _answered(server, place, rest, "typingThrough", request_id, t0)
    plan = build_prompt(server.config, server.model.builder, place.ctx,
                        server.config.num_candidates if req.invoked else 1)
    hit = cached(server, plan)
    if hit is not None:
        server.typing.remember(place.uri, place.ctx, hit)
        return _answered(server, place, list(hit), "cache", request_id, t0)
    ticket, runs = server.scheduler.begin(place.uri), []
    try:
        suggestions = await _model_answers(server, ticket, place, plan, request_id, "completion", runs)
    except asyncio.CancelledError:
        ticket.cancel_jobs()
        server.stats.count("cancelled")
        raise
    finally:
        server.scheduler.end(ticket)
    if suggestions is None:
        server.stats.count("superseded")
        return None
    if server.docs.get(place.uri) is place.doc:  # not closed while the model ran (it would hold its text)
        server.typing.remember(place.uri, place.ctx, suggestions)
    return _answered(server, place, suggestions, "model", request_id, t0, runs)


async def warm(server, req: Request) -> Answer | None:
    """A prefetch: the same stages in the background, at the lowest priority (None when skipped or
    cancelled). A known result needs only its prompt in the document's KV cache: a prefill."""
    t0 = time.perf_counter()
    stats = server.stats
    stats.count("prefetch.received")
    place = resolve_context(server, req, "prefetch")
    if place is None:
        return None
    if not server.model.ready or typing_through(server, place):
        stats.count("prefetch.skipped")
        return None
    request_id = server.next_request_id()
    plan = build_prompt(server.config, server.model.builder, place.ctx)
    hit = cached(server, plan)
    if hit:
        server.typing.remember(place.uri, place.ctx, hit)
    ticket = server.scheduler.begin_background(place.uri)
    if ticket is None:  # a request is running: a background run would only delay it
        stats.count("prefetch.skipped")
        return None
    runs: list[dict] = []
    try:
        suggestions = await _model_answers(server, ticket, place, plan, request_id, "prefetch", runs,
                                           prefill_only=hit is not None)
    except asyncio.CancelledError:
        ticket.cancel_jobs()
        stats.count("prefetch.cancelled")
        raise
    finally:
        server.scheduler.end(ticket)
    if suggestions is None:
        stats.count("prefetch.cancelled")
        return None
    if suggestions and server.docs.get(place.uri) is place.doc:  # nothing found: what is shown stays
        server.typing.remember(place.uri, place.ctx, suggestions)
    _record(server, "prefetch", request_id, "model", (time.perf_counter() - t0) * 1000, suggestions, runs)
    return Answer(place.ctx, place.offset, suggestions, "model", request_id)


async def _model_answers(server, ticket, place: Place, plan: Plan, request_id: int, what: str,
                         runs: list[dict], prefill_only: bool = False) -> list[Suggestion] | None:
    """Stages 4 and 5 for each candidate once the scheduler admits `ticket` (each run's timings
    appended to `runs`); None when cancelled before anything was found. A full set of results is
    kept in the result cache."""
    background = what == "prefetch"
    if not await server.scheduler.admit(ticket):
        return None
    cfg, builder = server.config, server.model.builder
    suggestions: list[Suggestion] = []
    for i in range(plan.candidates):
        temperature = cfg.temperature if i == 0 else (cfg.temperature or SAMPLING_TEMPERATURE)
        ran = await run_model(server, ticket, place.ctx, plan, temperature, 0 if prefill_only else plan.max_new,
                              BACKGROUND_TIME_LIMIT_S if background else None)
        if ran is None:
            break
        result, timings = ran
        runs.append(timings)
        if background:
            server.stats.count("prefetch.modelRuns")
        else:
            server.stats.model_run(timings)
        s = shape_result(builder, place.ctx, plan.prompt, result)
        if s.text and all(s.text != other.text for other in suggestions):
            suggestions.append(s)
        _log_model_run(server, what, request_id, i, timings, plan.prompt, result, s)
    else:
        if plan.cacheable and not prefill_only:
            server.cache.put(_cache_key(server, plan), list(suggestions))
    if ticket.cancel.is_set() and not suggestions:
        return None
    return suggestions


async def _wait(server, uri: str, job: GenerationJob, future, wait_s: float) -> GenerationResult | None:
    """The engine's answer to `job`, within `wait_s`; None (counted, logged) on a timeout or a failure."""
    try:
        result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), wait_s)
        server.engine_answered()
        return result
    except asyncio.TimeoutError:
        server.worker.cancel(job)
        server.stats.count("timeouts")
        server.client_log.log("warning", f"completion for {uri}: no answer from the model within "
                                         f"{wait_s:.1f} s; request dropped")
    except asyncio.CancelledError:
        server.worker.cancel(job)
        raise
    except Exception as e:  # noqa: BLE001 - an engine failure: this request is empty, the next works
        server.stats.count("errors")
        server.client_log.log("error", f"completion for {uri} failed in the model: {type(e).__name__}: {e}")
        server.engine_failed(e)
    return None


def _answered(server, place: Place, suggestions: list[Suggestion], source: str, request_id: int,
              t0: float, runs: list[dict] = ()) -> Answer:
    total_ms = (time.perf_counter() - t0) * 1000
    server.stats.served(source, total_ms, bool(suggestions))
    _record(server, "completion", request_id, source, total_ms, suggestions, runs)
    return Answer(place.ctx, place.offset, suggestions, source, request_id)


LOG_SOURCE = {"model": "model", "typingThrough": "typing-through", "cache": "cache"}


def _record(server, what: str, request_id: int, source: str, total_ms: float, suggestions: list,
            runs) -> None:
    """The request's log line and its structured record (lsp_server.stats)."""
    server.stats.request({"what": what, "id": request_id, "source": source, "totalMs": round(total_ms, 2),
                          "suggestions": len(suggestions), "runs": list(runs)})
    tail = f" suggestions={len(suggestions)}" if source == "model" else ""
    server.client_log.log("info", f"{what} #{request_id} {LOG_SOURCE[source]} total_ms={total_ms:.1f}{tail}")


def _log_model_run(server, what, request_id, index, timings, prompt, result, shaped) -> None:
    log = server.client_log
    if not log.enabled("info"):
        return
    fields = " ".join(f"{k}={v}" for k, v in timings.items())
    line = f"{what} #{request_id}.{index} {fields}"
    if log.text_allowed:
        builder = server.model.builder
        line += f" prompt={builder.decode(prompt.ids)!r} heal={prompt.heal!r} raw={result.text!r} shown={shaped.text!r}"
    log.log("info", line)
