"""The inference worker thread, with a stand-in engine (the real one is covered end to end): jobs run
off the caller's thread, a failing job fails only itself, cancelled jobs are skipped or stopped."""

import threading
import time

import pytest

from inference.worker import GenerationJob, InferenceWorker, ModelSpec


class FakeLM:
    family = "fake"
    eos_token_ids = (0,)
    bos_ids = []
    acceleration = None

    def info(self):
        return "fake model info"


class FakeEngine:
    def __init__(self, lm, kv_budget_bytes, acceleration=None):
        self.sessions = {}
        self.threads = set()

    def generate(self, prompt_ids, params, session=None, cancel=None, on_token=None):
        self.threads.add(threading.current_thread().name)
        if prompt_ids == ["boom"]:
            raise RuntimeError("model exploded")
        out = []
        for i in range(params):
            if cancel is not None and cancel.is_set():
                return ("cancelled", out)
            out.append(i)
            if on_token:
                on_token(i)
            time.sleep(0.002)
        if session:
            self.sessions[session] = list(prompt_ids) + out
        return ("done", out)

    def close_session(self, session):
        self.sessions.pop(session, None)

    def cache_bytes(self):
        return 100 * len(self.sessions)

    def kv_stats(self):
        return {"bytes": self.cache_bytes(), "documents": len(self.sessions), "caches": len(self.sessions)}

    def session_tokens(self, session):
        return self.sessions.get(session, [])


def make_worker(fail_load=False):
    def load_model(source, device, dtype, **options):
        if fail_load:
            raise ValueError(f"cannot read {source}")
        return FakeLM()

    w = InferenceWorker(load_model=load_model, engine_factory=FakeEngine)
    return w


def test_generation_runs_on_the_worker_thread_and_a_failure_fails_only_its_job():
    w = make_worker()
    try:
        w.load(ModelSpec("m")).result(5)
        assert w.generate(GenerationJob([1, 2], 3, session="a")).result(5) == ("done", [0, 1, 2])
        with pytest.raises(RuntimeError, match="exploded"):
            w.generate(GenerationJob(["boom"], 3)).result(5)
        assert w.generate(GenerationJob([1], 2)).result(5) == ("done", [0, 1])  # carries on
        assert w.engine.threads == {"infill-inference"}
        assert w.snapshot() == {"kvCacheBytes": 100, "kvSessions": 1}
        w.close_session("a").result(5)
        assert w.snapshot()["kvSessions"] == 0
    finally:
        w.shutdown()


def test_cancelled_jobs_are_skipped_or_stopped_and_early_stop_is_not_a_cancel():
    w = make_worker()
    try:
        w.load(ModelSpec("m")).result(5)
        long_job = GenerationJob([1], 10_000)
        running = w.generate(long_job)
        queued = GenerationJob([1], 5)
        queued_future = w.generate(queued)
        time.sleep(0.05)
        queued.cancel.set()
        long_job.cancel.set()
        status, out = running.result(5)
        assert status == "cancelled" and len(out) < 10_000
        assert queued_future.result(5) is None  # skipped without running
        early = GenerationJob([1], 100, stop_check=lambda ids: len(ids) == 4)
        status, out = w.generate(early).result(5)
        assert early.stopped_early and len(out) == 4
    finally:
        w.shutdown()


def test_a_load_failure_is_reported_and_the_worker_stays_usable():
    w = make_worker(fail_load=True)
    try:
        with pytest.raises(ValueError, match="cannot read /x"):
            w.load(ModelSpec("/x")).result(5)
        assert w.engine is None
        assert w.generate(GenerationJob([1], 2)).result(5) is None  # no model: nothing to run
    finally:
        w.shutdown()
    # after shutdown: a clear error at once (a hang would raise TimeoutError, which is not a RuntimeError)
    with pytest.raises(RuntimeError, match="has shut down"):
        w.generate(GenerationJob([1], 2)).result(1)
