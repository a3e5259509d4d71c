"""Soak: many documents, rapid typing in all of them, through the real server process, with a
small KV budget. Prints the server's RSS over time against its idle baseline (after the model is
loaded and the documents are open), the KV bytes against the budget, and request waits under
load against the same requests when idle. Not a test (tests/test_reliability_soak.py runs a short
version with assertions).

    nice -n 10 python bench/soak.py [--duration 120] [--docs 20] [--kv-budget-mb 8] [--keys-per-second 20]
                                    [--model FOLDER] [--threads 1] [--prefetch-every 3]

Without --model it builds a random GPTBigCode (MHA, 2 x 128, 1024 positions: 2 MiB of KV per full
document) so that 20 documents would hold ~40 MiB of KV without the budget.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import scratch_dir  # noqa: E402
from tests.reliability_client import RawClient  # noqa: E402

SNIPPET = "total = compute(values[index], offset) + 1\n        "
BODY = '''
def function_{i}(values, offset):
    """Sum the values after an offset."""
    total = 0
    for index in range(len(values)):
        if index < offset:
            continue
        total += values[index] * {i}
    return total

'''


def build_model(folder: Path) -> Path:
    from tests.checkpoints import make_gpt_bigcode

    return make_gpt_bigcode(folder, multi_query=False, n_layer=2, n_embd=128, n_head=4, n_positions=1024)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Doc:
    uri: str
    text: str
    line: int
    col: int
    version: int = 1
    pending: int | None = None
    typed: int = 0


@dataclass
class SoakResult:
    duration_s: float
    docs: int
    kv_budget_mb: int
    keystrokes: int = 0
    completions_sent: int = 0
    completions_cancelled_by_client: int = 0
    unanswered: int = 0
    completion_waits_ms: list[float] = field(default_factory=list)  # every answer, cancelled ones included
    answered_waits_ms: list[float] = field(default_factory=list)  # answers with a result (not cancelled)
    other_waits_ms: list[float] = field(default_factory=list)
    idle_other_waits_ms: list[float] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds into the run, MiB)
    kv_bytes: list[int] = field(default_factory=list)
    baseline_rss_mb: float = 0.0
    final_stats: dict = field(default_factory=dict)
    alive_after: bool = False

    def rss_after_warmup(self) -> tuple[float, float]:
        """(max RSS in the first half, max RSS in the second half) after the first 20% of the run."""
        start = self.duration_s * 0.2
        middle = start + (self.duration_s - start) / 2
        first = [m for t, m in self.rss if start <= t < middle]
        second = [m for t, m in self.rss if t >= middle]
        return max(first, default=float("nan")), max(second, default=float("nan"))

    def report(self) -> str:
        first, second = self.rss_after_warmup()
        peak = max(m for _, m in self.rss)
        cw, ow, iw = self.completion_waits_ms, self.other_waits_ms, self.idle_other_waits_ms
        aw = self.answered_waits_ms
        s = self.final_stats
        rows = [
            f"soak: {self.docs} documents, {self.duration_s:.0f} s, KV budget {self.kv_budget_mb} MiB",
            f"  keystrokes {self.keystrokes}, completion requests {self.completions_sent} "
            f"(cancelled by the client when superseded: {self.completions_cancelled_by_client}), "
            f"unanswered at the end {self.unanswered}",
            f"  server: model runs {s.get('modelRuns')}, errors {s.get('errors')}, timeouts {s.get('timeouts')}, "
            f"superseded {s.get('superseded')}, cancelled {s.get('cancelled')}, reused tokens "
            f"{s.get('reusedTokens', {}).get('total')}",
            "  prefetches: " + ", ".join(f"{k} {v}" for k, v in s.get("prefetch", {}).items()),
            f"  RSS MiB: idle baseline {self.baseline_rss_mb:.1f} | peak {peak:.1f} (+{peak - self.baseline_rss_mb:.1f})"
            f" | max 1st half {first:.1f}, max 2nd half {second:.1f} (growth {second - first:+.1f})",
            f"  KV bytes: max {max(self.kv_bytes, default=0) / 2**20:.2f} MiB vs budget {self.kv_budget_mb} MiB",
            f"  completion wait ms: p50 {percentile(cw, .5):.0f} p95 {percentile(cw, .95):.0f} "
            f"p99 {percentile(cw, .99):.0f} max {max(cw, default=float('nan')):.0f} (all answers, incl. "
            f"cancelled when the next key came)",
            f"  answered with a result ({len(aw)}): wait ms p50 {percentile(aw, .5):.0f} p95 {percentile(aw, .95):.0f} "
            f"max {max(aw, default=float('nan')):.0f}",
            f"  other requests (infill.stats) wait ms under load: p50 {percentile(ow, .5):.1f} "
            f"p99 {percentile(ow, .99):.1f} max {max(ow, default=float('nan')):.1f} | idle baseline p50 "
            f"{percentile(iw, .5):.1f} max {max(iw, default=float('nan')):.1f}",
            f"  server alive and answering afterwards: {self.alive_after}",
        ]
        return "\n".join(rows)


def run_soak(model: str, duration_s: float = 120.0, docs: int = 20, kv_budget_mb: int = 8,
             keys_per_second: float = 20.0, threads: int = 1, request_timeout_ms: int = 2000,
             log=print, options: dict | None = None, env: dict | None = None,
             prefetch_every: int = 0) -> SoakResult:
    """`options`: more initializationOptions (e.g. prefillDtype); `env`: more server environment;
    `prefetch_every` N > 0: every Nth keystroke also sends infill/prefetch for the next document's cursor
    (far more often than an editor would: its clients wait for the cursor to rest 200 ms)."""
    result = SoakResult(duration_s, docs, kv_budget_mb)
    client = RawClient(None, env={"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **(env or {})})
    try:
        client.initialize({"model": model, "kvBudgetMb": kv_budget_mb, "requestTimeoutMs": request_timeout_ms,
                           "maxNewTokensSingleLine": 16, "maxNewTokensMultiLine": 32, "logLevel": "warning",
                           **(options or {})})
        state = client.wait_model(60)["model"]
        if state["status"] != "ready":
            raise SystemExit(f"model did not load: {state}")
        open_docs = []
        for i in range(docs):
            text = "import os\n\n" + "".join(BODY.format(i=i * 100 + k) for k in range(12))
            lines = text.split("\n")
            line = len(lines) // 2
            while lines[line].strip():  # an empty line in the middle
                line += 1
            doc = Doc(f"file:///soak/doc{i}.py", text, line, 0)
            client.open(doc.uri, text)
            open_docs.append(doc)
        time.sleep(0.5)
        result.baseline_rss_mb = rss_mb(client.proc.pid)
        for _ in range(20):
            t0 = time.monotonic()
            client.stats()
            result.idle_other_waits_ms.append((time.monotonic() - t0) * 1000)

        sent: dict[int, float] = {}
        other: dict[int, float] = {}
        start = time.monotonic()
        next_sample = start
        i = 0
        while (now := time.monotonic()) - start < duration_s:
            doc = open_docs[i % docs]
            i += 1
            _type_one(client, doc, result)
            if prefetch_every and i % prefetch_every == 0:
                nxt = open_docs[i % docs]
                client.notify("infill/prefetch", {"textDocument": {"uri": nxt.uri},
                                                  "position": {"line": nxt.line, "character": nxt.col}})
            if doc.pending is not None and doc.pending not in client.responses:
                client.notify("$/cancelRequest", {"id": doc.pending})  # what editors do on the next key
                result.completions_cancelled_by_client += 1
            doc.pending = client.inline_async(doc.uri, doc.line, doc.col)
            sent[doc.pending] = time.monotonic()
            result.completions_sent += 1
            if now >= next_sample:
                next_sample += 0.5
                rid = client.request_async("workspace/executeCommand", {"command": "infill.stats", "arguments": []})
                other[rid] = time.monotonic()
                result.rss.append((now - start, rss_mb(client.proc.pid)))
            time.sleep(max(0.0, start + i / keys_per_second - time.monotonic()))
        deadline = time.monotonic() + request_timeout_ms / 1000 + 5
        for rid in [*sent, *other]:
            try:
                client.wait_response(rid, max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                result.unanswered += 1
        for rid, t in sent.items():
            if rid in client.arrivals:
                result.completion_waits_ms.append((client.arrivals[rid] - t) * 1000)
                if "result" in client.responses[rid]:
                    result.answered_waits_ms.append((client.arrivals[rid] - t) * 1000)
        for rid, t in other.items():
            if rid in client.arrivals:
                answer = client.responses[rid]
                result.other_waits_ms.append((client.arrivals[rid] - t) * 1000)
                if isinstance(answer.get("result"), dict):
                    result.kv_bytes.append(answer["result"].get("kvCacheBytes", 0))
        result.final_stats = client.stats()
        result.rss.append((duration_s, rss_mb(client.proc.pid)))
        result.alive_after = client.proc.poll() is None and "result" in client.inline(
            open_docs[0].uri, open_docs[0].line, open_docs[0].col, timeout=10)
    finally:
        client.close()
    return result


def _type_one(client: RawClient, doc: Doc, result: SoakResult) -> None:
    """One keystroke: the next character of the snippet, or a backspace now and then."""
    if doc.typed % 23 == 22 and doc.col > 0:
        rng = {"start": {"line": doc.line, "character": doc.col - 1}, "end": {"line": doc.line, "character": doc.col}}
        text, doc.col = "", doc.col - 1
    else:
        ch = SNIPPET[doc.typed % len(SNIPPET)]
        rng = {"start": {"line": doc.line, "character": doc.col}, "end": {"line": doc.line, "character": doc.col}}
        text = ch
        if ch == "\n":
            doc.line, doc.col = doc.line + 1, 0
        else:
            doc.col += 1
    doc.typed += 1
    doc.version += 1
    client.change(doc.uri, doc.version, [{"range": rng, "text": text}])
    result.keystrokes += 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--kv-budget-mb", type=int, default=8)
    parser.add_argument("--keys-per-second", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", help="checkpoint folder (default: a random 2 x 128 GPTBigCode)")
    parser.add_argument("--prefetch-every", type=int, default=0,
                        help="every Nth keystroke also sends infill/prefetch for the next document (0: none)")
    parser.add_argument("--baseline-budget-mb", type=int, default=0,
                        help="also run the same soak with this (large) budget, as the unbounded baseline")
    args = parser.parse_args(argv)
    with scratch_dir() as tmp:
        model = args.model or str(build_model(tmp / "soak-model"))
        result = run_soak(model, args.duration, args.docs, args.kv_budget_mb, args.keys_per_second, args.threads,
                          prefetch_every=args.prefetch_every)
        baseline = args.baseline_budget_mb and run_soak(model, args.duration, args.docs, args.baseline_budget_mb,
                                                        args.keys_per_second, args.threads,
                                                        prefetch_every=args.prefetch_every)
    print(result.report())
    if baseline:
        print("baseline with a large budget:")
        print(baseline.report())
    print("  RSS samples (s: MiB): " + " ".join(f"{t:.0f}:{m:.0f}" for t, m in result.rss[::max(1, len(result.rss) // 24)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
