"""Document state under random incremental edits (hypothesis): the server's copy of a document
stays identical to an independent reference model in every position encoding, both in the
document layer (many examples) and through a real server process over stdio (fewer examples);
random bad positions give an empty answer, never an exception."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsp_server.documents import CHUNK_CHARS, Document
from tests.checkpoints import make_gpt_bigcode
from tests.reliability_client import TEST_SERVER_COMMAND, RawClient
from tests.reliability_server_main import DOCUMENT_TEXT_COMMAND
from tests.reliability_text_model import (ENCODINGS, concrete_change, edit_scripts, lines, offset, position,
                                          texts, units, valid_offsets)

_uris = itertools.count()


def apply_to_document(doc: Document, change: dict, encoding: str) -> None:
    if "range" not in change:
        doc.apply_change(change["text"])
        return
    r = change["range"]
    doc.apply_change(change["text"], ((r["start"]["line"], r["start"]["character"]),
                                      (r["end"]["line"], r["end"]["character"])), encoding)


@pytest.mark.parametrize("chunk_chars", [1, 3, CHUNK_CHARS])  # tiny chunks: every edit splits, joins, straddles
@pytest.mark.parametrize("encoding", ENCODINGS)
@settings(max_examples=100, deadline=None)
@given(script=edit_scripts(max_edits=15))
def test_random_edits_leave_the_document_equal_to_the_reference(encoding, chunk_chars, script):
    initial, edits = script
    doc, expected = Document("file:///t", initial, chunk_chars=chunk_chars), initial
    for edit in edits:
        change, expected = concrete_change(expected, edit, encoding)
        apply_to_document(doc, change, encoding)
        assert doc.text == expected
        # the line index kept up to date around each edit equals a fresh count of the whole text
        starts = [0] + [i + 1 for i, c in enumerate(expected) if c == "\n" or (
            c == "\r" and expected[i + 1:i + 2] != "\n")]
        assert doc.line_starts == starts
        # the chunked index answers the same without joining the text
        assert len(doc) == len(expected) and doc.line_count == len(starts)
        assert [doc.line_start(n) for n in range(len(starts))] == starts
        assert all("".join(doc._chunks[i:i + 2]).count("\r\n") == doc._chunks[i].count("\r\n")
                   + doc._chunks[i + 1].count("\r\n") for i in range(len(doc._chunks) - 1))
    assert doc.line_count == len(lines(expected))
    for i in valid_offsets(expected):
        line, col = position(expected, i, encoding)
        assert doc.offset_at(line, col, encoding) == i
        assert doc.position_at(i, encoding) == (line, col)
        assert doc.slice(i, len(expected)) == expected[i:] and doc.slice(0, i) == expected[:i]


@pytest.mark.parametrize("encoding", ENCODINGS)
@settings(max_examples=100, deadline=None)
@given(text=texts, line=st.integers(-3, 8), character=st.integers(-3, 40))
def test_any_position_maps_to_its_offset_or_to_nothing(encoding, text, line, character):
    """Inside a surrogate pair / UTF-8 sequence, past the end of a line or file, negative: None,
    never an exception; a real position gives exactly its offset."""
    doc = Document("file:///t", text)
    valid = {position(text, i, encoding): i for i in valid_offsets(text)}
    assert doc.offset_at(line, character, encoding) == valid.get((line, character))
    # an edit at any position never raises and never splits a character
    clamped = doc.clamped_offset(line, character, encoding)
    assert 0 <= clamped <= len(text)
    spans = lines(text)
    if line >= len(spans):
        assert clamped == len(text)
    elif line >= 0 and character >= sum(units(c, encoding) for c in text[spans[line][0]:spans[line][1]]):
        assert clamped == spans[line][1]  # past the end of a line: its end (the LSP rule)
    doc.apply_change("X", ((line, character), (line, character)), encoding)
    assert doc.text.count("X") == text.count("X") + 1
    doc.text.encode("utf-8")  # no lone surrogates


# -- through a real server process


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return str(make_gpt_bigcode(tmp_path_factory.mktemp("ckpt") / "starcoder"))


@pytest.fixture(scope="module", params=ENCODINGS)
def server(request, checkpoint):
    client = RawClient(TEST_SERVER_COMMAND)
    init = client.initialize({"model": checkpoint, "maxNewTokensSingleLine": 4, "maxNewTokensMultiLine": 4},
                             encodings=(request.param,))
    assert init["result"]["capabilities"]["positionEncoding"] == request.param
    client.encoding = request.param
    yield client
    client.close()
    assert "Traceback" not in client.stderr, client.stderr[-3000:]


def server_text(client: RawClient, uri: str):
    answer = client.request("workspace/executeCommand", {"command": DOCUMENT_TEXT_COMMAND, "arguments": [uri]})
    return answer["result"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=edit_scripts(max_edits=12), batch=st.integers(1, 3))
def test_random_edits_through_the_server_keep_its_text_equal_to_the_client(server, script, batch):
    initial, edits = script
    uri = f"file:///w/doc{next(_uris)}.py"
    server.open(uri, initial)
    expected, version, pending = initial, 1, []
    for edit in edits:
        change, expected = concrete_change(expected, edit, server.encoding)
        pending.append(change)
        if len(pending) >= batch:  # several changes in one didChange, applied in order
            version += 1
            server.change(uri, version, pending)
            pending = []
    if pending:
        server.change(uri, version + 1, pending)
    assert server_text(server, uri) == expected
    server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts.filter(lambda t: any(ord(c) > 0xFFFF for c in t)), line=st.integers(-2, 6),
       character=st.integers(-2, 30))
def test_bad_positions_through_the_server_get_an_empty_answer(server, text, line, character):
    uri = f"file:///w/pos{next(_uris)}.py"
    server.open(uri, text)
    valid = {position(text, i, server.encoding) for i in valid_offsets(text)}
    answer = server.inline(uri, line, character, timeout=3)
    assert "result" in answer or answer["error"]["code"] == -32602, answer
    if (line, character) not in valid:
        assert answer.get("result", {"items": []}) in (None, {"items": []}), answer
    # plain completion at the same position, and an inline request whose popup selection has a bad range
    plain = server.request("textDocument/completion", {"textDocument": {"uri": uri},
                                                       "position": {"line": line, "character": character}}, 3)
    assert "result" in plain or plain["error"]["code"] == -32602, plain
    selected = server.request("textDocument/inlineCompletion", {
        "textDocument": {"uri": uri}, "position": {"line": 0, "character": 0},
        "context": {"triggerKind": 1, "selectedCompletionInfo": {"text": "x", "range": {
            "start": {"line": line, "character": character}, "end": {"line": line + 1, "character": 2}}}}}, 3)
    assert "result" in selected or selected["error"]["code"] == -32602, selected
    # and a whole-line past-the-end edit lands at the line's end (LSP clamp) without breaking anything
    server.change(uri, 2, [{"range": {"start": {"line": 0, "character": 10_000},
                                      "end": {"line": 0, "character": 10_000}}, "text": "Z"}])
    start, end = lines(text)[0]
    assert server_text(server, uri) == text[:end] + "Z" + text[end:]
    server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})


def test_server_survived_the_random_positions_and_logged_no_exception(server):
    s = server.assert_alive()
    assert s["errors"] == 0
    assert not [m for m in server.log_messages() if "Error in server" in m or "Traceback" in m]
