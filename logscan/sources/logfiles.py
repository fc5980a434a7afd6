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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from logscan.sources.identity import DONE_HISTORY, FP_MAX, Known, fingerprint, known_of, seen_of
from logscan.sources.reading import (
    COMPRESS_ERRORS,
    COMPRESSED,
    Stream,
    has,
    open_stream,
    whole,
)

# Rotated names of a plain path: .1 .01 .1.gz -20261129 -20261129.gz .20261129-073000.gz .2026-11-29
_ROTATED_SUFFIX: Final = re.compile(r"[.-][0-9][0-9._-]*(?:\.(?:gz|bz2|xz))?")
# A folder scan is skipped while the folder's mtime is unchanged, unless that mtime is this recent
# (coarse timestamps on some file systems could hide a change made in the same tick).
DIR_MTIME_SLACK_NS: Final = 2_000_000_000


# Pauses between looks at a folder logrotate may be changing (at most 0.75 s in all).
RELOOK_S: Final = (0.0, 0.05, 0.2, 0.5)


def dir_mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


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
        self.max_line = max_line
        self._clock = clock
        self._cache = DirCache()

    def open(self, path: str, offset: int | None) -> Stream:
        """Open `path` at `offset` (None: after the last complete line)."""
        return open_stream(path, offset, self._clock(), self.max_line)

    def live_paths(self) -> list[str]:
        """Live (uncompressed) files of this log, oldest name first; empty when none exists."""
        if not self.glob:
            return [self.pattern]
        dst = os.stat(self.dir)
        c = self._cache
        fresh = time.time_ns() - dst.st_mtime_ns < DIR_MTIME_SLACK_NS
        if fresh or dst.st_mtime_ns != c.mtime_ns or dst.st_ino != c.ino:
            names = sorted(n for n in os.listdir(self.dir)
                           if fnmatch.fnmatchcase(n, self.base) and not n.endswith(COMPRESSED))
            c.mtime_ns, c.ino, c.names = dst.st_mtime_ns, dst.st_ino, names
        return [os.path.join(self.dir, n) for n in c.names]

    def candidates(self) -> list[str]:
        """Files that may hold this log's earlier content (rotated, dated, compressed), live ones included."""
        return [p for p, _ in self.listing()]

    def listing(self) -> list[tuple[str, int]]:
        """The candidates with their inodes: two listings differ when logrotate moved a name
        between them, whatever the folder's mtime (coarse on some file systems) says."""
        out = []
        try:
            entries = list(os.scandir(self.dir))
        except OSError:
            return []  # the folder went away: nothing to recover from, and not worth failing a poll
        for e in entries:
            n = e.name
            if self.glob:
                ok = fnmatch.fnmatchcase(n, self.base) or any(
                    fnmatch.fnmatchcase(n, self.base + z) for z in COMPRESSED)
            else:
                ok = n == self.base or (n.startswith(self.base)
                                         and _ROTATED_SUFFIX.fullmatch(n, len(self.base)) is not None)
            if ok:
                out.append((os.path.join(self.dir, n), e.inode()))
        return out

    def looks(self) -> Iterator[list[tuple[str, int]]]:
        """Fresh listings, a pause (RELOOK_S) before each after the first: the caller looks at
        each until it stops, or the last one stands (logrotate may be moving names meanwhile)."""
        for pause in RELOOK_S:
            if pause:
                time.sleep(pause)
            yield self.listing()

    def locate(self, rec: Mapping[str, Any], cands: list[str], taken: set[tuple[int, int]],
               is_read: Callable[[Stream], bool]) -> Stream | None:
        """Find the file a saved record describes; logrotate may be renaming or compressing it as we
        look, so a miss looks again at a fresh listing (up to ~0.75 s). `is_read`: a file read to
        its end, never a copy of the live file."""
        seen = seen_of(rec)
        for pause in (*RELOOK_S, None):
            if pause:
                time.sleep(pause)
                cands = self.candidates()
            # A file that also holds what the saved one held past the offset, while logrotate may
            # still be moving it; at last, one holding the position alone (those bytes may have
            # been read after a truncate we had not seen yet).
            s = self._locate(rec, cands, taken, seen if pause is not None else None)
            if s is not None:
                if s.path == rec["path"] and rec.get("current") and not self.glob and s.size is not None:
                    s = self._copied_since(rec, s, cands, taken, is_read)
                taken.add((s.dev, s.ino))
                return s
        return None

    def _copied_since(self, rec: Mapping[str, Any], s: Stream, cands: list[str],
                      taken: set[tuple[int, int]], is_read: Callable[[Stream], bool]) -> Stream:
        """The live file `s` holds the saved position, but so may a copy: when every file starts
        alike (a banner), content cannot tell a copytruncate that happened while we were down. A
        copy made since the save (another inode, modified at or after the saved mtime) that holds
        the position is the file we were reading; the earliest such copy, as later ones are copies
        of later contents of the live file."""
        known = known_of(rec)
        offset = int(rec["offset"])
        since = int(rec.get("mtime_ns", 0))
        best: Stream | None = None
        for p in cands:
            # Plain copies only: an archive newer than the save may be logrotate compressing an
            # older file (delaycompress), and it too starts with the banner.
            if p == s.path or p.endswith(COMPRESSED):
                continue
            try:
                st = os.stat(p)
                if st.st_mtime_ns < since or (st.st_dev, st.st_ino) in taken:
                    continue
                c = self.open(p, 0)
            except COMPRESS_ERRORS:
                continue
            try:
                ok = ((c.dev, c.ino) not in taken and c.mtime_ns >= since
                      and c.size is not None and c.size >= offset and has(c, known)
                      and (best is None or c.mtime_ns < best.mtime_ns) and not is_read(c))
            except COMPRESS_ERRORS:
                ok = False
            if ok:
                if best is not None:
                    best.src.close()
                best = c
            else:
                c.src.close()
        if best is None:
            return s
        try:
            best.seek(offset)
        except COMPRESS_ERRORS:
            best.src.close()
            return s
        best.skipping = s.skipping
        s.src.close()
        return best

    def _locate(self, rec: Mapping[str, Any], cands: list[str], taken: set[tuple[int, int]],
                seen: Known | None) -> Stream | None:
        """Find the file a saved record describes, by fingerprint (and `seen`, what it held past the
        offset); its own path is tried first."""
        known = known_of(rec)
        offset = int(rec["offset"])
        path = str(rec["path"])
        saved_id = (rec.get("dev"), rec.get("ino"))
        # Only the live file's content moves to a plain file of another inode (copytruncate's
        # copy); a rotated file keeps its inode when renamed and gets a new one only compressed.
        # Else a banner-long position in it names every file that starts with the banner.
        copied = bool(rec.get("current")) or not isinstance(rec.get("ino"), int) or int(rec["ino"]) < 0
        # A rotated file read to its end when saved: its archive holds no more (late writes aside:
        # the last look takes any archive).
        ended = seen is not None and seen.size == offset and not rec.get("current")

        def order(p: str) -> tuple[int, int, int, float]:
            # Same inode first (a renamed file keeps it), then the saved path, plain before compressed.
            try:
                st = os.stat(p)
            except OSError:
                return (1, 1, 1, 0.0)
            return (0 if (st.st_dev, st.st_ino) == saved_id else 1, 0 if p == path else 1,
                    1 if p.endswith(COMPRESSED) else 0, -st.st_mtime)

        for p in sorted(cands, key=order):
            # Matched on the open file, then read from it: logrotate may rename or replace the
            # name while we look, but what matched is what is read.
            try:
                s = self.open(p, 0)
            except COMPRESS_ERRORS:
                continue
            live = p == self.pattern and not self.glob
            try:
                # Files already taken go by (dev, ino), not by name: logrotate may have moved
                # another file to a name we took a moment ago.
                # A rotated file is never the live file again: there, its inode is a new file's.
                ok = ((s.dev, s.ino) not in taken and (s.size is None or s.size >= offset)
                      and (s.size is None or copied or ((s.dev, s.ino) == saved_id and not live))
                      and has(s, known) and (seen is None or has(s, seen))
                      and (s.size is not None or not ended or whole(s).size == offset))
                if ok:
                    s.seek(offset)
            except COMPRESS_ERRORS:
                ok = False
            if not ok:
                s.src.close()
                continue
            s.skipping = bool(rec.get("skipping", False))
            return s
        return None

    def any_holds(self, cands: list[str], known: list[Known]) -> bool:
        """True when some candidate file holds one of `known`."""
        if not known:
            return False
        for p in cands:
            try:
                s = self.open(p, 0)
            except COMPRESS_ERRORS:
                continue
            try:
                if any(has(s, k) for k in known):
                    return True
            except COMPRESS_ERRORS:
                continue
            finally:
                s.src.close()
        return False

    def restart_how(self, rec: Mapping[str, Any], loc: Stream | None, live_st: os.stat_result) -> str:
        if self.glob:
            return "new-file"
        if (live_st.st_dev, live_st.st_ino) == (rec.get("dev"), rec.get("ino")):
            return "copytruncate" if loc is not None and not loc.src.compressed else "inode-reuse"
        if loc is None:
            return "new-file"
        return "rename"

    def intermediates(self, known: list[Known], since_ns: int, live_path: str, opened: list[Stream],
                      open_ids: set[tuple[int, int]] | None = None) -> list[Stream]:
        """Files rotated in while we were down, written after our last look: read them whole.

        mtime only pre-selects (compression resets it); the fingerprints of files already read decide.
        logrotate may be renaming and compressing as we look: a listing that changed under us, a
        file that vanished or an archive still being written makes us look again (up to ~0.75 s).
        """
        ids = set(open_ids or ()) | {(s.dev, s.ino) for s in opened}
        found: list[tuple[Stream, Known]] = []
        # Listed afresh: a listing taken earlier (the restart's) may predate renames.
        for listed in self.looks():
            for s, _ in found:
                s.src.close()
            found, unsettled = self._unknown([p for p, _ in listed], known, since_ns, live_path, ids)
            if not unsettled and self.listing() == listed:
                break
        out = []
        new = len(known)
        for s, k in sorted(found, key=lambda f: f[0].mtime_ns):
            if (s.dev, s.ino) in ids or any(kn.size == k.size and has(s, kn) for kn in known[new:]):
                # The same file under a second name, or a copy of one just taken: logrotate was
                # compressing, and the listing held both the archive and its original. A copy
                # holds all of it and nothing more: every archive holds a banner-only file.
                s.src.close()
                continue
            ids.add((s.dev, s.ino))
            opened.append(s)
            known.append(k)
            out.append(s)
        return out

    def _unknown(self, cands: list[str], known: list[Known], since_ns: int,
                 live_path: str, ids: set[tuple[int, int]]) -> tuple[list[tuple[Stream, Known]], bool]:
        """The files no fingerprint knows, open, each with its whole identity; and whether some file
        was in motion. Each is judged on the descriptor it is later read from, so a name logrotate
        moves meanwhile cannot swap one file for another."""
        found: list[tuple[Stream, Known]] = []
        unsettled = False
        for p in cands:
            # Open files are skipped by (dev, ino), never by name (logrotate moves names under us);
            # the live name is the current file's, whatever file it names now.
            if p == live_path:
                continue
            try:
                st = os.stat(p)  # a cheap first filter; the open file decides
            except OSError:
                unsettled = True  # renamed or removed since the listing
                continue
            if st.st_mtime_ns < since_ns or st.st_size == 0 or (st.st_dev, st.st_ino) in ids:
                continue
            try:
                s = self.open(p, 0)
            except COMPRESS_ERRORS:
                unsettled = unsettled or p.endswith(COMPRESSED)
                continue
            k = _judged(s, known, since_ns, ids)
            if isinstance(k, Known):
                found.append((s, k))
                continue
            s.src.close()
            unsettled = unsettled or k
        return found, unsettled

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
            with contextlib.suppress(*COMPRESS_ERRORS):
                s = self.open(p, 0)
                try:
                    if s.fp_len:
                        out.append(whole(s))
                finally:
                    s.src.close()
        return out


def _judged(s: Stream, known: list[Known], since_ns: int, ids: set[tuple[int, int]]) -> Known | bool:
    """The whole identity of an open file no identity knows; else whether it is unsettled (an
    archive still being written, judged again at the next look)."""
    if s.mtime_ns < since_ns or s.fp_len == 0 or (s.dev, s.ino) in ids:
        return False
    if s.size is not None and any(has(s, k) for k in known):
        # Of a file read to its end and closed, this inode holds more now: late lines, or a
        # new file that reused the inode and starts alike (a banner). Either way what lies
        # past that end was never read.
        ends = [k.size for k in known if (k.dev, k.ino) == (s.dev, s.ino) and k.size >= 0 and has(s, k)]
        if not ends or s.size <= max(ends):
            return False
        s.seek(max(ends))
    try:
        k = whole(s)  # an archive is read through: only a whole one is judged
    except COMPRESS_ERRORS:
        return True
    if s.fp_len < FP_MAX and s.size is None:
        # Its head was short when opened (being written?): judge it again on its whole head.
        head = s.src.read_at(0, FP_MAX)
        s.fp, s.fp_len = fingerprint(head), len(head)
        k = Known(s.fp, s.fp_len, k.size, k.end_fp)
    # An archive is of a file known only if it holds all of that file and nothing more: an open
    # archive known up to its offset (a banner, at offset 0) is held by every archive.
    if s.size is None and any(has(s, kn) and kn.size in (-1, k.size) for kn in known):
        return False
    return k
