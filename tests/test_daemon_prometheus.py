"""A real Prometheus scrapes the real daemon; PromQL over the scraped data gives the 551 rate."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.alertmanager_fixture import free_port
from tests.daemon_fixture import start_daemon, wait_for, write_config
from tests.test_daemon import postfix_line
from tests.test_daemon_e2e import _seq_at, _write
from tests.test_prometheus_scrape import Prom

RULES = Path(__file__).resolve().parent.parent / "config" / "prometheus" / "logscan-recording.yml"


@pytest.mark.slow
def test_prometheus_scrapes_the_daemon_and_computes_the_551_rate(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    port = free_port()
    logs = [{"name": "mail", "path": str(log), "start_at": "beginning", "format": "postfix"}]
    cfg = write_config(tmp_path, logs, port=port)
    d = start_daemon(cfg, port)
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    prom = Prom(
        prom_dir,
        f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ['{RULES}']
scrape_configs:
  - job_name: logscan
    static_configs:
      - targets: ['127.0.0.1:{port}']
""",
    )
    try:
        prom.wait_value('up{job="logscan"}', 1.0, timeout=30)
        prom.wait_value('sum(logscan_smtp_replies_total{code="551"})', 0.0)  # present at 0 from the start
        # 60 bounces with 551, two a second for 30 s, among steady deliveries.
        for i in range(30):
            now = time.time()
            _write(
                log,
                [postfix_line(_seq_at(now), "bounced"), postfix_line(_seq_at(now) + 1, "bounced")]
                + [postfix_line(_seq_at(now) + 2 + k, "sent") for k in range(3)],
            )
            time.sleep(1)
            if i == 0:
                wait_for(lambda: d.value("logscan_smtp_replies_total", code="551") > 0, what="first count")
        prom.wait_value('sum(logscan_smtp_replies_total{code="551", direction="outbound"})', 60.0)
        rate = sum(prom.query('sum(rate(logscan_smtp_replies_total{code="551"}[20s]))').values())
        assert 1.2 <= rate <= 3.0, rate  # 2 per second, give or take scrape alignment
        delivered = prom.query('sum(logscan_deliveries_total{status="sent"})')
        assert list(delivered.values()) == [90.0]
    finally:
        prom.close()
        d.stop()
