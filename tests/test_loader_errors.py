"""User errors while loading name the file or value that is wrong (ModelError, one line)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference import loader
from inference.loader import ModelError, load_model
from tests import checkpoints as ck


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return ck.make_gpt_bigcode(tmp_path_factory.mktemp("good") / "m")


@pytest.fixture
def copy(good, tmp_path):
    dst = tmp_path / "m"
    shutil.copytree(good, dst)
    return dst


def error_of(*args, **kwargs) -> str:
    with pytest.raises(ModelError) as info:
        load_model(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_no_such_folder(tmp_path):
    assert "no such folder" in error_of(tmp_path / "nope")
    assert "./missing/model" in error_of("./missing/model")


def test_file_instead_of_folder(copy):
    assert "not a folder" in error_of(copy / "config.json")


def test_no_config(copy):
    (copy / "config.json").unlink()
    assert "config.json" in error_of(copy)


def test_bad_config_json(copy):
    (copy / "config.json").write_text("{not json")
    assert "config.json" in error_of(copy) and "JSON" in error_of(copy)


def test_unknown_model_type(copy):
    cfg = json.loads((copy / "config.json").read_text())
    cfg["model_type"] = "llama"
    (copy / "config.json").write_text(json.dumps(cfg))
    msg = error_of(copy)
    assert "'llama'" in msg and "config.json" in msg


def test_truncated_safetensors(copy):
    path = copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    msg = error_of(copy)
    assert "model.safetensors" in msg and "corrupt or truncated" in msg


def test_safetensors_tensors_are_read_as_the_model_takes_them_and_a_file_cut_meanwhile_is_named(copy, monkeypatch):
    """load_model lists a safetensors file's tensors and reads each when the model takes it (the load
    never holds the whole checkpoint beside the model): every tensor is read exactly once, and a file
    truncated after it was listed fails with the file named, not with a crash."""
    from inference import weights

    reads = []
    original = weights.Stored.load
    monkeypatch.setattr(weights.Stored, "load", lambda self: reads.append(self.name) or original(self))
    lm = load_model(copy, dtype="float32", compile_decode=False)
    stored = load_file(str(copy / "model.safetensors"))
    assert sorted(reads) == sorted(n for n in stored if not weights.IGNORED.match(n))
    assert torch.equal(lm.model.wpe, stored["transformer.wpe.weight"])

    path = copy / "model.safetensors"

    def cut_after_listing(self):
        if not reads:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        reads.append(self.name)
        return original(self)

    reads.clear()
    monkeypatch.setattr(weights.Stored, "load", cut_after_listing)
    msg = error_of(copy)
    assert "model.safetensors" in msg and "corrupt or truncated" in msg


def test_garbage_bin(copy):
    (copy / "model.safetensors").unlink()
    (copy / "pytorch_model.bin").write_bytes(b"not a pickle at all")
    assert "pytorch_model.bin" in error_of(copy)


def test_no_weights(copy):
    (copy / "model.safetensors").unlink()
    assert "no weights" in error_of(copy)


def test_missing_shard(tmp_path):
    folder = ck.make_gpt_bigcode(tmp_path / "sharded", shards=2)
    (folder / "model-00002-of-00002.safetensors").unlink()
    assert "model-00002-of-00002.safetensors" in error_of(folder)


def test_missing_tokenizer(copy):
    (copy / "tokenizer.json").unlink()
    assert "no tokenizer" in error_of(copy)


def _edit_weights(folder, edit):
    sd = load_file(str(folder / "model.safetensors"))
    edit(sd)
    save_file(sd, str(folder / "model.safetensors"))


def test_missing_tensor_is_named(copy):
    _edit_weights(copy, lambda sd: sd.pop("transformer.h.1.mlp.c_fc.bias"))
    assert "'transformer.h.1.mlp.c_fc.bias'" in error_of(copy)


def test_misshaped_tensor_is_named(copy):
    _edit_weights(copy, lambda sd: sd.update({"transformer.ln_f.weight": torch.ones(63)}))
    msg = error_of(copy)
    assert "'transformer.ln_f.weight'" in msg and "[63]" in msg and "[64]" in msg


def test_unused_tensor_is_named(copy):
    _edit_weights(copy, lambda sd: sd.update({"transformer.h.0.extra.weight": torch.ones(3)}))
    assert "'transformer.h.0.extra.weight'" in error_of(copy)


def test_bad_dtype_and_device(good):
    assert "'float64'" in error_of(good, dtype="float64")
    assert "'tpu'" in error_of(good, device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when CUDA is absent")
def test_cuda_absent(good):
    assert "CUDA is not available" in error_of(good, device="cuda")


def test_unknown_family_override(good):
    assert "'llama'" in error_of(good, family="llama")


def test_missing_default_model(monkeypatch, tmp_path):
    monkeypatch.setattr(loader, "DEFAULT_MODEL_DIR", tmp_path / "default_model")
    assert "no default model" in error_of(None)


def test_hub_id_offline_says_how_to_get_files(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-infill-ls-test")
    msg = error_of("someone/not-a-real-model-xyz")
    assert "someone/not-a-real-model-xyz" in msg and ("download" in msg or "install" in msg)
