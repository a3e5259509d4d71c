"""The naive way to serve a completion, for bench/typing_bench.py to compare with: for every request,
transformers `generate` (greedy, KV cache within the request only) on the full prompt, nothing kept
between keystrokes.

The prompt is the one the server builds for the same document text and cursor: this module calls
the server's own prompt stage (lsp_server.completion.build_prompt) in-process (same tokenizer, same budget, same layout), so both sides
run exactly the same token ids; bench/typing_bench.py checks the lengths against the server's log.
"""

from __future__ import annotations

import time

import torch

from inference.loader import DEFAULT_MODEL_DIR, load_model
from lsp_server.completion import build_prompt
from lsp_server.config import parse_config
from lsp_server.context import context_at
from lsp_server.prompt import PromptBuilder


class NaiveBaseline:
    def __init__(self, source: str | None, dtype: str, options: dict) -> None:
        self.config, _, _ = parse_config(options)
        lm = load_model(source, device="cpu", dtype=dtype)
        lm.model = None  # only the tokenizer and the format are needed here; transformers runs the weights
        self.lm = lm
        self.builder = PromptBuilder(lm)
        self.stops = list(lm.info().stop_ids)
        self.source = str(source or DEFAULT_MODEL_DIR)
        self.torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        self.model = None

    def prompt(self, text: str, offset: int, uri: str) -> tuple[list[int], int]:
        """(prompt ids, max_new_tokens) exactly as lsp_server.completion.suggest builds them."""
        plan = build_prompt(self.config, self.builder, context_at(text, offset, "python", uri))
        return plan.prompt.ids, plan.max_new

    def load(self) -> float:
        from transformers import AutoModelForCausalLM

        t0 = time.perf_counter()
        self.model = AutoModelForCausalLM.from_pretrained(self.source, dtype=self.torch_dtype).eval()
        return time.perf_counter() - t0

    @torch.inference_mode()
    def generate(self, ids: list[int], max_new: int) -> tuple[float, list[int]]:
        """(milliseconds, generated ids) of one greedy `generate` on the whole prompt."""
        x = torch.tensor([ids], dtype=torch.long)
        t0 = time.perf_counter()
        out = self.model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new, do_sample=False,
                                  eos_token_id=self.stops, pad_token_id=self.stops[0], use_cache=True)
        ms = (time.perf_counter() - t0) * 1000
        gen = out[0, len(ids):].tolist()
        while gen and gen[-1] in self.stops:
            gen.pop()
        return ms, gen
