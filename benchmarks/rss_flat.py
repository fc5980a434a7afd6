"""Is `logscan scan`'s peak RSS flat in the input size? 1M lines against 5M (or 10M) lines.

    .venv/bin/python benchmarks/gen_logs.py --mta postfix --size 5M     # once
    .venv/bin/python -m benchmarks.rss_flat [--big 5M] [--rounds 3] [--mta postfix]

Runs the small and the big file alternately (small, big, big, small, ...), peak RSS from
`/usr/bin/time -f %M` (see harness.measure), CPU from os.wait4. Flat means the big file's
median peak RSS is within 15 % of the small one's (5x or 10x the lines). CPU per line is
printed too: it should stay the same.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.harness import (
    DATA,
    RESULTS,
    Series,
    count_lines,
    environment,
    human,
    measure,
    publish,
    rate,
    warm,
)

FLAT_TOLERANCE = 1.15


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mta", choices=("postfix", "exim", "mailenable"), default="postfix")
    ap.add_argument("--small", default="1M")
    ap.add_argument("--big", default="5M")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    files = {label: DATA / f"{args.mta}-{label}.log" for label in (args.small, args.big)}
    for label, path in files.items():
        if not path.exists():
            raise SystemExit(f"{path} missing: python benchmarks/gen_logs.py --mta {args.mta} --size {label}")
    lines = {label: count_lines(p) for label, p in files.items()}
    series = {label: Series(label) for label in files}
    started = datetime.now(UTC)
    cmd = [sys.executable, "-m", "logscan", "scan", "--json", "--progress", "never", "--format", args.mta]
    with tempfile.TemporaryDirectory(prefix="logscan-rss-") as tmp:
        out = Path(tmp) / "out"
        order = list(files)
        for rnd in range(args.rounds):
            for label in order if rnd % 2 == 0 else reversed(order):
                warm(files[label])
                run = measure([*cmd, str(files[label])], stdout=out, stderr=Path(tmp) / "err")
                if run.rc != 0:
                    raise SystemExit(f"logscan scan exited {run.rc} on {files[label]}")
                got = json.loads(out.read_text())["lines"]
                assert got == lines[label], (got, lines[label])
                series[label].runs.append(run)
                print(
                    f"round {rnd + 1} {label:>4}: cpu {run.cpu_s:6.2f} s  wall {run.wall_s:6.2f} s  "
                    f"peak RSS {run.maxrss_kb / 1024:6.1f} MB",
                    flush=True,
                )
    small, big = series[args.small], series[args.big]
    ratio = big.median("maxrss_kb") / small.median("maxrss_kb")
    md = [
        f"# `logscan scan` peak RSS: {args.small} vs {args.big} lines ({args.mta}) "
        f"— {started:%Y-%m-%d %H:%M} UTC",
        "",
        *environment(),
        "",
        "| file | lines | peak RSS MB median (min–max) | CPU s median | lines/s by CPU (median) |",
        "|---|---|---|---|---|",
    ]
    for label, s in series.items():
        rss = [r.maxrss_kb / 1024 for r in s.runs]
        md.append(
            f"| {files[label].name} | {lines[label]:,} | {s.median('maxrss_kb') / 1024:.1f} "
            f"({min(rss):.1f}–{max(rss):.1f}) | {s.median('cpu_s'):.2f} "
            f"| {human(rate(lines[label], s.median('cpu_s')))} |"
        )
    cpu_per_line = (big.median("cpu_s") / lines[args.big]) / (small.median("cpu_s") / lines[args.small])
    verdict = "FLAT" if ratio <= FLAT_TOLERANCE else "NOT FLAT"
    md += [
        "",
        f"Peak RSS {args.big} / {args.small}: **{ratio:.2f}** ({verdict}; tolerance {FLAT_TOLERANCE}). "
        f"CPU per line {args.big} / {args.small}: {cpu_per_line:.2f}.",
    ]
    path = publish("\n".join(md) + "\n", args.out or RESULTS / f"rss-flat-{started:%Y-%m-%dT%H%M}Z.md")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
