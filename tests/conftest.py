"""Fixtures shared by several test files."""

from __future__ import annotations

import os

import pytest

from tests.checkpoints import make_gpt_bigcode

# CPU models compile their one-token decode ops on first use (seconds per process and shape). Tests run
# eager, and so do the servers they start (the variable is inherited); tests/test_engine_blocks.py
# compiles for real and checks the compiled ops against eager.
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
