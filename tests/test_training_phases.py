"""The committed weights of the default model's next version after each finished training phase
(training/phases/): they load with the engine as a StarCoder-style FIM model with the 1024-token context
they were trained for, and the engine's greedy tokens are transformers' on them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference.engine import Engine, GenerationParams
from inference.loader import load_model

PHASE1 = Path(__file__).resolve().parents[1] / "training" / "phases" / "v2-phase1"


@pytest.fixture(scope="module")
def lm():
    return load_model(str(PHASE1))


def test_phase_one_loads_as_a_fim_model_with_its_own_tokenizer(lm):
    assert lm.family == "gpt_bigcode" and lm.max_context == 1024
    assert lm.fim is not None and lm.fim.name == "starcoder" and lm.fim.supports_spm
    names = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<filename>"]
    assert [lm.tokenizer.token_to_id(n) for n in names] == list(range(6))
    for text in ("def f(x):\n    return x\n", "export function f(a) {\n  return a;\n}\n", "local t = {}\n"):
        assert lm.decode(lm.encode(text)) == text


def test_engine_and_transformers_agree_on_phase_one(lm):
    transformers = pytest.importorskip("transformers")
    model = transformers.GPTBigCodeForCausalLM.from_pretrained(PHASE1, dtype=torch.float32).eval()
    f = lm.fim
    prompt = [f.prefix_token, f.suffix_token, *lm.encode("\n    return result\n"), f.middle_tokens[0],
              *lm.encode("def area(width, height):\n")]
    ours = Engine(lm).generate(prompt, GenerationParams(max_new_tokens=16)).token_ids
    with torch.no_grad():
        ref = model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False,
                             eos_token_id=list(lm.eos_token_ids), pad_token_id=0)[0, len(prompt):].tolist()
    assert ours and ours == ref[: len(ours)] and (len(ours) == len(ref) or ref[len(ours)] in lm.eos_token_ids)
