"""Fill-in-the-middle prompt formats, as data: which special tokens surround prefix and suffix, and
which ids end the middle. Everything here is token ids; text never enters. Torch-free (part of the
engine boundary, inference.api)."""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Tokenizer


@dataclass(frozen=True)
class FimFormat:
    name: str                      # "starcoder" | "santacoder" | "codegen2"
    prefix_token: int              # <fim_prefix> / <fim-prefix> / <mask_1> (CodeGen2)
    suffix_token: int | None       # <fim_suffix>; None for CodeGen2
    middle_tokens: tuple[int, ...]  # <fim_middle>; CodeGen2: <|endoftext|> <sep> <mask_1>
    stop_token_ids: tuple[int, ...]
    filename_token_id: int | None = None
    supports_spm: bool = True

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Ids that end a middle: the format's own stops and any of its control tokens (a model that
        writes <fim_prefix> in the middle has left the middle)."""
        ids = [*self.stop_token_ids, self.prefix_token, self.suffix_token, *self.middle_tokens,
               self.filename_token_id]
        return tuple(dict.fromkeys(i for i in ids if i is not None))

    def psm(self, prefix_ids: list[int], suffix_ids: list[int]) -> list[int]:
        """Prefix-suffix-middle prompt; the model generates the middle."""
        if self.name == "codegen2":  # prefix <mask_1> suffix <|endoftext|> <sep> <mask_1>
            return [*prefix_ids, self.prefix_token, *suffix_ids, *self.middle_tokens]
        return [self.prefix_token, *prefix_ids, self.suffix_token, *suffix_ids, *self.middle_tokens]

    def spm(self, prefix_ids: list[int], suffix_ids: list[int]) -> list[int]:
        """Suffix-prefix-middle (StarCoder "variant 2"): <PRE><SUF>suffix<MID>prefix."""
        if not self.supports_spm:
            raise ValueError(f"the {self.name} FIM format has no suffix-first (SPM) order")
        return [self.prefix_token, self.suffix_token, *suffix_ids, *self.middle_tokens, *prefix_ids]


def _ids(tok: Tokenizer, *names: str) -> list[int] | None:
    ids = [tok.token_to_id(n) for n in names]
    return None if any(i is None for i in ids) else ids


def fim_format(family: str, tok: Tokenizer) -> FimFormat | None:
    """The family's format if the tokenizer has its tokens; None means left-to-right only."""
    eot = tok.token_to_id("<|endoftext|>")
    if family in ("gpt_bigcode", "santacoder"):
        for name, sep in (("starcoder", "_"), ("santacoder", "-")):
            ids = _ids(tok, *(f"<fim{sep}{part}>" for part in ("prefix", "middle", "suffix", "pad")))
            if ids:
                pre, mid, suf, pad = ids
                stops = tuple(i for i in (eot, pad) if i is not None)
                return FimFormat(name, pre, suf, (mid,), stops, tok.token_to_id("<filename>"))
        return None
    if family == "codegen2":
        ids = _ids(tok, "<mask_1>", "<|endoftext|>", "<sep>", "<eom>")
        if ids:
            mask, eot, sep, eom = ids
            return FimFormat("codegen2", mask, None, (eot, sep, mask), (eom, eot), supports_spm=False)
    return None
