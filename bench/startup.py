"""Start-up row (issue 22): `infill-ls serve` over stdio with no options and the shipped model, from
the process spawn to `initialize` answered, to the model ready (polling `infill.stats`), to the first
non-empty inline completion after `def add(a, b):`, with inductor's on-disk cache warm and cold (a
fresh TORCHINDUCTOR_CACHE_DIR); the server's RSS once idle after that completion and its peak.

    .venv/bin/python bench/startup.py                       # this tree, 3 warm + 1 cold start
    .venv/bin/python bench/startup.py --before /tmp/h22-before   # and an older tree (git worktree) beside it
    .venv/bin/python bench/startup.py --model FOLDER         # another checkpoint (e.g. tiny_starcoder-shaped)
    .venv/bin/python bench/startup.py --breakdown            # in-process: imports, tokenizer, weights, warm-up

Each start is a fresh process; the warm rows run after one start that fills the cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsp_client import LspClient  # bench/lsp_client.py (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "import os\n\n\ndef add(a, b):\n"


def one_start(env: dict, model: str | None, deadline: float = 180.0) -> dict:
    c = LspClient([sys.executable, "-m", "lsp_server.serve"], env, cwd=env.get("_CWD"))
    out = {}
    try:
        options = {"model": model} if model else None
        c.request("initialize", {"processId": os.getpid(), "rootUri": None, "initializationOptions": options,
                                 "capabilities": {"textDocument": {"inlineCompletion": {}}}})
        out["initialize"] = time.monotonic() - c.t0
        c.notify("initialized", {})
        uri = "file:///tmp/infill-startup-bench/add.py"
        c.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                           "text": SOURCE}})
        end = c.t0 + deadline
        while time.monotonic() < end:  # ask as an editor does: again until something comes back
            items = c.request("textDocument/inlineCompletion", {
                "textDocument": {"uri": uri}, "position": {"line": 3, "character": 0},
                "context": {"triggerKind": 2}})
            items = items.get("items", []) if isinstance(items, dict) else (items or [])
            if "ready" not in out:
                stats = c.request("workspace/executeCommand", {"command": "infill.stats", "arguments": []})
                if stats["model"]["status"] == "ready":
                    out["ready"] = time.monotonic() - c.t0
                    out["decode_at_ready"] = stats["model"].get("decode", "-")
            if any(i.get("insertText", "").strip() for i in items):
                out["first"] = time.monotonic() - c.t0
                out.setdefault("ready", out["first"])
                break
            time.sleep(0.02)
        else:
            raise TimeoutError(f"no non-empty suggestion within {deadline} s")
        while time.monotonic() < end:  # the background compile (if any) done: it also fills the cache
            stats = c.request("workspace/executeCommand", {"command": "infill.stats", "arguments": []})
            if stats["model"].get("decode") != "compiling":
                break
            time.sleep(0.1)
        out["compiled"] = time.monotonic() - c.t0
        out["decode_later"] = stats["model"].get("decode", "-")
        time.sleep(float(env.get("_IDLE_S", "8")))  # settle
        out["idle_rss"], out["peak_rss"] = c.rss_mb()
    finally:
        c.close()
    return out


def run_tree(label: str, tree: Path, model: str | None, warm_runs: int, cold_runs: int, idle_s: float) -> list[str]:
    base = dict(os.environ, PYTHONPATH=str(tree), _CWD=str(tree), _IDLE_S=str(idle_s))
    base.pop("INFILL_LS_NO_COMPILE", None)
    rows = []
    cache = Path(tempfile.mkdtemp(prefix="infill-startup-cache-"))
    try:
        results = {"cold": [], "warm": []}
        for i in range(cold_runs):
            fresh = Path(tempfile.mkdtemp(prefix="infill-startup-cold-"))
            try:
                results["cold"].append(one_start(dict(base, TORCHINDUCTOR_CACHE_DIR=str(fresh)), model))
            finally:
                shutil.rmtree(fresh, ignore_errors=True)
        one_start(dict(base, TORCHINDUCTOR_CACHE_DIR=str(cache), _IDLE_S="1"), model)  # fill the cache
        for i in range(warm_runs):
            results["warm"].append(one_start(dict(base, TORCHINDUCTOR_CACHE_DIR=str(cache)), model))
        for kind, rs in results.items():
            if not rs:
                continue
            med = {k: statistics.median(r[k] for r in rs)
                   for k in ("initialize", "ready", "first", "compiled", "idle_rss", "peak_rss")}
            spread = f"{min(r['first'] for r in rs):.2f}-{max(r['first'] for r in rs):.2f}"
            rows.append(f"| {label} | {kind} | {len(rs)} | {med['initialize']:.2f} | {med['ready']:.2f} | "
                        f"{med['first']:.2f} ({spread}) | {rs[-1]['decode_at_ready']} -> {rs[-1]['decode_later']} "
                        f"at {med['compiled']:.2f} | "
                        f"{med['idle_rss']:.0f} | {med['peak_rss']:.0f} |")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return rows


def breakdown(model: str | None) -> None:
    """In-process timing of the pieces of a load (this tree), and RSS after each."""
    def rss() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
        return 0.0

    marks = [("python", 0.0, rss())]
    t = time.monotonic()

    def mark(name):
        nonlocal t
        now = time.monotonic()
        marks.append((name, now - t, rss()))
        t = now

    import torch  # noqa: F401
    mark("import torch")
    import lsp_server.server  # noqa: F401
    mark("import lsp_server.server (pygls, lsprotocol, the rest)")
    from inference import loader
    from inference.acceleration import choose
    from inference.engine import Engine
    from inference.tokenizer_files import load_tokenizer
    from inference.weights import WeightMap, read_checkpoint
    from inference.worker import _warm_up, kv_budget_for, set_inference_threads
    mark("import inference.*")
    set_inference_threads()
    folder = loader.resolve_source(model)
    tok = load_tokenizer(folder)
    mark("tokenizer")
    tensors, origin = read_checkpoint(folder)
    mark("read weights")
    cfg = loader.read_config(folder)
    fam = cfg.get("infill_ls_family") or loader.detect_family(cfg, tok, folder)
    dev, dt = torch.device("cpu"), torch.float32
    acc = choose(dev, dt, prefill_dtype="auto")
    eager = type(acc)(decode_threads=acc.decode_threads, prefill_threads=acc.prefill_threads,
                      prefill_autocast=acc.prefill_autocast)
    weights = WeightMap(tensors, origin, dt, dev)
    cls = loader.MODEL_CLASSES[fam]
    m = cls(cls.Config.from_hf(cfg), weights, eager)
    weights.finish()
    lm = loader.LanguageModel(fam, cfg, tok, m, dev, dt, folder, eager)
    mark("build model (eager ops)")
    engine = Engine(lm, kv_budget_bytes=kv_budget_for(lm, 256 << 20), acceleration=eager)
    _warm_up(engine, lm)
    mark("warm-up, eager")
    m2 = cls(cls.Config.from_hf(cfg), WeightMap(*read_checkpoint(folder), dt, dev), acc)
    lm2 = loader.LanguageModel(fam, cfg, tok, m2, dev, dt, folder, acc)
    _warm_up(Engine(lm2, kv_budget_bytes=kv_budget_for(lm2, 256 << 20), acceleration=acc), lm2)
    mark("second model, warm-up compiled (inductor cache as it is)")
    print("| piece | s | RSS after (MB) |\n|---|---|---|")
    for name, s, r in marks:
        print(f"| {name} | {s:.2f} | {r:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, help="an older tree (git worktree) to run beside this one")
    ap.add_argument("--model", help="a checkpoint folder (default: the shipped model)")
    ap.add_argument("--warm", type=int, default=3)
    ap.add_argument("--cold", type=int, default=1)
    ap.add_argument("--idle", type=float, default=8.0, help="seconds after the first suggestion before RSS is read")
    ap.add_argument("--breakdown", action="store_true")
    args = ap.parse_args()
    if args.breakdown:
        breakdown(args.model)
        return
    print(f"model: {args.model or 'shipped default'}; CPU cores: {len(os.sched_getaffinity(0))}")
    print("| tree | inductor cache | starts | initialize (s) | model ready (s) | first suggestion (s) | decode ops (s) | "
          "idle RSS (MB) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    trees = [("before", args.before)] if args.before else []
    trees.append(("this tree", ROOT))
    for label, tree in trees:
        for row in run_tree(label, tree, args.model, args.warm, args.cold, args.idle):
            print(row, flush=True)
    binary = llama_server_binary()
    if binary is None:
        print("llama-server: not on PATH and not built in ~/.cache/infill-ls-ci (bash .ci/llama-server.sh): no row")
    else:
        for row in llama_rows(binary, args.model, args.warm):
            print(row, flush=True)


def llama_server_binary() -> Path | None:
    """llama-server on PATH, else the one .ci/llama-server.sh builds."""
    found = shutil.which("llama-server")
    cache = Path(os.environ.get("INFILL_LLAMA_SERVER_DIR", Path.home() / ".cache/infill-ls-ci/llama-server"))
    built = cache / "build" / "bin" / "llama-server"
    return Path(found) if found else built if built.is_file() else None


def llama_rows(binary: Path, model: str | None, runs: int) -> list[str]:
    """llama-server on the same model written as GGUF (f32, infill-ls's exporter): spawn to the first
    non-empty answer to the same prompt (suffix-first FIM, as infill-ls sends it), then idle and peak RSS."""
    import json
    import socket
    import subprocess
    import urllib.error
    import urllib.request

    sys.path.insert(0, str(ROOT))
    from inference.gguf_export import export_gguf

    folder = Path(tempfile.mkdtemp(prefix="infill-startup-gguf-"))
    gguf = export_gguf(model, folder / "model-f32.gguf", "f32")
    body = json.dumps({"prompt": "<fim_prefix><fim_suffix><fim_middle>" + SOURCE, "n_predict": 24,
                       "temperature": 0, "cache_prompt": True}).encode()
    results = []
    try:
        for _ in range(runs):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            t0 = time.monotonic()
            proc = subprocess.Popen([str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
                                     "-c", "2048", "-t", str(len(os.sched_getaffinity(0)))],
                                    env=dict(os.environ, LD_LIBRARY_PATH=str(binary.parent)),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                while time.monotonic() - t0 < 60:
                    try:
                        request = urllib.request.Request(f"http://127.0.0.1:{port}/completion", body,
                                                         {"Content-Type": "application/json"})
                        with urllib.request.urlopen(request, timeout=10) as answer:
                            if json.loads(answer.read()).get("content", "").strip():
                                break
                    except (urllib.error.URLError, ConnectionError):
                        pass
                    time.sleep(0.005)
                first = time.monotonic() - t0
                time.sleep(2.0)
                status = Path(f"/proc/{proc.pid}/status").read_text()
                kb = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
                      if line.startswith(("VmRSS", "VmHWM"))}
                results.append((first, kb["VmRSS"] / 1024, kb["VmHWM"] / 1024))
            finally:
                proc.kill()
                proc.wait(10)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    first = statistics.median(r[0] for r in results)
    spread = f"{min(r[0] for r in results):.2f}-{max(r[0] for r in results):.2f}"
    return [f"| llama-server (GGUF f32) | - | {len(results)} | - | - | {first:.2f} ({spread}) | - | "
            f"{statistics.median(r[1] for r in results):.0f} | {statistics.median(r[2] for r in results):.0f} |"]


if __name__ == "__main__":
    main()
