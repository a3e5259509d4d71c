"""The completion pipeline, from a request to shaped suggestions:
context -> typing-through -> prompt -> result cache -> scheduler -> worker -> shaping.

Every wait is bounded; a failure anywhere gives an empty answer and a log line, never a crash.

A background run (`background=True`: a prefetch where the cursor came to rest, lsp_server.prefetch)
goes through the same pipeline at the lowest priority and answers nobody: what it leaves behind is
the document's KV cache filled with the prompt at that place, and its suggestion kept for typing
through and in the result cache. Its figures are counted apart (`prefetch.*`), not as requests.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from inference.worker import GenerationJob
from lsp_server.context import CursorContext, context_at
from lsp_server.postprocess import Suggestion, generation_can_stop, shape
from lsp_server.prompt import Budget

SAMPLING_TEMPERATURE = 0.8  # for candidates after the first when `temperature` is 0
WAIT_SLACK_S = 1.0
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


async def suggest(server, req: Request, background: bool = False) -> Answer | None:
    t0 = time.perf_counter()
    stats = server.stats
    what = "prefetch" if background else "completion"
    stats.count("prefetch.received" if background else "requests")
    doc = server.docs.get(req.uri)
    if doc is None:
        stats.count("invalid")
        server.client_log.log("debug", f"{what} for a document that is not open: {req.uri}")
        return None
    cfg = server.config
    if not cfg.language_enabled(doc.language_id):
        return None
    offset = doc.offset_at(req.line, req.character, server.encoding)
    if offset is None:
        stats.count("invalid")
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
    ctx = context_at(doc.text, offset, doc.language_id, req.uri, replace)
    state = server.model
    if not state.ready:
        stats.count("prefetch.skipped" if background else "notReady")
        return None
    request_id = server.next_request_id()

    # 1. typing through the suggestion just shown
    rest = server.typing.continue_from(req.uri, ctx)
    if rest and background:
        stats.count("prefetch.skipped")
        return None
    if rest:
        server.typing.remember(req.uri, ctx, rest)
        total_ms = (time.perf_counter() - t0) * 1000
        stats.served("typingThrough", total_ms, True)
        server.client_log.log("info", f"completion #{request_id} typing-through total_ms={total_ms:.1f}")
        return Answer(ctx, offset, rest, "typingThrough", request_id)

    # 2. the prompt
    lm, builder = state.lm, state.builder
    multi_line = ctx.multi_line
    max_new = cfg.max_new_tokens(multi_line)
    reserve = max(cfg.max_new_tokens_multi_line, cfg.max_new_tokens_single_line)
    budget = Budget.for_model(lm.max_context, cfg.context_tokens, reserve, cfg.suffix_fraction, builder.layout)
    tp = time.perf_counter()
    prompt = builder.build(ctx, budget)
    prompt_ms = (time.perf_counter() - tp) * 1000
    n = cfg.num_candidates if req.invoked and not background else 1

    # 3. identical prompt seen recently
    cacheable = cfg.temperature == 0 and n == 1
    key = server.cache.key(prompt.ids, state.generation, max_new, multi_line, cfg.top_p)
    warm_only = False
    if cacheable:
        hit = server.cache.get(key)
        if hit is not None and background:
            # the suggestion is known; the run only makes sure the document's KV cache holds this
            # prompt (it may have been evicted since): a prefill of what is missing, no decoding
            if hit:
                server.typing.remember(req.uri, ctx, hit)
            warm_only = True
        elif hit is not None:
            server.typing.remember(req.uri, ctx, hit)
            total_ms = (time.perf_counter() - t0) * 1000
            stats.served("cache", total_ms, bool(hit))
            server.client_log.log("info", f"completion #{request_id} cache total_ms={total_ms:.1f}")
            return Answer(ctx, offset, list(hit), "cache", request_id)

    # 4. the model, through the scheduler
    ticket = server.scheduler.begin_background(req.uri) if background else server.scheduler.begin(req.uri)
    if ticket is None:  # a request is running: a background run would only delay it
        stats.count("prefetch.skipped")
        return None
    cancelled = "prefetch.cancelled" if background else "superseded"
    suggestions: list[Suggestion] = []
    try:
        if not await server.scheduler.admit(ticket):
            stats.count(cancelled)
            return None
        for i in range(n):
            temperature = cfg.temperature if i == 0 else (cfg.temperature or SAMPLING_TEMPERATURE)
            result, job, timings = await _generate(server, lm, ticket, ctx, prompt, 0 if warm_only else max_new,
                                                   temperature, cfg, BACKGROUND_TIME_LIMIT_S if background else None)
            if result is None:
                break
            timings.update(prompt_ms=round(prompt_ms, 2), prompt_layout=prompt.layout,
                           prompt_prefix_tokens=prompt.prefix_tokens, prompt_suffix_tokens=prompt.suffix_tokens)
            if background:
                stats.count("prefetch.modelRuns")
            else:
                stats.model_run(timings)
            s = shape(ctx, prompt.suggestion_text(builder.continuation(prompt.ids, result.token_ids, result.text)))
            if s.text and all(s.text != other.text for other in suggestions):
                suggestions.append(s)
            _log_model_run(server, builder, what, request_id, i, timings, prompt, result, s)
        else:
            if cacheable and not warm_only:
                server.cache.put(key, list(suggestions))
        if ticket.cancel.is_set() and not suggestions:
            stats.count(cancelled)
            return None
    except asyncio.CancelledError:
        ticket.cancel_jobs()
        stats.count(cancelled if background else "cancelled")
        raise
    finally:
        server.scheduler.end(ticket)
    # not closed while the model ran (it would hold its text forever); a background run that found
    # nothing leaves what is shown alone
    if server.docs.get(req.uri) is doc and (suggestions or not background):
        server.typing.remember(req.uri, ctx, suggestions)
    total_ms = (time.perf_counter() - t0) * 1000
    if not background:
        stats.served("model", total_ms, bool(suggestions))
    server.client_log.log("info", f"{what} #{request_id} model total_ms={total_ms:.1f} "
                                  f"suggestions={len(suggestions)}")
    return Answer(ctx, offset, suggestions, "model", request_id)


async def _generate(server, lm, ticket, ctx, prompt, max_new, temperature, cfg, time_limit_s=None):
    """One model run for `ticket`; (None, job, {}) when cancelled, timed out or failed. The time
    limit is the request timeout unless `time_limit_s` is given."""
    from inference.engine import GenerationParams

    fim = lm.fim
    limit_s = time_limit_s or cfg.request_timeout_ms / 1000
    params = GenerationParams(max_new_tokens=max_new, temperature=temperature, top_p=cfg.top_p,
                              stop_token_ids=stop_ids(fim), first_token_ids=prompt.first_token_ids,
                              time_limit_s=limit_s)
    job = GenerationJob(prompt.ids, params, session=ticket.uri, cancel=ticket.new_job_event(),
                        stop_check=lambda ids: generation_can_stop(ctx, prompt.suggestion_text(lm.decode(ids))),
                        model_generation=server.model.worker_generation)
    future = server.worker.generate(job)
    wait_s = limit_s + WAIT_SLACK_S
    try:
        result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), wait_s)
    except asyncio.TimeoutError:
        job.cancel.set()
        server.stats.count("timeouts")
        server.client_log.log("warning", f"completion for {ticket.uri}: no answer from the model within "
                                         f"{wait_s:.1f} s; request dropped")
        return None, job, {}
    except asyncio.CancelledError:
        job.cancel.set()
        raise
    except Exception as e:  # noqa: BLE001 - a worker failure: this request is empty, the next works
        server.stats.count("errors")
        server.client_log.log("error", f"completion for {ticket.uri} failed in the model: "
                                       f"{type(e).__name__}: {e}")
        return None, job, {}
    if result is None or (result.stop_reason == "cancelled" and not job.stopped_early):
        return None, job, {}
    timings = {"prefill_tokens": result.prefill_tokens, "reused_tokens": result.reused_tokens,
               "prompt_tokens": result.prompt_tokens, "prefill_ms": round(result.prefill_ms, 2),
               "decode_ms": round(result.decode_ms, 2), "tokens": len(result.token_ids),
               "stop": "block_end" if job.stopped_early else result.stop_reason}
    return result, job, timings


def stop_ids(fim) -> tuple[int, ...]:
    """Ids that end a suggestion: the format's own stops and any of its control tokens (a model
    that writes <fim_prefix> in the middle has left the middle)."""
    if fim is None:
        return ()
    ids = [*fim.stop_token_ids, fim.prefix_token, fim.suffix_token, *fim.middle_tokens, fim.filename_token_id]
    return tuple(dict.fromkeys(i for i in ids if i is not None))


def _log_model_run(server, builder, what, request_id, index, timings, prompt, result, shaped) -> None:
    log = server.client_log
    if not log.enabled("info"):
        return
    fields = " ".join(f"{k}={v}" for k, v in timings.items())
    line = f"{what} #{request_id}.{index} {fields}"
    if log.text_allowed:
        line += f" prompt={builder.decode(prompt.ids)!r} heal={prompt.heal!r} raw={result.text!r} shown={shaped.text!r}"
    log.log("info", line)
