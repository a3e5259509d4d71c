"""Stop a multi-line suggestion where a line returns to an indentation outside the block being
completed.

The reference line is the cursor's line when it has code, otherwise the first suggested line with
code. If that line opens a block (ends with `:`, `{`, `(` or `[`), the block ends at the next line
indented no deeper than it; a closing line (`}`, `)`, `]`) at the same indentation is kept unless
the text after the cursor already starts with it. Otherwise (sibling statements) it ends at the first
line indented less than the reference line, or at the first blank line (one paragraph of code).
"""

from __future__ import annotations

from lsp_server.context import BLOCK_OPENERS as OPENERS, CursorContext
from lsp_server.postprocess.suggestion import Suggestion, leading_width

SUFFIX_LINES = 50
CLOSERS = ("}", ")", "]")


def block_end(ctx: CursorContext, text: str) -> int | None:
    """Index in `text` where the block ends (the suggestion is cut there), or None.

    Only decided once the first character of the ending line's code is known.
    """
    lines = text.split("\n")
    if len(lines) == 1:
        return None
    cursor_line = ctx.line_prefix + lines[0]
    offsets = [0]
    for line in lines[:-1]:
        offsets.append(offsets[-1] + len(line) + 1)
    ref_index = 0 if cursor_line.strip() else next(
        (i for i in range(1, len(lines)) if lines[i].strip()), None)
    if ref_index is None:
        return None
    ref_line = cursor_line if ref_index == 0 else lines[ref_index]
    ref = leading_width(ref_line)
    opens = ref_line.rstrip().endswith(OPENERS)
    next_suffix_line = next((ln.strip() for ln in ctx.lines_after(SUFFIX_LINES)[1:] if ln.strip()), "")
    for i in range(ref_index + 1, len(lines)):
        line = lines[i]
        if not line.strip():
            if not opens and i + 1 < len(lines):
                return offsets[i] - 1  # a blank line ends a run of sibling statements
            continue
        width = leading_width(line)
        if width > ref or (width == ref and not opens):
            continue
        stripped = line.strip()
        closes = stripped.startswith(CLOSERS)
        if closes and width == ref and opens:
            if next_suffix_line.startswith(stripped[0]):
                return offsets[i] - 1  # the text after the cursor already closes the block
            end = offsets[i] + len(line)
            return end if i + 1 < len(lines) else None  # keep the closing line, stop after it
        if closes and width < ref and not next_suffix_line.startswith(stripped[0]) and not opens:
            end = offsets[i] + len(line)
            return end if i + 1 < len(lines) else None
        return offsets[i] - 1
    return None


def block_has_ended(ctx: CursorContext, text: str) -> bool:
    """True once generation can stop: the block end is known (used to stop decoding early)."""
    return block_end(ctx, text) is not None


def stop_at_block_end(ctx: CursorContext, s: Suggestion) -> Suggestion:
    if not ctx.multi_line:
        return s
    end = block_end(ctx, s.text)
    return s if end is None else s.with_text(s.text[:end])
