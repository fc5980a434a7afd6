"""kill -9 and logrotate at every point of the follower's work, replayable from a seed.

The campaign (crash_campaign.py) kills the real daemon at random wall-clock moments: a failure
shows in one run of several and rarely again. This model runs the follower as the daemon does
(hold_until_saved, a save after every poll, the lines of a poll counted only with its save) and
fires a planned kill, MTA write or real logrotate run at the k-th file read or folder listing,
so a failure replays from its seed in a second. Every file starts with the same banner; only
the numbered lines are counted (a banner-only file is the documented limit, decision 0013).

`python -m tests.rotation_model MODES RUNS [FIRST_SEED]` runs more, e.g. `delaycompress,rename 500`.
"""

from __future__ import annotations

import random
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from logscan.sources.follower import Follower
from logscan.sources.logfiles import LogFiles
from logscan.sources.reading import FileSource
from tests.helpers_files import run_logrotate
from tests.test_banner_rotation import BANNER, BannerWriter

MODES: Final = {
    "rename": "create",
    "copytruncate": "copytruncate",
    "delaycompress": "create\n  compress\n  delaycompress",
}

ACTIONS: Final = ("rotate", "rotate", "write", "kill", "kill")  # fired at a planned read or listing


class Kill(Exception):
    """kill -9: whatever the follower was doing, nothing after the last save survives."""


@contextmanager
def _ticking(tick: Callable[[], None]) -> Iterator[None]:
    """Call `tick` before every file read and folder listing the follower makes."""
    read, listing = FileSource.read_at, LogFiles.listing

    def read_at(self: FileSource, offset: int, n: int) -> bytes:
        tick()
        return read(self, offset, n)

    def listed(self: LogFiles) -> list[tuple[str, int]]:
        tick()
        return listing(self)

    FileSource.read_at = read_at  # type: ignore[method-assign]
    LogFiles.listing = listed  # type: ignore[method-assign]
    try:
        yield
    finally:
        FileSource.read_at = read  # type: ignore[method-assign]
        LogFiles.listing = listing  # type: ignore[method-assign]


def run(mode: str, seed: int, rounds: int = 6) -> str:
    """One scenario; "" when every numbered line was counted exactly once, else what went wrong."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        log = tmp / "mail.log"
        w = BannerWriter(log)
        conf = f"{log} {{\n  rotate 1000\n  {MODES[mode]}\n}}\n"

        def rotate() -> None:
            run_logrotate(tmp, conf)
            if mode != "copytruncate":
                w.reopen()
            w.banner()
            w.line(rng.choice([0, 0, 1, 2, 5]))

        w.banner()
        w.line(5)
        retire = rng.choice([0.0, 0.0, 3600.0])
        counted: list[bytes] = []
        saved: dict[str, Any] | None = None
        plan: dict[int, str] = {}
        calls = 0

        def tick() -> None:
            nonlocal calls
            calls += 1
            act = plan.pop(calls, "")
            if act == "rotate":
                rotate()
            elif act == "write":
                w.line(rng.randint(1, 3))
            elif act == "kill":
                raise Kill

        def start() -> Follower:
            nonlocal saved
            while True:
                f = Follower("m", str(log), start_at="beginning", saved=saved, retire_after=retire,
                             hold_until_saved=True)
                try:
                    f.open()
                    saved = f.checkpoint()
                    f.saved()
                    return f
                except Kill:
                    for _ in range(rng.choice([0, 0, 1])):
                        rotate()

        def step(f: Follower, max_bytes: int = 1 << 20) -> None:
            nonlocal saved
            lines = f.poll(max_bytes)
            checkpoint = f.checkpoint()
            counted.extend(lines)  # counted and saved together, as the daemon's state file does
            saved = checkpoint
            f.saved()

        with _ticking(tick):
            f = start()
            for _ in range(rounds):
                for _ in range(rng.randint(0, 4)):
                    plan[calls + rng.randint(1, 40)] = rng.choice(ACTIONS)
                try:
                    for _ in range(rng.randint(1, 4)):
                        if rng.random() < 0.5:
                            w.line(rng.randint(0, 3))
                        step(f, rng.choice([1 << 20, 1 << 20, 300]))
                except Kill:
                    for _ in range(rng.choice([0, 0, 1, 2])):
                        rotate()
                    f = start()
            plan.clear()
            for _ in range(8):
                step(f)
        got = Counter(line for line in counted if line not in BANNER)
        want = Counter(line for line in w.written if line not in BANNER)
        if got == want:
            return ""
        lost = sorted(int(line[:7]) for line in want - got)
        twice = sorted(int(line[:7]) for line in got - want)
        return f"{mode} seed={seed}: lost {lost[:12]}, counted twice {twice[:12]}"


def main() -> int:
    modes, runs = sys.argv[1].split(","), int(sys.argv[2])
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    bad = [r for m in modes for seed in range(first, first + runs) if (r := run(m, seed))]
    print("\n".join(bad))
    print(f"{runs * len(modes)} runs, {len(bad)} wrong")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
