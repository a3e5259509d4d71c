"""The committed weights of the default model's next version after each finished training phase
(training/phases/): they load with the engine as a StarCoder-style FIM model with the 1024-token context
they were trained for, and the engine's greedy tokens are transformers' on them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference.engine import Engine, GenerationParams
from inference.loader import load_model

PHASES = sorted((Path(__file__).resolve().parents[1] / "training" / "phases").glob("v2-phase*"))


@pytest.fixture(scope="module", params=PHASES, ids=[p.name for p in PHASES])
def phase(request):
    return request.param


@pytest.fixture(scope="module")
def lm(phase):
    return load_model(str(phase))


def test_there_are_the_two_phases():
    assert [p.name for p in PHASES] == ["v2-phase1", "v2-phase2"]


def test_each_phase_loads_as_a_fim_model_with_its_own_tokenizer(lm):
    assert lm.family == "gpt_bigcode" and lm.max_context == 1024
    assert lm.fim is not None and lm.fim.name == "starcoder" and lm.fim.supports_spm
    names = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<filename>"]
    assert [lm.tokenizer.token_to_id(n) for n in names] == list(range(6))
    for text in ("def f(x):\n    return x\n", "export function f(a) {\n  return a;\n}\n", "local t = {}\n"):
        assert lm.decode(lm.encode(text)) == text


@pytest.mark.parametrize("kind", ["spm", "left to right"])
def test_engine_and_transformers_agree_on_each_phase(lm, phase, kind):
    transformers = pytest.importorskip("transformers")
    model = transformers.GPTBigCodeForCausalLM.from_pretrained(phase, dtype=torch.float32).eval()
    f = lm.fim
    prompt = ([f.prefix_token, f.suffix_token, *lm.encode("\n    return result\n"), f.middle_tokens[0],
               *lm.encode("def area(width, height):\n")] if kind == "spm"
              else lm.encode("import os\nimport sys\n\n\ndef main("))
    ours = Engine(lm).generate(prompt, GenerationParams(max_new_tokens=16)).token_ids
    with torch.no_grad():
        ref = model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False,
                             eos_token_id=list(lm.eos_token_ids), pad_token_id=0)[0, len(prompt):].tolist()
    assert ours == ref[: len(ours)] and (len(ours) == len(ref) or ref[len(ours)] in lm.eos_token_ids)
    assert ours or kind == "spm"  # left to right, in the middle of a line, a model writes something


def test_a_later_phase_keeps_the_tokenizer_of_the_phase_it_started_from():
    first, *later = PHASES
    for p in later:
        assert (p / "tokenizer.json").read_bytes() == (first / "tokenizer.json").read_bytes(), p.name
