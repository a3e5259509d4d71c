"""The remote backends' options and their failures as the editor side sees them, without a real
engine (the real ones are in test_engine_llamacpp.py and test_engine_vllm.py): a refused loopback
port, and real HTTP servers on loopback that answer badly in each way an engine can."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time

import pytest

from inference.api import GenerationJob, GenerationParams, ModelSpec, RemoteSpec
from lsp_server.config import parse_config


def test_backend_and_endpoint_are_validated_with_the_usual_warning():
    config, warnings, _ = parse_config({"backend": "vllm-ish", "endpoint": "ftp://x"})
    assert config.backend == "local" and config.endpoint == "http://127.0.0.1:8080"
    assert any("'backend'" in w and "'local'" in w for w in warnings)
    assert any("'endpoint'" in w and "http://127.0.0.1:8080" in w for w in warnings)
    config, warnings, _ = parse_config({"backend": "llama.cpp", "endpoint": "https://gpu.example:8443/"})
    assert (config.backend, config.endpoint, warnings) == ("llama.cpp", "https://gpu.example:8443", [])
    assert config.engine_key()[:2] == ("llama.cpp", "https://gpu.example:8443")
    assert config.engine_key() != parse_config({})[0].engine_key()
    config, warnings, _ = parse_config({"backend": "vllm", "servedModel": "coder", "apiKeyEnv": "TEAM_KEY",
                                        "caBundle": "/etc/ssl/corp.pem", "fimFormat": "qwen"})
    assert warnings == [] and (config.served_model, config.api_key_env, config.ca_bundle, config.fim_format) == (
        "coder", "TEAM_KEY", "/etc/ssl/corp.pem", "qwen")
    assert config.engine_key() != parse_config({"backend": "vllm"})[0].engine_key()
    assert config.model_key() != parse_config({"backend": "vllm", "servedModel": "coder", "apiKeyEnv": "TEAM_KEY",
                                               "caBundle": "/etc/ssl/corp.pem"})[0].model_key()


def test_a_key_pasted_into_api_key_env_is_refused_and_never_echoed():
    config, warnings, _ = parse_config({"backend": "openai", "apiKeyEnv": "sk-abc123secret/xyz=="})
    assert config.api_key_env is None and len(warnings) == 1
    assert "'apiKeyEnv'" in warnings[0] and "NAME of an environment variable" in warnings[0]
    assert "sk-abc123" not in warnings[0]
    config, warnings, _ = parse_config({"fimFormat": "fim-of-my-own"})
    assert config.fim_format == "auto" and "'fimFormat'" in warnings[0] and "qwen" in warnings[0]


def test_plain_http_to_another_machine_warns_that_code_goes_in_clear():
    _, warnings, _ = parse_config({"backend": "llama.cpp", "endpoint": "http://10.1.2.3:8080"})
    assert len(warnings) == 1 and "in clear" in warnings[0] and "10.1.2.3" in warnings[0]
    assert parse_config({"backend": "llama.cpp", "endpoint": "http://localhost:8080"})[1] == []


def _refused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_an_unreachable_server_fails_the_load_naming_the_endpoint():
    from inference.remote_llamacpp import EngineError, LlamaServerClient

    url = f"http://127.0.0.1:{_refused_port()}"
    client = LlamaServerClient(url)
    with pytest.raises(EngineError) as e:
        client.load(ModelSpec(None)).result(10)
    assert e.value.kind == "unreachable" and url in str(e.value)
    client.shutdown()


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, code: int, body: bytes, kind: str = "application/json"):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Bad(_Handler):

    def do_GET(self):
        if self.path == "/health":
            self._send(200, b'{"status":"ok"}')
        else:
            self._send(200, b'{"default_generation_settings": {"n_ctx": 512}, "total_slots": 1}')

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        if b'"n_predict": 1,' in body or b'"n_predict":1,' in body:
            self._send(500, b'{"error": {"code": 500, "message": "boom"}}')
        else:
            self._send(200, b"data: {not json\n\n", "text/event-stream")


@pytest.fixture()
def bad_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Bad)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_errors_and_malformed_streams_are_clear_errors_of_their_kind(bad_server, monkeypatch):
    monkeypatch.setenv("INFILL_TEST_KEY", "sekrit-key")
    from inference.remote_llamacpp import EngineError, LlamaServerClient

    client = LlamaServerClient(RemoteSpec("llama.cpp", bad_server, api_key_env="INFILL_TEST_KEY"))
    info = client.load(ModelSpec(None)).result(10)
    assert info.max_context == 512 and info.fim is not None
    with pytest.raises(EngineError) as e:
        client.generate(GenerationJob([1, 2, 3], GenerationParams(max_new_tokens=1))).result(10)
    assert e.value.kind == "http 5xx" and "HTTP 500" in str(e.value) and "boom" in str(e.value)
    with pytest.raises(EngineError) as e:
        client.generate(GenerationJob([1, 2, 3], GenerationParams(max_new_tokens=5))).result(10)
    assert e.value.kind == "malformed" and "/completion" in str(e.value) and "sekrit" not in str(e.value)
    client.shutdown()


# -- an OpenAI-compatible server (the "vllm" and "openai" backends) that fails in every way it can

class _Misbehaving(_Handler):
    """/v1/models lists "good"; /v1/completions does what `server.mode` says."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.server.seen_auth.append(self.headers.get("Authorization"))
        self.server.seen_paths.append(self.path)  # absolute-form ("http://host/...") when we are the proxy
        self._send(200, b'{"object": "list", "data": [{"id": "good", "max_model_len": 512}]}')

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        mode = self.server.mode
        if mode in ("401", "403", "404", "500", "503"):
            message = {"401": "invalid API key", "404": "The model `good` does not exist."}.get(mode, "no")
            self._send(int(mode), json.dumps({"error": {"message": message}}).encode())
        elif mode == "slow":  # no first byte within the request timeout
            time.sleep(1.5)
            self._send(200, b"data: [DONE]\n\n", "text/event-stream")
        elif mode in ("garbage", "no-choices", "reset", "ok"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            event = {"garbage": b"data: {not json\n\n", "no-choices": b'data: {"id": "x"}\n\n',
                     "reset": b'data: {"choices": [{"text": "ab", "finish_reason": null}]}\n\n',
                     "ok": b'data: {"choices": [{"text": " + b", "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'}[mode]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            if mode == "reset":  # the connection dies mid-answer
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(b"0\r\n\r\n")


@pytest.fixture()
def misbehaving():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    httpd.mode, httpd.seen_auth, httpd.seen_paths = "ok", [], []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _job(**params) -> GenerationJob:
    return GenerationJob([1, 2, 3], GenerationParams(**{"max_new_tokens": 8, "time_limit_s": 0.5, **params}))


def test_an_openai_server_failing_each_way_gives_an_error_of_its_kind_never_showing_the_key(misbehaving, monkeypatch):
    from inference.remote_http import EngineError
    from inference.remote_openai import OpenAICompletionsClient

    monkeypatch.setenv("INFILL_TEST_KEY", "sekrit-key")
    url = f"http://127.0.0.1:{misbehaving.server_address[1]}"
    client = OpenAICompletionsClient(RemoteSpec("openai", url, api_key_env="INFILL_TEST_KEY"))
    info = client.load(ModelSpec(None)).result(10)
    assert info.max_context == 512 and client.served_model == "good"
    assert misbehaving.seen_auth == ["Bearer sekrit-key"]
    result = client.generate(_job()).result(10)
    assert result.stop_reason == "eos" and info.tokenizer().decode(result.token_ids) == " + b"
    expected = {"401": ("auth", "apiKeyEnv"), "403": ("auth", "HTTP 403"), "404": ("model", "does not exist"),
                "500": ("http 5xx", "HTTP 500"), "503": ("http 5xx", "still loading"),
                "slow": ("timeout", "request timeout"), "garbage": ("malformed", "malformed JSON"),
                "no-choices": ("malformed", "choices"), "reset": ("reset", "")}
    for mode, (kind, words) in expected.items():
        misbehaving.mode = mode
        with pytest.raises(EngineError) as e:
            client.generate(_job()).result(10)
        assert e.value.kind == kind and words in str(e.value), (mode, str(e.value))
        assert "sekrit" not in str(e.value) and url in str(e.value)
        assert e.value.transient == (kind in ("timeout", "reset", "http 5xx"))
    misbehaving.mode = "ok"  # and it answers again with the same client
    assert client.generate(_job()).result(10).stop_reason == "eos"
    client.shutdown()


def test_a_wrong_served_model_a_missing_key_or_ca_file_fail_the_load_clearly(misbehaving, monkeypatch):
    from inference.remote_http import EngineError
    from inference.remote_openai import OpenAICompletionsClient

    url = f"http://127.0.0.1:{misbehaving.server_address[1]}"
    cases = [(RemoteSpec("vllm", url, served_model="gpt-5"), "model", "'gpt-5' (it serves: good)"),
             (RemoteSpec("openai", url, api_key_env="INFILL_UNSET_KEY"), "auth", "INFILL_UNSET_KEY"),
             (RemoteSpec("openai", url.replace("http:", "https:"), ca_bundle="/nonexistent/ca.pem"), "tls",
              "/nonexistent/ca.pem")]
    monkeypatch.delenv("INFILL_UNSET_KEY", raising=False)
    for spec, kind, words in cases:
        client = OpenAICompletionsClient(spec)
        with pytest.raises(EngineError) as e:
            client.load(ModelSpec(None)).result(10)
        assert e.value.kind == kind and words in str(e.value) and not e.value.transient
        client.shutdown()


@pytest.fixture()
def tls_misbehaving(tmp_path):
    """The same server over https with a self-signed certificate for 127.0.0.1 (its PEM is the CA)."""
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    httpd.mode, httpd.seen_auth, httpd.seen_paths = "ok", [], []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}", cert
    httpd.shutdown()
    httpd.server_close()


def test_https_is_verified_and_a_ca_bundle_makes_a_private_ca_trusted(tls_misbehaving):
    from inference.remote_http import EngineError
    from inference.remote_openai import OpenAICompletionsClient

    url, cert = tls_misbehaving
    client = OpenAICompletionsClient(RemoteSpec("openai", url))
    with pytest.raises(EngineError) as e:  # a certificate no system CA signed: refused, not ignored
        client.load(ModelSpec(None)).result(10)
    assert e.value.kind == "tls" and "caBundle" in str(e.value) and not e.value.transient
    client.shutdown()
    client = OpenAICompletionsClient(RemoteSpec("openai", url, ca_bundle=str(cert)))
    assert client.load(ModelSpec(None)).result(10).max_context == 512
    assert client.generate(_job()).result(10).stop_reason == "eos"
    client.shutdown()


def test_http_proxy_and_no_proxy_from_the_environment_are_honoured(misbehaving, monkeypatch):
    from inference.remote_http import EngineError
    from inference.remote_openai import OpenAICompletionsClient

    proxy = f"http://127.0.0.1:{misbehaving.server_address[1]}"
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = OpenAICompletionsClient(RemoteSpec("openai", "http://gpu-box.invalid:8000"))
    assert client.load(ModelSpec(None)).result(10).max_context == 512  # only the proxy could answer that
    assert misbehaving.seen_paths == ["http://gpu-box.invalid:8000/v1/models"]
    client.shutdown()
    monkeypatch.setenv("NO_PROXY", "gpu-box.invalid")
    client = OpenAICompletionsClient(RemoteSpec("openai", "http://gpu-box.invalid:8000"))
    with pytest.raises(EngineError) as e:  # straight to the host, which does not exist
        client.load(ModelSpec(None)).result(10)
    assert e.value.kind == "unreachable" and len(misbehaving.seen_paths) == 1
    client.shutdown()
