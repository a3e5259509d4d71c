"""Cursor context and position encodings (UTF-16 default, UTF-8, UTF-32), and the document store's
incremental edits."""

import pytest

from lsp_server.context import context_at, parse_cursor_marked
from lsp_server.documents import Document
from lsp_server.positions import UTF8, UTF16, UTF32, column_to_index, index_to_column

LINE = 'x = "😀漢"; y'


@pytest.mark.parametrize("encoding, columns", [
    (UTF16, {0: 0, 5: 5, 7: 6, 8: 7, 9: 8}),
    (UTF8, {5: 5, 9: 6, 12: 7, 13: 8}),
    (UTF32, {5: 5, 6: 6, 7: 7}),
])
def test_columns_map_to_code_points(encoding, columns):
    for column, index in columns.items():
        assert column_to_index(LINE, column, encoding) == index
        assert index_to_column(LINE, index, encoding) == column


@pytest.mark.parametrize("encoding, column", [(UTF16, 6), (UTF8, 6), (UTF8, 10), (UTF16, 99), (UTF32, -1)])
def test_columns_inside_a_character_or_past_the_line_are_rejected(encoding, column):
    assert column_to_index(LINE, column, encoding) is None


def test_document_edits_and_offsets_with_crlf_and_astral_characters():
    doc = Document("file:///a", "a😀b\r\nsecond\rthird\n")
    assert doc.line_count == 4 and doc.line_text(1) == "second" and doc.line_text(2) == "third"
    assert doc.offset_at(0, 3) == 2 and doc.offset_at(0, 2) is None  # inside the surrogate pair
    assert doc.offset_at(0, 4) == 3 and doc.offset_at(0, 5) is None  # past the end of the line
    assert doc.offset_at(3, 0) == len(doc.text) and doc.offset_at(4, 0) is None
    doc.apply_change("X", ((0, 3), (1, 2)), UTF16)  # across a CRLF line break
    assert doc.text == "a😀Xcond\rthird\n"
    doc.apply_change("!", ((9, 0), (9, 0)), UTF16)  # past the end: appended (the LSP rule)
    assert doc.text.endswith("\n!")
    doc.apply_change("whole", None)
    assert doc.text == "whole" and doc.line_count == 1


def test_context_splits_the_line_at_the_cursor():
    ctx = parse_cursor_marked("def f():\n    return g(█x)\n")
    assert ctx.line_prefix == "    return g(" and ctx.line_suffix == "x)" and ctx.mid_line
    assert not parse_cursor_marked("x = 1█   \r\ny").mid_line
    assert parse_cursor_marked("a\r\nb█\r\n").eol == "\r\n"


def test_selected_completion_item_is_applied_to_the_context():
    text = "obj.ap\n"
    ctx = context_at(text, 6, replace=(4, 6, "append"))
    assert ctx.prefix == "obj.append" and ctx.suffix == "\n"


def test_incremental_line_starts_match_a_full_recount_after_random_edits():
    import random

    from lsp_server.documents import LINE_BREAK

    rng = random.Random(0)
    alphabet = ["a", "\n", "\r", "\r\n", "😀", "漢", "\t", ""]
    for _ in range(1500):
        doc = Document("file:///r", "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))))
        for _ in range(4):
            n = doc.line_count
            ins = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))
            doc.apply_change(ins, ((rng.randint(0, n), rng.randint(0, 5)), (rng.randint(0, n), rng.randint(0, 5))))
            assert doc.line_starts == [0] + [m.end() for m in LINE_BREAK.finditer(doc.text)]
