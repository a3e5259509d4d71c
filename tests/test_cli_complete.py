"""`infill-ls complete` / `convert`: output matches the engine (and transformers); user errors exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from inference import loader
from inference.cli import main
from inference.engine import Engine, GenerationParams
from inference.loader import load_model
from tests import checkpoints as ck


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {"starcoder": ck.make_gpt_bigcode(root / "sc", seed=21), "codegen": ck.make_codegen(root / "cg", seed=22,
            weights="bin"), "codegen2": ck.make_codegen2(root / "cg2", seed=23), "xglm": ck.make_xglm(root / "x")}


def run_json(capsys, *args) -> dict:
    return run_json_and_stderr(capsys, *args)[0]


def run_json_and_stderr(capsys, *args) -> tuple[dict, str]:
    assert main(["complete", *args, "--json"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_left_to_right_json_matches_transformers_generate(models, capsys):
    out = run_json(capsys, "--model", str(models["starcoder"]), "--prefix", "def add(a, b):", "--max-new-tokens", "20")
    lm = load_model(models["starcoder"])
    ids = lm.encode("def add(a, b):")
    ref = ck.load_reference(models["starcoder"])
    theirs = ref.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False,
                          eos_token_id=list(lm.eos_token_ids), pad_token_id=0)[0, len(ids):].tolist()
    # the same tokens as transformers, all of them, ending for the same reason (transformers keeps the
    # end token in its output; the engine stops before it)
    ended_on_eos = bool(theirs) and theirs[-1] in lm.eos_token_ids
    assert out["stop_reason"] == ("eos" if ended_on_eos else "max_tokens")
    assert out["token_ids"] == (theirs[:-1] if ended_on_eos else theirs)
    assert ended_on_eos or len(out["token_ids"]) == 20
    assert out["text"] == lm.decode(out["token_ids"])
    assert out["prompt_tokens"] == len(ids) and out["reused_tokens"] == 0
    assert out["prefill_ms"] > 0 and out["decode_ms"] >= 0 and out["fim"] is False


def test_plain_output_is_only_the_text(models, capsys):
    out = run_json(capsys, "--model", str(models["codegen"]), "--prefix", "for i in", "--max-new-tokens", "8")
    assert main(["complete", "--model", str(models["codegen"]), "--prefix", "for i in", "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out == out["text"]


@pytest.mark.parametrize("name", ["starcoder", "codegen2"])
def test_suffix_uses_the_family_fim_format(models, capsys, tmp_path, name):
    (tmp_path / "pre.py").write_text("def area(r):\n    ")
    out = run_json(capsys, "--model", str(models[name]), "--prefix-file", str(tmp_path / "pre.py"),
                   "--suffix", "\n    return a\n", "--max-new-tokens", "12")
    lm = load_model(models[name])
    prompt = lm.fim.psm(lm.encode_plain("def area(r):\n    "), lm.encode_plain("\n    return a\n"))
    res = Engine(lm).generate(prompt, GenerationParams(max_new_tokens=12, stop_token_ids=lm.fim.stop_token_ids))
    assert out["fim"] is True and out["token_ids"] == res.token_ids and out["prompt_tokens"] == len(prompt)


def test_suffix_without_fim_format_says_so_and_goes_left_to_right(models, capsys):
    out, err = run_json_and_stderr(capsys, "--model", str(models["xglm"]), "--prefix", "x = 1", "--suffix", "y",
                                   "--max-new-tokens", "4")
    assert "xglm has no fill-in-the-middle format" in err and "suffix ignored" in err
    lm = load_model(models["xglm"])
    assert out["prompt_tokens"] == len(lm.encode("x = 1")) and out["fim"] is False


def test_stop_strings_and_sampling_flags(models, capsys):
    base = run_json(capsys, "--model", str(models["starcoder"]), "--prefix", "class A:", "--max-new-tokens", "16")
    needle = base["text"][4:6]
    out = run_json(capsys, "--model", str(models["starcoder"]), "--prefix", "class A:", "--max-new-tokens", "16",
                   "--stop", needle, "zzzz")
    assert out["stop_reason"] == "stop_string" and out["text"] == base["text"][: base["text"].find(needle)]
    a = run_json(capsys, "--model", str(models["starcoder"]), "--prefix", "class A:", "--temperature", "0.8",
                 "--top-p", "0.9", "--seed", "3")
    b = run_json(capsys, "--model", str(models["starcoder"]), "--prefix", "class A:", "--temperature", "0.8",
                 "--top-p", "0.9", "--seed", "3")
    assert a["token_ids"] == b["token_ids"]


def test_convert_writes_safetensors_that_load_the_same(models, tmp_path, capsys):
    dst = tmp_path / "converted"
    assert main(["convert", str(models["codegen"]), str(dst)]) == 0
    assert (dst / "model.safetensors").is_file() and not (dst / "pytorch_model.bin").exists()
    a, b = load_model(models["codegen"]), load_model(dst)
    ids = a.encode("def f():")
    assert torch.equal(a.full_logits(ids), b.full_logits(ids))
    assert main(["convert", str(models["codegen"]), str(dst)]) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err


def error(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_user_errors_exit_2_with_one_line(models, capsys, tmp_path, monkeypatch):
    m = str(models["starcoder"])
    assert str(tmp_path / "nope") in error(capsys, "complete", "--model", str(tmp_path / "nope"), "--prefix", "x")
    assert "missing.py" in error(capsys, "complete", "--model", m, "--prefix-file", str(tmp_path / "missing.py"))
    assert "'float64'" in error(capsys, "complete", "--model", m, "--prefix", "x", "--dtype", "float64")
    assert "'tpu'" in error(capsys, "complete", "--model", m, "--prefix", "x", "--device", "tpu")
    if not torch.cuda.is_available():
        assert "CUDA" in error(capsys, "complete", "--model", m, "--prefix", "x", "--device", "cuda")
    assert "--max-new-tokens" in error(capsys, "complete", "--model", m, "--prefix", "x", "--max-new-tokens", "0")
    assert "--top-p" in error(capsys, "complete", "--model", m, "--prefix", "x", "--top-p", "0")
    assert "--prefix" in error(capsys, "complete", "--model", m)
    assert "context" in error(capsys, "complete", "--model", m, "--prefix", "def f(): pass\n" * 400)
    monkeypatch.setattr(loader, "DEFAULT_MODEL_DIR", tmp_path / "default_model")
    assert "no default model" in error(capsys, "complete", "--prefix", "x")


def test_console_script_exit_status_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lsp_server.cli", "complete", "--model", str(tmp_path / "absent"),
                           "--prefix", "x"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(tmp_path / "absent") in proc.stderr and proc.stdout == ""
