"""Write inference/default_model/MODEL_CARD.md from finished runs.

    python -m training.model_card EVAL_JSON QUALITY_DIR RUN [RUN ...] > inference/default_model/MODEL_CARD.md

EVAL_JSON: the output of ``python -m training.evaluate <last run>/final``; QUALITY_DIR: one
``bench/quality.py --json`` file per split and language, named ``SPLIT-LANG.json`` (``packages-python.json``
gives the verdict); RUN: the phases' run folders, in order. The card names ``CORPUS.tsv`` beside it,
which this does not write: ``cp training/corpus_manifest.tsv inference/default_model/CORPUS.tsv``
(tests/test_default_model.py checks the two are the same).
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
           + (f" --corpus registry --seq-len {a['seq_len']} --epoch-chars {a['epoch_chars']}"
              f" --heldout-chars {a['heldout_chars']}" if a.get("corpus") == "registry" else "")
           + (f" --init-from {a['init_from']} --start-row {a['start_row']}" if a.get("init_from", "None") != "None"
              else f" --n-embd {a['n_embd']} --n-layer {a['n_layer']} --n-head {a['n_head']}")
           + f" --batch {a['batch']} --lr {a['lr']} --min-lr {a['min_lr']} --warmup {a['warmup']}"
           + f" --steps 100000 --time-budget {float(a['time_budget']):.0f}"
           + (f" --fim-rate {a['fim_rate']} --fim-line-rate {a['fim_line_rate']} --seed {a['seed']}"
              if float(a.get("fim_line_rate", 0)) else ""))
    return (f"- phase {i}: {state['step']} steps of {a['batch']} x {a.get('seq_len', 512)} tokens = {state['tokens'] / 1e6:.2f} M tokens, "
            f"peak LR {a['lr']} ({a['warmup']} warmup steps) cosine to {a['min_lr']}, "
            f"{state['seconds'] / 60:.0f} min; held-out loss after it {state['heldout_loss_fp32_all_rows']:.3f}\n"
            f"  `{cmd}`")


def mix_note(runs: list[Path]) -> str:
    """The FIM mix of phases that changed it (--fim-rate, --fim-line-rate; see training.data)."""
    phases: dict[tuple[float, float], list[int]] = {}
    for i, run in enumerate(runs):
        a = json.loads((run / "args.json").read_text())
        line_rate, fim_rate = float(a.get("fim_line_rate", 0)), float(a["fim_rate"])
        if line_rate or fim_rate != 0.5:
            phases.setdefault((fim_rate, line_rate), []).append(i + 1)
    return "".join(
        f"Phase{'s' if len(numbers) > 1 else ''} {' and '.join(map(str, numbers))} train{'' if len(numbers) > 1 else 's'} "
        f"on a different mix: {fim_rate:.0%} of the pieces are infill examples, "
        f"{line_rate:.0%} of those cut line-aligned (the middle is a whole line, the rest of a "
        "line, or 2..8 lines, ending before a line break: what an editor asks for) and the "
        "rest at random characters. The held-out loss is always measured in the StarCoder mix above.\n"
        for (fim_rate, line_rate), numbers in phases.items())


SPLIT_TITLES = {
    "stdlib": "held-out files of the standard library",
    "files": "held-out files of the registry packages trained on",
    "packages": "packages never trained on (the ones infill-ls installs)",
}


def quality_sections(folder: Path) -> str:
    """One table per bench/quality.py JSON in `folder`, named SPLIT-LANG.json (stdlib first)."""
    order = {name: i for i, name in enumerate(SPLIT_TITLES)}
    out = []
    for path in sorted(folder.glob("*.json"), key=lambda p: (order.get(p.stem.split("-")[0], 9), p.stem)):
        split, lang = path.stem.split("-", 1)
        q = json.loads(path.read_text())
        n_s, n_m = next(iter(q.values()))["single"]["n"], next(iter(q.values()))["multi"]["n"]
        out.append(f"### {SPLIT_TITLES[split]}, {lang} ({n_s} single-line, {n_m} multi-line tasks)\n"
                   f"`python bench/quality.py --split {split} --lang {lang}`\n\n"
                   f"{quality_table(q)}\n\n{lead_lines(q)}")
    return "\n".join(out)


def corpus_section(args0: dict) -> str:
    from training.corpus import MANIFEST, NEAR_DUP_THRESHOLD, build, read_pins

    corpus = build(write_manifest=False)
    pins = read_pins()
    rows = [line.split("\t") for line in MANIFEST.read_text().splitlines()[1:]]
    licenses = sorted({lic for r in rows for lic in r[3].split("+")})
    n = {reg: sum(p.registry == reg and p.role == "train" for p in pins) for reg in ("pypi", "npm", "debian")}
    return (f"The standard library's `.py` files and {sum(n.values())} permissively licensed packages from the package "
            f"registries ({n['pypi']} PyPI, {n['npm']} npm, {n['debian']} Debian: Lua, Go and Rust), pinned in "
            "`training/corpus_packages.txt` and fetched, filtered and deduplicated by `training/corpus.py`. "
            f"Licenses kept: {', '.join(licenses)} (checked from each package's own metadata; the license of "
            "every package is in `CORPUS.tsv` beside this card, a copy of `training/corpus_manifest.tsv`). The packages that infill-ls installs (its "
            "runtime, test, bench and editor dependencies) are never trained on: they are the held-out-packages "
            "split. A file of a trained package is held out when SHA-1(package/path) is 0 mod 20 (the "
            "stdlib keeps its own rule, SHA-1 of the path). Vendored, minified and generated files are "
            f"dropped, and exact and near duplicates (MinHash, Jaccard >= {NEAR_DUP_THRESHOLD}).\n\n"
            "```\n" + corpus.summary() + "\n```\n(M chars by language.) Training reads at most "
            f"{int(args0['package_chars']) / 1e6:g} M characters of any one package (a fixed part of its files), and each epoch a seeded sample of the rest.")


def main(argv: list[str] | None = None) -> int:
    argv = [Path(a) for a in (argv or sys.argv[1:])]
    eval_json, quality_dir, runs = argv[0], argv[1], argv[2:]
    states = [json.loads((r / "final" / "training_state.json").read_text()) for r in runs]
    state = {"params": states[-1]["params"], "step": sum(s["step"] for s in states),
             "tokens": sum(s["tokens"] for s in states), "seconds": sum(s["seconds"] for s in states)}
    cfg = json.loads((runs[-1] / "final" / "config.json").read_text())
    ev = json.loads(eval_json.read_text())
    args0 = json.loads((runs[0] / "args.json").read_text())
    chunk_chars = int(args0["chunk_chars"]) or default_chunk_chars(cfg["n_positions"])
    phases = "\n".join(phase_line(i + 1, r) for i, r in enumerate(runs))
    q = json.loads((quality_dir / "packages-python.json").read_text())
    unseen = (f"- held-out packages in the same mix ({ev['heldout_packages_tokens']} tokens): "
              f"{ev['heldout_packages_loss_fim_mix']}\n" if "heldout_packages_loss_fim_mix" in ev else "")
    print(f"""# infill-ls default model (v2)

A small code model trained by this project (training/) so that `infill-ls` runs with no network and no
configured model: {state['params'] / 1e6:.1f} M parameters trained for {state['seconds'] / 60:.0f} minutes on two CPU
cores ({state['tokens'] / 1e6:.1f} M tokens of Python, JavaScript, TypeScript, C, Go, Rust and Lua from
permissively licensed packages and the Python standard library). Measured on Python packages it never
saw (the ones infill-ls installs): {verdict(q)[0].lower() + verdict(q)[1:]}

## Model
- architecture: GPTBigCode (`GPTBigCodeForCausalLM`), multi-query attention, learned positions,
  tied input/output embeddings, GELU (tanh), pre-LayerNorm
- size: {state['params'] / 1e6:.2f} M parameters, n_embd {cfg['n_embd']}, {cfg['n_layer']} layers,
  {cfg['n_head']} heads, context {cfg['n_positions']} tokens, weights in float32 (safetensors)
- tokenizer: byte-level BPE, {cfg['vocab_size']} tokens, trained with the `tokenizers` library on a
  sample of the training files; StarCoder special tokens at ids 0..5: `<|endoftext|>`, `<fim_prefix>`,
  `<fim_middle>`, `<fim_suffix>`, `<fim_pad>`, `<filename>` (no BOS/EOS are added)
- FIM prompts: PSM `<fim_prefix>prefix<fim_suffix>suffix<fim_middle>` and SPM
  `<fim_prefix><fim_suffix>suffix<fim_middle>prefix`; the middle ends with `<|endoftext|>`

Why this size: measured on this machine (2 threads, bf16 autocast, 8 x 1024 tokens a step): 5.1 M
parameters (256 wide, 4 layers) trains at 4,844 tokens/s, 9.4 M (320, 6 layers) at 3,842 and 12.7 M
(384, 6 layers) at 2,609. The phases this corpus got ({' + '.join(f"{s['seconds'] / 60:.0f}" for s in states)} minutes) bought
{state['tokens'] / 1e6:.0f} M tokens at the smallest size, toward the compute-optimal amount for its
{(state['params'] - cfg['vocab_size'] * cfg['n_embd'] - cfg['n_positions'] * cfg['n_embd']) / 1e6:.1f} M non-embedding parameters (some 20 tokens a parameter), where the larger sizes would stay further
under-trained; it also keeps decode fast and the weights in float32 within the package budget.

## Data
{corpus_section(args0)}

Long files are cut at line boundaries into pieces of at most {chunk_chars} characters (about 3/4 of a row).
StarCoder FIM recipe: a share of the pieces become infill examples, half of those SPM and half PSM, the
rest left to right; every piece ends with `<|endoftext|>`. Rows of {cfg['n_positions']} tokens are packed so
that every FIM example lies whole in one row (each row starts with FIM examples, left-to-right text fills
the rest and may run on into the next row). The FIM draw and the order change every epoch (seeded).

## Training
AdamW (betas 0.9/0.95, weight decay 0.1 on matrices, gradient clipping 1.0), bf16 autocast on CPU,
2 threads, the machine doing nothing else. `--time-budget`: the cosine follows elapsed wall time as well
as steps, so a run anneals fully however fast the machine is. (`--init-from` continues a run in a
later phase.)
{phases}
{mix_note(runs)}
Total: {state['step']} steps, {state['tokens'] / 1e6:.2f} M tokens, {state['seconds'] / 60:.0f} minutes.
The loss curves (`loss.tsv`, `eval.tsv`) stay in the run folders under training/runs/ (not shipped).

## Held-out loss (nats per token, fp32)
- held-out files in the StarCoder mix (FIM and left to right, {ev['heldout_tokens']} tokens): {ev['heldout_loss_fim_mix']}
{unseen}- held-out sample loss: `{ev['sample_loss']}`
- held-out sample sha256: `{ev['sample_sha256']}`

The sample is the first 256 tokens of each of the first 8 held-out stdlib files (sorted by path) that long,
plain text; tests/test_default_model.py recomputes it (and skips when the interpreter's stdlib differs).

## Completion quality (bench/quality.py, seed 0)
EM: exact match; ES: mean edit similarity (1 - Levenshtein / max length); a lead is the mean per-task ES
difference with a 95% bootstrap interval. Every model run goes through the server's prompt building and
shaping, greedy. `repeat-line` repeats the line above the cursor (no model).

{quality_sections(quality_dir)}
## Limits
A 5 M-parameter model trained for a few hours on two CPU cores: it knows common idioms and syntax of the
languages it read and completes short, local patterns; it does not follow long-range logic, and outside
Python its data is thin (Lua, Go and Rust especially). A working default and a test fixture for behaviour
that only a trained FIM model shows, not a strong assistant: point `infill-ls` at a real checkpoint (e.g. a
StarCoder-family model) for that.
{layout_note(q)}""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
