"""bench/quality.py against the model card and the server: the card's `repeat-line` row recomputed
from the same tasks (seed 0, 200 + 100, no model), and the bench's `fim-spm` suggestions on a few of
those tasks equal to what the server's own `suggest` answers for them on the same engine."""

from __future__ import annotations

import asyncio
import hashlib
import re

import pytest

from bench import quality
from inference.loader import DEFAULT_MODEL_DIR
from lsp_server import completion
from lsp_server.server import InfillServer

CARD = DEFAULT_MODEL_DIR / "MODEL_CARD.md"


def card_row(mode: str) -> list[float]:
    m = re.search(rf"^\| {re.escape(mode)} \|(.*)\|$", CARD.read_text(), re.M)
    assert m, f"MODEL_CARD.md has no quality row for {mode}"
    return [float(cell) for cell in m.group(1).split("|")]


def same_stdlib_as_the_card() -> bool:
    """The card's held-out sample digest (tests/test_default_model.py) over this interpreter's stdlib."""
    from tests.test_default_model import card_value
    from training.data import split_files, stdlib_files
    from inference.loader import load_model

    tok = load_model(None).tokenizer
    digest, n = hashlib.sha256(), 0
    for f in split_files(stdlib_files())[1]:
        if n < 8 and len(tok.encode(f.text, add_special_tokens=False).ids) >= 256:
            digest.update(f.rel_path.encode() + b"\0" + f.text.encode())
            n += 1
    return digest.hexdigest() == card_value("held-out sample sha256")


@pytest.fixture(scope="module")
def tasks():
    return quality.make_tasks(200, 100, 0)


def test_the_cards_repeat_line_row_is_recomputed_from_the_same_tasks(tasks):
    if not same_stdlib_as_the_card():
        pytest.skip("this interpreter's stdlib differs from the one the card's tasks were cut from")
    scores = {"single": [], "multi": []}
    for task in tasks:
        scores[task.kind].append(quality.score(quality.repeat_previous_line(task), task))
    row = []
    for kind in ("single", "multi"):
        n = len(scores[kind])
        row += [100 * sum(e for e, _ in scores[kind]) / n, 100 * sum(s for _, s in scores[kind]) / n]
    assert [round(v, 1) for v in row] == card_row("repeat-line")


def test_the_bench_suggests_what_the_server_answers(tasks):
    pipe = quality.ServerPipeline(None)
    try:
        server = InfillServer(pipe.engine)
        state = server.model
        state.info, state.builder, state.status = pipe.info, pipe.builder, "ready"
        state.worker_generation = pipe.engine.model_generation
        picked = [t for t in tasks if t.kind == "single"][:3] + [t for t in tasks if t.kind == "multi"][:2]
        shown = []
        for i, task in enumerate(picked):
            uri = f"file:///task{i}.py"
            doc = server.docs.open(uri, task.prefix + task.suffix, "python", 1)
            line, column = doc.position_at(len(task.prefix), server.encoding)
            answer = asyncio.run(completion.suggest(server, completion.Request(uri, line, column)))
            assert answer.source == "model" and task.prefix.endswith(answer.ctx.prefix)
            server_text = answer.suggestions[0].text if answer.suggestions else ""
            assert pipe.complete(task.prefix, task.suffix, "spm") == server_text, task.path
            shown.append(server_text)
        assert any(shown)  # the comparison is over real suggestions, not only empty ones
    finally:
        pipe.close()


JS = """import { readFile } from "fs";

// Parse the settings file.
export function parse(text) {
  const lines = text.split("\\n");
  const out = {};
  return out;
}

export const answer = 42;
"""

LUA = """local M = {}

-- Greets a name.
function M.greet(name)
  local text = "hello " .. name
  print(text)
end

for i = 1, 3 do
  M.greet(tostring(i))
  print(i)
end

return M
"""


def test_other_languages_get_their_comments_skipped_and_their_blocks_cut():
    singles = quality.single_line_tasks("a.js", JS, "javascript")
    assert all(t.lang == "javascript" for t in singles)
    assert not any(t.middle.strip().startswith("//") for t in singles)
    assert any(t.middle == "  const lines = text.split(\"\\n\");" for t in singles)
    (block,) = quality.multi_line_tasks("a.js", JS, lang="javascript")
    assert block.middle.split("\n") == ['  const lines = text.split("\\n");', "  const out = {};", "  return out;"]
    assert block.prefix.endswith("export function parse(text) {\n") and block.suffix.startswith("\n}")
    blocks = quality.multi_line_tasks("m.lua", LUA, lang="lua")
    assert [b.prefix.split("\n")[-2] for b in blocks] == ["function M.greet(name)", "for i = 1, 3 do"]
    assert all(b.suffix.startswith("\nend") for b in blocks)
    assert not any(t.middle.startswith("--") for t in quality.single_line_tasks("m.lua", LUA, "lua"))
    # Python is cut as before: only ':' headers and '#' comments
    assert quality.multi_line_tasks("a.py", "if x:\n    a = 1\n    b = 2\nc = 3\n") and \
        not quality.multi_line_tasks("a.py", JS)
