"""Loading a model the way users run it on CPU (compiled decode ops, and for multi-head families the
compiled decode attention), whatever INFILL_LS_NO_COMPILE the suite runs with, and checks that the
compiled code really served the steps (a silent fallback to eager fails the test that asks)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from inference.blocks import _CompiledOrEager
from inference.decode_attention import DecodeAttention
from inference.loader import load_model
from tests import checkpoints as ck

# One tiny random checkpoint per kind: (builder(folder, reference_folder) -> infill-ls folder).
# The transformers reference reads the same folder, except CodeGen2 (its mp_num 8 layout has no
# transformers class: the reference gets the same model in the mp_num 4 layout).
KINDS = {
    "gpt_bigcode_mqa": lambda d, r: ck.make_gpt_bigcode(d, multi_query=True),
    "gpt_bigcode_mha": lambda d, r: ck.make_gpt_bigcode(d, multi_query=False, seed=1),
    "santacoder": lambda d, r: ck.make_gpt_bigcode(d, fim_style="santacoder", seed=6),
    "codegen": lambda d, r: ck.make_codegen(d, seed=2),
    "codegen2": lambda d, r: ck.make_codegen2(d, reference_dir=r, seed=3),
    "xglm": lambda d, r: ck.make_xglm(d, seed=4),
}


class FamilyModels:
    """Checkpoints, loaded models and transformers references built once per test session and shared
    by the test files (each compiled load pays inductor's compile, or its disk cache's read)."""

    def __init__(self, root: Path):
        self.root = root
        self._folders: dict = {}
        self._models: dict = {}

    def folders(self, kind: str) -> tuple[Path, Path]:
        """(infill-ls folder, transformers reference folder)."""
        if kind not in self._folders:
            folder, ref = self.root / kind, self.root / (kind + "_ref")
            built = KINDS[kind](folder, ref)
            self._folders[kind] = (built, ref if ref.is_dir() else built)
        return self._folders[kind]

    def _get(self, key, make):
        if key not in self._models:
            self._models[key] = make()
        return self._models[key]

    def compiled(self, kind: str, dtype: str = "float32"):
        """The path users run on CPU: compiled decode ops (and attention)."""
        return self._get((kind, dtype, "compiled"), lambda: load_compiled(self.folders(kind)[0], dtype))

    def eager(self, kind: str, dtype: str = "float32"):
        """The fallback (compile failure, INFILL_LS_NO_COMPILE=1, the one-shot CLI): eager ops."""
        return self._get((kind, dtype, "eager"),
                         lambda: load_model(self.folders(kind)[0], dtype=dtype, compile_decode=False))

    def reference(self, kind: str):
        """transformers' model for the kind, fp32, eager attention."""
        return self._get((kind, "reference"), lambda: ck.load_reference(self.folders(kind)[1]))


def load_compiled(folder, dtype="float32"):
    """load_model's default CPU path (compile_decode=True) with compiling allowed."""
    saved = os.environ.pop("INFILL_LS_NO_COMPILE", None)
    try:
        lm = load_model(folder, dtype=dtype)
    finally:
        if saved is not None:
            os.environ["INFILL_LS_NO_COMPILE"] = saved
    ops = lm.model.decode_ops
    assert all(isinstance(getattr(ops, name), _CompiledOrEager) for name in ("attn_in", "head")), ops
    if one_query_row_per_kv_head(lm):
        assert isinstance(lm.model.decode_attention, DecodeAttention)
    return lm


def one_query_row_per_kv_head(lm) -> bool:
    """The families whose decode step goes to the compiled attention (CodeGen, CodeGen2, XGLM,
    multi-head GPTBigCode); MQA/GQA rows stay on SDPA."""
    return lm.model.n_heads == lm.model.kv_heads


def assert_ran_compiled(lm) -> None:
    """Every decode op this family uses has a compiled graph and none fell back to eager; the decode
    attention (where the family uses it) has exactly one build per dtype (symbolic cache length)."""
    ops = lm.model.decode_ops
    used = ["head", "attn_in", "sequential_out"] if lm.family in ("gpt_bigcode", "santacoder", "xglm") else \
        ["head", "rotary_attn_in", "parallel_out"]
    for name in used:
        compiled = getattr(ops, name).compiled
        assert compiled, f"decode op {name} did not run compiled ({compiled!r})"
    if one_query_row_per_kv_head(lm):
        built = lm.model.decode_attention.compiled
        assert built, f"the decode attention did not run compiled ({built!r})"
        assert sum(key[0] == lm.dtype for key in built) == 1, built


class CountingDecode:
    """Wraps a model's DecodeAttention: counts the steps it served (returned a result) and the ones
    it declined (None: SDPA ran instead)."""

    def __init__(self, inner: DecodeAttention):
        self.inner, self.served, self.declined = inner, 0, 0
        self.cache_lengths: list[int] = []

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float):
        out = self.inner(q, k, v, scale)
        if out is None:
            self.declined += 1
        else:
            self.served += 1
            self.cache_lengths.append(k.shape[1])
        return out
