"""A hub id (`org/name`) is resolved through huggingface_hub's local cache, offline: a fake cache folder
laid out as huggingface_hub writes it (hub/models--org--name/refs/main naming a snapshot folder) under
a temporary HF_HOME, with HF_HUB_OFFLINE=1, so nothing reaches the network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from lsprotocol import types as t

from tests.checkpoints import make_gpt_bigcode
from tests.server_harness import Doc, running_server, stats, wait_model

pytest.importorskip("huggingface_hub")

REPO_ID = "infill-test/tiny-starcoder"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory):
    """(HF_HOME, the checkpoint folder the cache's snapshot was copied from)."""
    root = tmp_path_factory.mktemp("hub")
    source = make_gpt_bigcode(root / "source", seed=5)
    repo = root / "hf_home" / "hub" / ("models--" + REPO_ID.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    shutil.copytree(source, repo / "snapshots" / COMMIT)
    return root / "hf_home", source


def cli(hf_home, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    env.pop("HUGGINGFACE_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-m", "lsp_server.cli", "complete", *args], capture_output=True,
                          text=True, timeout=180, env=env)


def test_cli_resolves_a_hub_id_from_the_local_cache_and_completes_as_from_the_folder(hub_home):
    hf_home, source = hub_home
    args = ("--prefix", "def add(a, b):", "--max-new-tokens", "8", "--json")
    by_id = cli(hf_home, "--model", REPO_ID, *args)
    assert by_id.returncode == 0, by_id.stderr
    by_folder = cli(hf_home, "--model", str(source), *args)
    assert by_folder.returncode == 0, by_folder.stderr
    a, b = json.loads(by_id.stdout), json.loads(by_folder.stdout)
    assert a["family"] == "gpt_bigcode" and a["token_ids"] == b["token_ids"] and a["prompt_tokens"] > 0


def test_a_hub_id_missing_from_the_cache_offline_says_how_to_get_it(hub_home):
    hf_home, _ = hub_home
    missing = "infill-test/not-downloaded"
    proc = cli(hf_home, "--model", missing, "--prefix", "x")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert missing in proc.stderr and f"hf download {missing}" in proc.stderr


async def test_the_server_loads_a_hub_id_from_the_local_cache(hub_home, monkeypatch):
    hf_home, _ = hub_home
    monkeypatch.setenv("HF_HOME", str(hf_home))  # the server process inherits it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    async with running_server({"model": REPO_ID, "maxNewTokensSingleLine": 4, "maxNewTokensMultiLine": 4}) as client:
        s = await wait_model(client, timeout=60)
        assert s["model"]["status"] == "ready", s["model"]
        assert s["model"]["source"] == REPO_ID and s["model"]["family"] == "gpt_bigcode"
        doc = Doc(client, "file:///w/hub.py", "def f(x):\n    return ")
        await doc.inline(len(doc.text))
        assert (await stats(client))["modelRuns"] == 1
        assert not [m for m in client.messages if m.type == t.MessageType.Error]
