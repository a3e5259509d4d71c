"""Suggestions -> LSP items: InlineCompletionItem for inline completion, CompletionItem (with a
textEdit from the start of the word at the cursor) for clients that only have completion popups."""

from __future__ import annotations

import re

from lsprotocol import types

from lsp_server.positions import text_units

ACCEPT_COMMAND = "infill.accept"
STATS_COMMAND = "infill.stats"
WORD_TAIL = re.compile(r"[A-Za-z0-9_$]*$")
LABEL_CHARS = 60


def _accept(answer, index: int) -> types.Command:
    return types.Command(title="Accept suggestion", command=ACCEPT_COMMAND,
                         arguments=[answer.request_id, index, answer.source])


def _end_of_line(answer, position: types.Position, encoding: str) -> types.Position:
    # counted from the cursor: the context may hold only part of a very long line
    return types.Position(position.line, position.character + text_units(answer.ctx.line_suffix, encoding))


def inline_items(answer, position: types.Position, encoding: str,
                 selected: types.SelectedCompletionInfo | None = None) -> list[types.InlineCompletionItem]:
    items = []
    for i, s in enumerate(answer.suggestions):
        if selected is not None and answer.ctx.prefix.endswith(selected.text):
            # items extend the text selected in the popup and use its range
            end = _end_of_line(answer, position, encoding) if s.replace_to_eol else selected.range.end
            rng = types.Range(selected.range.start, end)
            text = selected.text + s.text
        else:
            end = _end_of_line(answer, position, encoding) if s.replace_to_eol else position
            rng = types.Range(position, end)
            text = s.text
        items.append(types.InlineCompletionItem(insert_text=text, range=rng, command=_accept(answer, i)))
    return items


def completion_items(answer, position: types.Position, encoding: str) -> list[types.CompletionItem]:
    line_prefix = answer.ctx.line_prefix
    word = WORD_TAIL.search(line_prefix).group(0)
    start = types.Position(position.line, max(0, position.character - text_units(word, encoding)))
    items = []
    for i, s in enumerate(answer.suggestions):
        end = _end_of_line(answer, position, encoding) if s.replace_to_eol else position
        text = word + s.text
        first_line = text.split("\n", 1)[0]
        label = first_line if len(first_line) <= LABEL_CHARS else first_line[: LABEL_CHARS - 1] + "…"
        if "\n" in text:
            label += " …"
        items.append(types.CompletionItem(
            label=label or text.strip()[:LABEL_CHARS],
            kind=types.CompletionItemKind.Text,
            detail="infill-ls",
            documentation=types.MarkupContent(kind=types.MarkupKind.PlainText, value=text),
            sort_text=f"0{i}",
            filter_text=text,
            preselect=i == 0,
            insert_text=text,
            insert_text_format=types.InsertTextFormat.PlainText,
            text_edit=types.TextEdit(range=types.Range(start, end), new_text=text),
            command=_accept(answer, i),
        ))
    return items
