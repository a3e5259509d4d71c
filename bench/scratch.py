"""A scratch folder for a benchmark's checkpoints that is removed however the run ends.

`tempfile.TemporaryDirectory` cleans up on a normal exit or Ctrl-C, but not when the run is stopped
with SIGTERM or SIGHUP (`timeout`, a closed terminal): each killed engine bench used to leave 1.4 GB
of random checkpoints in /tmp. Here those signals become SystemExit, so the `with` block unwinds.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import tempfile
from pathlib import Path


def _exit_on_signal(signum, _frame):
    sys.exit(128 + signum)


@contextlib.contextmanager
def scratch_dir(prefix: str = "infill-bench-"):
    previous = {s: signal.signal(s, _exit_on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield Path(tmp)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
