"""The `infill-ls` command: dispatches to `serve` (the language server) or to the
engine's own commands (`complete`, `convert`)."""

from __future__ import annotations

import sys

USAGE = """usage: infill-ls {serve,complete,convert} ...

  serve     run the language server (stdio, or --tcp HOST:PORT)
  complete  complete at a cursor (prefix, optional suffix) as the editor would show it
  convert   write a safetensors copy of a checkpoint folder, or a GGUF file (--gguf)
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "serve":
        from lsp_server.serve import main as serve_main

        return serve_main(rest)
    if command == "complete":
        from lsp_server.complete import main as complete_main

        return complete_main(rest)
    if command == "convert":
        from inference import cli

        return cli.main([command, *rest])
    print(f"infill-ls: unknown command {command!r}\n{USAGE}", file=sys.stderr, end="")
    return 2


if __name__ == "__main__":
    sys.exit(main())
