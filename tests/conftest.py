"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest

from tests.checkpoints import make_gpt_bigcode


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
def starcoder(tmp_path_factory):
    return make_gpt_bigcode(tmp_path_factory.mktemp("ckpt") / "starcoder")


@pytest.fixture(scope="session")
def starcoder_bin(tmp_path_factory):
    return make_gpt_bigcode(tmp_path_factory.mktemp("ckpt") / "starcoder_bin", weights="bin")
