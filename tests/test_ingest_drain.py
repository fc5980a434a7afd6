"""ingest.drain, how a daemon pass reads one log: a read at a time, up to a budget, stopping
at a change of files so the daemon saves it first."""

from __future__ import annotations

from pathlib import Path

from logscan.app.config import parse_config
from logscan.app.ingest import BULK_READ_BYTES, READ_BYTES, ROW_PER_LINE_READ_BYTES, LogRuntime, drain
from logscan.core.aggregate import Aggregate
from logscan.sources.follower import Follower


def numbered(first: int, n: int) -> bytes:
    return b"".join(b"line %07d %s\n" % (i, b"x" * (i % 90)) for i in range(first, first + n))


def test_a_pass_hands_over_one_read_at_a_time_up_to_its_budget(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    data = numbered(0, 60_000)  # about 4 MiB
    log.write_bytes(data)
    f = Follower("m", str(log), start_at="beginning")
    f.open()
    runs: list[bytes] = []
    drain(f, 2 * READ_BYTES, lambda lines: runs.append(b"".join(lines)))
    # The daemon never holds more than one read: the memory a pass needs does not grow with its budget.
    assert len(runs) >= 2
    assert max(map(len, runs)) <= READ_BYTES
    first = b"".join(runs)
    assert 2 * READ_BYTES - 200 <= len(first) <= 2 * READ_BYTES + 65_536  # + at most one max_line
    assert f.lag_bytes == len(data) - len(first)

    # The next pass goes on exactly where this one stopped, and stops at the end of the data.
    drain(f, 1 << 30, lambda lines: runs.append(b"".join(lines)))
    assert b"".join(runs) == data
    assert f.lag_bytes == 0


def test_a_pass_stops_reading_a_log_once_its_files_changed(tmp_path: Path) -> None:
    # The daemon saves a rotation before it reads on (docs/decisions/0013): a pass must not
    # read past it, however much budget is left.
    log = tmp_path / "mail.log"
    old = numbered(0, 40_000)
    log.write_bytes(old[: len(old) // 2])
    f = Follower("m", str(log), start_at="beginning")
    f.open()
    with log.open("ab") as out:
        out.write(old[len(old) // 2 :])
    log.rename(tmp_path / "mail.log.1")
    new = numbered(40_000, 1000)
    log.write_bytes(new)
    epoch = f.epoch
    notes: list[str] = []
    runs: list[bytes] = []

    def take(lines: list[bytes]) -> None:
        runs.append(b"".join(lines))

    drain(f, 1 << 30, take, lambda: notes.extend(e for e, _ in f.drain_notes()))
    assert f.epoch != epoch
    assert "log_rotated" in notes
    assert len(runs) == 1  # one read, then back to the daemon to save
    assert f.lag_bytes > 0

    while f.lag_bytes:
        drain(f, 1 << 30, take)
    assert b"".join(runs) == old + new


def test_a_poll_whose_budget_ends_inside_a_rotated_file_reads_nothing_of_the_new_one(tmp_path: Path) -> None:
    # A poll may read past its budget to fit one whole line; in the old file that must not
    # become the first lines of the new one, ahead of the old file's rest.
    log = tmp_path / "mail.log"
    log.write_bytes(numbered(0, 40))
    f = Follower("m", str(log), start_at="beginning", max_line=100)
    f.open()
    log.rename(tmp_path / "mail.log.1")
    log.write_bytes(numbered(40, 5))
    first = b"".join(f.poll(150, blocks=True))
    assert first.startswith(b"line 0000000")
    assert b"line 0000040" not in first
    rest = b"".join(f.poll(blocks=True))
    assert first + rest == numbered(0, 45)


def test_a_log_with_a_bulk_reader_is_read_in_scans_chunk_size_others_in_smaller_reads(tmp_path: Path) -> None:
    # Line-by-line parsing makes objects per line (memory per read); the bulk path pays per batch.
    cfg = parse_config(f'[[logs]]\nname = "m"\npath = "{tmp_path / "mail.log"}"\n', "test").logs[0]
    rt = LogRuntime(cfg, Follower("m", str(tmp_path / "mail.log")))
    assert rt.read_bytes() == READ_BYTES  # format not known yet
    rt.set_format("postfix", "UTC", Aggregate(), ())
    assert rt.pipeline is not None
    assert rt.pipeline.bulk is not None
    assert rt.read_bytes() == BULK_READ_BYTES
    rt.set_format("exim", "UTC", Aggregate(), ())
    assert rt.pipeline is not None
    assert rt.read_bytes() == BULK_READ_BYTES
    rt.pipeline.bulk = None  # a format read line by line (no bulk reader)
    assert rt.read_bytes() == READ_BYTES < BULK_READ_BYTES
    # MailEnable's bulk reader makes a row of nearly every line: smaller reads bound the memory.
    rt.set_format("mailenable", "UTC", Aggregate(), ())
    assert rt.pipeline is not None
    assert rt.pipeline.bulk is not None
    assert READ_BYTES < rt.read_bytes() == ROW_PER_LINE_READ_BYTES["mailenable"] < BULK_READ_BYTES
