"""Tiny random Hugging Face checkpoints for tests: built with transformers, saved in the
hub's file layout, with a real tokenizer trained by the `tokenizers` library.

    make_gpt_bigcode(dir, multi_query=True, fim_tokens=True)   -> StarCoder-like folder
    make_gpt_bigcode(dir, fim_style="santacoder")              -> SantaCoder-like (hyphenated FIM)
    make_codegen(dir)                                          -> CodeGen1-like (mp_num 4)
    make_codegen2(dir, reference_dir=None)                     -> CodeGen2-1B-like (mp_num 8, infill tokens)
    make_xglm(dir)                                             -> XGLM-like (Metaspace tokenizer)
    load_reference(dir)                                        -> the transformers model (eval, fp32)

Common options: weights="safetensors"|"bin", shards=1 (more writes an index), tokenizer_files="json"
("tokenizer.json") or "vocab_merges" (vocab.json + merges.txt + added_tokens.json), seed, dtype to store,
legacy_buffers (add old `attn.bias`/`masked_bias` keys that loaders must ignore).
Models are 2 layers, 64 wide; each build takes well under a second.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

CODE_TEXT = '''
import os
import sys
from typing import List, Optional


def fibonacci(n: int) -> int:
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    a, b = 0, 1
    for _ in range(n - 1):
        a, b = b, a + b
    return b


class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        if not self.items:
            raise IndexError("pop from empty stack")
        return self.items.pop()

    def __len__(self):
        return len(self.items)


def read_lines(path: str) -> List[str]:
    with open(path, "r", encoding="utf-8") as handle:
        return [line.rstrip("\\n") for line in handle]


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for name in args:
        if os.path.exists(name):
            print(name, len(read_lines(name)))
        else:
            print("missing:", name, file=sys.stderr)
    return 0


function add(a, b) {
    return a + b;
}

const items = [1, 2, 3].map((x) => x * 2);
for (let i = 0; i < items.length; i++) {
    console.log(items[i]);
}

int main(void) {
    int total = 0;
    for (int i = 0; i < 10; i++) {
        total += i;
    }
    printf("%d\\n", total);
    return 0;
}
'''

STARCODER_SPECIAL = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<filename>"]
SANTACODER_FIM = ["<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>"]
CODEGEN2_SPECIAL = ["<sep>", "<eom>"] + [f"<mask_{n}>" for n in range(1, 5)]
XGLM_SPECIAL = ["<s>", "<pad>", "</s>", "<unk>"]


# ----------------------------------------------------------------------------- tokenizers

def train_byte_level_bpe(special_first: list[str], vocab_size: int = 320, special_last: list[str] = (),
                         plain_added: list[str] = ()):
    """Byte-level BPE (GPT-2 style) trained on CODE_TEXT. `special_first` get ids 0..k-1; `special_last`
    and `plain_added` (non-special, e.g. CodeGen's whitespace runs) are appended after the BPE vocab."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_first),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([CODE_TEXT] * 4, trainer=trainer)
    if plain_added:
        tok.add_tokens([AddedToken(t, normalized=False) for t in plain_added])
    if special_last:
        tok.add_special_tokens(list(special_last))
    return tok


def train_metaspace_unigram(vocab_size: int = 320):
    """XGLM-like: SentencePiece-style (Metaspace) Unigram, fairseq specials at ids 0..3 (the model type
    transformers' XGLMTokenizer expects in tokenizer.json)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Replace(Regex(" {2,}"), " ")
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=XGLM_SPECIAL, unk_token="<unk>",
                                      show_progress=False)
    tok.train_from_iterator(CODE_TEXT.splitlines() * 4, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="</s> $A", pair="</s> $A </s> </s> $B",
                                                       special_tokens=[("</s>", 2)])
    return tok


def save_tokenizer(tok, folder: Path, tokenizer_files: str = "json") -> None:
    if tokenizer_files == "json":
        tok.save(str(folder / "tokenizer.json"))
        return
    if tokenizer_files != "vocab_merges":
        raise ValueError(tokenizer_files)
    tok.model.save(str(folder))  # vocab.json + merges.txt (includes trained special tokens)
    vocab = json.loads((folder / "vocab.json").read_text())
    added = {t: i for t, i in tok.get_vocab(with_added_tokens=True).items() if t not in vocab}
    if added:
        (folder / "added_tokens.json").write_text(json.dumps(added))
    specials = [str(t.content) for t in tok.get_added_tokens_decoder().values() if t.special]
    (folder / "special_tokens_map.json").write_text(json.dumps({"additional_special_tokens": specials}))


def padded(n: int, multiple: int = 64) -> int:
    return int(math.ceil(n / multiple) * multiple)


# ----------------------------------------------------------------------------- weights

def randomize(model, seed: int) -> None:
    """Larger-than-default random weights so logits are peaked (greedy choices far from ties)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and ("ln" in name or "layer_norm" in name or "norm" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 1:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p.shape[1]
                std = 0.4 if "wte" in name or "wpe" in name or "embed" in name else 2.0 / math.sqrt(fan_in)
                p.copy_(std * torch.randn(p.shape, generator=gen))


def state_dict_for_saving(model, dtype=None, legacy_buffers: bool = False) -> dict[str, torch.Tensor]:
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        sd.pop("lm_head.weight", None)
    if dtype is not None:
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    if legacy_buffers:
        n = model.config.num_hidden_layers
        prefix = "model.layers" if model.config.model_type == "xglm" else "transformer.h"
        for i in range(n):
            sd[f"{prefix}.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 8, 8, dtype=torch.bool))
            sd[f"{prefix}.{i}.attn.masked_bias"] = torch.tensor(-1e9)
    return sd


def save_weights(sd: dict[str, torch.Tensor], folder: Path, weights: str = "safetensors", shards: int = 1) -> None:
    """Write like save_pretrained: one file, or N shards plus an index json."""
    from safetensors.torch import save_file

    if weights == "safetensors":
        single, pattern, index = "model.safetensors", "model-{:05d}-of-{:05d}.safetensors", "model.safetensors.index.json"
        write = lambda part, path: save_file(part, str(path), metadata={"format": "pt"})  # noqa: E731
    elif weights == "bin":
        single, pattern, index = "pytorch_model.bin", "pytorch_model-{:05d}-of-{:05d}.bin", "pytorch_model.bin.index.json"
        write = lambda part, path: torch.save(part, str(path))  # noqa: E731
    else:
        raise ValueError(weights)
    if shards <= 1:
        write(sd, folder / single)
        return
    names = list(sd)
    per = math.ceil(len(names) / shards)
    weight_map = {}
    for s in range(shards):
        fname = pattern.format(s + 1, shards)
        part = {k: sd[k] for k in names[s * per:(s + 1) * per]}
        write(part, folder / fname)
        weight_map.update({k: fname for k in part})
    total = sum(v.numel() * v.element_size() for v in sd.values())
    (folder / index).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))


def _finish(model, tok, folder, *, weights, shards, tokenizer_files, dtype, legacy_buffers, config_extra=None,
            sd=None):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(folder))
    if config_extra:
        cfg_path = folder / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg.update(config_extra)
        cfg_path.write_text(json.dumps(cfg, indent=2))
    if sd is None:
        sd = state_dict_for_saving(model, dtype, legacy_buffers)
    save_weights(sd, folder, weights, shards)
    save_tokenizer(tok, folder, tokenizer_files)
    return folder


# ----------------------------------------------------------------------------- families

def make_gpt_bigcode(folder, multi_query: bool = True, fim_tokens: bool = True, fim_style: str = "starcoder",
                     n_layer: int = 2, n_embd: int = 64, n_head: int = 4, n_positions: int = 512,
                     activation: str = "gelu_pytorch_tanh", weights: str = "safetensors", shards: int = 1,
                     tokenizer_files: str = "json", seed: int = 0, dtype=None, legacy_buffers: bool = False,
                     pad_vocab: bool = False) -> Path:
    """StarCoder-like (specials <|endoftext|>, <fim_prefix>, <fim_middle>, <fim_suffix>, <fim_pad>,
    <filename> at ids 0-5) or, with fim_style="santacoder", SantaCoder-like (<|endoftext|> and the
    hyphenated FIM tokens appended after the BPE vocab). fim_tokens=False: only <|endoftext|> at id 0."""
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    if fim_style == "santacoder":
        tok = train_byte_level_bpe([], special_last=["<|endoftext|>"] + (SANTACODER_FIM if fim_tokens else []))
    else:
        tok = train_byte_level_bpe(STARCODER_SPECIAL if fim_tokens else ["<|endoftext|>"])
    eos = tok.token_to_id("<|endoftext|>")
    n_vocab = tok.get_vocab_size()
    config = GPTBigCodeConfig(vocab_size=padded(n_vocab) if pad_vocab else n_vocab, n_positions=n_positions,
                              n_embd=n_embd, n_layer=n_layer, n_head=n_head, multi_query=multi_query,
                              activation_function=activation, bos_token_id=eos, eos_token_id=eos,
                              resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(seed)
    model = GPTBigCodeForCausalLM(config).eval()
    randomize(model, seed)
    return _finish(model, tok, folder, weights=weights, shards=shards, tokenizer_files=tokenizer_files,
                   dtype=dtype, legacy_buffers=legacy_buffers)


def _codegen_model(vocab_size, n_layer, n_embd, n_head, rotary_dim, n_positions, seed, eos):
    from transformers import CodeGenConfig, CodeGenForCausalLM

    config = CodeGenConfig(vocab_size=vocab_size, n_positions=n_positions, n_ctx=n_positions, n_embd=n_embd,
                           n_layer=n_layer, n_head=n_head, rotary_dim=rotary_dim, bos_token_id=eos,
                           eos_token_id=eos, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = CodeGenForCausalLM(config).eval()
    randomize(model, seed)
    return model


def make_codegen(folder, n_layer: int = 2, n_embd: int = 64, n_head: int = 4, rotary_dim: int = 8,
                 n_positions: int = 512, weights: str = "safetensors", shards: int = 1,
                 tokenizer_files: str = "json", seed: int = 0, dtype=None, legacy_buffers: bool = False) -> Path:
    """CodeGen1-like: <|endoftext|> at id 0, non-special whitespace added tokens, vocab padded to a
    multiple of 64 (padding rows still produce logits, as on the hub), mp_num 4 qkv layout."""
    tok = train_byte_level_bpe(["<|endoftext|>"], plain_added=["    ", "  ", "\t\t"])
    eos = tok.token_to_id("<|endoftext|>")
    model = _codegen_model(padded(tok.get_vocab_size()), n_layer, n_embd, n_head, rotary_dim, n_positions,
                           seed, eos)
    return _finish(model, tok, folder, weights=weights, shards=shards, tokenizer_files=tokenizer_files,
                   dtype=dtype, legacy_buffers=legacy_buffers)


def permute_qkv_mp(weight: torch.Tensor, n_embd: int, mp_from: int, mp_to: int) -> torch.Tensor:
    """Re-lay a CodeGen fused qkv weight [3*n_embd, n_embd] from mp_from chunks to mp_to chunks, each
    chunk holding Q, V, K for n_head/mp heads. Same heads, same math; only the row order changes."""
    chunks = weight.reshape(mp_from, 3, n_embd // mp_from, weight.shape[1])
    q, v, k = (chunks[:, i].reshape(n_embd, -1) for i in range(3))
    # q, v, k: [n_embd, in] with heads in global order
    parts = [x.reshape(mp_to, n_embd // mp_to, -1) for x in (q, v, k)]
    return torch.stack(parts, dim=1).reshape(3 * n_embd, -1).contiguous()


def make_codegen2(folder, reference_dir=None, n_layer: int = 2, n_embd: int = 64, n_head: int = 8,
                  rotary_dim: int = 4, n_positions: int = 512, weights: str = "safetensors",
                  tokenizer_files: str = "json", seed: int = 0, dtype=None, mp_num_in_config: int | None = None,
                  legacy_buffers: bool = False) -> Path:
    """CodeGen2-1B-like: fused qkv in the mp_num 8 layout, a config with an explicit "head_dim" field
    (as the 1B/3_7B hub configs have), tokenizer with <|endoftext|>, <sep>, <eom>, <mask_1..4>.
    transformers has no class for this layout; reference_dir (optional) receives the same model in
    the mp_num 4 layout that transformers' CodeGenForCausalLM loads, with the same tokenizer."""
    tok = train_byte_level_bpe(["<|endoftext|>"], special_last=CODEGEN2_SPECIAL, plain_added=["    ", "  "])
    eos = tok.token_to_id("<|endoftext|>")
    model = _codegen_model(padded(tok.get_vocab_size()), n_layer, n_embd, n_head, rotary_dim, n_positions,
                           seed, eos)
    if reference_dir is not None:
        _finish(model, tok, reference_dir, weights="safetensors", shards=1, tokenizer_files="json",
                dtype=dtype, legacy_buffers=False)
    sd = state_dict_for_saving(model, dtype, legacy_buffers)
    for name in list(sd):
        if name.endswith("attn.qkv_proj.weight"):
            sd[name] = permute_qkv_mp(sd[name], n_embd, 4, 8)
        if legacy_buffers and name.endswith("attn.bias"):
            sd[name.replace("attn.bias", "attn.causal_mask")] = sd.pop(name)
    extra = {"head_dim": n_embd // n_head}
    if mp_num_in_config is not None:
        extra["mp_num"] = mp_num_in_config
    return _finish(model, tok, folder, weights=weights, shards=1, tokenizer_files=tokenizer_files, dtype=dtype,
                   legacy_buffers=False, config_extra=extra, sd=sd)


def make_xglm(folder, n_layer: int = 2, d_model: int = 64, heads: int = 4, ffn_dim: int = 128,
              max_positions: int = 512, weights: str = "safetensors", shards: int = 1, seed: int = 0,
              dtype=None, legacy_buffers: bool = False) -> Path:
    """XGLM-like: <s>, <pad>, </s>, <unk> at ids 0-3, Metaspace Unigram tokenizer whose post-processor prepends </s>."""
    from transformers import XGLMConfig, XGLMForCausalLM

    tok = train_metaspace_unigram()
    config = XGLMConfig(vocab_size=tok.get_vocab_size(), max_position_embeddings=max_positions, d_model=d_model,
                        ffn_dim=ffn_dim, num_layers=n_layer, attention_heads=heads, dropout=0.0,
                        attention_dropout=0.0, activation_dropout=0.0, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2)
    torch.manual_seed(seed)
    model = XGLMForCausalLM(config).eval()
    randomize(model, seed)
    return _finish(model, tok, folder, weights=weights, shards=shards, tokenizer_files="json", dtype=dtype,
                   legacy_buffers=legacy_buffers)


def load_reference(folder, dtype=torch.float32):
    """The transformers model for a folder written above (eager attention, eval mode)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, attn_implementation="eager")
    return model.eval()
