"""The VS Code extension, as far as node can run it without VS Code: its compiled code's own
tests, and the real server driven through VS Code's protocol stack (vscode-jsonrpc +
vscode-languageserver-protocol) with the capabilities vscode-languageclient 11 sends."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from .conftest import PYTHON

pytestmark = pytest.mark.editor


def run_node_tests(node: str, folder, cwd, env=None, timeout=120) -> str:
    proc = subprocess.run([node, "--test", str(folder)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    counts = {k: int(v) for k, v in re.findall(r"^# (pass|fail|skipped) (\d+)$", out, re.M)}
    assert counts.get("fail") == 0 and counts.get("skipped") == 0 and counts.get("pass", 0) > 0, out[-6000:]
    return out


def test_extension_code_passes_its_node_tests(node, vscode_build):
    run_node_tests(node, "out/test/unit/", cwd=vscode_build)


def test_real_server_gives_inline_completions_over_vscode_protocol_stack(node, vscode_build, tiny_model,
                                                                         server_command):
    env = dict(os.environ, INFILL_SERVER_CMD=json.dumps(server_command), INFILL_TEST_MODEL=str(tiny_model))
    run_node_tests(node, "out/test/protocol/", cwd=vscode_build, env=env)


def test_extension_runs_against_real_server_with_vscode_stood_in(node, vscode_build, tiny_model):
    """Compiled extension + real vscode-languageclient + real server; a recording fake for `vscode`."""
    env = dict(os.environ, INFILL_TEST_PYTHON=PYTHON, INFILL_TEST_MODEL=str(tiny_model))
    run_node_tests(node, "out/test/extension/", cwd=vscode_build, env=env)
