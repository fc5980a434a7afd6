"""Follow-mode ingest: the real daemon (`python -m logscan run`) follows an empty log, then a
1M-line burst (benchmarks/data/<mta>-1M.log) is appended as fast as possible.

    .venv/bin/python benchmarks/gen_logs.py                   # once
    .venv/bin/python -m benchmarks.daemon_ingest [--rounds 2] [--no-peers] [--mta exim]
    .venv/bin/python -m benchmarks.daemon_ingest --vs-scan [--backlog] [--pythonpath DIR]

--vs-scan also runs `logscan scan FILE` and `logscan scan --alerts FILE` on the burst file in
the same rounds (process start to exit, as scan_vs_peers measures it), and reports the daemon's
speed as a share of scan's (docs/benchmarks.md, issue 16's table). --backlog starts the daemon
on the whole file already written (catching up after an outage) and times it from process
start, like scan; without it the burst is appended to a followed empty log, so the daemon can
finish no sooner than the writer. The writer appends ~1 MiB pieces that end on line
boundaries, copied by the kernel (copy_file_range) so that it takes as little as possible of
the CPUs the daemon needs. --pythonpath measures another checkout (e.g. an older
commit: `git archive COMMIT | tar -x -C DIR`, C scanner copied or built in place).

Measured per run:
- time to visible: from the first append to the first /metrics scrape on which the burst is
  completely counted. logscan: sum(logscan_lines_total) == lines in the burst (exact),
  scraped every 0.1 s and every 0.01 s from 90 % on (so at most 10 ms late).
  Peers have no line counter covering every line, so for them "complete" is: the sum of all
  their sample values stops moving for 3 s; the time is that of the last change seen
  (polled every 0.25 s, so up to 0.25 s late);
- CPU the process spent on the burst (utime+stime from /proc/<pid>/stat, before and after);
- peak RSS: VmHWM from /proc/<pid>/status after the burst;
- idle CPU over 10 s after the burst, no scrapes in that window (must be ~0).

Peers, in the same run and interleaved with logscan (order reversed each round), fed the
same burst the same way: prometheus-postfix-exporter (Debian 0.3.0, `--postfix.logfile_path`;
it starts at the end of the file, which is why it is measured here and not by
scan_vs_peers) and mtail in daemon mode with benchmarks/peers/postfix.mtail. Exim and
MailEnable bursts run logscan alone: no follow-mode peer for them is packaged in Debian 12.
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import mmap
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
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
    shown,
    warm,
)

PEERS = Path(__file__).resolve().parent / "peers"
CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_S = 0.25  # peers' scrape cadence: their "done" is 3 s of quiet, so the last change is up to this late
EXACT_POLL_S = (0.1, 0.01)  # logscan's: until 90 % of the lines are counted, then
QUIET_S = 3.0
IDLE_S = 10.0
SAMPLE = re.compile(rb"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)", re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> bytes | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            body: bytes = resp.read()
            return body
    except (OSError, urllib.error.URLError):
        return None


def metric_sum(body: bytes, prefix: bytes) -> float:
    total = 0.0
    for m in SAMPLE.finditer(body):
        if m[1].startswith(prefix):
            with contextlib.suppress(ValueError):
                total += float(m[3])
    return total


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


@dataclass(slots=True)
class Subject:
    name: str
    start: Callable[[Path, Path, int], list[str]]  # (log, workdir, port) -> argv
    prefix: bytes  # metric names summed
    exact: bool  # True: done when the sum == lines; False: done when the sum stops moving


@dataclass(slots=True)
class Result:
    name: str
    visible_s: float
    append_s: float
    burst_cpu_s: float
    peak_rss_mb: float
    idle_cpu_s: float
    final: float
    t50: float | None  # logscan only: first scrape with >= 50 % / 90 % of the lines counted
    t90: float | None


POLL_INTERVAL: list[float] = []  # --poll-interval: logscan's [daemon] poll_interval (default: its own)
MTA: list[str] = ["postfix"]  # --mta: the burst's format
PYTHONPATH: list[Path] = []  # --pythonpath: the logscan checkout to run (default: this one)
BACKLOG: list[bool] = [False]  # --backlog: the file is whole before the daemon starts


def logscan_env() -> tuple[dict[str, str] | None, Path]:
    """Environment and working directory that make `python -m logscan` import the measured checkout."""
    if not PYTHONPATH:
        return None, REPO
    return {**os.environ, "PYTHONPATH": str(PYTHONPATH[0])}, PYTHONPATH[0]


def logscan_argv(log: Path, work: Path, port: int) -> list[str]:
    cfg = work / "logscan.toml"
    poll = f"poll_interval = {POLL_INTERVAL[0]}\n" if POLL_INTERVAL else ""
    cfg.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\ninstance = "bench"\n\n'
        f'[state]\ndir = "{work / "state"}"\n\n'
        f'[daemon]\nlog_level = "warning"\ntimezone = "UTC"\n{poll}\n'
        f'[[logs]]\nname = "{MTA[0]}"\npath = "{log}"\nformat = "{MTA[0]}"\nstart_at = "beginning"\n'
    )
    return [sys.executable, "-m", "logscan", "run", "--config", str(cfg)]


def exporter_argv(log: Path, work: Path, port: int) -> list[str]:
    return [
        "prometheus-postfix-exporter",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--postfix.logfile_path={log}",
        f"--postfix.showq_path={work / 'no-showq'}",
    ]


def mtail_argv(log: Path, work: Path, port: int) -> list[str]:
    return ["mtail", "--progs", str(PEERS), "--logs", str(log), "--address", "127.0.0.1",
            "--port", str(port), "--logtostderr", "--emit_prog_label=false"]  # fmt: skip


SUBJECTS = [
    Subject("logscan run", logscan_argv, b"logscan_lines_total", exact=True),
    Subject("prometheus-postfix-exporter", exporter_argv, b"postfix_", exact=False),
    Subject("mtail (daemon)", mtail_argv, b"postfix_", exact=False),
]


def line_cuts(src: Path, size: int = 1 << 20) -> list[int]:
    """Offsets that split `src` into ~`size`-byte pieces ending on line boundaries (the last at EOF)."""
    cuts: list[int] = []
    with src.open("rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
        end = len(mm)
        at = 0
        while at < end:
            nl = mm.rfind(b"\n", at, at + size)
            at = nl + 1 if nl >= at and at + size < end else min(at + size, end)
            cuts.append(at)
    return cuts


def copy_range(fin: int, fout: int, offset: int, count: int) -> None:
    """Append `count` bytes of `fin` from `offset` to `fout` (at its position), copied by the kernel."""
    while count > 0:
        try:
            n = os.copy_file_range(fin, fout, count, offset)
        except OSError as exc:  # no in-kernel copy between these files: a plain read and write
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):
                raise
            n = os.write(fout, os.pread(fin, count, offset))
        if n <= 0:
            raise OSError(errno.EIO, "nothing copied")
        offset += n
        count -= n


def append_burst(src: Path, log: Path) -> float:
    """Append `src` to `log` in ~1 MiB writes that end on line boundaries, as fast as possible.

    The kernel copies the bytes (copy_file_range): a Python writer's own copying took 0.3-0.9 s
    of CPU per 170 MB, taken from the cores the daemon runs on, and no follower can finish
    before its writer. Where the boundaries fall is worked out before the clock starts."""
    cuts = line_cuts(src)
    t0 = time.perf_counter()
    with src.open("rb") as fin, log.open("r+b", buffering=0) as fout:
        fout.seek(0, os.SEEK_END)  # "ab" would be O_APPEND, which copy_file_range refuses
        start = 0
        for end in cuts:
            copy_range(fin.fileno(), fout.fileno(), start, end - start)
            start = end
    return time.perf_counter() - t0


def cadence(subject: Subject, value: float, lines: int) -> float:
    """Seconds to the next scrape. logscan is scraped every 0.1 s, then every 0.01 s once 90 %
    of the lines show: its time to visible is at most 10 ms late, and the scrapes (each takes the
    daemon's lock and about a millisecond of its CPU) cost it about 1 %."""
    if not subject.exact:
        return POLL_S
    return EXACT_POLL_S[1] if value >= 0.9 * lines else EXACT_POLL_S[0]


def run_one(subject: Subject, burst: Path, lines: int, timeout: float) -> Result:
    with tempfile.TemporaryDirectory(prefix="logscan-ingest-") as tmp:
        work = Path(tmp)
        log = work / "mail.log"
        backlog = BACKLOG[0] and subject.exact
        if backlog:
            shutil.copyfile(burst, log)
            warm(log)
        else:
            log.touch()
        port = free_port()
        argv = subject.start(log, work, port)
        env, cwd = logscan_env() if subject.exact else (None, REPO)
        t_start = time.perf_counter()
        with (work / "stderr").open("wb") as err:
            proc = subprocess.Popen(
                argv, stdout=err, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, env=env
            )
        try:
            deadline = time.monotonic() + 60
            while scrape(port) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (work / "stderr").read_text()[-2000:]
                    raise SystemExit(f"{subject.name} did not start:\n{tail}")
                time.sleep(0.02 if backlog else 0.1)
            if backlog:  # timed from the process start, as scan is; CPU likewise
                cpu0, t0, append_s = 0, t_start, 0.0
            else:
                time.sleep(1.0)  # let it settle into its idle loop
                cpu0 = cpu_ticks(proc.pid)
                t0 = time.perf_counter()
                append_s = append_burst(burst, log)
            last_value, last_change = -1.0, t0
            visible = t50 = t90 = None
            while time.perf_counter() - t0 < timeout:
                body = scrape(port)
                now = time.perf_counter()
                value = metric_sum(body, subject.prefix) if body else last_value
                if subject.exact and t50 is None and value >= lines / 2:
                    t50 = now - t0
                if subject.exact and t90 is None and value >= lines * 0.9:
                    t90 = now - t0
                if subject.exact and value >= lines:
                    visible, last_value = now - t0, value
                    break
                if value != last_value:
                    last_value, last_change = value, now
                elif not subject.exact and value > 0 and now - last_change >= QUIET_S:
                    visible = last_change - t0
                    break
                time.sleep(cadence(subject, value, lines))
            if visible is None:
                raise SystemExit(f"{subject.name}: not visible after {timeout} s (last sum {last_value})")
            burst_cpu = (cpu_ticks(proc.pid) - cpu0) / CLK_TCK
            hwm = status_kb(proc.pid, "VmHWM")
            time.sleep(1.0)
            idle0 = cpu_ticks(proc.pid)
            time.sleep(IDLE_S)
            idle = (cpu_ticks(proc.pid) - idle0) / CLK_TCK
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return Result(subject.name, visible, append_s, burst_cpu, hwm / 1024, idle, last_value, t50, t90)


SCANS = ("logscan scan", "logscan scan --alerts")


def run_scan(name: str, path: Path) -> Run:
    """`logscan scan` of the whole burst file, from process start to exit."""
    argv = [sys.executable, "-m", "logscan", "scan", "--json", "--progress", "never", "--format", MTA[0]]
    argv += ["--alerts"] if name.endswith("--alerts") else []
    env, cwd = logscan_env()
    with tempfile.TemporaryDirectory(prefix="logscan-scan-") as tmp:
        err = Path(tmp) / "err"
        run = measure([*argv, str(path)], stdout=Path(tmp) / "out", stderr=err, cwd=cwd, env=env)
        if run.rc != 0:
            raise SystemExit(f"{name} exited {run.rc}:\n{err.read_text()[-2000:]}")
    return run


def vs_scan(scans: dict[str, Series], daemon: list[Result], lines: int) -> list[str]:
    """The issue-16 table: scan, scan --alerts and the daemon side by side (best of rounds)."""
    scan_wall = scans["logscan scan"].best("wall_s")
    scan_cpu = scans["logscan scan"].best("cpu_s")
    rows = [
        (name, s.best("wall_s"), s.best("cpu_s"), s.median("maxrss_kb") / 1024) for name, s in scans.items()
    ]
    rows.append(
        ("daemon (logscan run, default config: alerts on)", min(r.visible_s for r in daemon),
         min(r.burst_cpu_s for r in daemon), min(r.peak_rss_mb for r in daemon))
    )  # fmt: skip
    md = [
        "",
        "Side by side with `logscan scan` (best of rounds; wall of scan = process start to exit):",
        "",
        "| path | wall s | lines/s (wall) | share of scan's speed (wall) | CPU s | lines/s (CPU) "
        "| share of scan's speed (CPU) | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, wall, cpu, rss in rows:
        md.append(
            f"| {name} | {wall:.2f} | {human(lines / wall)} | {scan_wall / wall:.0%} | {cpu:.2f} "
            f"| {human(lines / cpu) if cpu else '-'} | {scan_cpu / cpu if cpu else 0:.0%} | {rss:.1f} |"
        )
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mta", default="postfix", choices=["postfix", "exim", "mailenable"])
    ap.add_argument("--size", default="1M", help="burst file benchmarks/data/<mta>-<size>.log")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for one burst")
    ap.add_argument("--no-peers", action="store_true", help="logscan only")
    ap.add_argument("--poll-interval", type=float, default=None, help="logscan [daemon] poll_interval")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--vs-scan", action="store_true", help="also `logscan scan [--alerts]` in each round")
    ap.add_argument("--backlog", action="store_true", help="the daemon starts on the whole file")
    ap.add_argument("--pythonpath", type=Path, default=None, help="run the logscan checkout in this folder")
    args = ap.parse_args()
    BACKLOG[0] = args.backlog
    if args.pythonpath is not None:
        PYTHONPATH.append(args.pythonpath.resolve())
    if args.poll_interval is not None:
        POLL_INTERVAL.append(args.poll_interval)
    MTA[0] = args.mta
    burst = DATA / f"{args.mta}-{args.size}.log"
    if not burst.exists():
        raise SystemExit(f"{burst} missing: run benchmarks/gen_logs.py --mta {args.mta} --size {args.size}")
    lines = count_lines(burst)
    peers = not args.no_peers and args.mta == "postfix"
    subjects = [s for s in SUBJECTS if peers or s.name == "logscan run"]
    subjects = [s for s in subjects if s.name == "logscan run" or shutil.which(s.start(burst, burst, 0)[0])]
    started = datetime.now(UTC)
    results: list[Result] = []
    scans = {name: Series(name) for name in SCANS} if args.vs_scan else {}
    for rnd in range(args.rounds):
        for name, series in scans.items():
            warm(burst)
            run = run_scan(name, burst)
            series.runs.append(run)
            print(f"round {rnd + 1} {name:<28} wall {run.wall_s:7.2f} s  CPU {run.cpu_s:6.2f} s  "
                  f"peak RSS {run.maxrss_kb / 1024:6.1f} MB", flush=True)  # fmt: skip
        for subject in subjects if rnd % 2 == 0 else reversed(subjects):
            warm(burst)
            r = run_one(subject, burst, lines, args.timeout)
            results.append(r)
            print(
                f"round {rnd + 1} {r.name:<28} visible {r.visible_s:7.2f} s (append {r.append_s:.2f} s)  "
                f"burst CPU {r.burst_cpu_s:6.2f} s  peak RSS {r.peak_rss_mb:6.1f} MB  "
                f"idle CPU/10 s {r.idle_cpu_s:.2f} s  final sum {r.final:,.0f}"
                + (f"  (50 % at {r.t50:.2f} s, 90 % at {r.t90:.2f} s)" if r.t50 and r.t90 else ""),
                flush=True,
            )
    md = [
        f"# Daemon ingest of a {lines:,}-line {args.mta} burst — {started:%Y-%m-%d %H:%M} UTC",
        "",
        *environment(),
        f"- burst: {burst.name} ({burst.stat().st_size / 1e6:.0f} MB), appended in ~1 MiB writes "
        "that end on line boundaries",
        "- logscan done = sum(logscan_lines_total) == lines; peers done = their metrics stop moving for 3 s",
        f"- logscan [daemon] poll_interval: {args.poll_interval or 'default (2.0 s)'}",
        "- logscan measured: "
        + (f"another checkout, {shown(PYTHONPATH[0])}" if PYTHONPATH else "this checkout"),
        "- daemon: "
        + (
            "started on the whole file (start_at = beginning), timed from process start"
            if args.backlog
            else "follows an empty log; the burst is appended; timed from the first write"
        ),
        "",
        "| subject | round | time to visible s (50 % / 90 % at) | lines/s (wall) | burst CPU s "
        "| lines/s (CPU) | peak RSS MB (VmHWM) | idle CPU s over 10 s | final sum of summed samples |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rounds: dict[str, int] = {}
    for r in results:
        rounds[r.name] = rounds.get(r.name, 0) + 1
        md.append(
            f"| {r.name} | {rounds[r.name]} | {r.visible_s:.2f}"
            + (f" ({r.t50:.2f} / {r.t90:.2f})" if r.t50 and r.t90 else "")
            + f" | {human(lines / r.visible_s)} "
            f"| {r.burst_cpu_s:.2f} | {human(lines / r.burst_cpu_s) if r.burst_cpu_s else '-'} "
            f"| {r.peak_rss_mb:.1f} | {r.idle_cpu_s:.2f} | {r.final:,.0f} |"
        )
    ls = [r for r in results if r.name == "logscan run"]
    best_ls_wall = min(r.visible_s for r in ls)
    best_ls_cpu = min(r.burst_cpu_s for r in ls)
    if len(subjects) > 1:
        md += ["", "Ratios (best of rounds; >1 = logscan faster / bigger):", ""]
        md += ["| peer | logscan speed ÷ peer, wall | logscan speed ÷ peer, CPU | RSS logscan / peer |"]
        md += ["|---|---|---|---|"]
        for s in subjects[1:]:
            pr = [r for r in results if r.name == s.name]
            wall = min(r.visible_s for r in pr) / best_ls_wall
            cpu = min(r.burst_cpu_s for r in pr) / best_ls_cpu
            rss = min(r.peak_rss_mb for r in ls) / min(r.peak_rss_mb for r in pr)
            md.append(f"| {s.name} | {wall:.2f} | {cpu:.2f} | {rss:.2f} |")
    if scans:
        md += vs_scan(scans, ls, lines)
    path = publish("\n".join(md) + "\n", args.out or RESULTS / f"ingest-{started:%Y-%m-%dT%H%M}Z.md")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
