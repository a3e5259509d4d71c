"""The value every shaping filter takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Suggestion:
    text: str  # inserted at the cursor
    replace_to_eol: bool = False  # the item's range runs to the end of the line (replaces its rest)

    def with_text(self, text: str) -> "Suggestion":
        return replace(self, text=text)


def leading_width(line: str, tab_size: int = 4) -> int:
    """Indentation of a line in columns (tabs count `tab_size`)."""
    ws = line[: len(line) - len(line.lstrip(" \t"))]
    return len(ws.expandtabs(tab_size))
