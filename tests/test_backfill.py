"""`scan --openmetrics` → real promtool blocks → a real Prometheus: the history equals `scan --json`.

Three days of rotated Postfix logs (the real sample log on three days, the older two rotated,
one gzipped) and the Exim sample log are scanned as the README says; promtool turns the files
into TSDB blocks and a Prometheus started on them answers range queries over those days.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import urllib3

from logscan.outputs.openmetrics_backfill import Timeline
from tests.alertmanager_fixture import free_port
from tests.daemon_fixture import REPO
from tests.test_prometheus_scrape import Prom, binary

SAMPLES = REPO / "sample_logs"
DAY = 86400


def _logscan(*args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "logscan", *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    return out


def _rotated_postfix(tmp: Path) -> list[Path]:
    """mail.log.2.gz (2 days ago), mail.log.1 (yesterday), mail.log: oldest first."""
    text = (SAMPLES / "postfix" / "mail.log").read_text()
    files = []
    for back, name in ((2, "mail.log.2.gz"), (1, "mail.log.1"), (0, "mail.log")):
        day = f"2026-11-{29 - back:02d}T"
        shifted = re.sub(r"^2026-11-29T", day, text, flags=re.MULTILINE)
        path = tmp / name
        if name.endswith(".gz"):
            path.write_bytes(gzip.compress(shifted.encode()))
        else:
            path.write_text(shifted)
        files.append(path)
    return files


class BackfilledProm(Prom):
    """A Prometheus on loopback whose TSDB is the blocks promtool made (no scraping)."""

    def __init__(self, tmp: Path, data: Path) -> None:
        (tmp / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\n")
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (tmp / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={data}",
                # The history is older than the default 15 days' retention would keep.
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address={self.url.removeprefix('http://')}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(10))
        self._wait(lambda: self._ok("/-/ready"), 30, "Prometheus did not become ready")

    def query_range(self, promql: str, start: float, end: float, step: int) -> list[dict[str, Any]]:
        resp = self.pool.request(
            "GET",
            self.url + "/api/v1/query_range",
            fields={"query": promql, "start": str(start), "end": str(end), "step": str(step)},
        )
        body = json.loads(resp.data)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


@pytest.mark.slow
def test_history_from_rotated_logs_in_prometheus_equals_scan_json(tmp_path: Path) -> None:
    postfix_files = _rotated_postfix(tmp_path)
    exim_file = SAMPLES / "exim" / "mainlog"
    om_postfix, om_exim = tmp_path / "postfix.om", tmp_path / "exim.om"
    labels = ("--label", "job=logscan", "--label", "instance=mx1")
    _logscan("scan", "--timezone", "UTC", "--log-name", "mail", "--openmetrics", str(om_postfix), *labels,
             *map(str, postfix_files))  # fmt: skip
    done = _logscan("scan", "--timezone", "UTC", "--log-name", "exim", "--openmetrics", str(om_exim), *labels,
                    str(exim_file))  # fmt: skip
    assert "samples of" in done.stderr
    want_postfix = json.loads(
        _logscan("scan", "--json", "--timezone", "UTC", *map(str, postfix_files)).stdout
    )
    want_exim = json.loads(_logscan("scan", "--json", "--timezone", "UTC", str(exim_file)).stdout)
    assert want_postfix["deliveries"]["sent"] == 3 * 189  # three days of the sample log

    data = tmp_path / "data"
    promtool = binary("promtool")
    for om in (om_postfix, om_exim):
        made = subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert made.returncode == 0, made.stdout + made.stderr

    start = 1795910400 - 2 * DAY  # 2026-11-27 00:00 UTC
    end = 1795910400 + DAY  # 2026-11-30 00:00 UTC (the last samples are on the 29th)
    prom = BackfilledProm(tmp_path, data)
    try:
        step = 300
        got = prom.query_range(
            'sum by (log, status) (logscan_deliveries_total{job="logscan", instance="mx1"})', start, end, step
        )
        series = {(r["metric"]["log"], r["metric"]["status"]): r["values"] for r in got}
        for log, want in (("mail", want_postfix), ("exim", want_exim)):
            for status, n in want["deliveries"].items():
                values = [float(v) for _, v in series[(log, status)]]
                assert values[-1] == n, (log, status, values[-1], n)
                assert values == sorted(values), "a counter never goes down"
        # Across the old days: the postfix counters step up once a day, a third each time.
        sent = dict(series[("mail", "sent")])
        day1_evening = start + 20 * 3600
        assert float(sent[day1_evening]) == 189
        assert float(sent[day1_evening + DAY]) == 2 * 189
        # increase() over the three days (what a dashboard panel asks) sees every delivery.
        total = prom.query_range(
            'sum(increase(logscan_deliveries_total{log="mail"}[3d]))', end - 3600, end - 3600, 60
        )
        counted = sum(want_postfix["deliveries"].values())
        assert abs(float(total[0]["values"][0][1]) - counted) / counted < 0.01
    finally:
        prom.close()


def test_timeline_samples_each_minute_from_zero_to_the_totals(tmp_path: Path) -> None:
    from logscan.app.scan import ScanReport, scan_file  # noqa: PLC0415

    timeline = Timeline(labels={"instance": "mx1"})
    report = ScanReport(aggregate=timeline)
    scan_file(SAMPLES / "postfix" / "mail.log", "postfix", report, tz_name="UTC", log_name="mail")
    timeline.finish()
    steps = [b - a for a, b in zip(timeline.times, timeline.times[1:], strict=False)]
    assert set(steps) == {60}, steps
    key = (
        "logscan_deliveries_total",
        (("instance", "mx1"), ("log", "mail"), ("mta", "postfix"), ("status", "sent")),
    )
    assert timeline.series[key][0] == 0
    assert timeline.series[key][-1] == 189
    assert not any(name.startswith("logscan_log_up") for name, _ in timeline.series)
    out = tmp_path / "x.om"
    with out.open("w") as f:
        n = timeline.write(f)
    text = out.read_text()
    assert text.endswith("# EOF\n")
    assert (
        n
        == len(timeline.series) * len(timeline.times)
        == text.count("\n") - 1 - 2 * len(timeline.families_meta)
    )
