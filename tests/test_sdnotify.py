"""sd_notify over a real unix datagram socket, as systemd's manager would receive it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from logscan.app import sdnotify
from tests.alertmanager_fixture import free_port


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket bound where $NOTIFY_SOCKET points, standing in for PID 1."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode("utf-8")


def test_ready_with_status_is_one_datagram(manager: socket.socket) -> None:
    assert sdnotify.ready("watching 3 logs, metrics on 127.0.0.1:9425")
    assert received(manager) == "READY=1\nSTATUS=watching 3 logs, metrics on 127.0.0.1:9425"


def test_positional_and_keyword_fields(manager: socket.socket) -> None:
    assert sdnotify.notify("READY=1", "STATUS=starting", mainpid=1234)
    assert received(manager) == "READY=1\nSTATUS=starting\nMAINPID=1234"


def test_each_helper_sends_its_assignment(manager: socket.socket) -> None:
    sdnotify.status("tailing /var/log/mail.log")
    sdnotify.watchdog_ping()
    sdnotify.stopping("saving state")
    assert received(manager) == "STATUS=tailing /var/log/mail.log"
    assert received(manager) == "WATCHDOG=1"
    assert received(manager) == "STOPPING=1\nSTATUS=saving state"


def test_reloading_carries_a_monotonic_timestamp(manager: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    sdnotify.reloading()
    first, second = received(manager).split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_newline_in_a_value_cannot_inject_an_assignment(manager: socket.socket) -> None:
    sdnotify.status("bad name\nREADY=1")
    assert received(manager) == "STATUS=bad name READY=1"


def test_abstract_socket_name(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"logscan-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready()
        assert received(sock) == "READY=1"


def test_no_op_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready("x") is False
    assert sdnotify.notify(env={"NOTIFY_SOCKET": ""}, status="x") is False
    assert sdnotify.notify(env={"NOTIFY_SOCKET": "vsock:2:1234"}, status="x") is False


def test_socket_gone_raises(tmp_path: Path) -> None:
    # systemd set NOTIFY_SOCKET but nothing listens: the caller must hear about it.
    with pytest.raises(FileNotFoundError):
        sdnotify.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})


def test_message_from_a_child_process_arrives(manager: socket.socket) -> None:
    # The daemon's real path: another process, the environment inherited as systemd sets it.
    code = "from logscan.app import sdnotify; sdnotify.ready('from child')"
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30, cwd=repo)
    assert received(manager) == "READY=1\nSTATUS=from child"


@pytest.mark.parametrize(
    ("env", "pid", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 42, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "43"}, 42, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, 42, None),
        ({"WATCHDOG_USEC": "500"}, 42, 0.0005),
        ({"WATCHDOG_USEC": "0"}, 42, None),
        ({"WATCHDOG_USEC": "soon"}, 42, None),
        ({}, 42, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], pid: int, expected: float | None) -> None:
    assert sdnotify.watchdog_interval(env, pid) == expected


def test_watchdog_interval_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2500000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 2.5


@pytest.mark.slow
def test_daemon_talks_to_systemd_as_the_unit_expects(manager: socket.socket, tmp_path: Path) -> None:
    """`logscan run` under Type=notify and WatchdogSec=1s, with this test playing PID 1."""
    log = tmp_path / "mail.log"
    log.write_text(
        "Nov 29 08:00:01 mx postfix/smtp[1]: ABC123: to=<a@example.org>, relay=mx.example.org"
        "[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)\n",
        encoding="utf-8",
    )
    port = free_port()
    config = tmp_path / "logscan.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[state]\ndir = "{tmp_path / "state"}"\n'
        f'[daemon]\npoll_interval = 0.2\n[[logs]]\nname = "postfix"\npath = "{log}"\n'
        'format = "postfix"\nstart_at = "beginning"\n',
        encoding="utf-8",
    )
    env = {**os.environ, "WATCHDOG_USEC": "1000000"}
    repo = Path(__file__).resolve().parents[1]
    output = tmp_path / "daemon.out"
    with output.open("wb") as sink:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "logscan", "run", "--config", str(config)],
            cwd=repo,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        manager.settimeout(20)
        assert received(manager).startswith("READY=1\nSTATUS=")
        # READY means the port is bound: systemd orders Prometheus-dependent units on it.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        manager.settimeout(2)
        started = time.monotonic()
        pings = 0
        while time.monotonic() - started < 2.5:
            assert received(manager) == "WATCHDOG=1"
            pings += 1
        # WatchdogSec=1s: systemd kills a service that is silent for 1 s; half that is the goal.
        assert pings >= 4

        daemon.send_signal(signal.SIGHUP)
        after_hup = [received(manager) for _ in range(4)]
        states = [m.split("\n")[0] for m in after_hup if m != "WATCHDOG=1"]
        assert states[:2] == ["RELOADING=1", "READY=1"], after_hup

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=25) == 0  # under the unit's TimeoutStopSec=30s
        assert (tmp_path / "state").is_dir()
        assert any((tmp_path / "state").iterdir()), "nothing saved on SIGTERM"
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        print(output.read_text(encoding="utf-8", errors="replace"))  # shown by pytest on failure
