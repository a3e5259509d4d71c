"""Writing a GPTBigCode checkpoint (the shipped default model, StarCoder-style MQA) as a GGUF file
for llama.cpp's llama-server (its "starcoder" architecture), with the `gguf` package
(`pip install 'infill-ls[engines]'`).

llama.cpp's own converter does not know the default tokenizer's pre-tokenizer (its table of
pre-tokenizer hashes), so the tokenizer is written here from the checkpoint's tokenizer itself:
the byte-level BPE vocabulary and merges, special tokens as control tokens, and the EOS / FIM ids.
Only a plain GPT-2 byte-level pre-tokenizer is accepted (llama.cpp's "gpt-2"); anything else is
refused with a message, since a wrong pre-tokenizer would split text differently on the server.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import ModelError
from .fim import fim_format
from .loader import read_config, resolve_source
from .tokenizer_files import load_tokenizer

OUTTYPES = ("f32", "bf16", "q8_0", "q4_0")

# Hugging Face GPTBigCode names -> llama.cpp's starcoder tensor names (src/llama-arch.cpp), per block
# and for the whole model. The weight matrices keep their (out, in) layout: GGUF lists dimensions
# innermost first, which is llama.cpp's {in, out}.
BLOCK_NAMES = {
    "ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output",
    "ln_2": "ffn_norm", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down",
}
MODEL_NAMES = {"wte": "token_embd", "wpe": "position_embd", "ln_f": "output_norm"}


def gguf_name(hf_name: str) -> str | None:
    """The GGUF name of a checkpoint tensor; None for a tensor the starcoder arch does not take."""
    name = hf_name.removeprefix("transformer.")
    if name == "lm_head.weight":
        return "output.weight"
    stem, _, kind = name.rpartition(".")
    if kind not in ("weight", "bias"):
        return None
    if stem in MODEL_NAMES:
        return f"{MODEL_NAMES[stem]}.{kind}"
    parts = stem.split(".", 2)
    if len(parts) == 3 and parts[0] == "h" and parts[1].isdigit() and parts[2] in BLOCK_NAMES:
        return f"blk.{parts[1]}.{BLOCK_NAMES[parts[2]]}.{kind}"
    return None


def _check_pre_tokenizer(spec: dict, where: Path) -> None:
    pre = spec.get("pre_tokenizer") or {}
    plain = (pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
             and not pre.get("add_prefix_space", False) and spec.get("normalizer") is None)
    if not plain:
        raise ModelError(f"{where}: the tokenizer's pre-tokenizer ({json.dumps(pre)[:120]}) is not a plain GPT-2 "
                         "byte-level one; only that is written to GGUF (llama.cpp's 'gpt-2')")


def _write_tokenizer(writer, tok, vocab_size: int, where: Path) -> None:
    import gguf

    spec = json.loads(tok.to_str())
    if (spec.get("model") or {}).get("type") != "BPE":
        raise ModelError(f"{where}: only a byte-level BPE tokenizer can be written to GGUF")
    _check_pre_tokenizer(spec, where)
    by_id = {i: t for t, i in tok.get_vocab(with_added_tokens=True).items()}
    added = {a["id"]: a for a in spec.get("added_tokens", [])}
    n = max(vocab_size, max(by_id) + 1)
    tokens, types = [], []
    for i in range(n):
        if i not in by_id:  # the embedding has rows past the tokenizer's vocabulary
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            a = added.get(i)
            types.append(gguf.TokenType.NORMAL if a is None else
                         gguf.TokenType.CONTROL if a.get("special") else gguf.TokenType.USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    eot = tok.token_to_id("<|endoftext|>")
    if eot is not None:
        writer.add_bos_token_id(eot)
        writer.add_eos_token_id(eot)
    writer.add_add_bos_token(False)  # infill-ls's prompts for this family start with no BOS
    fim = fim_format("gpt_bigcode", tok)
    if fim is not None:
        keys = gguf.Keys.Tokenizer
        writer.add_uint32(keys.FIM_PRE_ID, fim.prefix_token)
        writer.add_uint32(keys.FIM_SUF_ID, fim.suffix_token)
        writer.add_uint32(keys.FIM_MID_ID, fim.middle_tokens[0])
        pad = tok.token_to_id("<fim_pad>" if fim.name == "starcoder" else "<fim-pad>")
        if pad is not None:
            writer.add_uint32(keys.FIM_PAD_ID, pad)


def _encode(array: np.ndarray, outtype: str):
    """(data, raw dtype) for a tensor: vectors (norms, biases) stay f32, as llama.cpp's converter does.

    Matrices are quantized by the gguf package's own quantizers (`gguf.quants`): q8_0 and q4_0 work
    in blocks of 32 along a row (one fp16 scale per block), so every row length must be a multiple
    of 32; all of GPTBigCode's are (widths and head sizes are multiples of 64).
    q4_0 is applied to every matrix, the embedding and position tables included (llama-quantize
    would keep the output/embedding matrix at a higher precision; this writer is uniform)."""
    import gguf

    if outtype == "f32" or array.ndim < 2:
        return array.astype(np.float32), None
    qtype = {"bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0,
             "q4_0": gguf.GGMLQuantizationType.Q4_0}[outtype]
    return gguf.quants.quantize(array.astype(np.float32), qtype), qtype


def export_gguf(source, out: str | Path, outtype: str = "f32") -> Path:
    """Write the checkpoint `source` (a folder or hub id; None: the shipped model) to `out` as GGUF."""
    try:
        import gguf
    except ImportError:
        raise ModelError("writing GGUF needs the gguf package: pip install 'infill-ls[engines]'") from None
    from .weights import IGNORED, read_checkpoint

    if outtype not in OUTTYPES:
        raise ModelError(f"unknown GGUF outtype {outtype!r} (use {', '.join(OUTTYPES)})")
    folder = resolve_source(source)
    cfg = read_config(folder)
    if cfg.get("model_type") != "gpt_bigcode":
        raise ModelError(f"{folder / 'config.json'}: GGUF export writes gpt_bigcode models only "
                         f"(model_type {cfg.get('model_type')!r})")
    if not cfg.get("multi_query", True):
        raise ModelError(f"{folder / 'config.json'}: GGUF export writes multi-query (MQA) gpt_bigcode models only")
    try:
        n_embd, n_head, n_layer = int(cfg["n_embd"]), int(cfg["n_head"]), int(cfg["n_layer"])
        n_ctx, eps = int(cfg["n_positions"]), float(cfg["layer_norm_epsilon"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{folder / 'config.json'}: missing or bad {e} for GGUF export") from None
    n_ff = int(cfg.get("n_inner") or 4 * n_embd)
    tok = load_tokenizer(folder)
    tensors, origin = read_checkpoint(folder)

    out = Path(out)
    writer = gguf.GGUFWriter(str(out), "starcoder")
    writer.add_name(folder.name)
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_feed_forward_length(n_ff)
    writer.add_block_count(n_layer)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(1)
    writer.add_layer_norm_eps(eps)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                          "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[outtype])
    _write_tokenizer(writer, tok, int(cfg.get("vocab_size") or 0), folder)
    written = set()
    for hf_name, t in tensors.items():
        if IGNORED.match(hf_name):
            continue
        name = gguf_name(hf_name)
        if name is None:
            raise ModelError(f"{origin.get(hf_name, folder)}: tensor {hf_name!r} has no place in llama.cpp's "
                             "starcoder architecture")
        if name == "output.weight" and cfg.get("tie_word_embeddings", True):
            continue  # tied to token_embd, which llama.cpp reuses when output is absent
        data, raw = _encode(t.float().numpy(), outtype)
        writer.add_tensor(name, data, raw_dtype=raw)
        written.add(name)
    missing = {"token_embd.weight", "position_embd.weight", "output_norm.weight"} - written
    if missing:
        raise ModelError(f"{folder}: the checkpoint lacks {', '.join(sorted(missing))}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
