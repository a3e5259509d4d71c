"""The scheduler: newest request per document wins, debounce, rate limit; typing-through and the
result cache."""

import asyncio
import time

from lsp_server.context import CursorContext
from lsp_server.postprocess import Suggestion
from lsp_server.reuse import ResultCache, TypingThrough
from lsp_server.scheduler import RequestScheduler


async def test_a_newer_request_cancels_the_older_one_of_the_same_document_only():
    s = RequestScheduler(rate_limit=1000)
    a = s.begin("file:///a")
    job = a.new_job_event()
    other = s.begin("file:///b")
    b = s.begin("file:///a")
    assert a.cancel.is_set() and job.is_set() and a.superseded
    assert not other.cancel.is_set() and s.is_current(b) and not s.is_current(a)
    assert not await s.admit(a) and await s.admit(b)
    s.end(a)  # ending a superseded ticket leaves the current one alone
    assert s.is_current(b)
    s.cancel_document("file:///a")
    assert b.cancel.is_set() and b.new_job_event().is_set()


async def test_a_background_request_waits_for_none_and_any_request_or_edit_cancels_it():
    s = RequestScheduler(rate_limit=1000, debounce_ms=50)
    bg = s.begin_background("file:///a")
    job = bg.new_job_event()
    t0 = time.monotonic()
    assert await s.admit(bg) and time.monotonic() - t0 < 0.04  # no debounce: its client waited already
    newer = s.begin_background("file:///b")
    assert newer is not None and job.is_set() and not s.is_current(bg)  # one at a time: the newer wins
    s.begin("file:///c")  # a request for any other document cancels it
    assert newer.cancel.is_set() and not s.is_current(newer)
    assert s.begin_background("file:///a") is None  # nothing in the background while a request runs
    s.cancel_all()
    bg = s.begin_background("file:///a")
    s.cancel_document("file:///b")
    assert s.is_current(bg)
    s.cancel_document("file:///a")  # an edit of its document
    assert bg.cancel.is_set() and not s.is_current(bg)
    bg = s.begin_background("file:///a")
    s.end(bg)
    assert not s.is_current(bg) and s.begin_background("file:///a") is not None


async def test_debounce_drops_a_request_superseded_while_waiting():
    s = RequestScheduler(rate_limit=1000, debounce_ms=50)
    first = asyncio.ensure_future(s.admit(s.begin("file:///a")))
    await asyncio.sleep(0.01)
    second = s.begin("file:///a")
    assert await first is False
    t0 = time.monotonic()
    assert await s.admit(second) is True
    assert time.monotonic() - t0 >= 0.045


async def test_rate_limit_spaces_model_requests():
    s = RequestScheduler(rate_limit=5)
    t0 = time.monotonic()
    for i in range(7):
        assert await s.admit(s.begin(f"file:///{i}"))
    assert time.monotonic() - t0 >= 0.9  # 7 requests at 5 per second need a second period


def test_typing_through_answers_the_rest_of_the_shown_suggestion():
    tt = TypingThrough()
    tt.remember("u", CursorContext("x = ", "\n"), [Suggestion("compute(a)"), Suggestion("cache")])
    assert [s.text for s in tt.continue_from("u", CursorContext("x = c", "\n"))] == ["ompute(a)", "ache"]
    assert [s.text for s in tt.continue_from("u", CursorContext("x = com", "\n"))] == ["pute(a)"]
    assert tt.continue_from("u", CursorContext("x = d", "\n")) == []  # typed something else
    assert tt.continue_from("u", CursorContext("x = c", "y\n")) == []  # the suffix changed
    assert tt.continue_from("u", CursorContext("x = compute(a)", "\n")) == []  # typed it all
    tt.forget("u")
    assert tt.continue_from("u", CursorContext("x = c", "\n")) == []


def test_typing_through_survives_an_auto_inserted_closer():
    tt = TypingThrough()
    tt.remember("u", CursorContext("x = ", "\n"), [Suggestion("foo(bar)")])
    # the editor closed the bracket itself: the rest no longer repeats it
    assert [s.text for s in tt.continue_from("u", CursorContext("x = foo(", ")\n"))] == ["bar"]
    assert tt.continue_from("u", CursorContext("x = foo(", "x)\n")) == []  # not an auto-pair


def test_result_cache_is_a_small_lru():
    cache = ResultCache(size=2)
    k1, k2, k3 = (ResultCache.key([1, 2, i], 0) for i in range(3))
    cache.put(k1, [Suggestion("a")])
    cache.put(k2, [])
    assert cache.get(k1) == [Suggestion("a")]  # k1 now most recent
    cache.put(k3, [Suggestion("c")])
    assert cache.get(k2) is None and cache.get(k1) is not None and cache.get(k3) is not None
