"""What the sources that are not local files (journal, SMB share) share: one object per log
that hands over lines poll by poll, with the Follower's public face."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from logscan.sources.reading import as_block

RETRY_S: Final = 2.0  # after a failure, the next attempt to reach the source waits this long


class PolledSource:
    """Notes, up/error with one note per outage, poll's `blocks` form, and no files held for a
    save: the subclass writes _poll() and current_path."""

    def __init__(self, name: str, clock: Callable[[], float]) -> None:
        self.name = name
        self._clock = clock
        self._notes: list[tuple[str, dict[str, Any]]] = []
        self._up = False
        self._error = ""
        self._outage = False
        self._next_try = 0.0  # clock time before which a down source is not tried again

    @property
    def up(self) -> bool:
        return self._up

    @property
    def error(self) -> str:
        return self._error

    @property
    def current_path(self) -> str:
        raise NotImplementedError

    def drain_notes(self) -> list[tuple[str, dict[str, Any]]]:
        """State changes since the last call, as (event, fields) for structlog; never line content."""
        notes, self._notes = self._notes, []
        return notes

    @property
    def epoch(self) -> int:
        """Always 0: a position here is one cursor or offset, saved on the interval like counts."""
        return 0

    def open(self) -> None:
        """Nothing to open ahead of reading: the first poll() starts from the saved position."""

    def saved(self) -> None:
        """Nothing is held open for a save to release."""

    def poll(self, max_bytes: int = 4 << 20, *, blocks: bool = False) -> list[bytes]:
        """New complete lines in order; never raises on source trouble. With `blocks`: the same
        lines as one run, each ending in "\n" (as Follower.poll)."""
        lines = self._poll(max_bytes)
        return as_block(lines) if blocks else lines

    def _poll(self, max_bytes: int) -> list[bytes]:
        raise NotImplementedError

    def _note(self, event: str, **fields: Any) -> None:
        self._notes.append((event, {"log": self.name, **fields}))

    def _fail(self, error: str) -> None:
        self._up = False
        self._error = error
        self._next_try = self._clock() + RETRY_S
        if not self._outage:
            self._outage = True
            self._note("log_unreadable", path=self.current_path, error=error)

    def _recover(self) -> None:
        if self._outage:
            self._note("log_recovered", path=self.current_path, after="unreadable")
            self._outage = False
        self._up = True
        self._error = ""
