"""Never repeat the lines that already follow the cursor: suggested lines at the end that equal
the next lines of the document are dropped."""

from __future__ import annotations

from lsp_server.context import CursorContext
from lsp_server.postprocess.suggestion import Suggestion

SUFFIX_LINES = 200


def drop_suffix_overlap(ctx: CursorContext, s: Suggestion) -> Suggestion:
    lines = s.text.split("\n")
    if len(lines) < 2:
        return s
    following = [ln.rstrip() for ln in ctx.lines_after(SUFFIX_LINES)[1:]]
    following = [ln for ln in following if ln.strip()]
    # Largest m: the last m non-blank suggested lines equal the first m following lines.
    body = [(i, ln.rstrip()) for i, ln in enumerate(lines) if i > 0 and ln.strip()]
    for m in range(min(len(body), len(following)), 0, -1):
        if [ln for _, ln in body[-m:]] == following[:m]:
            cut = body[-m][0]
            return s.with_text("\n".join(lines[:cut]))
    # The whole suggestion starts repeating the next line: keep what comes before it.
    for j, (i, ln) in enumerate(body):
        if following and ln == following[0] and [x for _, x in body[j:]] == following[: len(body) - j]:
            return s.with_text("\n".join(lines[:i]))
    return s
