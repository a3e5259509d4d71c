"""Shaping a raw model continuation into the suggestion shown: a chain of small pure filters,
one per file, each `(CursorContext, Suggestion) -> Suggestion`."""

from __future__ import annotations

from lsp_server.context import CursorContext
from lsp_server.postprocess.control_characters import cut_at_control_characters
from lsp_server.postprocess.block_scope import block_has_ended, stop_at_block_end
from lsp_server.postprocess.indentation_style import match_indentation_style
from lsp_server.postprocess.loops import cut_loops, ends_in_loop
from lsp_server.postprocess.repetition import drop_repeated_lines
from lsp_server.postprocess.rest_of_line import fit_rest_of_line
from lsp_server.postprocess.single_line import keep_single_line
from lsp_server.postprocess.suffix_overlap import drop_suffix_overlap
from lsp_server.postprocess.suggestion import Suggestion
from lsp_server.postprocess.trailing_whitespace import trim_trailing_whitespace

FILTERS = (
    cut_at_control_characters,
    cut_loops,
    keep_single_line,
    stop_at_block_end,
    drop_repeated_lines,
    match_indentation_style,
    drop_suffix_overlap,
    trim_trailing_whitespace,
    fit_rest_of_line,
)


def shape(ctx: CursorContext, text: str) -> Suggestion:
    """Raw continuation -> suggestion (text "" means: show nothing)."""
    s = Suggestion(text.replace("\r\n", "\n"))
    for f in FILTERS:
        s = f(ctx, s)
        if not s.text.strip():
            return Suggestion("")
    if ctx.eol != "\n":
        s = s.with_text(s.text.replace("\n", ctx.eol))
    return s


def generation_can_stop(ctx: CursorContext, text: str) -> bool:
    """Early stop while decoding: the shaped suggestion can no longer grow."""
    if not ctx.multi_line:
        return "\n" in text or ends_in_loop(text)
    return block_has_ended(ctx, text) or ends_in_loop(text)


__all__ = ["FILTERS", "Suggestion", "shape", "generation_can_stop"]
