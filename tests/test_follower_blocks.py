"""Follower.poll(blocks=True), the daemon's read path: the same lines as poll(), in runs."""

from __future__ import annotations

import random
from pathlib import Path

from logscan.app.ingest import head_texts, line_count
from logscan.sources.follower import Follower
from logscan.sources.reading import strip_cr


def lines_of(blocks: list[bytes]) -> list[bytes]:
    """The lines of runs, each without its newline and the CR before it (as poll() gives them)."""
    assert all(b.endswith(b"\n") for b in blocks)
    return [strip_cr(line) for line in b"".join(blocks).split(b"\n")[:-1]]


def test_blocks_hold_exactly_the_lines_poll_gives(tmp_path: Path) -> None:
    rnd = random.Random(16)
    pieces = []
    for i in range(4000):
        kind = rnd.random()
        if kind < 0.01:
            pieces.append(b"x" * rnd.randrange(100, 400) + b"\n")  # longer than max_line
        elif kind < 0.02:
            pieces.append(b"with cr %d\r\n" % i)
        elif kind < 0.03:
            pieces.append(b"\n")
        else:
            pieces.append(b"line %d " % i + b"y" * rnd.randrange(0, 90) + b"\n")
    data = b"".join(pieces) + b"partial, no newline yet"
    for path in (tmp_path / "a.log", tmp_path / "b.log"):
        path.write_bytes(data)
    plain = Follower("a", str(tmp_path / "a.log"), start_at="beginning", max_line=120)
    runs = Follower("b", str(tmp_path / "b.log"), start_at="beginning", max_line=120)
    want: list[bytes] = []
    got: list[bytes] = []
    blocks: list[bytes] = []
    for budget in (1, 5000, 70_000, 1 << 20):
        want += plain.poll(budget)
        new = runs.poll(budget, blocks=True)
        blocks += new
        got += lines_of(new)
        assert plain.checkpoint()["bytes_read"] == runs.checkpoint()["bytes_read"]
    assert got == want
    assert len(want) == 4000
    assert line_count(blocks) == 4000
    head = [text.removesuffix("\r") for text in head_texts(blocks)]
    assert head == [b.decode() for b in want[:len(head)]]
    assert len(head) >= 20


def test_blocks_leave_the_same_checkpoint_as_lines(tmp_path: Path) -> None:
    # The identity of the part read (end_fp: the bytes before the offset) must follow every
    # way of reading; a stale one makes a restart miss the file and count its lines twice.
    data = b"".join(b"line %d %s\n" % (i, b"z" * (i % 50)) for i in range(30_000))
    for name in ("a.log", "b.log"):
        (tmp_path / name).write_bytes(data)
    plain = Follower("a", str(tmp_path / "a.log"), start_at="beginning")
    runs = Follower("b", str(tmp_path / "b.log"), start_at="beginning")
    assert len(plain.poll()) == 30_000
    assert line_count(runs.poll(blocks=True)) == 30_000
    (a,), (b,) = plain.checkpoint()["files"], runs.checkpoint()["files"]
    assert (a["offset"], a["end_fp"]) == (b["offset"], b["end_fp"])


def test_crlf_runs_hold_the_lines_poll_gives(tmp_path: Path) -> None:
    # CRLF logs (MailEnable) go through the runs' fast path, their bytes as in the file: less
    # the one CR before each newline, the lines poll() gives; a CR elsewhere stays in both.
    rnd = random.Random(17)
    shapes = [b"line %d\r\n", b"\r\n", b"two crs %d\r\r\n", b"mid\rcr %d\r\n", b"lf only %d\n",
              b"%d " + b"w" * 100 + b"\r\n", b"\r%d\r\n"]
    data = b"".join((s % i) if b"%d" in s else s for i, s in ((i, rnd.choice(shapes)) for i in range(5000)))
    for path in (tmp_path / "a.log", tmp_path / "b.log"):
        path.write_bytes(data + b"tail\r")
    plain = Follower("a", str(tmp_path / "a.log"), start_at="beginning", max_line=124)
    runs = Follower("b", str(tmp_path / "b.log"), start_at="beginning", max_line=124)
    want: list[bytes] = []
    got: list[bytes] = []
    raw: list[bytes] = []
    for budget in (3, 4000, 1 << 20):
        want += plain.poll(budget)
        raw += runs.poll(budget, blocks=True)
        got = lines_of(raw)
        (a,), (b,) = plain.checkpoint()["files"], runs.checkpoint()["files"]
        assert (a["offset"], a["end_fp"], a["ends"]) == (b["offset"], b["end_fp"], b["ends"])
    assert got == want
    assert len(want) == 5000
    assert any(line.endswith(b"\r") for line in want)  # "two crs" keeps one
    assert b"".join(raw) == data  # the fast path took every run as it is
