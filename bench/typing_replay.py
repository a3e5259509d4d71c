"""Replay a real file typed character by character through `infill-ls serve` over stdio, as an
editor would: one incremental didChange per keystroke, then an (Automatic) inline completion request.

Prints keystroke-to-suggestion latency (p50/p95/p99, from sending the didChange to the answer),
prefill tokens per model run beside the prompt tokens a server without KV reuse would prefill for
the same request (the naive baseline, same run), reused tokens, the share of keystrokes answered
without the model (typing through the shown suggestion, or the result cache), and the server's peak
memory.

    python bench/typing_replay.py --model PATH [--file /usr/lib/python3.11/textwrap.py]
    python bench/typing_replay.py --random 4x128     # a random StarCoder-like checkpoint (needs transformers)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import textwrap
import time
from pathlib import Path

from lsprotocol import types as t
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parent.parent
TIMING = re.compile(r"completion #(\d+)\.0 .*?prefill_tokens=(\d+) reused_tokens=(\d+) prompt_tokens=(\d+)"
                    r".*?decode_ms=([\d.]+) tokens=(\d+)")


def pct(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def random_checkpoint(shape: str, where: Path, family: str = "starcoder") -> str:
    from tests.checkpoints import make_codegen, make_gpt_bigcode
    from tests.server_harness import favour_printable_tokens

    layers, width = (int(x) for x in shape.lower().split("x"))
    heads = max(1, width // 64)
    if family == "codegen":
        heads = max(4, heads - heads % 4)  # CodeGen's fused qkv layout splits heads in 4 groups
        folder = make_codegen(where, n_layer=layers, n_embd=width, n_head=heads, n_positions=2048)
    else:
        folder = make_gpt_bigcode(where, n_layer=layers, n_embd=width, n_head=heads, n_positions=2048)
    favour_printable_tokens(folder)
    return str(folder)


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def replay(args) -> int:
    source = Path(args.file).read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    start_line = min(args.start_line, len(lines) - 1)
    # type about `--chars` characters from the beginning of `--start-line` (the cursor deep in the
    # file), up to the end of a line: as when writing new lines, the cursor stays at a line end
    start = sum(len(x) for x in lines[:start_line])
    end = source.find("\n", start + args.chars)
    end = len(source) if end < 0 else end
    typed = source[start:end]
    text = source[:start] + source[end:]

    client = LanguageClient("typing-replay", "1")
    logs: list[str] = []
    messages: list[str] = []
    client.feature(t.WINDOW_LOG_MESSAGE)(lambda params: logs.append(params.message))
    client.feature(t.WINDOW_SHOW_MESSAGE)(lambda params: messages.append(params.message))
    client.feature(t.WINDOW_WORK_DONE_PROGRESS_CREATE)(lambda params: None)
    client.feature(t.PROGRESS)(lambda params: None)
    await client.start_io(sys.executable, "-m", "lsp_server.serve")
    options = {"logLevel": "info", "debounceMs": 0, "rateLimit": 1000}
    if args.model:
        options["model"] = args.model
    if args.context_tokens:
        options["contextTokens"] = args.context_tokens
    await client.initialize_async(t.InitializeParams(
        capabilities=t.ClientCapabilities(window=t.WindowClientCapabilities(work_done_progress=True)),
        initialization_options=options))
    client.initialized(t.InitializedParams())

    async def stats():
        return await client.workspace_execute_command_async(t.ExecuteCommandParams(command="infill.stats"))

    t0 = time.monotonic()
    while (s := await stats())["model"]["status"] not in ("ready", "failed"):
        await asyncio.sleep(0.1)
    if s["model"]["status"] != "ready":
        print("model failed to load:", s["model"]["error"], file=sys.stderr)
        return 1
    print(f"model: {s['model']['source']} ({s['model']['family']}, layout {s['model']['layout']}, "
          f"context {s['model']['maxContext']}), loaded in {time.monotonic() - t0:.1f} s")

    uri = Path(args.file).resolve().as_uri()
    client.text_document_did_open(t.DidOpenTextDocumentParams(
        t.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    line, col = start_line, 0
    latencies = []
    version = 1
    for ch in typed:
        version += 1
        pos = t.Position(line, col)
        t_key = time.perf_counter()
        client.text_document_did_change(t.DidChangeTextDocumentParams(
            t.VersionedTextDocumentIdentifier(version=version, uri=uri),
            [t.TextDocumentContentChangePartial(range=t.Range(pos, pos), text=ch)]))
        if ch == "\n":
            line, col = line + 1, 0
        else:
            col += len(ch.encode("utf-16-le")) // 2
        await client.text_document_inline_completion_async(t.InlineCompletionParams(
            text_document=t.TextDocumentIdentifier(uri), position=t.Position(line, col),
            context=t.InlineCompletionContext(trigger_kind=t.InlineCompletionTriggerKind.Automatic)))
        latencies.append((time.perf_counter() - t_key) * 1000)
        if args.pace_ms:
            await asyncio.sleep(args.pace_ms / 1000)

    s = await stats()
    rss = peak_rss_mb(client._server.pid) if client._server else None
    await client.shutdown_async(None)
    client.exit(None)
    await asyncio.sleep(0.2)
    await client.stop()

    runs = [tuple(map(float, m.groups()[1:])) for m in map(TIMING.search, logs) if m]
    prefill = [r[0] for r in runs]
    reused = [r[1] for r in runs]
    prompt = [r[2] for r in runs]
    decode_per_token = [r[3] / r[4] for r in runs if r[4] > 0]
    n = len(typed)
    served = s["served"]
    without = served.get("typingThrough", 0) + served.get("cache", 0)
    print(f"file: {args.file}, typed {n} characters from line {start_line + 1}")
    print(f"keystroke -> suggestion latency: p50 {pct(latencies, .5):.1f} ms, p95 {pct(latencies, .95):.1f} ms, "
          f"p99 {pct(latencies, .99):.1f} ms, max {max(latencies):.1f} ms")
    print(f"model runs: {len(runs)} of {n} keystrokes; decode {statistics.median(decode_per_token):.1f} ms/token"
          if decode_per_token else f"model runs: {len(runs)}")
    if runs:
        print(f"prefill tokens per model run: median {statistics.median(prefill):.0f}, mean {statistics.mean(prefill):.1f}"
              f"   | without KV reuse (naive, same prompts): median {statistics.median(prompt):.0f}, "
              f"mean {statistics.mean(prompt):.1f}  -> {statistics.mean(prompt) / max(statistics.mean(prefill), 1e-9):.1f}x")
        print(f"reused tokens per model run: median {statistics.median(reused):.0f}, total {sum(reused):.0f}")
    print(f"answered without the model: {without} of {n} ({100 * without / n:.0f}%): typing-through "
          f"{served.get('typingThrough', 0)}, cache {served.get('cache', 0)}; suggestions shown "
          f"{s['suggestionsShown']}")
    if rss:
        print(f"server peak RSS: {rss:.0f} MB")
    if args.slowest:
        worst = sorted(range(n), key=lambda i: -latencies[i])[:args.slowest]
        print("slowest keystrokes:", ", ".join(f"#{i} {typed[i]!r} {latencies[i]:.0f} ms" for i in sorted(worst)))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model folder or hub id (default: the shipped default model)")
    ap.add_argument("--random", metavar="LAYERSxWIDTH", help="build a random checkpoint instead (needs transformers)")
    ap.add_argument("--random-family", choices=["starcoder", "codegen"], default="starcoder",
                    help="StarCoder-like (FIM, suffix-first prompts) or CodeGen-like (left to right)")
    ap.add_argument("--file", default=str(Path(textwrap.__file__)), help="file to type (default: stdlib textwrap.py)")
    ap.add_argument("--start-line", type=int, default=300, help="1-based line where typing starts (deep in the file)")
    ap.add_argument("--chars", type=int, default=300, help="characters to type")
    ap.add_argument("--pace-ms", type=float, default=0.0, help="pause after each answer (human pace)")
    ap.add_argument("--context-tokens", type=int, default=0)
    ap.add_argument("--slowest", type=int, default=0, help="list the N slowest keystrokes")
    args = ap.parse_args(argv)
    args.start_line = max(0, args.start_line - 1)
    if not args.random:
        return asyncio.run(replay(args))
    sys.path.insert(0, str(ROOT))  # bench.* and tests.* (the random checkpoint builders)
    from bench.scratch import scratch_dir

    with scratch_dir("infill-replay-") as tmp:
        args.model = random_checkpoint(args.random, tmp / "ckpt", args.random_family)
        return asyncio.run(replay(args))


if __name__ == "__main__":
    sys.exit(main())
