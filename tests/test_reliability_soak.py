"""A short soak (the long one is bench/soak.py): 20 documents, rapid typing in all of them through
the real server with a small KV budget, and a prefetch for another document every third keystroke.
RSS levels off within the budget plus a fixed overhead, every request gets an answer within its
bound, and other requests stay fast."""

from __future__ import annotations

from bench.soak import build_model, run_soak

DURATION_S = 20
BUDGET_MB = 4
REQUEST_TIMEOUT_MS = 2000
FIXED_OVERHEAD_MB = 150  # activations, allocator slack, Python objects: measured ~60-80 MiB


def test_short_soak_memory_levels_off_and_waits_are_bounded(tmp_path):
    model = str(build_model(tmp_path / "soak-model"))
    r = run_soak(model, duration_s=DURATION_S, docs=20, kv_budget_mb=BUDGET_MB, keys_per_second=20,
                 request_timeout_ms=REQUEST_TIMEOUT_MS, log=lambda *a: None, prefetch_every=3)
    print(r.report())
    s = r.final_stats
    assert r.alive_after and r.unanswered == 0
    assert s["errors"] == 0 and s["modelRuns"] > 0
    assert s["prefetch"]["received"] >= r.keystrokes // 3 - 1 > 0
    assert r.completions_sent == len(r.completion_waits_ms) and r.keystrokes >= DURATION_S * 10
    # memory: the KV stays under its budget, RSS stops growing
    assert 0 < max(r.kv_bytes) <= BUDGET_MB * 2**20
    first, second = r.rss_after_warmup()
    assert second - first < 20, r.report()
    assert max(m for _, m in r.rss) < r.baseline_rss_mb + BUDGET_MB + FIXED_OVERHEAD_MB, r.report()
    # waits: no completion waits past its timeout (+ the server's slack + scheduling margin)
    assert max(r.completion_waits_ms) < REQUEST_TIMEOUT_MS + 1000 + 2000, r.report()
    # other requests stay fast while the model is busy
    assert sorted(r.other_waits_ms)[len(r.other_waits_ms) // 2] < 200, r.report()
    assert max(r.other_waits_ms) < 2000, r.report()


def test_opening_typing_and_closing_many_documents_leaves_nothing_behind(tmp_path):
    """Open/close churn (in-process, so every per-document table can be inspected): after 120
    documents were opened, typed into, completed and closed, no document, KV session, shown
    suggestion or scheduler ticket is left."""
    import torch

    from tests.checkpoints import make_gpt_bigcode
    from tests.reliability_inprocess import InProcessServer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ips = InProcessServer()
    server, client = ips.server, ips.client
    try:
        client.initialize({"model": str(make_gpt_bigcode(tmp_path / "m")), "maxNewTokensSingleLine": 4,
                           "maxNewTokensMultiLine": 4})
        assert client.wait_model()["model"]["status"] == "ready"
        pending = []
        for i in range(120):
            uri = f"file:///churn/{i}.py"
            client.open(uri, f"def f{i}(x):\n    ")
            client.change(uri, 2, [{"range": {"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 4}},
                                    "text": "re"}])
            if i % 4 == 0:  # a prefetch there first, and maybe the document closes under it
                client.notify("infill/prefetch", {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 6}})
            pending.append(client.inline_async(uri, 1, 6))
            if i % 3:
                client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})  # maybe mid-generation
            else:
                client.wait_response(pending[-1], 15)
                client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        for rid in pending:
            client.wait_response(rid, 15)
        s = client.stats()
        assert s["openDocuments"] == 0 and s["modelRuns"] > 0
        assert server.worker.session_tokens("file:///churn/0.py").result(5) == []
        assert len(server.worker.engine.caches.sessions) == 0 and server.worker.engine.cache_bytes() == 0
        assert not server.typing._shown and not server.scheduler._current and server.scheduler._background is None
    finally:
        ips.close()
        torch.set_num_threads(threads)
