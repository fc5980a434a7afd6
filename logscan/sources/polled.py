"""What the sources that are not local files (journal, SMB share) share: one object per log
that hands over lines poll by poll, with the Follower's public face."""

from __future__ import annotations

from typing import Any

from logscan.sources.reading import as_block


class PolledSource:
    """Notes, poll's `blocks` form, and no files held for a save: the subclass writes _poll()."""

    def __init__(self) -> None:
        self._notes: list[tuple[str, dict[str, Any]]] = []

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
