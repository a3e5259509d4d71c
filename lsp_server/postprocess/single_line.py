"""A single-line request (code after the cursor, or a statement being typed at the line end; see
CursorContext.multi_line): the suggestion stays on the cursor's line."""

from __future__ import annotations

import re

from lsp_server.context import CursorContext
from lsp_server.postprocess.suggestion import Suggestion

LINE_BREAK = re.compile(r"\r\n|\r|\n")


def keep_single_line(ctx: CursorContext, s: Suggestion) -> Suggestion:
    if ctx.multi_line:
        return s
    m = LINE_BREAK.search(s.text)
    return s if m is None else s.with_text(s.text[: m.start()])
