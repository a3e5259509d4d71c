"""`infill-ls serve` / `python -m lsp_server.serve`: run the language server over stdio (default) or
TCP. TCP binds to loopback unless an address is given, and says where it listens."""

from __future__ import annotations

import argparse
import logging
import sys

from lsp_server import start_up_gc

LOOPBACK = "127.0.0.1"


def parse_tcp(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = LOOPBACK, value
    host = host.strip("[]") or LOOPBACK
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tcp wants HOST:PORT or PORT, got {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"--tcp port out of range: {number}")
    return host, number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infill-ls serve", description="Run the infill-ls language server.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="speak LSP over stdin/stdout (the default)")
    mode.add_argument("--tcp", type=parse_tcp, metavar="[HOST:]PORT",
                      help=f"listen on TCP (host defaults to {LOOPBACK}: loopback only)")
    parser.add_argument("--log-level", default="warning",
                        choices=["error", "warning", "info", "debug"], help="server-side log on stderr")
    args = parser.parse_args(argv)
    start_up_gc.collect_young_only()  # until the first model load ends (model_state.load)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="infill-ls %(levelname)s %(name)s: %(message)s")
    # pygls dumps whole messages (document text, suggestions) at info/debug: keep it to warnings,
    # so no log level below the client's "trace" writes document text.
    logging.getLogger("pygls").setLevel(max(logging.WARNING, logging.getLogger().level))

    from lsp_server.server import build_server

    server = build_server()
    try:
        if args.tcp:
            host, port = args.tcp
            scope = "loopback only" if host in (LOOPBACK, "localhost", "::1") else "NOT loopback: reachable from the network"
            print(f"infill-ls: listening on {host}:{port} ({scope})", file=sys.stderr, flush=True)
            server.start_tcp(host, port)
        else:
            from lsp_server.bounded_stdin import BoundedStdin
            from lsp_server.quiet_stdout import QuietStdout

            server.start_io(BoundedStdin(sys.stdin.buffer), QuietStdout(sys.stdout.buffer))
    finally:
        # The client went away without `exit` (stdin closed): stop the generation in flight and the
        # worker first; a torch op still running on the worker thread at interpreter exit aborts.
        server.scheduler.cancel_all()
        if server.worker is not None:
            server.worker.shutdown(timeout=2.0)
    return server.exit_code  # 1 after `exit` without `shutdown`; 0 when stdin just closed


if __name__ == "__main__":
    sys.exit(main())
