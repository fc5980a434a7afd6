"""Rewrite a generated Postfix log's RFC 3339 stamps as classic syslog ones (`Nov 27 00:00:04`).

    .venv/bin/python -m benchmarks.restamp [--size 1M]    # → benchmarks/data/postfix-1M-syslog.log
    .venv/bin/python -m benchmarks.scan_vs_peers --mta postfix --size 1M-syslog

Older rsyslog, syslog-ng and Postfix's own `maillog_file` write this form; `scan` takes a
different time path for it. The stamps are UTC (the generator's), so scan with TZ=UTC (or on
a UTC machine) to get the same times; the counts do not depend on it.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime

from benchmarks.harness import DATA


def syslog_stamped(line: str) -> str:
    """The line with its leading RFC 3339 stamp written as `Mmm dd hh:mm:ss` (same wall time)."""
    stamp, _, rest = line.partition(" ")
    t = datetime.fromisoformat(stamp)
    return f"{t:%b} {t.day:2d} {t:%H:%M:%S} {rest}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1M", help="which generated file: benchmarks/data/postfix-<size>.log")
    args = ap.parse_args()
    src, dst = DATA / f"postfix-{args.size}.log", DATA / f"postfix-{args.size}-syslog.log"
    if not src.exists():
        raise SystemExit(f"{src} missing: run `python benchmarks/gen_logs.py --size {args.size}` first")
    with (
        src.open(encoding="utf-8", errors="surrogateescape", newline="\n") as lines,
        dst.open("w", encoding="utf-8", errors="surrogateescape", newline="\n") as out,
    ):
        out.writelines(map(syslog_stamped, lines))
    # Year-less stamps are dated against the file's mtime: keep the source's.
    st = src.stat()
    os.utime(dst, (st.st_atime, st.st_mtime))
    print(f"written: {dst}")


if __name__ == "__main__":
    main()
