"""Cursor context: the text before and after the cursor, and the current line split at the cursor.

The server cuts it from a window around the cursor (lsp_server.documents.Document.context_at), so
`prefix` and `suffix` hold at most a few prompt budgets of text, whatever the size of the file; in a
line longer than the window, `line_prefix` and `line_suffix` are that line's part in the window."""

from __future__ import annotations

import re
from dataclasses import dataclass

LINE_END = re.compile(r"\r\n|\r|\n")
BLOCK_OPENERS = (":", "{", "(", "[")


@dataclass(frozen=True)
class CursorContext:
    prefix: str  # all text before the cursor
    suffix: str  # all text after the cursor
    language_id: str | None = None
    path: str | None = None
    start: int = 0  # document offset where `prefix` starts (0: it is all the text before the cursor)
    suffix_cut: bool = False  # the document goes on after `suffix`

    @property
    def line_suffix_complete(self) -> bool:
        """`line_suffix` runs to the real end of the line (not to the end of the window)."""
        return not self.suffix_cut or LINE_END.search(self.suffix) is not None

    @property
    def in_long_line(self) -> bool:
        """The cursor's line is longer than the window on either side (minified or generated code):
        the window holds only part of it."""
        before = self.start > 0 and LINE_END.search(self.prefix) is None
        return before or not self.line_suffix_complete

    @property
    def line_prefix(self) -> str:
        """The current line up to the cursor."""
        cut = max(self.prefix.rfind("\n"), self.prefix.rfind("\r"))
        return self.prefix[cut + 1 :]

    @property
    def line_suffix(self) -> str:
        """The current line after the cursor, without its line break."""
        m = LINE_END.search(self.suffix)
        return self.suffix if m is None else self.suffix[: m.start()]

    @property
    def mid_line(self) -> bool:
        """Code follows the cursor on its line: the suggestion stays on this line."""
        return self.line_suffix.strip() != ""

    @property
    def multi_line(self) -> bool:
        """The suggestion may run over several lines: nothing follows the cursor on its line, and the
        line so far is blank (a new line) or opens a block (`def f(x):`, `{`, `(`, `[`). While a
        statement is being typed, the suggestion completes that line, as Cody and Copilot do."""
        if self.mid_line:
            return False
        code = self.line_prefix.strip()
        return not code or code.endswith(BLOCK_OPENERS)

    def lines_before(self, n: int) -> list[str]:
        """The last `n` lines of the prefix (the cursor's line, up to the cursor, last), without
        splitting the whole text."""
        return _tail(self.prefix, n).split("\n")[-n:]

    def lines_after(self, n: int) -> list[str]:
        """The first `n` lines of the suffix (the rest of the cursor's line first)."""
        return _head(self.suffix, n).split("\n")[:n]

    @property
    def eol(self) -> str:
        m = LINE_END.search(self.prefix) or LINE_END.search(self.suffix)
        return m.group(0) if m else "\n"


def _tail(text: str, n: int) -> str:
    pos = len(text)
    for _ in range(n):
        pos = text.rfind("\n", 0, pos)
        if pos < 0:
            return text
    return text[pos + 1:]


def _head(text: str, n: int) -> str:
    pos = -1
    for _ in range(n):
        pos = text.find("\n", pos + 1)
        if pos < 0:
            return text
    return text[:pos]


def context_at(text: str, offset: int, language_id: str | None = None, path: str | None = None,
               replace: tuple[int, int, str] | None = None) -> CursorContext:
    """Context for a cursor at `offset`; `replace` = (start, end, text) applies the item selected in
    the completion popup (`selectedCompletionInfo`) as if it were already inserted."""
    if replace is not None:
        start, end, inserted = replace
        return CursorContext(text[:start] + inserted, text[max(end, offset):], language_id, path)
    return CursorContext(text[:offset], text[offset:], language_id, path)


def parse_cursor_marked(snippet: str, marker: str = "█") -> CursorContext:
    """Test helper: a snippet with one cursor marker -> its context."""
    assert snippet.count(marker) == 1, "snippet needs exactly one cursor marker"
    i = snippet.index(marker)
    return CursorContext(snippet[:i], snippet[i + len(marker):])
