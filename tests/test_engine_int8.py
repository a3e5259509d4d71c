"""8-bit weights (`dtype: "int8"`, inference.quantize): every family loads with 8-bit linear weights,
its logits and greedy tokens stay close to float32's, both int8 kernels are right row by row, the
compiled decode path runs the int8 kernel inside its graphs, the weights take about half of
bfloat16's memory, and the server takes the option and reports it."""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path

import pytest
import torch

from inference import quantize as qz
from inference.api import GenerationJob, ModelError, ModelSpec
from inference.engine import Engine, GenerationParams
from inference.kv_cache import SessionKV
from inference.loader import load_model, pick_device_dtype
from inference.worker import InferenceWorker
from lsp_server.config import parse_config
from tests.compiled import KINDS, assert_ran_compiled, load_compiled
from tests.server_harness import Doc, running_server, stats, wait_model

PROMPTS = ["def fibonacci(n):\n    if n < 2:\n", "class Stack:\n    def __init__(self):\n", "import os\nimport sys\n",
           "for (let i = 0; i < items.length; i++) {\n", "int main(void) {\n    int total = 0;\n",
           "    return a + b;\n}\n\nconst items"]
# Measured on these random checkpoints (larger-than-default weights, so errors show): the largest
# relative logits error over the prompts is 0.030-0.052 with int8 (0.012-0.023 with bfloat16, 0.021-
# 0.039 with the weights alone rounded to 8 bits), the first greedy token matches float32's on 5 or 6
# of the 6 prompts. The floors leave room for a different CPU's rounding.
MAX_REL_LOGITS_ERROR = 0.08
MIN_SAME_FIRST_TOKEN = 4  # of len(PROMPTS)
# The compiled and eager int8 builds differ by bf16 roundings (the compiled ops keep fp32 between
# the products, the eager ones round each op to bf16): 0.02-0.035 measured.
SAME_MODEL_TWO_BUILDS = 0.06


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def greedy(lm, ids, n=8) -> list[int]:
    lm.eos_token_ids = ()  # random weights: never stop early
    return Engine(lm).generate(ids, GenerationParams(max_new_tokens=n)).token_ids


def decode_step_logits(lm, ids) -> torch.Tensor:
    """fp32 logits of the last id run as a one-token step (the decode ops) after the others."""
    kv = SessionKV(lm.kv_spec())
    kv.reserve(len(ids))
    with torch.inference_mode():
        lm.model.forward(torch.tensor(ids[:-1]), kv)
        kv.advance(ids[:-1])
        hidden = lm.model.forward(torch.tensor(ids[-1:]), kv)
        return lm.model.logits(hidden)[0]


def linears(model) -> list:
    return [getattr(layer, name) for layer in model.layers for name in qz.LAYER_LINEARS] + [model.head]


@pytest.fixture(scope="module")
def int8_models(family_models):
    """kind -> (int8 model, float32 model), eager (what the suite's default runs)."""
    out = {}
    for kind in KINDS:
        folder = family_models.folders(kind)[0]
        out[kind] = (load_model(folder, dtype="int8", compile_decode=False),
                     load_model(folder, dtype="float32", compile_decode=False))
    return out


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_family_loads_with_8bit_linear_weights_and_bfloat16_elsewhere(int8_models, kind):
    lm, _ = int8_models[kind]
    assert lm.weights == "int8" and lm.info().dtype == "int8" and lm.dtype == torch.bfloat16
    assert lm.kv_spec().dtype == torch.bfloat16
    for w in linears(lm.model):
        assert isinstance(w, qz.Int8Linear) and w.kernel == qz.best_kernel(), w
    first = lm.model.layers[0]
    assert lm.model.wte.dtype == torch.bfloat16 and first.ln1_w.dtype == torch.bfloat16
    assert first.fc1_b is None or first.fc1_b.dtype == torch.bfloat16


@pytest.mark.parametrize("kind", list(KINDS))
def test_int8_logits_and_greedy_tokens_stay_close_to_float32(int8_models, kind):
    lm, ref = int8_models[kind]
    errors, same_first = [], 0
    for prompt in PROMPTS:
        ids = ref.encode(prompt)
        errors.append(rel_error(lm.full_logits(ids), ref.full_logits(ids)))
        same_first += greedy(lm, ids, 1) == greedy(ref, ids, 1)
    assert max(errors) < MAX_REL_LOGITS_ERROR, errors
    assert same_first >= MIN_SAME_FIRST_TOKEN, f"{same_first}/{len(PROMPTS)} first tokens as float32's"


@pytest.mark.parametrize("kernel", qz.KERNELS)
def test_each_int8_kernel_gives_every_row_its_own_scale(kernel):
    """Rows 1e-3, 1 and 1e3 in size in one call (a prefill): each row is as exact as alone. FBGEMM
    quantizes a whole input with one scale; without the per-row rescaling the small row would round
    to zero."""
    if kernel == "fbgemm" and qz.best_kernel() != "fbgemm":
        pytest.skip("FBGEMM is not usable in this torch build")
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(96, 80, generator=gen) * 0.1
    b = torch.randn(96, generator=gen) * 0.01
    x = torch.randn(3, 80, generator=gen) * torch.tensor([[1e-3], [1.0], [1e3]])
    w8 = qz.quantize_linear(w, kernel)
    for dtype in (torch.float32, torch.bfloat16):
        xd = x.to(dtype)
        ref = xd.float() @ w.T
        y = qz.linear(xd, w8, None)
        assert y.dtype == dtype and y.shape == (3, 96)
        for row in range(3):
            assert rel_error(y[row], ref[row]) < 0.03, (kernel, dtype, row)
            assert rel_error(qz.linear(xd[row:row + 1], w8, None), ref[row:row + 1]) < 0.03, (kernel, dtype, row)
    with_bias = qz.linear(x[1:2], w8, b.bfloat16())
    assert rel_error(with_bias, x[1:2] @ w.T + b) < 0.03


def test_quantized_rows_are_symmetric_absmax_over_127():
    w = torch.tensor([[0.5, -1.0, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0], [3.0, 1.5, -0.75, 0.01]])
    q, scale = qz.quantize_rows(w)
    assert q.dtype == torch.int8 and scale.dtype == torch.float32
    assert torch.allclose(scale[[0, 2]], torch.tensor([1.0, 3.0]) / 127)
    assert q[0].tolist() == [64, -127, 32, 0] and q[1].tolist() == [0, 0, 0, 0] and q[2, 0] == 127
    with pytest.raises(ValueError, match="2-D float weight"):
        qz.quantize_linear(torch.zeros(4, dtype=torch.int8))


@pytest.mark.parametrize("kind", ["gpt_bigcode_mqa", "codegen"])
def test_compiled_decode_calls_the_int8_kernel_from_its_graphs(family_models, int8_models, kind):
    """The CPU default (compiled decode ops): each graph takes the Int8Linears' tensors as inputs and
    calls the int8 kernel; a decode step's logits match the eager int8 build's."""
    lm = family_models.compiled(kind, "int8")
    eager, ref = int8_models[kind]
    ids = ref.encode(PROMPTS[0])
    compiled_logits = decode_step_logits(lm, ids)
    assert_ran_compiled(lm)
    keys = [key for op in vars(lm.model.decode_ops).values() for key in op.compiled]
    assert any(isinstance(part, tuple) and part and part[0][:2] == ("int8", qz.best_kernel())
               for key in keys for part in key), keys
    assert rel_error(compiled_logits, decode_step_logits(ref, ids)) < MAX_REL_LOGITS_ERROR
    assert rel_error(compiled_logits, decode_step_logits(eager, ids)) < SAME_MODEL_TWO_BUILDS


def test_the_int_mm_kernel_runs_a_whole_model_eager_and_compiled(family_models, int8_models, monkeypatch):
    """The fallback where FBGEMM is missing: torch._int_mm on plain int8 weights."""
    monkeypatch.setattr(qz, "best_kernel", lambda: "int_mm")
    folder = family_models.folders("gpt_bigcode_mqa")[0]
    eager = load_model(folder, dtype="int8", compile_decode=False)
    assert {w.kernel for w in linears(eager.model)} == {"int_mm"}
    _, ref = int8_models["gpt_bigcode_mqa"]
    ids = ref.encode(PROMPTS[1])
    assert rel_error(eager.full_logits(ids), ref.full_logits(ids)) < MAX_REL_LOGITS_ERROR
    compiled = load_compiled(folder, "int8")
    step = decode_step_logits(compiled, ids)
    assert_ran_compiled(compiled)
    assert rel_error(step, decode_step_logits(ref, ids)) < MAX_REL_LOGITS_ERROR
    assert rel_error(step, decode_step_logits(eager, ids)) < SAME_MODEL_TWO_BUILDS


def test_the_server_worker_builds_the_compiled_int8_decode_in_the_background(starcoder, monkeypatch):
    """The server's path: ready eager, the compiled int8 ops built on their own thread (through the
    ops' `prepare`) and swapped in, then a generation runs them."""
    monkeypatch.delenv("INFILL_LS_NO_COMPILE", raising=False)
    monkeypatch.setenv("INFILL_LS_COMPILE_MIN_MB", "0")  # compile a tiny model too
    w = InferenceWorker()
    try:
        assert w.load(ModelSpec(str(starcoder), "cpu", "int8", 2**22)).result(120).dtype == "int8"
        assert w.compiled_swap.result(300) is True and w.decode == "compiled"
        job = GenerationJob([5, 17, 33, 2, 91, 40, 7, 12], GenerationParams(max_new_tokens=6))
        assert w.generate(job).result(120).token_ids
        assert_ran_compiled(w.lm)
    finally:
        w.shutdown()


def _resident_bytes() -> int:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back, so RSS counts live memory
    except (OSError, AttributeError):
        pass
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_int8_weights_hold_about_half_the_memory_of_bfloat16(int8_models, family_models):
    """Resident memory of three 4096 x 2048 weights after quantizing (the bf16 source freed), and the
    model's own count of its linear weights' bytes: both under 0.6x of bfloat16."""
    qz.best_kernel()  # its probe's allocations come before the measurement
    w = (torch.randn(4096, 2048) * 0.02).bfloat16()
    before = _resident_bytes()
    held = [qz.quantize_linear(w) for _ in range(3)]
    grown = _resident_bytes() - before
    assert grown < 0.6 * 3 * w.nbytes, f"{grown / 2**20:.1f} MiB for {3 * w.nbytes / 2**20:.0f} MiB of bf16"
    del held
    lm, _ = int8_models["gpt_bigcode_mqa"]
    bf16 = load_model(family_models.folders("gpt_bigcode_mqa")[0], dtype="bfloat16", compile_decode=False)
    assert qz.linear_weight_bytes(lm.model) < 0.6 * qz.linear_weight_bytes(bf16.model)


def test_default_model_held_out_loss_moves_under_0_02_nats_with_int8():
    """The shipped model on the model card's held-out sample (first 256 tokens of the first 8
    held-out stdlib files): the int8 loss is within 0.02 nats of float32's."""
    from training.data import split_files, stdlib_files

    fp32, int8 = load_model(None, compile_decode=False), load_model(None, dtype="int8", compile_decode=False)
    _, held = split_files(stdlib_files())
    rows = [ids[:256] for ids in (fp32.encode_plain(f.text) for f in held) if len(ids) >= 256][:8]
    if len(rows) < 8:
        pytest.skip("this interpreter's stdlib has too few long held-out files")

    def loss(lm) -> float:
        return sum(torch.nn.functional.cross_entropy(lm.full_logits(r)[:-1], torch.tensor(r[1:])).item()
                   for r in rows) / len(rows)

    assert abs(loss(int8) - loss(fp32)) < 0.02


def test_int8_is_a_cpu_dtype():
    assert pick_device_dtype("cpu", "int8") == (torch.device("cpu"), torch.int8)
    with pytest.raises(ModelError, match="int8 runs on CPU only"):
        pick_device_dtype("cuda", "int8")
    with pytest.raises(ModelError, match="float16 or int8"):
        pick_device_dtype("cpu", "int4")


async def test_the_server_takes_dtype_int8_and_reports_it_in_stats(starcoder):
    config, warnings, _ = parse_config({"dtype": "int8"})
    assert config.dtype == "int8" and warnings == []
    options = {"model": str(starcoder), "dtype": "int8", "maxNewTokensSingleLine": 4, "maxNewTokensMultiLine": 4}
    async with running_server(options) as client:
        s = await wait_model(client, timeout=60)
        assert s["model"]["status"] == "ready" and s["model"]["dtype"] == "int8", s["model"]
        doc = Doc(client, "file:///w/int8.py", "def add(a, b):\n    return ")
        await doc.inline(len(doc.text))
        assert (await stats(client))["modelRuns"] == 1
