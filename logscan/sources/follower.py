"""Follow one mail log through every rotation and return each complete line exactly once.

Design (docs/decisions/0002-tailer.md): binary reads, complete lines only; a file is identified
by a fingerprint of its first bytes (as fail2ban does), not by its inode alone; an old file is
kept open and drained after a rename; the checkpoint names every open file by fingerprint and
offset so a restart finds it again, even renamed or compressed.
"""

# The tailer works on str paths and raw descriptors (pread, fstat); pathlib would only wrap them.
# ruff: noqa: PTH100, PTH110, PTH116, PTH118, PTH119, PTH120, PTH208

from __future__ import annotations

import bz2
import contextlib
import errno
import fnmatch
import gzip
import hashlib
import lzma
import os
import re
import stat
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

CHECKPOINT_VERSION: Final = 1
FP_MAX: Final = 512  # bytes hashed from the start of a file: its identity
READ_CHUNK: Final = 1 << 20
DONE_HISTORY: Final = 16  # fingerprints of files read to the end, so a restart never re-reads them
COMPRESSED: Final = (".gz", ".bz2", ".xz")
# Rotated names of a plain path: .1 .01 .1.gz -20261129 -20261129.gz .20261129-073000.gz .2026-11-29
_ROTATED_SUFFIX: Final = re.compile(r"[.-][0-9][0-9._-]*(?:\.(?:gz|bz2|xz))?")
_COMPRESS_ERRORS: Final = (OSError, EOFError, zlib.error, lzma.LZMAError)
# A folder scan is skipped while the folder's mtime is unchanged, unless that mtime is this recent
# (coarse timestamps on some file systems could hide a change made in the same tick).
_DIR_MTIME_SLACK_NS: Final = 2_000_000_000

# Seam for fault injection in one unit test (permission errors cannot be provoked as root).
_sys_open: Callable[[str, int], int] = os.open

_Comp: TypeAlias = gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile


def fingerprint(head: bytes) -> str:
    """Identity of a file: hash of its first bytes."""
    return hashlib.blake2b(head, digest_size=16).hexdigest()


def is_glob(pattern: str) -> bool:
    """True when the pattern's file name holds wildcards."""
    return any(c in os.path.basename(pattern) for c in "*?[")


class _Source:
    """Random-access bytes of one open file; compressed files are read through their decompressor."""

    __slots__ = ("_comp", "_fd")

    def __init__(self, fd: int, comp: _Comp | None) -> None:
        self._fd = fd
        self._comp = comp

    @property
    def compressed(self) -> bool:
        return self._comp is not None

    def read_at(self, offset: int, n: int) -> bytes:
        if self._comp is None:
            return os.pread(self._fd, n, offset)
        if self._comp.tell() != offset:
            self._comp.seek(offset)
        return self._comp.read(n)

    def fstat(self) -> os.stat_result:
        return os.fstat(self._fd)

    def close(self) -> None:
        if self._comp is not None:
            with contextlib.suppress(*_COMPRESS_ERRORS):
                self._comp.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _open_source(path: str) -> tuple[_Source, os.stat_result]:
    # O_NONBLOCK: a FIFO or device put where a log should be must not hang the daemon.
    fd = _sys_open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL,
                          "not a regular file", path)
        comp: _Comp | None = None
        # The decompressors own a dup of the descriptor; _Source.close closes both.
        if path.endswith(".gz"):
            comp = gzip.GzipFile(fileobj=os.fdopen(os.dup(fd), "rb"), mode="rb")
        elif path.endswith(".bz2"):
            comp = bz2.BZ2File(os.fdopen(os.dup(fd), "rb"), mode="rb")
        elif path.endswith(".xz"):
            comp = lzma.LZMAFile(os.fdopen(os.dup(fd), "rb"), mode="rb")  # noqa: SIM115
    except BaseException:
        os.close(fd)
        raise
    return _Source(fd, comp), st


@dataclass(slots=True)
class _Stream:
    """One open file and how far into it we have returned lines."""

    path: str
    src: _Source
    dev: int
    ino: int
    offset: int
    fp: str
    fp_len: int
    size: int | None  # last known size; None for compressed files
    mtime_ns: int
    last_growth: float
    skipping: bool = False  # inside an over-long line, discarding up to its newline
    eof: bool = False  # compressed files only
    current: bool = False
    stalled: tuple[int, int | None] = (-1, None)  # (offset, size) where only a partial line was left

    def record(self) -> dict[str, Any]:
        return {"path": self.path, "dev": self.dev, "ino": self.ino, "offset": self.offset,
                "fp": self.fp, "fp_len": self.fp_len, "skipping": self.skipping, "current": self.current,
                "mtime_ns": self.mtime_ns}


@dataclass(frozen=True, slots=True)
class _Known:
    fp: str
    fp_len: int

    def matches(self, head: bytes) -> bool:
        return self.fp_len > 0 and len(head) >= self.fp_len and fingerprint(head[: self.fp_len]) == self.fp


@dataclass(slots=True)
class _DirCache:
    mtime_ns: int = -1
    ino: int = -1
    names: list[str] = field(default_factory=list)


class Follower:
    """Follows one configured log: a path, or a glob like /x/SMTP-Activity-*.log or /x/exim4/mainlog-*."""

    def __init__(self, name: str, pattern: str, *, start_at: Literal["end", "beginning"] = "end",
                 saved: Mapping[str, Any] | None = None, max_line: int = 65536,
                 retire_after: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        """`retire_after`: seconds an old file stays open once idle (late writes, CLOSED markers)."""
        if is_glob(os.path.dirname(pattern)):
            raise ValueError(f"wildcards are only allowed in the file name: {pattern!r}")
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self.name = name
        self.pattern = pattern
        self._dir = os.path.dirname(pattern) or "."
        self._base = os.path.basename(pattern)
        self._glob = is_glob(pattern)
        self._start_at = start_at
        self._max_line = max_line
        self._retire_after = retire_after
        self._clock = clock
        self._saved: Mapping[str, Any] | None = saved
        self._started = False
        self._waited = False  # the log did not exist at our first look: whatever appears later is new
        self._cur: _Stream | None = None
        self._old: list[_Stream] = []  # retiring files, oldest first; drained before _cur
        self._done: list[_Known] = []
        self._dircache = _DirCache()
        self._notes: list[tuple[str, dict[str, Any]]] = []
        self._outage = ""  # "missing" or "unreadable" during an outage: one note per outage
        self._up = False
        self._error = ""
        self._bytes_read = 0
        self._rotations = 0
        self._oversized = 0
        if saved is not None:
            problem = _saved_problem(saved)
            if problem:
                # A damaged state must not stop the daemon: say so and start as if for the first time.
                self._note("state_mismatch", reason=f"saved position unusable: {problem}")
                self._saved = None
            else:
                self._bytes_read = int(saved["bytes_read"])
                self._rotations = int(saved["rotations"])
                self._oversized = int(saved["oversized_lines"])
                self._done = [_Known(d["fp"], d["fp_len"]) for d in saved["done"]]

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
        return self._rotations

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
        return sum(max(0, s.size - s.offset) for s in self._streams()
                   if s.size is not None and s.stalled != (s.offset, s.size))

    @property
    def current_path(self) -> str:
        return self._cur.path if self._cur is not None else self.pattern

    def watch_dirs(self) -> set[str]:
        """Folders the watcher must watch for this log."""
        return {os.path.abspath(self._dir)}

    def drain_notes(self) -> list[tuple[str, dict[str, Any]]]:
        """State changes since the last call, as (event, fields) for structlog; never line content."""
        notes, self._notes = self._notes, []
        return notes

    def poll(self, max_bytes: int = 4 << 20) -> list[bytes]:
        """Complete new lines (without newline), in file order; never raises on I/O errors."""
        failed = False
        try:
            if not self._started:
                self._start()
            self._refresh()
        except _COMPRESS_ERRORS as exc:
            failed = True
            self._fail(exc)
        out: list[bytes] = []
        budget = max_bytes
        now = self._clock()
        for s in self._streams():
            if budget <= 0:
                break
            try:
                budget -= self._read(s, budget, out, now)
            except _COMPRESS_ERRORS as exc:
                if s.src.compressed:
                    # A damaged or half-written archive: give up on it, say so, go on with the rest.
                    self._note("log_read_error", path=s.path, error=_describe(exc), offset=s.offset)
                    s.eof = True
                    continue
                failed = True
                self._fail(exc)
                break  # file order: never read a newer file past an unread older one
        self._reap(now)
        if not failed and self._cur is not None:
            self._recover()
        elif not failed:
            self._fail(FileNotFoundError(errno.ENOENT, "no such file", self.pattern))
        return out

    def checkpoint(self) -> dict[str, Any]:
        """JSON-able position matching exactly the lines poll() has returned."""
        if not self._started and self._saved is not None:
            return dict(self._saved)  # nothing read yet: the saved position still holds
        return {
            "v": CHECKPOINT_VERSION,
            "pattern": self.pattern,
            "bytes_read": self._bytes_read,
            "rotations": self._rotations,
            "oversized_lines": self._oversized,
            "files": [s.record() for s in self._streams()],
            "done": [{"fp": k.fp, "fp_len": k.fp_len} for k in self._done],
            "waiting": self._waited and not self._started,
        }

    def close(self) -> None:
        """Close every open file; a later poll() resumes from this point."""
        if self._started:
            self._saved = self.checkpoint()
        for s in self._streams():
            s.src.close()
        self._old.clear()
        self._cur = None
        self._started = False

    # ----------------------------------------------------------------- errors and notes

    def _note(self, event: str, **fields: Any) -> None:
        self._notes.append((event, {"log": self.name, **fields}))

    def _fail(self, exc: BaseException) -> None:
        kind = "missing" if isinstance(exc, FileNotFoundError) else "unreadable"
        self._up = False
        self._error = _describe(exc)
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

    # ----------------------------------------------------------------- files

    def _streams(self) -> list[_Stream]:
        return [*self._old, self._cur] if self._cur is not None else list(self._old)

    def _new_stream(self, path: str, offset: int | None) -> _Stream:
        """Open `path`; offset None means "after the last complete line" (start_at=end)."""
        src, st = _open_source(path)
        try:
            head = src.read_at(0, FP_MAX)
            s = _Stream(path=path, src=src, dev=st.st_dev, ino=st.st_ino, offset=0, fp=fingerprint(head),
                        fp_len=len(head), size=None if src.compressed else st.st_size,
                        mtime_ns=st.st_mtime_ns, last_growth=self._clock())
            if offset is None:
                s.offset, s.skipping = self._end_offset(src, st.st_size)
            else:
                s.offset = offset
        except BaseException:
            src.close()
            raise
        return s

    def _end_offset(self, src: _Source, size: int) -> tuple[int, bool]:
        # Start after the last newline so a line being written now is returned whole later.
        span = min(size, self._max_line + 1)
        tail = src.read_at(size - span, span)
        i = tail.rfind(b"\n")
        if i >= 0:
            return size - span + i + 1, False
        if size <= self._max_line:
            return 0, False  # the whole file is one unfinished line
        return size, True

    def _live_paths(self) -> list[str]:
        """Live (uncompressed) files of this log, oldest name first; empty when none exists."""
        if not self._glob:
            return [self.pattern]
        dst = os.stat(self._dir)
        c = self._dircache
        fresh = time.time_ns() - dst.st_mtime_ns < _DIR_MTIME_SLACK_NS
        if fresh or dst.st_mtime_ns != c.mtime_ns or dst.st_ino != c.ino:
            names = sorted(n for n in os.listdir(self._dir)
                           if fnmatch.fnmatchcase(n, self._base) and not n.endswith(COMPRESSED))
            c.mtime_ns, c.ino, c.names = dst.st_mtime_ns, dst.st_ino, names
        return [os.path.join(self._dir, n) for n in c.names]

    def _candidates(self) -> list[str]:
        """Files that may hold this log's earlier content (rotated, dated, compressed), live ones included."""
        out = []
        try:
            names = os.listdir(self._dir)
        except OSError:
            return []  # the folder went away: nothing to recover from, and not worth failing a poll
        for n in names:
            if self._glob:
                ok = fnmatch.fnmatchcase(n, self._base) or any(
                    fnmatch.fnmatchcase(n, self._base + z) for z in COMPRESSED)
            else:
                ok = n == self._base or (n.startswith(self._base)
                                         and _ROTATED_SUFFIX.fullmatch(n, len(self._base)) is not None)
            if ok:
                out.append(os.path.join(self._dir, n))
        return out

    def _head(self, path: str) -> tuple[bytes, os.stat_result] | None:
        try:
            src, st = _open_source(path)
        except OSError:
            return None
        try:
            return src.read_at(0, FP_MAX), st
        except _COMPRESS_ERRORS:
            return None
        finally:
            src.close()

    def _locate(self, rec: Mapping[str, Any], cands: list[str], taken: set[str]) -> _Stream | None:
        """Find the file a saved record describes, by fingerprint; its own path is tried first."""
        known = _Known(str(rec["fp"]), int(rec["fp_len"]))
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
            got = self._head(p)
            if got is None:
                continue
            head, st = got
            compressed = p.endswith(COMPRESSED)
            if not compressed and st.st_size < offset:
                continue
            if not known.matches(head):
                continue
            try:
                s = self._new_stream(p, offset)
            except _COMPRESS_ERRORS:
                continue
            s.skipping = bool(rec.get("skipping", False))
            taken.add(p)
            return s
        return None

    # ----------------------------------------------------------------- start and restart

    def _start(self) -> None:
        saved = self._saved
        usable = (saved is not None and saved.get("v") == CHECKPOINT_VERSION
                  and saved.get("pattern") == self.pattern and isinstance(saved.get("files"), list))
        if saved is not None and not usable:
            self._note("state_mismatch", reason="saved position is for another pattern or version",
                       saved_pattern=str(saved.get("pattern", "")), pattern=self.pattern)
        if usable and saved is not None and not saved["files"]:
            # We were waiting for the log to appear: anything there now was created after our last look.
            usable = False
            self._waited = self._waited or bool(saved.get("waiting"))
        opened: list[_Stream] = []
        try:
            if usable:
                assert saved is not None
                self._resume(saved, opened)
            else:
                self._fresh(opened)
        except BaseException:
            for s in opened:
                s.src.close()
            self._old, self._cur = [], None
            raise
        self._started = True

    def _fresh(self, opened: list[_Stream]) -> None:
        live = self._live_paths()
        path = live[-1] if live else self.pattern
        try:
            s = self._new_stream(path, 0 if self._waited or self._start_at == "beginning" else None)
        except FileNotFoundError:
            self._waited = True
            raise
        opened.append(s)
        s.current = True
        self._cur = s
        self._remember_history(path)
        how = "appeared" if self._waited else "start-" + self._start_at
        self._note("log_opened", path=path, offset=s.offset, how=how)

    def _resume(self, saved: Mapping[str, Any], opened: list[_Stream]) -> None:
        records = [r for r in saved["files"] if isinstance(r, Mapping)]
        live = self._live_paths()
        cands = self._candidates()
        taken: set[str] = set()
        located: list[tuple[Mapping[str, Any], _Stream]] = []
        for r in records:
            if not r["fp_len"]:
                # A file that was empty has no identity (its inode may belong to another file by
                # now); whatever it received since is found below among the unknown newer files.
                continue
            s = self._locate(r, cands, taken)
            if s is None:
                self._note("state_mismatch", path=str(r.get("path")), offset=int(r.get("offset", 0)),
                           reason="no file has the saved fingerprint; its unread tail is lost")
                continue
            opened.append(s)
            located.append((r, s))
            if s.path != r.get("path"):
                self._note("log_found_rotated", saved_path=str(r.get("path")), path=s.path, offset=s.offset)
        saved_cur = next((r for r in reversed(records) if r.get("current")), None)
        cur_loc = next((s for r, s in located if r is saved_cur), None)
        live_path = live[-1] if live and os.path.exists(live[-1]) else None
        streams = [s for _, s in located]
        known = [_Known(str(r["fp"]), int(r["fp_len"])) for r in records] + self._done
        cur = cur_loc if live_path is not None and cur_loc is not None and cur_loc.path == live_path else None
        if saved_cur is not None and live_path is not None:
            # Files written after our last look that we never saw (rotated twice, or copied by
            # copytruncate while we knew the log only as empty) are read whole, oldest first.
            since = int(saved_cur.get("mtime_ns", 0))
            if cur_loc is not None:
                since = min(since, cur_loc.mtime_ns)
            streams += self._intermediates(cands, taken, known, since, live_path, opened)
        if cur is None and live_path is not None:
            got = self._head(live_path)
            if got is None:
                raise FileNotFoundError(errno.ENOENT, "live file vanished", live_path)
            head, live_st = got
            same = [s for s in streams if (s.dev, s.ino) == (live_st.st_dev, live_st.st_ino)]
            if same:
                # Already open under an older record (an empty file found by its inode): go on there.
                cur = same[0]
            elif any(k.matches(head) for k in known):
                # Already counted under another name (moved back?): never read it twice.
                self._note("state_mismatch", reason="live file matches a file already read", path=live_path)
                cur = self._new_stream(live_path, None)
            else:
                cur = self._new_stream(live_path, 0)
            if not any(s is cur for s in streams):
                opened.append(cur)
            if saved_cur is not None:
                self._rotations += 1
                self._note("log_rotated", how=self._restart_how(saved_cur, cur_loc, live_st),
                           path=live_path, old_path=str(saved_cur.get("path")), while_down=True)
            else:
                self._note("log_opened", path=live_path, offset=cur.offset, how="appeared")
        for s in streams:
            s.current = s is cur
        self._old = [s for s in streams if s is not cur]
        if cur is not None:
            cur.current = True
            self._cur = cur

    def _restart_how(self, rec: Mapping[str, Any], loc: _Stream | None, live_st: os.stat_result) -> str:
        if self._glob:
            return "new-file"
        if (live_st.st_dev, live_st.st_ino) == (rec.get("dev"), rec.get("ino")):
            return "copytruncate" if loc is not None and not loc.src.compressed else "inode-reuse"
        if loc is None:
            return "new-file"
        return "rename"

    def _intermediates(self, cands: list[str], taken: set[str], known: list[_Known], since_ns: int,
                       live_path: str, opened: list[_Stream]) -> list[_Stream]:
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
            got = self._head(p)
            if got is None or any(k.matches(got[0]) for k in known):
                continue
            found.append((st.st_mtime_ns, p))
        out = []
        for _, p in sorted(found):
            try:
                s = self._new_stream(p, 0)
            except _COMPRESS_ERRORS:
                continue
            opened.append(s)
            taken.add(p)
            known.append(_Known(s.fp, s.fp_len))
            out.append(s)
            self._note("log_found_rotated", saved_path="", path=p, offset=0)
        return out

    # ----------------------------------------------------------------- running: rotation checks

    def _refresh(self) -> None:
        live = self._live_paths()
        cur = self._cur
        if cur is None:
            if not live:
                raise FileNotFoundError(errno.ENOENT, "no such file", self.pattern)
            s = self._new_stream(live[-1], 0)  # appeared after we started: all of it is new
            s.current = True
            self._cur = s
            self._note("log_opened", path=s.path, offset=0, how="appeared")
            return
        if self._glob:
            newer = [p for p in live if os.path.basename(p) > os.path.basename(cur.path)]
            if newer:
                self._switch(newer, "new-file")
                return
        try:
            st = os.stat(cur.path)
        except FileNotFoundError:
            # Renamed away, new one not created yet: keep draining the file we hold.
            size = cur.src.fstat().st_size
            if size != cur.size:
                cur.size, cur.last_growth = size, self._clock()
            return
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a regular file", cur.path)
        if (st.st_dev, st.st_ino) != (cur.dev, cur.ino):
            how = "rename" if cur.src.fstat().st_nlink > 0 else "new-file"
            self._switch([cur.path], how)
            return
        self._check_same(cur, st)

    def _switch(self, paths: list[str], how: str) -> None:
        """The log continues in `paths` (oldest first): retire the current file, read them from 0."""
        old = self._cur
        assert old is not None
        new: list[_Stream] = []
        open_ids = {(s.dev, s.ino) for s in self._old}
        try:
            for p in paths:
                s = self._new_stream(p, 0)
                if (s.dev, s.ino) in open_ids:
                    s.src.close()
                    continue
                new.append(s)
        except OSError:
            for s in new:
                s.src.close()
            raise
        old.current = False
        old.last_growth = self._clock()
        self._old.append(old)
        self._cur = None
        # Bring the old file's identity up to date first (it may have been truncated before the
        # rename); _unseen must recognise its compressed copy by that identity.
        self._check_same(old, old.src.fstat())
        if not new:
            return
        *between, cur = new
        if not self._glob:
            # Rotated twice since the last poll? The file in between is read whole.
            self._old += self._unseen(old.mtime_ns, cur.path)
        self._old.extend(between)
        cur.current = True
        self._cur = cur
        self._rotations += 1
        self._note("log_rotated", how=how, path=cur.path, old_path=old.path, old_unread_bytes=max(
            0, (old.size or 0) - old.offset))

    def _check_same(self, cur: _Stream, st: os.stat_result) -> None:
        """Same file as before: did it grow, or was it truncated (copytruncate) or rewritten?"""
        changed = st.st_size != cur.size or st.st_mtime_ns != cur.mtime_ns
        if not changed:
            return  # idle: one stat, no read
        if st.st_size != cur.size:
            cur.last_growth = self._clock()
        was_empty, since = cur.fp_len == 0 and cur.offset == 0, cur.mtime_ns
        cur.size, cur.mtime_ns = st.st_size, st.st_mtime_ns
        head = cur.src.read_at(0, FP_MAX)
        same = len(head) >= cur.fp_len and fingerprint(head[: cur.fp_len]) == cur.fp
        if same and st.st_size >= cur.offset:
            if len(head) > cur.fp_len:
                cur.fp, cur.fp_len = fingerprint(head), len(head)
            if was_empty:
                # Content arrived in a file we only knew empty: if a copytruncate happened in
                # between, the first lines are in a copy that no fingerprint of ours points to.
                self._old += self._unseen(since, cur.path)
            return
        self._copytruncated(cur, head, since)

    def _copytruncated(self, cur: _Stream, head: bytes, since_ns: int) -> None:
        old = _Known(cur.fp, cur.fp_len)
        unread_from = cur.offset
        copy = None
        if old.fp_len > 0:
            for p in self._candidates():
                got = self._head(p)
                if got is None or (got[1].st_dev, got[1].st_ino) == (cur.dev, cur.ino):
                    continue
                if old.matches(got[0]) and (p.endswith(COMPRESSED) or got[1].st_size >= unread_from):
                    try:
                        copy = self._new_stream(p, unread_from)
                    except _COMPRESS_ERRORS:
                        continue
                    copy.skipping = cur.skipping
                    break
        if copy is not None:
            copy.last_growth = self._clock()
            self._old.append(copy)
        self._remember(old)
        cur.offset, cur.skipping = 0, False
        cur.fp, cur.fp_len = fingerprint(head), len(head)
        # Truncated more than once since the last poll: the copies in between are read whole.
        self._old += self._unseen(since_ns, cur.path)
        self._rotations += 1
        self._note("log_rotated", how="copytruncate", path=cur.path, old_offset=unread_from,
                   tail_from=copy.path if copy is not None else "")

    def _unseen(self, since_ns: int, live_path: str) -> list[_Stream]:
        """Rotated files written since `since_ns` that are neither open nor known: read them whole."""
        cands = self._candidates()
        open_now = self._streams()
        known = self._done + [_Known(s.fp, s.fp_len) for s in open_now]
        taken = {p for p in cands if _same_file(p, open_now)}
        return self._intermediates(cands, taken, known, since_ns, live_path, [])

    def _remember_history(self, live_path: str) -> None:
        """At a first start, what is already rotated is history: remember it so it is never read."""
        dated = []
        for p in self._candidates():
            if p == live_path:
                continue
            with contextlib.suppress(OSError):
                dated.append((os.stat(p).st_mtime_ns, p))
        for _, p in sorted(dated)[-DONE_HISTORY:]:
            got = self._head(p)
            if got is not None and got[0]:
                self._remember(_Known(fingerprint(got[0]), len(got[0])))

    def _remember(self, k: _Known) -> None:
        if k.fp_len > 0 and all(k.fp != d.fp for d in self._done):
            self._done.append(k)
            del self._done[:-DONE_HISTORY]

    def _reap(self, now: float) -> None:
        keep = []
        for s in self._old:
            idle = now - s.last_growth >= self._retire_after
            drained = s.eof if s.size is None else s.offset >= s.size
            if drained and (idle or s.size is None):
                s.src.close()
                self._remember(_Known(s.fp, s.fp_len))
                self._note("log_closed", path=s.path, offset=s.offset)
            else:
                keep.append(s)
        self._old = keep

    # ----------------------------------------------------------------- reading

    def _read(self, s: _Stream, budget: int, out: list[bytes], now: float) -> int:
        """Append complete lines of `s` to `out`, up to about `budget` bytes; returns bytes consumed."""
        if not s.current and s.size is not None:
            # An old file can still be truncated or rewritten (two rotations between polls).
            self._check_same(s, s.src.fstat())
        consumed = 0
        max_line = self._max_line
        while consumed < budget:
            if s.size is not None and s.offset >= s.size:
                break
            # The first read of a call may exceed the budget to fit one whole line; later ones may not.
            first = max(min(budget, READ_CHUNK), max_line + 1)
            want = min(budget - consumed, READ_CHUNK) if consumed else first
            data = s.src.read_at(s.offset, want)
            if not data:
                if s.size is None:
                    s.eof = True
                s.stalled = (s.offset, s.size)  # shorter than its last stat said: look again next poll
                break
            if s.skipping:
                i = data.find(b"\n")
                step = len(data) if i < 0 else i + 1
                s.skipping = i < 0
                s.offset += step
                consumed += step
                continue
            end = data.rfind(b"\n")
            if end < 0:
                if len(data) > max_line:
                    out.append(data[:max_line])
                    self._oversized += 1
                    s.offset += max_line
                    consumed += max_line
                    s.skipping = True
                    continue
                finished = not s.current and (s.size is None or now - s.last_growth >= self._retire_after)
                if finished and len(data) < want:
                    # An old file that ends without a newline will never get one: its last line is whole.
                    out.append(_strip_cr(data))
                    s.offset += len(data)
                    consumed += len(data)
                elif len(data) < want:
                    s.stalled = (s.offset, s.size)  # only a partial line is left at the end
                # else: the budget ran out inside a line; the next poll goes on from here
                break
            block = data[:end]
            lines = block.split(b"\n")
            if b"\r" in block:
                lines = [_strip_cr(x) for x in lines]
            if len(block) > max_line and max(map(len, lines)) > max_line:
                self._oversized += sum(len(x) > max_line for x in lines)
                lines = [x[:max_line] for x in lines]
            out += lines
            s.offset += end + 1
            consumed += end + 1
        if consumed and s.fp_len < FP_MAX:
            self._grow_fp(s)
        self._bytes_read += consumed
        return consumed

    def _grow_fp(self, s: _Stream) -> None:
        # A file opened while (nearly) empty gets its real identity once it has content.
        head = s.src.read_at(0, FP_MAX)
        if len(head) > s.fp_len and fingerprint(head[: s.fp_len]) == s.fp:
            s.fp, s.fp_len = fingerprint(head), len(head)


_RECORD_TYPES: Final = {"path": str, "dev": int, "ino": int, "offset": int, "fp": str, "fp_len": int,
                        "skipping": bool, "current": bool, "mtime_ns": int}


def _saved_problem(saved: Mapping[str, Any]) -> str:
    """Why a saved checkpoint cannot be used as-is; "" when it can."""
    if not isinstance(saved, Mapping):
        return "not an object"
    for key in ("bytes_read", "rotations", "oversized_lines"):
        if not isinstance(saved.get(key), int) or saved[key] < 0:
            return f"{key} is not a count"
    files, done = saved.get("files"), saved.get("done")
    if not isinstance(files, list) or not isinstance(done, list):
        return "files/done are not lists"
    for rec in files:
        if not isinstance(rec, Mapping):
            return "a file record is not an object"
        for key, typ in _RECORD_TYPES.items():
            if not isinstance(rec.get(key), typ):
                return f"file record field {key!r} missing or not {typ.__name__}"
        if rec["offset"] < 0 or rec["fp_len"] < 0:
            return "negative offset"
    for d in done:
        if not (isinstance(d, Mapping) and isinstance(d.get("fp"), str) and isinstance(d.get("fp_len"), int)):
            return "a done record is malformed"
    return ""


def _same_file(path: str, streams: list[_Stream]) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return any((st.st_dev, st.st_ino) == (s.dev, s.ino) for s in streams)


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{type(exc).__name__}: {exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc}"
