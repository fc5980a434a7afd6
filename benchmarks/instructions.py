"""Instructions per line of `scan_file`, counted by callgrind: steadier than time on a busy machine.

    python -m benchmarks.instructions FORMAT FILE [--pythonpath DIR]

Runs the scan under `valgrind --tool=callgrind` twice, once stopping right after the imports,
and prints (full - imports) / lines. `--pythonpath` measures another checkout (for example a
`git worktree` of an older commit). Needs the Debian package `valgrind`; a 50k-line file takes
about a minute.
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
if sys.argv[3] == "imports":
    sys.exit(0)
scan.scan_file(Path(sys.argv[2]), sys.argv[1], scan.ScanReport(), tz_name="UTC")
"""


def _collected(fmt: str, path: Path, stage: str, env: dict[str, str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, "-c", _DRIVER, fmt, str(path.resolve()), stage],
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
    args = ap.parse_args()
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = str(Path(args.pythonpath).resolve())
    lines = count_lines(args.file)
    base = _collected(args.format, args.file, "imports", env)
    full = _collected(args.format, args.file, "scan", env)
    print(f"{args.format} {args.file}: {lines} lines, {(full - base) / max(lines, 1):,.0f} instructions/line")


if __name__ == "__main__":
    main()
