"""Fill-in-the-middle prompt formats, as data: which special tokens surround prefix and suffix, in
which orders (prefix first, PSM; suffix first, SPM), and which ids end the middle. Everything here is
token ids; text never enters. Torch-free (part of the engine boundary, inference.api).

The formats are one table (`_SPECS`), written with the tokens' strings as each model's documentation
and tokenizer spell them; a tokenizer turns a row into a `FimFormat` of ids. `fim_format` picks the
format of a family infill-ls's own engine loads; `detect_fim_format` finds it from the special tokens
alone (models a remote engine serves); `fim_format_named` builds the one a user names.

Sources of the layouts:
* StarCoder / SantaCoder / StarCoder2: `<fim_prefix>P<fim_suffix>S<fim_middle>`, and trained with
  SPM too (`<fim_prefix><fim_suffix>S<fim_middle>P`, bigcode Megatron "variant 2"). StarCoder2 adds
  `<file_sep>` and `<repo_name>`.
* Qwen2.5-Coder: `<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>` is the only order its documentation
  (QwenLM/Qwen2.5-Coder examples, technical report) gives, so PSM only. Its examples stop at
  <|fim_pad|>, <|endoftext|>, <|file_sep|>, <|repo_name|>, <|im_end|> and the FIM tokens.
* DeepSeek-Coder: `<｜fim▁begin｜>P<｜fim▁hole｜>S<｜fim▁end｜>` (fullwidth bars, U+2581), PSM only
  (its paper trains PSM).
* CodeLlama: the tokens are "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>" in the Hugging Face tokenizer
  (transformers' CodeLlamaTokenizer defaults); some conversions spell them "<PRE>"..., so both are
  accepted. transformers' infilling template is `▁<PRE> {pre} ▁<SUF>{suf} ▁<MID>` and, suffix first,
  `▁<PRE> ▁<SUF>{suf} ▁<MID> {pre}`: the same id orders as StarCoder's. The prefix is encoded with
  SentencePiece's leading word marker (" " + prefix), the suffix without it (`bare_suffix`).
* Codestral (mistral-common `encode_fim`): `<s>[SUFFIX]{suf}[PREFIX]{pre}`, suffix first only, the
  suffix again without the leading word marker; no middle token. The model continues the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Tokenizer

# The two text slots of an order; every other entry of an order is a token id (FimFormat) or a
# token's string (_Spec). No tokenizer has tokens spelled like these.
PREFIX = "{prefix}"
SUFFIX = "{suffix}"

Order = tuple[int | str, ...]  # token ids and the PREFIX / SUFFIX slots, in prompt order


@dataclass(frozen=True)
class FimFormat:
    """A FIM format resolved to one tokenizer's ids.

    `psm_order` / `spm_order` give the layouts (ids and the PREFIX / SUFFIX slots); left empty they
    are StarCoder's (`prefix_token P suffix_token S middle`, and `prefix_token suffix_token S middle
    P`). `supports_psm` / `supports_spm` say which orders the model was trained with: the prompt
    builder uses SPM where there is one, so a format always has PSM when it has no SPM.
    `bare_suffix`: the model's reference encoder drops SentencePiece's leading word marker ("▁")
    from the suffix (CodeLlama, Codestral); byte-level tokenizers add none, so it means nothing there."""
    name: str                      # one of FIM_FORMAT_NAMES
    prefix_token: int              # <fim_prefix> / <fim-prefix> / <mask_1> (CodeGen2) / [PREFIX] ...
    suffix_token: int | None       # <fim_suffix>; None for CodeGen2
    middle_tokens: tuple[int, ...]  # <fim_middle>; CodeGen2: <|endoftext|> <sep> <mask_1>; Codestral: none
    stop_token_ids: tuple[int, ...]
    filename_token_id: int | None = None
    supports_spm: bool = True
    supports_psm: bool = True
    psm_order: Order = ()
    spm_order: Order = ()
    bare_suffix: bool = False

    def __post_init__(self) -> None:
        if not (self.supports_psm or self.supports_spm):
            raise ValueError(f"the {self.name} FIM format has neither a prefix-first nor a suffix-first order")
        for order in (self.psm_order, self.spm_order):
            if order and (order.count(PREFIX), order.count(SUFFIX)) != (1, 1):
                raise ValueError(f"the {self.name} FIM format's order {order} must hold the prefix and "
                                 "the suffix once each")

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Ids that end a middle: the format's own stops and any of its control tokens (a model that
        writes <fim_prefix> in the middle has left the middle)."""
        ids = [*self.stop_token_ids, self.prefix_token, self.suffix_token, *self.middle_tokens,
               self.filename_token_id]
        return tuple(dict.fromkeys(i for i in ids if i is not None))

    def psm(self, prefix_ids: list[int], suffix_ids: list[int]) -> list[int]:
        """Prefix-first prompt (StarCoder: <PRE>prefix<SUF>suffix<MID>); the model generates the middle."""
        if not self.supports_psm:
            raise ValueError(f"the {self.name} FIM format has no prefix-first (PSM) order")
        order = self.psm_order or (self.prefix_token, PREFIX, self.suffix_token, SUFFIX, *self.middle_tokens)
        return _fill(order, prefix_ids, suffix_ids)

    def spm(self, prefix_ids: list[int], suffix_ids: list[int]) -> list[int]:
        """Suffix-first prompt, ending with the prefix so typing appends to it (StarCoder "variant 2":
        <PRE><SUF>suffix<MID>prefix; Codestral: [SUFFIX]suffix[PREFIX]prefix)."""
        if not self.supports_spm:
            raise ValueError(f"the {self.name} FIM format has no suffix-first (SPM) order")
        order = self.spm_order or (self.prefix_token, self.suffix_token, SUFFIX, *self.middle_tokens, PREFIX)
        return _fill(order, prefix_ids, suffix_ids)


def _fill(order: Order, prefix_ids: list[int], suffix_ids: list[int]) -> list[int]:
    out: list[int] = []
    for item in order:
        if item == PREFIX:
            out.extend(prefix_ids)
        elif item == SUFFIX:
            out.extend(suffix_ids)
        else:
            out.append(item)  # a token id
    return out


@dataclass(frozen=True)
class _Spec:
    """One row of the format table, in token strings. Every token of `prefix`, `suffix`, `middle`,
    the orders and `needs` must be in the tokenizer; of `needs_any`, one at least (what tells
    StarCoder2 from StarCoder); `stops` and `filename` are taken where present."""
    name: str
    prefix: str
    suffix: str | None
    middle: tuple[str, ...]
    psm: tuple[str, ...] | None  # None: the model has no such order
    spm: tuple[str, ...] | None
    stops: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    needs_any: tuple[str, ...] = ()
    filename: str | None = None
    bare_suffix: bool = False


def _starcoder_like(name: str, pre: str, suf: str, mid: str, stops: tuple[str, ...], *,
                    needs: tuple[str, ...] = (), needs_any: tuple[str, ...] = (), filename: str | None = None) -> _Spec:
    """A row with StarCoder's two orders: <PRE>P<SUF>S<MID> and <PRE><SUF>S<MID>P."""
    return _Spec(name, pre, suf, (mid,), (pre, PREFIX, suf, SUFFIX, mid), (pre, suf, SUFFIX, mid, PREFIX),
                 stops, needs, needs_any, filename)


# Detection tries the rows in this order: StarCoder2 has all of StarCoder's tokens, so it goes first
# and needs <file_sep> or <repo_name>; the other rows share no token.
_SPECS: tuple[_Spec, ...] = (
    _starcoder_like("starcoder2", "<fim_prefix>", "<fim_suffix>", "<fim_middle>",
                    ("<|endoftext|>", "<fim_pad>", "<file_sep>", "<repo_name>"),
                    needs_any=("<file_sep>", "<repo_name>")),
    _starcoder_like("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", ("<|endoftext|>", "<fim_pad>"),
                    needs=("<fim_pad>",), filename="<filename>"),
    _starcoder_like("santacoder", "<fim-prefix>", "<fim-suffix>", "<fim-middle>", ("<|endoftext|>", "<fim-pad>"),
                    needs=("<fim-pad>",), filename="<filename>"),
    _Spec("qwen", "<|fim_prefix|>", "<|fim_suffix|>", ("<|fim_middle|>",),
          ("<|fim_prefix|>", PREFIX, "<|fim_suffix|>", SUFFIX, "<|fim_middle|>"), None,
          ("<|fim_pad|>", "<|endoftext|>", "<|file_sep|>", "<|repo_name|>", "<|im_end|>")),
    _Spec("deepseek", "<｜fim▁begin｜>", "<｜fim▁hole｜>", ("<｜fim▁end｜>",),
          ("<｜fim▁begin｜>", PREFIX, "<｜fim▁hole｜>", SUFFIX, "<｜fim▁end｜>"), None,
          ("<｜end▁of▁sentence｜>", "<|EOT|>")),
    _Spec("codellama", "<PRE>", "<SUF>", ("<MID>",),
          ("<PRE>", PREFIX, "<SUF>", SUFFIX, "<MID>"), ("<PRE>", "<SUF>", SUFFIX, "<MID>", PREFIX),
          ("<EOT>", "</s>"), needs=("<EOT>",), bare_suffix=True),
    _Spec("codestral", "[PREFIX]", "[SUFFIX]", (), None, ("[SUFFIX]", SUFFIX, "[PREFIX]", PREFIX),
          ("</s>", "[MIDDLE]"), bare_suffix=True),
    _Spec("codegen2", "<mask_1>", None, ("<|endoftext|>", "<sep>", "<mask_1>"),
          (PREFIX, "<mask_1>", SUFFIX, "<|endoftext|>", "<sep>", "<mask_1>"), None,
          ("<eom>", "<|endoftext|>"), needs=("<eom>",)),
)
_BY_NAME = {spec.name: spec for spec in _SPECS}
FIM_FORMAT_NAMES: tuple[str, ...] = tuple(_BY_NAME)

# Other spellings a tokenizer may use for a table token: CodeLlama's Hugging Face tokenizer has its
# FIM tokens with SentencePiece's word marker ("▁<PRE>"), some conversions without it.
_SPELLINGS: dict[str, tuple[str, ...]] = {t: (f"▁{t}", t) for t in ("<PRE>", "<SUF>", "<MID>", "<EOT>")}

# Families infill-ls's own engine loads, and the formats each may have (none: left to right only).
_LOCAL_FAMILIES: dict[str, tuple[str, ...]] = {
    "gpt_bigcode": ("starcoder", "santacoder"), "santacoder": ("starcoder", "santacoder"),
    "codegen2": ("codegen2",), "codegen": (), "xglm": (),
}


def _token_id(tok: Tokenizer, token: str) -> int | None:
    for spelling in _SPELLINGS.get(token, (token,)):
        i = tok.token_to_id(spelling)
        if i is not None:
            return i
    return None


def _missing(spec: _Spec, tok: Tokenizer) -> str | None:
    """What the tokenizer lacks for `spec`, as words for an error; None when it has everything."""
    required = (spec.prefix, spec.suffix, *spec.middle, *(spec.psm or ()), *(spec.spm or ()), *spec.needs)
    for token in dict.fromkeys(t for t in required if t not in (None, PREFIX, SUFFIX)):
        if _token_id(tok, token) is None:
            spellings = _SPELLINGS.get(token, (token,))
            return " or ".join(repr(s) for s in spellings)
    if spec.needs_any and all(_token_id(tok, t) is None for t in spec.needs_any):
        return " or ".join(repr(t) for t in spec.needs_any)
    return None


def _resolve(spec: _Spec, tok: Tokenizer) -> FimFormat:
    """The spec in `tok`'s ids; the caller has checked that nothing is missing."""
    def ids(tokens: tuple[str, ...] | None) -> Order:
        return tuple(t if t in (PREFIX, SUFFIX) else _token_id(tok, t) for t in tokens or ())

    stops = tuple(dict.fromkeys(i for i in (_token_id(tok, t) for t in spec.stops) if i is not None))
    return FimFormat(
        spec.name, _token_id(tok, spec.prefix), _token_id(tok, spec.suffix) if spec.suffix else None,
        tuple(_token_id(tok, t) for t in spec.middle), stops,
        _token_id(tok, spec.filename) if spec.filename else None,
        supports_spm=spec.spm is not None, supports_psm=spec.psm is not None,
        psm_order=ids(spec.psm), spm_order=ids(spec.spm), bare_suffix=spec.bare_suffix)


def _build(name: str, tok: Tokenizer) -> FimFormat | None:
    spec = _BY_NAME[name]
    return None if _missing(spec, tok) else _resolve(spec, tok)


def fim_format(family: str, tok: Tokenizer) -> FimFormat | None:
    """The format of a model of `family` if the tokenizer has its tokens; None means left to right
    only. The families infill-ls loads itself keep their own formats (GPTBigCode: StarCoder or
    SantaCoder; CodeGen2; CodeGen and XGLM have none); any other family is found by its tokens."""
    if family not in _LOCAL_FAMILIES:
        return detect_fim_format(tok)
    return next((f for f in (_build(n, tok) for n in _LOCAL_FAMILIES[family]) if f is not None), None)


def detect_fim_format(tok: Tokenizer) -> FimFormat | None:
    """The format whose special tokens the tokenizer has (the first in table order: StarCoder2
    before StarCoder), from the tokens alone; None when it has no known format's tokens."""
    return next((f for f in (_build(s.name, tok) for s in _SPECS) if f is not None), None)


def fim_format_named(name: str, tok: Tokenizer) -> FimFormat:
    """The format a user names (option `fimFormat`) in `tok`'s ids. Raises ValueError for a name not
    in FIM_FORMAT_NAMES (listing them) and when the tokenizer lacks one of the format's tokens
    (naming the format and the token)."""
    spec = _BY_NAME.get(name)
    if spec is None:
        raise ValueError(f"unknown FIM format {name!r}; known formats: {', '.join(FIM_FORMAT_NAMES)}")
    missing = _missing(spec, tok)
    if missing:
        raise ValueError(f"FIM format {name!r} does not fit this tokenizer: it has no {missing} token")
    return _resolve(spec, tok)
