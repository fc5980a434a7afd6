"""MailEnable logs on a share: the SMB source against a real Samba server started by the test."""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from logscan.sources.smb import SmbSource
from tests.alertmanager_fixture import free_port
from tests.daemon_fixture import Daemon, start_daemon, wait_for, write_config
from tests.samba_fixture import Samba

T0 = time.time() - 86400


@pytest.fixture
def samba(tmp_path: Path) -> Iterator[Samba]:
    s = Samba(tmp_path / "samba", free_port())
    s.start()
    yield s
    s.stop()


class Days:
    """Writes MailEnable SMTP-Activity rows (CRLF) into daily files on the share, remembering the truth."""

    def __init__(self, folder: Path, seed: int = 7) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(seed)
        self.day = 0
        self.seq = 0
        self.truth: Counter[str] = Counter()

    @property
    def path(self) -> Path:
        return self.folder / f"SMTP-Activity-2611{self.day + 10:02d}.log"

    def next_day(self) -> None:
        self.day += 1

    def append(self, n: int) -> None:
        rows = []
        for _ in range(n):
            self.seq += 1
            code = "551" if self.rng.random() < 0.2 else "250"
            self.truth[code] += 1
            stamp = time.strftime("%m/%d/%y %H:%M:%S", time.gmtime(T0 + self.day * 86400 + self.seq))
            rows.append(f"{stamp}\tSMTP-IN\t{self.seq:032X}.MAI\t1320\t198.51.100.7\tMAIL\t"
                        f"MAIL FROM:<u{self.seq}@example.net>\t{code} Sender reply\t60\t40\t\t\r\n")
        with self.path.open("ab") as f:
            f.write("".join(rows).encode())

    def lines(self) -> int:
        return self.seq


def drain(src: SmbSource) -> list[bytes]:
    out: list[bytes] = []
    while True:
        got = src.poll()
        if not got:
            return out
        out += got


def test_source_follows_daily_files_across_restarts(samba: Samba) -> None:
    days = Days(samba.share / "Logging" / "SMTP")
    days.append(5)
    cred = str(samba.credentials())
    src = SmbSource("me", samba.url(), credentials_file=cred, start_at="beginning")
    first = drain(src)
    assert len(first) == 5
    assert src.up
    assert not first[0].endswith(b"\r")
    days.append(3)
    days.next_day()
    days.append(4)  # the next day's file appears while yesterday's still had unread rows
    assert len(drain(src)) == 7
    assert src.rotations == 1
    saved = json.loads(json.dumps(src.checkpoint()))
    src.close()
    days.append(2)
    days.next_day()
    days.append(6)
    with days.path.open("ab") as f:
        f.write(b"11/12/26 10:00:00\tSMTP-IN\tunfinished")  # half a row: not handed out yet
    again = SmbSource("me", samba.url(), credentials_file=cred, saved=saved)
    rows = drain(again)
    assert len(rows) == 8
    assert [r.split(b"\t")[2][-8:] for r in rows] == [f"{i:08X}.MAI".encode()[-8:] for i in range(13, 21)]
    assert again.bytes_read == sum(p.stat().st_size for p in days.folder.iterdir()) - len(
        b"11/12/26 10:00:00\tSMTP-IN\tunfinished")
    again.close()


def test_start_at_end_and_a_credentials_file_others_can_read(samba: Samba) -> None:
    days = Days(samba.share / "Logging" / "SMTP")
    days.append(5)
    src = SmbSource("me", samba.url(), credentials_file=str(samba.credentials()), start_at="end")
    assert drain(src) == []
    days.append(2)
    assert len(drain(src)) == 2
    with days.path.open("ab") as f:
        f.write(b"11/12/26 10:00:00\tSMTP-IN\tunfinished")
    assert drain(src) == []
    assert src.lag_bytes == 0  # half a row is no backlog: the daemon must not spin on it
    src.close()
    empty = Days(samba.share / "Logging" / "Other")
    later = SmbSource("me", samba.url().replace("/SMTP/", "/Other/"),
                      credentials_file=str(samba.credentials()))
    assert later.poll() == []
    assert later.up
    empty.append(3)  # the first file appears after a start at "end": it is new, all of it is read
    assert len(drain(later)) == 3
    later.close()
    loose = SmbSource("me", samba.url(), credentials_file=str(samba.credentials(0o644)))
    assert loose.poll() == []
    assert not loose.up
    assert "chmod 0600" in loose.error


def late_row(qid: bytes) -> bytes:
    return b"11/10/26 23:59:59\tSMTP-IN\t" + qid + b"\t1320\t198.51.100.7\tQUIT\tQUIT\t221 Bye\t0\t0\t\t\r\n"


def test_a_late_row_in_yesterdays_file_is_read_once_also_after_a_restart(samba: Samba) -> None:
    days = Days(samba.share / "Logging" / "SMTP")
    days.append(3)
    cred = str(samba.credentials())
    src = SmbSource("me", samba.url(), credentials_file=cred, start_at="beginning")
    assert len(drain(src)) == 3
    yesterday = days.path
    days.next_day()
    days.append(2)
    assert len(drain(src)) == 2
    with yesterday.open("ab") as f:  # MailEnable finishing a row just after midnight
        f.write(late_row(b"LATE.MAI"))
    late = drain(src)
    assert [row.split(b"\t")[2] for row in late] == [b"LATE.MAI"]
    saved = json.loads(json.dumps(src.checkpoint()))
    src.close()
    with yesterday.open("ab") as f:
        f.write(late_row(b"LATER.MAI"))
    again = SmbSource("me", samba.url(), credentials_file=cred, saved=saved)
    assert [row.split(b"\t")[2] for row in drain(again)] == [b"LATER.MAI"]
    again.close()


def counts(d: Daemon) -> dict[str, float]:
    return {code: d.value("logscan_smtp_replies_total", log="me", code=code) for code in ("250", "551")}


@pytest.mark.slow
def test_daemon_counts_exactly_once_over_sigkills_and_day_changes(samba: Samba, tmp_path: Path) -> None:
    days = Days(samba.share / "Logging" / "SMTP", seed=551)
    rng = random.Random(5)
    port = free_port()
    cfg = write_config(tmp_path, [{"name": "me", "path": samba.url(), "format": "mailenable",
                                   "credentials_file": str(samba.credentials()), "start_at": "beginning"}],
                       port=port, save_interval=0.3)
    days.append(20)
    for _ in range(5):
        d = start_daemon(cfg, port)
        for _ in range(rng.randint(2, 4)):
            days.append(rng.randint(10, 150))
            if rng.random() < 0.4:
                days.next_day()
            time.sleep(rng.random() * 0.5)
        d.kill(signal.SIGKILL)
    d = start_daemon(cfg, port)
    want = {"250": days.truth["250"], "551": days.truth["551"]}
    try:
        try:
            wait_for(lambda: counts(d) == want, timeout=60, what="exact counts")
        except AssertionError:
            raise AssertionError(
                f"after 5 kills, {days.day} day changes: got {counts(d)}, want {want}"
            ) from None
        time.sleep(1.0)
        assert counts(d) == want
        print(f"smb: {sum(want.values())} rows, {days.day + 1} daily files, 5 kill -9: counted {counts(d)}")
    finally:
        assert d.stop() == 0


def test_share_that_goes_away_is_down_and_recovers(samba: Samba, tmp_path: Path) -> None:
    days = Days(samba.share / "Logging" / "SMTP")
    days.append(10)
    port = free_port()
    cfg = write_config(tmp_path, [{"name": "me", "path": samba.url(), "format": "mailenable",
                                   "credentials_file": str(samba.credentials()), "start_at": "beginning"}],
                       port=port)
    d = start_daemon(cfg, port)
    try:
        wait_for(lambda: sum(counts(d).values()) == 10, what="first rows counted")
        samba.stop()
        wait_for(lambda: d.value("logscan_log_up", log="me") == 0, what="log_up 0 while the share is away")
        days.append(7)
        samba.start()
        wait_for(lambda: d.value("logscan_log_up", log="me") == 1, timeout=30, what="log_up 1 again")
        wait_for(lambda: sum(counts(d).values()) == 17, what="rows written meanwhile counted once")
        assert "log_recovered" in d.logs()
    finally:
        assert d.stop() == 0
