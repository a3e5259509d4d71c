"""Engine speed beside transformers, same run, same random weights (not a test).

Shapes: codegen-350M (CodeGen, 20 x 1024, vocab 51200) and tiny_starcoder_py (GPTBigCode MQA,
20 x 768, vocab 49152). For each dtype: prefill of 512 tokens, and per-token greedy decode after that
prompt; the floor is the bytes of weights one decode step must read / memory read bandwidth, measured
in the same round (on a shared machine it moves from minute to minute). Rounds alternate transformers
and infill-ls; each figure is the best of --rounds. int8 (8-bit linear weights, inference.quantize)
has no transformers counterpart here: its row is timed beside transformers in float32, whose greedy
tokens are its reference. "weights MB": what the model holds (8-bit weights, embeddings, norms).

    nice -n 10 python bench/engine.py [--shapes codegen-350M tiny_starcoder] [--dtypes float32 bfloat16 int8]
                                      [--threads N] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.engine import Engine, GenerationParams  # noqa: E402
from bench.scratch import scratch_dir  # noqa: E402
from inference.loader import load_model  # noqa: E402
from inference.quantize import Int8Linear  # noqa: E402
from tests.checkpoints import save_weights, train_byte_level_bpe  # noqa: E402

SHAPES = {
    "codegen-350M": ("codegen", dict(vocab_size=51200, n_positions=2048, n_ctx=2048, n_embd=1024, n_layer=20,
                                      n_head=16, rotary_dim=32, tie_word_embeddings=False)),
    "tiny_starcoder": ("gpt_bigcode", dict(vocab_size=49152, n_positions=8192, n_embd=768, n_layer=20, n_head=12,
                                           n_inner=3072, multi_query=True, activation_function="gelu_pytorch_tanh")),
}


def build(shape: str, folder: Path) -> Path:
    from transformers import CodeGenConfig, CodeGenForCausalLM, GPTBigCodeConfig, GPTBigCodeForCausalLM

    kind, kw = SHAPES[shape]
    torch.manual_seed(0)
    if kind == "codegen":
        model = CodeGenForCausalLM(CodeGenConfig(bos_token_id=0, eos_token_id=0, **kw))
    else:
        model = GPTBigCodeForCausalLM(GPTBigCodeConfig(bos_token_id=0, eos_token_id=0, **kw))
    folder.mkdir(parents=True)
    model.config.save_pretrained(str(folder))
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    save_weights(sd, folder)
    train_byte_level_bpe(["<|endoftext|>"]).save(str(folder / "tokenizer.json"))
    return folder


def bandwidth_gbs() -> float:
    """Best read bandwidth over a 512 MiB buffer (sum touches every byte once)."""
    a = torch.ones(128 * 2**20)
    best = float("inf")
    for _ in range(8):
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    return a.numel() * 4 / best / 1e9


def decode_bytes(lm) -> int:
    """Weight bytes one decode step reads: everything but the input embedding/position tables
    (only one row is read), counting a tied head once."""
    m = lm.model
    skip = {id(getattr(m, n)) for n in ("wte", "wpe") if hasattr(m, n)} - {id(m.head)}
    return _bytes(t for t in _tensors(m) if id(t) not in skip)


def weight_bytes(lm) -> int:
    """Bytes of every weight the model holds (embeddings included), each counted once."""
    return _bytes(_tensors(lm.model))


def _bytes(weights) -> int:
    seen, total = set(), 0
    for t in weights:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.nbytes  # a tensor's, or an Int8Linear's 8-bit weight and scales
    return total


def _tensors(m):
    for v in vars(m).values():
        if isinstance(v, Int8Linear) or (isinstance(v, torch.Tensor) and v.dtype.is_floating_point and v.dim() == 2
                                          and v.shape[0] > 64):
            yield v
        elif isinstance(v, list):
            for layer in v:
                for t in vars(layer).values():
                    if isinstance(t, (torch.Tensor, Int8Linear)):
                        yield t
                    elif hasattr(t, "weight_tensors"):
                        yield from t.weight_tensors()
        elif hasattr(v, "weight_tensors"):
            yield from v.weight_tensors()


def hf_round(model, ids, new_tokens):
    """One (prefill ms, decode ms/token) measurement of transformers' generate(): a logits processor
    stamps the time at every step, so prefill = start -> first step, decode = mean step after that."""
    from transformers import GenerationConfig, LogitsProcessorList

    stamps = []

    def stamp(input_ids, scores):
        stamps.append(time.perf_counter())
        return scores

    inp = torch.tensor([ids])
    cfg = GenerationConfig(max_new_tokens=new_tokens + 1, min_new_tokens=new_tokens + 1, do_sample=False,
                           eos_token_id=None, pad_token_id=0)
    with torch.inference_mode():
        t = time.perf_counter()
        model.generate(inp, attention_mask=torch.ones_like(inp), generation_config=cfg,
                       logits_processor=LogitsProcessorList([stamp]))
    assert len(stamps) == new_tokens + 1
    return (stamps[0] - t) * 1000, (stamps[-1] - stamps[0]) * 1000 / new_tokens


def ours_round(eng, ids, new_tokens):
    """One (prefill ms, decode ms/token) measurement of infill-ls (no session: a full prefill)."""
    res = eng.generate(ids, GenerationParams(max_new_tokens=new_tokens + 1))
    assert len(res.token_ids) == new_tokens + 1
    return res.prefill_ms, res.decode_ms / new_tokens


def greedy_agreement(eng, ref, ids, n=16) -> int:
    """How many of the first n greedy tokens infill-ls and transformers share (a sanity check)."""
    ours = eng.generate(ids, GenerationParams(max_new_tokens=n)).token_ids
    with torch.inference_mode():
        theirs = ref.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                              eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
    same = 0
    for a, b in zip(ours, theirs):
        if a != b:
            break
        same += 1
    return same


REFERENCE_DTYPE = {"int8": "float32"}  # transformers' dtype beside each of ours (default: the same)


def measure(folder, dtype, ids, new_tokens, rounds):
    """Interleaved rounds (transformers, infill-ls, ...) so both see the same machine load; best of each."""
    from tests.checkpoints import load_reference

    ref = load_reference(folder, dtype=getattr(torch, REFERENCE_DTYPE.get(dtype, dtype)))
    lm = load_model(folder, dtype=dtype)
    lm.eos_token_ids = ()  # random weights: never stop early
    eng = Engine(lm)
    ours_round(eng, ids, 2)  # warm-up: lazy kernels (and the compiled bf16 GEMV)
    hf_round(ref, ids, 2)
    nbytes = decode_bytes(lm)
    hf, ours, floors = [], [], []
    for _ in range(rounds):
        hf.append(hf_round(ref, ids, new_tokens))
        bw = bandwidth_gbs()  # paired with this round: other processes change it from minute to minute
        ours.append(ours_round(eng, ids, new_tokens))
        floors.append(nbytes / (bw * 1e9) * 1000)
    agree = greedy_agreement(eng, ref, ids)
    best = lambda xs: (min(x[0] for x in xs), min(x[1] for x in xs))  # noqa: E731
    paired = min(range(rounds), key=lambda i: ours[i][1] / floors[i])  # the round closest to its floor
    return best(ours), best(hf), floors[paired], ours[paired][1] / floors[paired], agree, weight_bytes(lm) / 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16", "int8"])
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    bw = bandwidth_gbs()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, measured read bandwidth {bw:.1f} GB/s")
    rows = []
    with scratch_dir() as tmp:
        for shape in args.shapes:
            folder = build(shape, tmp / shape)
            ids = torch.randint(100, 40000, (args.prompt,), generator=torch.Generator().manual_seed(0)).tolist()
            for dtype in args.dtypes:
                rows.append((shape, dtype, *measure(folder, dtype, ids, args.new_tokens, args.rounds)))
                print_row(*rows[-1])
    print()
    print_table(rows)
    return 0


HEADER = (f"{'shape':<15}{'dtype':<10}{'prefill ms':>11}{'(hf)':>9}{'ratio':>7}"
          f"{'decode ms':>11}{'(hf)':>8}{'ratio':>7}{'floor ms':>10}{'x floor':>9}{'same greedy':>13}"
          f"{'weights MB':>12}")


def print_row(shape, dtype, ours, hf, floor, x_floor, agree, megabytes):
    print(f"{shape:<15}{dtype:<10}{ours[0]:>11.1f}{hf[0]:>9.1f}{hf[0] / ours[0]:>6.2f}x"
          f"{ours[1]:>11.1f}{hf[1]:>8.1f}{hf[1] / ours[1]:>6.2f}x{floor:>10.1f}{x_floor:>8.2f}x{agree:>10}/16"
          f"{megabytes:>12.0f}", flush=True)


def print_table(rows):
    print("ratio = transformers time / infill-ls time (above 1: infill-ls faster)\n"
          "floor = weight bytes a decode step reads / read bandwidth measured in the same round; "
          "x floor = that round's decode / its floor\n"
          "same greedy = leading greedy tokens identical to transformers (of 16); int8 rows: transformers in "
          "float32\nweights MB = what the model holds (8-bit linear weights for int8, embeddings and norms in bf16)")
    print(HEADER)
    for r in rows:
        print_row(*r)


if __name__ == "__main__":
    sys.exit(main())
