"""Follow one mail log through every rotation and return each complete line exactly once.

Design (docs/decisions/0002-tailer.md, 0013): binary reads, complete lines only; a file is
identified by its inode, its first bytes and the bytes before the saved offset (identity.py); an
old file is kept open and drained after a rename; the checkpoint names every open file so a
restart finds it again, even renamed or compressed (rotation.py). Reading is reading.py.
"""

# The follower works on str paths and raw descriptors (fstat); pathlib would only wrap them.
# ruff: noqa: PTH100

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from logscan.sources.identity import (
    CHECKPOINT_VERSION,
    FP_MAX,
    Known,
    saved_problem,
)
from logscan.sources.logfiles import LogFiles
from logscan.sources.reading import (
    COMPRESS_ERRORS,
    Stream,
    describe,
    grow_fp,
    intact,
    read_lines,
)
from logscan.sources.rotation import Rotations

_STRUCTURAL = frozenset({"log_opened", "log_rotated", "log_closed", "log_found_rotated", "state_mismatch"})


class Follower:
    """Follows one configured log: a path, or a glob like /x/SMTP-Activity-*.log or /x/exim4/mainlog-*."""

    def __init__(self, name: str, pattern: str, *, start_at: Literal["end", "beginning"] = "end",
                 saved: Mapping[str, Any] | None = None, max_line: int = 65536,
                 retire_after: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 hold_until_saved: bool = False) -> None:
        """`retire_after`: seconds an old file stays open once idle (late writes, CLOSED markers).

        `hold_until_saved`: an old file is closed only once a saved checkpoint has it read to the
        end (see saved()), so no kill can leave a state that names a file we already let go.
        """
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self._files = LogFiles(pattern, max_line, clock)
        self.name = name
        self.pattern = pattern
        self._max_line = max_line
        self._retire_after = retire_after
        self._clock = clock
        self._saved: Mapping[str, Any] | None = saved
        self._rot = Rotations(self._files, self._note, clock, start_at, retire_after, hold_until_saved)
        self._epoch = 0  # bumped whenever the set of files changes: the daemon saves at once
        self._notes: list[tuple[str, dict[str, Any]]] = []
        self._outage = ""  # "missing" or "unreadable" during an outage: one note per outage
        self._up = False
        self._error = ""
        self._bytes_read = 0
        self._oversized = 0
        if saved is not None:
            problem = saved_problem(saved)
            if problem:
                # A damaged state must not stop the daemon: say so and start as if for the first time.
                self._note("state_mismatch", reason=f"saved position unusable: {problem}")
                self._saved = None
            else:
                self._bytes_read = int(saved["bytes_read"])
                self._rot.count = int(saved["rotations"])
                self._oversized = int(saved["oversized_lines"])
                self._rot.done = [Known(**d) for d in saved["done"]]

    # ----------------------------------------------------------------- public API

    @property
    def up(self) -> bool:
        return self._up

    @property
    def error(self) -> str:
        return self._error

    @property
    def bytes_read(self) -> int:
        return self._bytes_read

    @property
    def rotations(self) -> int:
        return self._rot.count

    @property
    def oversized_lines(self) -> int:
        return self._oversized

    @property
    def lag_bytes(self) -> int:
        """Bytes the next poll() could return now; an unfinished last line does not count.

        0 while the log is not up: a failing read must not make the daemon poll in a tight loop.
        """
        if not self._up:
            return 0
        return sum(max(0, s.size - s.offset) for s in self._rot.streams()
                   if s.size is not None and s.stalled != (s.offset, s.size))

    @property
    def current_path(self) -> str:
        return self._rot.cur.path if self._rot.cur is not None else self.pattern

    def watch_dirs(self) -> set[str]:
        """Folders the watcher must watch for this log."""
        return {os.path.abspath(self._files.dir)}

    @property
    def epoch(self) -> int:
        """Changes whenever a file is opened, found, rotated or closed: a checkpoint worth saving now."""
        return self._epoch

    def saved(self) -> None:
        """The last checkpoint() is on disk: old files it has read to the end may now be closed."""
        self._rot.saved()

    def open(self) -> None:
        """Open the log's files (from the saved position or start_at) without reading a line."""
        self.poll(0)

    def drain_notes(self) -> list[tuple[str, dict[str, Any]]]:
        """State changes since the last call, as (event, fields) for structlog; never line content."""
        notes, self._notes = self._notes, []
        return notes

    def poll(self, max_bytes: int = 4 << 20, *, blocks: bool = False) -> list[bytes]:
        """Complete new lines (without newline), in file order; never raises on I/O errors.

        With `blocks`: the same lines in runs, each line ending in "\n" (see read_lines)."""
        failed = False
        try:
            if not self._rot.started:
                self._rot.start(self._saved)
            self._rot.refresh()
        except COMPRESS_ERRORS as exc:
            failed = True
            self._fail(exc)
        out: list[bytes] = []
        budget = max_bytes
        now = self._clock()
        for s in self._rot.streams():
            if budget <= 0:
                break
            try:
                got = self._read(s, budget, out, now, blocks)
            except COMPRESS_ERRORS as exc:
                if s.src.compressed:
                    # A damaged or half-written archive: give up on it, say so, go on with the rest.
                    self._note("log_read_error", path=s.path, error=describe(exc), offset=s.offset)
                    s.eof = True
                    continue
                failed = True
                self._fail(exc)
                break  # file order: never read a newer file past an unread older one
            if got < 0:
                break  # truncated under the read: the next poll reads on, in file order
            budget -= got
            if _unread(s):
                break  # the budget ended inside this file: none of a newer one before its rest
        self._rot.reap(now)
        if not failed and self._rot.cur is not None:
            self._recover()
        elif not failed:
            self._fail(FileNotFoundError(errno.ENOENT, "no such file", self.pattern))
        return out

    def checkpoint(self) -> dict[str, Any]:
        """JSON-able position matching exactly the lines poll() has returned."""
        if not self._rot.started and self._saved is not None:
            return dict(self._saved)  # nothing read yet: the saved position still holds
        return {
            "v": CHECKPOINT_VERSION,
            "pattern": self.pattern,
            "bytes_read": self._bytes_read,
            "rotations": self._rot.count,
            "oversized_lines": self._oversized,
            "files": [s.record() for s in self._rot.streams()],
            "done": [k.record() for k in self._rot.done],
            "waiting": self._rot.waited and not self._rot.started,
        }

    def close(self) -> None:
        """Close every open file; a later poll() resumes from this point."""
        if self._rot.started:
            self._saved = self.checkpoint()
        self._rot.close()

    # ----------------------------------------------------------------- errors and notes

    def _note(self, event: str, **fields: Any) -> None:
        if event in _STRUCTURAL:
            self._epoch += 1
        self._notes.append((event, {"log": self.name, **fields}))

    def _fail(self, exc: BaseException) -> None:
        kind = "missing" if isinstance(exc, FileNotFoundError) else "unreadable"
        self._up = False
        self._error = describe(exc)
        if self._outage != kind:
            self._outage = kind
            event = "log_missing" if kind == "missing" else "log_unreadable"
            self._note(event, path=self.current_path, error=self._error)

    def _recover(self) -> None:
        if self._outage:
            self._note("log_recovered", path=self.current_path, after=self._outage)
            self._outage = ""
        self._up = True
        self._error = ""

    # ----------------------------------------------------------------- reading

    def _read(self, s: Stream, budget: int, out: list[bytes], now: float, blocks: bool = False) -> int:
        """Append complete lines of `s` to `out`, up to about `budget` bytes; returns bytes consumed,
        or -1 when the file was truncated under the read (nothing appended)."""
        if not s.current and s.size is not None:
            # An old file can still be truncated or rewritten (two rotations between polls).
            self._rot.check_same(s, s.src.fstat())
        offset, tail, n, before = s.offset, s.tail, len(out), s.mark()
        # Known only empty: no identity to check this read against (see below).
        blank, since = s.fp_len == 0 and offset == 0 and s.size is not None, s.mtime_ns
        consumed, oversized = read_lines(s, budget, out, now, self._max_line, self._retire_after, blocks)
        if consumed and not intact(s, offset, tail):
            # logrotate copied and truncated the file between our last look and this read: the
            # bytes may be the new file's, read at our old offset. Forget them and handle the
            # copytruncate now; the next poll reads the copy, then the new file, each once.
            del out[n:]
            s.rewind(before)
            self._rot.check_same(s, s.src.fstat(), force=True)
            return -1
        if consumed and s.size is not None and self._rot.copied_under_read(s, since, lambda: s.held(before)):
            # The same, when the new file holds all we knew of ours (a banner every file starts
            # with): only the copy logrotate just made tells.
            del out[n:]
            s.rewind(before)
            self._rot.copytruncated(s, since)
            return -1
        self._oversized += oversized
        if consumed:
            s.read_ns = time.time_ns()
            if s.offset >= s.opened_size:
                s.opened_size, s.opened_tail = -1, b""  # read past it: `tail` proves the position now
        if consumed and s.fp_len < FP_MAX:
            grow_fp(s)
        if consumed and blank and s.current:
            # The first bytes of a file we knew empty: if it was copied and truncated since, the
            # copy holds lines we never saw, and no identity of ours points to it.
            self._rot.first_bytes(since)
        self._bytes_read += consumed
        return consumed


def _unread(s: Stream) -> bool:
    """True when `s` has complete lines left to read (a partial last line does not count)."""
    if s.size is None:
        return not s.eof
    return s.offset < s.size and s.stalled != (s.offset, s.size)
