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


def fim_transform(doc: str, rng: random.Random, fim_rate: float = 0.5, spm_rate: float = 0.5) -> list[str]:
    """Segments of one training document: special-token names and plain text, in order.

    Plain texts are tokenized separately (so a FIM split point is also a token boundary, as at
    inference time, where prefix and suffix are encoded on their own). No trailing EOT.
    """
    if rng.random() >= fim_rate:
        return [doc]
    a, b = sorted((rng.randint(0, len(doc)), rng.randint(0, len(doc))))
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


def documents(files: list[SourceFile], max_chars: int) -> list[str]:
    return [piece for f in files for piece in chunk_text(f.text, max_chars)]
