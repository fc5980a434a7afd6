"""Evidence for docs/decisions/0002-tailer.md: the same scenarios against pygtail 0.14.0 and Follower.

Each test asserts what pygtail really does today (so a fixed pygtail release would make the test
fail and the decision can be revisited) and that Follower returns exactly the expected lines.
pygtail is used as its docs intend: a fresh instance per wake-up, offset file next to the log.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Any

import pygtail  # test-only dependency, pinned in pyproject's [test] extra; never imported by logscan
import pytest

from logscan.sources.follower import Follower

PYGTAIL_VERSION = "0.14.0"


def pyg(path: Path, **kw: Any) -> list[Any]:
    """One pygtail wake-up: a fresh instance reading what is new."""
    tail = pygtail.Pygtail(str(path), offset_file=str(path) + ".offset", **kw)
    return list(tail.readlines())


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)


class Restarting:
    """Follower used the same way: a new instance per wake-up, resumed from the last checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved: dict[str, Any] | None = None

    def __call__(self) -> list[bytes]:
        f = Follower("evidence", str(self.path), start_at="beginning", saved=self.saved)
        out: list[bytes] = []
        while got := f.poll():
            out += got
        self.saved = f.checkpoint()
        f.close()
        return out


def test_pinned_version() -> None:
    assert pygtail.__version__ == PYGTAIL_VERSION


def test_partial_line(tmp_path: Path) -> None:
    p, q = tmp_path / "p.log", tmp_path / "q.log"
    fol = Restarting(q)
    for path in (p, q):
        path.write_bytes(b"one\npart")
    assert pyg(p) == ["one\n", "part"]  # the half-written line is returned as a line...
    assert fol() == [b"one"]
    for path in (p, q):
        append(path, b"ial\n")
    assert pyg(p) == ["ial\n"]  # ...and its rest as another one
    assert fol() == [b"partial"]


def test_non_utf8_byte(tmp_path: Path) -> None:
    p, q = tmp_path / "p.log", tmp_path / "q.log"
    fol = Restarting(q)
    for path in (p, q):
        path.write_bytes(b"ok\n\xff bad\nafter\n")
    for _ in range(2):  # every wake-up fails at the same byte: the log is stuck for good
        with pytest.raises(UnicodeDecodeError):
            pyg(p, encoding="utf-8")
    assert fol() == [b"ok", b"\xff bad", b"after"]


def test_offset_file_emptied_by_a_crash(tmp_path: Path) -> None:
    """pygtail writes its offset with open('w'): a kill after the truncate leaves an empty file."""
    p, q = tmp_path / "p.log", tmp_path / "q.log"
    fol = Restarting(q)
    for path in (p, q):
        path.write_bytes(b"l1\nl2\n")
    assert pyg(p) == ["l1\n", "l2\n"]
    assert fol() == [b"l1", b"l2"]
    Path(str(p) + ".offset").write_bytes(b"")  # the state open('w') leaves before write()
    for path in (p, q):
        append(path, b"l3\n")
    assert pyg(p, read_from_end=True) == ["l1\n", "l2\n", "l3\n"]  # whole log counted twice
    assert fol() == [b"l3"]  # state.save_state replaces atomically (tests/test_state.py kill test)


def test_copytruncate_then_regrowth_past_the_offset(tmp_path: Path) -> None:
    p, q = tmp_path / "p.log", tmp_path / "q.log"
    fol = Restarting(q)
    for path in (p, q):
        path.write_bytes(b"AAAA-1\nAAAA-2\n")
    assert pyg(p) == ["AAAA-1\n", "AAAA-2\n"]
    assert fol() == [b"AAAA-1", b"AAAA-2"]
    for path in (p, q):
        append(path, b"AAAA-3\n")  # written, not yet read, then rotated
        shutil.copyfile(path, str(path) + ".1")
        with path.open("r+b") as fh:
            fh.truncate(0)
        append(path, b"BBBB-1\nBBBB-2\nBBBB-3\n")
    expected = [b"AAAA-3", b"BBBB-1", b"BBBB-2", b"BBBB-3"]
    got = pyg(p)
    assert got == ["BBBB-3\n"]  # AAAA-3 and two new lines lost; rotation unseen
    assert [x.encode().rstrip(b"\n") for x in got] != expected
    assert fol() == expected


def test_inode_reuse_after_delete_and_create(tmp_path: Path) -> None:
    p, q = tmp_path / "p.log", tmp_path / "q.log"
    fol = Restarting(q)
    for path in (p, q):
        path.write_bytes(b"first-1\nfirst-2\n")
    assert pyg(p) == ["first-1\n", "first-2\n"]
    assert fol() == [b"first-1", b"first-2"]
    reused = []
    for path in (p, q):
        ino = path.stat().st_ino
        path.unlink()
        path.write_bytes(b"second-1\nsecond-2\nsecond-3\n")
        reused.append(path.stat().st_ino == ino)
    assert reused == [True, True]  # ext4 hands the freed inode to the next new file
    assert pyg(p) == ["2\n", "second-3\n"]  # a fragment, and two lines lost
    assert fol() == [b"second-1", b"second-2", b"second-3"]


def test_compress_without_delaycompress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p, q = tmp_path / "p.log", tmp_path / "q.log"
    fol = Restarting(q)
    for path in (p, q):
        path.write_bytes(b"g1\n")
    assert pyg(p) == ["g1\n"]
    assert fol() == [b"g1"]
    for path in (p, q):
        append(path, b"g2-unread\n")
        rotated = Path(str(path) + ".1")
        path.rename(rotated)
        with rotated.open("rb") as src, gzip.open(str(rotated) + ".gz", "wb") as dst:
            dst.write(src.read())
        rotated.unlink()
        path.write_bytes(b"g3-new\n")
    assert pyg(p) == ["new\n"]  # the tail in .1.gz is lost and the new file read from a stale offset
    assert fol() == [b"g2-unread", b"g3-new"]


def test_exicyclog_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p, q = tmp_path / "p" / "mainlog", tmp_path / "q" / "mainlog"
    for path in (p, q):
        path.parent.mkdir()
        path.write_bytes(b"m1\n")
    fol = Restarting(q)
    assert pyg(p) == ["m1\n"]
    assert fol() == [b"m1"]
    for path in (p, q):
        append(path, b"m2-unread\n")
        path.rename(str(path) + ".01")
        path.write_bytes(b"m3-new\n")
    assert pyg(p) == ["m3-new\n"]  # mainlog.01 is not among its default names: m2 lost
    assert "rotated to unknown location" in capsys.readouterr().err  # on stderr, not in our JSON logs
    assert fol() == [b"m2-unread", b"m3-new"]


def test_long_lived_instance_misses_copytruncate(tmp_path: Path) -> None:
    p, q = tmp_path / "p.log", tmp_path / "q.log"
    for path in (p, q):
        path.write_bytes(b"h1\nh2\n")
    tail = pygtail.Pygtail(str(p), offset_file=str(p) + ".offset")
    fol = Follower("evidence", str(q), start_at="beginning")
    assert tail.readlines() == ["h1\n", "h2\n"]
    assert fol.poll() == [b"h1", b"h2"]
    for path in (p, q):
        shutil.copyfile(path, str(path) + ".1")
        with path.open("r+b") as fh:
            fh.truncate(0)
        append(path, b"h3\n")
    assert tail.readlines() == []
    assert fol.poll() == [b"h3"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # pygtail's __del__ raises too
def test_log_missing_between_rename_and_create(tmp_path: Path) -> None:
    p, q = tmp_path / "p.log", tmp_path / "q.log"
    fol = Restarting(q)
    for path in (p, q):
        path.write_bytes(b"i1\n")
    assert pyg(p) == ["i1\n"]
    assert fol() == [b"i1"]
    for path in (p, q):
        append(path, b"i2\n")
        path.rename(str(path) + ".1")
    with pytest.raises(FileNotFoundError):
        pyg(p)
    assert fol() == [b"i2"]  # the renamed file is found by fingerprint; no exception
    q.write_bytes(b"i3\n")
    assert fol() == [b"i3"]


def test_mailenable_daily_files_need_a_glob(tmp_path: Path) -> None:
    """pygtail follows one name; MailEnable starts a new name every day and never renames."""
    d1 = tmp_path / "SMTP-Activity-261128.log"
    d1.write_bytes(b"d1\r\n")
    fol = Follower("me", str(tmp_path / "SMTP-Activity-*.log"), start_at="beginning")
    assert pyg(d1) == ["d1\n"]  # (text mode also rewrites CRLF)
    assert fol.poll() == [b"d1"]
    (tmp_path / "SMTP-Activity-261129.log").write_bytes(b"d2\r\n")
    append(d1, b"d1-closed\r\n")
    assert pyg(d1) == ["d1-closed\n"]  # today's file is never seen
    assert fol.poll() == [b"d1-closed", b"d2"]
    assert Path(fol.current_path).name == "SMTP-Activity-261129.log"
