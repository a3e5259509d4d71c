"""Inference threads: every core but one unless INFILL_LS_THREADS says otherwise."""

from __future__ import annotations

import os

from inference.worker import inference_threads


def test_default_leaves_a_core_free_and_env_overrides(monkeypatch):
    monkeypatch.delenv("INFILL_LS_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert inference_threads() == max(1, cores - 1)
    monkeypatch.setenv("INFILL_LS_THREADS", "3")
    assert inference_threads() == 3
    monkeypatch.setenv("INFILL_LS_THREADS", "zero")  # not a number: the default
    assert inference_threads() == max(1, cores - 1)
