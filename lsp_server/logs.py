"""Log lines to the client (window/logMessage) at the configured level, and optionally to a file.
Document text is only ever logged at level "trace"."""

from __future__ import annotations

import logging
import os

from lsprotocol import types

LEVELS = {"error": 1, "warning": 2, "info": 3, "debug": 4, "trace": 5}
MESSAGE_TYPES = {1: types.MessageType.Error, 2: types.MessageType.Warning, 3: types.MessageType.Info,
                 4: types.MessageType.Log, 5: types.MessageType.Log}
PY_LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG, 5: logging.DEBUG}

file_logger = logging.getLogger("infill_ls.requests")
file_logger.propagate = False


class ClientLog:
    def __init__(self, server) -> None:
        self.server = server
        self.level = LEVELS["info"]
        self._file_handler: logging.Handler | None = None
        self._file_path: str | None = None

    def configure(self, level: str, log_file: str | None) -> str | None:
        """Returns a problem description when the log file cannot be opened."""
        self.level = LEVELS.get(level, 3)
        file_logger.setLevel(logging.DEBUG)
        if log_file == self._file_path:
            return None
        if self._file_handler is not None:
            file_logger.removeHandler(self._file_handler)
            self._file_handler.close()
            self._file_handler = None
        self._file_path = None
        if log_file:
            try:
                handler = logging.FileHandler(os.path.expanduser(log_file), encoding="utf-8")
            except (OSError, ValueError) as e:  # ValueError: a NUL in the path
                reason = getattr(e, "strerror", None) or e
                return f"infill-ls: cannot open log file {log_file!r}: {reason}; logging to the client only"
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            file_logger.addHandler(handler)
            self._file_handler, self._file_path = handler, log_file
        return None

    @property
    def text_allowed(self) -> bool:
        return self.level >= LEVELS["trace"]

    def enabled(self, level: str) -> bool:
        return LEVELS[level] <= self.level

    def log(self, level: str, message: str) -> None:
        n = LEVELS[level]
        if n > self.level:
            return
        if self._file_handler is not None:
            file_logger.log(PY_LEVELS[n], message)
        try:
            self.server.window_log_message(types.LogMessageParams(type=MESSAGE_TYPES[n], message=message))
        except Exception:  # noqa: BLE001 - no client connected (yet): the file is enough
            pass
