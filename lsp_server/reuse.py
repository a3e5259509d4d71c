"""Answers without a model call: typing through the suggestion just shown, and a small cache of
results for repeated identical prompts."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from lsp_server.context import CursorContext
from lsp_server.postprocess import Suggestion, shape

AUTO_CLOSERS = set(")]}\"'`")


@dataclass(frozen=True)
class Shown:
    prefix: str
    suffix: str
    suggestions: tuple[Suggestion, ...]
    start: int = 0  # document offset of `prefix` (contexts are windows of the document)
    suffix_cut: bool = False


class TypingThrough:
    """Per document, the suggestions last shown and the context they were shown in."""

    def __init__(self) -> None:
        self._shown: dict[str, Shown] = {}

    def remember(self, uri: str, ctx: CursorContext, suggestions: list[Suggestion]) -> None:
        if suggestions:
            self._shown[uri] = Shown(ctx.prefix, ctx.suffix, tuple(suggestions), ctx.start, ctx.suffix_cut)
        else:
            self._shown.pop(uri, None)

    def forget(self, uri: str) -> None:
        self._shown.pop(uri, None)

    def continue_from(self, uri: str, ctx: CursorContext) -> list[Suggestion]:
        """If the user typed the start of a shown suggestion, the rest of it (else []).

        The text after the cursor must be unchanged, except for closing brackets or quotes that
        the editor inserted itself (auto-pairs); the rest is shaped again for the new context, so
        it does not repeat such a closer."""
        shown = self._shown.get(uri)
        if shown is None:
            return []
        # both prefixes are windows of the document: compare them from the later start
        shift = ctx.start - shown.start
        if shift == 0:
            old_prefix, new_prefix = shown.prefix, ctx.prefix
        elif 0 < shift < len(shown.prefix):
            old_prefix, new_prefix = shown.prefix[shift:], ctx.prefix
        elif 0 < -shift <= len(ctx.prefix):
            old_prefix, new_prefix = shown.prefix, ctx.prefix[-shift:]
        else:
            return []
        if len(new_prefix) <= len(old_prefix):
            return []
        if ctx.suffix != shown.suffix and not _closers_added(ctx.suffix, ctx.suffix_cut, shown):
            return []
        if not new_prefix.startswith(old_prefix):
            return []
        typed = new_prefix[len(old_prefix):]
        rest = []
        for s in shown.suggestions:
            if s.text.startswith(typed) and s.text[len(typed):].strip():
                reshaped = shape(ctx, s.text[len(typed):])
                if reshaped.text and all(r.text != reshaped.text for r in rest):
                    rest.append(reshaped)
        return rest


def _closers_added(suffix: str, cut: bool, shown: Shown) -> bool:
    """The text after the cursor is the one shown, after up to 4 closing brackets or quotes that the
    editor inserted itself. A suffix cut at the end of its window (a very long line) loses as many
    characters at its end as were inserted at its start."""
    for added in range(1, 5):
        if not set(suffix[:added]) <= AUTO_CLOSERS:
            return False
        rest = suffix[added:]
        if rest == shown.suffix or (cut and shown.suffix_cut and len(rest) == len(shown.suffix) - added
                                    and shown.suffix.startswith(rest)):
            return True
    return False


class ResultCache:
    """LRU of shaped results keyed by (prompt ids, generation settings)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._items: OrderedDict[tuple, list[Suggestion]] = OrderedDict()

    @staticmethod
    def key(prompt_ids: list[int], *settings) -> tuple:
        return (hash(tuple(prompt_ids)), len(prompt_ids), *settings)

    def get(self, key: tuple) -> list[Suggestion] | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: tuple, value: list[Suggestion]) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
