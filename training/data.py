"""Training data: the running interpreter's standard-library ``.py`` files.

Files are addressed by their path relative to the stdlib root (``sysconfig.get_paths()["stdlib"]``),
e.g. ``json/decoder.py``. ``site-packages`` is excluded. A file is held out (validation and the
quality benchmark) when the SHA-1 of its relative path, read as an integer, is 0 mod ``HOLDOUT_MOD``;
this split does not depend on the machine, the Python patch release or the order of the walk.

The FIM transform follows the StarCoder recipe (Bavarian et al. 2022, "Efficient Training of Language
Models to Fill in the Middle"; Megatron-LM ``fim_rate=0.5``, ``fim_spm_rate=0.5``): a share of the
documents is cut at two uniformly random *character* positions into prefix / middle / suffix and
rewritten as

    PSM: <fim_prefix>prefix<fim_suffix>suffix<fim_middle>middle
    SPM: <fim_prefix><fim_suffix>suffix<fim_middle>prefix middle      (StarCoder "variant 2")

the rest stays left to right; documents are joined with ``<|endoftext|>``. One deviation, for a
small context window: long files are first cut at line boundaries into pieces of at most
``max_chars`` characters, and each piece is a document.

Line-aligned FIM (``line_rate``, off by default): a share of the infill examples is cut where an editor
asks for a completion instead of at random characters: the middle is one whole line, the rest of a
line from a point inside it, or 2..8 whole lines, and it always stops before a line break (the break
starts the suffix), as in structure-aware FIM training (e.g. Gong et al. 2024, "Evaluation of LLMs on
Syntax-Aware Code Fill-in-the-Middle Tasks"). The random character split teaches infilling in
general; the aligned one spends part of a small model's budget on the cases users meet.
"""

from __future__ import annotations

import hashlib
import os
import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = ("<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<filename>")
EOT, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD, FILENAME = SPECIAL_TOKENS
HOLDOUT_MOD = 20  # about 5 % of the files
HELDOUT_FIM_RATE = 0.5  # the held-out loss is always measured in the StarCoder mix, whatever a run trains on


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def is_heldout(rel_path: str) -> bool:
    digest = hashlib.sha1(rel_path.replace(os.sep, "/").encode()).hexdigest()
    return int(digest, 16) % HOLDOUT_MOD == 0


@dataclass(frozen=True)
class SourceFile:
    rel_path: str
    text: str


def stdlib_files(root: Path | None = None) -> list[SourceFile]:
    """All readable UTF-8 ``.py`` files under the stdlib root, sorted by relative path."""
    root = root or stdlib_root()
    out: list[SourceFile] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("site-packages/") or "/site-packages/" in rel:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if text.strip():
            out.append(SourceFile(rel, text))
    return out


def split_files(files: list[SourceFile]) -> tuple[list[SourceFile], list[SourceFile]]:
    train = [f for f in files if not is_heldout(f.rel_path)]
    held = [f for f in files if is_heldout(f.rel_path)]
    return train, held


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Cut ``text`` at line boundaries into pieces of at most ``max_chars`` (a longer line is cut)."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        while len(line) > max_chars:
            if current:
                pieces.append("".join(current))
                current, size = [], 0
            pieces.append(line[:max_chars])
            line = line[max_chars:]
        if size + len(line) > max_chars and current:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        pieces.append("".join(current))
    return pieces


def line_aligned_split(doc: str, rng: random.Random) -> tuple[int, int] | None:
    """Character offsets ``(a, b)`` of a middle that an editor would ask for (see the module doc):
    one line (from its start or from a point after its indentation) or 2..8 lines, ending before a
    line break. None when the document has no non-blank line."""
    starts = [0] + [i + 1 for i, c in enumerate(doc) if c == "\n"]
    ends = [doc.find("\n", s) if doc.find("\n", s) >= 0 else len(doc) for s in starts]
    candidates = [i for i, (s, e) in enumerate(zip(starts, ends)) if doc[s:e].strip()]
    if not candidates:
        return None
    i = rng.choice(candidates)
    kind = rng.random()
    if kind < 0.4:
        return starts[i], ends[i]
    if kind < 0.6:
        line = doc[starts[i]:ends[i]]
        indent = len(line) - len(line.lstrip())
        return starts[i] + rng.randint(indent, len(line)), ends[i]
    last = min(len(starts) - 1, i + rng.randint(1, 7))
    while not doc[starts[last]:ends[last]].strip():  # trailing blank lines stay in the suffix
        last -= 1
    return starts[i], ends[last]


def fim_transform(doc: str, rng: random.Random, fim_rate: float = 0.5, spm_rate: float = 0.5,
                  line_rate: float = 0.0) -> list[str]:
    """Segments of one training document: special-token names and plain text, in order.

    Plain texts are tokenized separately (so a FIM split point is also a token boundary, as at
    inference time, where prefix and suffix are encoded on their own). No trailing EOT.
    ``line_rate`` is the share of infill examples cut by `line_aligned_split`; the rest (and every
    example when it is 0, which draws exactly what it drew before the option existed) at two random
    characters.
    """
    if rng.random() >= fim_rate:
        return [doc]
    aligned = line_aligned_split(doc, rng) if line_rate and rng.random() < line_rate else None
    a, b = aligned or sorted((rng.randint(0, len(doc)), rng.randint(0, len(doc))))
    prefix, middle, suffix = doc[:a], doc[a:b], doc[b:]
    if rng.random() < spm_rate:
        return [FIM_PREFIX, FIM_SUFFIX, suffix, FIM_MIDDLE, prefix, middle]
    return [FIM_PREFIX, prefix, FIM_SUFFIX, suffix, FIM_MIDDLE, middle]


def pack_rows(examples: list[list[int]], is_fim: list[bool], seq_len: int, pad: int) -> list[list[int]]:
    """Pack token lists into rows of `seq_len` so that every FIM example lies whole in one row.

    A FIM example cut across two rows would show the model a middle without the prefix and suffix
    it belongs to (attention stops at the row), or a prompt without its middle. So each row starts
    with FIM examples (as many as fit, while FIM text is not ahead of left-to-right text in the
    epoch) and left-to-right text fills the rest; a left-to-right document may run on into the
    next rows. An example longer than a row is cut to it. When left-to-right text runs out, the
    space after the last FIM example of a row is padded with `pad`; a last row of left-to-right text
    only is dropped when incomplete.
    """
    fims = [ex[:seq_len] for ex, f in zip(examples, is_fim) if f]
    l2r = [t for ex, f in zip(examples, is_fim) if not f for t in ex]
    fim_total = max(1, sum(len(ex) for ex in fims))
    l2r_total = max(1, len(l2r))
    rows: list[list[int]] = []
    fi = li = fim_used = 0
    while fi < len(fims) or li < len(l2r):
        row: list[int] = []
        first_fim = fi
        while (fi < len(fims) and len(row) + len(fims[fi]) <= seq_len
               and (fim_used / fim_total <= li / l2r_total or li >= len(l2r))):
            row.extend(fims[fi])
            fim_used += len(fims[fi])
            fi += 1
        take = l2r[li:li + seq_len - len(row)]
        row.extend(take)
        li += len(take)
        if len(row) < seq_len:
            if li < len(l2r) or fi < len(fims) or fi > first_fim:
                row.extend([pad] * (seq_len - len(row)))
            else:
                break
        rows.append(row)
    return rows


def default_chunk_chars(seq_len: int) -> int:
    """Longest training piece in characters: about 3/4 of a row (3.8 characters per token), so that a
    FIM example fits whole in a row next to some left-to-right text."""
    return int(0.75 * seq_len * 3.8)


def first_chars(order: list[int], texts: list[str], max_chars: int) -> list[int]:
    """The head of ``order`` whose texts add up to ``max_chars`` (the text that crosses it included);
    all of ``order`` when ``max_chars`` is 0."""
    if not max_chars:
        return order
    total = 0
    for n, i in enumerate(order):
        total += len(texts[i])
        if total >= max_chars:
            return order[: n + 1]
    return order


def documents(files: list[SourceFile], max_chars: int) -> list[str]:
    return [piece for f in files for piece in chunk_text(f.text, max_chars)]
