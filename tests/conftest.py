"""Fixtures shared by several test files."""

from __future__ import annotations

import os

import pytest

from tests.checkpoints import make_gpt_bigcode

# What runs compiled and what stays eager. Users' CPU servers compile their one-token decode ops and
# attention (load_model's default); that path is what the parity tests check, loading their models
# compiled whatever this variable says (tests.compiled.load_compiled, shared per session through
# `family_models`, a silent fallback to eager fails them):
#   test_engine_models.py (every family vs transformers: fp32 tokens, every decode step, bf16),
#   test_reliability_kv_invariant.py (the KV-reuse invariant, and its in-process server end to end),
#   test_engine_blocks.py and test_engine_attention.py (compiled ops and kernel against eager/reference).
# Everything else runs eager through this default, inherited by every server subprocess: each new
# server process compiles again (2-6 graphs, seconds each on the CI box, more on a cold inductor
# cache), and the editor, protocol, soak, safety, prefetch and e2e servers start dozens of them with
# 30 s readiness limits. Measured on the shared 2-core box with the default unset and a cold inductor
# cache: the suite took 28.5 min instead of about 5-6 and 46 server tests failed their readiness or
# latency limits. Eager is also a real path (compile failure, INFILL_LS_NO_COMPILE=1, the one-shot
# CLI), and test_engine_models.py checks it against transformers too.
os.environ.setdefault("INFILL_LS_NO_COMPILE", "1")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one torch thread (and the CI box is shared)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Tiny StarCoder-like checkpoint folders, built once per run; tests that change one copy it first.
# (A test module with its own `starcoder` fixture, e.g. a loaded model, overrides these.)
@pytest.fixture(scope="session")
def family_models(tmp_path_factory):
    """Tiny checkpoints of every family with their compiled (the CPU default), eager and transformers
    models, each built once per session (tests.compiled.FamilyModels)."""
    from tests.compiled import FamilyModels

    return FamilyModels(tmp_path_factory.mktemp("families"))


@pytest.fixture(scope="session")
def starcoder(tmp_path_factory):
    return make_gpt_bigcode(tmp_path_factory.mktemp("ckpt") / "starcoder")


@pytest.fixture(scope="session")
def starcoder_bin(tmp_path_factory):
    return make_gpt_bigcode(tmp_path_factory.mktemp("ckpt") / "starcoder_bin", weights="bin")


@pytest.fixture(scope="module")
def shipped_engine():
    """The shipped model in fp32, eager, with an Engine on it: the reference that remote engines
    (llama-server, vLLM) serving the same model are held to."""
    from inference.engine import Engine
    from inference.loader import load_model

    lm = load_model(None, dtype="float32", compile_decode=False)
    return lm, Engine(lm)
