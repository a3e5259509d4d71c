"""Fit a one-line suggestion to the code after the cursor on its line.

Three ways to show it: insert it as is; insert it without its end when that end repeats the rest
of the line; or replace the rest of the line with it (the item's range runs to the line end) when
the rest is only closing brackets and punctuation that the suggestion also writes. The choice that
leaves the line's brackets best balanced wins, so a suggestion never closes a bracket that the
text after the cursor already closes, and never drops one that it needs.
"""

from __future__ import annotations

from lsp_server.context import CursorContext
from lsp_server.postprocess.suggestion import Suggestion

PAIRS = {")": "(", "]": "[", "}": "{"}
CLOSING_PUNCTUATION = set(")]}\"'`;:,. ")
BALANCE_CHARS = 2000  # of the line on each side of the cursor


def bracket_imbalance(line: str) -> int:
    """Sum over bracket kinds of |opened - closed|, outside string literals."""
    depth = {"(": 0, "[": 0, "{": 0}
    quote = None
    escaped = False
    for ch in line:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'`":
            quote = ch
        elif ch in depth:
            depth[ch] += 1
        elif ch in PAIRS:
            depth[PAIRS[ch]] -= 1
    return sum(abs(v) for v in depth.values())


def _is_subsequence(needle: str, haystack: str) -> bool:
    it = iter(haystack)
    return all(ch in it for ch in needle)


def fit_rest_of_line(ctx: CursorContext, s: Suggestion) -> Suggestion:
    if "\n" in s.text or not ctx.mid_line:
        return s
    rest = ctx.line_suffix
    core = rest.strip()
    text = s.text.rstrip()
    # brackets are balanced over the text near the cursor: in a minified file the line is the file
    head, rest = ctx.line_prefix[-BALANCE_CHARS:], rest[:BALANCE_CHARS]
    if core and text.strip() == core:
        return s.with_text("")  # nothing but the code already after the cursor
    options = [(bracket_imbalance(head + s.text + rest), 2, s)]
    # the suggestion ends with a start of the rest of the line (shorter than itself): drop that part
    for k in range(min(len(core), len(text) - 1), 0, -1):
        piece = core[:k]
        if text.endswith(piece) and len(text) > len(piece):
            cut = text[: len(text) - len(piece)]
            full_repeat = k == len(core)
            rank = 0 if full_repeat else 3
            options.append((bracket_imbalance(head + cut + rest), rank, s.with_text(cut)))
            break
    # the rest is only closers/punctuation that the suggestion writes too: replace it
    # (only when the line's end is in the context: the item's range runs to it)
    if (ctx.line_suffix_complete and len(core) <= len(text) and set(core) <= CLOSING_PUNCTUATION and core
            and _is_subsequence(core.replace(" ", ""), text)):
        options.append((bracket_imbalance(head + text), 4,
                        Suggestion(text, replace_to_eol=True)))
    best = min(options, key=lambda o: (o[0], o[1]))
    return best[2]
