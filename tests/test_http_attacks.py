"""The real daemon's metrics port under attack: idle sockets, slow headers, oversized and garbled heads.

One daemon (module fixture) takes every attack in turn; between and after them it must still
answer every scrape and go on reading its log. The head deadline is the shipped default (10 s):
these tests check that nothing is closed before it and everything silent is closed after it.
"""

from __future__ import annotations

import contextlib
import http.client
import resource
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from logscan.outputs.http import DEFAULT_HEAD_TIMEOUT_S
from tests.alertmanager_fixture import free_port
from tests.daemon_fixture import Daemon, start_daemon, wait_for, write_config
from tests.test_daemon import postfix_line

IDLE = 1000
SLOW = 100


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Path]]:
    # 1,100 client sockets in this process, as many again in the daemon (which raises its own).
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tmp_path_factory.mktemp("attacked")
    log = tmp / "mail.log"
    log.write_text("")
    port = free_port()
    logs = [{"name": "mail", "path": str(log), "start_at": "beginning", "format": "postfix"}]
    d = start_daemon(write_config(tmp, logs, port=port), port)
    try:
        yield d, log
    finally:
        assert d.stop() == 0, d.logs()[-3000:]


def scrape(port: int) -> int:
    """One scrape on a new connection, as a Prometheus that just (re)connected does."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def is_closed(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def status_line(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with contextlib.suppress(OSError):  # the answer may come before a big head is all sent
            s.sendall(payload)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n" not in data and (chunk := s.recv(4096)):
                data += chunk
        return data.split(b"\r\n", 1)[0]


def still_ingesting(d: Daemon, log: Path, n: int) -> None:
    with log.open("a") as f:
        f.write(postfix_line(n, "sent") + "\n")
    wait_for(lambda: d.value("logscan_lines_total", log="mail") >= n, what=f"line {n} counted")


@pytest.mark.slow
def test_idle_and_slow_header_clients_neither_block_scrapes_nor_outlive_the_head_deadline(
    daemon: tuple[Daemon, Path],
) -> None:
    d, log = daemon
    assert DEFAULT_HEAD_TIMEOUT_S == 10.0  # the daemon below runs with the default
    t_first = time.monotonic()
    idle = [socket.create_connection(("127.0.0.1", d.port), timeout=5) for _ in range(IDLE)]
    slow = []
    for _ in range(SLOW):
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        slow.append(s)
    t_last = time.monotonic()
    stop = threading.Event()

    def drip() -> None:  # one header byte per second per slow client, as slowloris does
        while not stop.wait(1.0):
            for s in slow:
                with contextlib.suppress(OSError):
                    s.send(b"X")

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        statuses = [scrape(d.port) for _ in range(20)]
        assert statuses == [200] * 20
        still_ingesting(d, log, 1)
        # Nothing is closed before the deadline: every socket was opened at t_first or later.
        time.sleep(max(0.0, t_first + DEFAULT_HEAD_TIMEOUT_S - 1.0 - time.monotonic()))
        assert time.monotonic() < t_first + DEFAULT_HEAD_TIMEOUT_S, "too slow to check the early side"
        assert sum(is_closed(s) for s in idle[-50:] + slow[-10:]) == 0
        # Everything that sent no complete head is closed once the deadline has passed.
        time.sleep(max(0.0, t_last + DEFAULT_HEAD_TIMEOUT_S + 1.5 - time.monotonic()))
        assert sum(is_closed(s) for s in idle) == IDLE
        assert sum(is_closed(s) for s in slow) == SLOW
    finally:
        stop.set()
        dripper.join()
        for s in idle + slow:
            s.close()
    assert scrape(d.port) == 200
    assert d.proc.poll() is None


@pytest.mark.slow
def test_oversized_and_garbled_heads_get_431_and_400_and_the_daemon_goes_on(
    daemon: tuple[Daemon, Path],
) -> None:
    d, log = daemon
    big_line = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    assert status_line(d.port, big_line).startswith(b"HTTP/1.1 431")
    many = b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(2000))
    assert status_line(d.port, many + b"\r\n").startswith(b"HTTP/1.1 431")  # 1 MB in small headers
    assert status_line(d.port, b"GARBAGE\r\n\r\n").split(b" ")[1] == b"400"
    assert (
        status_line(d.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40).split(b" ")[1]
        == b"400"
    )
    assert scrape(d.port) == 200
    still_ingesting(d, log, 2)
    assert d.proc.poll() is None
