"""Table tests for the shaping filters: each row is a cursor-marked snippet (█ = cursor), the raw
model continuation, and the suggestion expected."""

import pytest

from lsp_server.context import parse_cursor_marked
from lsp_server.postprocess import generation_can_stop, shape
from lsp_server.postprocess.block_scope import stop_at_block_end
from lsp_server.postprocess.indentation_style import match_indentation_style
from lsp_server.postprocess.repetition import drop_repeated_lines
from lsp_server.postprocess.rest_of_line import fit_rest_of_line
from lsp_server.postprocess.single_line import keep_single_line
from lsp_server.postprocess.suffix_overlap import drop_suffix_overlap
from lsp_server.postprocess.suggestion import Suggestion
from lsp_server.postprocess.trailing_whitespace import trim_trailing_whitespace


def run(f, snippet, raw):
    return f(parse_cursor_marked(snippet), Suggestion(raw))


@pytest.mark.parametrize("snippet, raw, expected", [
    ("x = foo(█)\n", "a, b)\ny = 2", "a, b)"),          # mid-line: one line only
    ("x = █\n", "1\ny = 2", "1"),                        # a statement being typed: its line only
    ("x = 1\n█", "y = 2\nz = 3", "y = 2\nz = 3"),       # a blank line: multi-line allowed
    ("if x:█", "\n    y = 2\n    z = 3", "\n    y = 2\n    z = 3"),  # a block opener: its body
    ("f(a,█", "\n  b)", ""),                             # line end inside a call: that line only
    ("x = foo(█)   \n", "a\nb", "a"),
    ("█", "a\r\nb", "a\r\nb"),
])
def test_single_line_only_when_code_follows_cursor(snippet, raw, expected):
    assert run(keep_single_line, snippet, raw).text == expected


@pytest.mark.parametrize("snippet, raw, expected", [
    # block opened on the cursor line ends at the next line back at its indentation
    ("def f():█\n", "\n    return 1\ndef g():\n    pass", "\n    return 1"),
    # inside a body: a line indented less than the cursor line ends it
    ("def f():\n    x = 1\n    █\n", "y = 2\nprint(x)", "y = 2"),
    # empty line inside a body: the reference is the first suggested line
    ("def f():\n    x = 1\n    █\n", "return x\n\nclass A:", "return x"),
    # sibling statements: one paragraph, up to a blank line
    ("x = 1\n█", "y = 2\nz = 3\n\ndef g():", "y = 2\nz = 3"),
    # inside a block just opened, blank lines are part of it
    ("def f():█", "\n    a = 1\n\n    b = 2\nc = 3", "\n    a = 1\n\n    b = 2"),
    # a closing brace at the block's indentation is kept when the suffix lacks it
    ("if (x) {█", "\n  y();\n}\nfoo();", "\n  y();\n}"),
    # ...and dropped when the suffix already closes the block
    ("if (x) {█\n}\n", "\n  y();\n}\nfoo();", "\n  y();"),
    # no dedent yet: unchanged
    ("def f():█", "\n    a = 1\n    b = 2", "\n    a = 1\n    b = 2"),
    # tabs count as indentation too
    ("func f() {\n\tx := 1\n\t█\n}", "y := 2\n}\n", "y := 2"),
])
def test_block_scope_stops_at_dedent(snippet, raw, expected):
    assert run(stop_at_block_end, snippet, raw).text == expected


def test_block_end_is_only_known_once_the_dedented_line_has_code():
    ctx = parse_cursor_marked("def f():█\n")
    assert not generation_can_stop(ctx, "\n    return 1\n")
    assert not generation_can_stop(ctx, "\n    return 1\n   ")
    assert generation_can_stop(ctx, "\n    return 1\nd")
    assert generation_can_stop(parse_cursor_marked("f(█)"), "x)\n")
    assert not generation_can_stop(parse_cursor_marked("f(█)"), "x)")
    typing = parse_cursor_marked("    total = compu█")  # a statement being typed: done at its line end
    assert not generation_can_stop(typing, "te(a, b)")
    assert generation_can_stop(typing, "te(a, b)\n")


@pytest.mark.parametrize("snippet, raw, expected", [
    ("x = compute(a)\n█", "x = compute(a)", ""),                  # repeats the previous line
    ("a = 1\nb = 2\n█", "a = 1\nb = 2", ""),                      # repeats the previous lines
    ("x = compute(a)\n█", "y = compute(a)", "y = compute(a)"),
    ("}\n█", "}", "}"),                                           # short lines may repeat
    ("█", "foo(1)\nfoo(1)\nfoo(1)", "foo(1)"),                    # cut a loop of one line
    ("x = compute(a)\nx = █", "compute(a)", ""),                  # the whole line repeats
])
def test_repeated_lines_are_dropped(snippet, raw, expected):
    assert run(drop_repeated_lines, snippet, raw).text == expected


@pytest.mark.parametrize("snippet, raw, expected", [
    ("func f() {\n\tx := 1\n\t█", "y := 2\n    z := 3", "y := 2\n\tz := 3"),
    ("def f():\n  x = 1\n  █", "if x:\n\ty = 2", "if x:\n  y = 2"),
    ("def f():\n    x = 1\n    █", "if x:\n        y = 2", "if x:\n        y = 2"),
    ("█", "a\n    b", "a\n    b"),                                # no indentation known
])
def test_indentation_style_follows_the_document(snippet, raw, expected):
    assert run(match_indentation_style, snippet, raw).text == expected


@pytest.mark.parametrize("snippet, raw, expected", [
    ("def f():\n    █\n    return x\n", "x = 1\n    return x", "x = 1"),
    ("if x {\n\ta()█\n}\n", "\n\tb()\n}", "\n\tb()"),
    ("a()█\nb()\nc()\n", "\nz()\nb()\nc()", "\nz()"),
    ("a()█\nb()\n", "\nz()\ny()", "\nz()\ny()"),
])
def test_lines_that_already_follow_the_cursor_are_dropped(snippet, raw, expected):
    assert run(drop_suffix_overlap, snippet, raw).text == expected


@pytest.mark.parametrize("snippet, raw, expected", [
    ("x = 1   █", "", ""),
    ("█", "a = 1   \nb = 2 \t\n\n\n", "a = 1\nb = 2"),
    ("█", "  \n \t ", ""),
    ("x = █", " 1", " 1"),
])
def test_trailing_whitespace_is_trimmed(snippet, raw, expected):
    assert run(trim_trailing_whitespace, snippet, raw).text == expected


@pytest.mark.parametrize("snippet, raw, expected, replace", [
    ("print(█)", "x)", "x", False),                   # the suffix already closes the call
    ("print(█)", "f(x)", "f(x)", False),              # balanced: keep its own closer
    ("x = foo(█) + 1", "a, b) + 1", "a, b", False),   # repeats the whole rest of the line
    ("if foo(█):", "a, b) and c:", "a, b) and c:", True),  # rewrites the closers: replace them
    ("x = [█]", "1, 2]]", "1, 2]", False),            # over-closes once
    ("print(█)", "'a)'", "'a)'", False),              # a bracket inside a string is not one
    ("y = █ + 1", "x", "x", False),
    ("print(█)", ")", "", False),                     # only the rest of the line again: nothing
])
def test_rest_of_line_is_never_repeated(snippet, raw, expected, replace):
    s = run(fit_rest_of_line, snippet, raw)
    assert (s.text, s.replace_to_eol) == (expected, replace)


@pytest.mark.parametrize("snippet, raw, expected", [
    ("def add(a, b):█\n", "\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n",
     "\n    return a + b"),
    ("print(█)\n", "'hi')\nprint(2)", "'hi'"),
    ("x = 1\r\ndef f():█\r\n", "\n    pass\nx", "\r\n    pass"),
    ("x = 1\n█", "   \n", ""),
])
def test_shape_chains_the_filters(snippet, raw, expected):
    assert shape(parse_cursor_marked(snippet), raw).text == expected


@pytest.mark.parametrize("snippet, raw, expected", [
    ("x = █", "1\x00junk", "1"),
    ("x = █", "'a\rb'", "'a"),
    ("x = █", "'caf\ufffd", "'caf"),
    ("x = █", "\tok\n", "\tok\n"),
])
def test_control_characters_end_the_suggestion(snippet, raw, expected):
    from lsp_server.postprocess.control_characters import cut_at_control_characters
    assert run(cut_at_control_characters, snippet, raw).text == expected


@pytest.mark.parametrize("snippet, raw, expected", [
    # a phrase looping: kept up to the end of its first copy
    ("def add(a, b):\n█", '    """Return a list of a list of a list of a list of a list of', '    """Return a list of'),
    ("def test_█", "configure_configure_configure_configure_configure_", "configure_"),
    # a two-line loop
    ("def f(self):\n█", "    self.x = x\n    self.y = y\n" * 4, "    self.x = x\n    self.y = y\n"),
    # not loops: three copies, short pieces, punctuation only
    ("x = █", "f(a) + f(a) + f(a) + 1", "f(a) + f(a) + f(a) + 1"),
    ("x = █", "[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]", "[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]"),
    ("# █", "----------------------------------------", "----------------------------------------"),
])
def test_loops_are_cut_after_their_first_copy(snippet, raw, expected):
    from lsp_server.postprocess.loops import cut_loops

    assert run(cut_loops, snippet, raw).text == expected


def test_generation_stops_once_the_text_loops():
    ctx = parse_cursor_marked("def f():\n    █\n")
    assert not generation_can_stop(ctx, "return a list of a list of a list of")
    assert generation_can_stop(ctx, "return a list of a list of a list of a list of")
    assert not generation_can_stop(parse_cursor_marked("x = █"), "[0, 0, 0, 0, 0, 0, 0, 0, 0, 0")
