"""The stdio writer drops what is written after `exit` closed it, instead of raising in pygls' sender."""

import io

from lsp_server.quiet_stdout import QuietStdout


def test_writes_pass_through_until_closed_then_are_dropped():
    raw = io.BytesIO()
    out = QuietStdout(raw)
    out.write(b"Content-Length: 2\r\n\r\n{}")
    out.flush()
    assert raw.getvalue() == b"Content-Length: 2\r\n\r\n{}"
    out.close()
    assert raw.closed
    assert out.write(b"late answer") == 0  # a closed BytesIO would raise ValueError here
    out.flush()
    out.close()  # a second close is harmless
