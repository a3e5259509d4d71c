"""Counters and latency percentiles, returned by the `infill.stats` command, and per-request
records: structured timings of each answered request (no text), the last few in the stats answer
(`recentRequests`) and every one, as a JSON line, in the trace file named by INFILL_LS_TRACE (the
typing bench reads that, not the log).

A record: {"what": "completion" | "prefetch", "id": N, "source": "model" | "typingThrough" |
"cache", "totalMs": ms, "suggestions": n, "runs": [per model run: prefill_tokens, reused_tokens,
prompt_tokens, prefill_ms, decode_ms, tokens, stop, prompt_ms, prompt_layout, ...]}.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter, deque

log = logging.getLogger(__name__)

WINDOW = 2000  # recent requests kept for percentiles
RECENT = 16  # request records in the stats answer
TRACE_ENV = "INFILL_LS_TRACE"


def percentile(values, q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 3)


class Stats:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.latency_ms: deque[float] = deque(maxlen=WINDOW)
        self.prefill_tokens: deque[int] = deque(maxlen=WINDOW)
        self.reused_tokens: deque[int] = deque(maxlen=WINDOW)
        self.last: dict = {}
        self.recent: deque[dict] = deque(maxlen=RECENT)
        self._trace_path = os.environ.get(TRACE_ENV) or None

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def served(self, source: str, latency_ms: float, shown: bool) -> None:
        """source: "model" | "typingThrough" | "cache"."""
        self.counts["served." + source] += 1
        if shown:
            self.counts["suggestionsShown"] += 1
        self.latency_ms.append(latency_ms)

    def model_run(self, timings: dict) -> None:
        self.counts["modelRuns"] += 1
        self.prefill_tokens.append(timings.get("prefill_tokens", 0))
        self.reused_tokens.append(timings.get("reused_tokens", 0))
        self.last = dict(timings)

    def request(self, record: dict) -> None:
        """One answered request's record (see the module's docstring)."""
        self.recent.append(record)
        if self._trace_path is None:
            return
        try:
            with open(self._trace_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:  # a trace is a diagnostic: the server goes on without it
            log.warning("cannot write the trace %s (%s); tracing stopped", self._trace_path, e)
            self._trace_path = None

    def to_json(self) -> dict:
        c = self.counts
        served = {k.split(".", 1)[1]: v for k, v in c.items() if k.startswith("served.")}
        return {
            "requests": c["requests"],
            "served": served,
            "servedWithoutModel": served.get("typingThrough", 0) + served.get("cache", 0),
            "modelRuns": c["modelRuns"],
            "suggestionsShown": c["suggestionsShown"],
            "accepted": c["accepted"],
            "cancelled": c["cancelled"],
            "superseded": c["superseded"],
            "notReady": c["notReady"],
            "errors": c["errors"],
            "timeouts": c["timeouts"],
            "invalidRequests": c["invalid"],
            "latencyMs": {"p50": percentile(self.latency_ms, 0.5), "p90": percentile(self.latency_ms, 0.9),
                          "p95": percentile(self.latency_ms, 0.95), "p99": percentile(self.latency_ms, 0.99),
                          "count": len(self.latency_ms)},
            "prefillTokens": {"median": percentile(self.prefill_tokens, 0.5),
                              "total": sum(self.prefill_tokens)},
            "reusedTokens": {"median": percentile(self.reused_tokens, 0.5), "total": sum(self.reused_tokens)},
            "last": self.last,
            "recentRequests": list(self.recent),
            "prefetch": {k: c["prefetch." + k] for k in ("received", "modelRuns", "skipped", "cancelled")},
        }
