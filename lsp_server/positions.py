"""Position encodings: LSP columns are counted in UTF-16 code units unless the client and server
agreed on UTF-8 or UTF-32 (`positionEncoding`). Python strings index code points (= UTF-32).
"""

from __future__ import annotations

UTF8, UTF16, UTF32 = "utf-8", "utf-16", "utf-32"
SUPPORTED = (UTF16, UTF8, UTF32)


def char_units(ch: str, encoding: str) -> int:
    cp = ord(ch)
    if encoding == UTF16:
        return 2 if cp > 0xFFFF else 1
    if encoding == UTF8:
        return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
    return 1


def text_units(text: str, encoding: str) -> int:
    if encoding == UTF32 or text.isascii():
        return len(text)
    if encoding == UTF16:
        return len(text.encode("utf-16-le", "surrogatepass")) // 2
    return len(text.encode("utf-8", "surrogatepass"))


def column_to_index(line: str, column: int, encoding: str) -> int | None:
    """Code-point index in `line` (without its line break) for a client column.

    None when the column is negative, past the end of the line, or inside a character (the middle
    of a UTF-16 surrogate pair or of a UTF-8 sequence).
    """
    if column < 0:
        return None
    if encoding == UTF32 or line.isascii():
        return column if column <= len(line) else None
    units = 0
    for index, ch in enumerate(line):
        if units == column:
            return index
        if units > column:
            return None
        units += char_units(ch, encoding)
    return len(line) if units == column else None


def index_to_column(line: str, index: int, encoding: str) -> int:
    return text_units(line[:index], encoding)
