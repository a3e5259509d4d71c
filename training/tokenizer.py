"""Train the byte-level BPE tokenizer on the training split of the stdlib files.

    python -m training.tokenizer --vocab-size 8192 --out training/out/tokenizer.json

The StarCoder special tokens take ids 0..5 (``data.SPECIAL_TOKENS``). The tokenizer adds no BOS/EOS.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from training.data import SPECIAL_TOKENS, first_chars, split_files, stdlib_files


TOKENIZER_SAMPLE_CHARS = 60_000_000


def tokenizer_sample(texts: list[str], seed: int, max_chars: int = TOKENIZER_SAMPLE_CHARS) -> list[str]:
    """A seeded random sample of the training texts, up to ``max_chars`` (BPE merges settle long
    before a corpus of hundreds of MB is read, and training on all of it takes many minutes)."""
    import random

    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    return [texts[i] for i in first_chars(order, texts, max_chars)]


def train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    for i, name in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(name) == i, (name, tok.token_to_id(name))
    return tok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--out", type=Path, default=Path("training/out/tokenizer.json"))
    args = ap.parse_args(argv)
    train, held = split_files(stdlib_files())
    tok = train_tokenizer([f.text for f in train], args.vocab_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(args.out))
    sample = "".join(f.text for f in held)
    n = len(tok.encode(sample).ids)
    print(f"train files {len(train)}, held-out {len(held)}; vocab {tok.get_vocab_size()}; "
          f"held-out {len(sample)} chars -> {n} tokens ({len(sample) / n:.2f} chars/token)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
