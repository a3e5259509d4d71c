"""`load_model`: a checkpoint folder or hub id -> a LanguageModel (tokenizer, FIM format, weights).

The family is detected from config.json's model_type and the tokenizer's special tokens
(gpt_bigcode with hyphenated FIM tokens -> santacoder; codegen with <mask_1>/<eom> -> codegen2);
`family=` overrides it. Only safetensors or torch.load(weights_only=True) are read; no remote code.
dtype "int8" (CPU): the model is built in bfloat16 and its linear weights are then quantized to 8
bits in place (inference.quantize); `lm.dtype` is bfloat16 (activations, KV cache), `lm.weights` "int8".
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from .acceleration import Acceleration, choose
from .api import ModelError, ModelInfo
from .blocks import EAGER_LAYOUT_MAX_BYTES, column_major_linears
from .checkpoint_config import bos_ids, detect_family, eos_token_ids, read_config
from .fim import FimFormat, fim_format
from .kv_cache import KVSpec, SessionKV
from .models import MODEL_CLASSES
from .quantize import linear_weight_bytes, quantize_model
from .tokenizer_files import load_tokenizer
from .weights import WeightMap, read_checkpoint

__all__ = ["DEFAULT_MODEL_DIR", "FAMILIES", "LanguageModel", "ModelError", "load_model"]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
FAMILIES = ("codegen", "codegen2", "gpt_bigcode", "santacoder", "xglm")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "int8": torch.int8}
INT8_ACTIVATIONS = torch.bfloat16  # what an int8 model computes and caches in (its embeddings, norms, biases too)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class LanguageModel:
    """A loaded model: tokenizer, family facts and the forward pass (token ids only)."""

    def __init__(self, family: str, config: dict, tokenizer, model, device: torch.device, dtype: torch.dtype,
                 path: Path, acceleration: Acceleration | None = None, weights: str | None = None):
        self.family = family
        self.weights = weights  # "int8": 8-bit linear weights (inference.quantize); None: all in `dtype`
        self.acceleration = acceleration or Acceleration()  # what the model was built with (inference.acceleration)
        self.config = config
        self.tokenizer = tokenizer
        tokenizer.encode_special_tokens = True  # "<|endoftext|>" typed in a file is text, not a control token
        self.model = model
        self.device = device
        self.dtype = dtype
        self.path = path
        self.max_context: int = model.max_positions
        self.fim: FimFormat | None = fim_format(family, tokenizer)
        self.eos_token_ids: tuple[int, ...] = eos_token_ids(family, tokenizer, config)
        self.bos_ids: list[int] = bos_ids(family, tokenizer)

    def info(self) -> ModelInfo:
        """The model as the editor side sees it (inference.api): data only, no weights."""
        return ModelInfo(self.family, self.tokenizer.to_str(), self.fim, tuple(self.bos_ids), self.eos_token_ids,
                         self.max_context, str(self.device), self.dtype_name)

    @property
    def dtype_name(self) -> str:
        """The dtype as the user names it: "int8" for 8-bit weights, else the torch dtype's name."""
        return self.weights or str(self.dtype).removeprefix("torch.")

    def kv_spec(self) -> KVSpec:
        m = self.model
        return KVSpec(m.n_layers, m.kv_heads, m.head_dim, self.max_context, self.dtype, self.device,
                      self.acceleration.flash, getattr(m, "decode_attention", None))

    @torch.inference_mode()
    def full_logits(self, ids: list[int]) -> torch.Tensor:
        """fp32 logits (T, V) for every position of `ids`, with no cache reuse (for tests, scoring)."""
        kv = SessionKV(self.kv_spec())
        kv.reserve(len(ids))
        hidden = self.model.forward(torch.tensor(ids, device=self.device), kv)
        return self.model.logits(hidden)

    def encode(self, text: str) -> list[int]:
        """Plain text -> ids. Special-token strings in the text are encoded as text, not as specials."""
        return self.bos_ids + self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_plain(self, text: str) -> list[int]:
        """Like encode, without the family's leading BOS (for pieces of a prompt)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def __repr__(self) -> str:
        return f"LanguageModel({self.family}, {self.path}, {self.device}, {self.dtype_name})"


def resolve_source(source) -> Path:
    """A folder for `source` (None = the default model); hub ids go through huggingface_hub."""
    if source is None:
        if not (DEFAULT_MODEL_DIR / "config.json").is_file():
            raise ModelError(f"no default model installed at {DEFAULT_MODEL_DIR}; pass a model folder or hub id "
                             "(e.g. --model bigcode/tiny_starcoder_py)")
        return DEFAULT_MODEL_DIR
    path = Path(os.path.expanduser(os.fspath(source)))
    if path.is_dir():
        return path
    text = os.fspath(source)
    if path.exists():
        raise ModelError(f"{text}: not a folder (point at the checkpoint folder holding config.json)")
    if HUB_ID.match(text) and not text.startswith("."):
        return _from_hub(text)
    raise ModelError(f"{text}: no such folder")


def _from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelError(f"{repo_id}: not a local folder, and huggingface_hub is not installed to fetch it; "
                         f"`pip install huggingface_hub` or download the repo's files into a folder "
                         "and pass that folder") from None
    patterns = ["config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin",
                "pytorch_model.bin.index.json", "tokenizer.json", "vocab.json", "merges.txt",
                "added_tokens.json", "special_tokens_map.json", "tokenizer_config.json"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:
        raise ModelError(f"{repo_id}: not a local folder and not in the Hugging Face cache, and downloading "
                         f"failed ({type(e).__name__}); when online run `hf download {repo_id}` "
                         "or pass a folder holding its files") from None
    return folder


def pick_device_dtype(device, dtype) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) from names; torch.int8 stands for 8-bit weights ("int8", CPU only)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelError(f"unknown device {device!r} (use cpu or cuda)") from None
    if dev.type not in ("cpu", "cuda"):
        raise ModelError(f"unsupported device {device!r} (use cpu or cuda)")
    if dtype in ("int8", torch.int8) and dev.type != "cpu":
        raise ModelError(f"dtype int8 runs on CPU only (torch's int8 CPU kernels); on {dev.type} use bfloat16 or float16")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for, but CUDA is not available here (use --device cpu)")
    if dtype in (None, "auto"):
        if dev.type == "cpu":
            return dev, torch.float32
        return dev, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dev, dtype
    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r} (use auto, float32, bfloat16, float16 or int8)")
    return dev, DTYPES[dtype]


def load_model(source=None, device="cpu", dtype="auto", family: str | None = None,
               compile_decode: bool = True, prefill_dtype: str = "model",
               acceleration: Acceleration | None = None, compile_in_background: bool = False) -> LanguageModel:
    """Load a checkpoint folder (or hub id) for the engine. What runs is `acceleration`, by default
    inference.acceleration.choose(device, dtype, compile_decode=, prefill_dtype=) (kept as
    `lm.acceleration`). `compile_decode`: on CPU, one-token steps use compiled ops, which pay a few
    seconds of compiling on the first decode; a one-shot caller (`infill-ls complete`) turns it off.
    `prefill_dtype`: "model" (long prefills in the model's dtype) or "auto" (the server's choice:
    bf16 autocast where it pays). `compile_in_background`: the compiled ops wait to be built and
    swapped in by the caller (the server's worker), eager until then. dtype "int8": built in
    bfloat16, then the linear weights quantized (see the module docstring)."""
    dev, dt = pick_device_dtype(device, dtype)
    weights_8bit = dt == torch.int8
    dt = INT8_ACTIVATIONS if weights_8bit else dt
    try:
        acc = acceleration or choose(dev, dt, compile_decode=compile_decode, prefill_dtype=prefill_dtype,
                                     compile_in_background=compile_in_background)
        acc.check(dev, dt)
    except ValueError as e:
        raise ModelError(str(e)) from None
    folder = resolve_source(source)
    cfg = read_config(folder)
    tokenizer = load_tokenizer(folder)
    fam = family or cfg.get("infill_ls_family") or detect_family(cfg, tokenizer, folder)
    if fam not in FAMILIES:
        raise ModelError(f"unknown model family {fam!r} (use one of {', '.join(FAMILIES)})")
    model_class = MODEL_CLASSES[fam]
    config = model_class.Config.from_hf(cfg)  # before any weight is read: a bad config fails naming its key
    tensors, origin = read_checkpoint(folder, lazy=True)  # each tensor read as the model takes it
    weights = WeightMap(tensors, origin, dt, dev)
    model = model_class(config, weights, acc)
    weights.finish()
    if weights_8bit:
        quantize_model(model)
    elif not acc.compiled_decode_ops and dev.type == "cpu" and dt == torch.float32 \
            and linear_weight_bytes(model) <= EAGER_LAYOUT_MAX_BYTES:
        column_major_linears(model)  # eager decode GEMVs (inference.blocks); a bigger model: not worth the copy
    return LanguageModel(fam, cfg, tokenizer, model, dev, dt, folder, acc, weights="int8" if weights_8bit else None)
