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


def layout_note(q: dict) -> str:
    psm, spm = (sum(q[m][k]["edit_similarity"] for k in ("single", "multi")) for m in ("fim-psm", "fim-spm"))
    if psm <= spm or "fim-psm" not in q:
        return ""
    return ("\nThis model does much better with PSM prompts than with SPM ones (the server's choice for "
            "StarCoder-style models): in this short training it learned the suffix-first order less well.\n")


def phase_line(i: int, run: Path) -> str:
    state = json.loads((run / "final" / "training_state.json").read_text())
    a = json.loads((run / "args.json").read_text())
    cmd = (f"nice -n 5 python -m training.train --out {run}"
           + (f" --init-from {a['init_from']} --start-row {a['start_row']}" if a.get("init_from", "None") != "None"
              else f" --n-embd {a['n_embd']} --n-layer {a['n_layer']} --n-head {a['n_head']}")
           + f" --batch {a['batch']} --lr {a['lr']} --min-lr {a['min_lr']} --warmup {a['warmup']}"
           + f" --steps 100000 --time-budget {float(a['time_budget']):.0f}")
    return (f"- phase {i}: {state['step']} steps of {a['batch']} x 512 tokens = {state['tokens'] / 1e6:.2f} M tokens, "
            f"peak LR {a['lr']} ({a['warmup']} warmup steps) cosine to {a['min_lr']}, "
            f"{state['seconds'] / 60:.0f} min; held-out loss after it {state['heldout_loss_fp32_all_rows']:.3f}\n"
            f"  `{cmd}`")


def main(argv: list[str] | None = None) -> int:
    argv = [Path(a) for a in (argv or sys.argv[1:])]
    eval_json, quality_json, runs = argv[0], argv[1], argv[2:]
    states = [json.loads((r / "final" / "training_state.json").read_text()) for r in runs]
    state = {"params": states[-1]["params"], "step": sum(s["step"] for s in states),
             "tokens": sum(s["tokens"] for s in states), "seconds": sum(s["seconds"] for s in states)}
    cfg = json.loads((runs[-1] / "final" / "config.json").read_text())
    ev = json.loads(eval_json.read_text())
    log = (runs[0] / "train.log").read_text()
    epoch_tokens = int(log.split("epoch 0: ", 1)[1].split()[0])
    phases = "\n".join(phase_line(i + 1, r) for i, r in enumerate(runs))
    q = json.loads(quality_json.read_text())
    n_single = next(iter(q.values()))["single"]["n"]
    n_multi = next(iter(q.values()))["multi"]["n"]
    print(f"""# infill-ls default model

A small code model trained by this project (training/) so that `infill-ls` runs with no network and no
configured model. It is tiny and badly under-trained (about 7 M tokens, 1.7 hours on two CPU cores shared
with other jobs): it writes Python-looking text, but it does NOT yet complete code usefully (see the
quality table). It is a placeholder default and a real trained-FIM test fixture, not an assistant.

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
AdamW (betas 0.9/0.95, weight decay 0.1 on matrices, gradient clipping 1.0), bf16 autocast on CPU,
2 threads, `nice -n 5`. `--time-budget`: the cosine follows elapsed wall time as well as steps, so a
run anneals fully on a busy machine. Phase 2 starts from phase 1's weights (fresh optimizer) at the row
of the same seeded epoch where phase 1 stopped, so no training row is seen twice.
{phases}

Total: {state['step']} steps, {state['tokens'] / 1e6:.2f} M tokens ({state['tokens'] / epoch_tokens:.2f} of
one pass over the {epoch_tokens / 1e6:.1f} M training tokens), {state['seconds'] / 60:.0f} minutes.
To repeat a run's learning-rate schedule step for step, add `--replay-lr <that run's loss.tsv>`. The loss
curves (`loss.tsv`, `eval.tsv`) stay in the run folders under training/runs/ (not shipped).

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
{layout_note(q)}""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
