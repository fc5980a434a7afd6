"""Entries per second from the journal (journalctl JSON child → lines → pipeline) vs the same
lines from a file (Follower → pipeline), in the same run.

    .venv/bin/python -m benchmarks.journal_vs_file [N]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from logscan.core.aggregate import Aggregate
from logscan.core.pipeline import Pipeline
from logscan.parsers import make_parser
from logscan.parsers.base import ParserOptions
from logscan.sources.follower import Follower
from logscan.sources.journal import JournalSource
from tests.test_daemon import postfix_line
from tests.test_journal import BOOT, REMOTE


def pipeline() -> Pipeline:
    return Pipeline("b", make_parser("postfix", ParserOptions(log="b", tz=None, reference_time=time.time())),
                    Aggregate(top_domains=20), ())


def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="logscan-bench-") as tmp:
        run(n, Path(tmp))


def run(n: int, tmp: Path) -> None:
    (tmp / "j").mkdir()
    t0 = time.time() - 3600
    export = []
    for i in range(1, n + 1):
        line = postfix_line(i, "bounced" if i % 5 == 0 else "sent")
        msg = line.split(": ", 1)[1]
        export.append(f"__REALTIME_TIMESTAMP={int((t0 + i * 0.01) * 1e6)}\n__MONOTONIC_TIMESTAMP={i}\n"
                      f"_BOOT_ID={BOOT}\n_HOSTNAME=mx1\nSYSLOG_IDENTIFIER=postfix/smtp\n_PID=4242\n"
                      f"MESSAGE={msg}\n\n")
    subprocess.run([REMOTE, f"--output={tmp / 'j' / 'x.journal'}", "-"], input="".join(export).encode(),
                   check=True, capture_output=True)
    src = JournalSource("b", directory=str(tmp / "j"), start_at="beginning", follow=False)
    lines: list[bytes] = []
    pipe = pipeline()
    start = time.perf_counter()
    while not src.finished:
        got = src.poll()
        if got:
            lines += got
            pipe.feed_text((b"\n".join(got) + b"\n").decode())
    journal_s = time.perf_counter() - start
    (tmp / "mail.log").write_bytes(b"".join(line + b"\n" for line in lines))
    fol = Follower("b", str(tmp / "mail.log"), start_at="beginning")
    pipe2 = pipeline()
    count = 0
    start = time.perf_counter()
    while True:
        got = fol.poll()
        if not got:
            break
        count += len(got)
        pipe2.feed_text((b"\n".join(got) + b"\n").decode())
    file_s = time.perf_counter() - start
    assert len(lines) == count == n, (len(lines), count, n)
    assert pipe.counts.parsed == pipe2.counts.parsed == n
    print(f"| source | lines | seconds | lines/s |\n|---|---|---|---|\n"
          f"| journal (journalctl --output=json) | {n} | {journal_s:.2f} | {n / journal_s:,.0f} |\n"
          f"| file (Follower) | {n} | {file_s:.2f} | {n / file_s:,.0f} |\n"
          f"journal / file speed: {file_s / journal_s:.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
