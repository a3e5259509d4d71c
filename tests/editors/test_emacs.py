"""Emacs 28 + eglot 1.9 in batch mode with editors/emacs/infill.el against the real server:
completion-at-point through eglot inserts the suggestion; infill-mode shows it (two lines) as an
overlay while typing, C-g dismisses, moving clears, M-<right> takes a word and TAB the rest; M-] /
M-[ cycle through several candidates; infill-show-stats reports the counters; infill-modes chooses
where eglot uses infill-ls; point coming to rest after a motion or a buffer switch (not typing)
sends infill/prefetch."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import shutil

import pytest

from .conftest import EDITORS, REPO
from .scripted_checkpoint import SUGGESTION

pytestmark = pytest.mark.editor

SCRIPT = Path(__file__).with_name("emacs_infill_test.el")


def test_infill_el_passes_its_ert_tests_in_emacs_batch(emacs, tiny_model, server_command, tmp_path):
    env = dict(os.environ, INFILL_REPO=str(REPO), INFILL_SERVER_CMD=json.dumps(server_command),
               INFILL_TEST_MODEL=str(tiny_model), INFILL_WORKDIR=str(tmp_path),
               INFILL_TEST_SUGGESTION=SUGGESTION)
    proc = subprocess.run([emacs, "--batch", "-l", str(SCRIPT), "-f", "ert-run-tests-batch-and-exit"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    ran = re.search(r"Ran (\d+) tests, (\d+) results as expected, (\d+) unexpected", out)
    assert ran, out[-6000:]
    assert int(ran.group(1)) == int(ran.group(2)) >= 8 and ran.group(3) == "0", out[-6000:]


def test_infill_el_byte_compiles_without_warnings(emacs, tmp_path):
    source = tmp_path / "infill.el"
    shutil.copy(EDITORS / "emacs" / "infill.el", source)
    proc = subprocess.run([emacs, "--batch", "--eval", "(package-initialize)",
                           "--eval", "(setq byte-compile-error-on-warn t)",
                           "-f", "batch-byte-compile", str(source)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and (tmp_path / "infill.elc").exists(), proc.stdout + proc.stderr
