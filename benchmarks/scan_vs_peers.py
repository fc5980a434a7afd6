"""Whole-file throughput: `logscan scan` against the peers that can read a whole file, on the
generated 1M-line logs (benchmarks/gen_logs.py), side by side in the same run.

    .venv/bin/python benchmarks/gen_logs.py            # once: benchmarks/data/*-1M.log
    sh benchmarks/get_eximstats.sh                     # once, if eximstats is not installed
    .venv/bin/python -m benchmarks.scan_vs_peers [--rounds 5] [--mta postfix exim mailenable]

Tools per log:
- postfix: `logscan scan --json --format postfix`, `pflogsumm FILE`, `mtail --one_shot` with
  benchmarks/peers/postfix.mtail, and the floor: a bare Python `for line in open(f, 'rb')`.
  prometheus-postfix-exporter (Debian 0.3.0) has no whole-file mode: it tails from the end
  of the file (nxadm/tail SeekEnd), so it is measured by benchmarks/daemon_ingest.py instead.
- exim: logscan scan, `eximstats FILE`, the bare loop.
- mailenable: logscan scan and the bare loop (no open-source peer parses MailEnable logs).
- every log: `logscan scan --alerts` too (the default alert rules replayed over the file).

Every round runs every tool once, the order reversed on odd rounds (ABC CBA ...); the file
is read once beforehand so that it is in the page cache for everyone. CPU = user+sys from
os.wait4 (the machine is shared and noisy, so CPU time is the figure to trust; wall is
reported too); peak RSS = the tool's ru_maxrss via /usr/bin/time -f %M (see
harness.measure). Ratios are logscan's throughput divided by the tool's (>1: logscan
faster) and logscan's peak RSS divided by the tool's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.harness import (
    DATA,
    REPO,
    RESULTS,
    Run,
    Series,
    count_lines,
    environment,
    human,
    measure,
    publish,
    rate,
    shown,
    warm,
)

PEERS = Path(__file__).resolve().parent / "peers"
BARE = "import sys\nfor line in open(sys.argv[1], 'rb'):\n    pass\n"


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    argv: Callable[[Path], list[str]]
    check: Callable[[str], str]  # its output -> a short sanity summary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _logscan_check(out: str) -> str:
    try:
        doc = json.loads(out)
    except ValueError:
        return "no JSON output"
    d = doc.get("deliveries", {})
    alerts = f", alert periods {len(doc['alerts'])}" if "alerts" in doc else ""
    return (
        f"lines {doc.get('lines')}, unparsed {doc.get('unparsed')}, sent {d.get('sent')}, "
        f"bounced {d.get('bounced')}, deferred {d.get('deferred')}{alerts}"
    )


def _pflogsumm_check(out: str) -> str:
    got = {
        m[2]: m[1]
        for m in re.finditer(r"^\s+(\d+)\s+(received|delivered|deferred|bounced|rejected)", out, re.M)
    }
    return ", ".join(f"{k} {v}" for k, v in got.items()) or "no Grand Totals"


def _mtail_check(out: str) -> str:
    lines = re.search(r"^postfix_lines_total\{[^}]*\} (\d+)", out, re.M)
    sent = re.search(r'^postfix_smtp_status_total\{code="250",[^}]*status="sent"\} (\d+)', out, re.M)
    return f"lines {lines[1] if lines else '?'}, sent {sent[1] if sent else '?'}"


def _eximstats_check(out: str) -> str:
    rec = re.search(r"^\s+Received\s+\S+\s+(\d+)", out, re.M)
    dlv = re.search(r"^\s+Delivered\s+\S+\s+(\d+)", out, re.M)
    return f"received {rec[1] if rec else '?'}, delivered {dlv[1] if dlv else '?'}"


def _bare_check(out: str) -> str:
    return "reads every line, parses nothing"


def find_eximstats() -> str | None:
    found = shutil.which("eximstats")
    local = DATA / "peers" / "usr" / "sbin" / "eximstats"
    if found:
        return found
    return str(local) if local.exists() else None


def tools_for(mta: str, eximstats: str | None) -> list[Tool]:
    py = sys.executable
    tools = [
        Tool(
            "logscan scan",
            lambda f: [py, "-m", "logscan", "scan", "--json", "--progress", "never", "--format", mta, str(f)],
            _logscan_check,
        ),
        Tool(
            "logscan scan --alerts",
            lambda f: [py, "-m", "logscan", "scan", "--json", "--alerts", *("--progress", "never"),
                       *("--format", mta, str(f))],
            _logscan_check,
        ),
        Tool("bare Python read loop", lambda f: [py, "-c", BARE, str(f)], _bare_check),
    ]
    if mta == "postfix":
        tools.append(Tool("pflogsumm", lambda f: ["pflogsumm", str(f)], _pflogsumm_check))
        if shutil.which("mtail"):
            tools.append(
                Tool(
                    "mtail --one_shot",
                    lambda f: [
                        "mtail", "--one_shot", "--one_shot_format", "prometheus", "--progs", str(PEERS),
                        "--logs", str(f), "--logtostderr",
                        "--address", "127.0.0.1", "--port", str(_free_port()),
                    ],
                    _mtail_check,
                )
            )  # fmt: skip
    if mta == "exim" and eximstats:
        tools.append(Tool("eximstats", lambda f: ["perl", eximstats, str(f)], _eximstats_check))
    return tools


def bench(mta: str, path: Path, rounds: int, eximstats: str | None) -> tuple[list[str], dict[str, object]]:
    lines = count_lines(path)
    tools = tools_for(mta, eximstats)
    series = {t.name: Series(t.name) for t in tools}
    checks: dict[str, str] = {}
    warm(path)
    with tempfile.TemporaryDirectory(prefix="logscan-bench-") as tmp:
        out, err = Path(tmp) / "out", Path(tmp) / "err"
        order = list(tools)
        for rnd in range(rounds):
            for tool in order if rnd % 2 == 0 else reversed(order):
                run = measure(tool.argv(path), stdout=out, stderr=err)
                if run.rc != 0:
                    tail = err.read_text(errors="replace")[-800:]
                    raise SystemExit(f"{tool.name} exited {run.rc} on {path}:\n{tail}")
                if rnd == 0:
                    checks[tool.name] = tool.check(out.read_text(errors="replace"))
                series[tool.name].runs.append(run)
                print(
                    f"  {mta:<10} round {rnd + 1}: {tool.name:<22} "
                    f"cpu {run.cpu_s:6.2f} s  wall {run.wall_s:6.2f} s  rss {run.maxrss_kb / 1024:6.1f} MB",
                    flush=True,
                )
    ls = series["logscan scan"]
    head = (
        "| tool | CPU s best / median | wall s best / median | lines/s by CPU (best) "
        "| lines/s by wall (best) | peak RSS MB (median) | logscan ÷ tool, CPU speed (best / median) "
        "| logscan ÷ tool, wall speed (best) | RSS logscan / tool | output check (round 1) |"
    )
    table = [
        f"### {mta}: {path.name}, {lines:,} lines, {path.stat().st_size / 1e6:.0f} MB, {rounds} rounds",
        "",
        head,
        "|" + "---|" * 10,
    ]
    doc: dict[str, object] = {"file": shown(path), "lines": lines, "rounds": rounds, "tools": {}}
    tools_doc: dict[str, object] = {}
    for tool in tools:
        s = series[tool.name]
        cpu_b, cpu_m = s.best("cpu_s"), s.median("cpu_s")
        wall_b, wall_m = s.best("wall_s"), s.median("wall_s")
        rss = s.median("maxrss_kb") / 1024
        speed_b = s.best("cpu_s") / ls.best("cpu_s")  # logscan's lines/s ÷ tool's lines/s
        speed_m = s.median("cpu_s") / ls.median("cpu_s")
        speed_w = s.best("wall_s") / ls.best("wall_s")
        rss_ratio = ls.median("maxrss_kb") / s.median("maxrss_kb")
        table.append(
            f"| {tool.name} | {cpu_b:.2f} / {cpu_m:.2f} | {wall_b:.2f} / {wall_m:.2f} "
            f"| {human(rate(lines, cpu_b))} | {human(rate(lines, wall_b))} | {rss:.1f} "
            f"| {speed_b:.2f} / {speed_m:.2f} | {speed_w:.2f} "
            f"| {rss_ratio:.2f} | {checks.get(tool.name, '')} |"
        )
        tools_doc[tool.name] = {
            "runs": [_run_dict(r) for r in s.runs],
            "check": checks.get(tool.name, ""),
        }
    doc["tools"] = tools_doc
    return table, doc


def _run_dict(r: Run) -> dict[str, float]:
    return {"cpu_s": r.cpu_s, "wall_s": r.wall_s, "maxrss_kb": r.maxrss_kb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--mta",
        nargs="+",
        choices=("postfix", "exim", "mailenable"),
        default=["postfix", "exim", "mailenable"],
    )
    ap.add_argument("--size", default="1M", help="which generated file: benchmarks/data/<mta>-<size>.log")
    ap.add_argument(
        "--eximstats", default=None, help="path of eximstats (default: PATH, then benchmarks/data/peers)"
    )
    ap.add_argument(
        "--out", type=Path, default=None, help="markdown file (default benchmarks/results/scan-<UTC time>.md)"
    )
    args = ap.parse_args()
    eximstats = args.eximstats or find_eximstats()
    started = datetime.now(UTC)
    md = [
        f"# `logscan scan` vs peers — {started:%Y-%m-%d %H:%M} UTC",
        "",
        *environment(),
        f"- command: `{' '.join(['python -m benchmarks.scan_vs_peers', *sys.argv[1:]])}`",
        "- mtail program: benchmarks/peers/postfix.mtail; eximstats: "
        + (shown(eximstats) if eximstats else "not found (skipped)"),
        "- prometheus-postfix-exporter: no whole-file mode (tails from EOF); see daemon_ingest results",
        "",
    ]
    full: dict[str, object] = {"started": started.isoformat()}
    for mta in args.mta:
        path = DATA / f"{mta}-{args.size}.log"
        if not path.exists():
            raise SystemExit(f"{path} missing: run `python benchmarks/gen_logs.py --size {args.size}` first")
        print(f"{mta}: {path}", flush=True)
        table, doc = bench(mta, path, args.rounds, eximstats)
        md += [*table, ""]
        full[mta] = doc
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    md.append(f"Load average at end: {load}. Finished {datetime.now(UTC):%H:%M} UTC.")
    out = publish("\n".join(md) + "\n", args.out or RESULTS / f"scan-{started:%Y-%m-%dT%H%M}Z.md")
    out.with_suffix(".json").write_text(json.dumps(full, indent=1) + "\n")
    print(f"written: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


if __name__ == "__main__":
    main()
