"""Real Alertmanager and a real HTTP webhook sink on loopback, for end-to-end alert tests.

Reusable by any test module:

    from tests.alertmanager_fixture import alertmanager, webhook_sink  # noqa: F401  (pytest fixtures)

or directly: `with WebhookSink() as sink, start_alertmanager(tmp_path, sink.url) as am: ...`.
A missing binary FAILS the test (pytest.fail), it never skips.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")


def alertmanager_binary() -> str:
    """Path of the Alertmanager binary, or fail the test saying how to install it."""
    for name in ALERTMANAGER_BINARIES:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "Alertmanager binary not found (looked for prometheus-alertmanager, alertmanager on PATH): "
        "install it with `apt-get install prometheus-alertmanager`"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `pred` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@dataclass
class WebhookSink:
    """An http.server in a thread that records every POSTed JSON body.

    `status` is the HTTP status it answers with; `delay_s` makes it slow. Both can change
    while it runs.
    """

    status: int = 200
    delay_s: float = 0.0
    bodies: list[tuple[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None, "sink not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def received(self, path: str | None = None) -> list[Any]:
        with self._lock:
            return [b for p, b in self.bodies if path is None or p == path]

    def __enter__(self) -> WebhookSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if sink.delay_s:
                    time.sleep(sink.delay_s)
                with sink._lock:
                    sink.bodies.append((self.path, json.loads(raw or b"null")))
                self.send_response(sink.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass
class RunningAlertmanager:
    """A started Alertmanager: its base URL and a few API helpers."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def alerts(self, **params: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts (active, not resolved alerts by default)."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{query}", timeout=5) as resp:
            data: list[dict[str, Any]] = json.load(resp)
            return data

    def find(self, **labels: str) -> list[dict[str, Any]]:
        """Active alerts whose labels include all of `labels`."""
        return [a for a in self.alerts() if all(a["labels"].get(k) == v for k, v in labels.items())]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def alertmanager_config(webhook_url: str) -> str:
    """Route everything to `webhook_url` quickly (1 s group wait/interval), resolved included."""
    return f"""\
route:
  receiver: sink
  group_by: ['alertname', 'instance', 'log', 'direction']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: sink
    webhook_configs:
      - url: '{webhook_url}'
        send_resolved: true
"""


@contextlib.contextmanager
def start_alertmanager(
    workdir: Path, webhook_url: str, *, port: int | None = None, config: str | None = None
) -> Iterator[RunningAlertmanager]:
    """Start Alertmanager on 127.0.0.1 (clustering off) with a temp config and storage; stop it after."""
    binary = alertmanager_binary()
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "alertmanager.yml"
    cfg.write_text(config if config is not None else alertmanager_config(webhook_url))
    storage = workdir / "data"
    storage.mkdir(exist_ok=True)
    log_path = workdir / "alertmanager.log"
    with log_path.open("wb") as logf:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={cfg}",
                f"--storage.path={storage}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=info",
            ],
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
    am = RunningAlertmanager(f"http://127.0.0.1:{port}", proc, log_path)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"alertmanager exited with {proc.returncode}:\n{am.log()}")
            try:
                with urllib.request.urlopen(f"{am.url}/-/ready", timeout=1) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        wait_for(ready, 30, "alertmanager to become ready")
        yield am
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    with WebhookSink() as sink:
        yield sink


@pytest.fixture
def alertmanager(tmp_path: Path, webhook_sink: WebhookSink) -> Iterator[RunningAlertmanager]:
    """A real Alertmanager whose only receiver is `webhook_sink` (path /am)."""
    with start_alertmanager(tmp_path / "am", webhook_sink.url + "/am") as am:
        yield am
