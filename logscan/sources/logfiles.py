"""Where a log's content is: its live file(s), the rotated names beside them, and which of those
is the file a checkpoint or a fingerprint points to (rename, dateext, compression, globs).
"""

# The follower works on str paths; pathlib would only wrap them.
# ruff: noqa: PTH116, PTH118, PTH119, PTH120, PTH208

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from logscan.sources.identity import DONE_HISTORY, Known, fingerprint
from logscan.sources.reading import COMPRESS_ERRORS, COMPRESSED, Stream, open_stream, read_head

# Rotated names of a plain path: .1 .01 .1.gz -20261129 -20261129.gz .20261129-073000.gz .2026-11-29
_ROTATED_SUFFIX: Final = re.compile(r"[.-][0-9][0-9._-]*(?:\.(?:gz|bz2|xz))?")
# A folder scan is skipped while the folder's mtime is unchanged, unless that mtime is this recent
# (coarse timestamps on some file systems could hide a change made in the same tick).
_DIR_MTIME_SLACK_NS: Final = 2_000_000_000


def is_glob(pattern: str) -> bool:
    """True when the pattern's file name holds wildcards."""
    return any(c in os.path.basename(pattern) for c in "*?[")


@dataclass(slots=True)
class DirCache:
    mtime_ns: int = -1
    ino: int = -1
    names: list[str] = field(default_factory=list)


class LogFiles:
    """The files of one configured log: a path, or a glob like /x/SMTP-Activity-*.log."""

    def __init__(self, pattern: str, max_line: int, clock: Callable[[], float]) -> None:
        if is_glob(os.path.dirname(pattern)):
            raise ValueError(f"wildcards are only allowed in the file name: {pattern!r}")
        self.pattern = pattern
        self.dir = os.path.dirname(pattern) or "."
        self.base = os.path.basename(pattern)
        self.glob = is_glob(pattern)
        self._max_line = max_line
        self._clock = clock
        self._cache = DirCache()

    def open(self, path: str, offset: int | None) -> Stream:
        """Open `path` at `offset` (None: after the last complete line)."""
        return open_stream(path, offset, self._clock(), self._max_line)

    def live_paths(self) -> list[str]:
        """Live (uncompressed) files of this log, oldest name first; empty when none exists."""
        if not self.glob:
            return [self.pattern]
        dst = os.stat(self.dir)
        c = self._cache
        fresh = time.time_ns() - dst.st_mtime_ns < _DIR_MTIME_SLACK_NS
        if fresh or dst.st_mtime_ns != c.mtime_ns or dst.st_ino != c.ino:
            names = sorted(n for n in os.listdir(self.dir)
                           if fnmatch.fnmatchcase(n, self.base) and not n.endswith(COMPRESSED))
            c.mtime_ns, c.ino, c.names = dst.st_mtime_ns, dst.st_ino, names
        return [os.path.join(self.dir, n) for n in c.names]

    def candidates(self) -> list[str]:
        """Files that may hold this log's earlier content (rotated, dated, compressed), live ones included."""
        out = []
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []  # the folder went away: nothing to recover from, and not worth failing a poll
        for n in names:
            if self.glob:
                ok = fnmatch.fnmatchcase(n, self.base) or any(
                    fnmatch.fnmatchcase(n, self.base + z) for z in COMPRESSED)
            else:
                ok = n == self.base or (n.startswith(self.base)
                                         and _ROTATED_SUFFIX.fullmatch(n, len(self.base)) is not None)
            if ok:
                out.append(os.path.join(self.dir, n))
        return out

    def locate(self, rec: Mapping[str, Any], cands: list[str], taken: set[str]) -> Stream | None:
        """Find the file a saved record describes, by fingerprint; its own path is tried first."""
        known = Known(str(rec["fp"]), int(rec["fp_len"]))
        offset = int(rec["offset"])
        path = str(rec["path"])

        def order(p: str) -> tuple[int, int, float]:
            try:
                mtime = os.stat(p).st_mtime
            except OSError:
                mtime = 0.0
            return (0 if p == path else 1, 1 if p.endswith(COMPRESSED) else 0, -mtime)

        for p in sorted(cands, key=order):
            if p in taken:
                continue
            got = read_head(p)
            if got is None:
                continue
            head, st = got
            compressed = p.endswith(COMPRESSED)
            if not compressed and st.st_size < offset:
                continue
            if not known.matches(head):
                continue
            try:
                s = self.open(p, offset)
            except COMPRESS_ERRORS:
                continue
            s.skipping = bool(rec.get("skipping", False))
            taken.add(p)
            return s
        return None

    def restart_how(self, rec: Mapping[str, Any], loc: Stream | None, live_st: os.stat_result) -> str:
        if self.glob:
            return "new-file"
        if (live_st.st_dev, live_st.st_ino) == (rec.get("dev"), rec.get("ino")):
            return "copytruncate" if loc is not None and not loc.src.compressed else "inode-reuse"
        if loc is None:
            return "new-file"
        return "rename"

    def intermediates(self, cands: list[str], taken: set[str], known: list[Known], since_ns: int,
                      live_path: str, opened: list[Stream]) -> list[Stream]:
        """Files rotated in while we were down, written after our last look: read them whole.

        mtime only pre-selects (compression resets it); the fingerprints of files already read decide.
        """
        found: list[tuple[int, str]] = []
        for p in cands:
            if p in taken or p == live_path:
                continue
            try:
                st = os.stat(p)
            except OSError:
                continue
            if st.st_mtime_ns < since_ns or st.st_size == 0:
                continue
            got = read_head(p)
            if got is None or any(k.matches(got[0]) for k in known):
                continue
            found.append((st.st_mtime_ns, p))
        out = []
        for _, p in sorted(found):
            try:
                s = self.open(p, 0)
            except COMPRESS_ERRORS:
                continue
            opened.append(s)
            taken.add(p)
            known.append(Known(s.fp, s.fp_len))
            out.append(s)
        return out

    def history(self, live_path: str) -> list[Known]:
        """At a first start, what is already rotated is history: the files never to read."""
        dated = []
        for p in self.candidates():
            if p == live_path:
                continue
            with contextlib.suppress(OSError):
                dated.append((os.stat(p).st_mtime_ns, p))
        out = []
        for _, p in sorted(dated)[-DONE_HISTORY:]:
            got = read_head(p)
            if got is not None and got[0]:
                out.append(Known(fingerprint(got[0]), len(got[0])))
        return out
