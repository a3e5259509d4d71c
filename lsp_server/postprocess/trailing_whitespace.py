"""Trim trailing whitespace from each suggested line and blank lines from the end; a suggestion that
is only whitespace becomes empty."""

from __future__ import annotations

from lsp_server.context import CursorContext
from lsp_server.postprocess.suggestion import Suggestion


def trim_trailing_whitespace(ctx: CursorContext, s: Suggestion) -> Suggestion:
    lines = [ln.rstrip() for ln in s.text.split("\n")]
    while len(lines) > 1 and not lines[-1]:
        lines.pop()
    text = "\n".join(lines)
    if not text.strip():
        return s.with_text("")
    return s.with_text(text)
