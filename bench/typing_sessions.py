"""Editing sessions for bench/typing_bench.py: what a person does in an editor, as a list of edits.

A session opens three real standard-library files of different sizes (the code about to be typed is
missing from them) and then writes that code back character by character at a human pace: Enter
inserts the line break and the next line's indentation at once (an editor's auto-indent), a typo now
and then is fixed with a backspace, there are pauses to think, the cursor jumps to another place in
the long file, goes to the other documents (one edit there is inside a line: the arguments of a
call, before its closing parenthesis) and comes back to where it was. Arriving at a new place (a
jump, a switch) the person looks at it for a second or two before typing (LOOK_S).

Everything is drawn from a seeded random generator: two runs type exactly the same thing.
"""

from __future__ import annotations

import random
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

# Held out of the default model's training split (training/data.py), so it has not memorised them.
LONG_FILE = "difflib.py"      # ~83 k characters, ~2 000 lines: the cursor deep inside it
MEDIUM_FILE = "gzip.py"       # ~24 k characters
SMALL_FILE = "copy.py"        # ~9 k characters
TYPO_RATE = 0.04              # per character: a wrong key, then backspace
PAUSE_RATE = 0.04             # per keystroke: a pause to think
ENTER_PAUSE_RATE = 0.3        # per line break: a short pause
LOOK_S = (1.0, 2.0)           # reading a new place (after a jump or a switch) before typing there
ARRIVALS = ("jump", "switch")


def stdlib_path(name: str) -> Path:
    return Path(sysconfig.get_paths()["stdlib"]) / name


@dataclass(frozen=True)
class Edit:
    doc: str          # document name
    offset: int       # where, in the document before this edit (code points)
    delete: int       # characters removed at offset
    insert: str       # text inserted there
    gap_s: float      # think time before this keystroke (counted from the previous answer)
    label: str        # "type" | "enter" | "typo" | "backspace" | "jump" | "switch" (see ARRIVALS)
    line_end: bool    # after the edit, nothing but whitespace follows the cursor on its line

    @property
    def cursor(self) -> int:
        return self.offset + len(self.insert)


@dataclass
class Session:
    opened: dict[str, str]                      # name -> text when opened
    paths: dict[str, Path]
    edits: list[Edit] = field(default_factory=list)

    def texts_after(self, n: int) -> dict[str, str]:
        """The documents after the first `n` edits."""
        texts = dict(self.opened)
        for e in self.edits[:n]:
            t = texts[e.doc]
            texts[e.doc] = t[:e.offset] + e.insert + t[e.offset + e.delete:]
        return texts


def _content_line(lines: list[str], start: int, min_len: int = 24) -> int:
    """The first line at or after `start` with code on it (not blank, not a comment or docstring)."""
    for i in range(start, len(lines)):
        s = lines[i].strip()
        if len(s) >= min_len and not s.startswith(("#", '"', "'")):
            return i
    return start


def _call_line(lines: list[str], start: int) -> tuple[int, int, int]:
    """A line at or after `start` ending with a call whose arguments can be retyped: (line, open, close)."""
    for i in range(start, len(lines)):
        text = lines[i].rstrip("\n")
        a, b = text.find("("), text.rfind(")")
        if a >= 0 and b - a >= 14 and text.endswith(")") and text.strip()[:1] not in "#\"'":
            return i, a + 1, b
    raise ValueError("no call to retype")


class _Editor:
    def __init__(self, session: Session, rng: random.Random, pace: float, look_rng: random.Random) -> None:
        self.s, self.rng, self.pace, self.look_rng = session, rng, pace, look_rng
        self.texts = dict(session.opened)
        self.marks: dict[str, int] = {}  # named positions that follow edits (editor marks)

    def gap(self) -> float:
        g = self.rng.uniform(0.06, 0.16)  # 6-16 keys a second
        if self.rng.random() < PAUSE_RATE:
            g += self.rng.uniform(0.6, 1.5)
        return g * self.pace

    def edit(self, doc: str, offset: int, delete: int, insert: str, label: str, extra_gap: float = 0.0) -> int:
        t = self.texts[doc]
        t = t[:offset] + insert + t[offset + delete:]
        self.texts[doc] = t
        cur = offset + len(insert)
        end = t.find("\n", cur)
        line_end = t[cur:end if end >= 0 else len(t)].strip() == ""
        if label in ARRIVALS:  # (its own generator: the rest of the session is as before LOOK_S)
            extra_gap += self.look_rng.uniform(*LOOK_S)
        self.s.edits.append(Edit(doc, offset, delete, insert, self.gap() + extra_gap * self.pace, label, line_end))
        for name, pos in self.marks.items():
            if name.startswith(doc + ":") and pos >= offset:
                self.marks[name] = max(offset, pos - delete) + len(insert)
        return cur

    def type(self, doc: str, cur: int, text: str, budget: int, first_label: str = "type") -> tuple[int, int]:
        """Type `text` at `cur`, at most `budget` keystrokes; returns (cursor, characters of text typed)."""
        used = done = 0
        for ch in text:
            if used >= budget:
                break
            if done > 2 and budget - used >= 3 and self.rng.random() < TYPO_RATE:
                cur = self.edit(doc, cur, 0, self.rng.choice("qxzjkv"), "typo")
                cur = self.edit(doc, cur - 1, 1, "", "backspace")
                used += 2
            cur = self.edit(doc, cur, 0, ch, first_label if done == 0 else "type")
            used += 1
            done += 1
        self.used = used
        return cur, done

    def write_lines(self, doc: str, cur: int, todo: list[str], budget: int, first_label: str) -> tuple[int, int]:
        """Write whole lines after `cur` (at a line end): Enter + indentation, then the code. `todo`
        is consumed; a line left half typed is put back with a leading NUL (continue, no Enter)."""
        used, label = 0, first_label
        while todo and used < budget:
            line = todo.pop(0)
            if line.startswith("\0"):
                body = line[1:]
            else:
                indent = line[:len(line) - len(line.lstrip())].replace("\n", "")
                body = line.strip()
                cur = self.edit(doc, cur, 0, "\n" + indent, label,
                                extra_gap=0.4 if self.rng.random() < ENTER_PAUSE_RATE else 0.0)
                used += 1
                label = "enter"
            cur, done = self.type(doc, cur, body, budget - used, label if line.startswith("\0") else "type")
            used += self.used
            label = "enter"
            if done < len(body):
                todo.insert(0, "\0" + body[done:])
                break
        return cur, used


def build_session(keys: int, seed: int = 0, pace: float = 1.0) -> Session:
    """About `keys` keystrokes, each of which asks for a suggestion. `pace` scales the think times."""
    rng = random.Random(seed)
    names = (LONG_FILE, MEDIUM_FILE, SMALL_FILE)
    src = {n: stdlib_path(n).read_text(encoding="utf-8").splitlines(keepends=True) for n in names}
    n_long = len(src[LONG_FILE])
    deep = _content_line(src[LONG_FILE], int(n_long * 0.72))
    upper = _content_line(src[LONG_FILE], int(n_long * 0.33))
    call_line, call_a, call_b = _call_line(src[MEDIUM_FILE], int(len(src[MEDIUM_FILE]) * 0.55))
    small = _content_line(src[SMALL_FILE], int(len(src[SMALL_FILE]) * 0.6))
    k_deep, k_upper, k_call, k_small = int(keys * 0.40), int(keys * 0.15), int(keys * 0.12), int(keys * 0.10)
    k_back = keys - k_deep - k_upper - k_call - k_small

    def take(lines: list[str], start: int, budget: int) -> list[str]:
        out, n = [], 0
        for text in lines[start:]:
            if n >= budget:
                break
            out.append(text)
            n += len(text.strip()) + 1
        return out

    deep_lines = take(src[LONG_FILE], deep, k_deep + k_back + 8)
    upper_lines = take(src[LONG_FILE], upper, k_upper + 8)
    small_lines = take(src[SMALL_FILE], small, k_small + 8)
    call_args = src[MEDIUM_FILE][call_line][call_a:call_b]

    # the documents as opened: the code about to be typed is missing (so the suffix does not give it away)
    kept = {name: list(src[name]) for name in names}  # line lists, removed lines left as ""
    for start, chunk in ((deep, deep_lines), (upper, upper_lines)):
        for k in range(len(chunk)):
            kept[LONG_FILE][start + k] = ""
    for k in range(len(small_lines)):
        kept[SMALL_FILE][small + k] = ""
    kept[MEDIUM_FILE][call_line] = src[MEDIUM_FILE][call_line][:call_a] + src[MEDIUM_FILE][call_line][call_b:]
    session = Session({n: "".join(kept[n]) for n in names}, {n: stdlib_path(n) for n in names})
    ed = _Editor(session, rng, pace, random.Random(f"look {seed}"))

    def end_of_line_before(doc: str, line: int) -> int:
        """Offset (in the document as opened) of the line break ending the line before `line`."""
        return len("".join(kept[doc][:line])) - 1

    # 1. deep in the long file, at the end of a line
    todo_deep = list(deep_lines)
    cur, _ = ed.write_lines(LONG_FILE, end_of_line_before(LONG_FILE, deep), todo_deep, k_deep, "jump")
    ed.marks[LONG_FILE + ":deep"] = cur
    # 2. jump higher up in the same file (edits so far are all below it)
    ed.write_lines(LONG_FILE, end_of_line_before(LONG_FILE, upper), list(upper_lines), k_upper, "jump")
    # 3. the other document: inside a line, the arguments of a call
    ed.type(MEDIUM_FILE, len("".join(kept[MEDIUM_FILE][:call_line])) + call_a, call_args, k_call, "switch")
    # 4. the small document, at the end of a line
    ed.write_lines(SMALL_FILE, end_of_line_before(SMALL_FILE, small), list(small_lines), k_small, "switch")
    # 5. back to where the first segment stopped, and on
    ed.write_lines(LONG_FILE, ed.marks[LONG_FILE + ":deep"], todo_deep, k_back, "switch")
    return session


