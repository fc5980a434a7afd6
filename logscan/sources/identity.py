"""Which file is which: a file's identity, and the records a checkpoint keeps of them.

A file is identified by a hash of its first bytes (as fail2ban does), not by its inode alone:
inodes are reused after a rotation, and a renamed or compressed copy keeps its content.
"""

# ruff: noqa: PTH116 - identity works on str paths, as the follower does
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

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

    def matches(self, head: bytes) -> bool:
        return self.fp_len > 0 and len(head) >= self.fp_len and fingerprint(head[: self.fp_len]) == self.fp


def remember(done: list[Known], k: Known) -> None:
    """Add `k` to the files read to the end, keeping the newest DONE_HISTORY."""
    if k.fp_len > 0 and all(k.fp != d.fp for d in done):
        done.append(k)
        del done[:-DONE_HISTORY]


def same_inode(path: str, ids: set[tuple[int, int]]) -> bool:
    """True when `path` is one of the (dev, ino) pairs in `ids`."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in ids


_RECORD_TYPES: Final = {"path": str, "dev": int, "ino": int, "offset": int, "fp": str, "fp_len": int,
                        "skipping": bool, "current": bool, "mtime_ns": int}


def saved_problem(saved: Mapping[str, Any]) -> str:
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
