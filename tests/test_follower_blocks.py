"""Follower.poll(blocks=True), the daemon's read path: the same lines as poll(), in runs."""

from __future__ import annotations

import random
from pathlib import Path

from logscan.app.ingest import head_texts, line_count
from logscan.sources.follower import Follower


def lines_of(blocks: list[bytes]) -> list[bytes]:
    assert all(b.endswith(b"\n") for b in blocks)
    return b"".join(blocks).split(b"\n")[:-1]


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
    assert head_texts(blocks) == [b.decode() for b in want[:len(head_texts(blocks))]]
    assert len(head_texts(blocks)) >= 20
