"""The benchmarks' scratch folder goes away even when the run is stopped by a signal (as `timeout` does)."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
from bench.scratch import scratch_dir
with scratch_dir() as tmp:
    (tmp / "weights.bin").write_bytes(b"x" * 1000)
    print(tmp, flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_scratch_dir_removed_when_stopped_by_signal(signum):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(root=str(ROOT))], stdout=subprocess.PIPE, text=True)
    folder = Path(proc.stdout.readline().strip())
    assert (folder / "weights.bin").is_file()
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == 128 + signum
    assert not folder.exists()


def test_scratch_dir_restores_signal_handlers():
    from bench.scratch import scratch_dir

    before = signal.getsignal(signal.SIGTERM)
    with scratch_dir() as tmp:
        assert tmp.is_dir()
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
    assert not tmp.exists()
