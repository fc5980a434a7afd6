"""What classifying refusals costs `logscan scan` (issue 14): the same files scanned by this
checkout and by a baseline without reasons, interleaved in the same run.

    .venv/bin/python benchmarks/gen_logs.py                        # once: benchmarks/data/*-1M.log
    .venv/bin/python -m benchmarks.reason_cost [--rounds 5] [--baseline REF] [--mta postfix exim mailenable]

The baseline is the source tree of git REF (default: the merge base with `main`, i.e. logscan
before reasons), unpacked with `git archive` into a temporary folder and its C scanner built
in place; it runs with that folder first on sys.path (`python -m logscan` from there), so the
same interpreter and libraries scan with and without classification. With reasons, the
Postfix bulk path leaves every 4xx/5xx line to parse(); the cost measured includes that.
Both runs must report the same counts apart from the `why` section, or the run stops.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.harness import (
    DATA,
    REPO,
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


def baseline_tree(ref: str, into: Path) -> str:
    """Unpack `ref`'s tree into `into`, build its C scanner in place; returns the commit."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = into / "src.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    # What setuptools' build_ext runs (the interpreter's own CC, CFLAGS and LDSHARED), without
    # setuptools: the venv's may be older than the one pip builds with.
    var = sysconfig.get_config_var
    src = into / "logscan" / "parsers" / "_postfix_scan.c"
    so = src.with_name("_postfix_scan" + str(var("EXT_SUFFIX")))
    include = sysconfig.get_paths()["include"]
    cc = [*shlex.split(str(var("CC"))), *shlex.split(str(var("CFLAGS"))), *shlex.split(str(var("CCSHARED")))]
    obj = into / "_postfix_scan.o"
    subprocess.run([*cc, f"-I{include}", "-c", str(src), "-o", str(obj)], check=True)
    subprocess.run([*shlex.split(str(var("LDSHARED"))), str(obj), "-o", str(so)], check=True)
    return commit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--mta",
        nargs="+",
        choices=("postfix", "exim", "mailenable"),
        default=["postfix", "exim", "mailenable"],
    )
    ap.add_argument("--size", default="1M")
    ap.add_argument("--baseline", default="", help="git ref without reasons (default: merge-base HEAD main)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    ref = (
        args.baseline
        or subprocess.run(
            ["git", "merge-base", "HEAD", "main"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    started = datetime.now(UTC)
    # The top-domains sketch breaks ties in set order: one hash seed for both, so the outputs compare.
    os.environ["PYTHONHASHSEED"] = "0"
    with tempfile.TemporaryDirectory(prefix="logscan-reasons-") as tmp:
        base_dir = Path(tmp) / "baseline"
        base_dir.mkdir()
        commit = baseline_tree(ref, base_dir)
        md = [
            f"# Cost of reason classification in `logscan scan` — {started:%Y-%m-%d %H:%M} UTC",
            "",
            *environment(),
            f"- baseline (no reasons): {commit}, its C scanner built in place",
            f"- command: `python -m benchmarks.reason_cost {' '.join(sys.argv[1:])}`",
            "",
            "| log | lines | 4xx/5xx replies | CPU s with reasons (best / median) "
            "| CPU s without (best / median) | lines/s with | lines/s without "
            "| cost, CPU s per 1M lines | cost per refusal |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for mta in args.mta:
            path = DATA / f"{mta}-{args.size}.log"
            if not path.exists():
                raise SystemExit(f"{path} missing: run `python benchmarks/gen_logs.py --size {args.size}`")
            lines = count_lines(path)
            warm(path)
            argv = [sys.executable, "-m", "logscan", "scan", "--json", "--format", mta, str(path)]
            series = {"with": Series("with"), "without": Series("without")}
            docs: dict[str, dict[str, object]] = {}
            for rnd in range(args.rounds):
                for name in ("with", "without") if rnd % 2 == 0 else ("without", "with"):
                    out = Path(tmp) / f"{name}.json"
                    run = measure(argv, stdout=out, cwd=REPO if name == "with" else base_dir)
                    if run.rc != 0:
                        raise SystemExit(f"{name} exited {run.rc} on {path}")
                    series[name].runs.append(run)
                    if rnd == 0:
                        docs[name] = json.loads(out.read_text())
                    print(f"  {mta:<10} round {rnd + 1}: {name:<8} cpu {run.cpu_s:6.2f} s", flush=True)
            why = docs["with"].pop("why")
            if docs["with"] != docs["without"]:
                raise SystemExit(f"{mta}: the counts differ with and without reasons")
            assert isinstance(why, list)
            refusals = sum(int(row["count"]) for row in why)
            w, wo = series["with"], series["without"]
            wb, wob = w.best("cpu_s"), wo.best("cpu_s")
            cost = wb - wob
            md.append(
                f"| {mta} | {lines:,} | {refusals:,} | {wb:.2f} / {w.median('cpu_s'):.2f} "
                f"| {wob:.2f} / {wo.median('cpu_s'):.2f} | {human(rate(lines, wb))} "
                f"| {human(rate(lines, wob))} | {cost * 1e6 / lines:.2f} "
                f"| {cost * 1e6 / refusals if refusals else 0:.1f} µs |"
            )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    md += ["", f"Load average at end: {load}. Finished {datetime.now(UTC):%H:%M} UTC."]
    publish("\n".join(md) + "\n", args.out or RESULTS / f"reasons-{started:%Y-%m-%dT%H%M}Z.md")


if __name__ == "__main__":
    main()
