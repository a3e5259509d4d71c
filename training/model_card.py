"""Write inference/default_model/MODEL_CARD.md from a finished run.

    python -m training.model_card training/runs/default EVAL_JSON QUALITY_JSON > inference/default_model/MODEL_CARD.md

EVAL_JSON: the output of ``python -m training.evaluate <run>/final``; QUALITY_JSON: ``bench/quality.py --json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from training.data import default_chunk_chars


def quality_table(table: dict) -> str:
    rows = ["| mode | single-line EM % | single-line ES % | multi-line EM % | multi-line ES % |",
            "|---|---|---|---|---|"]
    for mode, kinds in table.items():
        s, m = kinds["single"], kinds["multi"]
        rows.append(f"| {mode} | {100 * s['exact_match']:.1f} | {100 * s['edit_similarity']:.1f} | "
                    f"{100 * m['exact_match']:.1f} | {100 * m['edit_similarity']:.1f} |")
    return "\n".join(rows)


def lead_lines(table: dict) -> str:
    """FIM (SPM) against each other mode, task by task: mean ES lead and its 95% bootstrap interval."""
    out = []
    for mode, kinds in table.items():
        lead = kinds.get("spm_lead")
        if lead:
            out.append(f"fim-spm ES lead over {mode}: " + ", ".join(
                f"{kind} {100 * v['mean']:+.1f} points [{100 * v['low']:+.1f}, {100 * v['high']:+.1f}]"
                for kind, v in lead.items()))
    return "\n".join(out) + ("\n" if out else "")


def layout_note(q: dict) -> str:
    psm, spm = (sum(q[m][k]["edit_similarity"] for k in ("single", "multi")) for m in ("fim-psm", "fim-spm"))
    if psm <= spm or "fim-psm" not in q:
        return ""
    return ("\nThis model does much better with PSM prompts than with SPM ones (the server's choice for "
            "StarCoder-style models): in this short training it learned the suffix-first order less well.\n")


CLEAR_MARGIN = 0.03  # edit similarity: a lead smaller than this is within the noise of a few hundred tasks


def clear_lead(q: dict, mode: str, kind: str) -> bool:
    """FIM (SPM) beats `mode` clearly on `kind` tasks: by at least CLEAR_MARGIN of mean edit similarity,
    and with the 95% interval of the paired per-task lead above zero (when the bench gave one)."""
    lead = q[mode].get("spm_lead", {}).get(kind)
    return (q["fim-spm"][kind]["edit_similarity"] >= q[mode][kind]["edit_similarity"] + CLEAR_MARGIN
            and (lead is None or lead["low"] > 0))


def verdict(q: dict) -> str:
    """One sentence on what the quality table shows: does FIM as the server runs it (SPM) beat
    left-to-right and the trivial baseline clearly (see clear_lead) on both task kinds?"""
    if not all(m in q for m in ("fim-spm", "l2r", "repeat-line")):
        return ""
    kinds = ("single", "multi")
    over_rep = [k for k in kinds if clear_lead(q, "repeat-line", k)]
    over_l2r = [k for k in kinds if clear_lead(q, "l2r", k)]
    if len(over_rep) == 2 and len(over_l2r) == 2:
        return ("Its fill-in-the-middle suggestions (SPM, as the server prompts it) beat left-to-right "
                "completion and the repeat-the-line baseline clearly on both task kinds (table below), but it "
                "is a small model: a working default and a trained-FIM test fixture, not a strong assistant.")
    if len(over_rep) == 2:
        where = f"only on {over_l2r[0]}-line tasks" if over_l2r else "on neither task kind"
        return ("Its fill-in-the-middle suggestions (SPM, as the server prompts it) beat the repeat-the-line "
                "baseline clearly on both task kinds; against left-to-right completion from the same model the "
                f"lead is clear {where} (clear: at least {100 * CLEAR_MARGIN:.0f} edit-similarity points with a "
                "95% interval above zero, table below): at this size it makes limited use of the code after "
                "the cursor. A working default and a trained-FIM test fixture, not an assistant.")
    return ("It does NOT yet beat the trivial baseline clearly on every task kind (table below): a working "
            "default and a trained-FIM test fixture, not an assistant.")


def phase_line(i: int, run: Path) -> str:
    state = json.loads((run / "final" / "training_state.json").read_text())
    a = json.loads((run / "args.json").read_text())
    cmd = (f"python -m training.train --out {run}"
           + (f" --init-from {a['init_from']} --start-row {a['start_row']}" if a.get("init_from", "None") != "None"
              else f" --n-embd {a['n_embd']} --n-layer {a['n_layer']} --n-head {a['n_head']}")
           + f" --batch {a['batch']} --lr {a['lr']} --min-lr {a['min_lr']} --warmup {a['warmup']}"
           + f" --steps 100000 --time-budget {float(a['time_budget']):.0f}"
           + (f" --fim-rate {a['fim_rate']} --fim-line-rate {a['fim_line_rate']} --seed {a['seed']}"
              if float(a.get("fim_line_rate", 0)) else ""))
    return (f"- phase {i}: {state['step']} steps of {a['batch']} x 512 tokens = {state['tokens'] / 1e6:.2f} M tokens, "
            f"peak LR {a['lr']} ({a['warmup']} warmup steps) cosine to {a['min_lr']}, "
            f"{state['seconds'] / 60:.0f} min; held-out loss after it {state['heldout_loss_fp32_all_rows']:.3f}\n"
            f"  `{cmd}`")


def mix_note(runs: list[Path]) -> str:
    """The FIM mix of phases that changed it (--fim-rate, --fim-line-rate; see training.data)."""
    notes = []
    for i, run in enumerate(runs):
        a = json.loads((run / "args.json").read_text())
        line_rate, fim_rate = float(a.get("fim_line_rate", 0)), float(a["fim_rate"])
        if line_rate or fim_rate != 0.5:
            notes.append(f"Phase {i + 1} trains on a different mix: {fim_rate:.0%} of the pieces are infill examples, "
                         f"{line_rate:.0%} of those cut line-aligned (the middle is a whole line, the rest of a "
                         "line, or 2..8 lines, ending before a line break: what an editor asks for) and the "
                         "rest at random characters. The held-out loss is always measured in the StarCoder mix "
                         "above.")
    return "\n".join(notes) + ("\n" if notes else "")


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
    args0 = json.loads((runs[0] / "args.json").read_text())
    chunk_chars = int(args0["chunk_chars"]) or default_chunk_chars(cfg["n_positions"])
    phases = "\n".join(phase_line(i + 1, r) for i, r in enumerate(runs))
    q = json.loads(quality_json.read_text())
    n_single = next(iter(q.values()))["single"]["n"]
    n_multi = next(iter(q.values()))["multi"]["n"]
    print(f"""# infill-ls default model

A small code model trained by this project (training/) so that `infill-ls` runs with no network and no
configured model: {state['params'] / 1e6:.1f} M parameters trained for {state['seconds'] / 60:.0f} minutes on two CPU
cores ({state['tokens'] / 1e6:.1f} M tokens of the Python standard library). {verdict(q)}

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
at line boundaries into pieces of at most {chunk_chars} characters (about 3/4 of a row). StarCoder FIM
recipe: half of the pieces become infill examples at two uniformly random character positions, half of
those SPM and half PSM, the rest left to right; every piece ends with `<|endoftext|>`. Rows of
{cfg['n_positions']} tokens are packed so that every FIM example lies whole in one row (each row starts with FIM
examples, left-to-right text fills the rest and may run on into the next row): an example cut across
rows would show the model a middle without its prefix and suffix. The FIM draw and the order change
every epoch (seeded).

## Training
AdamW (betas 0.9/0.95, weight decay 0.1 on matrices, gradient clipping 1.0), bf16 autocast on CPU,
2 threads. `--time-budget`: the cosine follows elapsed wall time as well as steps, so a run anneals
fully however fast the machine is. (`--init-from` and `--start-row` continue a run in a second phase.)
{phases}
{mix_note(runs)}
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

{lead_lines(q)}
{n_single} single-line and {n_multi} multi-line tasks. EM: exact match; ES: mean edit similarity
(1 - Levenshtein / max length); a lead is the mean per-task ES difference with a 95% bootstrap interval. Every model run goes through the server's prompt building and
shaping, greedy. `repeat-line` repeats the line above the cursor (no model).
Reproduce: `python bench/quality.py --model inference/default_model`.

## Limits
Trained on {state['tokens'] / 1e6:.0f} M tokens (about {state['tokens'] / epoch_tokens:.1f} passes) of one code base (the stdlib) with a 512-token window: it knows stdlib
idioms and Python syntax, little else, and it does not follow long-range logic. It is a working default
and a test fixture for behaviour that only a trained FIM model shows, not a useful assistant; point
`infill-ls` at a real checkpoint (e.g. a StarCoder-family model) for that.
{layout_note(q)}""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
