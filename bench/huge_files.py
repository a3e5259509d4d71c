"""Keystroke latency and server memory in huge and minified files, beside a 10 KB one, in one run.

Runs `infill-ls serve` over stdio with the shipped model and no options, and opens four documents:
a 10 KB Python file, a 1 MB one-line minified JavaScript file, a 10 MB Python file and a 20 000-line
Python file. In each it types `--keys` characters at a few places (the end of the file; the middle,
which in the one-line file is inside its line): per keystroke one incremental didChange, then an
inlineCompletion request, waiting for the answer (plus a short think time) before the next key.
Latency is from sending the didChange to the answer. Before typing at a place it asks once there
without timing it (the editor's first request on arriving: the prompt's first prefill, the same size
in every file). After each document: the server's resident memory (VmRSS), then the document closes.

    nice -n 10 python bench/huge_files.py                 # the code in this checkout
    PYTHONPATH=/path/to/other/checkout python bench/huge_files.py   # another version of the server
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

from lsp_client import LspClient  # bench/lsp_client.py (this script's folder is on sys.path)

SERVER = [sys.executable, "-m", "lsp_server.cli", "serve"]


def documents() -> dict[str, tuple[str, str]]:
    rnd = random.Random(21)
    lines = [f"def func_{i}(x, y):\n    return x * {i} + y  # step {i}\n\n" for i in range(400_000)]
    python = "".join(lines)
    parts = ["var a=1;", "function f(x){return x+1}", "if(a){b(c[0])}", "o.p=\"q\";", "g(h,i);", "for(;;){}"]
    js, size = [], 0
    while size < 1_000_000:
        js.append(rnd.choice(parts))
        size += len(js[-1])
    twenty = "".join(lines[: 20_000 // 3 + 1])
    return {
        "10 KB": (python[:10_000], "python"),
        "1 MB one line": ("".join(js)[:1_000_000], "javascript"),
        "10 MB": (python[:10_000_000], "python"),
        "20 000 lines": (twenty[: twenty.index(f"def func_{20_000 // 3}")], "python"),
    }


def position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset)
    return line, offset - (text.rfind("\n", 0, offset) + 1)  # ASCII documents: columns are offsets


def type_at(client: Client, uri: str, text: str, offset: int, keys: int, version: int) -> tuple[list[float], int]:
    line, col = position(text, offset)
    client.request("textDocument/inlineCompletion", {  # arriving here (not timed)
        "textDocument": {"uri": uri}, "position": {"line": line, "character": col},
        "context": {"triggerKind": 2}})
    times = []
    for k in range(keys):
        version += 1
        t0 = time.perf_counter()
        client.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": version},
            "contentChanges": [{"range": {"start": {"line": line, "character": col},
                                          "end": {"line": line, "character": col}}, "text": "xyz_(1).a"[k % 9]}]})
        col += 1
        client.request("textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": {"line": line, "character": col},
            "context": {"triggerKind": 2}})
        times.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.05)
    return times, version


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keys", type=int, default=8)
    ap.add_argument("--label", default=os.environ.get("PYTHONPATH") or "this checkout")
    args = ap.parse_args()
    env = dict(os.environ)
    client = LspClient(SERVER, env)
    client.request("initialize", {"processId": os.getpid(), "capabilities": {}, "rootUri": None})
    client.notify("initialized", {})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        st = client.request("workspace/executeCommand", {"command": "infill.stats", "arguments": []})
        # steady state: no compile going on (a small model stays eager; a larger one swaps compiled in)
        if st["model"]["status"] == "ready" and st["model"].get("decode") != "compiling":
            break
        time.sleep(0.2)
    else:
        sys.exit("the model did not load")
    print(f"# huge files: {args.label}; shipped model, no options; {args.keys} keys per place")
    print("| document | place | keystroke p50 ms | max ms | open ms | server RSS MiB |")
    print("|---|---|---|---|---|---|")
    rows = {}
    for n, (name, (text, language)) in enumerate(documents().items()):
        uri = f"file:///bench/doc{n}.{'js' if language == 'javascript' else 'py'}"
        t0 = time.perf_counter()
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": language,
                                                                "version": 1, "text": text}})
        client.request("workspace/executeCommand", {"command": "infill.stats", "arguments": []})
        open_ms = (time.perf_counter() - t0) * 1000
        version, current = 1, text
        for place in ("end", "middle"):
            offset = len(current) if place == "end" else current.index("\n", len(current) // 2) if "\n" in current \
                else current.index("function", len(current) // 2)
            if place == "middle" and "\n" not in current:
                place = "inside the line"
            times, version = type_at(client, uri, current, offset, args.keys, version)
            typed = "".join("xyz_(1).a"[k % 9] for k in range(args.keys))
            current = current[:offset] + typed + current[offset:]
            rows[(name, place)] = (statistics.median(times), max(times))
            print(f"| {name} | {place} | {statistics.median(times):.1f} | {max(times):.1f} | {open_ms:.0f} | "
                  f"{client.rss_mb()[0]:.0f} |", flush=True)
        client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    base = [v for (name, _), v in rows.items() if name == "10 KB"]
    b50, bmax = statistics.mean(v[0] for v in base), statistics.mean(v[1] for v in base)
    print("\nratios to the 10 KB document (p50 / max):")
    for (name, place), (p50, mx) in rows.items():
        print(f"  {name}, {place}: {p50 / b50:.2f}x / {mx / bmax:.2f}x")
    client.close()


if __name__ == "__main__":
    main()
