"""The remote backend's options and its failures as the editor side sees them, without llama-server:
a refused loopback port, and a real HTTP server on loopback that answers badly."""

from __future__ import annotations

import http.server
import threading

import pytest

from inference.api import GenerationJob, GenerationParams, ModelSpec
from lsp_server.config import parse_config


def test_backend_and_endpoint_are_validated_with_the_usual_warning():
    config, warnings, _ = parse_config({"backend": "vllm-ish", "endpoint": "ftp://x"})
    assert config.backend == "local" and config.endpoint == "http://127.0.0.1:8080"
    assert any("'backend'" in w and "'local'" in w for w in warnings)
    assert any("'endpoint'" in w and "http://127.0.0.1:8080" in w for w in warnings)
    config, warnings, _ = parse_config({"backend": "llama.cpp", "endpoint": "https://gpu.example:8443/"})
    assert (config.backend, config.endpoint, warnings) == ("llama.cpp", "https://gpu.example:8443", [])
    assert config.engine_key() == ("llama.cpp", "https://gpu.example:8443") != parse_config({})[0].engine_key()


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


class _Bad(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, code: int, body: bytes, kind: str = "application/json"):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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


def test_http_errors_and_malformed_streams_are_clear_errors_of_their_kind(bad_server):
    from inference.remote_llamacpp import EngineError, LlamaServerClient

    client = LlamaServerClient(bad_server, api_key="sekrit-key")
    info = client.load(ModelSpec(None)).result(10)
    assert info.max_context == 512 and info.fim is not None
    with pytest.raises(EngineError) as e:
        client.generate(GenerationJob([1, 2, 3], GenerationParams(max_new_tokens=1))).result(10)
    assert e.value.kind == "http 5xx" and "HTTP 500" in str(e.value) and "boom" in str(e.value)
    with pytest.raises(EngineError) as e:
        client.generate(GenerationJob([1, 2, 3], GenerationParams(max_new_tokens=5))).result(10)
    assert e.value.kind == "malformed" and "/completion" in str(e.value) and "sekrit" not in str(e.value)
    client.shutdown()
