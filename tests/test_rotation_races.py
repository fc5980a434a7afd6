"""Real logrotate acting at the exact moment that used to count lines twice or lose them (issue 12).

Each test lets the follower run up to one read of its file, runs logrotate right there (through a
hook on FileSource.read_at, the only thing not real here), writes on, and checks that every line
comes back exactly once. The moments were found in the kill -9 campaign (tests/crash_campaign.py).
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logscan.sources.follower import Follower
from logscan.sources.identity import FP_MAX
from logscan.sources.logfiles import LogFiles
from logscan.sources.reading import FileSource, Stream
from tests.helpers_files import LogWriter, drain, rename_rotate, run_logrotate, shift_numbered


def copy_of(log: Path) -> Path:
    """The first half of logrotate's copytruncate: the copy as mail.log.1, no truncate yet."""
    copy = log.with_name(log.name + ".1")
    shutil.copyfile(log, copy)
    return copy


def _copytruncate(tmp: Path, log: Path) -> None:
    run_logrotate(tmp, f"{log} {{\n  rotate 10\n  copytruncate\n}}\n")


def _before_read(monkeypatch: pytest.MonkeyPatch, log: Path, when: Callable[[int, int], bool],
                 action: Callable[[], None], nth: int = 1) -> list[int]:
    """Run `action` once, just before the `nth` read of the live file (its inode: copytruncate keeps
    it) whose (offset, size) satisfies `when`."""
    fired: list[int] = []
    seen = [0]
    real = FileSource.read_at
    ino = log.stat().st_ino

    def read_at(self: FileSource, offset: int, n: int) -> bytes:
        if not fired and when(offset, n) and self.fstat().st_ino == ino:
            seen[0] += 1
            if seen[0] == nth:
                fired.append(offset)
                action()
        return real(self, offset, n)

    monkeypatch.setattr(FileSource, "read_at", read_at)
    return fired


def _stopped(log: Path, tag: str) -> tuple[LogWriter, list[bytes], dict[str, Any]]:
    """A follower read 5 lines of `log`, 2 more were written, then it saved and stopped: the writer,
    the 2 unread lines and the saved position."""
    w = LogWriter(log, tag=tag)
    f = Follower("m", str(log), start_at="beginning")
    first = w.line(5)
    assert drain(f) == first
    unread = w.line(2)
    saved = f.checkpoint()
    f.close()
    return w, unread, saved


def _follow(f: Follower) -> list[bytes]:
    """Every line the follower returns until it has nothing more (a poll that drops a read included)."""
    return drain(f) + drain(f)


def test_copytruncate_between_look_and_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The follower checked the file (same head, same bytes before its offset), then logrotate
    # copied and truncated it and the MTA wrote more than our offset before our read: the read
    # at the old offset returned the middle of the new file, and the copy was read again whole.
    log = tmp_path / "mail.log"
    w = LogWriter(log, tag="ct-look-read")
    f = Follower("m", str(log), start_at="beginning")
    first = w.line(20)
    assert drain(f) == first
    at = f.checkpoint()["files"][-1]["offset"]
    unread = w.line(3)
    fresh: list[bytes] = []

    def rotate() -> None:
        _copytruncate(tmp_path, log)
        fresh.extend(w.line(40))  # more bytes than our offset: the stale read finds lines there

    fired = _before_read(monkeypatch, log, lambda off, n: off == at, rotate)
    got = _follow(f)
    assert fired == [at]
    assert got == [*unread, *fresh]
    assert f.rotations == 1


def test_two_copytruncates_of_a_file_known_empty_before_its_first_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Lines came to a file we knew empty; logrotate copied and truncated it just before we read
    # its head (so we still knew it empty: no identity to check a read against), then lines came,
    # a second copytruncate, more lines, and only then our read. The second copy holds lines
    # nothing of ours pointed to: they were lost.
    log = tmp_path / "mail.log"
    log.touch()
    w = LogWriter(log, tag="ct-empty")
    f = Follower("m", str(log), start_at="beginning")
    assert f.poll() == []
    first = w.line(5)
    second: list[bytes] = []
    third: list[bytes] = []

    def rotate_twice() -> None:
        second.extend(w.line(4))
        _copytruncate(tmp_path, log)
        third.extend(w.line(3))

    head = _before_read(monkeypatch, log, lambda off, n: off == 0 and n == FP_MAX,
                        lambda: _copytruncate(tmp_path, log))
    read = _before_read(monkeypatch, log, lambda off, n: off == 0 and n > FP_MAX, rotate_twice)
    got = _follow(f)
    assert head == [0]
    assert read == [0]
    # The last copy is found once the new file's first lines are read: after them.
    assert got == [*first, *third, *second]
    found = [d["path"] for n, d in f.drain_notes() if n == "log_found_rotated"]
    assert found == [str(tmp_path / "mail.log.1")] * 2  # each copy when it was new


def test_copytruncate_between_head_and_tail_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The follower read the head (still the old file), then logrotate truncated, then the bytes
    # before our offset no longer matched: the copytruncate was seen, but the new file got the
    # old file's head as its identity, so the next look took it for a second copytruncate and
    # read the copy again from its start.
    log = tmp_path / "mail.log"
    w = LogWriter(log, tag="ct-head-tail")
    f = Follower("m", str(log), start_at="beginning")
    first = w.line(20)
    assert drain(f) == first
    at = f.checkpoint()["files"][-1]["offset"]
    assert at > FP_MAX  # the bytes before our offset are read apart from the head
    unread = w.line(3)
    fresh: list[bytes] = []

    def rotate() -> None:
        _copytruncate(tmp_path, log)
        fresh.extend(w.line(2))

    fired = _before_read(monkeypatch, log, lambda off, n: off == at - FP_MAX and n == FP_MAX, rotate)
    got = _follow(f)
    assert fired == [at - FP_MAX]
    later = w.line(5)
    got += _follow(f)
    assert got == [*unread, *fresh, *later]
    assert f.rotations == 1


def test_restart_while_logrotate_renames_the_live_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A restart after a rotation while down: the live file holds lines we never saw. logrotate ran
    # again during the restart scan, after the rotated files were looked at and before the live
    # file was opened: the scan had skipped it by name as live, the open found the next live file,
    # and the lines of the one in between were lost.
    log = tmp_path / "mail.log"
    conf = f"{log} {{\n  rotate 10\n  create\n}}\n"
    w, unread, saved = _stopped(log, "restart-race")
    run_logrotate(tmp_path, conf)  # while down
    w.reopen()
    between = w.line(4)
    later: list[bytes] = []

    def rotate() -> None:
        run_logrotate(tmp_path, conf)
        w.reopen()
        later.extend(w.line(3))

    real = LogFiles.intermediates

    def intermediates(self: LogFiles, *args: Any, **kw: Any) -> list[Stream]:
        found = real(self, *args, **kw)
        rotate()
        return found

    monkeypatch.setattr(LogFiles, "intermediates", intermediates)
    g = Follower("m", str(log), saved=saved)
    got = g.poll()
    monkeypatch.undo()
    assert later, "the scan did not run"
    got += _follow(g)
    assert got == [*unread, *between, *later]


def test_restart_sees_an_archive_and_its_original_at_once(tmp_path: Path) -> None:
    # delaycompress while the daemon is down and restarting: logrotate has written mail.log.2.gz
    # whole and not yet removed mail.log.2. Both are unknown to the saved state, both were read
    # whole, and the file's lines counted twice.
    log = tmp_path / "mail.log"
    w, unread, saved = _stopped(log, "archive-twice")
    rename_rotate(log)
    w.reopen()
    second = w.line(4)
    shift_numbered(log)
    rename_rotate(log)
    w.reopen()
    third = w.line(3)
    shift_numbered(log)
    rename_rotate(log)
    w.reopen()
    fourth = w.line(2)
    plain = tmp_path / "mail.log.2"
    archive = tmp_path / "mail.log.2.gz"
    archive.write_bytes(gzip.compress(plain.read_bytes()))
    st = plain.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns))  # as gzip does
    g = Follower("m", str(log), saved=saved)
    assert _follow(g) == [*unread, *second, *third, *fourth]


def test_restart_while_logrotate_moves_a_new_file_to_a_name_just_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The saved file was found as mail.log.1; then logrotate moved it to mail.log.2 and the file
    # written while we were down to mail.log.1. The scan for unknown files, working from its
    # listing, skipped the name mail.log.1 as taken, and that file's lines were lost.
    log = tmp_path / "mail.log"
    conf = f"{log} {{\n  rotate 10\n  create\n}}\n"
    w, unread, saved = _stopped(log, "name-taken")
    run_logrotate(tmp_path, conf)  # while down
    w.reopen()
    between = w.line(4)
    later: list[bytes] = []
    real = LogFiles.locate

    def locate(self: LogFiles, *args: Any, **kw: Any) -> Stream | None:
        found = real(self, *args, **kw)
        if not later:
            run_logrotate(tmp_path, conf)
            w.reopen()
            later.extend(w.line(3))
        return found

    monkeypatch.setattr(LogFiles, "locate", locate)
    g = Follower("m", str(log), saved=saved)
    got = g.poll()
    monkeypatch.undo()
    assert later, "the scan did not run"
    got += _follow(g)
    assert got == [*unread, *between, *later]


def test_restart_while_logrotate_copies_the_live_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # copytruncate during the restart scan: the scan found the fresh copy of the live file as an
    # unknown file and read it whole; the first poll then saw the live file truncated, found the
    # same copy again and read it a second time.
    log = tmp_path / "mail.log"
    w, unread, saved = _stopped(log, "copy-during-scan")
    _copytruncate(tmp_path, log)  # while down
    between = w.line(4)
    later: list[bytes] = []
    real = LogFiles.intermediates

    def intermediates(self: LogFiles, *args: Any, **kw: Any) -> list[Stream]:
        _copytruncate(tmp_path, log)
        later.extend(w.line(3))
        return real(self, *args, **kw)

    monkeypatch.setattr(LogFiles, "intermediates", intermediates)
    g = Follower("m", str(log), saved=saved)
    got = g.poll()
    monkeypatch.undo()
    assert later, "the scan did not run"
    got += _follow(g)
    assert got == [*unread, *between, *later]


def test_restart_between_logrotate_copy_and_truncate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # copytruncate during the restart scan, caught between its copy and its truncate (built by
    # hand: no hook can stop logrotate there). The scan found the copy as an unknown file and took
    # the live file for one already read because it begins with that copy; the truncate came
    # before the first read, and the copy was moved on to where the live file "was": its lines
    # were never read.
    log = tmp_path / "mail.log"
    w, unread, saved = _stopped(log, "copy-not-truncated")
    _copytruncate(tmp_path, log)  # while down
    between = w.line(4)
    real = LogFiles.intermediates
    copied: list[Path] = []

    def intermediates(self: LogFiles, *args: Any, **kw: Any) -> list[Stream]:
        shift_numbered(log)
        copied.append(copy_of(log))  # logrotate's copy; its truncate comes after our first poll
        return real(self, *args, **kw)

    monkeypatch.setattr(LogFiles, "intermediates", intermediates)
    g = Follower("m", str(log), saved=saved)
    g.open()  # as the daemon starts: every file opened and positioned, nothing read yet
    monkeypatch.undo()
    assert copied, "the scan did not run"
    with log.open("r+b") as fh:
        fh.truncate(0)
    later = w.line(3)
    got = _follow(g)
    assert got == [*unread, *between, *later]


def _read_past_the_copy(log: Path, tag: str) -> tuple[Follower, LogWriter, list[bytes]]:
    """logrotate copied the log, the MTA wrote 2 lines, and the follower read them (and 3 older
    unread ones) before the truncate: the follower, the writer and the lines that read returned."""
    w = LogWriter(log, tag=tag)
    f = Follower("m", str(log), start_at="beginning")
    first = w.line(5)
    assert drain(f) == first
    unread = w.line(3)
    copy_of(log)
    after_copy = w.line(2)
    got = drain(f)
    assert got == [*unread, *after_copy]
    with log.open("r+b") as fh:
        fh.truncate(0)
    return f, w, got


def test_lines_read_between_logrotate_copy_and_truncate(tmp_path: Path) -> None:
    # The MTA wrote between logrotate's copy and its truncate, and we read those lines before the
    # truncate (built by hand: no hook can stop logrotate there). The copy then ends before our
    # position, so no identity of ours matched it, and it was read whole: counted twice.
    f, w, _ = _read_past_the_copy(tmp_path / "mail.log", "read-in-between")
    later = w.line(2)
    assert _follow(f) == later
    assert f.rotations == 1


def test_restart_after_reading_lines_written_between_logrotate_copy_and_truncate(tmp_path: Path) -> None:
    # As above, but the daemon was killed before it saw the truncate: the copy ends before the
    # saved position, so no saved identity matched it and the restart read it whole (counted
    # twice). The saved line ends before the position know it.
    log = tmp_path / "mail.log"
    f, w, _ = _read_past_the_copy(log, "killed-in-between")
    saved = f.checkpoint()
    f.close()
    later = w.line(2)
    g = Follower("m", str(log), start_at="beginning", saved=saved)
    assert _follow(g) == later
    assert "state_mismatch" not in [event for event, _ in g.drain_notes()]


def test_a_copy_written_after_our_last_read_is_not_taken_for_lines_we_read(tmp_path: Path) -> None:
    # Every file starts with the same banner. logrotate copytruncates twice before we look: the
    # second copy holds only the banner the MTA wrote after the first truncate, byte for byte the
    # start of what we read. It is a later file's (written after our last read), not ours: the
    # 64 KiB memory of what we read must not take it for lines already counted.
    log = tmp_path / "mail.log"
    banner = [f"banner line {i:02d} {'x' * 60}".encode() for i in range(10)]
    w = LogWriter(log, tag="banner")
    w.raw(b"".join(line + b"\n" for line in banner))
    f = Follower("m", str(log), start_at="beginning")
    first = w.line(5)
    assert drain(f) == [*banner, *first]
    time.sleep(0.05)  # file times may be coarse (a few ms): the copies are after our read
    copy_of(log)  # rotation 1: mail.log.1 = what we read
    with log.open("r+b") as fh:
        fh.truncate(0)
    w.raw(b"".join(line + b"\n" for line in banner))
    log.with_name("mail.log.1").unlink()  # `rotate 1`: the copy we read is gone
    copy_of(log)  # rotation 2: mail.log.1 = the banner alone
    with log.open("r+b") as fh:
        fh.truncate(0)
    w.raw(b"".join(line + b"\n" for line in banner))
    later = w.line(2)
    assert _follow(f) == [*banner, *banner, *later]


def _rotate_during_the_look(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, conf: str, w: LogWriter,
                            f: Follower) -> tuple[list[bytes], list[bytes]]:
    """Poll `f`, with logrotate run (and 2 lines written to the new file) just as the follower looks
    for files rotated in between; every line it then returns, and those 2 lines."""
    later: list[bytes] = []
    real = LogFiles.intermediates

    def intermediates(self: LogFiles, *args: Any, **kw: Any) -> list[Stream]:
        if not later:
            run_logrotate(tmp_path, conf)
            w.reopen()
            later.extend(w.line(2))
        return real(self, *args, **kw)

    monkeypatch.setattr(LogFiles, "intermediates", intermediates)
    got = f.poll()
    monkeypatch.undo()
    assert later, "the look for rotated files or copies did not run"
    return got + _follow(f), later


def test_rename_racing_the_switch_to_the_new_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The follower saw a rename and opened the new mail.log; before it looked for files rotated in
    # between, logrotate renamed that new file to mail.log.1. The look took it for an unknown
    # rotated file and read it whole, besides reading it as the current file.
    log = tmp_path / "mail.log"
    conf = f"{log} {{\n  rotate 10\n  create\n}}\n"
    w = LogWriter(log, tag="switch-race")
    f = Follower("m", str(log), start_at="beginning")
    first = w.line(5)
    assert drain(f) == first
    unread = w.line(2)
    run_logrotate(tmp_path, conf)
    w.reopen()
    second = w.line(3)
    got, later = _rotate_during_the_look(monkeypatch, tmp_path, conf, w, f)
    assert got == [*unread, *second, *later]


def test_rename_racing_the_switch_from_a_file_known_empty(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As above, but the old file was known only empty: bringing its identity up to date looks
    # for copies made meanwhile, and that look ran before the new file counted as open.
    log = tmp_path / "mail.log"
    conf = f"{log} {{\n  rotate 10\n  create\n}}\n"
    w = LogWriter(log, tag="switch-empty")
    f = Follower("m", str(log), start_at="beginning")
    assert f.poll() == []
    first = w.line(3)
    run_logrotate(tmp_path, conf)
    w.reopen()
    second = w.line(3)
    got, later = _rotate_during_the_look(monkeypatch, tmp_path, conf, w, f)
    assert got == [*first, *second, *later]
