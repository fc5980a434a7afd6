"""How many refusals get a reason other than `other` (issue 14), per file and in all.

    .venv/bin/python -m benchmarks.reason_coverage sample_logs/*/* [MORE LOGS ...]

Every file is read whole with the parser of its detected format (files of no known format
are skipped and listed); each 4xx/5xx reply counts once. Prints a Markdown table, then the
most frequent wordings left as `other` (codes and the first words, no addresses), which are
the candidates for new phrases in logscan/parsers/reasons.py.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from datetime import UTC
from pathlib import Path

from logscan.parsers import make_parser
from logscan.parsers.base import ParserOptions
from logscan.parsers.detect import SAMPLE_LINES, detect

_ADDRESS = re.compile(r"<[^<>]*>|\S+@\S+|\[[0-9a-fA-F:.]+\]|[0-9]+(?:\.[0-9]+){3}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args()
    rows = ["| file | format | 4xx/5xx replies | with a reason | share |", "|---|---|---|---|---|"]
    total = known = 0
    left: Counter[str] = Counter()
    skipped = []
    for path in args.files:
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        fmt = detect(lines[:SAMPLE_LINES]).format
        if fmt is None:
            skipped.append(str(path))
            continue
        parser = make_parser(fmt, ParserOptions(log="x", tz=UTC, reference_time=path.stat().st_mtime))
        n = k = 0
        for line in lines:
            got = parser.parse(line)
            if not isinstance(got, tuple):
                continue
            for ev in got:
                if ev.code[:1] in ("4", "5"):
                    n += 1
                    if ev.reason != "other":
                        k += 1
                    else:
                        at = line.find(ev.code + " ", len(line) // 4) if fmt != "mailenable" else -1
                        text = line.split("\t")[7] if fmt == "mailenable" else line[at if at >= 0 else -80 :]
                        left[f"{fmt} {_ADDRESS.sub('…', text)[:70]}"] += 1
        total, known = total + n, known + k
        rows.append(f"| {path} | {fmt} | {n} | {k} | {k / n if n else 0:.1%} |")
    rows.append(f"| **all** | | {total} | {known} | {known / total if total else 0:.1%} |")
    print("\n".join(rows))
    if skipped:
        print("\nSkipped (no known format): " + ", ".join(skipped))
    print("\nMost frequent wordings left as `other`:")
    for text, n in left.most_common(15):
        print(f"  {n:6}  {text}")


if __name__ == "__main__":
    main()
