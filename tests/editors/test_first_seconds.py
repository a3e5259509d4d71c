"""The first seconds as a new user has them, with each editor's minimal setup from the README (no
server options, infill-ls found on PATH, the shipped model): the options sent are a JSON object
or nothing, the server warns about nothing, the editor says the model is loading, and once it is
ready a suggestion comes at the cursor without another key."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import PYTHON, REPO

pytestmark = pytest.mark.editor

HERE = Path(__file__).parent
WARNING = 2  # MessageType: 1 error, 2 warning


def user_env(work: Path) -> dict:
    """The environment of a user who installed infill-ls: its bin folder on PATH."""
    bin_dir = str(Path(PYTHON).parent)
    env = dict(os.environ, INFILL_REPO=str(REPO), INFILL_WORKDIR=str(work), INFILL_RESULT=str(work / "result.json"))
    # the server as users run it (compiling allowed), with a model load 4 s slower (slow_load/), so the
    # keys are typed, and answered, while it loads
    env.pop("INFILL_LS_NO_COMPILE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE / "slow_load"), env.get("PYTHONPATH")) if p)
    env["INFILL_TEST_LOAD_DELAY_S"] = "4"
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def test_neovim_minimal_setup_sends_an_object_warns_nothing_and_asks_again_when_ready(nvim, tmp_path):
    env = user_env(tmp_path)
    proc = subprocess.run([nvim, "--headless", "-u", "NONE", "-i", "NONE", "-n", "-S",
                           str(HERE / "nvim_first_seconds.lua")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    result = tmp_path / "result.json"
    assert result.exists(), f"nvim wrote no report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(result.read_text())
    assert "error" not in report, json.dumps(report, indent=1) + proc.stderr
    assert report["init_options_json"] == "{}"  # not [] (an empty Lua table)
    problems = [m for m in report["messages"] if m["type"] <= WARNING]
    assert problems == [], problems
    # while the model loaded: the statusline said so, and the user was told once why nothing shows
    assert report["loading_when_answered"], report
    assert "infill loading" in report["statuses"], report["statuses"]
    loading_notes = [n for n in report["notes"] if "loading the model" in n["msg"]]
    assert len(loading_notes) == 1, report["notes"]
    # then, no key pressed: the plugin asked again at the cursor and the suggestion is shown there
    assert report["model"]["status"] == "ready"
    assert report["requests_at_ghost"] > report["requests_when_answered"]
    assert report["line_at_ghost"] == "def add(a, b):" and report["mode_at_ghost"].startswith("i")
    assert report["statuses"][-1].startswith("infill ") and report["statuses"][-1] != "infill loading"


def test_emacs_minimal_setup_warns_nothing_shows_loading_and_asks_again_when_ready(emacs, tmp_path):
    env = user_env(tmp_path)
    proc = subprocess.run([emacs, "--batch", "-l", str(HERE / "emacs_first_seconds.el"),
                           "-f", "ert-run-tests-batch-and-exit"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "Ran 1 tests, 1 results as expected, 0 unexpected" in out, out[-6000:]
