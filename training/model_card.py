"""Write inference/default_model/MODEL_CARD.md from a finished run.

    python -m training.model_card training/runs/default EVAL_JSON QUALITY_JSON > inference/default_model/MODEL_CARD.md

EVAL_JSON: the output of ``python -m training.evaluate <run>/final``; QUALITY_JSON: ``bench/quality.py --json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def quality_table(table: dict) -> str:
    rows = ["| mode | single-line EM % | single-line ES % | multi-line EM % | multi-line ES % |",
            "|---|---|---|---|---|"]
    for mode, kinds in table.items():
        s, m = kinds["single"], kinds["multi"]
        rows.append(f"| {mode} | {100 * s['exact_match']:.1f} | {100 * s['edit_similarity']:.1f} | "
                    f"{100 * m['exact_match']:.1f} | {100 * m['edit_similarity']:.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    run, eval_json, quality_json = (Path(a) for a in (argv or sys.argv[1:]))
    state = json.loads((run / "final" / "training_state.json").read_text())
    args = json.loads((run / "args.json").read_text())
    cfg = json.loads((run / "final" / "config.json").read_text())
    ev = json.loads(eval_json.read_text())
    log = (run / "train.log").read_text()
    epoch_tokens = int(log.split("epoch 0: ", 1)[1].split()[0])
    q = json.loads(quality_json.read_text())
    n_single = next(iter(q.values()))["single"]["n"]
    n_multi = next(iter(q.values()))["multi"]["n"]
    print(f"""# infill-ls default model

A small code model trained by this project (training/) so that `infill-ls` gives real suggestions on a
machine with no network and no configured model. It is tiny and was trained for about an hour and a half
on two shared CPU cores: expect short, local, pattern-level completions (closing a line, a `return`, a
call that appears nearby), not reasoning.

## Model
- architecture: GPTBigCode (`GPTBigCodeForCausalLM`), multi-query attention, learned positions,
  tied input/output embeddings, GELU (tanh), pre-LayerNorm
- size: {state['params'] / 1e6:.2f} M parameters, n_embd {cfg['n_embd']}, {cfg['n_layer']} layers,
  {cfg['n_head']} heads, context {cfg['n_positions']} tokens, weights in float32 (safetensors)
- tokenizer: byte-level BPE, {cfg['vocab_size']} tokens, trained with the `tokenizers` library on the same
  training files; StarCoder special tokens at ids 0..5: `<|endoftext|>`, `<fim_prefix>`, `<fim_middle>`,
  `<fim_suffix>`, `<fim_pad>`, `<filename>` (no BOS/EOS are added)
- FIM prompts: PSM `<fim_prefix>prefix<fim_suffix>suffix<fim_middle>` and SPM
  `<fim_prefix><fim_suffix>suffix<fim_middle>prefix`; the middle ends with `<|endoftext|>`

## Data
The `.py` files of the Python {ev['python']} standard library (`sysconfig.get_paths()["stdlib"]`, without
site-packages), UTF-8 only. A file is held out when SHA-1(relative path) is 0 mod 20: {ev['heldout_files']}
files are held out for validation and for bench/quality.py; the rest are training data. Long files are cut
at line boundaries into pieces of at most {int(1.5 * cfg['n_positions'] * 3.6)} characters. StarCoder FIM
recipe: half of the pieces become infill examples at two uniformly random character positions, half of
those SPM and half PSM, the rest left to right; pieces are joined with `<|endoftext|>` and packed into
{cfg['n_positions']}-token rows. The FIM draw and the order change every epoch (seeded).

## Training
- AdamW (betas 0.9/0.95, weight decay 0.1 on matrices), peak LR {args['lr']}, {args['warmup']} warmup steps,
  cosine to {args['min_lr']} over a wall-clock budget of {float(args['time_budget']):.0f} s (`--time-budget`: the
  cosine follows elapsed time, so the run anneals fully on a busy machine); gradient clipping 1.0
- {state['step']} steps of {args['batch']} x {cfg['n_positions']} tokens = {state['tokens'] / 1e6:.2f} M tokens seen
  ({state['tokens'] / epoch_tokens:.2f} passes over the {epoch_tokens / 1e6:.1f} M training tokens), bf16 autocast on CPU, 2 threads,
  {state['seconds'] / 60:.0f} minutes on 2 CPU cores shared with other jobs
- loss curve: `training/runs/default/loss.tsv` in the run folder (not shipped), held-out evals in `eval.tsv`
- command: `nice -n 5 python -m training.train --out training/runs/default --n-embd {cfg['n_embd']} --n-layer {cfg['n_layer']}
  --n-head {cfg['n_head']} --batch {args['batch']} --steps 100000 --warmup {args['warmup']} --time-budget {float(args['time_budget']):.0f}`;
  to repeat this exact run's learning-rate schedule step for step, add `--replay-lr <this run's loss.tsv>`

## Held-out loss (nats per token, fp32)
- held-out split in the training mix (FIM and left to right, {ev['heldout_tokens']} tokens): {ev['heldout_loss_fim_mix']}
- held-out sample loss: `{ev['sample_loss']}`
- held-out sample sha256: `{ev['sample_sha256']}`

The sample is the first 256 tokens of each of the first 8 held-out files (sorted by path) that long, plain
text; tests/test_default_model.py recomputes it (and skips when the interpreter's stdlib differs).

## Completion quality (bench/quality.py, held-out files, seed 0)
{quality_table(q)}

{n_single} single-line and {n_multi} multi-line tasks. EM: exact match; ES: mean edit similarity
(1 - Levenshtein / max length). Every model run goes through the server's prompt building and
shaping, greedy. `repeat-line` repeats the line above the cursor (no model).
Reproduce: `python bench/quality.py --model inference/default_model`.

## Limits
Trained on a few million tokens of one code base (the stdlib) with a 512-token window: it knows stdlib
idioms and Python syntax, little else, and it does not follow long-range logic. It is a working default
and a test fixture for behaviour that only a trained FIM model shows, not a useful assistant; point
`infill-ls` at a real checkpoint (e.g. a StarCoder-family model) for that.
""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
