"""Checkpoint file layouts and tokenizer files that load to the same model."""

from __future__ import annotations

import json

import pytest
import torch

from inference.loader import load_model
from tests import checkpoints as ck

TEXT = "def read_lines(path):\n        return  [line for line in handle]\n\t\tx = 1"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("formats")


def same_logits(a, b, ids):
    return torch.equal(a.full_logits(ids), b.full_logits(ids))


@pytest.mark.parametrize("weights,shards", [("bin", 1), ("safetensors", 3), ("bin", 2)])
def test_weight_layouts_load_the_same_model(root, weights, shards):
    base = load_model(ck.make_gpt_bigcode(root / "base", seed=5))
    other = load_model(ck.make_gpt_bigcode(root / f"{weights}{shards}", seed=5, weights=weights, shards=shards))
    ids = base.encode(TEXT)
    assert same_logits(base, other, ids)


def test_vocab_merges_tokenizer_equals_tokenizer_json(root):
    a = load_model(ck.make_gpt_bigcode(root / "tj", seed=6))
    b = load_model(ck.make_gpt_bigcode(root / "vm", seed=6, tokenizer_files="vocab_merges"))
    assert not (root / "vm" / "tokenizer.json").exists()
    assert a.encode(TEXT) == b.encode(TEXT)
    assert b.fim is not None and b.fim.prefix_token == 1 and b.eos_token_ids == (0,)
    c = load_model(ck.make_codegen(root / "cg_vm", tokenizer_files="vocab_merges"))
    d = load_model(ck.make_codegen(root / "cg_tj"))
    assert c.encode(TEXT) == d.encode(TEXT)  # includes the non-special whitespace added tokens
    assert c.encode("    ")[0] == c.tokenizer.token_to_id("    ")


def test_legacy_mask_buffers_are_ignored(root):
    a = load_model(ck.make_codegen(root / "plain", seed=7))
    b = load_model(ck.make_codegen(root / "legacy", seed=7, legacy_buffers=True, weights="bin"))
    assert same_logits(a, b, a.encode(TEXT))


def test_fp16_checkpoint_loads_in_float32(root):
    lm = load_model(ck.make_xglm(root / "xglm16", dtype=torch.float16), dtype="float32")
    assert lm.dtype == torch.float32 and lm.model.wte.dtype == torch.float32


@pytest.mark.parametrize("make", [ck.make_gpt_bigcode, ck.make_codegen, ck.make_codegen2, ck.make_xglm])
def test_encode_matches_transformers_tokenizer(root, make):
    from transformers import AutoTokenizer

    folder = make(root / f"tok_{make.__name__}")
    lm = load_model(folder)
    ref = AutoTokenizer.from_pretrained(str(folder))
    assert lm.encode(TEXT) == ref(TEXT).input_ids
    if lm.family != "xglm":  # byte-level BPE round-trips any text exactly
        assert lm.decode(lm.encode_plain(TEXT)) == TEXT


def test_xglm_encode_prepends_eos_as_bos(root):
    lm = load_model(ck.make_xglm(root / "xglm_bos"))
    ids = lm.encode("x = 1")
    assert ids[0] == lm.tokenizer.token_to_id("</s>") == 2 and ids[1:] == lm.encode_plain("x = 1")
    assert ids[-1] != 2  # nothing appended


def test_special_token_text_in_user_text_is_not_a_special_token(root):
    lm = load_model(ck.make_gpt_bigcode(root / "spec"))
    assert 0 not in lm.encode("a <|endoftext|> b")
    assert lm.decode(lm.encode("a <|endoftext|> b")) == "a <|endoftext|> b"


def test_codegen2_mp8_layout_matches_mp4_reference(root):
    cg2 = load_model(ck.make_codegen2(root / "cg2", reference_dir=root / "cg2_ref", seed=8))
    ref = load_model(root / "cg2_ref")
    assert cg2.family == ref.family == "codegen2"  # ref: like CodeGen2-7B (no head_dim field -> mp_num 4)
    assert cg2.model.mp_num == 8 and ref.model.mp_num == 4
    ids = cg2.encode(TEXT)
    assert torch.allclose(cg2.full_logits(ids), ref.full_logits(ids), atol=1e-5)


def test_config_mp_num_overrides_detection(root):
    folder = ck.make_codegen2(root / "cg2_over", seed=8)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["mp_num"] = 4
    (folder / "config.json").write_text(json.dumps(cfg))
    wrong = load_model(folder)
    right = load_model(ck.make_codegen2(root / "cg2_right", seed=8))
    assert wrong.model.mp_num == 4
    ids = right.encode(TEXT)
    assert not torch.allclose(wrong.full_logits(ids), right.full_logits(ids), atol=1e-3)


def test_family_override_and_detection(root):
    folder = ck.make_gpt_bigcode(root / "santa", fim_style="santacoder", pad_vocab=True)
    lm = load_model(folder)
    assert lm.family == "santacoder" and lm.fim.name == "santacoder"
    assert lm.model.vocab_size > lm.tokenizer.get_vocab_size()  # padding rows, as on the hub
    assert load_model(folder, family="gpt_bigcode").family == "gpt_bigcode"
    cg = load_model(ck.make_codegen(root / "cg_fam"))
    assert cg.family == "codegen" and cg.fim is None
