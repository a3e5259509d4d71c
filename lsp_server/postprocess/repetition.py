"""Drop a suggestion that only repeats the lines just before the cursor, and cut a suggestion at
the point where it starts repeating its own previous line."""

from __future__ import annotations

from lsp_server.context import CursorContext
from lsp_server.postprocess.suggestion import Suggestion

MIN_REPEAT_CHARS = 4  # shorter lines (`}`, `end`, `pass`) legitimately repeat
LOOK_BACK_LINES = 200


def _meaningful(line: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= MIN_REPEAT_CHARS and any(c.isalnum() for c in stripped)


def drop_repeated_lines(ctx: CursorContext, s: Suggestion) -> Suggestion:
    lines = s.text.split("\n")
    # cut where the suggestion repeats its own previous line
    for i in range(1, len(lines)):
        if _meaningful(lines[i]) and lines[i].strip() == lines[i - 1].strip():
            lines = lines[:i]
            s = s.with_text("\n".join(lines))
            break
    full = [ln.strip() for ln in (ctx.line_prefix + s.text).split("\n") if ln.strip()]
    if not full or not all(_meaningful(ln) for ln in full):
        return s
    before = [ln.strip() for ln in ctx.lines_before(LOOK_BACK_LINES)[:-1] if ln.strip()]
    if len(before) >= len(full) and before[-len(full):] == full:
        return s.with_text("")
    return s
