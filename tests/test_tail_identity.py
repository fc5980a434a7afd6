"""Files that start alike are different files; an unreadable live file is unreadable (issue 12)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logscan.sources import reading
from logscan.sources.follower import Follower
from tests.helpers_files import copytruncate, drain, gzip_file, rename_rotate, shift_numbered

# Over 512 bytes, the same at the top of every file (a banner, fixed timestamps).
BANNER = b"".join(b"Jan  1 00:00:00 mx banner line %02d %s\n" % (i, b"=" * 40) for i in range(10))


class Writer:
    """Numbered lines after the banner in every new file; reopened after a rename rotation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seq = 0
        self.written: list[bytes] = []
        self._fh = path.open("ab", buffering=0)
        self.banner()

    def banner(self) -> None:
        self._fh.write(BANNER)
        self.written += BANNER.splitlines()

    def lines(self, n: int) -> None:
        for _ in range(n):
            self.seq += 1
            line = b"%07d delivered" % self.seq
            self._fh.write(line + b"\n")
            self.written.append(line)

    def reopen(self) -> None:
        self._fh.close()
        self._fh = self.path.open("ab", buffering=0)
        self.banner()


@pytest.mark.parametrize("how", ["rename", "rename-gz", "copytruncate"])
def test_files_with_the_same_first_512_bytes_are_told_apart_across_restarts(tmp_path: Path, how: str) -> None:
    """Measured before issue 12: 600 of 900 lines when rotated files start alike."""
    log = tmp_path / "mail.log"
    w = Writer(log)
    got: list[bytes] = []
    saved = None
    for _ in range(3):
        w.lines(100)
        f = Follower("m", str(log), start_at="beginning", saved=saved)
        got += drain(f)
        saved = f.checkpoint()
        f.close()
        w.lines(100)  # unread when the rotation comes
        shift_numbered(log)
        if how == "copytruncate":
            copytruncate(log)
            w.banner()
        else:
            rename_rotate(log)
            w.reopen()
            if how == "rename-gz":
                gzip_file(tmp_path / "mail.log.1")
        w.lines(100)
    f = Follower("m", str(log), saved=saved)
    got += drain(f)
    assert got == w.written
    assert len([x for x in got if x.endswith(b"delivered")]) == 900


def test_files_with_the_same_head_are_told_apart_while_running(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    w = Writer(log)
    f = Follower("m", str(log), start_at="beginning")
    got = drain(f)
    for _ in range(3):
        w.lines(50)
        got += drain(f)
        w.lines(50)
        shift_numbered(log)
        rename_rotate(log)
        w.reopen()
        w.lines(50)
        got += drain(f)
    assert got == w.written


def test_a_live_file_that_exists_but_cannot_be_read_is_unreadable_not_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "mail.log"
    w = Writer(log)
    w.lines(3)
    f = Follower("m", str(log), start_at="beginning")
    drain(f)
    saved = f.checkpoint()
    f.close()
    rename_rotate(log)
    w.reopen()

    def denied(path: str, flags: int) -> int:
        if path == str(log):
            raise PermissionError(13, "Permission denied", path)
        return os.open(path, flags)

    monkeypatch.setattr(reading, "_sys_open", denied)
    g = Follower("m", str(log), saved=saved)
    assert g.poll() == []
    notes = g.drain_notes()
    assert [n for n, _ in notes if n.startswith("log_")][-1] == "log_unreadable"
    assert "log_missing" not in [n for n, _ in notes]
    assert "PermissionError" in g.error
    assert "vanished" not in g.error
