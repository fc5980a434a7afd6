"""Queue depth: the parsers, a real Postfix (private instance, delivery stopped), a real Exim
(the Debian 12 build unpacked by scripts/setup.sh), the timeout, and the daemon's /metrics.

Postfix runs from the installed Debian package with its own config_directory, queue_directory
and data_directory under tmp and no network listener; nothing of the system's Postfix is used.
Exim cannot be installed next to Postfix (exim4-daemon-light and postfix both provide
mail-transport-agent), so scripts/setup.sh unpacks its .debs into build/exim4/; the Debian build
looks its user Debian-exim up by name, so the test runs it in a private mount namespace where
/etc/passwd and /etc/group carry that user (nothing on the machine changes).
Missing binaries FAIL these tests: a skipped one would prove nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from logscan.sources.queue import (
    POSTFIX_QUEUES,
    QueueError,
    QueueSampler,
    count_mailenable,
    parse_exim_bpc,
    parse_postqueue_json,
)
from tests.alertmanager_fixture import free_port
from tests.daemon_fixture import REPO, start_daemon, wait_for, write_config

EXIM_ROOT = REPO / "build" / "exim4" / "root"
NOBODY = 65534

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = queue-test.example.com
mydomain = example.com
myorigin = example.com
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
relayhost = [127.0.0.1]:9
# Delivery stopped: the smtp transport is deferred, "Subject: hold" goes on hold.
defer_transports = smtp
header_checks = regexp:{d}/etc/header_checks
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
alias_maps =
alias_database =
local_recipient_maps =
"""
# No inet service at all: this Postfix only takes mail from sendmail.
MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _need(binary: str, package: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if path is None:
        pytest.fail(f"{binary} not found: install the Debian package {package!r} (scripts/setup.sh does)")
    return path


# ---------------------------------------------------------------- parsers (unit)


def test_postqueue_json_counts_by_queue_and_names_every_queue() -> None:
    out = (
        b'{"queue_name": "deferred", "queue_id": "A1", "recipients": []}\n'
        b'{"queue_name": "deferred", "queue_id": "A2", "recipients": []}\n'
        b'{"queue_name": "hold", "queue_id": "A3", "recipients": []}\n\n'
    )
    assert parse_postqueue_json(out) == {"active": 0, "deferred": 2, "hold": 1, "incoming": 0, "maildrop": 0}
    assert parse_postqueue_json(b"") == dict.fromkeys(POSTFIX_QUEUES, 0)


@pytest.mark.parametrize(
    "bad", [b"Mail queue is empty\n", b'{"queue_id": "A1"}\n', b'{"queue_name": "bogus"}\n', b"[1]\n"]
)
def test_postqueue_output_that_is_not_json_records_is_an_error(bad: bytes) -> None:
    with pytest.raises(QueueError):
        parse_postqueue_json(bad)


def test_exim_bpc() -> None:
    assert parse_exim_bpc(b"17\n") == {"all": 17}
    with pytest.raises(QueueError):
        parse_exim_bpc(b"exim: permission denied\n")


def test_mailenable_counts_message_files_in_its_queue_folders(tmp_path: Path) -> None:
    inbound = tmp_path / "SMTP" / "Inbound" / "Messages"
    outgoing = tmp_path / "SMTP" / "Outgoing" / "Messages"
    inbound.mkdir(parents=True)
    outgoing.mkdir(parents=True)
    for i in range(3):
        (outgoing / f"{i:032X}.MAI").write_text("x")
    (outgoing / "0A.mai").write_text("x")
    (outgoing / "notes.txt").write_text("x")
    (outgoing / "sub.MAI").mkdir()  # a directory is not a message
    (inbound / "1B.MAI").write_text("x")
    assert count_mailenable(tmp_path) == {"smtp-inbound": 1, "smtp-outgoing": 4}
    with pytest.raises(QueueError, match="Inbound"):
        count_mailenable(tmp_path / "missing")


def test_a_hanging_command_times_out_is_counted_and_never_blocks_status(tmp_path: Path) -> None:
    sleep = _need("sleep", "coreutils")
    errors: list[str] = []
    sampler = QueueSampler("exim", interval=0.2, timeout=0.3, command=(sleep, "30"), on_error=errors.append)
    sampler.start()
    try:
        started = time.monotonic()
        status = sampler.status()  # while the command hangs
        assert time.monotonic() - started < 0.2  # waiting on the command would take its 0.3 s
        assert status.depths is None
        wait_for(lambda: sampler.status().errors >= 2, timeout=10, what="two timed-out samples")
        assert "no answer within 0.3 s" in errors[0]
    finally:
        sampler.stop()


# ---------------------------------------------------------------- real Postfix


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory the MTAs' unprivileged users can reach (pytest's tmp is root-only, 0700)."""
    d = Path(tempfile.mkdtemp(prefix="logscan-q-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def postfix(open_dir: Path) -> Iterator[Path]:
    """A private, running Postfix whose mail stays queued; yields its config_directory."""
    binary = _need("postfix", "postfix")
    d = open_dir / "pf"
    for sub in ("etc", "spool", "data"):
        (d / sub).mkdir(parents=True)
    shutil.chown(d / "data", "postfix")
    d.chmod(0o755)
    (d / "etc" / "main.cf").write_text(MAIN_CF.format(d=d))
    (d / "etc" / "master.cf").write_text(MASTER_CF)
    (d / "etc" / "header_checks").write_text("/^Subject: hold/ HOLD\n")
    started = subprocess.run(
        [binary, "-c", str(d / "etc"), "start"], capture_output=True, text=True, timeout=60
    )
    if started.returncode != 0:
        log = (d / "maillog").read_text() if (d / "maillog").exists() else ""
        pytest.fail(f"private postfix did not start: {started.stdout}{started.stderr}{log}")
    try:
        yield d / "etc"
    finally:
        subprocess.run([binary, "-c", str(d / "etc"), "stop"], capture_output=True, timeout=60)


def _submit(config_dir: Path, subject: str) -> None:
    sendmail = _need("sendmail", "postfix")
    msg = f"From: a@example.com\nTo: b@example.net\nSubject: {subject}\n\nbody\n"
    subprocess.run(
        [sendmail, "-C", str(config_dir), "-f", "a@example.com", "b@example.net"],
        input=msg,
        text=True,
        check=True,
        timeout=30,
    )


@pytest.mark.slow
def test_real_postfix_queue_depth_in_the_daemon_metrics(postfix: Path, tmp_path: Path) -> None:
    postqueue = _need("postqueue", "postfix")
    command = (postqueue, "-c", str(postfix), "-j")
    sampler = QueueSampler("postfix", command=command, timeout=10)
    assert sampler.sample() == dict.fromkeys(POSTFIX_QUEUES, 0)
    for subject in ("defer 1", "defer 2", "defer 3", "hold 1"):
        _submit(postfix, subject)
    want = {"active": 0, "deferred": 3, "hold": 1, "incoming": 0, "maildrop": 0}
    wait_for(lambda: sampler.sample() == want, timeout=30, what=f"postqueue -j to show {want}")

    log = tmp_path / "mail.log"
    log.touch()
    port = free_port()
    extra = f'[queue]\nmta = "postfix"\ninterval = 0.5\ntimeout = 5\ncommand = {list(command)!r}\n'.replace(
        "'", '"'
    )
    cfg = write_config(
        tmp_path, [{"name": "mail", "path": str(log), "format": "postfix"}], port=port, extra=extra
    )
    d = start_daemon(cfg, port)
    try:
        wait_for(
            lambda: d.value("logscan_queue_messages", mta="postfix", queue="deferred") == 3,
            what="deferred = 3 on /metrics",
        )
        assert d.value("logscan_queue_messages", mta="postfix", queue="hold") == 1
        for queue in ("active", "incoming", "maildrop"):
            assert (
                "logscan_queue_messages",
                (("mta", "postfix"), ("queue", queue)),
            ) in d.scrape(), f"{queue} present at 0"
        assert d.value("logscan_queue_scrape_errors_total", mta="postfix") == 0
        # Postfix stops: postqueue runs showq itself ("Mail system is down -- accessing queue
        # directly"), so the depth stays known.
        subprocess.run([_need("postfix", "postfix"), "-c", str(postfix), "stop"], check=True, timeout=60)
        time.sleep(1.5)  # three sampling intervals
        assert d.value("logscan_queue_messages", mta="postfix", queue="deferred") == 3
        assert d.value("logscan_queue_scrape_errors_total", mta="postfix") == 0
        # No queue at all: postqueue fails; errors count and the depth disappears.
        spool = postfix.parent / "spool"
        spool.rename(spool.with_name("spool.gone"))
        wait_for(lambda: d.value("logscan_queue_scrape_errors_total", mta="postfix") >= 1, what="an error")
        wait_for(lambda: not any(n == "logscan_queue_messages" for n, _ in d.scrape()), what="no stale depth")
        assert "queue_sample_failed" in d.logs()
    finally:
        d.stop()


# ---------------------------------------------------------------- real Exim


EXIM_CONF = """\
primary_hostname = queue-test.example.com
exim_user = Debian-exim
exim_group = Debian-exim
spool_directory = {d}/spool
log_file_path = {d}/log/%slog
keep_environment =
"""
# Runs Exim where Debian-exim exists: a private mount namespace whose /etc/passwd and
# /etc/group name it (as uid/gid 65534), then the unpacked binary with our config.
WRAPPER = """\
#!/bin/sh
exec unshare -m sh -c 'mount --bind {d}/passwd /etc/passwd && mount --bind {d}/group /etc/group \
&& LD_LIBRARY_PATH={root}/usr/lib/x86_64-linux-gnu exec {root}/usr/sbin/exim4 -C {d}/exim.conf "$@"' exim "$@"
"""


@pytest.fixture
def exim(open_dir: Path) -> Path:
    """A wrapper that runs the real Debian Exim 4.96 on a private spool; returns its path."""
    if not (EXIM_ROOT / "usr/sbin/exim4").exists():
        pytest.fail(f"{EXIM_ROOT}/usr/sbin/exim4 missing: run scripts/setup.sh (it unpacks the exim4 .debs)")
    if os.geteuid() != 0:
        pytest.fail("the Exim test needs root (a private mount namespace for the Debian-exim user)")
    d = open_dir / "exim"
    for sub in ("spool", "log"):
        (d / sub).mkdir(parents=True)
        os.chown(d / sub, NOBODY, NOBODY)
    d.chmod(0o755)
    (d / "passwd").write_text(
        Path("/etc/passwd").read_text() + f"Debian-exim:x:{NOBODY}:{NOBODY}::{d}:/usr/sbin/nologin\n"
    )
    (d / "group").write_text(Path("/etc/group").read_text() + f"Debian-exim:x:{NOBODY}:\n")
    (d / "exim.conf").write_text(EXIM_CONF.format(d=d))
    wrapper = d / "exim"
    wrapper.write_text(WRAPPER.format(d=d, root=EXIM_ROOT))
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.slow
def test_real_exim_queue_depth(exim: Path) -> None:
    sampler = QueueSampler("exim", command=(str(exim), "-bpc"), timeout=10)
    assert sampler.sample() == {"all": 0}
    for rcpt in ("b@example.net", "c@example.net"):
        # -odq: queue only, no delivery attempt (and no daemon runs the queue)
        subprocess.run(
            [str(exim), "-odq", "-f", "a@example.org", rcpt],
            input="Subject: queued\n\nbody\n",
            text=True,
            check=True,
            timeout=30,
        )
    sampler.sample_once()
    assert sampler.status().depths == {"all": 2}
    assert sampler.status().errors == 0


# ---------------------------------------------------------------- [queue] config


def test_queue_section_is_optional_and_checked() -> None:
    from logscan.app.config import ConfigError, parse_config  # noqa: PLC0415

    base = '[[logs]]\nname = "m"\npath = "/var/log/mail.log"\n'
    assert parse_config(base).queue.mta == ""
    cfg = parse_config(base + '[queue]\nmta = "exim"\ninterval = 5\n')
    assert (cfg.queue.mta, cfg.queue.interval, cfg.queue.timeout) == ("exim", 5.0, 10.0)
    for bad, why in (
        ('mta = "sendmail"', "queue.mta"),
        ("timeout = 0", "must be > 0"),
        ('mta = "mailenable"', "absolute Queues path"),
        ("depth = 3", "depth"),
    ):
        with pytest.raises(ConfigError, match=why):
            parse_config(base + f"[queue]\n{bad}\n")
