"""Prompt building on a tiny StarCoder-like checkpoint: layouts per family, budgets, and the
property that typing at the cursor only changes the end of the prompt (so the KV cache stays valid)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from inference.loader import load_model
from lsp_server.context import CursorContext
from lsp_server.prompt import Budget, PromptBuilder, block_ends_after, prefix_pieces, suffix_pieces
from tests.checkpoints import make_codegen, make_gpt_bigcode

SOURCE = Path(textwrap.__file__).read_text()


@pytest.fixture(scope="module")
def starcoder(tmp_path_factory):
    return load_model(make_gpt_bigcode(tmp_path_factory.mktemp("p") / "sc", n_positions=1024))


@pytest.fixture(scope="module")
def codegen(tmp_path_factory):
    return load_model(make_codegen(tmp_path_factory.mktemp("p") / "cg"))


def common_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def test_pieces_cover_the_text_and_cut_where_the_line_before_ends_a_block():
    prefix = "".join(f"line {i}\n" + ("\n" if i % 7 == 0 else "") for i in range(80)) + "cur"
    spans = list(prefix_pieces(prefix))
    assert "".join(prefix[a:b] for a, b in reversed(spans)) == prefix
    assert all(prefix[a] == "\n" for a, _ in spans[:-1])  # every cut sits just before a line break
    # after the cursor's own span, a cut follows exactly the lines that end a block (by their text)
    cuts = {a for a, _ in spans[1:-1]}
    line_ends = [i for i, ch in enumerate(prefix[:spans[0][0]]) if ch == "\n"]
    for i in line_ends:
        line = prefix[prefix.rfind("\n", 0, i) + 1:i]
        assert (i in cuts) == block_ends_after(line), (i, line)
    assert any(block_ends_after(f"line {i}") for i in range(80)) and not all(block_ends_after(f"line {i}") for i in range(80))
    suffix = "rest\n" + "".join(f"s {i}\n" for i in range(60))
    sspans = list(suffix_pieces(suffix))
    assert "".join(suffix[a:b] for a, b in sspans) == suffix
    assert sspans[0][1] > len("rest")  # the rest of the cursor's line stays in the first span
    for a, _ in sspans[1:]:
        assert block_ends_after(suffix[suffix.rfind("\n", 0, a) + 1:a])


def test_an_edit_elsewhere_in_the_file_leaves_the_prompt_unchanged(starcoder):
    """Going back to a place after adding lines far above it (or far below the suffix window) finds
    the same prompt token for token, so the document's KV cache for that place is still good."""
    b = PromptBuilder(starcoder)
    budget = Budget(300, 100)
    cursor = SOURCE.index("def dedent")
    before = b.build(CursorContext(SOURCE[:cursor], SOURCE[cursor:]), budget)
    top = SOURCE.index("\n") + 1  # just after the first line
    added = "import os\nimport sys\n\nX = 1\n"
    after = b.build(CursorContext(SOURCE[:top] + added + SOURCE[top:cursor], SOURCE[cursor:]), budget)
    assert after.ids == before.ids
    below = SOURCE[cursor:] + "\n\ndef tail():\n    pass\n"
    assert b.build(CursorContext(SOURCE[:cursor], below), budget).ids == before.ids


def test_spm_layout_for_starcoder_puts_the_suffix_first(starcoder):
    b = PromptBuilder(starcoder)
    assert b.layout == "spm"
    ctx = CursorContext("def f(x):\n    return ", "\n\nprint(f(1))\n")
    p = b.build(ctx, Budget(200, 50))
    fim = starcoder.fim
    assert p.ids[:2] == [fim.prefix_token, fim.suffix_token]
    middle = p.ids.index(fim.middle_tokens[0])
    assert starcoder.decode(p.ids[2:middle]) == ctx.suffix
    # token healing: the trailing whitespace token is left for the model to write (see heal_whitespace)
    assert p.heal == " " and starcoder.decode(p.ids[middle + 1:]) + p.heal == ctx.prefix
    assert len(p.first_token_ids) > 1
    assert all(b.decode([i]).startswith(" ") for i in p.first_token_ids)
    assert p.suggestion_text(" x + 1") == "x + 1"


def test_a_prompt_ending_in_a_line_break_is_healed_and_one_ending_in_code_is_not(starcoder):
    b = PromptBuilder(starcoder)
    healed = b.build(CursorContext("def f(x):\n", "    return x\n"), Budget(200, 50))
    assert healed.heal == "\n" and starcoder.decode(healed.ids).endswith("def f(x):")
    assert all(b.decode([i]).startswith("\n") for i in healed.first_token_ids)
    plain = b.build(CursorContext("def f(x):\n    return x", "\n"), Budget(200, 50))
    assert plain.heal == "" and plain.first_token_ids == () and starcoder.decode(plain.ids).endswith("return x")


def test_prefix_only_for_left_to_right_families(codegen):
    b = PromptBuilder(codegen)
    assert b.layout == "prefix"
    p = b.build(CursorContext("x = 1\ny = ", "\nz = 3\n"), Budget(100, 0))
    assert codegen.decode(p.ids) + p.heal == "x = 1\ny = " and p.suffix_tokens == 0


def test_budget_is_respected_and_the_cut_is_at_a_line_start(starcoder):
    b = PromptBuilder(starcoder)
    cursor = SOURCE.index("def dedent")
    ctx = CursorContext(SOURCE[:cursor], SOURCE[cursor:])
    budget = Budget.for_model(starcoder.max_context, 0, 64, 0.25, "spm")
    p = b.build(ctx, budget)
    assert p.prefix_tokens <= budget.prefix_tokens and p.suffix_tokens <= budget.suffix_tokens
    assert len(p.ids) + 64 <= starcoder.max_context
    # textwrap.py before dedent is far longer than the budget: the prefix is cut, at a line start
    assert 0 < p.prefix_chars < len(ctx.prefix) // 2
    assert ctx.prefix[-p.prefix_chars - 1] == "\n"
    assert p.prefix_tokens > budget.prefix_tokens // 2  # and the cut keeps most of the budget


def test_typing_at_the_cursor_only_changes_the_end_of_the_prompt(starcoder):
    b = PromptBuilder(starcoder)
    budget = Budget.for_model(starcoder.max_context, 0, 64, 0.25, "spm")
    start = SOURCE.index("def dedent")
    typed = SOURCE[start:start + 400]
    rest = SOURCE[start + 400:]
    prev = None
    full_rebuilds = 0
    changed_tail = []
    for i in range(1, len(typed) + 1):
        ids = b.build(CursorContext(SOURCE[:start] + typed[:i], rest), budget).ids
        if prev is not None:
            keep = common_prefix(prev, ids)
            changed_tail.append(len(ids) - keep)
            full_rebuilds += keep < len(ids) // 2
        prev = ids
    # the prompt's start moves only in large steps: almost every keystroke keeps nearly all of it
    assert full_rebuilds <= len(typed) // 40
    assert sorted(changed_tail)[len(changed_tail) // 2] <= 3


def test_codegen2_style_suffix_is_kept_short():
    budget = Budget.for_model(2048, 0, 64, 0.5, "psm")
    assert budget.suffix_tokens <= 48 and budget.prefix_tokens > 1500
    assert Budget.for_model(2048, 0, 64, 0.5, "prefix").suffix_tokens == 0
    assert Budget.for_model(2048, 512, 64, 0.25, "spm").prefix_tokens + 64 < 512


def test_builder_tokenizes_like_the_model_and_keeps_special_token_text_plain(starcoder):
    b = PromptBuilder(starcoder)
    for text in ["def f(x):\n    return x", "s = '<fim_prefix>' + '<|endoftext|>'", "漢字 😀\n\t"]:
        assert b.encode_piece(text) == starcoder.encode_plain(text)
        assert b.decode(b.encode_piece(text)) == text
    assert starcoder.fim.prefix_token not in b.encode_piece("<fim_prefix>")


def test_codegen2_uses_prefix_first_with_a_short_suffix_and_xglm_keeps_its_leading_token(tmp_path):
    from tests.checkpoints import make_codegen2, make_xglm

    cg2 = load_model(make_codegen2(tmp_path / "cg2"))
    b = PromptBuilder(cg2)
    assert b.layout == "psm"
    suffix = "".join(f"    line_{i} = {i}\n" for i in range(200))
    budget = Budget.for_model(cg2.max_context, 0, 32, 0.5, b.layout)
    p = b.build(CursorContext("def f():\n    x = ", "\n" + suffix), budget)
    fim = cg2.fim
    assert p.ids[-len(fim.middle_tokens):] == list(fim.middle_tokens)
    assert 0 < p.suffix_tokens <= 48  # typing re-prefills the suffix: it stays short
    assert cg2.decode(p.ids[:p.prefix_tokens]) == "def f():\n    x = "

    xglm = load_model(make_xglm(tmp_path / "xglm"))
    bx = PromptBuilder(xglm)
    px = bx.build(CursorContext("a = 1\nb = ", ""), Budget.for_model(xglm.max_context, 0, 32, 0.25, bx.layout))
    assert bx.layout == "prefix" and px.ids == xglm.encode("a = 1\nb = ")  # one leading </s>, as the model expects


def test_continuation_text_keeps_the_space_a_sentencepiece_token_starts_with(tmp_path):
    from tests.checkpoints import make_xglm

    xglm = load_model(make_xglm(tmp_path / "xglm"))
    b = PromptBuilder(xglm)
    prompt = xglm.encode("x = 1\ny =")
    generated = xglm.encode_plain(" 2 + 3")
    assert b.continuation(prompt, generated) == " 2 + 3"
