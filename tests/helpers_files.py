"""Test helpers: a log writer that numbers its lines, hand-made rotations, and a real logrotate run."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

from logscan.sources.follower import Follower


class LogWriter:
    """Appends numbered lines to a log the way an MTA does: one open file, reopened on demand."""

    def __init__(self, path: Path, tag: str = "line") -> None:
        self.path = path
        self.tag = tag
        self.seq = 0
        self.written: list[bytes] = []
        self._fh = path.open("ab", buffering=0)

    def line(self, n: int = 1) -> list[bytes]:
        out = []
        for _ in range(n):
            self.seq += 1
            # The sequence number opens the line so every file starts differently (fingerprints).
            text = f"{self.seq:07d} {self.tag} status=sent dsn=2.0.0 (250 ok)".encode()
            self._fh.write(text + b"\n")
            self.written.append(text)
            out.append(text)
        return out

    def raw(self, data: bytes) -> None:
        self._fh.write(data)

    def reopen(self) -> None:
        """What the MTA does on SIGHUP / postfix reload: start writing to whatever is at the path now."""
        self._fh.close()
        self._fh = self.path.open("ab", buffering=0)

    def close(self) -> None:
        self._fh.close()


def rename_rotate(path: Path, suffix: str = ".1", *, compress: bool = False) -> Path:
    """logrotate `create`: rename to path+suffix (optionally gzip it at once), create an empty file."""
    rotated = path.with_name(path.name + suffix)
    path.rename(rotated)
    path.touch()
    return gzip_file(rotated) if compress else rotated


def gzip_file(path: Path) -> Path:
    """What logrotate's `compress` does after postrotate: path -> path.gz, original removed."""
    gz = path.with_name(path.name + ".gz")
    with path.open("rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()
    return gz


def copytruncate(path: Path, suffix: str = ".1") -> Path:
    """logrotate `copytruncate`: copy the file aside, then truncate it in place."""
    copy = path.with_name(path.name + suffix)
    shutil.copyfile(path, copy)
    with path.open("r+b") as fh:
        fh.truncate(0)
    return copy


def shift_numbered(path: Path, keep: int = 60) -> None:
    """Move name.N(.gz) to name.N+1(.gz), as logrotate does before making a new name.1."""
    for n in range(keep, 0, -1):
        for ext in ("", ".gz"):
            src = path.with_name(f"{path.name}.{n}{ext}")
            if src.exists():
                src.rename(path.with_name(f"{path.name}.{n + 1}{ext}"))


def run_logrotate(tmp: Path, body: str) -> None:
    """Run the real logrotate binary with a config written to tmp (forced, private state file)."""
    conf = tmp / "logrotate.conf"
    conf.write_text(body)
    conf.chmod(0o644)  # logrotate refuses group/world-writable configs
    res = subprocess.run(["logrotate", "-f", "-s", str(tmp / "logrotate.state"), str(conf)],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


def drain(f: Follower, rounds: int = 50) -> list[bytes]:
    """Poll until a poll neither returns lines nor moves forward."""
    out: list[bytes] = []
    for _ in range(rounds):
        before = f.bytes_read
        got = f.poll()
        if not got and f.bytes_read == before:
            break
        out += got
    return out
