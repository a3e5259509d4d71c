"""Cut a suggestion where it falls into a loop: a piece of 4 to 64 characters with a letter or digit in
it, repeated at least 4 times in a row (small models degenerate into "a list of a list of a list of ..."
or "configure_configure_configure_"). The suggestion keeps the text up to the end of the first copy.
Shorter pieces (also when doubled: `0, 0, `) and pieces of punctuation or spaces only (`----`,
indentation) are not loops."""

from __future__ import annotations

import re

from lsp_server.context import CursorContext
from lsp_server.postprocess.suggestion import Suggestion

MIN_UNIT, MAX_UNIT, MIN_COPIES = 4, 64, 4
_LOOP = re.compile(r"(.{%d,%d}?)\1{%d,}" % (MIN_UNIT, MAX_UNIT, MIN_COPIES - 1), re.S)


def _is_loop_unit(unit: str) -> bool:
    """Has a letter or digit, and is not itself a shorter piece repeated (", 0, 0" is ", 0" twice)."""
    period = (unit + unit).find(unit, 1)
    return period >= MIN_UNIT and any(c.isalnum() for c in unit)


def loop_end(text: str) -> int | None:
    """Index just past the first copy of the first loop in `text`, or None."""
    for m in _LOOP.finditer(text):
        if _is_loop_unit(m.group(1)):
            return m.start() + len(m.group(1))
    return None


def ends_in_loop(text: str) -> bool:
    """The text ends with a loop (checked after each generated token, so only the tail is compared)."""
    for n in range(MIN_UNIT, min(MAX_UNIT, len(text) // MIN_COPIES) + 1):
        unit = text[-n:]
        if text.endswith(unit * MIN_COPIES) and _is_loop_unit(unit):
            return True
    return False


def cut_loops(ctx: CursorContext, s: Suggestion) -> Suggestion:
    end = loop_end(s.text)
    return s if end is None else s.with_text(s.text[:end])
