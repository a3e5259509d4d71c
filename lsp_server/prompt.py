"""Prompt building: cursor context -> token ids, within a token budget, laid out for KV reuse.

Stability is the point. While the user types at the cursor, the prompt should only grow at its
end, so the per-document KV cache keeps everything before the cursor:

* The prefix is cut at block boundaries, before line breaks, so the cut only moves, by a whole
  block, when the prefix outgrows its budget, not on every keystroke. Where a block ends depends
  on the text of the line before it alone (`block_ends_after`: a blank line, or about one line in
  `BLOCK_LINES` by a hash of its text), not on line numbers: an edit elsewhere in the file leaves
  every other block as it was, so going back to a place after editing somewhere else finds the
  place's prompt, and its KV cache, unchanged.
* Each block is tokenized on its own and cached; the current line is tokenized separately from a
  boundary just before the newline that ends the previous line, so BPE merges at the cursor word
  only ever change the last few tokens.
* The suffix is cut the same way (typing above it does not move its cut).
* StarCoder and SantaCoder were trained with suffix-first (SPM) prompts too: with
  `<fim_prefix><fim_suffix>suffix<fim_middle>prefix` typing appends to the prompt. CodeGen2 has
  only prefix-first, so its suffix is kept short (`CODEGEN2_SUFFIX_TOKENS`). CodeGen1 and XGLM
  have no infill: prefix only.
"""

from __future__ import annotations

import json
import math
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator

from inference.api import ModelInfo
from lsp_server.context import CursorContext

BLOCK_LINES = 16  # about one non-blank line in this many ends a block (see block_ends_after)
TOKEN_CUT_QUANTUM = 64  # when a cut must fall inside a block (huge lines): tokens, in steps of this
CODEGEN2_SUFFIX_TOKENS = 48
SPECIAL_TOKENS_RESERVE = 8
PIECE_CACHE_SIZE = 512


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    layout: str  # "spm" | "psm" | "prefix"
    prefix_tokens: int
    suffix_tokens: int
    prefix_chars: int  # how much of the text before the cursor the prompt holds
    suffix_chars: int
    # Token healing: whitespace taken off the end of the prompt, which the generation must start with
    # (its first token is one of `first_token_ids`); `suggestion_text` takes it off again.
    heal: str = ""
    first_token_ids: tuple[int, ...] = ()

    def suggestion_text(self, generated: str) -> str:
        return generated[len(self.heal):] if self.heal and generated.startswith(self.heal) else generated


@dataclass(frozen=True)
class Budget:
    prefix_tokens: int
    suffix_tokens: int

    @staticmethod
    def for_model(max_context: int, context_tokens: int, max_new_tokens: int, suffix_fraction: float,
                  layout: str) -> "Budget":
        total = max_context if context_tokens <= 0 else min(context_tokens, max_context)
        usable = max(16, total - max_new_tokens - SPECIAL_TOKENS_RESERVE)
        if layout == "prefix":
            return Budget(usable, 0)
        suffix = int(usable * suffix_fraction)
        if layout == "psm":
            suffix = min(suffix, CODEGEN2_SUFFIX_TOKENS)
        return Budget(usable - suffix, suffix)


def special_token_ids(tokenizer_json: str) -> tuple[int, ...]:
    """Ids of the tokenizer's special added tokens (its control tokens), from its JSON."""
    added = json.loads(tokenizer_json).get("added_tokens") or []
    return tuple(sorted(t["id"] for t in added if t.get("special") and isinstance(t.get("id"), int)))


class PromptBuilder:
    """Per model: knows its FIM layout and caches the token ids of text pieces. Built from the
    engine's ModelInfo (a LanguageModel is taken too, by its `info()`), with a tokenizer of its own."""

    def __init__(self, model: ModelInfo) -> None:
        info = model if isinstance(model, ModelInfo) else model.info()
        self.info = info
        fim = info.fim
        if fim is None:
            self.layout = "prefix"
        elif fim.supports_spm:
            self.layout = "spm"
        else:
            self.layout = "psm"
        self.bos_ids = list(info.bos_ids)
        # A suggestion ends at EOS, at the FIM format's stops, and at any other control token of the
        # tokenizer (<filename>, <gh_stars>, <jupyter_*>...): a model writing one has left the code,
        # and its text must never reach the user.
        self.special_ids = special_token_ids(info.tokenizer_json)
        self.stop_ids = tuple(dict.fromkeys([*info.stop_ids, *self.special_ids]))
        self._pieces: OrderedDict[str, list[int]] = OrderedDict()
        self._token_texts: list[str] | None = None  # every token's text, for token healing (built once)
        self._heals: dict[str, tuple[int, ...]] = {}  # healed text -> the token ids that start with it
        # Prompts are built on the event loop; `shown_text` also runs in the engine's stop check, on
        # its thread. Encoding and decoding only read the tokenizer (its options are set here, once).
        self._tokenizer = info.tokenizer()
        # Byte-level BPE encodes pieces split before a line break exactly like the whole text;
        # SentencePiece-style tokenizers (XGLM's Metaspace) mark the start of every encoded text,
        # so for them the window is cut the same way but encoded in one go.
        probe = ("x = 1", "\ny = 2", "\n    z")
        self.concatenative = (sum((self._encode(p) for p in probe), []) == self._encode("".join(probe)))

        # CodeLlama and Codestral were trained on the suffix without SentencePiece's leading word marker
        self._suffix_tokenizer = (without_word_marker(info.tokenizer_json) if fim is not None and fim.bare_suffix
                                  else self._tokenizer)

    def _encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def shown_text(self, prompt: Prompt, generated: list[int]) -> str:
        """The text of `generated` as the user will see it: its decode as it continues the prompt,
        without the healed whitespace. The stop check and the shaping both judge this text."""
        return prompt.suggestion_text(self.continuation(prompt.ids, generated))

    def continuation(self, prompt_ids: list[int], generated: list[int]) -> str:
        """The text of `generated` as it continues the prompt. SentencePiece decoders drop the word
        marker of the first token they see, so decode it after a few prompt tokens and subtract."""
        text = self.decode(generated)
        if self.concatenative or not generated:
            return text
        tail = list(prompt_ids[-4:])
        before, after = self.decode(tail), self.decode(tail + list(generated))
        return after[len(before):] if after.startswith(before) else text

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)

    # -- tokenization of pieces (cached: blocks away from the cursor never change while typing)
    def encode_piece(self, text: str) -> list[int]:
        if not text:
            return []
        ids = self._pieces.get(text)
        if ids is not None:
            self._pieces.move_to_end(text)
            return ids
        ids = self._encode(text)
        self._pieces[text] = ids
        if len(self._pieces) > PIECE_CACHE_SIZE:
            self._pieces.popitem(last=False)
        return ids

    # -- cuts
    def prefix_ids(self, prefix: str, budget: int) -> tuple[list[int], int]:
        """Token ids of the end of `prefix` within `budget`, and the number of characters kept."""
        chosen: list[list[int]] = []
        used = 0
        kept_from = len(prefix)
        first_span = (len(prefix), len(prefix))
        for start, end in prefix_pieces(prefix):
            ids = self.encode_piece(prefix[start:end])
            if used + len(ids) > budget:
                if not chosen or used < budget // 2:
                    # even the nearest pieces overflow (very long lines): cut inside, in coarse steps
                    tail = ids + [t for piece in chosen for t in piece]
                    excess = len(tail) - budget
                    drop = math.ceil(excess / TOKEN_CUT_QUANTUM) * TOKEN_CUT_QUANTUM
                    return tail[drop:], -1
                break
            chosen.insert(0, ids)
            used += len(ids)
            kept_from, first_span = start, (start, end)
        if kept_from > 0 and chosen and prefix[kept_from] in "\r\n":
            # the window starts at the line break ending a line outside it: drop that break
            line_start = kept_from + (2 if prefix.startswith("\r\n", kept_from) else 1)
            chosen[0] = self.encode_piece(prefix[line_start:first_span[1]])
            kept_from = line_start
        if not self.concatenative:
            ids = self._encode(prefix[kept_from:])
            return ids[max(0, len(ids) - budget):], len(prefix) - kept_from
        return [t for piece in chosen for t in piece], len(prefix) - kept_from

    def suffix_ids(self, suffix: str, budget: int) -> tuple[list[int], int]:
        if budget <= 0 or not suffix:
            return [], 0
        chosen: list[int] = []
        kept_to = 0
        for start, end in suffix_pieces(suffix):
            ids = self.encode_piece(suffix[start:end])
            if len(chosen) + len(ids) > budget:
                if not chosen:
                    return ids[:budget], -1
                break
            chosen.extend(ids)
            kept_to = end
        if not self.concatenative:
            return self._suffix_tokenizer.encode(suffix[:kept_to], add_special_tokens=False).ids[:budget], kept_to
        return chosen, kept_to

    def build(self, ctx: CursorContext, budget: Budget) -> Prompt:
        prefix_ids, prefix_chars = self.prefix_ids(ctx.prefix, budget.prefix_tokens)
        if self.layout == "prefix":
            heal, first_ids = "", ()
            if len(prefix_ids) > 1 or self.bos_ids:  # never heal the prompt's only token away
                prefix_ids, heal, first_ids = self.heal_whitespace(prefix_ids)
            ids = self.bos_ids + prefix_ids
            if not ids:  # an empty document: the model still needs a first token
                ids = self.bos_ids or list(self.info.eos_token_ids[:1])
            return Prompt(ids, "prefix", len(prefix_ids), 0, prefix_chars, 0, heal, first_ids)
        suffix_ids, suffix_chars = self.suffix_ids(ctx.suffix, budget.suffix_tokens)
        fim = self.info.fim
        heal, first_ids = "", ()
        if self.layout == "spm":
            prefix_ids, heal, first_ids = self.heal_whitespace(prefix_ids)
        ids = fim.spm(prefix_ids, suffix_ids) if self.layout == "spm" else fim.psm(prefix_ids, suffix_ids)
        return Prompt(self.bos_ids + ids, self.layout, len(prefix_ids), len(suffix_ids), prefix_chars,
                      suffix_chars, heal, first_ids)

    def heal_whitespace(self, prefix_ids: list[int]) -> tuple[list[int], str, tuple[int, ...]]:
        """Token healing for a prompt that ends with the prefix (SPM, left to right) on whitespace.

        Byte-level BPE joins a line break with the indentation after it ("\n" + "        " is one
        "\n       " token and a " x" one), so in training a lone "\n" token is followed by code at
        column 0, or by the end of the file. A prompt cut at the start of an indented line ends with
        exactly that token: models then start a new top-level statement or stop. So the trailing
        whitespace token is taken off and the first generated token must begin with its text (it may
        carry the indentation on). Returns (ids, healed text, allowed first token ids)."""
        if not prefix_ids or not self.concatenative:
            return prefix_ids, "", ()
        text = self.decode(prefix_ids[-1:])
        if not text or text.strip() or "\ufffd" in text:
            return prefix_ids, "", ()
        first = self._tokens_starting_with(text)
        if len(first) <= 1:
            return prefix_ids, "", ()
        return prefix_ids[:-1], text, first

    def prepare_healing(self) -> None:
        """Decode every token once (for `heal_whitespace`; some 50 ms for a 49k vocabulary): the server
        calls it off the event loop when a model is loaded, otherwise the first heal does."""
        if self._token_texts is None:
            size = self._tokenizer.get_vocab_size()
            self._token_texts = [self.decode([i]) for i in range(size)]

    def _tokens_starting_with(self, text: str) -> tuple[int, ...]:
        self.prepare_healing()
        if text not in self._heals:
            self._heals[text] = tuple(i for i, t in enumerate(self._token_texts) if t.startswith(text))
        return self._heals[text]


def block_ends_after(line: str) -> bool:
    """Whether a block boundary follows this line (its text without the line break): after a blank
    line, and after about one line in BLOCK_LINES chosen by a hash of its text. Content-defined, so
    boundaries do not move when lines are added or removed elsewhere."""
    return not line.strip() or zlib.crc32(line.encode("utf-8", "surrogatepass")) % BLOCK_LINES == 0


def prefix_pieces(prefix: str) -> Iterator[tuple[int, int]]:
    """(start, end) spans of `prefix`, nearest the cursor first.

    The first span runs from just before the newline that ends the previous line to the cursor; the
    next one back to the last block boundary; then whole blocks. Every boundary sits just before a
    line break, where BPE pre-tokenizers split anyway.
    """
    end = len(prefix)
    pos = prefix.rfind("\n")
    first = True
    while pos >= 0:
        # `pos` is the "\n" ending the line that starts after `before`; split before it (before "\r\n" as a whole)
        cut = pos - 1 if pos > 0 and prefix[pos - 1] == "\r" else pos
        before = prefix.rfind("\n", 0, max(cut, 0))
        if first or block_ends_after(prefix[before + 1:cut]):
            if end > cut:
                yield cut, end
            end = cut
            first = False
        pos = before
    if end > 0:
        yield 0, end


def suffix_pieces(suffix: str) -> Iterator[tuple[int, int]]:
    """(start, end) spans of `suffix`, nearest the cursor first, cut before the line breaks that end
    a block (`block_ends_after`); the rest of the cursor's line always stays in the first span."""
    start = line_start = 0
    pos = suffix.find("\n")
    seen_first = False
    while pos >= 0:
        cut = pos - 1 if pos > 0 and suffix[pos - 1] == "\r" else pos
        if seen_first and cut > start and block_ends_after(suffix[line_start:cut]):
            yield start, cut
            start = cut
        seen_first = True
        line_start = pos + 1
        pos = suffix.find("\n", pos + 1)
    if start < len(suffix):
        yield start, len(suffix)


def without_word_marker(tokenizer_json: str):
    """The tokenizer of `tokenizer_json` without the word marker ("▁") SentencePiece-style tokenizers
    put before a text: Metaspace's prepend scheme set to "never", a normalizer's Prepend dropped."""
    import json

    from tokenizers import Tokenizer

    spec = json.loads(tokenizer_json)

    def strip(node):
        if isinstance(node, dict):
            if node.get("type") == "Metaspace":
                node["prepend_scheme"], node["add_prefix_space"] = "never", False
            if node.get("type") == "Sequence":
                key = "normalizers" if "normalizers" in node else "pretokenizers"
                node[key] = [strip(n) for n in node.get(key, []) if n.get("type") != "Prepend"]
        return node

    spec["normalizer"] = strip(spec.get("normalizer"))
    if isinstance(spec.get("normalizer"), dict) and spec["normalizer"].get("type") == "Prepend":
        spec["normalizer"] = None
    spec["pre_tokenizer"] = strip(spec.get("pre_tokenizer"))
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.encode_special_tokens = True
    return tok
