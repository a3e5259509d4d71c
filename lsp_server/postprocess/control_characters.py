"""Cut a suggestion at the first character no editor should receive: a control character other than
tab and newline, a lone carriage return, or U+FFFD (bytes that did not decode, such as a
multi-byte character cut by the token limit)."""

from __future__ import annotations

from lsp_server.context import CursorContext
from lsp_server.postprocess.suggestion import Suggestion


def _bad(ch: str) -> bool:
    return ch == "\ufffd" or (ord(ch) < 32 and ch not in "\t\n") or ch == "\x7f"


def cut_at_control_characters(ctx: CursorContext, s: Suggestion) -> Suggestion:
    for i, ch in enumerate(s.text):
        if _bad(ch):
            return s.with_text(s.text[:i])
    return s
