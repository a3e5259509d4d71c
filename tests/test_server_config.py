"""Options: camelCase on the wire, invalid values fall back to the default with a warning naming the
option; the TCP listener binds loopback by default and says so."""

import subprocess
import socket
import sys
import time

from lsp_server.config import DEFAULTS, parse_config, to_wire


def test_camel_case_options_are_read_and_unknown_ones_ignored():
    config, warnings, ignored = parse_config({"infill": {"maxNewTokensMultiLine": 10, "topP": 0.5,
                                                         "languages": ["python"], "somethingElse": 1}})
    assert (config.max_new_tokens_multi_line, config.top_p, config.languages) == (10, 0.5, ("python",))
    assert warnings == [] and ignored == ["somethingElse"]
    assert config.language_enabled("python") and not config.language_enabled("rust")
    assert set(to_wire(config)) >= {"model", "maxNewTokensSingleLine", "suffixFraction", "kvBudgetMb"}


def test_invalid_values_warn_and_use_the_default():
    base, _, _ = parse_config({"temperature": 0.7})
    config, warnings, _ = parse_config({"temperature": "hot", "numCandidates": 0, "dtype": "int3",
                                        "languages": [], "debounceMs": True}, base)
    assert config.temperature == DEFAULTS.temperature and config.num_candidates == DEFAULTS.num_candidates
    assert config.dtype == "auto" and config.languages == ("*",) and config.debounce_ms == 0
    assert len(warnings) == 5
    assert any("'temperature'" in w and "using the default 0.0" in w for w in warnings)
    assert any("'dtype'" in w and "'bfloat16'" in w for w in warnings)
    assert parse_config("nonsense")[1] and parse_config(None)[0] == DEFAULTS


def test_model_change_is_part_of_the_model_key_but_sampling_is_not():
    a, _, _ = parse_config({"model": "/m1"})
    b, _, _ = parse_config({"temperature": 0.5}, a)
    c, _, _ = parse_config({"model": "/m2"}, b)
    assert a.model_key() == b.model_key() != c.model_key()


def test_tcp_listens_on_loopback_by_default_and_says_so():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lsp_server.serve", "--tcp", str(port)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        line = proc.stderr.readline()
        assert f"127.0.0.1:{port}" in line and "loopback only" in line
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not listen"
                time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(5)
