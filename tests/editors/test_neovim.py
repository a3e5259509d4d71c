"""Neovim (0.11, headless) with editors/nvim against the real server and the scripted checkpoint
(tests/editors/scripted_checkpoint.py): type, see the two-line ghost text (inline and below the
line), leave insert mode, move or press Ctrl+] and it goes, accept a word, accept the rest, and
the buffer holds it; cycle candidates; :InfillStats counts; moving the cursor (not typing) sends
infill/prefetch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO
from .scripted_checkpoint import SUGGESTION

pytestmark = pytest.mark.editor

SCRIPT = Path(__file__).with_name("nvim_ghost_text.lua")


@pytest.fixture(scope="module")
def nvim_run(nvim, tiny_model, server_command, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("nvim")
    result = work / "result.json"
    env = dict(os.environ, INFILL_REPO=str(REPO), INFILL_SERVER_CMD=json.dumps(server_command),
               INFILL_TEST_MODEL=str(tiny_model), INFILL_WORKDIR=str(work), INFILL_RESULT=str(result))
    proc = subprocess.run([nvim, "--headless", "-u", "NONE", "-i", "NONE", "-n", "-S", str(SCRIPT)],
                          cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert result.exists(), f"nvim wrote no report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(result.read_text())
    assert "error" not in report, (f"{report.get('error')}\nsteps: {report.get('steps')}\n"
                                   f"plugin stats: {report.get('plugin_stats')}\n"
                                   f"server stats: {report.get('server_stats')}\n{proc.stderr}")
    assert proc.returncode == 0, proc.stderr
    return {s["name"]: s["value"] for s in report["steps"]} | {"filetype": report["filetype"],
                                                               "stats": report["stats"]}


TYPED = "def add(a, b):"


def test_typing_shows_ghost_text_at_the_cursor(nvim_run):
    assert nvim_run["filetype"] == "python"
    typed = nvim_run["typed"]
    assert typed["lines"] == ["import os", "", TYPED]
    assert typed["ghost"] == SUGGESTION
    _, row, col, details = typed["mark"]
    assert (row, col) == (2, len(TYPED)), "ghost text is not at the cursor"
    first, *below = SUGGESTION.split("\n")
    assert below, "the scripted suggestion has a second line"
    # the rest of the line, drawn inside it at the cursor; the next lines below the cursor's line
    assert (details["virt_text"], details["virt_text_pos"]) == ([[first, "InfillGhostText"]], "inline")
    assert details["virt_lines"] == [[[line, "InfillGhostText"]] for line in below]


def test_leaving_insert_mode_and_moving_the_cursor_clear_the_ghost_text(nvim_run):
    assert nvim_run["after_esc"]["marks"] == 0
    assert nvim_run["insert_enter"]["ghost"] == nvim_run["typed"]["ghost"], "entering insert mode asks again"
    assert nvim_run["after_move"]["marks"] == 0


def test_typing_the_shown_text_keeps_the_rest_without_a_new_request(nvim_run):
    assert nvim_run["typed_through"] == {"ghost": SUGGESTION[1:], "requests": 0}


def test_accepting_a_word_then_the_rest_puts_the_suggestion_in_the_buffer(nvim_run):
    accepted = nvim_run["accepted"]
    suggestion, before = accepted["suggestion"], accepted["before"]
    assert before == ["import os", "", TYPED]
    full = "\n".join(before) + suggestion

    assert suggestion == SUGGESTION
    word = re.match(r"\s*[^\w\s]+", SUGGESTION).group()  # "  #": spaces and punctuation
    after_word = nvim_run["after_word"]
    assert after_word["lines"] == ["import os", "", TYPED + word]
    assert after_word["ghost"] == SUGGESTION[len(word):], "the rest stays shown, two lines still"

    assert "\n".join(accepted["lines"]) == full
    assert len(accepted["lines"]) == len(before) + SUGGESTION.count("\n")
    last_line = full.split("\n")[-1]
    assert accepted["cursor"] == [len(accepted["lines"]), len(last_line.encode())], "cursor not after the text"
    assert accepted["mode"] == "i"
    assert nvim_run["stats"]["accepted"] >= 1


def test_cycling_shows_the_next_of_several_candidates(nvim_run):
    cycled = nvim_run["cycled"]
    assert cycled["before"] == nvim_run["typed"]["ghost"]
    candidates = cycled["candidates"]
    assert candidates and candidates[0] == cycled["before"], "the Invoked answer starts with the shown one"
    assert len(candidates) > 1 and len(set(candidates)) == len(candidates), candidates
    assert (cycled["index"], cycled["shown"]) == (2, candidates[1])
    assert cycled["shown"] != cycled["before"]


def test_ctrl_bracket_dismisses_and_then_keys_do_their_usual_job(nvim_run):
    d = nvim_run["dismissed"]
    assert d["marks"] == 0, "Ctrl+] left the ghost text"
    assert (d["line"], d["mode"]) == (d["before"], "i"), "Ctrl+] changed the text or left insert mode"
    assert d["after_keys"] == d["before"] + "\tx", "after dismissing, Tab must insert a tab (not the suggestion)"


def test_an_option_set_at_run_time_reaches_the_server(nvim_run):
    assert nvim_run["python_off"]["marks"] == 0, "languages=rust, yet python got a suggestion"
    assert nvim_run["python_on"]["ghost"] == nvim_run["typed"]["ghost"]


def test_toggle_stops_requests_and_restart_brings_a_working_server(nvim_run):
    off = nvim_run["toggled_off"]
    assert off == {"marks": 0, "requests": 0, "status": "infill off"}
    restarted = nvim_run["restarted"]
    assert restarted["ghost"] == nvim_run["typed"]["ghost"]
    assert restarted["clients"] == 1, "the old server is still attached"


def test_prefetch_is_sent_once_where_the_cursor_comes_to_rest_and_never_for_typing(nvim_run):
    p = nvim_run["prefetch"]
    start = p["start"]
    assert p["after_motion"] == start + 1, f"gg: one prefetch; {p}"
    assert p["after_same_place"] == start + 1, f"back to the place just sent: none; {p}"
    assert p["after_typing"] == start + 1, f"G then typing a line: none (the motion was followed by an edit); {p}"
    assert p["after_esc"] == start + 1, f"leaving insert mode is not a new place; {p}"
    assert p["after_switch"] == start + 2, f"switching back to the buffer: one; {p}"
    assert p["off"] == start + 2, f"prefetch = false: none; {p}"


CLIENT_LINE = re.compile(r"infill: requests (\d+), shown (\d+), accepted (\d+), errors (\d+), last latency \d+ ms")
SERVER_LINE = re.compile(r"server: model (.+) \(ready\), suggestions shown (\d+), accepted (\d+), p50 [\d.]+ ms")


def test_infill_stats_shows_the_client_and_server_counters_and_they_grow(nvim_run, tiny_model):
    stats = nvim_run["stats_commands"]
    assert len(stats["messages"]) == 2, stats
    server_counts = []
    for message, counted in zip(stats["messages"], stats["counted"]):
        client_line, server_line = message.split("\n")
        client, server = CLIENT_LINE.fullmatch(client_line), SERVER_LINE.fullmatch(server_line)
        assert client and server, message
        assert [int(client.group(i)) for i in (1, 2, 3)] == counted, "the client counters shown are not the plugin's"
        assert server.group(1) == str(tiny_model)
        server_counts.append([int(server.group(i)) for i in (2, 3)])
    (requests0, shown0, _), (requests1, shown1, _) = stats["counted"]
    # between the two: a request shown, then typed through (shown again without a request), so the
    # two counts cannot both stay equal
    assert requests1 > requests0 and shown1 >= shown0 + 2
    (server_shown0, server_accepted0), (server_shown1, server_accepted1) = server_counts
    assert server_shown1 > server_shown0 >= 1, "the server's count of suggestions shown did not grow"
    assert server_accepted1 == server_accepted0  # (the server restarted since the suggestion accepted above)


WIRING_SCRIPT = Path(__file__).with_name("nvim_builtin_wiring.lua")


def test_on_0_12_the_plugin_drives_the_builtin_inline_completion(nvim, tiny_model, tmp_path):
    """The 0.12+ branch, with vim.lsp.inline_completion stood in (the CI Neovim is 0.11), and the
    README's set-up: no `cmd`, the server is `infill-ls` found on PATH."""
    result = tmp_path / "result.json"
    venv_bin = Path(sys.executable).parent  # where `pip install` put the infill-ls command
    assert (venv_bin / "infill-ls").exists(), "infill-ls is not installed beside this Python (pip install -e .)"
    env = dict(os.environ, INFILL_REPO=str(REPO), PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
               INFILL_TEST_MODEL=str(tiny_model), INFILL_WORKDIR=str(tmp_path), INFILL_RESULT=str(result))
    proc = subprocess.run([nvim, "--headless", "-u", "NONE", "-i", "NONE", "-n", "-S", str(WIRING_SCRIPT)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
    report = json.loads(result.read_text())
    assert "error" not in report and proc.returncode == 0, f"{report}\n{proc.stderr}"
    buf = report["buf"]
    assert report["cmd"] == [str(venv_bin / "infill-ls"), "serve"], "the default command is infill-ls from PATH"
    assert report["after_attach"] == [["enable", True, buf]]
    assert report["line_after_plain_tab"] == "x\t", "Tab with nothing to accept must stay a Tab"
    assert report["line_after_accept"] == "x\t", "an accepted suggestion must not also insert a Tab"
    assert report["calls"][1:] == [["get", buf], ["get", buf], ["select", buf, 1], ["select", buf, -1]]
