"""Which file is which: a file's identity, and the records a checkpoint keeps of them.

The rule (docs/decisions/0013-crash-safety-and-identity.md), after Filebeat (inode + device,
optional head fingerprint) and Vector (checksum of the first bytes): inodes alone fail on
copies, compression and reuse; a head hash alone fails on files that start alike. So:

- a saved position names the file whose first FP_MAX bytes *and* the FP_MAX bytes just before
  the saved offset (`end_fp`) match, size >= offset; same (dev, ino) first, then the saved path;
- a file read to the end is known by its size, the hash of its last bytes and its (dev, ino):
  another file is "already read" only if it is that inode, or a compressed file holding all of
  that content (its archive); a plain file of another inode that starts alike is another file,
  even when it holds all of those bytes (every file starting with the same banner does);
- an open plain file is known by all of its current bytes: only a plain copy of exactly those
  bytes (copytruncate, copy made and truncate pending) or an archive of them matches it;
- a saved position never declares another file already read.

A saved position also holds what its file held past the offset when saved; a file that starts
alike and took the name or inode does not. Files byte-identical up to the saved offset cannot
be told apart by content: the saved inode wins, unless that inode is still the live file and a
plain copy of it made since the save (another inode, modified after the saved mtime) also holds
the position: then logrotate copied and truncated it while we were down, and the earliest such
copy continues what we read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, Final, Literal

import msgspec

CHECKPOINT_VERSION: Final = 1
FP_MAX: Final = 512  # bytes hashed from the start of a file: its identity
DONE_HISTORY: Final = 16  # fingerprints of files read to the end, so a restart never re-reads them


def fingerprint(head: bytes) -> str:
    """Identity of a file: hash of its first bytes."""
    return hashlib.blake2b(head, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Known:
    """A file seen before, by the hash of its first `fp_len` bytes."""

    fp: str
    fp_len: int
    size: int = -1  # bytes of the file this identity covers; -1: the head alone (older state)
    end_fp: str = ""  # hash of the (up to FP_MAX) bytes before `size`
    # The file's (dev, ino); -1: content alone (older state, or what we read of a file that
    # logrotate copied elsewhere, which only content can find).
    dev: int = -1
    ino: int = -1
    exact: bool = False  # an open file's bytes: a plain copy must hold exactly these (never saved)
    before_ns: int = 0  # a copy of them was written no later than this (0: any time; never saved)

    def record(self) -> dict[str, Any]:
        return {"fp": self.fp, "fp_len": self.fp_len, "size": self.size, "end_fp": self.end_fp,
                "dev": self.dev, "ino": self.ino}

    def content(self) -> Known:
        """The same bytes in whichever file holds them (a copy of another inode included)."""
        return replace(self, dev=-1, ino=-1)

    def matches(self, head: bytes) -> bool:
        """The head agrees (a first filter; reading.has also checks the bytes before `size`)."""
        return self.fp_len > 0 and len(head) >= self.fp_len and fingerprint(head[: self.fp_len]) == self.fp


def known_of(rec: Mapping[str, Any]) -> Known:
    """The identity a checkpoint's file record gives: its head, and the bytes before its offset."""
    return Known(str(rec["fp"]), int(rec["fp_len"]), int(rec["offset"]), str(rec.get("end_fp", "")))


def seen_of(rec: Mapping[str, Any]) -> Known | None:
    """What a file record's file held past its offset when saved, or that it ended there (size =
    offset); None: nothing known."""
    size, fp = int(rec.get("seen_size", 0)), str(rec.get("seen_fp", ""))
    if size < int(rec["offset"]) or not fp:
        return None
    return Known(str(rec["fp"]), int(rec["fp_len"]), size, fp)


def ends_of(rec: Mapping[str, Any]) -> list[Known]:
    """Copies of a file record's content that end at one of its saved line ends before the offset
    (reading.line_ends), written before our last read of it: logrotate's copy of lines we read."""
    fp, fp_len, read_ns = str(rec["fp"]), int(rec["fp_len"]), int(rec.get("read_ns", 0))
    if not read_ns:
        return []
    # An end within the head: its hash covers the copy's every byte, so it is the head's too.
    return [Known(fp, fp_len, e, h, exact=True, before_ns=read_ns) if e >= fp_len
            else Known(h, e, e, h, exact=True, before_ns=read_ns)
            for e, h in ((int(e), str(h)) for e, h in rec.get("ends", ())) if e > 0]


def remember(done: list[Known], k: Known) -> None:
    """Add `k` to the files read to the end, keeping the newest DONE_HISTORY."""
    if k.fp_len > 0 and k not in done:  # files that start alike are still different files
        done.append(k)
        del done[:-DONE_HISTORY]


Count = Annotated[int, msgspec.Meta(ge=0)]


class FileRecord(msgspec.Struct):
    """One open file in a checkpoint (reading.Stream.record)."""

    path: str
    dev: Count
    ino: Count
    offset: Count
    fp: str
    fp_len: Annotated[int, msgspec.Meta(ge=0, le=FP_MAX)]
    skipping: bool
    current: bool
    mtime_ns: int
    end_fp: str = ""
    ends: list[tuple[Count, str]] = []  # of the current file: (offset, hash before it) of line ends
    seen_size: Count = 0  # a size it had past the offset, and the hash of the bytes before it
    seen_fp: str = ""
    read_ns: int = 0  # wall clock of the last read that returned bytes


class DoneRecord(msgspec.Struct):
    """A file read to its end."""

    fp: str
    fp_len: Annotated[int, msgspec.Meta(ge=0, le=FP_MAX)]
    size: Annotated[int, msgspec.Meta(ge=-1)] = -1
    end_fp: str = ""
    dev: Annotated[int, msgspec.Meta(ge=-1)] = -1
    ino: Annotated[int, msgspec.Meta(ge=-1)] = -1


class Checkpoint(msgspec.Struct):
    """A follower's saved position (Follower.checkpoint)."""

    v: int
    pattern: str
    bytes_read: Count
    rotations: Count
    oversized_lines: Count
    files: list[FileRecord]
    done: list[DoneRecord]
    waiting: bool = False


class JournalCheckpoint(msgspec.Struct):
    """A journal source's saved position (JournalSource.checkpoint)."""

    v: int
    source: Literal["journal"]
    cursor: str
    entries: Count
    bytes_read: Count
    matched: Count
    cursor_gaps: Count


class ShareRecord(msgspec.Struct):
    """The file an SMB source reads, by name, offset and head fingerprint."""

    name: str
    offset: Count
    fp: str
    fp_len: Annotated[int, msgspec.Meta(ge=0, le=FP_MAX)]


class ShareCheckpoint(msgspec.Struct):
    """An SMB source's saved position (SmbSource.checkpoint)."""

    v: int
    source: Literal["smb"]
    pattern: str
    bytes_read: Count
    rotations: Count
    file: ShareRecord | None
    previous: ShareRecord | None
    done: list[DoneRecord]


def checkpoint_schema(saved: Any) -> type[msgspec.Struct]:
    """The schema of a saved checkpoint, by the source that wrote it (files write none)."""
    kind = saved.get("source") if isinstance(saved, dict) else None
    return JournalCheckpoint if kind == "journal" else ShareCheckpoint if kind == "smb" else Checkpoint


def saved_problem(saved: Any) -> str:
    """Why a saved checkpoint cannot be used as-is; "" when it can."""
    try:
        msgspec.convert(saved, Checkpoint, strict=True)
    except msgspec.ValidationError as exc:
        return str(exc)
    return ""
