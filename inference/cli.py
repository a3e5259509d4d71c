"""`infill-ls complete` and `infill-ls convert`: the engine from the command line.

complete: prefix (and optional suffix) text -> generated text (or --json with ids and timings).
convert:  SRC checkpoint folder -> DST folder with model.safetensors (+ config and tokenizer files).
User errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from .errors import ModelError

SHARD_BYTES = 4 * 2**30
COPIED_FILES = ("config.json", "generation_config.json", "tokenizer.json", "vocab.json", "merges.txt",
                "added_tokens.json", "special_tokens_map.json", "tokenizer_config.json")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump, exit status 2 from main
        raise UsageError(f"{self.prog}: {message}")


def complete_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="infill-ls complete", description="Complete a prefix (and optional suffix) with a model.")
    p.add_argument("--model", help="checkpoint folder or hub id (default: the shipped default model)")
    p.add_argument("--prefix", help="text before the cursor")
    p.add_argument("--suffix", help="text after the cursor (turns on fill-in-the-middle)")
    p.add_argument("--prefix-file", help="read the prefix from this file")
    p.add_argument("--suffix-file", help="read the suffix from this file")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    p.add_argument("--stop", nargs="+", action="extend", default=[], metavar="STR", help="stop strings")
    p.add_argument("--json", action="store_true", help="print one JSON object with ids and timings")
    return p


def _read_text(path: str, flag: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{flag} {path}: cannot read ({e.strerror or e})") from None


def run_complete(argv: list[str]) -> int:
    args = complete_parser().parse_args(argv)
    if (args.prefix is None) == (args.prefix_file is None):
        raise UsageError("give exactly one of --prefix or --prefix-file")
    if args.suffix is not None and args.suffix_file is not None:
        raise UsageError("give at most one of --suffix or --suffix-file")
    if args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be at least 1 (got {args.max_new_tokens})")
    if args.temperature < 0:
        raise UsageError(f"--temperature must be >= 0 (got {args.temperature})")
    if not 0 < args.top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1] (got {args.top_p})")
    prefix = args.prefix if args.prefix is not None else _read_text(args.prefix_file, "--prefix-file")
    suffix = args.suffix if args.suffix is not None else (
        _read_text(args.suffix_file, "--suffix-file") if args.suffix_file else None)

    from .engine import Engine, GenerationParams
    from .loader import load_model

    lm = load_model(args.model, device=args.device, dtype=args.dtype, compile_decode=False)  # one completion
    stop_ids: tuple[int, ...] = ()
    if suffix is not None and lm.fim is not None:
        prompt = lm.bos_ids + lm.fim.psm(lm.encode_plain(prefix), lm.encode_plain(suffix))
        stop_ids = lm.fim.stop_token_ids
    else:
        if suffix is not None:
            print(f"infill-ls: {lm.family} has no fill-in-the-middle format; completing left to right from "
                  "the prefix (suffix ignored)", file=sys.stderr)
        prompt = lm.encode(prefix)
    if len(prompt) >= lm.max_context:
        raise UsageError(f"the prompt is {len(prompt)} tokens; the model's context is {lm.max_context}")
    params = GenerationParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                              seed=args.seed, stop_token_ids=stop_ids, stop_strings=tuple(args.stop))
    res = Engine(lm).generate(prompt, params)
    if args.json:
        print(json.dumps({
            "text": res.text, "token_ids": res.token_ids, "stop_reason": res.stop_reason,
            "prompt_tokens": res.prompt_tokens, "reused_tokens": res.reused_tokens,
            "prefill_tokens": res.prefill_tokens, "prefill_ms": round(res.prefill_ms, 3),
            "decode_ms": round(res.decode_ms, 3), "family": lm.family,
            "fim": bool(suffix is not None and lm.fim is not None),
        }))
    else:
        sys.stdout.write(res.text)
        sys.stdout.flush()
    return 0


def run_convert(argv: list[str]) -> int:
    p = _Parser(prog="infill-ls convert", description="Write a safetensors copy of a checkpoint folder.")
    p.add_argument("src", help="checkpoint folder (pytorch_model.bin or safetensors)")
    p.add_argument("dst", help="new folder to write")
    args = p.parse_args(argv)
    from safetensors.torch import save_file

    from .loader import read_config, resolve_source
    from .weights import IGNORED, read_checkpoint

    src = resolve_source(args.src)
    read_config(src)
    dst = Path(args.dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise UsageError(f"{dst}: already exists and is not an empty folder")
    tensors, _ = read_checkpoint(src)
    tensors = {k: v.contiguous().clone() for k, v in tensors.items() if not IGNORED.match(k)}
    dst.mkdir(parents=True, exist_ok=True)
    shards, size = [{}], 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if size and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(dst / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, part in enumerate(shards, 1):
            fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(part, str(dst / fname), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, fname))
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        (dst / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    for name in COPIED_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    print(f"wrote {len(tensors)} tensors to {dst}", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("complete", "convert"):
        print("usage: infill-ls {complete,convert} ...", file=sys.stderr)
        return 2
    command, rest = argv[0], list(argv[1:])
    try:
        return run_complete(rest) if command == "complete" else run_convert(rest)
    except (ModelError, UsageError, ValueError) as e:
        print(f"infill-ls: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
