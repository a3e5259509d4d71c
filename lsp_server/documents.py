"""The server's copy of each open document, kept in sync by incremental `didChange` edits.

Line breaks are the LSP ones only: "\\n", "\\r\\n" and "\\r" (not the other characters that
`str.splitlines` treats as breaks). Columns are in the negotiated position encoding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lsp_server.positions import UTF16, column_to_index, index_to_column

LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass
class Document:
    uri: str
    text: str
    language_id: str | None = None
    version: int | None = None
    _line_starts: list[int] | None = field(default=None, repr=False)

    @property
    def line_starts(self) -> list[int]:
        if self._line_starts is None:
            self._line_starts = [0] + [m.end() for m in LINE_BREAK.finditer(self.text)]
        return self._line_starts

    @property
    def line_count(self) -> int:
        return len(self.line_starts)

    def line_text(self, line: int) -> str:
        """The text of `line` without its line break."""
        starts = self.line_starts
        start = starts[line]
        end = starts[line + 1] if line + 1 < len(starts) else len(self.text)
        text = self.text[start:end]
        if text.endswith("\r\n"):
            return text[:-2]
        if text.endswith(("\n", "\r")):
            return text[:-1]
        return text

    def offset_at(self, line: int, character: int, encoding: str = UTF16) -> int | None:
        """Offset into `text` for a position, or None when the position is not in the document."""
        if line < 0 or line >= self.line_count:
            return None
        index = column_to_index(self.line_text(line), character, encoding)
        return None if index is None else self.line_starts[line] + index

    def clamped_offset(self, line: int, character: int, encoding: str = UTF16) -> int:
        """Offset for an edit position: past the end of a line means its end, past the last line
        means the end of the document (the LSP rule). A column inside a character moves back to
        its start."""
        if line < 0:
            return 0
        if line >= self.line_count:
            return len(self.text)
        text = self.line_text(line)
        character = max(0, character)
        index = column_to_index(text, character, encoding)
        while index is None and character > 0:
            character -= 1
            index = column_to_index(text, character, encoding)
        return self.line_starts[line] + (index or 0)

    def position_at(self, offset: int, encoding: str = UTF16) -> tuple[int, int]:
        import bisect

        line = bisect.bisect_right(self.line_starts, offset) - 1
        start = self.line_starts[line]
        return line, index_to_column(self.text[start:offset], offset - start, encoding)

    def apply_change(self, text: str, range_=None, encoding: str = UTF16) -> None:
        """Apply one content change: `range_` is ((line, char), (line, char)) or None for the whole text."""
        if range_ is None:
            self.text = text
        else:
            (sl, sc), (el, ec) = range_
            start = self.clamped_offset(sl, sc, encoding)
            end = self.clamped_offset(el, ec, encoding)
            if end < start:
                start, end = end, start
            old_starts = self.line_starts
            self.text = self.text[:start] + text + self.text[end:]
            self._line_starts = _updated_line_starts(old_starts, self.text, start, end, len(text))
            return
        self._line_starts = None


class DocumentStore:
    def __init__(self) -> None:
        self._docs: dict[str, Document] = {}

    def open(self, uri: str, text: str, language_id: str | None, version: int | None) -> Document:
        doc = Document(uri, text, language_id, version)
        self._docs[uri] = doc
        return doc

    def get(self, uri: str) -> Document | None:
        return self._docs.get(uri)

    def close(self, uri: str) -> Document | None:
        return self._docs.pop(uri, None)

    def __len__(self) -> int:
        return len(self._docs)


def _updated_line_starts(starts: list[int], new_text: str, start: int, end: int, inserted: int) -> list[int]:
    """Line starts after [start, end) was replaced by `inserted` characters, recomputing only the
    lines around the edit (one line either side, so a "\r" + "\n" pair joined or split by the
    edit is seen whole)."""
    import bisect

    i = bisect.bisect_right(starts, start) - 1
    j = bisect.bisect_right(starts, end) - 1
    delta = inserted - (end - start)
    lo_index = max(i - 1, 0)
    lo = starts[lo_index]
    if j + 2 < len(starts):
        hi, tail = starts[j + 2] + delta, starts[j + 3:]
    else:
        hi, tail = len(new_text), []
    region = [m.end() for m in LINE_BREAK.finditer(new_text, lo, hi)]
    return starts[: lo_index + 1] + region + [s + delta for s in tail]
