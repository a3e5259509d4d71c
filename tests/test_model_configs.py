"""Each family's config.json is read into its config dataclass (`from_hf`) apart from the weights: the
fields are what transformers reads from the same file, and a missing or bad key fails with a
ModelError naming it before any weight is read. The head of GPTBigCode and XGLM is tied to the token
embedding unless the checkpoint carries an lm_head of its own (inference.models.common.output_head)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.errors import ModelError
from inference.loader import load_model
from inference.models.codegen import CodeGenConfig
from inference.models.gpt_bigcode import GPTBigCodeConfig
from inference.models.xglm import XGLMConfig
from tests import checkpoints as ck


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("configs")
    return {"gpt_bigcode": ck.make_gpt_bigcode(root / "bigcode", multi_query=False, seed=11),
            "codegen": ck.make_codegen(root / "codegen", seed=12),
            "xglm": ck.make_xglm(root / "xglm", seed=13)}


def config_of(folder) -> dict:
    return json.loads((folder / "config.json").read_text())


def test_fields_are_what_transformers_reads(folders):
    from transformers import AutoConfig

    hf = AutoConfig.from_pretrained(str(folders["gpt_bigcode"]))
    ours = GPTBigCodeConfig.from_hf(config_of(folders["gpt_bigcode"]))
    assert (ours.n_embd, ours.n_layers, ours.n_heads, ours.max_positions, ours.vocab_size) == \
        (hf.n_embd, hf.n_layer, hf.n_head, hf.n_positions, hf.vocab_size)
    assert ours.kv_heads == (1 if hf.multi_query else hf.n_head) == hf.n_head
    assert (ours.eps, ours.activation, ours.inner) == (hf.layer_norm_epsilon, hf.activation_function, 4 * hf.n_embd)

    hf = AutoConfig.from_pretrained(str(folders["codegen"]))
    ours = CodeGenConfig.from_hf(config_of(folders["codegen"]))
    assert (ours.n_embd, ours.n_layers, ours.n_heads, ours.kv_heads, ours.rotary_dim, ours.vocab_size) == \
        (hf.n_embd, hf.n_layer, hf.n_head, hf.n_head, hf.rotary_dim, hf.vocab_size)
    assert ours.head_dim == hf.n_embd // hf.n_head and ours.mp_num == 4

    hf = AutoConfig.from_pretrained(str(folders["xglm"]))
    ours = XGLMConfig.from_hf(config_of(folders["xglm"]))
    assert (ours.n_embd, ours.n_layers, ours.n_heads, ours.inner, ours.max_positions, ours.pad_token_id) == \
        (hf.d_model, hf.num_layers, hf.attention_heads, hf.ffn_dim, hf.max_position_embeddings, hf.pad_token_id)
    assert ours.scale_embedding == hf.scale_embedding and ours.tie_word_embeddings


@pytest.mark.parametrize("family,change,message", [
    ("gpt_bigcode", {"n_embd": None, "hidden_size": None}, "missing 'n_embd' (or 'hidden_size')"),
    ("gpt_bigcode", {"n_head": "four"}, "'n_head' must be a positive integer, found 'four'"),
    ("gpt_bigcode", {"n_layer": 0}, "'n_layer' must be a positive integer, found 0"),
    ("gpt_bigcode", {"n_head": 5}, "not divisible by the 5 attention heads"),
    ("gpt_bigcode", {"multi_query": "yes"}, "'multi_query' must be true or false, found 'yes'"),
    ("gpt_bigcode", {"layer_norm_epsilon": "small"}, "'layer_norm_epsilon' must be a number"),
    ("gpt_bigcode", {"activation_function": "swish"}, "unsupported activation_function 'swish'"),
    ("codegen", {"n_positions": True}, "'n_positions' must be a positive integer, found True"),
    ("codegen", {"mp_num": 3}, "n_head 4 is not divisible by mp_num 3"),
    ("xglm", {"ffn_dim": None}, "missing 'ffn_dim'"),
    ("xglm", {"pad_token_id": -1}, "'pad_token_id' must be a token id"),
])
def test_a_bad_config_fails_naming_its_key_before_weights_are_read(folders, tmp_path, family, change, message):
    folder = tmp_path / family
    shutil.copytree(folders[family], folder)
    cfg = config_of(folder)
    for key, value in change.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "model.safetensors").unlink()  # read after the config: its absence must not be the error
    with pytest.raises(ModelError) as err:
        load_model(folder)
    assert message in str(err.value) and "config.json" in str(err.value), str(err.value)


def with_head(src, dst, head=None, tie=None):
    """A copy of checkpoint `src` whose lm_head.weight is `head` (None: no lm_head) and whose config's
    tie_word_embeddings is `tie` (None: not set, the family default)."""
    shutil.copytree(src, dst)
    path = dst / "model.safetensors"
    tensors = load_file(str(path))
    tensors.pop("lm_head.weight", None)
    if head is not None:
        tensors["lm_head.weight"] = head.contiguous()
    save_file(tensors, str(path), metadata={"format": "pt"})
    cfg = config_of(dst)
    cfg.pop("tie_word_embeddings", None)
    if tie is not None:
        cfg["tie_word_embeddings"] = tie
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


EMBEDDING = {"gpt_bigcode": "transformer.wte.weight", "xglm": "model.embed_tokens.weight"}


@pytest.mark.parametrize("family", ["gpt_bigcode", "xglm"])
def test_tied_head(folders, tmp_path, family):
    """No lm_head.weight: the head is the embedding, and the logits are transformers' (which ties too)."""
    folder = with_head(folders[family], tmp_path / "tied")
    lm = load_model(folder)
    assert lm.model.head is lm.model.wte
    ids = lm.encode(ck.CODE_TEXT[:200])
    ref = ck.load_reference(folder)
    with torch.no_grad():
        theirs = ref(torch.tensor([ids])).logits[0].float()
    assert torch.allclose(lm.full_logits(ids), theirs, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", ["gpt_bigcode", "xglm"])
def test_saved_copy_of_the_embedding_is_held_once(folders, tmp_path, family):
    wte = load_file(str(folders[family] / "model.safetensors"))[EMBEDDING[family]]
    lm = load_model(with_head(folders[family], tmp_path / "copy", head=wte.clone(), tie=True))
    assert lm.model.head is lm.model.wte


@pytest.mark.parametrize("family", ["gpt_bigcode", "xglm"])
@pytest.mark.parametrize("tie", [False, None])
def test_a_different_lm_head_is_kept(folders, tmp_path, family, tie):
    """An lm_head.weight unlike the embedding is the head, whether or not the config says untied; with
    tie_word_embeddings false the logits are transformers'."""
    wte = load_file(str(folders[family] / "model.safetensors"))[EMBEDDING[family]]
    head = torch.randn(wte.shape, generator=torch.Generator().manual_seed(5)) * wte.std()
    folder = with_head(folders[family], tmp_path / "untied", head=head, tie=tie)
    lm = load_model(folder)
    assert lm.model.head is not lm.model.wte and torch.equal(lm.model.head, head)
    ids = lm.encode(ck.CODE_TEXT[:200])
    ours = lm.full_logits(ids)
    tied = load_model(with_head(folders[family], tmp_path / "tied"))
    assert not torch.allclose(ours, tied.full_logits(ids), atol=1e-2)  # the head really changed the logits
    if tie is False:
        ref = ck.load_reference(folder)
        with torch.no_grad():
            theirs = ref(torch.tensor([ids])).logits[0].float()
        assert torch.allclose(ours, theirs, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", ["gpt_bigcode", "xglm"])
def test_head_errors(folders, tmp_path, family):
    wte = load_file(str(folders[family] / "model.safetensors"))[EMBEDDING[family]]
    with pytest.raises(ModelError, match=r"tensor 'lm_head.weight' in model.safetensors has shape \[\d+, 32\], "
                                         r"expected \[\d+, 64\]"):
        load_model(with_head(folders[family], tmp_path / "shape", head=wte[:, :32]))
    with pytest.raises(ModelError, match="missing tensor 'lm_head.weight'.*tie_word_embeddings to false"):
        load_model(with_head(folders[family], tmp_path / "none", tie=False))
