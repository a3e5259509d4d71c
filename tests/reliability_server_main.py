"""Test launcher: the real `lsp_server.serve` main, plus one test-only command,
`infillTest.documentText` (uri -> the server's copy of that document, or null), so the reliability
tests can compare the server's text with the client's. Lives under tests/: never shipped."""

from __future__ import annotations

import sys

import lsp_server.server as server_module
from lsp_server import serve

DOCUMENT_TEXT_COMMAND = "infillTest.documentText"
_build = server_module.build_server


def build_server_with_test_commands(*args, **kwargs):
    server = _build(*args, **kwargs)

    @server.command(DOCUMENT_TEXT_COMMAND)
    def document_text(ls, *params):
        uri = params[0] if params else None
        if isinstance(uri, (list, tuple)):  # arguments arrive as one list in some pygls versions
            uri = uri[0] if uri else None
        doc = ls.docs.get(uri) if isinstance(uri, str) else None
        return None if doc is None else doc.text

    return server


server_module.build_server = build_server_with_test_commands

if __name__ == "__main__":
    sys.exit(serve.main(sys.argv[1:]))
