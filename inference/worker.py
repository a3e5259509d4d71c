"""The inference worker: the in-process implementation of the engine boundary (inference.api's
EngineClient). One thread owns the model and its Engine (with one KV session per document), so
generation never runs on the language server's event loop; the server gets a ModelInfo, never the
model.

Jobs are queued and run one at a time; each returns a concurrent.futures.Future. A job's `cancel`
event may be set from any thread: a queued job that is cancelled is skipped, a running one stops at
its next decode step. An exception in a job fails that job's future only; the worker carries on.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from typing import Callable

from .api import GenerationJob, GenerationParams, ModelError, ModelInfo, ModelSpec

__all__ = ["GenerationJob", "InferenceWorker", "ModelSpec", "WorkerClosed", "inference_threads", "prefill_threads"]

log = logging.getLogger(__name__)


WARM_UP_SESSION = "\x00infill-ls/warm-up"


class WorkerClosed(RuntimeError):
    pass


COMPILE_MIN_MB = 64.0  # weights below this decode eagerly in the server (see compile_pays)


def compile_min_mb(env=None) -> float:
    """INFILL_LS_COMPILE_MIN_MB, else COMPILE_MIN_MB (0: compile whatever the size)."""
    env = os.environ if env is None else env
    try:
        return max(0.0, float(env.get("INFILL_LS_COMPILE_MIN_MB", COMPILE_MIN_MB)))
    except ValueError:
        return COMPILE_MIN_MB


def compile_pays(lm, env=None) -> bool:
    """Whether the server builds the compiled decode ops for `lm`. They make a decode step 2-3x
    faster, but building them imports inductor and keeps its kernels: about 150 MB more resident and
    seconds of a core at start. For the shipped 20 MB model eager decode is about 3 ms a token
    (compiled 1.2): not worth 150 MB (issue 22), so models under INFILL_LS_COMPILE_MIN_MB stay eager."""
    return weight_bytes(lm.model) >= compile_min_mb(env) * 2**20


def weight_bytes(model) -> int:
    """The bytes of the tensors a model object holds (its attributes, their lists and objects)."""
    import torch

    seen: set[int] = set()
    total = 0
    stack = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            total += obj.numel() * obj.element_size()
        elif isinstance(getattr(obj, "nbytes", None), int) and hasattr(obj, "out_features"):
            total += obj.nbytes  # an 8-bit weight (inference.quantize.Int8Linear): its packed bytes
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack.extend(vars(obj).values())
    return total


class InferenceWorker:
    def __init__(self, load_model: Callable | None = None, engine_factory: Callable | None = None) -> None:
        self._load_model = load_model
        self._engine_factory = engine_factory
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="infill-inference", daemon=True)
        self._closed = False
        self.engine = None
        self.lm = None
        self.model_generation = 0  # bumped by every load
        self.busy_since: float | None = None
        self._snapshot = {"kvCacheBytes": 0, "kvSessions": 0}
        # what runs a decode step now: "eager", "compiling" (eager while the compiled ops are built on
        # a thread of their own), "compiled", or None (no model)
        self.decode: str | None = None
        self.compiled_swap: Future | None = None  # resolves when the background build is swapped in
        self._compile_thread: threading.Thread | None = None
        self._thread.start()

    # -- API (any thread)
    def load(self, spec: ModelSpec) -> Future:
        """Load a model (replacing the current one). Result: its ModelInfo."""
        return self._submit("load", spec)

    def unload(self) -> Future:
        return self._submit("unload", None)

    def generate(self, job: GenerationJob) -> Future:
        """Result: inference.api.GenerationResult, or None when the job was cancelled while queued."""
        return self._submit("generate", job)

    def prefill(self, job: GenerationJob) -> Future:
        """`job`'s prompt into its session's KV cache, no decoding (a prefetch's warm-only run)."""
        job.params = replace(job.params, max_new_tokens=0)
        return self._submit("generate", job)

    def cancel(self, job: GenerationJob) -> None:
        job.cancel.set()

    def close_session(self, session: str) -> Future:
        return self._submit("close_session", session)

    def session_tokens(self, session: str) -> Future:
        return self._submit("session_tokens", session)

    def snapshot(self) -> dict:
        """KV figures as of the last finished job (never waits for the worker)."""
        return dict(self._snapshot)

    def shutdown(self, timeout: float = 2.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        start = time.monotonic()
        self._thread.join(timeout)
        builder = self._compile_thread
        if builder is not None:  # a torch op still running on a thread at interpreter exit aborts
            builder.join(max(0.1, timeout - (time.monotonic() - start)))

    # -- worker thread
    def _submit(self, kind: str, arg) -> Future:
        fut: Future = Future()
        if self._closed:
            fut.set_exception(WorkerClosed("the inference worker has shut down"))
            return fut
        self._queue.put((kind, arg, fut))
        return fut

    def _run(self) -> None:
        # torch takes a second or more to import: start on it at once, on this thread, while the
        # server answers `initialize` on its own (importing the worker module does not import torch)
        import torch  # noqa: F401

        while True:
            item = self._queue.get()
            if item is None:
                break
            kind, arg, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            self.busy_since = time.monotonic()
            try:
                result = getattr(self, "_do_" + kind)(arg)
            except BaseException as e:  # noqa: BLE001 - a job's failure must not end the worker
                if isinstance(e, ModelError):  # a user error with its own clear message
                    log.warning("inference worker: %s job failed: %s", kind, e)
                else:
                    log.exception("inference worker: %s job failed", kind)
                self._finished()
                fut.set_exception(e)
            else:
                self._finished()
                fut.set_result(result)

    def _finished(self) -> None:
        """Before a job's future resolves: whoever waits on it then reads figures that include it."""
        self.busy_since = None
        self._update_snapshot()

    def _update_snapshot(self) -> None:
        eng = self.engine
        if eng is None:
            self._snapshot = {"kvCacheBytes": 0, "kvSessions": 0}
            return
        try:
            kv = eng.kv_stats()
            self._snapshot = {"kvCacheBytes": int(kv["bytes"]), "kvSessions": kv["caches"]}
        except Exception:  # noqa: BLE001 - diagnostics only
            pass

    def _do_load(self, spec: ModelSpec) -> ModelInfo:
        load_model = self._load_model
        engine_factory = self._engine_factory
        if load_model is None:
            from inference.loader import load_model
        if engine_factory is None:
            from inference.engine import Engine as engine_factory
        self.engine = None  # free the old model's memory before loading the new one
        self.lm = None
        self.decode = None
        self.model_generation += 1
        set_inference_threads()
        t0 = time.perf_counter()
        one_shot = {"compile_decode": False} if spec.one_shot else {"compile_in_background": True}
        lm = load_model(spec.source, device=resolve_device(spec.device), dtype=spec.dtype,
                        prefill_dtype=spec.prefill_dtype, **one_shot)
        # load_model chose what runs (inference.acceleration) and built the model with it; the engine
        # takes its prefill threads and autocast from the same choice
        acc = getattr(lm, "acceleration", None)
        stays_eager = acc is not None and acc.compile_in_background and not compile_pays(lm)
        if stays_eager:
            from inference.blocks import column_major_linears

            column_major_linears(lm.model)  # fp32: the eager GEMVs' faster layout (before the warm-up)
        engine = engine_factory(lm, kv_budget_bytes=kv_budget_for(lm, spec.kv_budget_bytes),
                                acceleration=lm.acceleration)
        t1 = time.perf_counter()
        if not spec.one_shot:
            _warm_up(engine, lm)
            from inference.quantize import release_freed_memory

            release_freed_memory()  # loading's temporaries (a few MB): idle RSS is what the user sees
        t2 = time.perf_counter()
        log.debug("load: model %.3f s, warm-up %.3f s", t1 - t0, t2 - t1)
        self.engine = engine
        self.lm = lm
        if stays_eager:
            self.decode = "eager"  # a small model: eager decode is already a few ms a token
            log.info("decode stays eager: %.0f MB of weights, below INFILL_LS_COMPILE_MIN_MB=%g",
                     weight_bytes(lm.model) / 2**20, compile_min_mb())
        elif acc is not None and acc.compile_in_background:
            self.decode = "compiling"
            self.compiled_swap = Future()
            self._compile_thread = threading.Thread(target=self._build_compiled, args=(lm, self.model_generation),
                                                    name="infill-compile", daemon=True)
            self._compile_thread.start()
        else:
            self.decode = "compiled" if acc is not None and acc.compiled_decode_ops else "eager"
        return lm.info()

    def _do_unload(self, _):
        self.engine = None
        self.lm = None
        self.decode = None
        self.model_generation += 1

    # -- the compiled decode ops, built off the request path
    def _build_compiled(self, lm, generation: int) -> None:
        """On a thread of its own (niced): one short forward pass of `lm` through the ops' `prepare`,
        which compiles every decode op and the decode attention (inductor's disk cache makes that a
        read after the first start) without their calls using it yet; then a swap job on the worker
        thread puts them in between two jobs. Requests meanwhile decode eagerly."""
        swap = self.compiled_swap
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        t0 = time.perf_counter()
        try:
            _prepare_compiled(lm)
        except Exception:  # noqa: BLE001 - the swap makes each op's failure final (eager for good)
            log.exception("building the compiled decode ops failed")
        log.debug("compiled decode ops built in %.3f s", time.perf_counter() - t0)
        if self._closed or generation != self.model_generation:
            swap.set_result(False)
            return
        self._submit("swap", (lm, generation, swap))

    def _do_swap(self, arg) -> bool:
        lm, generation, swap = arg
        ok = False
        try:
            if lm is self.lm and generation == self.model_generation:
                model = lm.model
                ok = all([op.swap() for op in vars(model.decode_ops).values()]) if model.decode_ops else True
                attention = getattr(model, "decode_attention", None)
                if attention is not None:
                    attention.swap()
                self.decode = "compiled" if ok else "eager"
                log.info("decode ops: %s", "compiled (swapped in)" if ok else "eager (compiling failed)")
        finally:
            swap.set_result(ok)
        return ok

    def _do_generate(self, job: GenerationJob):
        if job.cancel.is_set():
            return None
        if self.engine is None or job.model_generation not in (0, self.model_generation):
            return None  # the model this job was built for is gone
        on_token = None
        if job.stop_check is not None:
            generated: list[int] = []

            def on_token(token: int) -> None:
                generated.append(token)
                if not job.cancel.is_set() and job.stop_check(generated):
                    job.stopped_early = True
                    job.cancel.set()

        try:
            return self.engine.generate(job.prompt_ids, job.params, session=job.session, cancel=job.cancel,
                                        on_token=on_token)
        except Exception as e:
            import torch

            if isinstance(e, torch.OutOfMemoryError):
                self._free_kv_after_oom()
            raise

    def _free_kv_after_oom(self) -> None:
        """Out of memory: drop every document's KV cache (it is rebuilt on demand), so the next
        request has room instead of failing the same way."""
        self.engine.clear_sessions()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.warning("out of memory during generation: dropped all KV caches")

    def _do_close_session(self, session: str):
        if self.engine is not None:
            self.engine.close_session(session)

    def _do_session_tokens(self, session: str):
        return [] if self.engine is None else self.engine.session_tokens(session)


def __getattr__(name: str):
    """inference_threads / prefill_threads, re-exported lazily: importing the worker (the server does,
    before it answers `initialize`) must not import torch, which takes a second or more."""
    if name in ("inference_threads", "prefill_threads"):
        from . import acceleration

        return getattr(acceleration, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def set_inference_threads() -> None:
    import torch

    from .acceleration import inference_threads

    n = inference_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
        log.info("inference on %d CPU thread%s", n, "" if n == 1 else "s")


def kv_budget_for(lm, budget_bytes: int) -> int:
    """The KV budget, raised to one session holding the model's whole context when it is smaller:
    below that the document being typed in cannot keep its cache, and every keystroke would prefill
    the whole prompt again (e.g. CodeGen-350M in fp32: 320 MiB for 2048 positions)."""
    try:
        one = int(lm.kv_spec().bytes_per_position() * lm.max_context)
    except Exception:  # noqa: BLE001 - a model without KV facts (test doubles): keep the budget as set
        return budget_bytes
    if budget_bytes < one:
        log.info("KV budget raised from %d MiB to %d MiB: one document's whole context must fit",
                 budget_bytes >> 20, -(-one >> 20))
        return one
    return budget_bytes


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is usable, else "cpu"."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _prepare_compiled(lm) -> None:
    """A forward pass over a few tokens and one decode step of `lm` through the deferred ops'
    `prepare` (compiles them into `pending`; the model's own calls keep running eager meanwhile)."""
    import copy
    from dataclasses import replace as replace_spec

    import torch

    from .blocks import preparing
    from .kv_cache import SessionKV

    model = lm.model
    view = copy.copy(model)  # the same weights, with preparing ops
    if model.decode_ops is not None:
        view.decode_ops = preparing(model.decode_ops)
    attention = getattr(model, "decode_attention", None)
    spec = replace_spec(lm.kv_spec(), decode=attention.prepare if attention is not None else None)
    first = (list(getattr(lm, "bos_ids", [])) or list(lm.eos_token_ids[:1]) or [0])[:1]
    ids = (first + lm.encode_plain("import os\n" * 4))[:8]
    with torch.inference_mode():
        kv = SessionKV(spec)
        kv.reserve(len(ids) + 1)
        view.forward(torch.tensor(ids, dtype=torch.long, device=lm.device), kv)
        kv.advance(ids)
        hidden = view.forward(torch.tensor(ids[-1:], dtype=torch.long, device=lm.device), kv)
        kv.advance(ids[-1:])
        view.logits(hidden[-1:])


def _warm_up(engine, lm) -> None:
    """A short realistic generation right after loading (a 160-token prompt in a session, prefilled
    on the prefill threads, then 48 decode steps): the first runs pay one-time costs (kernel
    selection, thread start-up, compilation, allocator growth) of up to seconds that would otherwise
    land on the user's first keystrokes."""
    first = (list(getattr(lm, "bos_ids", [])) or list(lm.eos_token_ids[:1]) or [0])[:1]
    try:
        # long enough (>= LONG_PREFILL) to run the multi-threaded prefill path once as well
        n = min(160, lm.max_context // 2)
        prompt = (first + lm.encode_plain("import os\n" * 80))[:n] if hasattr(lm, "encode_plain") else first * n
        engine.generate(prompt, GenerationParams(max_new_tokens=48), session=WARM_UP_SESSION)
    except Exception:  # noqa: BLE001 - a failed warm-up shows up again, clearly, on the first request
        log.exception("warm-up generation failed")
    finally:
        try:
            engine.close_session(WARM_UP_SESSION)
        except Exception:  # noqa: BLE001
            pass
