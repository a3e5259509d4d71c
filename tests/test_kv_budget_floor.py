"""The worker never gives the engine a KV budget smaller than one document's whole context: with a
smaller one the document being typed in loses its cache after every keystroke."""

from __future__ import annotations

from inference.engine import GenerationParams
from inference.worker import InferenceWorker, ModelSpec, kv_budget_for
from tests import checkpoints as ck


def test_budget_below_one_session_is_raised_and_typing_reuses(tmp_path):
    folder = ck.make_gpt_bigcode(tmp_path / "m", n_positions=256)
    worker = InferenceWorker()
    try:
        info = worker.load(ModelSpec(str(folder), kv_budget_bytes=1024)).result(timeout=60)
        lm = worker.lm
        assert info.max_context == lm.max_context == 256
        one = lm.kv_spec().bytes_per_position() * lm.max_context
        assert worker.engine.caches.budget_bytes == one
        assert kv_budget_for(lm, 10 * one) == 10 * one  # a larger budget is kept as set
        text = "def add(a, b):\n    return"
        eng, params = worker.engine, GenerationParams(max_new_tokens=3)
        first = eng.generate(lm.encode(text), params, session="doc")
        second = eng.generate(lm.encode(text + " a"), params, session="doc")
        assert first.reused_tokens == 0 and second.reused_tokens >= len(lm.encode(text)) - 1
    finally:
        worker.shutdown()
