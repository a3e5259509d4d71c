"""Keystroke-to-suggestion latency on real typing, beside the naive way, in the same run.

Replays an editing session (bench/typing_sessions.py: three standard-library files of different
sizes open at once, the cursor deep in a 2 000-line file, typed character by character at a human
pace with pauses, typos fixed with backspace, a jump elsewhere in the file, a switch to the other
documents and back) through `infill-ls serve` over stdio, as an editor does: one incremental
didChange per keystroke, then an automatic textDocument/inlineCompletion request. Arriving at a new
place (a jump, a switch to another document) it sends `infill/prefetch` with the cursor there, as the
editor clients do when the cursor comes to rest, then waits the session's look time (1-2 s) before
the first keystroke (`--no-prefetch`: the same session without it). Each keystroke
waits for its answer (plus a human think time) before the next one, so every request is measured to
its end. Per keystroke it records the latency from sending the didChange to the answer, and from the
server's per-request records (the JSON lines of the trace file named by INFILL_LS_TRACE,
lsp_server.stats): prefill, reused and generated tokens and whether the model ran.

The naive baseline, same run, same model, same prompt token ids: transformers `generate` (greedy,
same max_new_tokens, same stop ids) on the whole prompt for a sample of the same requests, with
nothing kept between keystrokes. Prompt ids come from the server's own prompt builder called
in-process on the same text and cursor (checked against the server's prompt lengths).

Last, while one long generation runs, `infill.stats` requests measure how fast the server still
answers other requests.

    nice -n 10 python bench/typing_bench.py                # default model + two random shapes, fp32 and bf16
    nice -n 10 python bench/typing_bench.py --quick        # a short smoke run
    nice -n 10 python bench/typing_bench.py --model tiny_starcoder --dtype bfloat16 --keys 80
    --model: default | codegen-350M | tiny_starcoder | FOLDER (repeatable); --dtype float32|bfloat16 (repeatable)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lsprotocol import types as t  # noqa: E402
from pygls.lsp.client import LanguageClient  # noqa: E402

from bench.typing_replay import pct, peak_rss_mb  # noqa: E402
from bench.typing_sessions import ARRIVALS, Session, build_session  # noqa: E402
from lsp_server.config import DEFAULTS  # noqa: E402
from lsp_server.positions import UTF16, index_to_column  # noqa: E402

RANDOM_MAX_NEW = 24
SERVER = [sys.executable, "-m", "lsp_server.cli", "serve"]  # = `infill-ls serve`


@dataclass
class Row:
    index: int
    label: str
    doc: str
    line_end: bool
    latency_ms: float
    source: str = "none"  # model | typingThrough | cache | none (no answer: not ready, superseded, ...)
    prefill: int = 0
    reused: int = 0
    prompt: int = 0
    generated: int = 0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    stop: str = ""
    shown: bool = False


@dataclass
class Result:
    label: str
    dtype: str
    rows: list[Row] = field(default_factory=list)
    load_s: float = 0.0
    rss_mb: float | None = None
    probes_ms: list[float] = field(default_factory=list)
    probe_generation_ms: float = 0.0
    naive: list[tuple[int, float, int, int]] = field(default_factory=list)  # (row index, ms, prompt, generated)
    prompt_mismatch: int = 0
    naive_load_s: float = 0.0
    max_new: str = ""
    prefetch: dict = field(default_factory=dict)  # the server's prefetch counters at the end


def position(text: str, offset: int) -> t.Position:
    before = text[:offset]
    line = before.count("\n")
    line_text = before[before.rfind("\n") + 1:]
    return t.Position(line, index_to_column(line_text, len(line_text), UTF16))


class Replay:
    def __init__(self, options: dict) -> None:
        self.options = options
        self.logs: list[str] = []
        fd, self.trace_path = tempfile.mkstemp(prefix="infill-trace-", suffix=".jsonl")
        os.close(fd)
        self._trace_at = 0
        self.client = LanguageClient("infill-bench-typing", "1")
        c = self.client
        c.feature(t.WINDOW_LOG_MESSAGE)(lambda p: self.logs.append(p.message))
        c.feature(t.WINDOW_SHOW_MESSAGE)(lambda p: self.logs.append("SHOW " + p.message))
        c.feature(t.WINDOW_WORK_DONE_PROGRESS_CREATE)(lambda p: None)
        c.feature(t.PROGRESS)(lambda p: None)

    async def start(self) -> dict:
        await self.client.start_io(*SERVER, env={**os.environ, "INFILL_LS_TRACE": self.trace_path})
        await self.client.initialize_async(t.InitializeParams(
            capabilities=t.ClientCapabilities(
                window=t.WindowClientCapabilities(work_done_progress=True),
                general=t.GeneralClientCapabilities(position_encodings=[t.PositionEncodingKind.Utf16]),
                text_document=t.TextDocumentClientCapabilities(
                    inline_completion=t.InlineCompletionClientCapabilities())),
            initialization_options=self.options))
        self.client.initialized(t.InitializedParams())
        while (s := await self.stats())["model"]["status"] not in ("ready", "failed"):
            await asyncio.sleep(0.1)
        # the steady state: typing starts once no compile is going on (the compiled decode swapped in,
        # or a small model that stays eager; bench/startup.py measures the seconds before it)
        while s["model"]["status"] == "ready" and s["model"].get("decode") == "compiling":
            await asyncio.sleep(0.1)
            s = await self.stats()
        return s

    def new_records(self, what: str = "completion") -> list[dict]:
        """The server's request records written since the last call (it writes one before answering)."""
        with open(self.trace_path, encoding="utf-8") as f:
            f.seek(self._trace_at)
            text = f.read()
        end = text.rfind("\n") + 1  # a line still being written waits for the next call
        self._trace_at += len(text[:end].encode("utf-8"))
        records = [json.loads(line) for line in text[:end].splitlines() if line]
        return [r for r in records if r["what"] == what]

    async def stats(self) -> dict:
        return await self.client.workspace_execute_command_async(t.ExecuteCommandParams(command="infill.stats"))

    def open(self, uri: str, text: str) -> None:
        self.client.text_document_did_open(t.DidOpenTextDocumentParams(
            t.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))

    def change(self, uri: str, version: int, text: str, offset: int, delete: int, insert: str) -> None:
        rng = t.Range(position(text, offset), position(text, offset + delete))
        self.client.text_document_did_change(t.DidChangeTextDocumentParams(
            t.VersionedTextDocumentIdentifier(version=version, uri=uri),
            [t.TextDocumentContentChangePartial(range=rng, text=insert)]))

    async def inline(self, uri: str, pos: t.Position):
        return await self.client.text_document_inline_completion_async(t.InlineCompletionParams(
            text_document=t.TextDocumentIdentifier(uri), position=pos,
            context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Automatic)))

    def prefetch(self, uri: str, pos: t.Position) -> None:
        self.client.protocol.notify("infill/prefetch", {
            "textDocument": {"uri": uri}, "position": {"line": pos.line, "character": pos.character}})

    async def stop(self) -> float | None:
        rss = peak_rss_mb(self.client._server.pid) if self.client._server else None
        try:
            await asyncio.wait_for(self.client.shutdown_async(None), 10)
            self.client.exit(None)
            await asyncio.sleep(0.2)
        finally:
            await self.client.stop()
            os.unlink(self.trace_path)
        return rss


async def replay(session: Session, options: dict, res: Result, quiet: bool, prefetch: bool = True) -> bool:
    rp = Replay(options)
    t0 = time.monotonic()
    s = await rp.start()
    res.load_s = time.monotonic() - t0
    if s["model"]["status"] != "ready":
        print(f"  model failed to load: {s['model']['error']}", file=sys.stderr)
        await rp.stop()
        return False
    if not quiet:
        m = s["model"]
        print(f"  server: {m['source']} ({m['family']}, layout {m['layout']}, context {m['maxContext']}), "
              f"ready in {res.load_s:.1f} s")
    uris = {name: path.resolve().as_uri() for name, path in session.paths.items()}
    texts = dict(session.opened)
    versions = {name: 1 for name in texts}
    for name, text in texts.items():
        rp.open(uris[name], text)
    for i, e in enumerate(session.edits):
        if prefetch and e.label in ARRIVALS:  # the cursor lands there: the editor sends a prefetch
            rp.prefetch(uris[e.doc], position(texts[e.doc], e.offset))
        if e.gap_s:
            await asyncio.sleep(e.gap_s)
        before = texts[e.doc]
        versions[e.doc] += 1
        rp.new_records()  # earlier answers (prefetches are apart: what="prefetch")
        t_key = time.perf_counter()
        rp.change(uris[e.doc], versions[e.doc], before, e.offset, e.delete, e.insert)
        texts[e.doc] = before[:e.offset] + e.insert + before[e.offset + e.delete:]
        answer = await rp.inline(uris[e.doc], position(texts[e.doc], e.cursor))
        latency = (time.perf_counter() - t_key) * 1000
        row = Row(i, e.label, e.doc, e.line_end, latency)
        items = answer.items if isinstance(answer, t.InlineCompletionList) else (answer or [])
        row.shown = bool(items)
        for record in rp.new_records():
            fill_row(row, record)
        res.rows.append(row)

    # other requests while a long generation runs: a jump to a fresh place (full prefill + decode)
    probe_doc = next(iter(texts))
    text = texts[probe_doc]
    at = text.find("\n", len(text) // 2)
    versions[probe_doc] += 1
    rp.change(uris[probe_doc], versions[probe_doc], text, at, 0, "\n    x")
    texts[probe_doc] = text[:at] + "\n    x" + text[at:]
    rp.new_records()
    gen = asyncio.ensure_future(rp.inline(uris[probe_doc], position(texts[probe_doc], at + 6)))
    await asyncio.sleep(0.05)
    while not gen.done() and len(res.probes_ms) < 40:
        tp = time.perf_counter()
        await rp.stats()
        if gen.done():
            break
        res.probes_ms.append((time.perf_counter() - tp) * 1000)
        await asyncio.sleep(0.03)
    await gen
    for record in rp.new_records():
        for run in record["runs"][:1]:
            res.probe_generation_ms = run["prefill_ms"] + run["decode_ms"]
    res.prefetch = (await rp.stats())["prefetch"]
    res.rss_mb = await rp.stop()
    return True


def fill_row(row: Row, record: dict) -> None:
    """A keystroke's figures from the server's record of its answer (lsp_server.stats)."""
    row.source = record["source"]
    for run in record["runs"][:1]:  # the first candidate (automatic requests have one)
        row.prefill, row.reused = run["prefill_tokens"], run["reused_tokens"]
        row.prompt, row.generated = run["prompt_tokens"], run["tokens"]
        row.prefill_ms, row.decode_ms = run["prefill_ms"], run["decode_ms"]
        row.stop = run.get("stop", "")


def run_naive(session: Session, res: Result, source: str | None, dtype: str, options: dict, budget_s: float,
              min_samples: int, seed: int) -> None:
    from bench.naive_baseline import NaiveBaseline

    nb = NaiveBaseline(source, dtype, options)
    res.naive_load_s = nb.load()
    uris = {name: path.resolve().as_uri() for name, path in session.paths.items()}
    order = list(range(len(res.rows)))
    random.Random(seed).shuffle(order)
    nb.generate(nb.prompt(session.opened[next(iter(session.opened))], 100, "file:///warm")[0][:32], 2)  # warm-up
    t_end = time.monotonic() + budget_s
    for k, i in enumerate(order):
        if k >= min_samples and time.monotonic() > t_end:
            break
        e = session.edits[i]
        text = session.texts_after(i + 1)[e.doc]
        ids, max_new = nb.prompt(text, e.cursor, uris[e.doc])
        row = res.rows[i]
        if row.prompt and row.prompt != len(ids):
            res.prompt_mismatch += 1
        ms, gen = nb.generate(ids, max_new)
        res.naive.append((i, ms, len(ids), len(gen)))


def summarize(res: Result) -> dict:
    rows = res.rows
    lat = [r.latency_ms for r in rows]
    runs = [r for r in rows if r.source == "model" and r.prompt]
    typing = [r for r in runs if r.line_end and r.label in ("type", "enter", "typo", "backspace")]
    naive_ms = [n[1] for n in res.naive]
    out = {
        "keys": len(rows), "p50": pct(lat, .5), "p90": pct(lat, .9), "p99": pct(lat, .99),
        "n_p50": pct(naive_ms, .5), "n_p90": pct(naive_ms, .9), "n_p99": pct(naive_ms, .99),
        "runs": len(runs),
        "prefill_med": statistics.median([r.prefill for r in runs]) if runs else float("nan"),
        "prefill_eol_med": statistics.median([r.prefill for r in typing]) if typing else float("nan"),
        "prompt_med": statistics.median([n[2] for n in res.naive]) if res.naive else float("nan"),
        "reused_med": statistics.median([r.reused for r in runs]) if runs else float("nan"),
        "gen_med": statistics.median([r.generated for r in runs]) if runs else float("nan"),
        "n_gen_med": statistics.median([n[3] for n in res.naive]) if res.naive else float("nan"),
        "no_model": sum(r.source in ("typingThrough", "cache") for r in rows) / max(len(rows), 1),
        "shown": sum(r.shown for r in rows) / max(len(rows), 1),
        "probe_max": max(res.probes_ms) if res.probes_ms else float("nan"),
        "probe_p50": pct(res.probes_ms, .5),
    }
    out["r50"] = out["p50"] / out["n_p50"] if naive_ms else float("nan")
    out["r99"] = out["p99"] / out["n_p99"] if naive_ms else float("nan")
    return out


def print_detail(res: Result, s: dict) -> None:
    runs = [r for r in res.rows if r.source == "model" and r.prompt]
    by = {}
    for r in res.rows:
        by[r.source] = by.get(r.source, 0) + 1
    late = sum(r.source == "model" and not r.prompt for r in res.rows)
    if late:
        by["model, no answer within the request timeout"] = late
        by["model"] -= late
    print(f"  {s['keys']} keystrokes asked: " + ", ".join(f"{k} {v}" for k, v in sorted(by.items())) +
          f"; suggestion shown after {100 * s['shown']:.0f}%")
    if runs:
        dec = [r.decode_ms / r.generated for r in runs if r.generated > 1]
        print(f"  model runs: prefill tokens median {s['prefill_med']:.0f} (typing at line end: "
              f"{s['prefill_eol_med']:.0f}), reused median {s['reused_med']:.0f}, generated median "
              f"{s['gen_med']:.0f}, prefill ms median {statistics.median([r.prefill_ms for r in runs]):.0f}"
              + (f", decode {statistics.median(dec):.1f} ms/token" if dec else ""))
        stops = {}
        for r in runs:
            stops[r.stop] = stops.get(r.stop, 0) + 1
        print("  stop reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(stops.items())))
        big = [r for r in runs if r.prefill > 16]
        if big:
            print("  prefills over 16 tokens: " + ", ".join(f"#{r.index} {r.label} {r.prefill}" for r in big[:12]))
    print(f"  server: keystroke->suggestion p50 {s['p50']:.0f} ms, p90 {s['p90']:.0f}, p99 {s['p99']:.0f}; "
          f"peak RSS {res.rss_mb or float('nan'):.0f} MB")
    if res.naive:
        print(f"  naive ({len(res.naive)} of the same requests): p50 {s['n_p50']:.0f} ms, p90 {s['n_p90']:.0f}, "
              f"p99 {s['n_p99']:.0f}; prompt tokens median {s['prompt_med']:.0f}, generated median "
              f"{s['n_gen_med']:.0f}; prompt length mismatches vs server: {res.prompt_mismatch}")
    if res.prefetch:
        p = res.prefetch
        print(f"  prefetches (at {sum(r.label in ARRIVALS for r in res.rows)} arrivals): {p['received']} received, "
              f"{p['modelRuns']} ran to the end, {p['cancelled']} cancelled by a keystroke, {p['skipped']} skipped")
    if res.probes_ms:
        print(f"  other requests during a {res.probe_generation_ms:.0f} ms generation: {len(res.probes_ms)} "
              f"answered, p50 {s['probe_p50']:.1f} ms, max {s['probe_max']:.1f} ms")


def table(results: list[tuple[Result, dict]]) -> str:
    head = ("| model | dtype | max new tokens | keys | p50 ms (naive) | p90 ms (naive) | p99 ms (naive) | p50 ratio | p99 ratio "
            "| median prefill tokens: line end / all (naive prompt) | no model | peak RSS MB | other requests max ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for res, s in results:
        lines.append(
            f"| {res.label} | {res.dtype} | {res.max_new} | {s['keys']} | {s['p50']:.0f} ({s['n_p50']:.0f}) | {s['p90']:.0f} "
            f"({s['n_p90']:.0f}) | {s['p99']:.0f} ({s['n_p99']:.0f}) | {s['r50']:.2f}x | {s['r99']:.2f}x | "
            f"{s['prefill_eol_med']:.0f} / {s['prefill_med']:.0f} ({s['prompt_med']:.0f}) | "
            f"{100 * s['no_model']:.0f}% | {res.rss_mb or float('nan'):.0f} | {s['probe_max']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--model", action="append",
                    help="default | codegen-350M | tiny_starcoder | a model folder (repeatable; "
                         "default: all three)")
    ap.add_argument("--dtype", action="append", choices=["float32", "bfloat16"],
                    help="repeatable; default: both")
    ap.add_argument("--keys", type=int, default=0,
                    help="keystrokes per session (default: 60 for the default model, 20 for the random shapes; "
                         "more gives steadier tails)")
    ap.add_argument("--max-new-tokens", type=int, default=None,
                    help="suggestion length limit, single- and multi-line, for server and baseline alike "
                         "(default: the server's own single-line / multi-line limits for a trained model; "
                         f"{RANDOM_MAX_NEW} for the random shapes, whose gibberish never ends a block)")
    ap.add_argument("--context-tokens", type=int, default=2048,
                    help="prompt + suggestion budget for server and baseline (0: the model's whole context; "
                         "tiny_starcoder's 8192 makes each baseline request take minutes on a small CPU)")
    ap.add_argument("--naive-budget", type=float, default=20.0, help="seconds of baseline runs per model/dtype")
    ap.add_argument("--naive-min", type=int, default=2, help="baseline requests per model/dtype, at least")
    ap.add_argument("--pace", type=float, default=1.0, help="scale of the think times (0: none)")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads for server and baseline alike (sets INFILL_LS_THREADS; default: the "
                         "server's choice)")
    ap.add_argument("--prefill-dtype", choices=["auto", "model"], default="auto",
                    help="the server's prefillDtype (auto: bf16 autocast for long fp32 prefills where the CPU has bf16)")
    ap.add_argument("--no-prefetch", action="store_true",
                    help="send no infill/prefetch at jumps and switches (the session and its look times are the same)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke run: default model only, fp32, few keys")
    ap.add_argument("--csv", help="write every keystroke's row here")
    args = ap.parse_args(argv)
    if args.quick:
        args.model = args.model or ["default"]
        args.dtype = args.dtype or ["float32"]
        args.keys = args.keys or 30
        args.naive_budget, args.naive_min, args.pace = min(args.naive_budget, 10), 3, 0.3
    models = args.model or ["default", "codegen-350M", "tiny_starcoder"]
    dtypes = args.dtype or ["float32", "bfloat16"]

    from bench.typing_models import resolve
    from inference.worker import inference_threads

    if args.threads:
        os.environ["INFILL_LS_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(inference_threads())  # the baseline runs on as many threads as the server

    results = []
    for name in models:
        label, source = resolve(name)
        keys = args.keys or (60 if name == "default" else 20)
        session = build_session(keys, seed=args.seed, pace=args.pace)
        for dtype in dtypes:
            max_new = args.max_new_tokens or (RANDOM_MAX_NEW if "random" in label else 0)
            options = {"model": source, "device": "cpu", "dtype": dtype, "logLevel": "info",
                       "prefillDtype": args.prefill_dtype,
                       "contextTokens": args.context_tokens}
            if max_new:
                options.update(maxNewTokensSingleLine=max_new, maxNewTokensMultiLine=max_new)
            print(f"== {label}, {dtype}: {len(session.edits)} keystrokes")
            res = Result(label, dtype, max_new=f"{max_new}" if max_new else
                         f"{DEFAULTS.max_new_tokens_single_line}/{DEFAULTS.max_new_tokens_multi_line}")
            if not asyncio.run(replay(session, options, res, quiet=False, prefetch=not args.no_prefetch)):
                continue
            run_naive(session, res, source, dtype, options, args.naive_budget, args.naive_min, args.seed)
            s = summarize(res)
            print_detail(res, s)
            results.append((res, s))
            if args.csv:
                write_csv(args.csv, res)
    print()
    print(f"threads {torch.get_num_threads()}, context tokens {args.context_tokens or 'model limit'}; latency = didChange sent -> inline completion answer; "
          "naive = transformers generate on the same prompt ids, no reuse")
    print(table(results))
    return 0


def write_csv(path: str, res: Result) -> None:
    import csv

    new = not Path(path).exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["model", "dtype", *Row.__dataclass_fields__])
        for r in res.rows:
            w.writerow([res.label, res.dtype, *(getattr(r, k) for k in Row.__dataclass_fields__)])


if __name__ == "__main__":
    sys.exit(main())
