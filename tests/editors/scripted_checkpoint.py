"""A tiny StarCoder-style checkpoint whose suggestion is known in advance, for the editor tests.

The editors' scenarios need a suggestion every time (a random model may suggest nothing), one
that runs over two lines (to see the ghost text below the cursor line), and, when asked for
several candidates, more than one. A random checkpoint from tests/checkpoints.py is rewritten so
that its next token depends only on the current one:

- every block's output projections (attention and MLP `c_proj`) and the position table are zero,
  so the hidden state at a position is the embedding of its token;
- the tokens of the script get orthogonal embeddings, and an untied `lm_head` maps each one to the
  next token of the script with a wide margin (logit SCRIPT_LOGIT against about 0 for the rest).

The server's prompt for this model is suffix-first (<fim_prefix><fim_suffix>suffix<fim_middle>prefix),
so it ends with the last token of the text before the cursor. Where that is a TRIGGERS token (the
`):` of `def add(a, b):`; also <fim_middle>, for a prefix-first prompt), greedy decoding writes
SUGGESTION and then <|endoftext|>; anywhere else the model says what its random weights say. A
trigger also leads, a little less strongly, to each of ALTERNATIVES (one-token suggestions that
then end): greedy never picks one, but sampling (the server samples the candidates after the first
for an Invoked request) picks one of them most of the time, so an Invoked request there gets
several different candidates.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# After `def add(a, b):` the model writes a comment, then the body on the next line. Its tokens
# (in the tiny tokenizer of tests/checkpoints.py) are all different, as a next-token map needs.
SUGGESTION = "  # total\n    return a + b"
SCRIPT_TOKENS = ["  ", "#", " t", "ot", "a", "l", "\n   ", " return", " a", " ", "+", " b"]
# One-token candidates that sampling prefers, together, to the greedy first token.
ALTERNATIVES = [" self", " def", " if", " in", " f", " n", " p", " r", " i", " 0"]
SCRIPT_LOGIT = 24.0
TRIGGERS = ["):", "<fim_middle>"]
ALTERNATIVE_GAP = 0.1  # logit below the script's first token: at temperature 0.8, each is ~0.88 as likely


def _token_id(tok, text: str) -> int:
    if tok.token_to_id(text) is not None and text.startswith("<"):
        return tok.token_to_id(text)  # a special token (decodes to nothing)
    ids = [i for i in range(tok.get_vocab_size()) if tok.decode([i]) == text]
    if len(ids) != 1:
        raise ValueError(f"the tiny tokenizer has {len(ids)} tokens for {text!r}")
    return ids[0]


def make_scripted_gpt_bigcode(folder: Path) -> Path:
    from safetensors.torch import load_file, save_file
    from tokenizers import Tokenizer

    from tests.checkpoints import make_gpt_bigcode

    folder = make_gpt_bigcode(Path(folder), seed=0)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    script = [_token_id(tok, t) for t in SCRIPT_TOKENS]
    if tok.decode(script) != SUGGESTION or len(set(script)) != len(script):
        raise ValueError(f"SCRIPT_TOKENS must be distinct tokens that spell {SUGGESTION!r}")
    alternatives = [_token_id(tok, t) for t in ALTERNATIVES]
    triggers = [_token_id(tok, t) for t in TRIGGERS]
    eos = tok.token_to_id("<|endoftext|>")
    sources = triggers + script + alternatives  # the tokens whose next token is scripted
    if len(set(sources)) != len(sources):
        raise ValueError("ALTERNATIVES must differ from the script's tokens")

    sd = load_file(str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    vocab, width = config["vocab_size"], config["n_embd"]
    if len(sources) > width:
        raise ValueError(f"{len(sources)} scripted tokens do not fit {width} orthogonal embeddings")
    for name in sd:
        if ".c_proj." in name or name == "transformer.wpe.weight":
            sd[name] = torch.zeros_like(sd[name])  # blocks add nothing, positions add nothing
    sd["transformer.ln_f.weight"] = torch.ones(width)
    sd["transformer.ln_f.bias"] = torch.zeros(width)
    wte = sd["transformer.wte.weight"].clone()
    wte[sources] = torch.eye(width)[: len(sources)]
    sd["transformer.wte.weight"] = wte

    # The final hidden state of token a is layer_norm(wte[a]); lm_head row b is built so that
    # its dot product with it is the logit wanted for "b follows a".
    normed = torch.nn.functional.layer_norm(torch.eye(width)[: len(sources)], (width,), eps=config["layer_norm_epsilon"])
    head = torch.zeros(vocab, width)

    def follows(a_slot: int, b: int, logit: float) -> None:
        u = normed[a_slot]
        head[b] += logit * u / u.dot(u)

    slot = {token: k for k, token in enumerate(sources)}
    for trigger in triggers:
        follows(slot[trigger], script[0], SCRIPT_LOGIT)
        for alt in alternatives:
            follows(slot[trigger], alt, SCRIPT_LOGIT - ALTERNATIVE_GAP)
    for a, b in zip(script, script[1:] + [eos]):
        follows(slot[a], b, SCRIPT_LOGIT)
    for alt in alternatives:
        follows(slot[alt], eos, SCRIPT_LOGIT)
    sd["lm_head.weight"] = head
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config["tie_word_embeddings"] = False
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder
