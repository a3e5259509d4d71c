"""Safety: no code from a checkpoint ever runs (no pickle beyond torch.load(weights_only=True), no
remote code), --tcp listens on loopback unless told otherwise and says so, configured paths are
not followed outside what the user configured, and document text stays out of the logs unless
the log level asks for it."""

from __future__ import annotations

import ast
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from inference.loader import ModelError, load_model
from lsp_server import serve
from tests.reliability_client import ROOT, RawClient

SHIPPED = [ROOT / "inference", ROOT / "lsp_server"]


class Payload:
    """Unpickling this calls open(marker, "w"): a harmless stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_payload_in_pytorch_model_bin_is_refused_and_never_runs(tmp_path, starcoder_bin):
    folder = shutil.copytree(starcoder_bin, tmp_path / "evil")
    marker = tmp_path / "pwned"
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state["transformer.wte.weight"] = Payload(marker)  # the rest stays a valid checkpoint
    torch.save(state, folder / "pytorch_model.bin")
    torch.load(folder / "pytorch_model.bin", weights_only=False)  # the payload is live: unpickling runs it
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ModelError) as info:
        load_model(folder)
    assert "pytorch_model.bin" in str(info.value)
    assert not marker.exists()
    # the same through the real server: the load fails with a message, the server stays up
    with RawClient() as client:
        client.initialize({"model": str(folder)})
        s = client.wait_model()
        assert s["model"]["status"] == "failed" and "pytorch_model.bin" in s["model"]["error"]
    assert not marker.exists()


def test_remote_code_in_a_checkpoint_folder_is_never_imported(tmp_path, starcoder):
    marker = tmp_path / "pwned"
    folder = shutil.copytree(starcoder, tmp_path / "remote")
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (folder / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig",
                       "AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(cfg))
    assert load_model(folder).family == "gpt_bigcode"  # our own code for a known model_type
    cfg["model_type"] = "evil"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="unsupported model_type 'evil'"):
        load_model(folder)
    assert not marker.exists()


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            yield node, name


def test_shipped_code_has_no_pickle_no_remote_code_and_only_weights_only_torch_load():
    problems = []
    for root in SHIPPED:
        for path in root.rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                    if any(n and n.split(".")[0] in ("pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve")
                           for n in names):
                        problems.append(f"{path}: imports a pickle-like module")
            for node, name in _calls(tree):
                kwargs = {k.arg: k.value for k in node.keywords}
                if "trust_remote_code" in kwargs and not (isinstance(kwargs["trust_remote_code"], ast.Constant)
                                                          and kwargs["trust_remote_code"].value is False):
                    problems.append(f"{path}:{node.lineno}: trust_remote_code")
                if name == "load" and ast.unparse(node.func).startswith("torch"):
                    wo = kwargs.get("weights_only")
                    if not (isinstance(wo, ast.Constant) and wo.value is True):
                        problems.append(f"{path}:{node.lineno}: torch.load without weights_only=True")
                if name in ("eval", "exec") and isinstance(node.func, ast.Name):
                    problems.append(f"{path}:{node.lineno}: {name}()")
    assert not problems, problems


def test_a_weight_index_pointing_outside_the_model_folder_is_refused(tmp_path, starcoder):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(starcoder / "model.safetensors", outside / "model.safetensors")
    for target in ["../outside/model.safetensors", str(outside / "model.safetensors")]:
        folder = tmp_path / f"indexed{len(target)}"
        shutil.copytree(starcoder, folder)
        (folder / "model.safetensors").unlink()
        from safetensors import safe_open

        with safe_open(str(outside / "model.safetensors"), "pt") as f:
            names = list(f.keys())
        (folder / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {}, "weight_map": {n: target for n in names}}))
        with pytest.raises(ModelError, match="outside the model folder"):
            load_model(folder)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a LISTEN socket on `port`, from /proc/net/tcp{,6} (Linux)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            addr, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":
                found.add(addr)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_tcp_without_an_address_binds_loopback_only():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lsp_server.serve", "--tcp", str(port)], cwd=ROOT,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        line = proc.stderr.readline()
        assert f"127.0.0.1:{port}" in line and "loopback only" in line
        deadline = time.monotonic() + 15
        while not _listening_addresses(port):
            assert time.monotonic() < deadline and proc.poll() is None, "server did not listen"
            time.sleep(0.05)
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1, and nothing else
    finally:
        proc.kill()
        proc.wait(5)


@pytest.mark.parametrize("arg,host,loopback", [("7001", "127.0.0.1", True), ("localhost:7002", "localhost", True),
                                               ("[::1]:7003", "::1", True), ("0.0.0.0:7004", "0.0.0.0", False),
                                               ("192.168.1.5:7005", "192.168.1.5", False)])
def test_tcp_listens_where_asked_and_says_whether_that_is_loopback(monkeypatch, capsys, arg, host, loopback):
    bound = []
    monkeypatch.setattr("lsp_server.server.InfillServer.start_tcp", lambda self, h, p: bound.append((h, p)))
    assert serve.main(["--tcp", arg]) == 0
    assert bound == [(host, int(arg.rsplit(":", 1)[-1]))]
    said = capsys.readouterr().err
    assert f"{host}:" in said
    assert ("loopback only" in said) == loopback and ("NOT loopback" in said) == (not loopback)


MARKER = "zqSECRETzq"
DOC = f"def {MARKER}_fn(a, b):\n    {MARKER}_var = a\n    return {MARKER}"


def _exercise(client: RawClient, uri: str) -> None:
    client.open(uri, DOC)
    client.change(uri, 2, [{"range": {"start": {"line": 2, "character": 0}, "end": {"line": 2, "character": 0}},
                            "text": f"    x = {MARKER}\n"}])
    for line, col in ((2, 4 + 4 + len(MARKER)), (3, 10 + len(MARKER)), (1, 4), (3, 10_000)):
        client.inline(uri, line, col, timeout=20)
        client.request("textDocument/completion", {"textDocument": {"uri": uri},
                                                   "position": {"line": line, "character": col}}, timeout=20)
    client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 9},
                                             "contentChanges": [{"range": {"start": {"line": 0}}, "text": MARKER}]})
    client.stats()


@pytest.mark.parametrize("level", ["info", "debug"])
def test_document_text_stays_out_of_every_log_below_trace(tmp_path, starcoder, level):
    log_file = tmp_path / "infill.log"
    client = RawClient(None, ["--log-level", level], env={"OMP_NUM_THREADS": "1"})
    try:
        client.initialize({"model": str(starcoder), "logLevel": level, "logFile": str(log_file),
                           "maxNewTokensSingleLine": 4, "maxNewTokensMultiLine": 4})
        assert client.wait_model()["model"]["status"] == "ready"
        _exercise(client, "file:///w/secret.py")
        answered = client.request("textDocument/completion", {"textDocument": {"uri": "file:///w/secret.py"},
                                                              "position": {"line": 2, "character": 16 + len(MARKER)}})
    finally:
        client.close()
    logs = {"stderr": client.stderr, "client": "\n".join(client.log_messages()),
            "file": log_file.read_text() if log_file.exists() else ""}
    assert logs["client"] and logs["file"]  # the logs are there, and busy
    assert not [where for where, text in logs.items() if MARKER in text], \
        [line for text in logs.values() for line in text.splitlines() if MARKER in line][:5]
    assert "result" in answered


def test_at_trace_level_the_prompt_text_is_logged_to_the_client(starcoder):
    """The other side of the test above: the check can see the text when it is there."""
    client = RawClient(None, env={"OMP_NUM_THREADS": "1"})
    try:
        client.initialize({"model": str(starcoder), "logLevel": "trace", "maxNewTokensMultiLine": 4,
                           "maxNewTokensSingleLine": 4})
        assert client.wait_model()["model"]["status"] == "ready"
        _exercise(client, "file:///w/traced.py")
    finally:
        client.close()
    assert any(MARKER in m for m in client.log_messages())
