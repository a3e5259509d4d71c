"""`infill-ls complete` runs the server's pipeline: the prompt the editor's request would get (layout,
budget cut said on stderr), the same stops and shaping (so the text is what the editor shows), the
model's raw output with --raw; its tokens are transformers' greedy tokens on that prompt; no special
token and no warning reach the user. `infill-ls convert` writes safetensors; user errors exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from inference import loader
from inference.cli import main as convert_main
from inference.loader import load_model
from lsp_server.cli import main
from tests import checkpoints as ck
from tests.server_harness import Doc, running_server, wait_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {"starcoder": ck.make_gpt_bigcode(root / "sc", seed=21), "codegen": ck.make_codegen(root / "cg", seed=22,
            weights="bin"), "codegen2": ck.make_codegen2(root / "cg2", reference_dir=root / "cg2-ref", seed=23),
            "xglm": ck.make_xglm(root / "x")}


def reference_folder(folder):
    """The transformers checkpoint of a test model (CodeGen2's is laid out apart, see tests/checkpoints)."""
    ref = folder.with_name(folder.name + "-ref")
    return ref if ref.is_dir() else folder


def run_json(capsys, *args) -> dict:
    return run_json_and_stderr(capsys, *args)[0]


def run_json_and_stderr(capsys, *args) -> tuple[dict, str]:
    assert main(["complete", *args, "--json"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def transformers_greedy(folder, prompt_ids: list[int], max_new: int, stop_ids) -> list[int]:
    ref = ck.load_reference(folder)
    with torch.no_grad():
        out = ref.generate(torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                           max_new_tokens=max_new, do_sample=False, eos_token_id=list(stop_ids),
                           pad_token_id=stop_ids[0])
    return out[0, len(prompt_ids):].tolist()


def stop_ids_of(folder) -> tuple[int, ...]:
    from lsp_server.prompt import PromptBuilder

    return PromptBuilder(load_model(folder, compile_decode=False)).stop_ids


@pytest.mark.parametrize("name, suffix", [("codegen", None), ("starcoder", None), ("starcoder", "\n    return a\n"),
                                          ("codegen2", "\n    return a\n")])
def test_raw_tokens_are_transformers_greedy_on_the_servers_prompt(models, capsys, name, suffix):
    args = ["--model", str(models[name]), "--prefix", "def area(r):\n    r2 = r", "--max-new-tokens", "20", "--raw"]  # no trailing space: no token healing
    out = run_json(capsys, *args, *(["--suffix", suffix] if suffix else []))
    stops = stop_ids_of(models[name])
    theirs = transformers_greedy(reference_folder(models[name]), out["prompt_ids"], 20, stops)
    # all of them, ending for the same reason (transformers keeps the stop token; the engine does not)
    ended_on_stop = bool(theirs) and theirs[-1] in stops
    assert out["stop_reason"] == ("eos" if ended_on_stop else "max_tokens")
    assert out["token_ids"] == (theirs[:-1] if ended_on_stop else theirs)
    assert ended_on_stop or len(out["token_ids"]) == 20
    assert out["prompt_tokens"] == len(out["prompt_ids"]) and out["reused_tokens"] == 0
    assert out["prefill_ms"] > 0 and out["decode_ms"] >= 0
    # StarCoder-style models get the server's suffix-first layout, with or without a suffix
    assert out["layout"] == {"codegen": "prefix", "starcoder": "spm", "codegen2": "psm"}[name]
    assert out["fim"] is (name != "codegen")


async def test_the_text_is_what_the_server_shows_at_that_cursor(models, capsys):
    prefix, suffix = "import os\n\ndef area(r):\n    ", "\n    return a\n"
    out = run_json(capsys, "--model", str(models["starcoder"]), "--prefix", prefix, "--suffix", suffix,
                   "--max-new-tokens", "16")
    raw = run_json(capsys, "--model", str(models["starcoder"]), "--prefix", prefix, "--suffix", suffix,
                   "--max-new-tokens", "16", "--raw")
    async with running_server({"model": str(models["starcoder"]), "maxNewTokensSingleLine": 16,
                               "maxNewTokensMultiLine": 16, "device": "cpu"}) as client:
        assert (await wait_model(client, timeout=60))["model"]["status"] == "ready"
        doc = Doc(client, "file:///area.py", prefix + suffix)
        items = await doc.inline(len(prefix))
    shown = items[0].insert_text if items else ""
    assert out["text"] == shown
    assert out["prompt_ids"] == raw["prompt_ids"]  # one prompt, two readings of what comes back
    assert raw["token_ids"][: len(out["token_ids"])] == out["token_ids"]


def test_the_readme_command_prints_a_shaped_suggestion_and_raw_shows_the_loop():
    """The README's run command with the shipped model: the loop the model falls into after
    `def add(a, b):` is cut, as the server cuts it; --raw shows it."""
    def run(*extra):
        proc = subprocess.run([sys.executable, "-m", "lsp_server.cli", "complete", "--prefix", "def add(a, b):", *extra],
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        return proc.stdout

    shaped, raw = run(), run("--raw")
    assert shaped.strip() and raw.startswith(shaped)
    assert len(raw) > len(shaped)
    for text, loops in ((shaped, False), (raw, True)):
        # a loop: a run of 1-3 words, or a whole line, three times in a row
        words, lines = text.split(), [line.strip() for line in text.splitlines() if line.strip()]
        repeats = any(words[i:i + n] == words[i + n:i + 2 * n] == words[i + 2 * n:i + 3 * n]
                      for n in range(1, 4) for i in range(len(words) - 3 * n + 1))
        repeats |= any(lines[i] == lines[i + 1] == lines[i + 2] for i in range(len(lines) - 2))
        assert repeats is loops, text


def test_no_special_token_reaches_the_printed_text(models, capsys, tmp_path):
    """A model that writes a control token outside its FIM format's stops (CodeGen2's <mask_2>, pushed
    up by the output bias so it comes first every time): the suggestion ends there, in both modes."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "cg2-mask"
    shutil.copytree(models["codegen2"], folder)
    tok = load_model(folder, compile_decode=False).tokenizer
    mask2 = tok.token_to_id("<mask_2>")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["lm_head.bias"][mask2] = 80.0
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    specials = [t.content for t in tok.get_added_tokens_decoder().values() if t.special]
    for prefix in ("class Stack:\n    def push(self, item):", "x = "):
        for extra in ((), ("--raw",)):
            out = run_json(capsys, "--model", str(folder), "--prefix", prefix, "--suffix", "\n", "--max-new-tokens",
                           "8", *extra)
            assert out["token_ids"] == [] and out["stop_reason"] in ("eos", "block_end"), out
            for piece in specials:
                assert piece not in out["text"] and piece not in out["raw_text"], (prefix, out["raw_text"])


def test_a_prompt_over_the_context_is_cut_to_the_budget_and_said_so(models, capsys):
    long_prefix = "def f():\n    pass\n" * 300
    out, err = run_json_and_stderr(capsys, "--model", str(models["starcoder"]), "--prefix", long_prefix,
                                   "--max-new-tokens", "8")
    max_context = load_model(models["starcoder"], compile_decode=False).max_context
    assert out["prompt_tokens"] <= max_context - 8
    assert "the prompt holds the last" in err and f"of {len(long_prefix)} characters before the cursor" in err


def test_suffix_without_fim_format_says_so_and_goes_left_to_right(models, capsys):
    out, err = run_json_and_stderr(capsys, "--model", str(models["xglm"]), "--prefix", "x = 1", "--suffix", "y",
                                   "--max-new-tokens", "4")
    assert "xglm has no fill-in-the-middle format" in err and "suffix ignored" in err
    lm = load_model(models["xglm"], compile_decode=False)
    assert out["prompt_ids"] == lm.encode("x = 1") and out["fim"] is False


def test_stop_strings_and_sampling_flags(models, capsys):
    common = ["--model", str(models["starcoder"]), "--prefix", "class A:", "--max-new-tokens", "16", "--raw"]
    base = run_json(capsys, *common)
    needle = base["text"][4:6]
    assert len(needle) == 2
    out = run_json(capsys, *common, "--stop", needle, "zzzz")
    assert out["stop_reason"] == "stop_string" and out["text"] == base["text"][: base["text"].find(needle)]
    a = run_json(capsys, *common, "--temperature", "0.8", "--top-p", "0.9", "--seed", "3")
    b = run_json(capsys, *common, "--temperature", "0.8", "--top-p", "0.9", "--seed", "3")
    assert a["token_ids"] == b["token_ids"]


def test_no_numpy_warning_on_a_normal_run(tmp_path):
    """`pip install torch -e .` brings no numpy: torch then warns on import; the command must not."""
    fake = tmp_path / "no_numpy" / "numpy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'numpy'\")\n")
    env = {"PYTHONPATH": str(fake.parent), "PATH": "/usr/bin:/bin"}
    probe = subprocess.run([sys.executable, "-W", "always", "-c", "import torch"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert "Failed to initialize NumPy" in probe.stderr  # the warning this test is about exists here
    proc = subprocess.run([sys.executable, "-m", "lsp_server.cli", "complete", "--prefix", "x = 1", "--max-new-tokens",
                           "4"], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_convert_writes_safetensors_that_load_the_same(models, tmp_path, capsys):
    dst = tmp_path / "converted"
    assert convert_main(["convert", str(models["codegen"]), str(dst)]) == 0
    assert (dst / "model.safetensors").is_file() and not (dst / "pytorch_model.bin").exists()
    a, b = load_model(models["codegen"]), load_model(dst)
    ids = a.encode("def f():")
    assert torch.equal(a.full_logits(ids), b.full_logits(ids))
    assert convert_main(["convert", str(models["codegen"]), str(dst)]) == 2  # refuses to overwrite
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
    monkeypatch.setattr(loader, "DEFAULT_MODEL_DIR", tmp_path / "default_model")
    assert "no default model" in error(capsys, "complete", "--prefix", "x")


def test_console_script_exit_status_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lsp_server.cli", "complete", "--model", str(tmp_path / "absent"),
                           "--prefix", "x"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(tmp_path / "absent") in proc.stderr and proc.stdout == ""
