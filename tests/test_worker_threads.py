"""Inference threads: decoding on every core but one unless INFILL_LS_THREADS says otherwise; a long
prefill on every core unless INFILL_LS_PREFILL_THREADS says otherwise (read from the environment
given, else os.environ)."""

from __future__ import annotations

import os

import torch

from inference.acceleration import choose
from inference.worker import inference_threads, prefill_threads


def test_default_leaves_a_core_free_and_env_overrides(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    assert inference_threads({}) == max(1, cores - 1)
    assert inference_threads({"INFILL_LS_THREADS": "3"}) == 3
    assert inference_threads({"INFILL_LS_THREADS": "zero"}) == max(1, cores - 1)  # not a number: the default
    assert inference_threads({"INFILL_LS_THREADS": "0"}) == max(1, cores - 1)
    monkeypatch.setenv("INFILL_LS_THREADS", "3")  # no mapping given: the process environment
    assert inference_threads() == 3


def test_prefill_uses_every_core_and_env_overrides():
    assert prefill_threads({}) == len(os.sched_getaffinity(0))
    assert prefill_threads({"INFILL_LS_PREFILL_THREADS": "1"}) == 1


def test_the_choice_carries_both_thread_counts():
    env = {"INFILL_LS_THREADS": "3", "INFILL_LS_PREFILL_THREADS": "5"}
    acc = choose(torch.device("cpu"), torch.float32, env)
    assert (acc.decode_threads, acc.prefill_threads) == (3, 5)
