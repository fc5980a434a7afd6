"""The real daemon on real files: counting, restarts, SIGKILL chaos, reload, missing logs."""

from __future__ import annotations

import json
import random
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.alertmanager_fixture import free_port
from tests.daemon_fixture import start_daemon, wait_for, write_config

T0 = time.time() - 3600


def postfix_line(seq: int, outcome: str) -> str:
    """A real-shaped Postfix delivery line (RFC 3339 prefix, as rsyslog on Debian 12 writes)."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(T0 + seq * 0.01)) + ".000000+00:00"
    qid = f"{seq:010X}"
    head = (
        f"{ts} mx1 postfix/smtp[4242]: {qid}: to=<u{seq}@example.net>, "
        "relay=mx.example.net[203.0.113.7]:25, delay=0.4, delays=0.1/0/0.2/0.1"
    )
    if outcome == "sent":
        return f"{head}, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as X{qid})"
    return (
        f"{head}, dsn=5.1.1, status=bounced (host mx.example.net"
        f"[203.0.113.7] said: 551 5.1.1 <u{seq}@example.net>: User not local (in reply to RCPT TO command))"
    )


class Writer:
    """Appends numbered lines to a log and remembers the truth."""

    def __init__(self, path: Path, seed: int = 7) -> None:
        self.path = path
        self.rng = random.Random(seed)
        self.seq = 0
        self.truth: Counter[str] = Counter()
        path.touch()

    def append(self, n: int, *, partial_tail: bool = False) -> None:
        lines = []
        for _ in range(n):
            self.seq += 1
            outcome = "bounced" if self.rng.random() < 0.2 else "sent"
            self.truth[outcome] += 1
            lines.append(postfix_line(self.seq, outcome))
        data = "".join(line + "\n" for line in lines)
        with self.path.open("a") as f:
            if partial_tail:
                # The last line arrives in two writes, as a busy syslog daemon may write it.
                f.write(data[:-20])
                f.flush()
                time.sleep(0.05)
                f.write(data[-20:])
            else:
                f.write(data)


def counters(daemon: object) -> dict[str, float]:
    from tests.daemon_fixture import Daemon  # noqa: PLC0415

    assert isinstance(daemon, Daemon)
    return {
        "sent": daemon.value("logscan_deliveries_total", log="mail", status="sent"),
        "bounced": daemon.value("logscan_deliveries_total", log="mail", status="bounced"),
        "r551": daemon.value("logscan_smtp_replies_total", log="mail", code="551"),
        "r250": daemon.value("logscan_smtp_replies_total", log="mail", code="250"),
    }


def expected(truth: Counter[str]) -> dict[str, float]:
    sent, bounced = truth["sent"], truth["bounced"]
    return {"sent": sent, "bounced": bounced, "r551": bounced, "r250": sent}


def test_counts_survive_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    w = Writer(log)
    w.append(50)
    port = free_port()
    cfg = write_config(tmp_path, [{"name": "mail", "path": str(log), "start_at": "beginning"}], port=port)
    d = start_daemon(cfg, port)
    try:
        wait_for(lambda: counters(d) == expected(w.truth), what="first 50 lines counted")
        w.append(30, partial_tail=True)
        wait_for(lambda: counters(d) == expected(w.truth), what="80 lines counted")
        assert d.value("logscan_log_up", log="mail") == 1
        assert d.value("logscan_lines_total", log="mail", result="parsed") == 80
    finally:
        assert d.stop() == 0
    events = [json.loads(line) for line in d.logs().splitlines() if line.startswith("{")]
    assert any(e["event"] == "state_saved" for e in events)
    # Lines written while the daemon is down are counted once, after it comes back.
    w.append(20)
    d2 = start_daemon(cfg, port)
    try:
        wait_for(lambda: counters(d2) == expected(w.truth), what="restart resumes without reset or recount")
    finally:
        d2.stop()


@pytest.mark.slow
def test_sigkill_at_random_moments_with_rotations_counts_exactly_once(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    w = Writer(log, seed=551)
    rng = random.Random(1)
    port = free_port()
    cfg = write_config(
        tmp_path, [{"name": "mail", "path": str(log), "start_at": "beginning"}], port=port, save_interval=0.3
    )
    rotations = 0
    for round_ in range(8):
        d = start_daemon(cfg, port)
        for _ in range(rng.randint(2, 5)):
            w.append(rng.randint(20, 400))
            if rng.random() < 0.4:
                rotations += 1
                # Shift every older generation, as logrotate does; none is deleted here, since a
                # deleted unread generation is lost to any reader (logrotate's `rotate N`).
                for i in range(rotations, 0, -1):
                    src = log.with_name(f"mail.log.{i}")
                    if src.exists():
                        src.rename(log.with_name(f"mail.log.{i + 1}"))
                if rng.random() < 0.5:  # rename + create
                    log.rename(log.with_name("mail.log.1"))
                    log.touch()
                else:  # copytruncate
                    shutil.copyfile(log, log.with_name("mail.log.1"))
                    with log.open("r+") as f:
                        f.truncate(0)
            time.sleep(rng.random() * 0.4)
        d.kill(signal.SIGKILL if round_ % 4 != 3 else signal.SIGTERM)
    d = start_daemon(cfg, port)
    try:
        try:
            wait_for(lambda: counters(d) == expected(w.truth), timeout=60, what="exact counts")
        except AssertionError:
            raise AssertionError(
                f"after 8 kills and {rotations} rotations: got {counters(d)}, want {expected(w.truth)}"
            ) from None
        time.sleep(1.5)  # and nothing more arrives later (no late double count)
        assert counters(d) == expected(w.truth)
    finally:
        d.stop()


def test_sighup_reload_refuses_invalid_config_and_applies_a_valid_one(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    other = tmp_path / "other.log"
    w = Writer(log)
    w.append(10)
    port = free_port()
    logs = [{"name": "mail", "path": str(log), "start_at": "beginning"}]
    cfg = write_config(tmp_path, logs, port=port)
    d = start_daemon(cfg, port)
    try:
        wait_for(lambda: counters(d) == expected(w.truth), what="counted")
        good = cfg.read_text()
        cfg.write_text(good + "\n[bogus]\nkey = 1\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config_reload_refused" in d.logs(), what="refusal logged")
        assert d.proc.poll() is None
        w2 = Writer(other, seed=3)
        w2.append(5)
        both = [*logs, {"name": "other", "path": str(other), "start_at": "beginning"}]
        write_config(tmp_path, both, port=port)
        d.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: d.value("logscan_lines_total", log="other", result="parsed") == 5, what="new log read"
        )
        assert counters(d) == expected(w.truth)  # nothing lost, nothing counted twice
    finally:
        d.stop()


def test_missing_log_is_waited_for_and_reported(tmp_path: Path) -> None:
    log = tmp_path / "later" / "mail.log"
    port = free_port()
    cfg = write_config(tmp_path, [{"name": "mail", "path": str(log), "start_at": "beginning"}], port=port)
    d = start_daemon(cfg, port, ready=False)
    try:
        assert d.get("/healthz")[0] == 200
        assert d.get("/ready")[0] == 503
        assert d.scrape()[("logscan_log_up", (("log", "mail"),))] == 0  # present, and 0
        log.parent.mkdir()
        w = Writer(log)
        w.append(12)
        wait_for(lambda: counters(d) == expected(w.truth), what="log appears and is read")
        assert d.get("/ready")[0] == 200
        assert d.value("logscan_log_up", log="mail") == 1
    finally:
        d.stop()


def test_corrupt_state_is_reported_and_nothing_is_recounted(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    w = Writer(log)
    w.append(40)
    port = free_port()
    cfg = write_config(tmp_path, [{"name": "mail", "path": str(log), "start_at": "end"}], port=port)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.json").write_text('{"version": 1, "logs": {"mail": ')
    d = start_daemon(cfg, port)
    try:
        assert "state_unusable" in d.logs()
        # start_at = end: the 40 old lines are not counted again; new ones are.
        w2_before = dict(w.truth)
        w.append(10)
        new = {k: w.truth[k] - w2_before.get(k, 0) for k in ("sent", "bounced")}
        wait_for(
            lambda: d.value("logscan_deliveries_total", log="mail") == new["sent"] + new["bounced"],
            what="only new lines counted",
        )
    finally:
        d.stop()
    assert list((tmp_path / "state").glob("state.json.corrupt-*"))
