"""Keep the document's indentation style (tabs or spaces) in the suggested lines."""

from __future__ import annotations

from lsp_server.context import CursorContext
from lsp_server.postprocess.suggestion import Suggestion

SAMPLE_LINES = 200


def document_indentation(ctx: CursorContext) -> tuple[str, int] | None:
    """("tab", 1) or ("space", unit) from the lines around the cursor; None when unknown."""
    lines = ctx.lines_before(SAMPLE_LINES) + ctx.lines_after(SAMPLE_LINES // 4)
    tabs = spaces = 0
    unit = 0
    for line in lines:
        if not line.strip():
            continue
        if line.startswith("\t"):
            tabs += 1
        elif line.startswith(" "):
            spaces += 1
            width = len(line) - len(line.lstrip(" "))
            unit = width if unit == 0 else min(unit, width)
    if tabs == spaces == 0:
        return None
    return ("tab", 1) if tabs > spaces else ("space", max(unit, 1))


def match_indentation_style(ctx: CursorContext, s: Suggestion) -> Suggestion:
    style = document_indentation(ctx)
    if style is None or "\n" not in s.text:
        return s
    kind, unit = style
    lines = s.text.split("\n")
    space_widths = [len(ln) - len(ln.lstrip(" ")) for ln in lines[1:] if ln.startswith(" ")]
    model_unit = min([w for w in space_widths if w > 0] + [4])
    out = [lines[0]]
    for line in lines[1:]:
        body = line.lstrip(" \t")
        ws = line[: len(line) - len(body)]
        if kind == "tab" and " " in ws:
            width = len(ws.expandtabs(model_unit))
            ws = "\t" * (width // model_unit) + " " * (width % model_unit)
        elif kind == "space" and "\t" in ws:
            ws = ws.replace("\t", " " * unit)
        out.append(ws + body)
    return s.with_text("\n".join(out))
