"""`infill-ls complete`: one completion from the command line, through the server's own pipeline.

The text before (and after) the cursor becomes a document as the editor would send it; the server's
stages (lsp_server.completion: the context window, `build_prompt` with its layout and budget cut,
`generation_job` with the stop check, `shape_result`) run on the engine behind inference.api, so the
command prints what the editor would show. `--raw`: the same prompt, the model's own output up to a
stop token or the token limit, unshaped. Special tokens never reach the printed text. A prompt cut to
the budget is said on stderr. User errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from inference.api import GenerationResult, ModelError, ModelSpec, in_process_engine
from lsp_server import completion, start_up_gc
from lsp_server.config import Config
from lsp_server.documents import DocumentStore, window_chars
from lsp_server.prompt import PromptBuilder

URI = "file:///stdin"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump, exit status 2 from main
        raise UsageError(f"{self.prog}: {message}")


def parser() -> argparse.ArgumentParser:
    defaults = Config()
    p = _Parser(prog="infill-ls complete",
                description="Complete at a cursor with a model, as the editor would show it.")
    p.add_argument("--model", help="checkpoint folder or hub id (default: the shipped default model)")
    p.add_argument("--prefix", help="text before the cursor")
    p.add_argument("--suffix", help="text after the cursor (fill-in-the-middle where the model has it)")
    p.add_argument("--prefix-file", help="read the prefix from this file")
    p.add_argument("--suffix-file", help="read the suffix from this file")
    p.add_argument("--language", default="python", help="the document's language id (default: python)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help=f"token limit (default: the server's, {defaults.max_new_tokens_single_line} for a "
                        f"line, {defaults.max_new_tokens_multi_line} for a block)")
    p.add_argument("--context-tokens", type=int, default=0, help="prompt + generation budget (0: the model's)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=defaults.top_p)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16 or int8 (8-bit weights, CPU)")
    p.add_argument("--stop", nargs="+", action="extend", default=[], metavar="STR", help="stop strings")
    p.add_argument("--raw", action="store_true", help="the model's output as it comes, not shaped")
    p.add_argument("--json", action="store_true", help="print one JSON object with ids and timings")
    return p


def _read_text(path: str, flag: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{flag} {path}: cannot read ({e.strerror or e})") from None


def _args(argv: list[str]) -> tuple[argparse.Namespace, str, str]:
    args = parser().parse_args(argv)
    if (args.prefix is None) == (args.prefix_file is None):
        raise UsageError("give exactly one of --prefix or --prefix-file")
    if args.suffix is not None and args.suffix_file is not None:
        raise UsageError("give at most one of --suffix or --suffix-file")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be at least 1 (got {args.max_new_tokens})")
    if args.temperature < 0:
        raise UsageError(f"--temperature must be >= 0 (got {args.temperature})")
    if not 0 < args.top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1] (got {args.top_p})")
    prefix = args.prefix if args.prefix is not None else _read_text(args.prefix_file, "--prefix-file")
    suffix = args.suffix if args.suffix is not None else (
        _read_text(args.suffix_file, "--suffix-file") if args.suffix_file else "")
    return args, prefix, suffix


def _config(args) -> Config:
    cfg = Config(model=args.model, device=args.device, dtype=args.dtype, temperature=args.temperature,
                 top_p=args.top_p, context_tokens=max(0, args.context_tokens))
    if args.max_new_tokens is not None:
        cfg = replace(cfg, max_new_tokens_single_line=args.max_new_tokens,
                      max_new_tokens_multi_line=args.max_new_tokens)
    return cfg


def run(argv: list[str]) -> int:
    args, prefix, suffix = _args(argv)
    cfg = _config(args)
    engine = in_process_engine()
    try:
        info = engine.load(ModelSpec(cfg.model, cfg.device, cfg.dtype, cfg.kv_budget_mb * 2**20,
                                     cfg.prefill_dtype, one_shot=True)).result()
        builder = PromptBuilder(info)
        builder.prepare_healing()
        ctx = text_context(cfg, info, prefix, suffix, args.language)
        plan = completion.build_prompt(cfg, builder, ctx)
        _say_what_was_cut(info, plan, len(prefix), len(suffix))
        job = completion.generation_job(cfg, builder, ctx, plan, cfg.temperature, plan.max_new, None)
        job.params = replace(job.params, seed=args.seed, stop_strings=tuple(args.stop))
        if args.raw:
            job.stop_check = None
        result: GenerationResult = engine.generate(job).result()
    finally:
        engine.shutdown()
    raw = _cut_at_stops(builder.shown_text(plan.prompt, result.token_ids), args.stop)  # specials are stops
    text = raw if args.raw else _cut_at_stops(completion.shape_result(builder, ctx, plan.prompt, result).text,
                                              args.stop)
    if args.json:
        print(json.dumps({
            "text": text, "raw_text": raw, "token_ids": result.token_ids,
            "stop_reason": "block_end" if job.stopped_early else result.stop_reason,
            "prompt_tokens": result.prompt_tokens, "reused_tokens": result.reused_tokens,
            "prefill_tokens": result.prefill_tokens, "prefill_ms": round(result.prefill_ms, 3),
            "decode_ms": round(result.decode_ms, 3), "family": info.family, "layout": plan.prompt.layout,
            "fim": plan.prompt.layout != "prefix", "prompt_ids": plan.prompt.ids,
        }))
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def text_context(cfg: Config, info, prefix: str, suffix: str, language: str, uri: str = URI):
    """The cursor context the server would cut from a document `prefix + suffix` with the cursor
    between them (its window, its long-line rules): for callers with text instead of an editor."""
    doc = DocumentStore().open(uri, prefix + suffix, language, 1)
    return doc.context_at(len(prefix), language, uri, None, window_chars(cfg.context_tokens, info))


def _cut_at_stops(text: str, stops: list[str]) -> str:
    """`text` up to the first of the stop strings (the engine stops at the token that holds one)."""
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return text[:min(cuts)] if cuts else text


def _say_what_was_cut(info, plan: completion.Plan, prefix_chars: int, suffix_chars: int) -> None:
    prompt = plan.prompt
    if suffix_chars and prompt.layout == "prefix":
        print(f"infill-ls: {info.family} has no fill-in-the-middle format; completing left to right from "
              "the prefix (suffix ignored)", file=sys.stderr)
    cut_before = prompt.prefix_chars < prefix_chars
    cut_after = prompt.layout != "prefix" and prompt.suffix_chars < suffix_chars
    if cut_before or cut_after:
        parts = []
        if cut_before:
            parts.append(f"the last {prompt.prefix_chars} of {prefix_chars} characters before the cursor")
        if cut_after:
            parts.append(f"the first {prompt.suffix_chars} of {suffix_chars} after it")
        print(f"infill-ls: the prompt holds {' and '.join(parts)} ({len(prompt.ids)} tokens; the model's "
              f"context is {info.max_context}, {plan.max_new} kept for the suggestion)", file=sys.stderr)


def main(argv: list[str]) -> int:
    start_up_gc.collect_young_only()  # one completion, then exit (lsp_server.start_up_gc)
    # the worker logs a failed job for the server's log; here the error itself is the one line said
    logging.getLogger("inference").addHandler(logging.NullHandler())
    try:
        return run(argv)
    except (ModelError, UsageError, ValueError) as e:
        print(f"infill-ls: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
