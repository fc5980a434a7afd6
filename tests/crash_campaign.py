"""kill -9 the real daemon at random moments while real logrotate rotates its log; count what it counted.

The daemon runs in a forked child (the modules are already imported, so a start takes milliseconds
and hundreds of kills fit in seconds). The parent writes numbered lines, runs logrotate, kills the
child at a random moment (0-`max_life` s after its start, so also mid-start, mid-rotation and
mid-save), sometimes rotates again while it is down, and restarts it. At the end one last daemon
catches up and stops cleanly; its state must count every line written exactly once.

Used by tests/test_crash_safety.py (a few hundred kills) and benchmarks/crash_kill.py (more).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from logscan.app.daemon import Daemon  # imported once here: a forked child starts in milliseconds

# logrotate directives per mode; all keep every rotated file (rotate 1000), so any loss is ours.
MODES: dict[str, str] = {
    "rename": "create",
    "copytruncate": "copytruncate",
    "delaycompress": "create\n  compress\n  delaycompress",
    "dateext": "create\n  dateext\n  dateformat -%Y%m%d-%H%M%S\n  compress\n  delaycompress",
}
# Every file of the log starts with this (over 512 bytes): identity cannot rest on the head alone.
BANNER = [f"logscan test banner line {i:02d} {'x' * 60}".encode() for i in range(10)]


@dataclass
class Result:
    mode: str
    kills: int = 0
    rotations: int = 0
    rotations_while_down: int = 0
    written: int = 0
    counted: int = 0
    exit_codes: list[int] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.mode}: {self.kills} kills, {self.rotations} rotations "
                f"({self.rotations_while_down} while down), {self.written} lines written, "
                f"{self.counted} counted")


class _Writer:
    """An MTA: appends numbered lines through one open file, reopened after a rename rotation."""

    def __init__(self, path: Path, banner: bool) -> None:
        self.path = path
        self.banner = banner
        self.seq = 0
        self.written = 0
        self._fh = path.open("ab", buffering=0)
        self._start_file()

    def _start_file(self) -> None:
        if self.banner:
            self._fh.write(b"".join(b + b"\n" for b in BANNER))
            self.written += len(BANNER)

    def lines(self, n: int) -> None:
        out = []
        for _ in range(n):
            self.seq += 1
            out.append(f"{self.seq:08d} postfix/smtp[42]: ABC{self.seq}: status=sent (250 ok)\n".encode())
        self._fh.write(b"".join(out))
        self.written += n

    def rotated(self, reopen: bool) -> None:
        if reopen:
            self._fh.close()
            self._fh = self.path.open("ab", buffering=0)
        self._start_file()


def _config(tmp: Path, log: Path) -> Path:
    cfg = tmp / "logscan.toml"
    cfg.write_text(
        f'[server]\nlisten = "127.0.0.1:0"\n'
        f'[state]\ndir = "{tmp / "state"}"\nsave_interval = 0.05\n'
        '[daemon]\npoll_interval = 0.05\nlog_level = "warning"\ntimezone = "UTC"\n'
        f'[[logs]]\nname = "mx"\npath = "{log}"\nformat = "postfix"\nstart_at = "beginning"\n'
    )
    return cfg


def _spawn(cfg: Path, out: Path) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        fh = out.open("a")
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        sys.stdout = sys.stderr = fh
        code = Daemon(cfg).run()
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        os._exit(code)


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def _counted(state: Path) -> int:
    try:
        doc = json.loads(state.read_bytes())
    except (OSError, ValueError):
        return -1
    return sum(int(r[2]) for r in doc["data"]["aggregate"]["lines"] if r[0] == "mx")


def _rotate(tmp: Path, log: Path, mode: str) -> None:
    conf = tmp / "logrotate.conf"
    conf.write_text(f"{log} {{\n  rotate 1000\n  missingok\n  {MODES[mode]}\n}}\n")
    conf.chmod(0o644)
    res = subprocess.run(["logrotate", "-f", "-s", str(tmp / "logrotate.state"), str(conf)],
                         capture_output=True, text=True, timeout=30, check=False)
    if res.returncode:
        raise AssertionError(f"logrotate failed: {res.stderr}")


def campaign(tmp: Path, mode: str, kills: int, *, seed: int = 12, max_life: float = 0.4,
             banner: bool = True, racing: bool = False) -> Result:
    """Run `kills` start/kill cycles in `tmp`; the returned Result holds written vs counted."""
    rng = random.Random(seed)
    plan = random.Random(seed + 1000)  # the kills after which the log rotates while down
    log = tmp / "mail.log"
    state = tmp / "state" / "state.json"
    cfg = _config(tmp, log)
    out = tmp / "daemon.out"
    w = _Writer(log, banner)
    res = Result(mode)
    last_rotation = 0.0
    # dateext names carry the second: two rotations in one second would collide (logrotate skips).
    gap = 1.05 if mode == "dateext" else 0.0

    def rotate(down: bool) -> None:
        nonlocal last_rotation
        wait = last_rotation + gap - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        _rotate(tmp, log, mode)
        last_rotation = time.monotonic()
        w.rotated(reopen=mode != "copytruncate")
        res.rotations += 1
        res.rotations_while_down += down

    for i in range(kills):
        before = _mtime(state)
        pid = _spawn(cfg, out)
        if i == 0:
            # Before the first save nothing is known: what is rotated by then is history (start_at).
            while not state.exists():
                time.sleep(0.005)
        die_at = time.monotonic() + rng.uniform(0.0, max_life)
        while time.monotonic() < die_at:
            w.lines(rng.randint(1, 40))
            # Rotations while it runs wait for its first save; `racing=True` also rotates while
            # it restarts and scans the folder (docs/decisions/0013).
            started = racing or _mtime(state) != before
            if started and rng.random() < 0.08 and time.monotonic() - last_rotation >= gap:
                rotate(down=False)
            time.sleep(rng.uniform(0, 0.02))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        res.kills += 1
        w.lines(rng.randint(0, 5))
        # Drawn from its own generator: `rng` is read a timing-dependent number of times above,
        # so a rotation while down must not rest on it (every tenth kill has one for certain).
        if i % 10 == 7 or plan.random() < 0.05:
            for _ in range(plan.choice((1, 2, 3))):  # rotated (two or more times) while down
                w.lines(rng.randint(1, 20))
                rotate(down=True)
    # The last daemon catches up, then stops cleanly; its final save is the verdict.
    pid = _spawn(cfg, out)
    # Waits while it makes progress (a loaded machine is slow to open hundreds of kept files),
    # up to 30 s without any: a stuck daemon still shows as lines not counted.
    start = quiet_since = time.monotonic()
    last = _counted(state)
    while last < w.written and time.monotonic() - quiet_since < 30 and time.monotonic() - start < 300:
        time.sleep(0.05)
        now = _counted(state)
        if now != last:
            last, quiet_since = now, time.monotonic()
    time.sleep(0.3)  # a double count would show up after the catch-up
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    res.exit_codes.append(os.waitstatus_to_exitcode(status))
    res.written = w.written
    res.counted = _counted(state)
    return res


def main() -> int:
    """`python -m tests.crash_campaign MODE KILLS [SEED] [banner] [racing]`; prints the result."""
    import tempfile  # noqa: PLC0415

    mode, kills = sys.argv[1], int(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 12
    flags = sys.argv[4:]
    with tempfile.TemporaryDirectory() as d:
        started = time.monotonic()
        r = campaign(Path(d), mode, kills, seed=seed, banner="banner" in flags, racing="racing" in flags)
        print(f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H%MZ} {r.line()} in {time.monotonic() - started:.0f} s",
              f"exit={r.exit_codes}")
        if r.counted != r.written:
            print(Path(d, "daemon.out").read_text()[-4000:])
    return 0 if r.counted == r.written else 1


if __name__ == "__main__":
    raise SystemExit(main())
