"""Follower against the real logrotate binary, with the follower running and across a restart."""

from __future__ import annotations

import datetime as dt
import gzip
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logscan.sources.follower import Follower
from tests.helpers_files import LogWriter, drain, run_logrotate


def test_logrotate_is_installed() -> None:
    # Not a skip: without the binary these tests would prove nothing (Debian package `logrotate`).
    assert shutil.which("logrotate"), "logrotate binary missing: apt-get install -y logrotate"


TODAY = dt.datetime.now().strftime("%Y%m%d")

# name -> (logrotate directives, rotated file name, is the rotated file compressed at once)
SCENARIOS: dict[str, tuple[str, str, bool]] = {
    "create": ("create", "mail.log.1", False),
    "create-delaycompress": ("create\n  compress\n  delaycompress", "mail.log.1", False),
    "create-compress": ("create\n  compress", "mail.log.1.gz", True),
    "copytruncate": ("copytruncate", "mail.log.1", False),
    "copytruncate-compress": ("copytruncate\n  compress", "mail.log.1.gz", True),
    "dateext": ("create\n  dateext\n  dateformat -%Y%m%d", f"mail.log-{TODAY}", False),
    "dateext-compress": ("create\n  dateext\n  dateformat -%Y%m%d\n  compress", f"mail.log-{TODAY}.gz", True),
}


def _conf(log: Path, directives: str, late_line: str) -> str:
    # postrotate runs after the rename and before compression: the MTA's writes that land in the
    # old file before it reopens its log are simulated there.
    renamed = log.with_name(log.name + "-" + TODAY) if "dateext" in directives else log.with_name(
        log.name + ".1")
    late = (f'  postrotate\n    [ -e {renamed} ] && printf "{late_line}\\n" >> {renamed} || true\n'
            "  endscript\n")
    return f"{log} {{\n  rotate 5\n  missingok\n  {directives}\n{late}}}\n"


def _read(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_logrotate_while_following(tmp_path: Path, scenario: str) -> None:
    directives, rotated_name, _ = SCENARIOS[scenario]
    log = tmp_path / "mail.log"
    w = LogWriter(log, tag=scenario)
    f = Follower("m", str(log), start_at="beginning")
    first = w.line(3)
    assert f.poll() == first
    unread = w.line(2)
    late = f"9999999 {scenario} late line"
    run_logrotate(tmp_path, _conf(log, directives, late))
    rotated = tmp_path / rotated_name
    assert rotated.exists(), sorted(p.name for p in tmp_path.iterdir())
    assert unread[-1] in _read(rotated)
    copy = "copytruncate" in directives
    if not copy:
        w.reopen()
    fresh = w.line(2)
    got = drain(f)
    # The late line was appended to the rotated file (for copytruncate: to the copy) before any
    # compression: it is content like any other.
    assert got == [*unread, late.encode(), *fresh]
    assert f.rotations == 1
    how = [d["how"] for n, d in f.drain_notes() if n == "log_rotated"]
    assert how == (["copytruncate"] if copy else ["new-file"] if rotated_name.endswith(".gz")
                   else ["rename"])


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_logrotate_while_down(tmp_path: Path, scenario: str) -> None:
    directives, rotated_name, _ = SCENARIOS[scenario]
    log = tmp_path / "mail.log"
    w = LogWriter(log, tag=scenario)
    f = Follower("m", str(log), start_at="beginning")
    first = w.line(3)
    assert f.poll() == first
    saved: dict[str, Any] = f.checkpoint()
    f.close()
    unread = w.line(2)
    late = f"9999999 {scenario} late line"
    run_logrotate(tmp_path, _conf(log, directives, late))
    assert (tmp_path / rotated_name).exists()
    copy = "copytruncate" in directives
    if not copy:
        w.reopen()
    fresh = w.line(2)
    g = Follower("m", str(log), saved=saved)
    got = drain(g)
    assert got == [*unread, late.encode(), *fresh]
    assert g.rotations == 1
    assert [n for n, _ in g.drain_notes()].count("state_mismatch") == 0


def test_logrotate_twice_while_down_reads_the_file_in_between(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    w = LogWriter(log)
    f = Follower("m", str(log), start_at="beginning")
    w.line(2)
    f.poll()
    saved = f.checkpoint()
    f.close()
    unread = w.line(1)
    conf = f"{log} {{\n  rotate 5\n  create\n  compress\n  delaycompress\n}}\n"
    run_logrotate(tmp_path, conf)
    w.reopen()
    middle = w.line(3)
    run_logrotate(tmp_path, conf)  # mail.log.1 -> mail.log.2.gz, mail.log -> mail.log.1
    w.reopen()
    fresh = w.line(1)
    assert (tmp_path / "mail.log.2.gz").exists()
    g = Follower("m", str(log), saved=saved)
    assert drain(g) == unread + middle + fresh


def test_first_start_at_end_never_reads_rotated_history_compressed_later(tmp_path: Path) -> None:
    """delaycompress gzips yesterday's file at the next rotation: new mtime, old content."""
    log = tmp_path / "mail.log"
    w = LogWriter(log)
    w.line(3)
    conf = f"{log} {{\n  rotate 5\n  create\n  compress\n  delaycompress\n}}\n"
    run_logrotate(tmp_path, conf)
    w.reopen()
    w.line(2)
    f = Follower("m", str(log), start_at="end")  # mail.log.1 and mail.log are history
    assert f.poll() == []
    fresh = w.line(1)
    run_logrotate(tmp_path, conf)  # history mail.log.1 -> mail.log.2.gz now
    w.reopen()
    after = w.line(1)
    assert drain(f) == fresh + after
    saved = f.checkpoint()
    f.close()
    run_logrotate(tmp_path, conf)
    w.reopen()
    last = w.line(1)
    g = Follower("m", str(log), saved=saved)
    assert drain(g) == last


def test_postfix_logrotate_sequence_by_hand(tmp_path: Path) -> None:
    """`postfix logrotate` (postfix-script): mv to .%Y%m%d-%H%M%S, HUP, sleep, gzip; no create."""
    log = tmp_path / "postfix.log"
    w = LogWriter(log)
    f = Follower("pf", str(log), start_at="beginning")
    first = w.line(2)
    assert f.poll() == first
    unread = w.line(1)
    rotated = tmp_path / "postfix.log.20261129-073000"
    log.rename(rotated)
    late = w.line(1)  # postlogd writes on until the HUP reaches it
    assert f.poll() == unread + late  # the log is missing now; the old file is still drained
    assert f.up
    w.reopen()  # postlogd reopens: the path exists again
    with rotated.open("rb") as src, gzip.open(rotated.with_name(rotated.name + ".gz"), "wb") as dst:
        dst.write(src.read())
    rotated.unlink()
    fresh = w.line(2)
    assert drain(f) == fresh
    assert f.rotations == 1


def _postfix_conf(tmp: Path) -> Path:
    """A private Postfix config dir whose maillog_file lives in tmp (no running Postfix touched)."""
    conf = tmp / "pfconf"
    conf.mkdir()
    # A minimal main.cf of our own: a "No configuration" install has none to copy.
    (conf / "main.cf").write_text("compatibility_level = 3.6\nmyhostname = localhost.localdomain\n")
    master = Path("/etc/postfix/master.cf")
    shutil.copy(master if master.exists() else master.with_name("master.cf.proto"), conf / "master.cf")
    (tmp / "queue" / "pid").mkdir(parents=True)  # `master -t` looks here: no master, no HUP
    settings = [f"maillog_file={tmp / 'postfix.log'}", f"maillog_file_prefixes={tmp}",
                f"queue_directory={tmp / 'queue'}"]
    subprocess.run(["postconf", "-c", str(conf), "-e", *settings], check=True, timeout=30)
    return conf


def _postfix_logrotate(tmp: Path, conf: Path, w: LogWriter, late_lines: int) -> list[bytes]:
    """Run `postfix logrotate` (mv, HUP, sleep 1, gzip); write late lines after the mv, then reopen."""
    proc = subprocess.Popen(["postfix", "-c", str(conf), "logrotate"])
    deadline = time.monotonic() + 10
    while not list(tmp.glob("postfix.log.*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    late = w.line(late_lines)  # postlogd writes on until the HUP reaches it
    w.reopen()
    assert proc.wait(timeout=30) == 0
    return late


def needs_postfix(test: Callable[[Path], None]) -> Callable[[Path], None]:
    """The real `postfix logrotate` tests: a missing Postfix fails them (setup installs it)."""

    def run(tmp_path: Path) -> None:
        if shutil.which("postfix") is None:
            pytest.fail("real `postfix logrotate` needs the Debian package postfix: run scripts/setup.sh")
        test(tmp_path)

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


def _postlogd_following(tmp_path: Path) -> tuple[Path, LogWriter, Follower]:
    """A postlogd-style log with 3 lines already read by a Follower, and its `postfix` config."""
    conf = _postfix_conf(tmp_path)
    log = tmp_path / "postfix.log"
    w = LogWriter(log, tag="postlogd")
    f = Follower("pf", str(log), start_at="beginning")
    first = w.line(3)
    assert f.poll() == first
    return conf, w, f


@needs_postfix
def test_real_postfix_logrotate_while_following(tmp_path: Path) -> None:
    conf, w, f = _postlogd_following(tmp_path)
    unread = w.line(2)
    late = _postfix_logrotate(tmp_path, conf, w, 1)
    rotated = [p.name for p in tmp_path.glob("postfix.log.*")]
    assert len(rotated) == 1
    assert re.fullmatch(r"postfix\.log\.\d{8}-\d{6}\.gz", rotated[0])
    fresh = w.line(2)
    assert drain(f) == unread + late + fresh
    assert f.rotations == 1


@needs_postfix
def test_real_postfix_logrotate_while_down(tmp_path: Path) -> None:
    conf, w, f = _postlogd_following(tmp_path)
    saved = f.checkpoint()
    f.close()
    unread = w.line(2)
    late = _postfix_logrotate(tmp_path, conf, w, 1)
    fresh = w.line(1)
    g = Follower("pf", str(w.path), saved=saved)
    assert drain(g) == unread + late + fresh
    assert [n for n, _ in g.drain_notes()].count("state_mismatch") == 0
