"""Huge and minified documents (issue 21): a keystroke touches a bounded amount of text whatever the
size of the file or of the cursor's line, the context window does not slide while typing, and the
prompt (and so the document's KV cache) still only grows at its end."""

from __future__ import annotations

import random
import re
import sys

import pytest

from inference.loader import load_model
from lsp_server.documents import CHUNK_CHARS, Document, window_chars
from lsp_server.postprocess import Suggestion
from lsp_server.postprocess.rest_of_line import fit_rest_of_line
from lsp_server.prompt import Budget, PromptBuilder
from tests.checkpoints import make_gpt_bigcode
from tests.reliability_client import TEST_SERVER_COMMAND, RawClient

WINDOW = window_chars(0, None)  # no model loaded: the default budget


def minified(n: int, seed: int = 0) -> str:
    rnd = random.Random(seed)
    parts = ["var a=1;", "function f(x){return x+1}", "if(a){b(c[0])}", "o.p=\"é\";", "g(h,i);"]
    out = []
    size = 0
    while size < n:
        out.append(rnd.choice(parts))
        size += len(out[-1])
    return "".join(out)[:n]


def python_lines(count: int) -> str:
    return "".join(f"def func_{i}(x):\n    return x + {i}\n\n" for i in range(count // 3 + 1))


DOCS = {
    "1 MB one line": minified(1_000_000),
    "20 000 lines": python_lines(20_000),
    "10 MB": python_lines(1_000_000)[:10_000_000],
}


def _type(doc: Document, offset: int, text: str):
    """Type `text` at `offset` one character at a time, yielding the context after each key."""
    for ch in text:
        line, col = doc.position_at(offset)
        doc.apply_change(ch, ((line, col), (line, col)))
        offset += 1
        yield offset, doc.context_at(offset, window=WINDOW)


@pytest.mark.parametrize("name", list(DOCS))
@pytest.mark.parametrize("where", ["end", "middle"])
def test_context_window_is_bounded_and_stays_put_while_typing(name, where):
    text = DOCS[name]
    doc = Document("file:///huge", text)
    offset = len(text) if where == "end" else len(text) // 2
    chars, line_chars = WINDOW
    starts, suffixes = set(), set()
    for offset, ctx in _type(doc, offset, "abc(de)fgh" * 4):
        assert len(ctx.prefix) <= chars + chars // 4 and len(ctx.suffix) <= chars
        # the window is the document's text around the cursor
        assert ctx.prefix == doc.slice(ctx.start, offset) and doc.slice(offset, offset + len(ctx.suffix)) == ctx.suffix
        assert ctx.suffix_cut == (offset + len(ctx.suffix) < len(doc))
        starts.add(ctx.start)
        suffixes.add(ctx.suffix)
    # 40 keys cross at most one grid line of the window start (a quarter window, or of the in-line window)
    assert len(starts) <= 2
    assert len(suffixes) == 1  # typing at the cursor leaves the text after it as it was
    if name == "1 MB one line":
        assert len(ctx.line_prefix) <= line_chars + line_chars // 4 and ctx.line_suffix_complete == (where == "end")


def test_a_normal_file_gets_its_whole_text_as_context():
    text = python_lines(300)  # about 3.5 KB, under the window
    doc = Document("file:///small", text)
    offset = text.index("func_50")
    ctx = doc.context_at(offset, window=WINDOW)
    assert ctx.prefix == text[:offset] and ctx.suffix == text[offset:] and ctx.start == 0 and not ctx.suffix_cut


def test_an_edit_rewrites_only_the_chunks_it_touches():
    text = DOCS["10 MB"]
    doc = Document("file:///big", text)
    before = [id(c) for c in doc._chunks]
    middle = len(text) // 2
    doc.apply_change("x = 1\n", (doc.position_at(middle), doc.position_at(middle + 3)))
    after = [id(c) for c in doc._chunks]
    assert len(after) == len(before)
    assert sum(a != b for a, b in zip(before, after)) <= 2  # the rest of the document is not copied
    assert doc._text is None  # and never joined
    assert max(len(c) for c in doc._chunks) <= 2 * CHUNK_CHARS + 1
    expected = text[:middle] + "x = 1\n" + text[middle + 3:]
    for probe in (0, middle - 5, middle, middle + 6, len(expected) - 1, len(expected)):
        line = expected.count("\n", 0, probe)
        col = probe - (expected.rfind("\n", 0, probe) + 1)
        assert doc.position_at(probe) == (line, col) and doc.offset_at(line, col) == probe
    assert doc.line_count == expected.count("\n") + 1
    assert doc.slice(middle - 20, middle + 20) == expected[middle - 20:middle + 20]


def _loop_lines(func, *args) -> int:
    """Lines run inside `func` (a count of work that does not depend on the machine's speed)."""
    code = func.__code__
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if frame.f_code is code:
            if event == "line":
                count += 1
            return tracer
        return None

    sys.settrace(tracer)
    try:
        func(*args)
    finally:
        sys.settrace(None)
    return count


def test_fitting_the_rest_of_a_huge_line_does_not_walk_it():
    """The rest of the line is compared with the suggestion's end only as far as the suggestion goes
    (it was a loop over every length of the rest: 3.7 s per keystroke in a 1 MB line)."""
    text = minified(60_000, seed=3)
    doc = Document("file:///min.js", text)
    ctx = doc.context_at(len(text) // 2, window=(60_000, 60_000))
    assert len(ctx.line_suffix) > 20_000
    s = Suggestion("return x+1}")
    assert _loop_lines(fit_rest_of_line, ctx, s) < 100
    assert fit_rest_of_line(ctx, s).text == "return x+1}"
    # a rest of line the suggestion repeats is still dropped from it
    short = doc.context_at(text.index("if(a)", 1000), window=WINDOW)
    assert fit_rest_of_line(short, Suggestion("x=2;if(a)")).text in ("x=2;", "x=2;if(a)")


@pytest.fixture(scope="module")
def builder(tmp_path_factory):
    return PromptBuilder(load_model(make_gpt_bigcode(tmp_path_factory.mktemp("p") / "sc", n_positions=512)))


@pytest.mark.parametrize("name", ["1 MB one line", "10 MB"])
def test_the_prompt_only_grows_while_typing_at_the_end_of_a_huge_document(builder, name):
    text = DOCS[name]
    doc = Document("file:///huge", text)
    window = window_chars(0, builder.info)
    budget = Budget.for_model(builder.info.max_context, 0, 96, 0.25, builder.layout)
    previous, rebuilt = None, 0
    offset = len(text)
    for key, ch in enumerate("abcdefghijkl"):
        line, col = doc.position_at(offset)
        doc.apply_change(ch, ((line, col), (line, col)))
        offset += 1
        ids = builder.build(doc.context_at(offset, window=window), budget).ids
        assert len(ids) <= builder.info.max_context
        if previous is not None:
            same = next((i for i, (a, b) in enumerate(zip(previous, ids)) if a != b), min(len(previous), len(ids)))
            if len(ids) - same > 8:  # more than the last few tokens changed: a re-prefill
                rebuilt += 1
        previous = ids
    assert rebuilt <= 1  # at most once (the cut inside a long line moves in steps of 64 tokens)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    checkpoint = make_gpt_bigcode(tmp_path_factory.mktemp("ckpt") / "sc")
    client = RawClient(TEST_SERVER_COMMAND)
    client.initialize({"model": str(checkpoint), "maxNewTokensSingleLine": 4, "maxNewTokensMultiLine": 4})
    client.wait_model()
    yield client
    client.close()
    assert "Traceback" not in client.stderr, client.stderr[-3000:]


PREFILL = re.compile(r"completion #(\d+)\.0 .*?prefill_tokens=(\d+)")


@pytest.mark.parametrize("name,where", [("1 MB one line", "end"), ("1 MB one line", "inside"), ("10 MB", "end")])
def test_typing_in_a_huge_document_reuses_the_kv_cache(server, name, where):
    text = DOCS[name]
    uri = f"file:///{name.replace(' ', '_')}_{where}.js"
    server.open(uri, text, "javascript")
    offset = len(text) if where == "end" else text.index("function", len(text) // 2)
    line = text.count("\n", 0, offset)
    col = offset - (text.rfind("\n", 0, offset) + 1)
    seen = len(server.log_messages())
    for key, ch in enumerate("xyzwvutsrq"):
        server.change(uri, key + 2, [{"range": {"start": {"line": line, "character": col},
                                                "end": {"line": line, "character": col}}, "text": ch}])
        col += 1
        answer = server.inline(uri, line, col, timeout=30)
        assert "result" in answer, answer
    prefills = [int(m.group(2)) for msg in server.log_messages()[seen:] for m in [PREFILL.search(msg)] if m]
    assert len(prefills) >= 5, server.log_messages()[seen:]
    # the first keystroke prefills the place; after it a keystroke prefills a few tokens (at most one
    # re-prefill, where the cut inside a long line steps by 64 tokens)
    assert sum(p > 16 for p in prefills[1:]) <= 1, prefills
    server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    server.assert_alive()


@pytest.mark.parametrize("chunk_chars", [1, 2, 3])
def test_line_breaks_split_or_joined_at_chunk_edges_count_once(chunk_chars):
    """Every edit of every short text of "a", "\\r" and "\\n" (a "\\r" and a "\\n" brought together or
    apart across a chunk edge): the line index equals a fresh count of the text."""
    import itertools

    for n in range(5):
        for letters in itertools.product("a\r\n", repeat=n):
            text = "".join(letters)
            for i in range(n + 1):
                for j in range(i, n + 1):
                    for new in ("", "\n", "\r", "b"):
                        doc = Document("file:///t", text, chunk_chars=chunk_chars)
                        doc.replace(i, j, new)
                        expected = text[:i] + new + text[j:]
                        starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", expected)]
                        assert doc.text == expected and doc.line_count == len(starts)
                        assert [doc.line_start(k) for k in range(len(starts))] == starts, (text, i, j, new)
                        assert not any(a.endswith("\r") and b.startswith("\n")
                                       for a, b in zip(doc._chunks, doc._chunks[1:]))


@pytest.mark.parametrize("name, where, long_line", [("1 MB one line", "end", True), ("1 MB one line", "inside", True),
                                                    ("10 MB", "end", False), ("20 000 lines", "middle", False)])
def test_a_suggestion_inside_a_line_longer_than_the_window_is_short(builder, name, where, long_line):
    """Minified code has no line end to stop a single-line suggestion: it gets one expression's worth
    of tokens (completion.LONG_LINE_MAX_NEW_TOKENS), not the configured limit; normal lines keep it."""
    from lsp_server.completion import LONG_LINE_MAX_NEW_TOKENS, build_prompt
    from lsp_server.config import Config

    text = DOCS[name]
    offset = {"end": len(text), "inside": len(text) // 2, "middle": text.index("return", len(text) // 2)}[where]
    ctx = Document("file:///huge", text).context_at(offset, window=window_chars(0, builder.info))
    plan = build_prompt(Config(), builder, ctx)
    assert ctx.in_long_line is long_line
    assert plan.max_new == (LONG_LINE_MAX_NEW_TOKENS if long_line else Config().max_new_tokens(ctx.multi_line))
    assert LONG_LINE_MAX_NEW_TOKENS < Config().max_new_tokens_single_line
