"""Completion quality: fill-in-the-middle tasks cut from files the default model never trained on.

    python bench/quality.py                       # the shipped default model, held-out stdlib files
    python bench/quality.py --model PATH_OR_HUB_ID --tasks 300 --seed 0
    python bench/quality.py --split packages --lang javascript
    python bench/quality.py --dtype int8 --modes fim-spm  # what 8-bit weights cost (beside a float32 run)

Splits (``--split``; the corpus ones need ``training.corpus`` built, which fetches and caches it):

* ``stdlib``: held-out files of the standard library (a fixed hash of the path), as before.
* ``files``: held-out files of the registry packages the model trained on (hash of package and path).
* ``packages``: every file of packages never trained on (the ones infill-ls itself installs: httpx,
  pygls, pytest, rich, vscode-languageclient, ...): code from projects the model has never seen.

``--lang`` picks one language of the split (python, javascript, typescript, lua, go, rust, c, ...).

Tasks, in the style of HumanEval-Infill (Bavarian et al. 2022) and SantaCoder's FIM evaluation:

* single-line: one non-blank line is removed (indentation included); the cursor sits at the start of
  the now empty line. Scored on the first line of the suggestion.
* multi-line: the body (2..8 lines, indented deeper) of a block whose header ends with ``:`` (Python),
  ``{`` (brace languages) or ``then``/``do``/``function(...)`` (Lua) is removed; the cursor sits on the
  empty line after the header. Scored on the whole suggestion.

Tasks are drawn with a fixed seed. Every model run goes through the server's
own stages (``lsp_server.completion``: ``build_prompt`` with the server's token budget,
``generation_job`` with its stop ids and early block-end stop, ``shape_result``) on the server's
engine (``inference.api.in_process_engine``, loaded with the server's KV budget and prefill dtype),
greedy, the server's default token limits. Modes:

* ``fim-psm``: ``<fim_prefix>prefix<fim_suffix>suffix<fim_middle>``
* ``fim-spm``: ``<fim_prefix><fim_suffix>suffix<fim_middle>prefix`` (what the server uses)
* ``l2r``: the prefix alone, same model
* ``repeat-line``: no model; the line before the cursor, repeated.

Both FIM modes get the same prompt budget (the server's budget for SPM; the server caps the suffix
of PSM prompts at 48 tokens, which it only uses for CodeGen2). Reports exact match (lines compared
with trailing whitespace stripped) and mean edit similarity (1 - Levenshtein / max length, on the
same strings).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.data import split_files, stdlib_files  # noqa: E402

MODES = ("fim-psm", "fim-spm", "l2r", "repeat-line")


@dataclass(frozen=True)
class Task:
    kind: str  # "single" | "multi"
    path: str
    prefix: str
    middle: str
    suffix: str
    lang: str = "python"


# -- tasks -------------------------------------------------------------------------------------

def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


COMMENT = {"python": "#", "lua": "--", "shell": "#"}  # the rest: "//"
LUA_HEADER = re.compile(r"(\bthen|\bdo|\belse|\bfunction\b.*\))$")


def is_comment(line: str, lang: str) -> bool:
    s = line.strip()
    return s.startswith(COMMENT.get(lang, "//")) or (lang not in COMMENT and s.startswith(("/*", "*")))


def is_block_header(line: str, lang: str) -> bool:
    s = line.strip()
    if lang == "python":
        return s.endswith(":")
    if lang == "lua":
        return bool(LUA_HEADER.search(s))
    return s.endswith("{")


def single_line_spans(text: str, lang: str = "python") -> list[int]:
    """Indexes of the lines a single-line task may remove."""
    lines = text.split("\n")
    return [i for i, line in enumerate(lines)
            if 0 < i < len(lines) - 1 and len(line.strip()) >= 4 and not is_comment(line, lang)]


def single_line_task(path: str, text: str, i: int, lang: str = "python") -> Task:
    lines = text.split("\n")
    return Task("single", path, "\n".join(lines[:i]) + "\n", lines[i], "\n" + "\n".join(lines[i + 1 :]), lang)


def single_line_tasks(path: str, text: str, lang: str = "python") -> list[Task]:
    return [single_line_task(path, text, i, lang) for i in single_line_spans(text, lang)]


def multi_line_spans(text: str, min_lines: int = 2, max_lines: int = 8, lang: str = "python") -> list[tuple[int, int]]:
    """(header line, first line after the body) of each block whose body a multi-line task may remove."""
    lines = text.split("\n")
    out = []
    for i, header in enumerate(lines[:-1]):
        if not is_block_header(header, lang) or is_comment(header, lang):
            continue
        base = _indent(header)
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
            j += 1
        while j > i + 1 and not lines[j - 1].strip():  # trailing blank lines stay in the suffix
            j -= 1
        body = lines[i + 1 : j]
        if not (min_lines <= len(body) <= max_lines) or _indent(body[0]) <= base or j >= len(lines):
            continue
        out.append((i, j))
    return out


def multi_line_task(path: str, text: str, span: tuple[int, int], lang: str = "python") -> Task:
    lines = text.split("\n")
    i, j = span
    return Task("multi", path, "\n".join(lines[: i + 1]) + "\n", "\n".join(lines[i + 1 : j]),
                "\n" + "\n".join(lines[j:]), lang)


def multi_line_tasks(path: str, text: str, min_lines: int = 2, max_lines: int = 8, lang: str = "python") -> list[Task]:
    return [multi_line_task(path, text, span, lang) for span in multi_line_spans(text, min_lines, max_lines, lang)]


SPLITS = ("stdlib", "files", "packages")


def split_sources(split: str, lang: str) -> list[tuple[str, str, str]]:
    """(path, text, language) of the files of a split (see the module doc), one language or all."""
    if split == "stdlib":
        return [(f.rel_path, f.text, "python") for f in split_files(stdlib_files())[1]]
    from training.corpus import build

    corpus = build(write_manifest=False)
    files = corpus.heldout_packages if split == "packages" else [
        f for f in corpus.heldout_files if f.package != "stdlib"]
    return [(f"{f.package}/{f.path}", f.text, f.lang) for f in files if lang in ("all", f.lang)]


def make_tasks(n_single: int, n_multi: int, seed: int, split: str = "stdlib", lang: str = "python") -> list[Task]:
    """A seeded sample of the split's tasks (only the sampled ones are cut: a large split has millions)."""
    held = split_sources(split, lang)
    rng = random.Random(seed)
    singles = [(k, i) for k, (_, text, lg) in enumerate(held) for i in single_line_spans(text, lg)]
    multis = [(k, span) for k, (_, text, lg) in enumerate(held) for span in multi_line_spans(text, lang=lg)]
    return ([single_line_task(held[k][0], held[k][1], i, held[k][2])
             for k, i in rng.sample(singles, min(n_single, len(singles)))]
            + [multi_line_task(held[k][0], held[k][1], span, held[k][2])
               for k, span in rng.sample(multis, min(n_multi, len(multis)))])


# -- scoring -----------------------------------------------------------------------------------

def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalize(text: str, kind: str) -> str:
    lines = [line.rstrip() for line in text.split("\n")]
    if kind == "single":
        lines = lines[:1]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def score(prediction: str, task: Task) -> tuple[bool, float]:
    p, t = normalize(prediction, task.kind), normalize(task.middle, task.kind)
    if not p and not t:
        return True, 1.0
    return p == t, 1.0 - levenshtein(p, t) / max(len(p), len(t))


def paired_lead(ours: list[float], theirs: list[float], seed: int = 0, rounds: int = 2000) -> dict:
    """Mean per-task edit-similarity lead of `ours` over `theirs` with a 95% bootstrap interval."""
    diffs = [a - b for a, b in zip(ours, theirs)]
    if not diffs:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan")}
    rng = random.Random(seed)
    n = len(diffs)
    boots = sorted(sum(rng.choice(diffs) for _ in range(n)) / n for _ in range(rounds))
    return {"mean": sum(diffs) / n, "low": boots[int(0.025 * rounds)], "high": boots[int(0.975 * rounds) - 1]}


# -- the server's own pipeline ------------------------------------------------------------------

class ServerPipeline:
    """The server's stages (lsp_server.completion: build_prompt, generation_job, shape_result) on the
    server's engine (inference.api's in-process EngineClient, loaded as the server loads it), greedy,
    with no session. The comparison layouts (psm, prefix) only swap the prompt."""

    def __init__(self, model: str | None, suffix_fraction: float | None = None, dtype: str = "float32") -> None:
        from inference.api import ModelSpec, in_process_engine
        from lsp_server.config import Config
        from lsp_server.prompt import Budget, PromptBuilder

        self.cfg = Config() if suffix_fraction is None else Config(suffix_fraction=suffix_fraction)
        self.engine = in_process_engine()
        spec = ModelSpec(model, "cpu", dtype, self.cfg.kv_budget_mb * 2**20, self.cfg.prefill_dtype)
        self.info = self.engine.load(spec).result()
        self.builder = PromptBuilder(self.info)
        self.builder.prepare_healing()
        self.builders = {}
        for layout in ("psm", "spm", "prefix"):
            b = PromptBuilder(self.info)
            b.layout = layout
            self.builders[layout] = b
        reserve = max(self.cfg.max_new_tokens_multi_line, self.cfg.max_new_tokens_single_line)
        # both FIM layouts get the SPM budget (the server caps PSM suffixes, for CodeGen2 only)
        self.budgets = {layout: Budget.for_model(self.info.max_context, self.cfg.context_tokens, reserve,
                                                 self.cfg.suffix_fraction, "prefix" if layout == "prefix" else "spm")
                        for layout in self.builders}

    def complete(self, prefix: str, suffix: str, layout: str, lang: str = "python") -> str:
        from lsp_server import completion
        from lsp_server.complete import text_context

        ctx = text_context(self.cfg, self.info, prefix, suffix, lang)  # the context the server cuts
        plan = completion.build_prompt(self.cfg, self.builder, ctx)
        if layout != self.builder.layout:
            plan = replace(plan, prompt=self.builders[layout].build(ctx, self.budgets[layout]))
        job = completion.generation_job(self.cfg, self.builder, ctx, plan, 0.0, plan.max_new, None)
        result = self.engine.generate(job).result()
        return completion.shape_result(self.builder, ctx, plan.prompt, result).text

    def close(self) -> None:
        self.engine.shutdown()


def repeat_previous_line(task: Task) -> str:
    lines = task.prefix.split("\n")
    return lines[-2] if len(lines) >= 2 else ""


# -- run ---------------------------------------------------------------------------------------

def run(model: str | None, tasks: list[Task], modes=MODES, progress: bool = False,
        suffix_fraction: float | None = None, dtype: str = "float32") -> dict:
    pipe = ServerPipeline(model, suffix_fraction, dtype)
    layouts = {"fim-psm": "psm", "fim-spm": "spm", "l2r": "prefix"}
    results: dict[str, dict[str, list[tuple[bool, float]]]] = {m: {"single": [], "multi": []} for m in modes}
    t0 = time.time()
    try:
        for i, task in enumerate(tasks):
            for mode in modes:
                pred = repeat_previous_line(task) if mode == "repeat-line" else pipe.complete(
                    task.prefix, task.suffix, layouts[mode], task.lang)
                results[mode][task.kind].append(score(pred, task))
            if progress and (i + 1) % 25 == 0:
                print(f"  {i + 1}/{len(tasks)} tasks, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    finally:
        pipe.close()
    table = {}
    for mode, kinds in results.items():
        table[mode] = {}
        for kind, scores in kinds.items():
            n = len(scores)
            if mode != "fim-spm" and "fim-spm" in results:  # paired with the server's layout, task by task
                table[mode].setdefault("spm_lead", {})[kind] = paired_lead(
                    [s for _, s in results["fim-spm"][kind]], [s for _, s in scores])
            table[mode][kind] = {
                "n": n,
                "exact_match": sum(e for e, _ in scores) / n if n else float("nan"),
                "edit_similarity": sum(s for _, s in scores) / n if n else float("nan"),
            }
    return table


def format_table(table: dict) -> str:
    from training.model_card import quality_table

    from training.model_card import lead_lines

    n_s, n_m = next(iter(table.values()))["single"]["n"], next(iter(table.values()))["multi"]["n"]
    return (quality_table(table)
            + f"\n\n{n_s} single-line and {n_m} multi-line tasks; EM = exact match %, ES = mean edit similarity %.\n"
            + lead_lines(table))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder or hub id (default: the shipped model)")
    ap.add_argument("--tasks", type=int, default=300, help="total tasks: 2/3 single-line, 1/3 multi-line")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=SPLITS, default="stdlib", help="which never-trained-on files (module doc)")
    ap.add_argument("--lang", default="python", help="one language of the split, or all")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: the server's default)")
    ap.add_argument("--suffix-fraction", type=float, default=None,
                    help="share of the FIM prompt budget given to the suffix (default: the server's)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "int8"),
                    help="the engine's weights (the server's `dtype` option)")
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON here")
    args = ap.parse_args(argv)
    if args.threads:  # the engine sets its threads from this, as the server's does
        os.environ["INFILL_LS_THREADS"] = str(args.threads)
    n_single = (2 * args.tasks) // 3
    tasks = make_tasks(n_single, args.tasks - n_single, args.seed, args.split, args.lang)
    if not tasks:
        ap.error(f"no {args.lang} tasks in the {args.split} split")
    modes = tuple(m for m in args.modes.split(",") if m)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}")
    t0 = time.time()
    table = run(args.model, tasks, modes, progress=True, suffix_fraction=args.suffix_fraction, dtype=args.dtype)
    print(format_table(table))
    print(f"model: {args.model or 'default (inference/default_model)'}; split {args.split}, {args.lang}; seed {args.seed}; "
          f"suffix fraction {args.suffix_fraction if args.suffix_fraction is not None else 'server default'}; "
          f"dtype {args.dtype}; "
          f"{time.time() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
