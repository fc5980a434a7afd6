"""Shared measuring code for the benchmarks: run a command, take its CPU time, wall time and
peak RSS from os.wait4, and summarise interleaved rounds as best-of-N and median."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True)
class Run:
    cpu_s: float  # user + sys of the child (and its waited-for children)
    wall_s: float
    maxrss_kb: int
    rc: int


GNU_TIME = Path("/usr/bin/time")


def measure(
    cmd: Sequence[str],
    *,
    stdout: Path,
    stderr: Path | None = None,
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
) -> Run:
    """Run `cmd` to completion. CPU (user+sys) comes from os.wait4's rusage.

    Peak RSS: wait4's ru_maxrss of a child forked from this Python process starts at this
    process's own high-water mark (Linux carries the pre-exec mm's hiwater into the child's
    maxrss), which would put a ~30 MB floor under every tool. So, when GNU time is there,
    the command runs under `/usr/bin/time -f %M` — forked from that small process, the
    command's ru_maxrss is its own — and wait4 still supplies CPU (time's own share is ~1 ms).
    """
    rss_file = stdout.with_suffix(".rss")
    argv = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *cmd] if GNU_TIME.exists() else list(cmd)
    err = stderr.open("wb") if stderr else subprocess.DEVNULL
    try:
        with stdout.open("wb") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd, env=env)
            _pid, status, ru = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if stderr and not isinstance(err, int):
            err.close()
    maxrss = ru.ru_maxrss
    if GNU_TIME.exists():
        # The last line is %M; a non-zero exit adds a "Command exited with status" line first.
        maxrss = int(rss_file.read_text().split()[-1])
    return Run(ru.ru_utime + ru.ru_stime, wall, maxrss, proc.returncode)


@dataclass(slots=True)
class Series:
    name: str
    runs: list[Run] = field(default_factory=list)

    def best(self, attr: str) -> float:
        return min(float(getattr(r, attr)) for r in self.runs)

    def median(self, attr: str) -> float:
        return float(statistics.median(float(getattr(r, attr)) for r in self.runs))


def shown(path: str | Path) -> str:
    """`path` as a results file may name it: relative to the checkout, else only its last part
    (results are committed, and no committed file names a path of the machine it ran on)."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else f".../{p.name}"


def rate(lines: int, seconds: float) -> float:
    return lines / seconds if seconds > 0 else float("inf")


def human(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e3:
        return f"{n / 1e3:.0f} k"
    return f"{n:.0f}"


def git_state() -> str:
    """The logscan commit measured, and whether logscan/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "logscan"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in logscan/" if dirty else "")


def environment() -> list[str]:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- host: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}",
        f"- Python {platform.python_version()} ({shown(sys.executable)})",
        f"- logscan: {git_state()}",
        f"- load average at start: {load} (shared machine: other engineers' tests run at the same time)",
    ]


def count_lines(path: Path) -> int:
    n = 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
    return n


def warm(path: Path) -> None:
    """Read the file once so every tool starts with it in the page cache."""
    with path.open("rb") as fh:
        while fh.read(1 << 20):
            pass


def publish(text: str, out: Path) -> Path:
    """Print a finished Markdown report and write it to `out` (under benchmarks/results/)."""
    print()
    print(text)
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    return out
