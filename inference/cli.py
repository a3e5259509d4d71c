"""`infill-ls convert`: SRC checkpoint folder -> DST folder with model.safetensors (+ config and
tokenizer files), or `--gguf OUT.gguf` for llama-server (inference.gguf_export). User errors print
one line and exit with status 2. (`infill-ls complete` runs the server's pipeline: lsp_server.complete.)
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


def run_convert(argv: list[str]) -> int:
    p = _Parser(prog="infill-ls convert", description="Write a safetensors copy of a checkpoint folder, "
                "or (--gguf) a GGUF file for llama.cpp's llama-server.")
    p.add_argument("src", help="checkpoint folder (pytorch_model.bin or safetensors); 'default': the shipped model")
    p.add_argument("dst", nargs="?", help="new folder to write (not with --gguf)")
    p.add_argument("--gguf", metavar="OUT.gguf", help="write a GGUF file instead (gpt_bigcode models)")
    p.add_argument("--outtype", choices=("f32", "bf16", "q8_0", "q4_0"), default="f32", help="GGUF weight type")
    args = p.parse_args(argv)
    if args.gguf:
        if args.dst:
            raise UsageError("infill-ls convert: give either DST or --gguf, not both")
        from .gguf_export import export_gguf

        out = export_gguf(None if args.src == "default" else args.src, args.gguf, args.outtype)
        print(f"wrote {out} ({args.outtype})", file=sys.stderr)
        return 0
    if not args.dst:
        raise UsageError("infill-ls convert: DST (a new folder) or --gguf OUT.gguf is required")
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
    if not argv or argv[0] != "convert":
        print("usage: infill-ls convert SRC DST | infill-ls convert SRC --gguf OUT.gguf", file=sys.stderr)
        return 2
    try:
        return run_convert(list(argv[1:]))
    except (ModelError, UsageError, ValueError) as e:
        print(f"infill-ls: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
