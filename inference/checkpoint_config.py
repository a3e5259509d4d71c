"""What a checkpoint folder says about its model without its weights (torch-free): config.json,
the family from its model_type and the tokenizer's special tokens, the ids that end and begin a
sequence. inference.loader builds the model from these; a remote engine's client
(inference.remote_llamacpp) builds the editor side's ModelInfo from them."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ModelError


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise ModelError(f"{path}: no config.json in the model folder")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return cfg


def detect_family(cfg: dict, tokenizer, folder: Path) -> str:
    model_type = cfg.get("model_type")
    if model_type == "gpt_bigcode":
        return "santacoder" if tokenizer.token_to_id("<fim-prefix>") is not None else "gpt_bigcode"
    if model_type == "codegen":
        codegen2 = tokenizer.token_to_id("<mask_1>") is not None or tokenizer.token_to_id("<eom>") is not None
        return "codegen2" if codegen2 else "codegen"
    if model_type == "xglm":
        return "xglm"
    raise ModelError(f"{folder / 'config.json'}: unsupported model_type {model_type!r} "
                     "(supported: codegen, gpt_bigcode, xglm)")


def eos_token_ids(family: str, tokenizer, cfg: dict) -> tuple[int, ...]:
    names = {"xglm": ("</s>",), "codegen2": ("<|endoftext|>", "<eom>")}.get(family, ("<|endoftext|>",))
    ids = [tokenizer.token_to_id(n) for n in names if tokenizer.token_to_id(n) is not None]
    if not ids:  # fall back to the config (CodeGen2's config eos is a plain token, hence last)
        eos = cfg.get("eos_token_id")
        ids = [e for e in (eos if isinstance(eos, list) else [eos]) if isinstance(e, int)]
    return tuple(dict.fromkeys(ids))


def bos_ids(family: str, tokenizer) -> list[int]:
    """XGLM's reference tokenizer puts </s> before every sequence; the others add nothing."""
    return [tokenizer.token_to_id("</s>")] if family == "xglm" else []
