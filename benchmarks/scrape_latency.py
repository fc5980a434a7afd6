"""Scrape latency of MetricsServer with ~10k series, over a real socket with a real HTTP client.

Run: .venv/bin/python benchmarks/scrape_latency.py [--scrapes 200] [--logs 20]  (after `make setup`)
Prints median and p95 per variant (text, OpenMetrics, gzip, basic auth) and the time of
the in-process exposition alone, so HTTP overhead and collector cost can be told apart.
"""

from __future__ import annotations

import argparse
import logging
import statistics
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


def timed(n: int, fn: Callable[[], object]) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def report(name: str, times: list[float], size: int) -> None:
    times = sorted(times)
    p95 = times[min(len(times) - 1, round(0.95 * len(times)) - 1)]
    median = statistics.median(times) * 1000
    print(f"{name:<34} median {median:7.1f} ms   p95 {p95 * 1000:7.1f} ms   {size:>9,} bytes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--logs", type=int, default=20)
    ap.add_argument("--domains", type=int, default=300)
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    agg, logs = build(args.logs, args.domains)
    lock = threading.Lock()

    def source() -> Exposition:
        with lock:  # the daemon's lock: the tail loop waits for this copy, and only for it
            snap = agg.snapshot(T0 + 300)
        return Exposition(snap, logs=logs)

    registry = make_registry(source)
    text = generate_latest(registry)
    series = sum(len(f.samples) for f in text_string_to_metric_families(text.decode()))
    print(f"series exported: {series:,}   scrapes per variant: {args.scrapes}")
    report("in-process generate_latest", timed(args.scrapes, lambda: generate_latest(registry)), len(text))
    report("snapshot copy under the lock", timed(args.scrapes, source), 0)

    pool = urllib3.PoolManager(retries=False)  # keep-alive, as Prometheus does
    with MetricsServer("127.0.0.1:0", registry, lambda: (True, "")) as server:
        url = server.url + "/metrics"
        variants: list[tuple[str, dict[str, str]]] = [
            ("HTTP text/plain 0.0.4", {}),
            ("HTTP OpenMetrics", {"Accept": "application/openmetrics-text; version=1.0.0"}),
            (
                "HTTP OpenMetrics + gzip",
                {"Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "gzip"},
            ),
        ]
        for name, headers in variants:
            size = len(pool.request("GET", url, headers=headers, decode_content=False).data)

            def scrape(h: dict[str, str] = headers) -> object:
                return pool.request("GET", url, headers=h)

            report(name, timed(args.scrapes, scrape), size)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "web.yml"
        cfg.write_text(f"basic_auth_users:\n  prom: '{bcrypt.hashpw(b'pw', bcrypt.gensalt(10)).decode()}'\n")
        with MetricsServer("127.0.0.1:0", registry, lambda: (True, ""), load_web_config(cfg)) as server:
            headers = urllib3.make_headers(basic_auth="prom:pw")
            url = server.url + "/metrics"
            first = time.perf_counter()
            pool.request("GET", url, headers=headers)
            print(f"first basic-auth scrape (bcrypt cost 10): {(time.perf_counter() - first) * 1000:.1f} ms")
            size = len(pool.request("GET", url, headers=headers).data)
            report(
                "HTTP text + basic auth (cached)",
                timed(args.scrapes, lambda: pool.request("GET", url, headers=headers)),
                size,
            )


if __name__ == "__main__":
    main()
