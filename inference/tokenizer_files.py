"""Loading a checkpoint's tokenizer with the `tokenizers` library: tokenizer.json, or a GPT-2 style
byte-level BPE built from vocab.json + merges.txt (+ added_tokens.json, special_tokens_map.json)."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from .errors import ModelError


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: not valid JSON ({e})") from None


def _special_names(folder: Path) -> set[str]:
    """Token strings declared special in special_tokens_map.json / tokenizer_config.json."""
    names: set[str] = set()

    def collect(value):
        if isinstance(value, str):
            names.add(value)
        elif isinstance(value, dict) and isinstance(value.get("content"), str):
            names.add(value["content"])
        elif isinstance(value, list):
            for item in value:
                collect(item)

    smap = folder / "special_tokens_map.json"
    if smap.is_file():
        for value in _read_json(smap).values():
            collect(value)
    tcfg = folder / "tokenizer_config.json"
    if tcfg.is_file():
        for entry in (_read_json(tcfg).get("added_tokens_decoder") or {}).values():
            if isinstance(entry, dict) and entry.get("special"):
                collect(entry)
    return names


def _from_vocab_merges(folder: Path) -> Tokenizer:
    vocab, merges = folder / "vocab.json", folder / "merges.txt"
    try:
        tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    except Exception as e:
        raise ModelError(f"{vocab} / {merges}: cannot build a BPE tokenizer ({e})") from None
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = _special_names(folder)
    added_path = folder / "added_tokens.json"
    added = _read_json(added_path) if added_path.is_file() else {}
    for content, want_id in sorted(added.items(), key=lambda kv: kv[1]):
        token = AddedToken(content, special=content in special, normalized=False)
        (tok.add_special_tokens if content in special else tok.add_tokens)([token])
        if tok.token_to_id(content) != want_id:
            raise ModelError(f"{added_path}: token {content!r} should have id {want_id} but got "
                             f"{tok.token_to_id(content)} (ids must follow vocab.json)")
    # Specials that live inside vocab.json (e.g. <|endoftext|>) must not be split by BPE.
    in_vocab = [AddedToken(s, special=True, normalized=False) for s in sorted(special)
                if s not in added and tok.token_to_id(s) is not None]
    if in_vocab:
        tok.add_special_tokens(in_vocab)
    return tok


def load_tokenizer(folder: Path) -> Tokenizer:
    path = folder / "tokenizer.json"
    if path.is_file():
        try:
            return Tokenizer.from_file(str(path))
        except Exception as e:
            raise ModelError(f"{path}: cannot load tokenizer ({e})") from None
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return _from_vocab_merges(folder)
    raise ModelError(f"{folder}: no tokenizer found (expected tokenizer.json, or vocab.json and merges.txt)")
