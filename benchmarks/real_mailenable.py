"""Repeat the real MailEnable 9.76 log into benchmarks/data/mailenable-real-<size>.log, a quiet server's.

Run as `.venv/bin/python -m benchmarks.real_mailenable [--lines 1M]`."""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta
from pathlib import Path

from benchmarks.gen_logs import parse_size, size_label
from benchmarks.harness import DATA, REPO

SOURCE = REPO / "tests" / "data" / "mailenable-9.76-SMTP-Activity.log"
# A line's date: at its start, or after the `[` of a banner line.
_DATE = re.compile(rb"^(\[?)(\d\d/\d\d/\d\d) ")
_FMT = "%m/%d/%y"


def _days_spanned(lines: list[bytes]) -> int:
    """Whole days from the first date in `lines` to the day after the last one."""
    dates = [datetime.strptime(m[2].decode(), _FMT) for line in lines if (m := _DATE.match(line))]
    return (max(dates) - min(dates)).days + 1


def _shifted(line: bytes, days: int, cache: dict[bytes, bytes]) -> bytes:
    """`line` with its leading date `days` later (lines without one unchanged)."""
    m = _DATE.match(line)
    if m is None:
        return line
    date = m[2]
    new = cache.get(date)
    if new is None:
        moved = datetime.strptime(date.decode(), _FMT) + timedelta(days=days)
        new = cache[date] = moved.strftime(_FMT).encode()
    return m[1] + new + line[m.end(2) :]


def build(lines: int, dst: Path) -> int:
    """Write `lines` lines of shifted copies of SOURCE to `dst`; return the copies begun."""
    # Whole-day shifts keep every wall-clock time, so each copy is the real server's traffic
    # again, and a shift of the source's whole span means times never go back.
    body = SOURCE.read_bytes()
    # The Ctrl-Z after the last line marks the end of the file: once, at the very end.
    tail = body[len(body.rstrip(b"\x1a")) :]
    src = body[: len(body) - len(tail)].splitlines(keepends=True)
    span = _days_spanned(src)
    copies = written = 0
    with dst.open("wb") as out:
        while written < lines:
            cache: dict[bytes, bytes] = {}
            part = src[: lines - written]
            out.writelines(_shifted(line, copies * span, cache) for line in part)
            written += len(part)
            copies += 1
        out.write(tail)
    return copies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=parse_size, default=1_000_000, help="how many lines to write (1M, 100k)")
    args = ap.parse_args()
    DATA.mkdir(exist_ok=True)
    dst = DATA / f"mailenable-real-{size_label(args.lines)}.log"
    copies = build(args.lines, dst)
    print(f"written: {dst} ({args.lines:,} lines, {copies} copies of {SOURCE.name})")


if __name__ == "__main__":
    main()
