"""The server's copy of each open document, kept in sync by incremental `didChange` edits.

Line breaks are the LSP ones only: "\\n", "\\r\\n" and "\\r" (not the other characters that
`str.splitlines` treats as breaks). Columns are in the negotiated position encoding.

The text is kept in chunks of at most `2 * chunk_chars` characters (a "\\r\\n" pair never split
between two), with Fenwick trees over each chunk's length, line breaks and UTF-16 / UTF-8 code
units. An edit rewrites the one or two chunks it touches and updates the trees in O(log n); a
position conversion reads the trees and scans one chunk. Neither touches the rest of the document,
however long it or its lines are (a 1 MB one-line minified file, a 10 MB log). A chunk that grows
past its limit is split, which rebuilds the trees (O(number of chunks), once per `chunk_chars`
characters typed at one place).

`context_at` cuts the cursor context from a window around the cursor (`window_chars`, several times
the prompt budget), anchored so that it does not move while the user types (see its docstring).
"""

from __future__ import annotations

import re

from lsp_server.context import CursorContext
from lsp_server.positions import UTF8, UTF16, UTF32, column_to_index, text_units

LINE_BREAK = re.compile(r"\r\n|\r|\n")
CHUNK_CHARS = 2048
CHARS_PER_TOKEN = 4  # generous for code: the window then holds more text than the prompt can take
WINDOW_PER_TOKEN = 4 * CHARS_PER_TOKEN  # the window is four prompt budgets wide on each side
MIN_WINDOW_CHARS, MAX_WINDOW_CHARS = 8192, 1 << 19
LONG_LINE_PER_TOKEN = CHARS_PER_TOKEN  # inside a line longer than the window: about one budget
MIN_LONG_LINE_CHARS = 2048
DEFAULT_CONTEXT_TOKENS = 2048  # before a model is loaded


def window_chars(context_tokens: int, model=None) -> tuple[int, int]:
    """(window, long_line_window) in characters for a prompt budget: `context_tokens` (0: the
    context length of `model`, anything with `max_context`)."""
    max_context = getattr(model, "max_context", 0) or DEFAULT_CONTEXT_TOKENS
    tokens = max_context if context_tokens <= 0 else min(context_tokens, max_context)
    window = min(MAX_WINDOW_CHARS, max(MIN_WINDOW_CHARS, WINDOW_PER_TOKEN * tokens))
    return window, min(window, max(MIN_LONG_LINE_CHARS, LONG_LINE_PER_TOKEN * tokens))


def _breaks(text: str) -> int:
    """Line breaks in `text` (a "\\r\\n" pair counts once)."""
    n = text.count("\n") + text.count("\r")
    return n - text.count("\r\n") if n else 0


def _units(text: str) -> tuple[int, int]:
    """(UTF-16, UTF-8) code units of `text`."""
    if text.isascii():
        return len(text), len(text)
    return text_units(text, UTF16), text_units(text, UTF8)


class _Fenwick:
    """Prefix sums over a list of non-negative ints, with point updates, in O(log n)."""

    __slots__ = ("n", "tree", "top")

    def __init__(self, values: list[int]) -> None:
        self.n = n = len(values)
        tree = [0] + values
        for i in range(1, n + 1):
            j = i + (i & -i)
            if j <= n:
                tree[j] += tree[i]
        self.tree = tree
        self.top = 1 << (n.bit_length() - 1) if n else 0

    def add(self, i: int, delta: int) -> None:
        i += 1
        tree, n = self.tree, self.n
        while i <= n:
            tree[i] += delta
            i += i & -i

    def prefix(self, i: int) -> int:
        """Sum of the first `i` values."""
        tree, s = self.tree, 0
        while i > 0:
            s += tree[i]
            i -= i & -i
        return s

    def find(self, x: int) -> int:
        """The largest k with prefix(k) <= x."""
        pos, step, tree, n = 0, self.top, self.tree, self.n
        while step:
            nxt = pos + step
            if nxt <= n and tree[nxt] <= x:
                pos = nxt
                x -= tree[nxt]
            step >>= 1
        return pos


class Document:
    def __init__(self, uri: str, text: str, language_id: str | None = None, version: int | None = None,
                 chunk_chars: int = CHUNK_CHARS) -> None:
        self.uri = uri
        self.language_id = language_id
        self.version = version
        self.chunk_chars = max(1, chunk_chars)
        self._set_text(text)

    # -- the chunk table
    def _set_text(self, text: str) -> None:
        self._chunks = self._split(text) or [""]
        self._rebuild()

    def _split(self, text: str) -> list[str]:
        """`text` in pieces of `chunk_chars` (one more where a cut would split "\\r\\n")."""
        size, out, i = self.chunk_chars, [], 0
        while i < len(text):
            j = min(i + size, len(text))
            if j < len(text) and text[j - 1] == "\r" and text[j] == "\n":
                j += 1
            out.append(text[i:j])
            i = j
        return out

    def _rebuild(self) -> None:
        chunks = self._chunks
        units = [_units(c) for c in chunks]
        self._len = _Fenwick([len(c) for c in chunks])
        self._nl = _Fenwick([_breaks(c) for c in chunks])
        self._u16 = _Fenwick([u[0] for u in units])
        self._u8 = _Fenwick([u[1] for u in units])
        self._length = sum(len(c) for c in chunks)
        self._text: str | None = None

    def _set_chunk(self, i: int, text: str) -> None:
        old = self._chunks[i]
        self._chunks[i] = text
        self._len.add(i, len(text) - len(old))
        self._nl.add(i, _breaks(text) - _breaks(old))
        (a16, a8), (b16, b8) = _units(text), _units(old)
        self._u16.add(i, a16 - b16)
        self._u8.add(i, a8 - b8)
        self._length += len(text) - len(old)

    def _locate(self, offset: int) -> tuple[int, int]:
        """(chunk index, offset in it) for 0 <= offset <= length; the end is in the last chunk."""
        i = self._len.find(offset)
        if i >= len(self._chunks):
            i = len(self._chunks) - 1
        return i, offset - self._len.prefix(i)

    def _tree(self, encoding: str) -> _Fenwick:
        return self._len if encoding == UTF32 else self._u8 if encoding == UTF8 else self._u16

    # -- reading
    @property
    def text(self) -> str:
        """The whole text (joined once per edit: for tests and tools, not the keystroke path)."""
        if self._text is None:
            self._text = "".join(self._chunks)
        return self._text

    def __len__(self) -> int:
        return self._length

    def slice(self, start: int, end: int) -> str:
        """text[start:end], reading only the chunks in between."""
        start, end = max(0, start), min(self._length, end)
        if end <= start:
            return ""
        i, a = self._locate(start)
        parts, need = [], end - start
        while need > 0:
            piece = self._chunks[i][a:a + need]
            parts.append(piece)
            need -= len(piece)
            i, a = i + 1, 0
        return "".join(parts)

    @property
    def line_count(self) -> int:
        return self._nl.prefix(len(self._chunks)) + 1

    @property
    def line_starts(self) -> list[int]:
        """Every line's start offset (O(document): for tests)."""
        return [0] + [m.end() for m in LINE_BREAK.finditer(self.text)]

    def line_start(self, line: int) -> int:
        if line <= 0:
            return 0
        i = self._nl.find(line - 1)  # the chunk holding the line-th break
        k = line - self._nl.prefix(i)
        for m in LINE_BREAK.finditer(self._chunks[i]):
            k -= 1
            if k == 0:
                return self._len.prefix(i) + m.end()
        raise IndexError(line)

    def line_end(self, line: int) -> int:
        """Offset of the end of `line`, before its line break."""
        if line + 1 >= self.line_count:
            return self._length
        nxt = self.line_start(line + 1)
        return nxt - (2 if self.slice(nxt - 2, nxt) == "\r\n" else 1)

    def line_of(self, offset: int) -> int:
        """The line holding `offset` (between "\\r" and "\\n": the line that break ends)."""
        i, a = self._locate(offset)
        chunk = self._chunks[i]
        n = self._nl.prefix(i) + _breaks(chunk[:a])
        if a and chunk[a - 1] == "\r" and chunk[a:a + 1] == "\n":
            n -= 1
        return n

    def line_text(self, line: int) -> str:
        """The text of `line` without its line break."""
        return self.slice(self.line_start(line), self.line_end(line))

    def _units_at(self, offset: int, encoding: str) -> int:
        if encoding == UTF32:
            return offset
        i, a = self._locate(offset)
        return self._tree(encoding).prefix(i) + text_units(self._chunks[i][:a], encoding)

    def _offset_of_units(self, units: int, encoding: str) -> tuple[int, bool]:
        """(offset, exact): the offset `units` code units into the document; not exact when that
        falls inside a character, whose start is then given."""
        if encoding == UTF32:
            return units, True
        tree = self._tree(encoding)
        i = min(tree.find(units), len(self._chunks) - 1)
        rest = units - tree.prefix(i)
        chunk, base = self._chunks[i], self._len.prefix(i)
        index = column_to_index(chunk, rest, encoding)
        if index is not None:
            return base + index, True
        while index is None and rest > 0:
            rest -= 1
            index = column_to_index(chunk, rest, encoding)
        return base + (index or 0), False

    def offset_at(self, line: int, character: int, encoding: str = UTF16) -> int | None:
        """Offset into the text for a position, or None when the position is not in the document."""
        if line < 0 or line >= self.line_count or character < 0:
            return None
        start, end = self.line_start(line), self.line_end(line)
        target = self._units_at(start, encoding) + character
        if target > self._units_at(end, encoding):
            return None
        offset, exact = self._offset_of_units(target, encoding)
        return offset if exact else None

    def clamped_offset(self, line: int, character: int, encoding: str = UTF16) -> int:
        """Offset for an edit position: past the end of a line means its end, past the last line
        means the end of the document (the LSP rule). A column inside a character moves back to
        its start."""
        if line < 0:
            return 0
        if line >= self.line_count:
            return self._length
        start, end = self.line_start(line), self.line_end(line)
        target = self._units_at(start, encoding) + max(0, character)
        if target >= self._units_at(end, encoding):
            return end
        return self._offset_of_units(target, encoding)[0]

    def position_at(self, offset: int, encoding: str = UTF16) -> tuple[int, int]:
        line = self.line_of(offset)
        start = self.line_start(line)
        return line, self._units_at(offset, encoding) - self._units_at(start, encoding)

    # -- editing
    def replace(self, start: int, end: int, text: str) -> None:
        """Replace text[start:end] with `text`."""
        ci, a = self._locate(start)
        cj, b = self._locate(end)
        chunks = self._chunks
        middle = chunks[ci][:a] + text + chunks[cj][b:]
        if ci == cj and 0 < len(middle) <= 2 * self.chunk_chars:
            self._set_chunk(ci, middle)
            last = ci
        else:
            pieces = self._split(middle)
            chunks[ci:cj + 1] = pieces
            if not chunks:
                chunks.append("")
            last = ci + len(pieces) - 1
            self._rebuild()
        self._text = None
        # keep every "\r\n" inside one chunk
        for i in (ci - 1, last):
            if 0 <= i < len(chunks) - 1 and chunks[i].endswith("\r") and chunks[i + 1].startswith("\n"):
                if len(chunks[i + 1]) == 1:
                    chunks[i] += "\n"
                    del chunks[i + 1]
                    self._rebuild()
                else:
                    self._set_chunk(i + 1, chunks[i + 1][1:])
                    self._set_chunk(i, chunks[i] + "\n")

    def apply_change(self, text: str, range_=None, encoding: str = UTF16) -> None:
        """Apply one content change: `range_` is ((line, char), (line, char)) or None for the whole text."""
        if range_ is None:
            self._set_text(text)
            return
        (sl, sc), (el, ec) = range_
        start = self.clamped_offset(sl, sc, encoding)
        end = self.clamped_offset(el, ec, encoding)
        if end < start:
            start, end = end, start
        self.replace(start, end, text)

    # -- the cursor context
    def context_at(self, offset: int, language_id: str | None = None, path: str | None = None,
                   replace: tuple[int, int, str] | None = None,
                   window: tuple[int, int] = (MIN_WINDOW_CHARS, MIN_LONG_LINE_CHARS)) -> CursorContext:
        """The cursor context from a window around `offset` (`window_chars`); `replace` = (start,
        end, text) applies the item selected in the completion popup as if it were inserted.

        The window does not slide with each keystroke (prompts only grow at their end, for KV
        reuse): its start is on a grid of a quarter window, moved forward to the next line start
        when one is near, so it moves only when the cursor crosses a grid line; its end is a fixed
        distance after the cursor (typing at the cursor leaves the text after it the same), moved
        back to a line start when one is near. Inside a line longer than the window, both sides
        stay on that line and span the shorter `long_line_window`."""
        chars, line_chars = window
        cut = offset if replace is None else min(offset, replace[0])
        after = offset if replace is None else max(offset, replace[1])
        line = self.line_of(cut)
        line_start = self.line_start(line)
        start = self._window_start(cut, line_start, chars, line_chars)
        end = self._window_end(after, line, chars, line_chars)
        if replace is None:
            prefix = self.slice(start, cut)
        else:
            prefix = self.slice(start, replace[0]) + replace[2]
        return CursorContext(prefix, self.slice(after, end), language_id, path, start=start,
                             suffix_cut=end < self._length)

    def _window_start(self, offset: int, line_start: int, chars: int, line_chars: int) -> int:
        grid = max(1, chars // 4)
        g = max(0, (offset - chars) // grid * grid)
        if g <= line_start:  # the cursor's line fits: start at a line start near the grid point
            if g == 0:
                return 0
            line = self.line_of(g)
            s = self.line_start(line)
            if s == g:
                return g
            nxt = self.line_start(line + 1)
            return nxt if nxt - g <= grid else g
        line_grid = max(1, line_chars // 4)  # a very long line: start inside it
        return line_start + max(0, (offset - line_start - line_chars) // line_grid * line_grid)

    def _window_end(self, offset: int, line: int, chars: int, line_chars: int) -> int:
        end = offset + chars
        if end >= self._length:
            return self._length
        if self.line_end(line) >= end:  # a very long line: stay inside it
            return min(self._length, offset + line_chars)
        s = self.line_start(self.line_of(end))
        return s if offset < s and end - s <= chars // 4 else end


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
