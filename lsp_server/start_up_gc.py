"""The garbage collector during `infill-ls serve`'s start-up.

Importing torch and the LSP stack makes some 300,000 objects, nearly none of them garbage, and the
collector's full passes over that growing heap were a fifth of the time from the server's start to its
first suggestion. Until the first model load ends, only young objects are collected (the short-lived
cycles the imports do make are still freed: idle RSS stays where it was); then everything start-up
made is frozen out of later passes (gc.freeze) and the collector runs as usual."""

from __future__ import annotations

import gc

PYTHON_THRESHOLDS = (700, 10, 10)  # CPython's defaults
NEVER = 10**9  # collections of the younger generation before an older one is looked at


def collect_young_only() -> None:
    gc.set_threshold(PYTHON_THRESHOLDS[0], NEVER, NEVER)


def collect_all_again() -> None:
    """After the first load (ready or failed); a no-op once done, or where start-up did not change it."""
    if gc.get_threshold()[1] == NEVER:
        gc.freeze()
        gc.set_threshold(*PYTHON_THRESHOLDS)
