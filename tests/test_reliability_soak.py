"""A short soak (the long one is bench/soak.py): 20 documents, rapid typing in all of them through
the real server with a small KV budget, and a prefetch for another document every third keystroke.
RSS levels off within the budget plus a fixed overhead, every request gets an answer within its
bound, and other requests stay fast."""

from __future__ import annotations

from bench.soak import build_model, run_soak

DURATION_S = 20
BUDGET_MB = 4
REQUEST_TIMEOUT_MS = 2000
# Bounds near the README's soak figures (120 s, bench/soak.py: peak RSS +26 MiB over idle, completion wait
# max 2.8 s for a 2 s timeout, other requests p50 9.5 ms and max 111 ms), with margins measured on the
# shared 2-core box at load average 6-7 (this test, twice: RSS +18.0/+18.7 MiB, growth -0.2/+0.6 MiB,
# wait max 3428/3429 ms, other requests p50 8.7/10.5 ms, max 153/172 ms). Run alone it is nearer the README.
FIXED_OVERHEAD_MB = 50  # activations, allocator slack, Python objects above the idle baseline
WAIT_SLACK_MS = 2000  # past the request timeout: the cancel lands at the next prefill chunk or decode step
OTHER_P50_MS = 50
OTHER_MAX_MS = 500


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
    assert second - first < 10, r.report()
    assert max(m for _, m in r.rss) < r.baseline_rss_mb + BUDGET_MB + FIXED_OVERHEAD_MB, r.report()
    # waits: no completion waits much past its timeout
    assert max(r.completion_waits_ms) < REQUEST_TIMEOUT_MS + WAIT_SLACK_MS, r.report()
    # other requests stay fast while the model is busy
    assert sorted(r.other_waits_ms)[len(r.other_waits_ms) // 2] < OTHER_P50_MS, r.report()
    assert max(r.other_waits_ms) < OTHER_MAX_MS, r.report()


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
        assert server.worker.engine.kv_stats() == {"bytes": 0, "documents": 0, "caches": 0}
        assert not server.typing._shown and not server.scheduler._current and server.scheduler._background is None
    finally:
        ips.close()
        torch.set_num_threads(threads)
