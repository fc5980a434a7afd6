"""Scrape latency of MetricsServer at 1k and 10k series, beside prometheus-postfix-exporter, and
the endpoint under attack (idle connections, slow-header clients, oversized heads).

Run (after `make setup`; apt-get install prometheus-postfix-exporter for the peer):
  .venv/bin/python benchmarks/scrape_latency.py latency [--scrapes 200]
  .venv/bin/python benchmarks/scrape_latency.py attack [--idle 1000 --slow 100 --scrapes 100]
  .venv/bin/python benchmarks/scrape_latency.py attack --target 127.0.0.1:9551 --pid PID  (any server)
Add `--tree DIR` to serve the logscan of another source tree with the same harness, for a
before/after in one session: `mkdir /tmp/base && git archive BASE | tar -x -C /tmp/base`.

The server runs in a child process (Prometheus is another process too). `latency` prints
p50/p99 per format over a real socket with keep-alive, as Prometheus scrapes, for three
cases: one new event between scrapes (the snapshot changed a little: every scrape
renders), a new event in every log between scrapes (what a 15 s scrape interval of a busy
server sees), and unchanged (the cached body); and the child's own CPU per render.
`attack` reports scrapes answered, their p50/p99, connections closed by the head deadline,
the server's RSS with the connections open, and the status answered to a 1 MB header and
to a bad request line.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import logging
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import bcrypt
import structlog
import urllib3
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from logscan.core.aggregate import Aggregate
from logscan.events import MTA, Event, Status
from logscan.outputs.http import MetricsServer, load_web_config
from logscan.outputs.metrics import Exposition, LogStatus, make_registry

CODES = [
    f"{c}" for c in (250, 251, 421, 450, 451, 452, 550, 551, 552, 553, 554, 535, 530, 571, 500, 501, 503)
]
T0 = 1_790_000_000.0


def build(logs: int, domains: int) -> tuple[Aggregate, tuple[LogStatus, ...]]:
    """An aggregate whose exposition holds roughly 10k series for the defaults."""
    agg = Aggregate(top_domains=domains)
    statuses: tuple[Status, ...] = ("sent", "bounced", "deferred", "expired")
    mtas: tuple[MTA, ...] = get_args(MTA)
    for li in range(logs):
        mta = mtas[li % 3]
        for direction in ("inbound", "outbound"):
            for i in range(200):  # 200 distinct (code, enhanced) pairs: the per-log cap
                code = CODES[i % len(CODES)]
                enhanced = f"{code[0]}.{i % 8}.{i // 8}"
                agg.add(
                    Event(
                        mta,
                        f"log{li}",
                        T0 + i,
                        direction,
                        code=code,
                        enhanced=enhanced,
                        status=statuses[i % 4],
                        delay_s=float(i),
                        recipient_domain=f"d{i % domains}.example",
                        sender_domain=f"d{i % domains}.example",
                    )
                )
    for _ in range(3):  # every domain seen often enough to earn its label
        for d in range(domains):
            agg.add(Event("postfix", "log0", T0, "outbound", code="250", recipient_domain=f"d{d}.example"))
    logs_status = tuple(
        LogStatus(f"log{i}", ("postfix", "exim", "mailenable")[i % 3], True) for i in range(logs)
    )
    return agg, logs_status


def percentiles(times: list[float]) -> tuple[float, float]:
    """(p50, p99) in ms."""
    times = sorted(times)
    p99 = times[min(len(times) - 1, round(0.99 * len(times)) - 1)]
    return statistics.median(times) * 1000, p99 * 1000


def timed(n: int, fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(n):
        t = clock()
        fn()
        out.append(clock() - t)
    return out


def report(name: str, times: list[float], size: int) -> None:
    p50, p99 = percentiles(times)
    print(f"{name:<86} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   {size:>9,} bytes", flush=True)


def series_count(text: bytes) -> int:
    return sum(len(f.samples) for f in text_string_to_metric_families(text.decode()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A MetricsServer with `logs` logs in a child process, from `tree` when given (another checkout).

    A child, as in production: Prometheus is another process, so the client's own Python
    work never competes with the server for the GIL. Its stdin switches what changes
    between two scrapes: "none", "one" (one event), "all" (one event in every log).
    """

    def __init__(self, logs: int, domains: int, tree: str | None, web_config: Path | None = None) -> None:
        env = dict(os.environ)
        if tree:
            env["PYTHONPATH"] = tree  # this script's folder comes first, then the tree's logscan
        cmd = [sys.executable, __file__, "serve", "--logs", str(logs), "--domains", str(domains)]
        if web_config is not None:
            cmd += ["--web-config", str(web_config)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the server did not start")
            if line.startswith("serving "):
                self.url = line.split()[1]
                break
            print(line, end="", flush=True)

    def change(self, mode: str) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(mode + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


VARIANTS: list[tuple[str, dict[str, str]]] = [
    ("text/plain 0.0.4", {}),
    ("text/plain 0.0.4 + gzip", {"Accept-Encoding": "gzip"}),
    ("OpenMetrics 1.0.0", {"Accept": "application/openmetrics-text; version=1.0.0"}),
    (
        "OpenMetrics 1.0.0 + gzip (Prometheus' default)",
        {"Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "gzip"},
    ),
]
CHANGES = {
    "one": "one new event between scrapes",
    "all": "a new event in every log between scrapes",
    "none": "unchanged",
}


def latency_for(logs: int, domains: int, scrapes: int, tree: str | None) -> None:
    pool = urllib3.PoolManager(retries=False)  # keep-alive, as Prometheus does
    server = Server(logs, domains, tree)
    try:
        health = server.url + "/healthz"  # answered on the event loop: the floor of this machine
        report("HTTP /healthz (no scrape: the floor)", timed(scrapes, lambda: pool.request("GET", health)), 3)
        url = server.url + "/metrics"
        for mode, what in CHANGES.items():
            server.change(mode)
            for name, headers in VARIANTS:
                size = len(pool.request("GET", url, headers=headers, decode_content=False).data)

                def scrape(h: dict[str, str] = headers) -> object:
                    return pool.request("GET", url, headers=h, decode_content=False)

                report(f"HTTP {name}, {what}", timed(scrapes, scrape), size)
        packed = pool.request("GET", url, headers={"Accept-Encoding": "gzip"}, decode_content=False).data
        report("client-side gunzip of that body (not in the lines above)",
               timed(scrapes, lambda: gzip.decompress(packed)), len(packed))  # fmt: skip
    finally:
        server.close()


def basic_auth_latency(logs: int, domains: int, scrapes: int, tree: str | None) -> None:
    pool = urllib3.PoolManager(retries=False)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "web.yml"
        cfg.write_text(f"basic_auth_users:\n  prom: '{bcrypt.hashpw(b'pw', bcrypt.gensalt(10)).decode()}'\n")
        server = Server(logs, domains, tree, cfg)
        try:
            server.change("one")
            headers = urllib3.make_headers(basic_auth="prom:pw")
            url = server.url + "/metrics"
            first = time.perf_counter()
            pool.request("GET", url, headers=headers)
            print(f"first basic-auth scrape (bcrypt cost 10): {(time.perf_counter() - first) * 1000:.1f} ms")
            size = len(pool.request("GET", url, headers=headers).data)
            report(
                "HTTP text + basic auth (cached), one new event",
                timed(scrapes, lambda: pool.request("GET", url, headers=headers)),
                size,
            )
        finally:
            server.close()


def postfix_exporter(scrapes: int) -> None:
    """The peer in the same run: prometheus-postfix-exporter (Go) on a small postfix log."""
    binary = shutil.which("prometheus-postfix-exporter")
    if binary is None:
        print("\n== prometheus-postfix-exporter: not installed (apt-get install prometheus-postfix-exporter)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "mail.log"
        log.write_text("")
        port = free_port()
        proc = subprocess.Popen(
            [binary, f"--web.listen-address=127.0.0.1:{port}", f"--postfix.logfile_path={log}",
             f"--postfix.showq_path={tmp}/no-showq"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            pool = urllib3.PoolManager(retries=False)
            url = f"http://127.0.0.1:{port}/metrics"
            deadline = time.monotonic() + 10
            while True:
                try:
                    body = pool.request("GET", url).data
                    break
                except urllib3.exceptions.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            print(f"\n== prometheus-postfix-exporter, {series_count(body):,} series", flush=True)
            for name, headers in VARIANTS:
                got = pool.request("GET", url, headers=headers, decode_content=False)

                def scrape(h: dict[str, str] = headers) -> object:
                    return pool.request("GET", url, headers=h, decode_content=False)

                kind = got.headers.get("Content-Type", "").split(";")[0]
                report(f"HTTP {name} (answers {kind})", timed(scrapes, scrape), len(got.data))
        finally:
            proc.terminate()
            proc.wait(10)


# ---------------------------------------------------------------- attacks


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def first_line(host: str, port: int, payload: bytes) -> str:
    """The status line the server answers to `payload`, or what happened instead."""
    try:
        with socket.create_connection((host, port), timeout=15) as s:
            with contextlib.suppress(OSError):  # the server may answer before a 1 MB head is sent
                s.sendall(payload)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.split(b"\r\n", 1)[0].decode(errors="replace") or "closed without an answer"
    except OSError as exc:
        return f"error: {exc}"


def one_scrape(host: str, port: int) -> float | None:
    """A fresh connection per scrape (the hard case under a connection flood); None = no answer."""
    t = time.perf_counter()
    try:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
        resp = conn.getresponse()
        resp.read()
        conn.close()
    except OSError:
        return None
    return time.perf_counter() - t if resp.status == 200 else None


def closed(sockets: list[socket.socket]) -> int:
    n = 0
    for s in sockets:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                n += 1
        except BlockingIOError:
            pass
        except OSError:
            n += 1
    return n


def attack(host: str, port: int, pid: int | None, idle: int, slow: int, scrapes: int, hold: float) -> None:
    """Hold `idle` silent and `slow` one-byte-a-second clients open, scrape, then see who was closed."""
    opened: list[socket.socket] = []
    dripping: list[socket.socket] = []
    rss_before = f"{rss_kb(pid) / 1024:.1f}" if pid else "n/a"
    t_open = time.monotonic()
    for _ in range(idle):
        opened.append(socket.create_connection((host, port), timeout=5))
    for _ in range(slow):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        dripping.append(s)
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(1.0):
            for s in dripping:
                with contextlib.suppress(OSError):
                    s.send(b"X")

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    time.sleep(1.0)
    rss = f"{rss_kb(pid) / 1024:.1f} MB" if pid else "n/a"
    times = [one_scrape(host, port) for _ in range(scrapes)]
    ok = [t for t in times if t is not None]
    p50, p99 = percentiles(ok) if ok else (float("nan"), float("nan"))
    time.sleep(max(0.0, hold - (time.monotonic() - t_open)))
    stop.set()
    dripper.join()
    print(
        f"idle {idle:>5}  slow {slow:>4}: scrapes answered {len(ok)}/{scrapes}, p50 {p50:6.1f} ms, "
        f"p99 {p99:6.1f} ms; server RSS {rss_before} MB before, {rss} with them open; "
        f"closed after {hold:g} s: "
        f"idle {closed(opened)}/{idle}, slow {closed(dripping)}/{slow}",
        flush=True,
    )
    for s in opened + dripping:
        s.close()


def serve(logs: int, domains: int, port: int, web_config: str | None) -> None:
    """A MetricsServer with ~10k series (21 logs) and the default limits, driven by `Server`."""
    agg, statuses = build(logs, domains)
    lock = threading.Lock()
    mode = ["second"]  # the attack's default: ingestion goes on, an event a second
    tick = [0]

    def change() -> None:
        tick[0] += 1
        if mode[0] == "one":
            agg.add(Event("postfix", "log0", T0 + tick[0], "outbound", code="250"))
        elif mode[0] == "all":
            for li in range(logs):
                agg.add(
                    Event(
                        ("postfix", "exim", "mailenable")[li % 3],
                        f"log{li}",
                        T0 + tick[0],
                        ("inbound", "outbound")[tick[0] % 2],
                        code="551",
                        enhanced="5.1.1",
                        status="bounced",
                        delay_s=3.0,
                        recipient_domain=f"d{tick[0] % domains}.example",
                    )
                )

    def source() -> Exposition:
        with lock:  # the daemon's lock: the tail loop waits for this copy, and only for it
            change()
            snap = agg.snapshot(T0 + 300)
        return Exposition(snap, logs=statuses)

    registry = make_registry(source)
    text = generate_latest(registry)
    print(f"\n== logscan {Path(sys.modules[make_registry.__module__].__file__ or '').parents[2]}, "
          f"{series_count(text):,} series ({logs} logs)", flush=True)  # fmt: skip
    mode[0] = "one"
    cpu = timed(20, lambda: generate_latest(registry), clock=time.process_time)
    report("in-process CPU, prometheus_client generate_latest", cpu, len(text))
    for change_mode in ("one", "all"):
        mode[0] = change_mode
        for om, gz in ((False, False), (True, True)):

            def scrape(o: bool = om, g: bool = gz) -> bytes:
                return registry.exposition(openmetrics=o, gzipped=g)

            cpu = timed(100, scrape, clock=time.process_time)
            name = f"in-process CPU, exposition(om={om:d}, gzip={gz:d}), {CHANGES[change_mode]}"
            report(name, cpu, len(text))
    mode[0] = "second"
    config = load_web_config(Path(web_config)) if web_config else None
    with MetricsServer(f"127.0.0.1:{port}", registry, lambda: (True, ""), config) as server:
        print(f"serving {server.url}", flush=True)
        commands = threading.Thread(target=lambda: read_modes(mode), daemon=True)
        commands.start()
        while True:
            time.sleep(1)
            if mode[0] == "second":
                with lock:
                    agg.add(Event("postfix", "log0", time.time(), "outbound", code="250"))


def read_modes(mode: list[str]) -> None:
    for line in sys.stdin:
        mode[0] = line.strip()
        print("ok", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", choices=("latency", "attack", "serve"), default="latency")
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--domains", type=int, default=300)
    ap.add_argument("--logs", type=int, default=21)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=100)
    ap.add_argument("--hold", type=float, default=12.0, help="seconds before counting closed connections")
    ap.add_argument("--tree", help="serve logscan from this source tree (`git archive` of a base)")
    ap.add_argument("--target", help="host:port of a running server to attack instead of a child")
    ap.add_argument("--pid", type=int, help="its pid, for RSS")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--web-config", help=argparse.SUPPRESS)
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,100 client sockets
    if args.mode == "serve":
        serve(args.logs, args.domains, args.port, args.web_config)
        return
    if args.mode == "latency":
        for logs, domains in ((2, 10), (args.logs, args.domains)):  # ~1k and ~10k series
            latency_for(logs, domains, args.scrapes, args.tree)
        basic_auth_latency(args.logs, args.domains, args.scrapes, args.tree)
        postfix_exporter(args.scrapes)
        return
    server = None
    if args.target:
        host, _, port_s = args.target.rpartition(":")
        port, pid = int(port_s), args.pid
    else:
        server = Server(args.logs, args.domains, args.tree)  # ingesting an event a second
        host, _, port_s = server.url.removeprefix("http://").rpartition(":")
        port, pid = int(port_s), server.proc.pid
    try:
        print(f"target {host}:{port}, {args.scrapes} scrapes per scenario, each on a new connection")
        for idle, slow in ((args.idle, 0), (0, args.slow), (args.idle, args.slow)):
            attack(host, port, pid, idle, slow, args.scrapes, args.hold)
        big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
        print(f"1 MB header: {first_line(host, port, big)}")
        garbage = b"GARBAGE\r\n\r\n"
        print(f"bad request line: {first_line(host, port, garbage)}")
        print(f"afterwards: {'answers' if one_scrape(host, port) else 'NO ANSWER'}")
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
