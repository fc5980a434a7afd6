"""Start the real `logscan run` as a subprocess, and scrape it over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def write_config(
    tmp: Path, logs: list[dict[str, str]], *, port: int, extra: str = "", save_interval: float = 0.5
) -> Path:
    """A daemon config in `tmp` following `logs` (dicts of [[logs]] keys)."""
    parts = [
        f'[server]\nlisten = "127.0.0.1:{port}"\ninstance = "test-mx"\n',
        f'[state]\ndir = "{tmp / "state"}"\nsave_interval = {save_interval}\n',
        '[daemon]\npoll_interval = 0.5\nlog_level = "info"\ntimezone = "UTC"\n',
    ]
    for log in logs:
        parts.append("[[logs]]\n" + "".join(f'{k} = "{v}"\n' for k, v in log.items()))
    parts.append(extra)
    path = tmp / "logscan.toml"
    path.write_text("\n".join(parts))
    return path


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample on /metrics, keyed by (name, sorted labels), parsed by prometheus_client."""
        status, text = self.get("/metrics")
        assert status == 200, text
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, lb), v in self.scrape().items() if n == name and want <= set(lb))

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # A hung daemon: SIGABRT makes faulthandler (-X faulthandler) write every thread's
            # stack into its log, so the failure shows where it was stuck.
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(timeout=30)
            raise AssertionError(
                f"daemon ignored signal {sig} for 30 s; its log and threads:\n{self.logs()[-6000:]}"
            ) from None

    def stop(self) -> int:
        if self.proc.poll() is None:
            return self.kill(signal.SIGTERM)
        return self.proc.returncode


def start_daemon(config: Path, port: int, *, ready: bool = True, timeout: float = 30) -> Daemon:
    """Start `python -m logscan run` and wait until /healthz (and /ready) answer 200."""
    log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-m", "logscan", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )
    daemon = Daemon(proc, port, log_path)
    deadline = time.monotonic() + timeout
    path = "/ready" if ready else "/healthz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}:\n{daemon.logs()}")
        try:
            if daemon.get(path)[0] == 200:
                return daemon
        except OSError:
            pass
        time.sleep(0.1)
    daemon.kill()
    raise AssertionError(f"daemon not {path} after {timeout}s:\n{daemon.logs()}")


def wait_for(cond: Callable[[], T], timeout: float = 20, what: str = "condition") -> T:
    """Poll `cond` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
