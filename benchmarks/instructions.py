"""Instructions per line of `scan_file`, counted by callgrind: steadier than time on a busy machine.

    python -m benchmarks.instructions FORMAT FILE [--pythonpath DIR] [--alerts]

Runs the scan under `valgrind --tool=callgrind` twice, once stopping right after the imports,
and prints (full - imports) / lines. `--alerts` adds the default alert rules, as
`scan --alerts` does, and prints both, with what the alerts add. `--pythonpath` measures
another checkout (for example a `git worktree` of an older commit). Needs the Debian package
`valgrind`; a 50k-line file takes about a minute.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import count_lines

_DRIVER = """
import sys
from pathlib import Path
try:
    import logscan.app.config, logscan.app.scan as scan
except ImportError:  # a checkout older than the package's folders (docs/architecture.md)
    import logscan.config, logscan.scan as scan
import logscan.parsers.exim, logscan.parsers.mailenable, logscan.parsers.postfix
observers = ()
if sys.argv[4] == "alerts":
    from logscan.app.alerting import Replayer
    observers = (Replayer.from_config(None),)
if sys.argv[3] == "imports":
    sys.exit(0)
scan.scan_file(Path(sys.argv[2]), sys.argv[1], scan.ScanReport(), tz_name="UTC", observers=observers)
for o in observers:
    o.finish()
"""


def _collected(fmt: str, path: Path, stage: str, env: dict[str, str], alerts: bool = False) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, "-c", _DRIVER, fmt, str(path.resolve()), stage, "alerts" if alerts else ""],
            env=env, cwd=tmp, capture_output=True, text=True, check=True,
        )  # fmt: skip
    m = re.search(r"Collected : (\d+)", out.stderr)
    if m is None:
        raise SystemExit(f"no callgrind total in:\n{out.stderr[-2000:]}")
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("format", choices=["postfix", "exim", "mailenable"])
    ap.add_argument("file", type=Path)
    ap.add_argument("--pythonpath", default="", help="import logscan from here instead")
    ap.add_argument("--alerts", action="store_true", help="also with the default alert rules")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = str(Path(args.pythonpath).resolve())
    lines = count_lines(args.file)
    base = _collected(args.format, args.file, "imports", env)
    full = (_collected(args.format, args.file, "scan", env) - base) / max(lines, 1)
    print(f"{args.format} {args.file}: {lines} lines, {full:,.0f} instructions/line")
    if args.alerts:
        base = _collected(args.format, args.file, "imports", env, alerts=True)
        more = (_collected(args.format, args.file, "scan", env, alerts=True) - base) / max(lines, 1)
        print(f"  with the default alert rules: {more:,.0f} instructions/line, {more / full - 1:+.1%}")


if __name__ == "__main__":
    main()
