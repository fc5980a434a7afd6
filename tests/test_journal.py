"""The journal source against real journal files (systemd-journal-remote) read by the real journalctl."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from logscan.app.config import ConfigError, parse_config
from logscan.events import Unparsed
from logscan.parsers import bulk_reader_of, make_parser
from logscan.parsers.base import ParserOptions
from logscan.sources.journal import JournalSource, render
from tests.alertmanager_fixture import free_port
from tests.daemon_fixture import Daemon, start_daemon, wait_for, write_config
from tests.test_daemon import postfix_line

REMOTE = next((p for p in ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
               if Path(p).exists()), "/lib/systemd/systemd-journal-remote")
BOOT = "0123456789abcdef0123456789abcdef"
T0 = time.time() - 3600


class Journal:
    """Writes numbered Postfix delivery entries (and noise) into a journal file, remembering the truth."""

    def __init__(self, directory: Path, seed: int = 13) -> None:
        self.dir = directory
        directory.mkdir(exist_ok=True)
        self.rng = random.Random(seed)
        self.seq = 0
        self.truth: Counter[str] = Counter()

    def append(self, n: int, file: str = "remote.journal", noise: bool = True) -> None:
        out = []
        for _ in range(n):
            self.seq += 1
            outcome = "bounced" if self.rng.random() < 0.2 else "sent"
            self.truth[outcome] += 1
            # The message as Postfix hands it to syslog(3): what follows "postfix/smtp[pid]: ".
            msg = postfix_line(self.seq, outcome).split(": ", 1)[1]
            ident = self.rng.choice(["postfix/smtp", "postfix-out/smtp", "postfix-submission/smtp"])
            out.append(self._entry(ident, msg))
            if noise and self.seq % 5 == 0:
                out.append(self._entry("sshd", f"Accepted publickey for u{self.seq} status=bounced 551 x"))
        subprocess.run([REMOTE, f"--output={self.dir / file}", "-"], input=b"".join(out), check=True,
                       capture_output=True)

    def _entry(self, ident: str, msg: str) -> bytes:
        usec = int((T0 + self.seq * 0.01) * 1e6)
        return (f"__REALTIME_TIMESTAMP={usec}\n__MONOTONIC_TIMESTAMP={self.seq * 1000}\n_BOOT_ID={BOOT}\n"
                f"_HOSTNAME=mx1\n_TRANSPORT=syslog\nSYSLOG_IDENTIFIER={ident}\n_PID=4242\n"
                f"MESSAGE={msg}\n\n").encode()


def counters(d: Daemon, log: str = "mail") -> dict[str, float]:
    return {s: d.value("logscan_deliveries_total", log=log, status=s) for s in ("sent", "bounced")}


def want(truth: Counter[str]) -> dict[str, float]:
    return {"sent": truth["sent"], "bounced": truth["bounced"]}


def drain(src: JournalSource, quiet: float = 0.6) -> list[bytes]:
    """Poll until nothing new arrived for `quiet` seconds."""
    out: list[bytes] = []
    last = time.monotonic()
    while time.monotonic() - last < quiet:
        got = src.poll()
        if got:
            out += got
            last = time.monotonic()
        time.sleep(0.05)
    return out


def test_rendered_entries_parse_with_the_journal_time_and_take_the_bulk_path() -> None:
    entry = {"__REALTIME_TIMESTAMP": "1796580460713968", "_HOSTNAME": "mx1", "SYSLOG_IDENTIFIER":
             "postfix-out/smtp", "_PID": "77",
             "MESSAGE": postfix_line(1, "bounced").split(": ", 1)[1]}
    line = render(entry)
    assert line is not None
    assert line.startswith(b"2026-12-06T18:07:40.713968+00:00 mx1 postfix-out/smtp[77]: ")
    parser = make_parser("postfix", ParserOptions(log="j", tz=None, reference_time=0.0))
    events = parser.parse(line.decode())
    assert not isinstance(events, Unparsed)
    assert [(e.code, e.status, e.time) for e in events] == [("551", "bounced", 1796580460.713968)]
    bulk = bulk_reader_of(parser)
    assert bulk is not None
    rows = bulk.rows([line.decode()] * 3)
    assert rows is not None
    assert all(isinstance(r, tuple) for r in rows)  # the regex fast path, not parse() per line
    # A message journald stored as bytes (not UTF-8) still renders; one without MESSAGE does not.
    assert render({**entry, "MESSAGE": [0x35, 0x35, 0x31, 0xFF]}) is not None
    assert render({"__REALTIME_TIMESTAMP": "1"}) is None


def test_source_selects_identifiers_resumes_at_cursor_and_follows_appends(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j")
    j.append(20)
    src = JournalSource("mail", directory=str(j.dir), start_at="beginning")
    first = drain(src)
    assert len(first) == 20
    assert all(b" postfix" in line for line in first)  # sshd entries are not handed out
    j.append(7)  # appended to the same file while journalctl --follow runs
    assert len(drain(src)) == 7
    saved = json.loads(json.dumps(src.checkpoint()))
    src.close()
    j.append(5)
    again = JournalSource("mail", directory=str(j.dir), saved=saved)
    assert len(drain(again)) == 5
    assert again.up
    assert again.cursor_gaps == 0
    again.close()
    exim = JournalSource("x", directory=str(j.dir), identifiers=("exim*",), start_at="beginning")
    assert drain(exim) == []
    exim.close()


def test_start_at_end_skips_the_past_but_not_what_comes_next(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j")
    j.append(10)
    src = JournalSource("mail", directory=str(j.dir), start_at="end")
    assert drain(src) == []
    j.append(3)
    assert len(drain(src)) == 3
    src.close()


def test_missing_directory_is_down_and_recovers(tmp_path: Path) -> None:
    d = tmp_path / "later"
    src = JournalSource("mail", directory=str(d), start_at="beginning", clock=lambda: 1e9)
    assert src.poll() == []
    assert not src.up
    assert "does not exist" in src.error
    Journal(d).append(4)
    src._next_try = 0.0  # skip the retry pause in a unit test
    assert len(drain(src)) == 4
    assert src.up
    events = [e for e, _ in src.drain_notes()]
    assert events == ["log_unreadable", "log_recovered"]
    src.close()


@pytest.mark.slow
def test_daemon_counts_every_entry_once_over_sigkills(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j", seed=551)
    rng = random.Random(3)
    port = free_port()
    cfg = write_config(tmp_path, [{"name": "mail", "source": "journal", "journal_directory": str(j.dir),
                                   "start_at": "beginning"}], port=port, save_interval=0.3)
    j.append(30)
    for _ in range(5):
        d = start_daemon(cfg, port)
        for _ in range(rng.randint(2, 4)):
            j.append(rng.randint(10, 200))
            time.sleep(rng.random() * 0.4)
        d.kill(signal.SIGKILL)
    d = start_daemon(cfg, port)
    try:
        try:
            wait_for(lambda: counters(d) == want(j.truth), timeout=60, what="exact counts")
        except AssertionError:
            raise AssertionError(f"after 5 kills: got {counters(d)}, want {want(j.truth)}") from None
        time.sleep(1.0)  # and nothing more arrives later
        assert counters(d) == want(j.truth)
        assert d.value("logscan_log_up", log="mail") == 1
        assert d.value("logscan_journal_cursor_gaps_total", log="mail") == 0
        print(f"journal: {j.seq} entries, 5 kill -9: counted {counters(d)}")
    finally:
        assert d.stop() == 0


def test_vacuumed_cursor_is_counted_as_a_gap_and_reading_resumes_at_the_oldest(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j")
    port = free_port()
    cfg = write_config(tmp_path, [{"name": "mail", "source": "journal", "journal_directory": str(j.dir),
                                   "start_at": "beginning"}], port=port)
    j.append(10, file="a.journal", noise=False)
    d = start_daemon(cfg, port)
    try:
        wait_for(lambda: counters(d) == want(j.truth), what="first file counted")
    finally:
        assert d.stop() == 0
    counted = Counter(j.truth)
    j.append(6, file="a.journal", noise=False)  # never read: lost with the file
    lost = j.truth - counted
    # Rotation as journald does it: the active file is renamed to its archived name, writing
    # goes on in a new file; then the real journalctl vacuums the archived one away.
    (j.dir / "a.journal").rename(j.dir / f"a@{'0' * 31}1-{'0' * 15}1-{'0' * 15}1.journal")
    j.append(9, file="a.journal", noise=False)
    vacuum = subprocess.run(["journalctl", f"--directory={j.dir}", "--vacuum-files=1"],
                            capture_output=True, text=True, check=True)
    assert "Deleted archived journal" in vacuum.stderr + vacuum.stdout
    assert [p.name for p in j.dir.iterdir()] == ["a.journal"]
    d = start_daemon(cfg, port)
    try:
        wait_for(lambda: counters(d) == want(j.truth - lost), what="resumed at the oldest remaining entry")
        assert d.value("logscan_journal_cursor_gaps_total", log="mail") == 1
        assert "journal_cursor_gone" in d.logs()
        j.append(4, file="a.journal", noise=False)
        wait_for(lambda: counters(d) == want(j.truth - lost), what="following after the gap")
    finally:
        assert d.stop() == 0


def test_sighup_reload_keeps_the_journal_position(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j")
    port = free_port()
    log = {"name": "mail", "source": "journal", "journal_directory": str(j.dir), "start_at": "beginning"}
    cfg = write_config(tmp_path, [log], port=port)
    j.append(12)
    d = start_daemon(cfg, port)
    try:
        wait_for(lambda: counters(d) == want(j.truth), what="first entries counted")
        write_config(tmp_path, [{**log, "timezone": "Europe/Berlin"}], port=port)  # the log is re-made
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config_reloaded" in d.logs(), what="reload")
        j.append(8)
        wait_for(lambda: counters(d) == want(j.truth), what="entries after the reload counted once")
        time.sleep(1.0)
        assert counters(d) == want(j.truth)
    finally:
        assert d.stop() == 0


def test_scan_journal_reports_over_a_journal_directory(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j")
    j.append(40)
    out = subprocess.run([sys.executable, "-m", "logscan", "scan", "--journal", "--journal-directory",
                          str(j.dir), "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["lines"] == 40
    assert doc["unparsed"] == 0
    assert doc["deliveries"]["bounced"] == j.truth["bounced"]
    for since, lines in (("-2h", 40), ("-30min", 0)):  # the entries are an hour old
        args = ["scan", "--journal", "--journal-directory", str(j.dir), f"--since={since}", "--json"]
        out = subprocess.run([sys.executable, "-m", "logscan", *args], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["lines"] == lines, since


def test_config_keys_of_the_journal_and_smb_sources() -> None:
    ok = parse_config('[[logs]]\nname = "j"\nsource = "journal"\nidentifiers = ["postfix*"]\n')
    assert ok.logs[0].source == "journal"
    with pytest.raises(ConfigError, match=r"logs\[0\]\.path.*no path"):
        parse_config('[[logs]]\nname = "j"\nsource = "journal"\npath = "/var/log/mail.log"\n')
    with pytest.raises(ConfigError, match=r"credentials_file"):
        parse_config('[[logs]]\nname = "m"\npath = "smb://srv/share/Logging/SMTP-*.log"\n')
    with pytest.raises(ConfigError, match=r"need source = \"journal\""):
        parse_config('[[logs]]\nname = "m"\npath = "/x.log"\njournal_directory = "/j"\n')


def test_default_mail_log_falls_back_to_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from logscan.app import sources  # noqa: PLC0415

    missing = str(tmp_path / "mail.log")
    monkeypatch.setattr(sources, "MAIL_LOG", missing)
    monkeypatch.setattr(sources, "journal_exists", lambda: True)
    cfg = parse_config(f'[[logs]]\nname = "mail"\npath = "{missing}"\n').logs[0]
    assert sources.journal_instead(cfg).source == "journal"
    Path(missing).touch()  # a server with rsyslog keeps its file
    assert sources.journal_instead(cfg).source == "file"


def test_run_without_a_config_file_uses_the_built_in_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from logscan.app import daemon  # noqa: PLC0415

    missing = tmp_path / "logscan.toml"
    monkeypatch.setattr(daemon, "DEFAULT_PATH", missing)
    cfg = daemon.load_or_default(missing)
    assert [(lg.name, lg.path, lg.source) for lg in cfg.logs] == [("mail", "/var/log/mail.log", "file")]
    with pytest.raises(ConfigError, match="cannot read config"):
        daemon.load_or_default(tmp_path / "other.toml")  # a named config file must exist

