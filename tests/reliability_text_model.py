"""An independent reference model of an LSP document for the reliability tests: line breaks are
"\\r\\n", "\\r" and "\\n"; columns count code units of the negotiated encoding. Written without
lsp_server's helpers so that the two implementations check each other.
"""

from __future__ import annotations

from hypothesis import strategies as st

ENCODINGS = ("utf-16", "utf-8", "utf-32")

# Pieces that stress positions: tabs, all three line breaks, 2-byte, 3-byte (CJK) and astral
# characters (emoji, a skin-tone modifier, a ZWJ sequence), combining marks, NUL.
PIECES = ["a", "bc", " ", "\t", "\n", "\r\n", "\r", "é", "e\u0301", "中文", "😀", "👍🏽", "👨\u200d💻",
          "𝔘", "x\u0308\u0301", "\x00", "def f():", "    ", "ü"]

texts = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)


def units(ch: str, encoding: str) -> int:
    if encoding == "utf-32":
        return 1
    if encoding == "utf-16":
        return len(ch.encode("utf-16-le")) // 2
    return len(ch.encode("utf-8"))


def lines(text: str) -> list[tuple[int, int]]:
    """(start, end-without-break) offsets of each line."""
    out, start, i = [], 0, 0
    while i < len(text):
        if text[i] == "\r" and i + 1 < len(text) and text[i + 1] == "\n":
            out.append((start, i))
            i += 2
            start = i
        elif text[i] in "\r\n":
            out.append((start, i))
            i += 1
            start = i
        else:
            i += 1
    out.append((start, len(text)))
    return out


def position(text: str, offset: int, encoding: str) -> tuple[int, int]:
    """The LSP position of a code-point offset (which must not split a "\\r\\n")."""
    for number, (start, end) in enumerate(lines(text)):
        if start <= offset <= end:
            return number, sum(units(c, encoding) for c in text[start:offset])
    raise ValueError(f"offset {offset} is inside a line break")


def offset(text: str, line: int, character: int, encoding: str) -> int:
    """Offset of a position, clamped the LSP way: past the end of a line -> its end, past the last
    line -> the end of the text. (Positions inside a character are not produced by this model.)"""
    spans = lines(text)
    if line >= len(spans):
        return len(text)
    start, end = spans[line]
    col = 0
    for i in range(start, end):
        if col >= character:
            return i
        col += units(text[i], encoding)
    return end


def valid_offsets(text: str) -> list[int]:
    """Offsets a client can put a cursor at (never between "\\r" and "\\n")."""
    return [i for i in range(len(text) + 1) if not (0 < i < len(text) and text[i - 1] == "\r" and text[i] == "\n")]


@st.composite
def edit_scripts(draw, max_edits: int = 12):
    """(initial text, [(kind, a, b, new_text), ...]) with a, b fractions locating the range."""
    initial = draw(texts)
    edits = []
    for _ in range(draw(st.integers(0, max_edits))):
        kind = draw(st.sampled_from(["insert", "insert", "delete", "replace", "replace", "full"]))
        a = draw(st.floats(0, 1))
        b = draw(st.floats(0, 1))
        new = draw(texts) if kind != "delete" else ""
        edits.append((kind, a, b, new))
    return initial, edits


def concrete_change(text: str, edit, encoding: str):
    """Turns one scripted edit into (LSP change dict, new text)."""
    kind, a, b, new = edit
    if kind == "full":
        return {"text": new}, new
    spots = valid_offsets(text)
    i = spots[min(int(a * len(spots)), len(spots) - 1)]
    j = i if kind == "insert" else spots[min(int(b * len(spots)), len(spots) - 1)]
    i, j = min(i, j), max(i, j)
    (sl, sc), (el, ec) = position(text, i, encoding), position(text, j, encoding)
    change = {"range": {"start": {"line": sl, "character": sc}, "end": {"line": el, "character": ec}},
              "text": new}
    return change, text[:i] + new + text[j:]
