"""An fp32 model's long prefill under bf16 autocast (the worker's prefillDtype "auto" on a CPU with bf16
instructions): the cached keys/values and the decode stay fp32, and the result is the fp32 one up to bf16
rounding; short prefills (a keystroke) and prefillDtype "model" never use it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from inference import engine as engine_module
from inference.acceleration import Acceleration, choose
from inference.engine import Engine, GenerationParams
from inference.loader import load_model
from tests import checkpoints as ck

BF16_PREFILL = Acceleration(prefill_autocast=torch.bfloat16)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return load_model(ck.make_gpt_bigcode(tmp_path_factory.mktemp("autocast") / "m", seed=9), dtype="float32")


def first_logits(eng: Engine, ids: list[int]) -> torch.Tensor:
    kv = eng.caches.fresh()
    kv.reserve(len(ids))
    with torch.inference_mode():
        return eng._prefill(kv, ids, None, None)[0]


def _autocast_calls(monkeypatch, lm):
    """Record, for every forward, how many tokens it ran and whether autocast was on."""
    seen = []
    forward = lm.model.forward

    def recording(ids, kv):
        seen.append((len(ids), torch.is_autocast_enabled("cpu")))
        return forward(ids, kv)

    monkeypatch.setattr(lm.model, "forward", recording)
    return seen


def test_long_prefill_runs_under_autocast_and_the_cache_and_decode_stay_fp32(lm, monkeypatch):
    ids = lm.encode(ck.CODE_TEXT[:600])
    assert len(ids) >= engine_module.LONG_PREFILL
    ref_logits = first_logits(Engine(lm), ids)
    eng = Engine(lm, acceleration=BF16_PREFILL)
    seen = _autocast_calls(monkeypatch, lm)
    res = eng.generate(ids, GenerationParams(max_new_tokens=6), session="doc")
    n, rows = len(ids), engine_module.AUTOCAST_ROWS
    prefill = [(n - n % rows, True)] + ([(n % rows, False)] if n % rows else [])
    assert seen[:len(prefill)] == prefill and all(not on for _, on in seen[len(prefill):])
    assert len(seen) == len(prefill) + 5
    kv, _ = eng.caches.match("doc", ids)
    assert all(k.dtype == torch.float32 for k in kv.keys + kv.values)
    monkeypatch.undo()
    # the first token's logits: fp32 logits up to bf16 rounding of the prefill
    logits = first_logits(eng, ids)
    assert logits.dtype == torch.float32
    assert not torch.equal(logits, ref_logits)  # it really ran in bf16
    # Measured: the largest difference is 0.85% of the largest |logit| for this model (0.6-2.2% for
    # seeds 9-14 of the same shape); bf16 rounding of a 64-wide model, far below a wrong cache or mask.
    assert torch.allclose(logits, ref_logits, atol=0.025 * ref_logits.abs().max().item(), rtol=0), \
        (logits - ref_logits).abs().max() / ref_logits.abs().max()
    assert res.token_ids[0] == int(ref_logits.argmax())


def test_autocast_forwards_run_a_multiple_of_autocast_rows(lm, monkeypatch):
    """oneDNN keeps a compiled bf16 kernel per matrix shape: under autocast every forward has a row
    count that is a multiple of AUTOCAST_ROWS (chunks of PREFILL_CHUNK, then the rest rounded down),
    the last few tokens run in fp32, and every prompt token is run exactly once."""
    monkeypatch.setattr(engine_module, "PREFILL_CHUNK", 128)
    ids = lm.encode(ck.CODE_TEXT * 4)
    rows = engine_module.AUTOCAST_ROWS
    for n in (rows, rows + 1, 2 * rows - 1, 128, 129, 300, 385):
        assert len(ids) >= n
        eng = Engine(lm, acceleration=BF16_PREFILL)
        seen = _autocast_calls(monkeypatch, lm)
        eng.generate(ids[:n], GenerationParams(max_new_tokens=1))
        monkeypatch.setattr(lm.model, "forward", type(lm.model).forward.__get__(lm.model))
        assert sum(t for t, _ in seen) == n, (n, seen)
        assert all(t % rows == 0 and t <= 128 for t, on in seen if on), (n, seen)
        assert all(t < rows for t, on in seen if not on), (n, seen)
        assert [on for _, on in seen] == sorted((on for _, on in seen), reverse=True)  # bf16 first, then fp32


def test_a_keystroke_prefill_is_not_autocast(lm, monkeypatch):
    ids = lm.encode(ck.CODE_TEXT[:600])
    eng = Engine(lm, acceleration=BF16_PREFILL)
    eng.generate(ids, GenerationParams(max_new_tokens=1), session="doc")
    seen = _autocast_calls(monkeypatch, lm)
    eng.generate(ids + lm.encode(" x"), GenerationParams(max_new_tokens=1), session="doc")
    assert seen and seen[0][0] < engine_module.LONG_PREFILL and not any(on for _, on in seen)


def test_choice_of_prefill_dtype(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert choose(cpu, torch.float32, env={}).prefill_autocast is torch.bfloat16
    assert choose(cpu, torch.float32, env={}, prefill_dtype="model").prefill_autocast is None
    assert choose(cpu, torch.bfloat16, env={}).prefill_autocast is None
    assert choose(cuda, torch.float32, env={}).prefill_autocast is None
    with pytest.raises(ValueError, match="unknown prefill dtype 'fp8'"):
        choose(cpu, torch.float32, env={}, prefill_dtype="fp8")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert choose(cpu, torch.float32, env={}).prefill_autocast is None  # a CPU without bf16 instructions: fp32
