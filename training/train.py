"""Train the default model: a small GPTBigCode (multi-query attention, tied head) with StarCoder FIM.

The shipped model (v1) trained on the stdlib alone (``--corpus stdlib``, the default); its phases' exact
commands are in inference/default_model/MODEL_CARD.md. Its successor trains on the registry corpus; its
phases' exact commands and figures are in training/phases/*/PHASE.md:

    python -m training.corpus build        # the registry corpus (training/corpus.py), cached
    python -m training.train --out training/runs/v2p1 --corpus registry --seq-len 1024 --time-budget 5400 ...
    python -m training.train --out training/runs/v2p2 --corpus registry --init-from training/phases/v2-phase1 ...

Everything is seeded (``--seed``); with the same corpus, torch build and thread count the run is
repeatable. Each epoch re-draws the FIM transforms with ``seed + epoch``, reshuffles the documents and,
with ``--epoch-chars``, takes that many characters of them (so a phase reads code it has not seen, and a
later phase with another seed reads mostly other code). A later phase (``--init-from``) keeps the
tokenizer of the weights it starts from. The loss curve goes to ``<out>/loss.tsv`` (step, tokens seen,
lr, train loss, seconds) and held-out losses to ``<out>/eval.tsv``. Checkpoints (``save_pretrained``
safetensors + tokenizer.json) are written to ``<out>/checkpoint`` every ``--save-every`` steps and to
``<out>/final`` at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer

from training.data import (EOT, FIM_PREFIX, HELDOUT_FIM_RATE, SPECIAL_TOKENS, default_chunk_chars, documents, fim_transform, first_chars, pack_rows,
                           split_files, stdlib_files)
from training.tokenizer import tokenizer_sample, train_tokenizer


def encode_docs(tok: Tokenizer, docs: list[list[str]]) -> list[list[int]]:
    """Token ids of every document: its segments encoded, then <|endoftext|>."""
    special = {name: tok.token_to_id(name) for name in SPECIAL_TOKENS}
    texts = [seg for doc in docs for seg in doc if seg not in special]
    encoded = iter(tok.encode_batch(texts, add_special_tokens=False))
    out: list[list[int]] = []
    for doc in docs:
        ids: list[int] = []
        for seg in doc:
            ids.extend([special[seg]] if seg in special else next(encoded).ids)
        ids.append(special[EOT])
        out.append(ids)
    return out


def epoch_tensor(tok: Tokenizer, docs: list[str], seq_len: int, seed: int, fim_rate: float,
                 line_rate: float = 0.0, max_chars: int = 0) -> torch.Tensor:
    """One epoch's rows: the documents shuffled (seeded), FIM-transformed and packed. With
    ``max_chars`` only the first documents of the shuffle up to that many characters are used (a
    phase that sees a fraction of a large corpus encodes only what it can train on)."""
    rng = random.Random(seed)
    order = list(range(len(docs)))
    rng.shuffle(order)
    order = first_chars(order, docs, max_chars)
    segs = [fim_transform(docs[i], rng, fim_rate=fim_rate, line_rate=line_rate) for i in order]
    rows = pack_rows(encode_docs(tok, segs), [seg[0] == FIM_PREFIX for seg in segs], seq_len,
                     pad=tok.token_to_id(EOT))
    return torch.tensor(rows, dtype=torch.long).view(len(rows), seq_len)


def build_model(vocab_size: int, args: argparse.Namespace):
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    cfg = GPTBigCodeConfig(
        vocab_size=vocab_size,
        n_positions=args.seq_len,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_inner=4 * args.n_embd,
        activation_function="gelu_pytorch_tanh",
        multi_query=True,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=True,
    )
    return GPTBigCodeForCausalLM(cfg)


def progress(step: int, elapsed: float, args: argparse.Namespace) -> float:
    """Fraction of the cosine phase done: by steps, or by wall time with --time-budget (whichever is
    further), so a run on a busy machine still anneals fully before its time is up."""
    p = (step - args.warmup) / max(1, args.steps - args.warmup)
    if args.time_budget:
        p = max(p, (elapsed - args.warmup_seconds) / max(1.0, args.time_budget - args.warmup_seconds))
    return min(1.0, max(0.0, p))


def lr_at(step: int, p: float, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * p))


def replayed_lrs(path: Path) -> list[float]:
    """The per-step learning rates of an earlier run's loss.tsv (to repeat a --time-budget run exactly)."""
    rows = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("step")]
    return [float(r[2]) for r in rows]


@torch.no_grad()
def heldout_loss(model, rows: torch.Tensor, batch: int, autocast: bool) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), batch):
        x = rows[i : i + batch]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=x).logits.float()
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction="sum"
        )
        total += loss.item()
        count += x[:, 1:].numel()
    model.train()
    return total / count


def save(model, tok_path: Path, out: Path, dtype: torch.dtype, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.to(dtype).save_pretrained(out, safe_serialization=True)
    model.to(torch.float32)
    (out / "tokenizer.json").write_bytes(tok_path.read_bytes())
    (out / "training_state.json").write_text(json.dumps(meta, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("training/runs/default"))
    ap.add_argument("--corpus", choices=["registry", "stdlib"], default="stdlib",
                    help="registry: the stdlib and the pinned packages (training.corpus); stdlib: the stdlib alone")
    ap.add_argument("--package-chars", type=int, default=8_000_000,
                    help="registry corpus: at most this many characters of any one package (0: no cap)")
    ap.add_argument("--epoch-chars", type=int, default=0,
                    help="characters of training text per epoch (0: all); each epoch draws its own sample")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=2e-4)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--fim-rate", type=float, default=0.5)
    ap.add_argument("--fim-line-rate", type=float, default=0.0,
                    help="share of the infill examples cut at line-aligned points (training.data)")
    ap.add_argument("--chunk-chars", type=int, default=0,
                    help="max chars per document (0: 0.75 x seq_len x 3.8, about 3/4 of a row)")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast")
    ap.add_argument("--save-dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--eval-rows", type=int, default=64, help="held-out rows for the periodic eval")
    ap.add_argument("--heldout-chars", type=int, default=0,
                    help="characters of held-out files in the final held-out loss (0: all; else a fixed seeded sample)")
    ap.add_argument("--time-budget", type=float, default=0.0,
                    help="seconds: the cosine follows wall time too and training ends when it is spent")
    ap.add_argument("--replay-lr", type=Path, default=None,
                    help="loss.tsv of an earlier run: use its learning rate at every step and its step count")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="start from this saved model (a second phase) instead of random weights")
    ap.add_argument("--start-row", type=int, default=0,
                    help="first row of epoch 0 to train on (a second phase continues where the first stopped)")
    ap.add_argument("--deadline", type=float, default=0.0, help="unix time: stop (and save) when reached")
    ap.add_argument("--bench-steps", type=int, default=0, help="only time this many steps, then exit")
    args = ap.parse_args(argv)

    replay = replayed_lrs(args.replay_lr) if args.replay_lr else None
    if replay:
        args.steps, args.time_budget = len(replay), 0.0
    args.warmup_seconds = 0.0
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    chunk = args.chunk_chars or default_chunk_chars(args.seq_len)

    if args.corpus == "registry":
        from training.corpus import build, capped

        corpus = build()
        train_files, held_files = capped(corpus.train, args.package_chars), corpus.heldout_files
    else:
        train_files, held_files = split_files(stdlib_files())
    tok_path = args.out / "tokenizer.json"
    if args.init_from and not tok_path.exists():  # a later phase keeps the tokenizer of the weights it starts from
        tok_path.write_bytes((args.init_from / "tokenizer.json").read_bytes())
    if not tok_path.exists():
        train_tokenizer(tokenizer_sample([f.text for f in train_files], args.seed), args.vocab_size).save(str(tok_path))
    tok = Tokenizer.from_file(str(tok_path))
    train_docs = documents(train_files, chunk)
    held_docs = documents(held_files, chunk)
    held_rows = epoch_tensor(tok, held_docs, args.seq_len, seed=0, fim_rate=HELDOUT_FIM_RATE,
                             max_chars=args.heldout_chars)
    print(f"train docs {len(train_docs)}, held-out rows {len(held_rows)}", flush=True)

    if args.init_from:
        from transformers import GPTBigCodeForCausalLM

        model = GPTBigCodeForCausalLM.from_pretrained(args.init_from, dtype=torch.float32)
    else:
        model = build_model(tok.get_vocab_size(), args)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params {n_params / 1e6:.2f}M", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
    )
    eval_rows = held_rows[: args.eval_rows]
    (args.out / "args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=1))
    loss_log = open(args.out / "loss.tsv", "a")
    eval_log = open(args.out / "eval.tsv", "a")
    loss_log.write("step\ttokens\tlr\tloss\tseconds\n")
    eval_log.write("step\ttokens\theldout_loss\n")

    epoch, pos, tokens = 0, args.start_row, 0
    rows = epoch_tensor(tok, train_docs, args.seq_len, seed=args.seed + epoch, fim_rate=args.fim_rate,
                        line_rate=args.fim_line_rate, max_chars=args.epoch_chars)
    print(f"epoch 0: {rows.numel()} tokens", flush=True)
    model.train()
    t0 = time.time()
    step = 0
    for step in range(args.steps):
        if pos + args.batch > len(rows):
            epoch += 1
            pos = 0
            rows = epoch_tensor(tok, train_docs, args.seq_len, seed=args.seed + epoch, fim_rate=args.fim_rate,
                                line_rate=args.fim_line_rate, max_chars=args.epoch_chars)
            print(f"epoch {epoch}: {rows.numel()} tokens", flush=True)
        x = rows[pos : pos + args.batch]
        pos += args.batch
        elapsed = time.time() - t0
        if step == args.warmup:
            args.warmup_seconds = elapsed
        p = progress(step, elapsed, args)
        if p >= 1.0 and step > args.warmup:
            break
        lr = replay[step] if replay else lr_at(step, p, args)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            out = model(input_ids=x, labels=x)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += x.numel()
        elapsed = time.time() - t0
        loss_log.write(f"{step}\t{tokens}\t{lr:.6g}\t{out.loss.item():.4f}\t{elapsed:.1f}\n")
        if step % 10 == 0:
            loss_log.flush()
            print(f"step {step} loss {out.loss.item():.4f} lr {lr:.2e} {tokens / elapsed:.0f} tok/s", flush=True)
        if args.bench_steps and step == 2:
            t_bench = time.time()
        if args.bench_steps and step + 1 >= args.bench_steps:
            dt = (time.time() - t_bench) / (step - 2)
            print(f"bench: {x.numel() / dt:.0f} tok/s, {dt:.3f} s/step (steps after the third)", flush=True)
            return 0
        stop = args.deadline and time.time() > args.deadline
        if (step + 1) % args.save_every == 0 or stop:
            hl = heldout_loss(model, eval_rows, args.batch, args.bf16)
            eval_log.write(f"{step + 1}\t{tokens}\t{hl:.4f}\n")
            eval_log.flush()
            print(f"eval step {step + 1}: held-out loss {hl:.4f}", flush=True)
            save(model, tok_path, args.out / "checkpoint", getattr(torch, args.save_dtype),
                 {"step": step + 1, "tokens": tokens, "epoch": epoch, "heldout_loss_sample": hl})
        if stop:
            print("deadline reached", flush=True)
            break
    else:
        p = 0.0
    steps_done = step if (p >= 1.0 and step > args.warmup) else step + 1
    hl = heldout_loss(model, held_rows, args.batch, False)
    eval_log.write(f"{steps_done}\t{tokens}\t{hl:.4f}\n")
    meta = {"step": steps_done, "tokens": tokens, "epoch": epoch, "params": n_params,
            "heldout_loss_fp32_all_rows": hl, "heldout_rows": len(held_rows), "seconds": time.time() - t0}
    save(model, tok_path, args.out / "final", getattr(torch, args.save_dtype), meta)
    print(json.dumps(meta), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
