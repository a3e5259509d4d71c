"""Inference threads: decoding on every core but one unless INFILL_LS_THREADS says otherwise; a long
prefill on every core unless INFILL_LS_PREFILL_THREADS says otherwise."""

from __future__ import annotations

import os

from inference.worker import inference_threads, prefill_threads


def test_default_leaves_a_core_free_and_env_overrides(monkeypatch):
    monkeypatch.delenv("INFILL_LS_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert inference_threads() == max(1, cores - 1)
    monkeypatch.setenv("INFILL_LS_THREADS", "3")
    assert inference_threads() == 3
    monkeypatch.setenv("INFILL_LS_THREADS", "zero")  # not a number: the default
    assert inference_threads() == max(1, cores - 1)


def test_prefill_uses_every_core_and_env_overrides(monkeypatch):
    monkeypatch.delenv("INFILL_LS_PREFILL_THREADS", raising=False)
    assert prefill_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("INFILL_LS_PREFILL_THREADS", "1")
    assert prefill_threads() == 1
