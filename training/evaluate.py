"""Held-out figures for the model card.

    python -m training.evaluate training/runs/default/final

prints (as JSON) the loss on the full held-out split in training's own FIM mix (the same rows as
``train.py``'s final eval) and on the small fixed *sample* that tests/test_default_model.py recomputes
on its own: the first ``SAMPLE_TOKENS`` tokens of each of the first ``SAMPLE_FILES`` held-out files
(sorted by path) that have that many tokens, plain left-to-right text, fp32, mean cross-entropy in
nats per predicted token. ``sample_sha256`` identifies the sample texts (the stdlib of another Python
release gives other files, and the test skips).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer

from training.data import HELDOUT_FIM_RATE, split_files, stdlib_files

SAMPLE_FILES = 8
SAMPLE_TOKENS = 256


def heldout_sample(tok: Tokenizer) -> tuple[torch.Tensor, str]:
    _, held = split_files(stdlib_files())
    rows, digest = [], hashlib.sha256()
    for f in held:
        ids = tok.encode(f.text, add_special_tokens=False).ids
        if len(ids) >= SAMPLE_TOKENS:
            rows.append(ids[:SAMPLE_TOKENS])
            digest.update(f.rel_path.encode() + b"\0" + f.text.encode())
        if len(rows) == SAMPLE_FILES:
            break
    return torch.tensor(rows), digest.hexdigest()


@torch.no_grad()
def mean_loss(model, rows: torch.Tensor, batch: int = 8) -> float:
    total, count = 0.0, 0
    for i in range(0, len(rows), batch):
        x = rows[i : i + batch]
        logits = model(input_ids=x).logits.float()
        total += torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction="sum").item()
        count += x[:, 1:].numel()
    return total / count


def run_args(folder: Path) -> dict:
    """The arguments of the run that saved `folder`: its args.json beside the weights (a committed
    phase folder) or in the run folder above them (``<run>/final``); empty when neither."""
    for args in (folder / "args.json", folder.parent / "args.json"):
        if args.is_file():
            return json.loads(args.read_text())
    return {}


def chunk_chars(folder: Path, seq_len: int) -> int:
    """The piece length the run used, else the default."""
    from training.data import default_chunk_chars

    return int(run_args(folder).get("chunk_chars", 0)) or default_chunk_chars(seq_len)


def heldout_rows(tok: Tokenizer, files, seq_len: int, chunk: int, max_chars: int) -> torch.Tensor:
    from training.data import documents
    from training.train import epoch_tensor

    return epoch_tensor(tok, documents(files, chunk), seq_len, seed=0, fim_rate=HELDOUT_FIM_RATE, max_chars=max_chars)


def main(argv: list[str] | None = None) -> int:
    from transformers import GPTBigCodeForCausalLM

    folder = Path((argv or sys.argv[1:])[0])
    torch.set_num_threads(2)
    model = GPTBigCodeForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    rows, digest = heldout_sample(tok)
    seq_len = model.config.n_positions
    chunk = chunk_chars(folder, seq_len)
    args = run_args(folder)
    max_chars = int(args.get("heldout_chars", 0))
    if args.get("corpus", "stdlib") == "registry":
        from training.corpus import build

        corpus = build(write_manifest=False)
        held, unseen = corpus.heldout_files, corpus.heldout_packages
    else:
        held, unseen = split_files(stdlib_files())[1], []
    state = folder / "training_state.json"
    full = json.loads(state.read_text()).get("heldout_loss_fp32_all_rows") if state.is_file() else None
    held_rows = heldout_rows(tok, held, seq_len, chunk, max_chars)
    out = {
        "sample_loss": round(mean_loss(model, rows), 4),
        "sample_sha256": digest,
        "sample_tokens": int(rows.numel()),
        # train.py's final eval is this same figure (same rows, fp32): reuse it rather than recompute
        "heldout_loss_fim_mix": round(full if full is not None else mean_loss(model, held_rows), 4),
        "heldout_tokens": int(held_rows.numel()),
        "heldout_files": len(held),
        "python": sys.version.split()[0],
    }
    if unseen:
        unseen_rows = heldout_rows(tok, unseen, seq_len, chunk, max_chars)
        out.update({"heldout_packages_loss_fim_mix": round(mean_loss(model, unseen_rows), 4),
                    "heldout_packages_tokens": int(unseen_rows.numel()),
                    "heldout_packages_files": len(unseen)})
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
