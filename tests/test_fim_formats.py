"""FIM formats of the models remote engines serve (Qwen2.5-Coder, StarCoder2, DeepSeek-Coder,
CodeLlama, Codestral) beside the local ones: found from a tokenizer's special tokens, the prompt each
lays out (decoded and compared with the layout its documentation gives), its stops, a named override.

Each tokenizer is a tiny one built here with the `tokenizers` library and the model's special tokens:
byte-level BPE for the byte-level families, a SentencePiece-like BPE (Metaspace, word marker "▁" put
before the text) for CodeLlama and Codestral. BOS is not part of a format (ModelInfo.bos_ids), so the
layouts below start at the first FIM token."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from inference.api import ModelInfo
from inference.fim import FIM_FORMAT_NAMES, FimFormat, detect_fim_format, fim_format, fim_format_named
from lsp_server.context import CursorContext
from lsp_server.prompt import Budget, PromptBuilder

P = "def add(a, b):\n    return a +"  # ends in code: no token healing in an SPM prompt
S = "\n\nprint(add(1, 2))\n"
CORPUS = [P + " b" + S, "x = [1, 2]\nfor y in x:\n    print(y)\n"]


@dataclass(frozen=True)
class Case:
    name: str
    special: tuple[str, ...]  # the tokenizer's special tokens, in the model's id order
    sentencepiece: bool
    layout: str  # what PromptBuilder picks
    psm: str | None  # the documented prefix-first prompt for P and S; None: the model has none
    spm: str | None  # the documented suffix-first one
    stops: tuple[str, ...]


CASES = (
    Case("starcoder", ("<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<filename>"),
         False, "spm", f"<fim_prefix>{P}<fim_suffix>{S}<fim_middle>", f"<fim_prefix><fim_suffix>{S}<fim_middle>{P}",
         ("<|endoftext|>", "<fim_pad>", "<filename>")),
    Case("santacoder", ("<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>"),
         False, "spm", f"<fim-prefix>{P}<fim-suffix>{S}<fim-middle>", f"<fim-prefix><fim-suffix>{S}<fim-middle>{P}",
         ("<|endoftext|>", "<fim-pad>")),
    Case("starcoder2", ("<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<repo_name>",
                        "<file_sep>", "<issue_start>"),
         False, "spm", f"<fim_prefix>{P}<fim_suffix>{S}<fim_middle>", f"<fim_prefix><fim_suffix>{S}<fim_middle>{P}",
         ("<|endoftext|>", "<fim_pad>", "<file_sep>", "<repo_name>")),
    Case("qwen", ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                  "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"),
         False, "psm", f"<|fim_prefix|>{P}<|fim_suffix|>{S}<|fim_middle|>", None,
         ("<|fim_pad|>", "<|endoftext|>", "<|file_sep|>", "<|repo_name|>", "<|im_end|>")),
    Case("deepseek", ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜fim▁hole｜>", "<｜fim▁begin｜>",
                      "<｜fim▁end｜>", "<|EOT|>"),
         False, "psm", f"<｜fim▁begin｜>{P}<｜fim▁hole｜>{S}<｜fim▁end｜>", None,
         ("<｜end▁of▁sentence｜>", "<|EOT|>")),
    # transformers' CodeLlama template: " <PRE> {pre} <SUF>{suf} <MID>" / " <PRE> <SUF>{suf} <MID> {pre}"
    # (the space before each FIM token is its "▁"; the decoder drops the first one)
    Case("codellama", ("<unk>", "<s>", "</s>", "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"),
         True, "spm", f"<PRE> {P} <SUF>{S} <MID>", f"<PRE> <SUF>{S} <MID> {P}", ("▁<EOT>", "</s>")),
    # mistral-common / Mistral's cookbook: "<s>[SUFFIX]suffix[PREFIX] prefix"
    Case("codestral", ("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]"),
         True, "spm", None, f"[SUFFIX]{S}[PREFIX] {P}", ("</s>", "[MIDDLE]")),
    Case("codegen2", ("<|endoftext|>", "<mask_1>", "<sep>", "<eom>"),
         False, "psm", f"{P}<mask_1>{S}<|endoftext|><sep><mask_1>", None, ("<eom>", "<|endoftext|>")),
)
BY_NAME = {c.name: c for c in CASES}
IDS = [c.name for c in CASES]


def byte_level(special: tuple[str, ...]) -> Tokenizer:
    """A byte-level BPE (GPT-2 / StarCoder / Qwen style) whose first ids are `special`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=320, special_tokens=list(special), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return tok


def sentencepiece_like(special: tuple[str, ...], prepend_scheme: str = "first") -> Tokenizer:
    """A Llama / Mistral-style BPE: spaces become "▁" and one "▁" goes before the text."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=prepend_scheme)
    tok.decoder = decoders.Metaspace(prepend_scheme=prepend_scheme)
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=160, special_tokens=list(special),
                                                        show_progress=False))
    return tok


@lru_cache(maxsize=None)
def tokenizer(name: str) -> Tokenizer:
    case = BY_NAME[name]
    return sentencepiece_like(case.special) if case.sentencepiece else byte_level(case.special)


def bare_encoder(tok: Tokenizer) -> Tokenizer:
    """The same tokenizer without the leading word marker: how CodeLlama's and Codestral's reference
    encoders encode the suffix (`FimFormat.bare_suffix`)."""
    bare = Tokenizer.from_str(tok.to_str())
    bare.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
    return bare


def encode(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


def decode(tok: Tokenizer, ids: list[int]) -> str:
    return tok.decode(ids, skip_special_tokens=False)


def model_info(name: str) -> ModelInfo:
    tok = tokenizer(name)
    # no EOS here, so every stop seen below comes from the format
    return ModelInfo("remote", tok.to_str(), detect_fim_format(tok), (), (), 2048, "server", "server")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_detect_fim_format_picks_the_models_format_from_its_special_tokens(case):
    fim = detect_fim_format(tokenizer(case.name))
    assert fim is not None and fim.name == case.name
    assert (fim.supports_psm, fim.supports_spm) == (case.psm is not None, case.spm is not None)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_each_order_lays_out_prefix_and_suffix_as_the_model_documents(case):
    tok = tokenizer(case.name)
    fim = detect_fim_format(tok)
    prefix_ids = encode(tok, P)
    suffix_ids = encode(bare_encoder(tok) if fim.bare_suffix else tok, S)
    assert fim.bare_suffix == case.sentencepiece
    for order, expected in ((fim.psm, case.psm), (fim.spm, case.spm)):
        if expected is None:
            with pytest.raises(ValueError, match=case.name):
                order(prefix_ids, suffix_ids)
        else:
            assert decode(tok, order(prefix_ids, suffix_ids)) == expected


# CodeLlama and Codestral get the suffix without SentencePiece's leading word marker (FimFormat.bare_suffix)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_prompt_builder_builds_the_documented_prompt(case):
    builder = PromptBuilder(model_info(case.name))
    prompt = builder.build(CursorContext(P, S), Budget(200, 50))
    assert prompt.layout == case.layout and prompt.heal == ""
    assert prompt.prefix_chars == len(P) and prompt.suffix_chars == len(S)
    assert builder.decode(prompt.ids) == (case.spm if case.layout == "spm" else case.psm)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_prompt_builder_takes_the_suffix_first_order_where_the_model_has_one(case):
    """Codestral has only the suffix-first order, so it must get "spm"; Qwen, DeepSeek and CodeGen2
    only prefix-first, so "psm". The prompt's FIM tokens are the format's, in its order."""
    info = model_info(case.name)
    builder = PromptBuilder(info)
    assert builder.layout == case.layout
    prompt = builder.build(CursorContext(P, S), Budget(200, 50))
    fim = info.fim
    order = fim.spm_order if case.layout == "spm" else fim.psm_order
    assert [i for i in prompt.ids if i in fim.stop_ids] == [i for i in order if isinstance(i, int)]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_stop_ids_hold_the_formats_stops_and_its_control_tokens(case):
    tok = tokenizer(case.name)
    info = model_info(case.name)
    stops = {tok.token_to_id(s) for s in case.stops}
    assert None not in stops
    assert stops <= set(info.fim.stop_ids) and stops <= set(info.stop_ids)
    assert stops <= set(PromptBuilder(info).stop_ids)
    fim = info.fim
    controls = {i for i in (*fim.psm_order, *fim.spm_order) if isinstance(i, int)}
    assert controls <= set(info.stop_ids)  # a model writing a FIM token has left the middle


def test_starcoder2_is_told_from_starcoder_by_file_sep_or_repo_name():
    starcoder = BY_NAME["starcoder"].special
    assert detect_fim_format(byte_level(starcoder)).name == "starcoder"
    with_repo = detect_fim_format(byte_level((*starcoder, "<repo_name>")))
    assert with_repo.name == "starcoder2"
    with_sep = byte_level(("<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<file_sep>"))
    fim = detect_fim_format(with_sep)  # StarCoder2 needs no <fim_pad> (a stop where present)
    assert fim.name == "starcoder2" and fim.stop_token_ids == (0, with_sep.token_to_id("<file_sep>"))


def test_codellama_tokens_are_found_with_or_without_the_word_marker():
    tok = sentencepiece_like(("<unk>", "<s>", "</s>", "<PRE>", "<SUF>", "<MID>", "<EOT>"))
    fim = detect_fim_format(tok)
    t = tok.token_to_id
    assert fim.name == "codellama"
    assert (fim.prefix_token, fim.suffix_token, fim.middle_tokens) == (t("<PRE>"), t("<SUF>"), (t("<MID>"),))
    assert fim.spm([7], [8]) == [t("<PRE>"), t("<SUF>"), 8, t("<MID>"), 7]
    assert t("<EOT>") in fim.stop_token_ids
    spelled = fim_format_named("codellama", tokenizer("codellama"))
    assert spelled.prefix_token == tokenizer("codellama").token_to_id("▁<PRE>")


def test_fim_format_named_builds_the_named_format_and_says_clearly_what_does_not_fit():
    assert FIM_FORMAT_NAMES == ("starcoder2", "starcoder", "santacoder", "qwen", "deepseek", "codellama",
                                "codestral", "codegen2")
    for case in CASES:
        assert fim_format_named(case.name, tokenizer(case.name)) == detect_fim_format(tokenizer(case.name))
    # a StarCoder2 tokenizer may be forced to the StarCoder format (same layout, fewer stops)
    assert fim_format_named("starcoder", tokenizer("starcoder2")).name == "starcoder"
    with pytest.raises(ValueError, match=r"unknown FIM format 'qwen2\.5'; known formats: starcoder2, starcoder, "
                                         r"santacoder, qwen, deepseek, codellama, codestral, codegen2"):
        fim_format_named("qwen2.5", tokenizer("qwen"))
    with pytest.raises(ValueError, match=r"FIM format 'qwen' .* no '<\|fim_prefix\|>' token"):
        fim_format_named("qwen", tokenizer("starcoder"))
    with pytest.raises(ValueError, match=r"FIM format 'codellama' .* no '▁<PRE>' or '<PRE>' token"):
        fim_format_named("codellama", tokenizer("qwen"))
    with pytest.raises(ValueError, match=r"FIM format 'starcoder2' .* no '<file_sep>' or '<repo_name>' token"):
        fim_format_named("starcoder2", tokenizer("starcoder"))
    with pytest.raises(ValueError, match=r"FIM format 'starcoder' .* no '<fim_pad>' token"):
        fim_format_named("starcoder", byte_level(("<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>")))


def test_fim_format_keeps_the_local_families_and_detects_the_others():
    star = tokenizer("starcoder")
    fim = fim_format("gpt_bigcode", star)
    # the StarCoder format as the local engine has always had it (ids 0-5 as in StarCoder's tokenizer)
    assert (fim.name, fim.prefix_token, fim.suffix_token, fim.middle_tokens) == ("starcoder", 1, 3, (2,))
    assert (fim.stop_token_ids, fim.filename_token_id, fim.supports_spm) == ((0, 4), 5, True)
    assert fim.psm([10, 11], [12]) == [1, 10, 11, 3, 12, 2] and fim.spm([10, 11], [12]) == [1, 3, 12, 2, 10, 11]
    assert fim_format("santacoder", tokenizer("santacoder")).name == "santacoder"
    assert fim_format("codegen2", tokenizer("codegen2")).name == "codegen2"
    # local families keep to their own formats: CodeGen and XGLM stay left to right
    assert fim_format("codegen", tokenizer("qwen")) is None and fim_format("xglm", tokenizer("codellama")) is None
    assert fim_format("gpt_bigcode", tokenizer("qwen")) is None
    # families only a remote engine serves are found by their tokens
    assert fim_format("qwen2", tokenizer("qwen")).name == "qwen"
    assert fim_format("starcoder2", tokenizer("starcoder2")).name == "starcoder2"
    assert fim_format("llama", tokenizer("codellama")).name == "codellama"
    assert fim_format("mistral", tokenizer("codestral")).name == "codestral"
    assert fim_format("llama", tokenizer("deepseek")).name == "deepseek"


def test_a_tokenizer_without_fim_tokens_has_no_format():
    assert detect_fim_format(byte_level(("<|endoftext|>",))) is None
    assert detect_fim_format(sentencepiece_like(("<unk>", "<s>", "</s>"))) is None


def test_a_format_needs_at_least_one_order():
    with pytest.raises(ValueError, match="neither"):
        FimFormat("x", 1, 2, (3,), (), supports_spm=False, supports_psm=False)
    with pytest.raises(ValueError, match="once each"):
        FimFormat("x", 1, 2, (3,), (), psm_order=(1, "{prefix}", 2, 3))
