"""Reading one open file: plain or compressed bytes, complete lines only, CR and over-long lines.

No decisions about which file to read live here (rotation.py), nor what a file is (identity.py).
"""

# The follower works on str paths and raw descriptors (pread, fstat); pathlib would only wrap them.

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import lzma
import os
import stat
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final, TypeAlias

from logscan.sources.identity import FP_MAX, Known, fingerprint

READ_CHUNK: Final = 1 << 20
RECENT: Final = 1 << 16  # bytes kept of what was read last: recognises a copy ending a little before us
ENDS_SAVED: Final = 64  # line ends of the current file saved with its position (see line_ends)
COMPRESSED: Final = (".gz", ".bz2", ".xz")
COMPRESS_ERRORS: Final = (OSError, EOFError, zlib.error, lzma.LZMAError)

# Seam for fault injection in one unit test (permission errors cannot be provoked as root).
_sys_open: Callable[[str, int], int] = os.open

_Comp: TypeAlias = gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile


class FileSource:
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
            with contextlib.suppress(*COMPRESS_ERRORS):
                self._comp.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)


def open_source(path: str) -> tuple[FileSource, os.stat_result]:
    # O_NONBLOCK: a FIFO or device put where a log should be must not hang the daemon.
    fd = _sys_open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL,
                          "not a regular file", path)
        comp: _Comp | None = None
        # The decompressors own a dup of the descriptor; FileSource.close closes both.
        if path.endswith(".gz"):
            comp = gzip.GzipFile(fileobj=os.fdopen(os.dup(fd), "rb"), mode="rb")
        elif path.endswith(".bz2"):
            comp = bz2.BZ2File(os.fdopen(os.dup(fd), "rb"), mode="rb")
        elif path.endswith(".xz"):
            comp = lzma.LZMAFile(os.fdopen(os.dup(fd), "rb"), mode="rb")  # noqa: SIM115
    except BaseException:
        os.close(fd)
        raise
    return FileSource(fd, comp), st


# A stream's reading position: offset, tail, recent, skipping, stalled (Stream.mark).
Mark = tuple[int, bytes, bytes, bool, tuple[int, int | None]]


@dataclass(slots=True)
class Stream:
    """One open file and how far into it we have returned lines."""

    path: str
    src: FileSource
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
    saved_offset: int = -1  # offset in the last checkpoint known to be on disk
    tail: bytes = b""  # the (up to FP_MAX) bytes just before `offset`: what proves a position
    recent: bytes = b""  # the (up to RECENT) bytes just before `offset` (see ends_within)
    read_ns: int = 0  # wall clock (ns) after the last read that returned bytes (see ends_within)
    # Size and last (up to FP_MAX) bytes when opened at 0 and not yet read that far: until we
    # have read past them, they are what tells a copytruncate from growth (see intact).
    opened_size: int = -1
    opened_tail: bytes = b""

    def advance(self, chunk: bytes) -> None:
        """`chunk` was consumed: move the offset past it."""
        self.offset += len(chunk)
        self.tail = (self.tail + chunk[-FP_MAX:])[-FP_MAX:]
        self.recent = (self.recent + chunk[-RECENT:])[-RECENT:]

    def known(self, *, inode: bool = False) -> Known:
        """This file's content up to the offset, as an identity (identity.py); with `inode`, of
        this file only (one read to its end), else of any file holding that content."""
        dev, ino = (self.dev, self.ino) if inode else (-1, -1)
        return Known(self.fp, self.fp_len, self.offset, fingerprint(self.tail), dev, ino)

    def mark(self) -> Mark:
        """Where reading stands, for rewind() and held()."""
        return self.offset, self.tail, self.recent, self.skipping, self.stalled

    def rewind(self, mark: Mark) -> None:
        """Forget what was read since mark()."""
        self.offset, self.tail, self.recent, self.skipping, self.stalled = mark

    def held(self, mark: Mark | None = None) -> Known:
        """What we know this file holds (or held at `mark`): up to the offset, or, opened and not
        read that far, all it held when opened."""
        offset, tail = (self.offset, self.tail) if mark is None else mark[:2]
        if self.opened_size > offset:
            return Known(self.fp, self.fp_len, self.opened_size, fingerprint(self.opened_tail))
        return Known(self.fp, self.fp_len, offset, fingerprint(tail))

    def record(self) -> dict[str, Any]:
        rec = {"path": self.path, "dev": self.dev, "ino": self.ino, "offset": self.offset,
               "fp": self.fp, "fp_len": self.fp_len, "skipping": self.skipping, "current": self.current,
               "mtime_ns": self.mtime_ns, "end_fp": fingerprint(self.tail)}
        if self.current and self.size is not None:
            rec["ends"], rec["read_ns"] = line_ends(self), self.read_ns
        if self.size is not None and (self.size > self.offset or self.size == self.offset > 0):
            # Bytes we know it held past the offset: a file that starts alike and took its inode
            # or name (inode reuse, a banner) does not hold them (LogFiles.locate). Or that it
            # ended there: of the archives that start alike, its own holds no more.
            n = min(self.size, FP_MAX)
            with contextlib.suppress(OSError):
                rec["seen_fp"], rec["seen_size"] = fingerprint(self.src.read_at(self.size - n, n)), self.size
        return rec

    def seek(self, offset: int) -> None:
        """Go to `offset` (a restart, or start_at = end), reading the bytes before it as `tail`."""
        n = min(offset, FP_MAX)
        self.offset = offset
        self.tail = self.recent = self.src.read_at(offset - n, n) if n else b""
        if offset >= self.opened_size:
            self.opened_size, self.opened_tail = -1, b""

    def mark_opened(self) -> None:
        """Remember what the (plain) file holds now, none of it read yet (see intact)."""
        size = self.src.fstat().st_size
        n = min(size, FP_MAX)
        self.opened_size, self.opened_tail = (size, self.src.read_at(size - n, n)) if n else (-1, b"")


def open_stream(path: str, offset: int | None, now: float, max_line: int) -> Stream:
    """Open `path`; offset None means "after the last complete line" (start_at=end)."""
    src, st = open_source(path)
    try:
        head = src.read_at(0, FP_MAX)
        s = Stream(path=path, src=src, dev=st.st_dev, ino=st.st_ino, offset=0, fp=fingerprint(head),
                   fp_len=len(head), size=None if src.compressed else st.st_size,
                   mtime_ns=st.st_mtime_ns, last_growth=now)
        if offset is None:
            at, s.skipping = end_offset(src, st.st_size, max_line)
            s.seek(at)
        elif offset:
            s.seek(offset)
        elif not src.compressed:
            s.mark_opened()
    except BaseException:
        src.close()
        raise
    return s


def has(s: Stream, k: Known) -> bool:
    """True when the open file `s` is the content `k` describes, or begins with it: `holds`, asked
    of a file we keep open, so that what matched is what is read even if logrotate renames, replaces
    or compresses the name meanwhile. A damaged or half-written archive matches nothing."""
    try:
        if s.size is not None and (s.dev, s.ino) != (k.dev, k.ino):
            # Another plain file: a file read to its end is never found again under another inode
            # by content (files may start alike: a banner); an exact copy of known bytes is.
            if k.exact and (s.src.fstat().st_size != k.size or (k.before_ns and s.mtime_ns > k.before_ns)):
                return False
            if not k.exact and k.ino >= 0:
                return False
        if not k.matches(s.src.read_at(0, FP_MAX)):
            return False
        if k.size < 0 or not k.end_fp:
            return True  # an identity saved by an older version: the head alone
        if s.size is not None and s.src.fstat().st_size < k.size:
            return False
        n = min(k.size, FP_MAX)
        return fingerprint(s.src.read_at(k.size - n, n)) == k.end_fp
    except COMPRESS_ERRORS:
        return False


def ends_within(s: Stream, cur: Stream) -> bool:
    """True when the open plain file `s` starts as `cur` did and ends inside the bytes `cur` read
    last: a copy logrotate made a moment before we read on (copytruncate), already read by us."""
    if s.size is None or not cur.fp_len:
        return False
    size = s.src.fstat().st_size
    start = cur.offset - len(cur.recent)
    i = size - start
    m = min(i, FP_MAX)
    if size >= cur.offset or m <= 0:
        return False
    if s.src.fstat().st_mtime_ns > cur.read_ns:
        # Written after our last read: a copy of a later version of the file (truncated, then
        # copied again, before we looked), which may start byte for byte as ours did (a banner).
        return False
    if size < cur.fp_len:  # shorter than our head: compared whole, if we still have its start
        return start == 0 and s.src.read_at(0, size) == cur.recent[:size]
    if fingerprint(s.src.read_at(0, cur.fp_len)) != cur.fp:
        return False
    return s.src.read_at(size - m, m) == cur.recent[i - m:i]


def line_ends(s: Stream) -> list[list[int | str]]:
    """[offset, hash of the FP_MAX bytes before it] of the last ENDS_SAVED line ends before the
    offset, from what we read last: where a copytruncate copy of lines we read can end, saved so
    that a restart knows that copy as read (ends_within does this while running)."""
    recent = s.recent[len(s.recent) - min(s.offset, len(s.recent)):]
    base = s.offset - len(recent)
    out: list[list[int | str]] = []
    pos = recent.rfind(b"\n", 0, len(recent) - 1)
    while pos >= 0 and len(out) < ENDS_SAVED:
        e = pos + 1
        n = min(base + e, FP_MAX)
        if e < n:
            break  # the bytes before this end are no longer in `recent`
        out.append([base + e, fingerprint(recent[e - n:e])])
        pos = recent.rfind(b"\n", 0, pos)
    return out


def to_end(s: Stream, max_line: int) -> None:
    """Move `s` after its last complete line (start_at = end)."""
    at, s.skipping = end_offset(s.src, s.src.fstat().st_size, max_line)
    s.seek(at)


def intact(s: Stream, offset: int, tail: bytes) -> bool:
    """True when a plain file still holds what we knew of it before a read from `offset`: its first
    bytes and `tail`, the bytes before `offset`. False: it was truncated (copytruncate) and rewritten
    since our last look, so what the read returned may be the next file's bytes, not ours."""
    if s.size is None:
        return True  # compressed files are never rewritten in place
    if s.fp_len:
        head = s.src.read_at(0, s.fp_len)
        if len(head) < s.fp_len or fingerprint(head) != s.fp:
            return False
    if tail and s.src.read_at(offset - len(tail), len(tail)) != tail:
        return False
    # Nothing read before `offset` can tell (a file read from its start whose first bytes every
    # file shares, a banner): the bytes it held when we opened it can.
    n = len(s.opened_tail)
    return s.opened_size <= offset or s.src.read_at(s.opened_size - n, n) == s.opened_tail


def whole(s: Stream) -> Known:
    """The identity of all of `s` as it is now (a compressed file is read through once)."""
    if s.size is not None:
        size = s.src.fstat().st_size
    else:
        size = 0
        while chunk := s.src.read_at(size, READ_CHUNK):
            size += len(chunk)
    n = min(size, FP_MAX)
    return Known(s.fp, s.fp_len, size, fingerprint(s.src.read_at(size - n, n)), s.dev, s.ino)


def identity(s: Stream) -> Known:
    """An open plain file is known by all of its bytes, so that only a copy of exactly them (plain
    or compressed by logrotate) matches, never a file that starts alike; a compressed one up to the
    offset."""
    return replace(whole(s), exact=True) if s.size is not None else s.known(inode=True)


def end_offset(src: FileSource, size: int, max_line: int) -> tuple[int, bool]:
    """Offset after the last complete line, and whether it falls inside an over-long line."""
    # Start after the last newline so a line being written now is returned whole later.
    span = min(size, max_line + 1)
    tail = src.read_at(size - span, span)
    i = tail.rfind(b"\n")
    if i >= 0:
        return size - span + i + 1, False
    if size <= max_line:
        return 0, False  # the whole file is one unfinished line
    return size, True


def read_lines(s: Stream, budget: int, out: list[bytes], now: float, max_line: int,
               retire_after: float, blocks: bool = False) -> tuple[int, int]:
    """Append complete lines of `s` to `out`, up to about `budget` bytes.

    With `blocks`, each item of `out` is one or more lines, each ending in "\n": the same
    lines joined, without a Python object per line (the daemon's hot path), a CR before "\n"
    kept as `scan` keeps it (parsers drop it; a line's length counts it).
    Returns (bytes consumed, lines cut to max_line).
    """
    consumed = 0
    oversized = 0
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
            s.advance(data[:step])
            consumed += step
            continue
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) > max_line:
                out.append(data[:max_line] + b"\n" if blocks else data[:max_line])
                oversized += 1
                s.advance(data[:max_line])
                consumed += max_line
                s.skipping = True
                continue
            finished = not s.current and (s.size is None or now - s.last_growth >= retire_after)
            if finished and len(data) < want:
                # An old file that ends without a newline will never get one: its last line is whole.
                out.append(strip_cr(data) + b"\n" if blocks else strip_cr(data))
                s.advance(data)
                consumed += len(data)
            elif len(data) < want:
                s.stalled = (s.offset, s.size)  # only a partial line is left at the end
            # else: the budget ran out inside a line; the next poll goes on from here
            break
        if blocks and _short_lines(data, end, max_line):
            # The bytes as they are, a CRLF line's CR included: as `scan` reads a file (parsers
            # drop it), and stripping it cost more than parsing a MailEnable log.
            run = data[: end + 1] if end + 1 < len(data) else data
            out.append(run)
            s.advance(run)  # never `offset +=` alone: the identity of the read part follows the offset
            consumed += end + 1
            continue
        block = data[:end]
        lines = block.split(b"\n")
        if b"\r" in block and not blocks:
            lines = [strip_cr(x) for x in lines]
        if len(block) > max_line and max(map(len, lines)) > max_line:
            oversized += sum(len(x) > max_line for x in lines)
            lines = [x[:max_line] for x in lines]
        if blocks:
            out.append(b"\n".join(lines) + b"\n")
        else:
            out += lines
        s.advance(data[: end + 1])
        consumed += end + 1
    return consumed, oversized


def _short_lines(data: bytes, end: int, max_line: int) -> bool:
    """True when no line of data[:end] can be longer than max_line (False may be wrong: then
    the caller looks line by line). Any line longer than max_line holds a whole aligned
    window of `step` bytes, which then holds no newline."""
    if end <= max_line:
        return True
    step = (max_line + 2) // 2
    find = data.find
    return all(find(b"\n", i, i + step) >= 0 for i in range(0, end - step + 1, step))


def grow_fp(s: Stream) -> None:
    """A file opened while (nearly) empty gets its real identity once it has content."""
    head = s.src.read_at(0, FP_MAX)
    if len(head) > s.fp_len and fingerprint(head[: s.fp_len]) == s.fp:
        s.fp, s.fp_len = fingerprint(head), len(head)


def strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def describe(exc: BaseException) -> str:
    """An OS error as the operator wants to read it: type, reason, path."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{type(exc).__name__}: {exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc}"


def as_block(lines: list[bytes]) -> list[bytes]:
    """Lines (without newline) as one run of lines, each ending in "\n" (poll's `blocks` form)."""
    return [b"\n".join(lines) + b"\n"] if lines else []
