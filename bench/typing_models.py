"""Models for bench/typing_bench.py: the shipped default model, or random checkpoints shaped like real ones.

    codegen-350M     CodeGen (left to right), 20 layers x 1024, 16 heads, rotary 32, context 2048,
                     vocabulary 51200
    tiny_starcoder   GPTBigCode with multi-query attention (FIM), 20 layers x 768, 12 heads,
                     context 8192, vocabulary 49152 (shaped like bigcode/tiny_starcoder_py)

The random checkpoints carry a real code tokenizer (the default model's: BPE trained on the
standard library, StarCoder's special tokens) so prompts have realistic lengths; the embedding
rows past that tokenizer are padding (as on the hub, where vocabularies are padded) and never win.
Weights use transformers' own initialisation; they are written once per shape into a cache folder.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

SHAPES = {
    "codegen-350M": ("codegen", dict(vocab_size=51200, n_positions=2048, n_ctx=2048, n_embd=1024, n_layer=20,
                                      n_head=16, rotary_dim=32, tie_word_embeddings=False)),
    "tiny_starcoder": ("gpt_bigcode", dict(vocab_size=49152, n_positions=8192, n_embd=768, n_layer=20, n_head=12,
                                           n_inner=3072, multi_query=True, activation_function="gelu_pytorch_tanh")),
}


def code_tokenizer_file() -> Path | None:
    """The default model's tokenizer (shipped, or from its training run)."""
    from inference.loader import DEFAULT_MODEL_DIR

    for p in (DEFAULT_MODEL_DIR / "tokenizer.json", ROOT / "training" / "runs" / "default" / "tokenizer.json"):
        if p.is_file():
            return p
    return None


def random_shaped(shape: str, cache_dir: Path | None = None) -> Path:
    """Folder of a random checkpoint shaped like `shape` (built on first use)."""
    from transformers import CodeGenConfig, CodeGenForCausalLM, GPTBigCodeConfig, GPTBigCodeForCausalLM
    from tokenizers import Tokenizer

    sys.path.insert(0, str(ROOT))
    from tests.checkpoints import STARCODER_SPECIAL, save_weights, train_byte_level_bpe

    kind, kw = SHAPES[shape]
    cache_dir = cache_dir or Path(tempfile.gettempdir()) / "infill-bench-models"
    folder = cache_dir / shape
    if (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    tok_file = code_tokenizer_file()
    tok = Tokenizer.from_file(str(tok_file)) if tok_file else train_byte_level_bpe(STARCODER_SPECIAL)
    eos = tok.token_to_id("<|endoftext|>")
    real = tok.get_vocab_size()
    torch.manual_seed(0)
    with torch.device("cpu"):
        if kind == "codegen":
            model = CodeGenForCausalLM(CodeGenConfig(bos_token_id=eos, eos_token_id=eos, **kw))
        else:
            model = GPTBigCodeForCausalLM(GPTBigCodeConfig(bos_token_id=eos, eos_token_id=eos, **kw))
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with torch.no_grad():
        if "lm_head.bias" in sd:  # CodeGen: padding ids get a very low logit
            sd["lm_head.weight"][real:] = 0
            sd["lm_head.bias"][real:] = -1e4
        if model.config.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
            sd["transformer.wte.weight"][real:] = 0
    tmp = cache_dir / (shape + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(tmp))
    save_weights(sd, tmp)
    tok.save(str(tmp / "tokenizer.json"))
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def resolve(name: str) -> tuple[str, str | None]:
    """(label, model option for the server): "default" -> the shipped model (None), a shape name ->
    a random checkpoint folder, anything else -> a folder path or hub id as given."""
    if name == "default":
        return "default", None
    if name in SHAPES:
        return name + " (random)", str(random_shaped(name))
    return name, name
