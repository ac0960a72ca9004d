"""One warning when a backing service goes away and one when it is back, never one a request."""

from __future__ import annotations

import logging

__all__ = ["OutageLog"]


class OutageLog:
    """Logs `<subject> unreachable` (with the failure's class name, never its text, which may
    hold keys or addresses) on the first failure, and `<subject> reachable again` on the first
    success after it."""

    def __init__(self, logger: logging.Logger, subject: str) -> None:
        self._log = logger
        self._subject = subject
        self._is_down = False

    @property
    def is_down(self) -> bool:
        return self._is_down

    def down(self, cause: BaseException) -> None:
        if not self._is_down:
            self._is_down = True
            self._log.warning(f"{self._subject} unreachable", extra={"error": type(cause).__name__})

    def up(self) -> None:
        if self._is_down:
            self._is_down = False
            self._log.warning(f"{self._subject} reachable again")
