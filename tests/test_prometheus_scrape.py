"""A real Prometheus scrapes MetricsServer; promtool checks and unit-tests the shipped rule files.

Needs the Debian package `prometheus` (/usr/bin/prometheus, /usr/bin/promtool). A missing
binary FAILS these tests: CI installs it, and a skipped end-to-end test proves nothing.
"""

# ruff: noqa: E501 - promtool test input: one series selector per line reads best unwrapped

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import urllib3

from logscan.core.aggregate import Aggregate
from logscan.events import Event
from logscan.outputs.http import MetricsServer, load_web_config
from logscan.outputs.metrics import Exposition, LogStatus, make_registry
from tests.alertmanager_fixture import free_port
from tests.test_web import make_ca, make_leaf

PROM_DIR = Path(__file__).resolve().parent.parent / "config" / "prometheus"
RULE_FILES = sorted([*PROM_DIR.glob("*-recording.yml"), *PROM_DIR.glob("*-alerts.yml")])


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found on PATH: install the Debian package 'prometheus' (apt-get install prometheus)"
        )
    return path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------- promtool


def test_rule_files_are_found() -> None:
    assert PROM_DIR / "logscan-recording.yml" in RULE_FILES


@pytest.mark.parametrize("rules", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(rules: Path) -> None:
    out = run(binary("promtool"), "check", "rules", str(rules))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_check_scrape_example_and_its_file_sd() -> None:
    promtool = binary("promtool")
    out = run(promtool, "check", "config", "scrape-example.yml", cwd=PROM_DIR)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAILED" not in out.stdout + out.stderr
    sd = run(
        promtool, "check", "service-discovery", "--timeout=5s", "scrape-example.yml", "logscan", cwd=PROM_DIR
    )
    assert sd.returncode == 0, sd.stderr
    targets = json.loads(sd.stdout[: sd.stdout.rindex("]") + 1])
    instances = {t["labels"]["instance"] for t in targets}
    assert "mx1.example.net" in instances
    assert all(":" not in i for i in instances), "relabelling drops the port from instance"
    assert all(t["labels"]["__address__"].endswith(":9551") for t in targets)


RULES_TEST = """
rule_files:
  - {rules}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # mx1: 3 sent + 1 bounced per minute -> ratio 0.25; deferrals do not count
      - series: 'logscan_deliveries_total{{job="logscan",instance="mx1",mta="postfix",log="main",status="sent"}}'
        values: '0+180x10'
      - series: 'logscan_deliveries_total{{job="logscan",instance="mx1",mta="postfix",log="main",status="bounced"}}'
        values: '0+60x10'
      - series: 'logscan_deliveries_total{{job="logscan",instance="mx1",mta="postfix",log="main",status="deferred"}}'
        values: '0+600x10'
      - series: 'logscan_deliveries_total{{job="logscan",instance="mx1",mta="postfix",log="main",status="expired"}}'
        values: '0+0x10'
      # mx2: 1 sent per minute, nothing bounced -> ratio 0; fleet: 1 / 5 = 0.2
      - series: 'logscan_deliveries_total{{job="logscan",instance="mx2",mta="postfix",log="main",status="sent"}}'
        values: '0+60x10'
      - series: 'logscan_deliveries_total{{job="logscan",instance="mx2",mta="postfix",log="main",status="bounced"}}'
        values: '0+0x10'
      # mx3: idle -> no ratio sample at all (not NaN)
      - series: 'logscan_deliveries_total{{job="logscan",instance="mx3",mta="exim",log="main",status="sent"}}'
        values: '0+0x10'
      # 551 replies: 2/s outbound on two logs of mx1, 1/s inbound on mx2
      - series: 'logscan_smtp_replies_total{{job="logscan",instance="mx1",mta="postfix",log="a",direction="outbound",code="551",enhanced="5.1.1"}}'
        values: '0+60x10'
      - series: 'logscan_smtp_replies_total{{job="logscan",instance="mx1",mta="postfix",log="b",direction="outbound",code="551",enhanced=""}}'
        values: '0+60x10'
      - series: 'logscan_smtp_replies_total{{job="logscan",instance="mx2",mta="postfix",log="a",direction="inbound",code="551",enhanced=""}}'
        values: '0+60x10'
      - series: 'logscan_smtp_replies_total{{job="logscan",instance="mx2",mta="postfix",log="a",direction="inbound",code="250",enhanced="2.0.0"}}'
        values: '0+120x10'
      # 551 reasons on mx2 (issue 14): 3/s auth_required and 1/s sender_mismatch over two logs
      - series: 'logscan_smtp_reply_reasons_total{{job="logscan",instance="mx2",mta="mailenable",log="a",direction="inbound",code="551",reason="auth_required"}}'
        values: '0+120x10'
      - series: 'logscan_smtp_reply_reasons_total{{job="logscan",instance="mx2",mta="mailenable",log="b",direction="inbound",code="551",reason="auth_required"}}'
        values: '0+60x10'
      - series: 'logscan_smtp_reply_reasons_total{{job="logscan",instance="mx2",mta="mailenable",log="a",direction="inbound",code="551",reason="sender_mismatch"}}'
        values: '0+60x10'
      - series: 'logscan_smtp_reply_reasons_total{{job="logscan",instance="mx2",mta="mailenable",log="a",direction="inbound",code="550",reason="unknown_recipient"}}'
        values: '0+60x10'
    promql_expr_test:
      - expr: logscan:smtp_replies_551_reason:ratio5m
        eval_time: 10m
        exp_samples:
          - labels: 'logscan:smtp_replies_551_reason:ratio5m{{job="logscan",instance="mx2",mta="mailenable",direction="inbound",reason="auth_required"}}'
            value: 0.75
          - labels: 'logscan:smtp_replies_551_reason:ratio5m{{job="logscan",instance="mx2",mta="mailenable",direction="inbound",reason="sender_mismatch"}}'
            value: 0.25
      - expr: logscan:smtp_reply_reasons:rate5m{{reason="unknown_recipient"}}
        eval_time: 10m
        exp_samples:
          - labels: 'logscan:smtp_reply_reasons:rate5m{{job="logscan",instance="mx2",mta="mailenable",direction="inbound",reason="unknown_recipient"}}'
            value: 1
      - expr: logscan:bounce_ratio:rate5m
        eval_time: 10m
        exp_samples:
          - labels: 'logscan:bounce_ratio:rate5m{{job="logscan",instance="mx1",mta="postfix"}}'
            value: 0.25
          - labels: 'logscan:bounce_ratio:rate5m{{job="logscan",instance="mx2",mta="postfix"}}'
            value: 0
      - expr: logscan:bounce_ratio_fleet:rate5m
        eval_time: 10m
        exp_samples:
          - labels: 'logscan:bounce_ratio_fleet:rate5m{{mta="postfix"}}'
            value: 0.2
      - expr: logscan:smtp_replies_551:rate5m
        eval_time: 10m
        exp_samples:
          - labels: 'logscan:smtp_replies_551:rate5m{{job="logscan",instance="mx1",mta="postfix",direction="outbound"}}'
            value: 2
          - labels: 'logscan:smtp_replies_551:rate5m{{job="logscan",instance="mx2",mta="postfix",direction="inbound"}}'
            value: 1
      - expr: logscan:smtp_replies_551_fleet:rate5m
        eval_time: 10m
        exp_samples:
          - labels: 'logscan:smtp_replies_551_fleet:rate5m{{direction="outbound"}}'
            value: 2
          - labels: 'logscan:smtp_replies_551_fleet:rate5m{{direction="inbound"}}'
            value: 1
      - expr: logscan:smtp_replies:rate5m{{instance="mx2"}}
        eval_time: 10m
        exp_samples:
          - labels: 'logscan:smtp_replies:rate5m{{job="logscan",instance="mx2",mta="postfix",log="a",direction="inbound",code="551"}}'
            value: 1
          - labels: 'logscan:smtp_replies:rate5m{{job="logscan",instance="mx2",mta="postfix",log="a",direction="inbound",code="250"}}'
            value: 2
"""


def test_recording_rules_compute_what_they_promise(tmp_path: Path) -> None:
    test_file = tmp_path / "recording.test.yml"
    test_file.write_text(RULES_TEST.format(rules=PROM_DIR / "logscan-recording.yml"))
    out = run(binary("promtool"), "test", "rules", str(test_file))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


# ---------------------------------------------------------------- a real Prometheus


class Prom:
    """A Prometheus server on loopback with a temp config and TSDB."""

    def __init__(self, tmp: Path, config: str) -> None:
        binary_path = binary("prometheus")
        (tmp / "prometheus.yml").write_text(config)
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (tmp / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [
                binary_path,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(5))
        self._wait(lambda: self._ok("/-/ready"), 30, "Prometheus did not become ready")

    def _ok(self, path: str) -> bool:
        try:
            return self.pool.request("GET", self.url + path).status == 200
        except urllib3.exceptions.HTTPError:
            return False

    def _wait(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited with {self.proc.returncode}; see {self.log.name}")
            if time.monotonic() > deadline:
                pytest.fail(what)
            time.sleep(0.2)

    def query(self, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
        resp = self.pool.request("GET", self.url + "/api/v1/query", fields={"query": promql})
        body = json.loads(resp.data)
        assert body["status"] == "success", body
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in body["data"]["result"]}

    def wait_value(self, promql: str, expected: float, timeout: float = 15) -> None:
        seen: list[dict[tuple[tuple[str, str], ...], float]] = []

        def cond() -> bool:
            seen.append(self.query(promql))
            return list(seen[-1].values()) == [expected]

        self._wait(cond, timeout, f"{promql} never became {expected}; last: {seen[-1] if seen else None}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.mark.slow
def test_real_prometheus_scrapes_plain_and_tls_basic_auth_and_evaluates_rules(tmp_path: Path) -> None:
    agg = Aggregate()
    lock = threading.Lock()

    def source() -> Exposition:
        with lock:
            snap = agg.snapshot(time.time())
        return Exposition(snap, logs=(LogStatus("mx1", "postfix", True, 1000, 0, 0),))

    def add(n: int, **kw: object) -> None:
        with lock:
            for _ in range(n):
                agg.add(Event("postfix", "mx1", time.time(), **kw))  # type: ignore[arg-type]

    # TLS + client certificate + basic auth, as a locked-down production server would run
    pki = tmp_path / "pki"
    pki.mkdir()
    make_ca(pki, "ca")
    make_leaf(pki, "server", "ca", "IP:127.0.0.1", "serverAuth")
    make_leaf(pki, "client", "ca", "DNS:prometheus.example", "clientAuth")
    (pki / "web.yml").write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
        f"basic_auth_users:\n  prom: '{bcrypt.hashpw(b'pw', bcrypt.gensalt(rounds=10)).decode()}'\n"
    )
    registry = make_registry(source)
    plain = MetricsServer("127.0.0.1:0", registry, lambda: (True, ""))
    secure = MetricsServer("127.0.0.1:0", registry, lambda: (True, ""), load_web_config(pki / "web.yml"))
    with plain, secure:
        config = f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ['{PROM_DIR / "logscan-recording.yml"}']
scrape_configs:
  - job_name: logscan
    static_configs: [{{targets: ['127.0.0.1:{plain.address[1]}']}}]
  - job_name: logscan-secure
    scheme: https
    tls_config: {{ca_file: '{pki / "ca.crt"}', cert_file: '{pki / "client.crt"}', key_file: '{pki / "client.key"}'}}
    basic_auth: {{username: prom, password: pw}}
    static_configs: [{{targets: ['127.0.0.1:{secure.address[1]}']}}]
"""
        data = tmp_path / "prom"
        data.mkdir()
        prom = Prom(data, config)
        try:
            prom.wait_value('up{job="logscan"}', 1)
            prom.wait_value('up{job="logscan-secure"}', 1)
            # zero-filled from the first scrape: the 551 series exists before any 551
            sel = 'logscan_smtp_replies_total{job="%s",code="551",direction="outbound",enhanced=""}'
            prom.wait_value(sel % "logscan", 0)
            add(5, direction="outbound", code="551", status="bounced", recipient_domain="a.example")
            add(15, direction="outbound", code="250", status="sent", recipient_domain="b.example")
            prom.wait_value(sel % "logscan", 5)
            time.sleep(2)
            add(20, direction="outbound", code="551", status="bounced", recipient_domain="a.example")
            add(60, direction="outbound", code="250", status="sent", recipient_domain="b.example")
            prom.wait_value(sel % "logscan", 25)
            prom.wait_value(sel % "logscan-secure", 25)
            # bounced / (sent + bounced + expired) = 25 / 100, from the daemon's own window ...
            prom.wait_value('logscan_bounce_ratio{job="logscan",mta="postfix",window="5m"}', 0.25)
            # ... and from the counters by the recording rule (both counters exist from 0, so
            # their rates extrapolate alike and the ratio is exact)
            prom.wait_value('round(logscan:bounce_ratio:rate5m{job="logscan",mta="postfix"}, 0.0001)', 0.25)
            # the whole burst is in increase(): 25 replies with code 551 (give or take extrapolation)
            inc = prom.query(f"increase({sel % 'logscan'}[1m])")
            assert len(inc) == 1
            assert 25 <= next(iter(inc.values())) <= 25 * 1.5, inc
            rate551 = prom.query('logscan:smtp_replies_551:rate5m{job="logscan",direction="outbound"}')
            assert len(rate551) == 1
            assert next(iter(rate551.values())) > 0
            # every series Prometheus holds for the target carries only contract labels
            names = prom.query('count by (__name__) ({job="logscan",__name__=~"logscan_.*"})')
            got = {dict(k)["__name__"] for k in names}
            assert {
                "logscan_smtp_replies_total",
                "logscan_delivery_delay_seconds_bucket",
                "logscan_build_info",
            } <= got
            assert not {n for n in got if n.endswith("_created")}
        finally:
            prom.close()
