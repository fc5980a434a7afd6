"""The Grafana dashboard: every panel query, with the dashboard's variables substituted, runs
against a real Prometheus scraping a real daemon fed with sample_logs/, and returns data.

The daemon follows copies of the three sample logs, written in four parts while Prometheus
scrapes it every second (so rates are not flat), plus a line no parser understands (so the
unparsed panel has a reason to show); its [queue] samples a real private Postfix holding mail
(the fixture of tests/test_queue.py). The variables are resolved as Grafana does: `instance`
and `log` from their label_values() queries through the HTTP API, "All" as a regex of every
value, $__rate_interval and $__range as Grafana would pass them for a short range.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.alertmanager_fixture import free_port
from tests.daemon_fixture import REPO, start_daemon, wait_for, write_config
from tests.test_prometheus_scrape import Prom
from tests.test_queue import _need, _submit, open_dir, postfix  # noqa: F401 - fixtures

DASHBOARD = REPO / "config" / "grafana" / "logscan.json"
SAMPLES = REPO / "sample_logs"

REASONS_PANEL = "551 by reason"

REQUIRED_PANELS = {
    "Deliveries by status",
    "Bounce ratio",
    "SMTP replies by code",
    REASONS_PANEL,
    "Top failing domains",
    "Rejections by stage",
    "Unparsed lines",
    "Log lag",
    "Alert state",
    "Queue depth",
}
# Series without a log label: per domain, per alert, per queue.
NOT_PER_LOG = ("Top failing domains", "Alert state", "Queue depth")
# What Grafana substitutes for its built-in interval variables on a short dashboard range.
BUILTINS = {"$__rate_interval": "1m", "$__range": "5m", "$__interval": "15s"}


def _dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def _variables(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in doc["templating"]["list"]}


def test_dashboard_is_importable_json_with_a_datasource_variable_and_every_panel() -> None:
    doc = _dashboard()
    assert doc["uid"]
    assert doc["title"]
    assert isinstance(doc["schemaVersion"], int)
    variables = _variables(doc)
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("instance", "log"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == "${datasource}"
    titles = [p["title"] for p in doc["panels"]]
    assert set(titles) == REQUIRED_PANELS
    assert len(titles) == len(set(titles))
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for p in doc["panels"]:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            assert t["expr"].strip()
            if "log" not in t["expr"] and p["title"] not in NOT_PER_LOG:
                pytest.fail(f"{p['title']}: query ignores the log variable")
            assert 'instance=~"$instance"' in t["expr"], f"{p['title']}: query ignores the instance variable"


def _label_values(prom: Prom, query: str) -> list[str]:
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
    assert m, query
    resp = prom.pool.request(
        "GET", f"{prom.url}/api/v1/label/{m.group(2)}/values", fields={"match[]": m.group(1)}
    )
    body = json.loads(resp.data)
    assert body["status"] == "success", body
    values: list[str] = body["data"]
    return values


def _substitute(expr: str, values: dict[str, str]) -> str:
    for name, value in {**BUILTINS, **{f"${k}": v for k, v in values.items()}}.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def _feed(dest: Path, source: Path, parts: int, part: int) -> int:
    """Append part `part` of `parts` of `source`'s lines to `dest`; returns the lines written."""
    lines = source.read_bytes().splitlines(keepends=True)
    size = math.ceil(len(lines) / parts)
    chunk = lines[part * size : (part + 1) * size]
    with dest.open("ab") as f:
        f.writelines(chunk)
    return len(chunk)


@pytest.mark.slow
def test_every_panel_query_returns_data_from_a_real_prometheus(postfix: Path, tmp_path: Path) -> None:  # noqa: F811
    for subject in ("defer 1", "defer 2"):
        _submit(postfix, subject)
    sources = {
        "postfix": SAMPLES / "postfix" / "mail.log",
        "exim": SAMPLES / "exim" / "mainlog",
        "mailenable": SAMPLES / "mailenable" / "SMTP-Activity-261128.log",
    }
    logs = {name: tmp_path / f"{name}.log" for name in sources}
    for path in logs.values():
        path.touch()
    port = free_port()
    command = [_need("postqueue", "postfix"), "-c", str(postfix), "-j"]
    extra = f'[queue]\nmta = "postfix"\ninterval = 1\ncommand = {json.dumps(command)}\n'
    cfg = write_config(
        tmp_path,
        [
            {"name": name, "path": str(path), "start_at": "beginning", "format": name}
            for name, path in logs.items()
        ],
        port=port,
        extra=extra,
    )
    d = start_daemon(cfg, port)
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    prom = Prom(
        prom_dir,
        f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: logscan
    static_configs:
      - targets: ['127.0.0.1:{port}']
""",
    )
    try:
        prom.wait_value('up{job="logscan"}', 1.0, timeout=30)
        fed_from = time.time()
        total = 0
        parts = 4
        for part in range(parts):
            for name, path in logs.items():
                total += _feed(path, sources[name], parts, part)
            if part == 0:  # early, so its series has samples enough for rate()
                with logs["postfix"].open("a") as f:
                    f.write("not a log line at all\n")
                total += 1
            time.sleep(1.5)
        prom.wait_value("sum(logscan_lines_total)", float(total), timeout=30)
        prom.wait_value('sum(logscan_queue_messages{queue="deferred"})', 2.0, timeout=30)

        doc = _dashboard()
        variables = _variables(doc)
        values: dict[str, str] = {}
        for name in ("instance", "log"):  # in dashboard order: log's query uses $instance
            query = _substitute(variables[name]["query"]["query"], values)
            found = _label_values(prom, query)
            assert found, f"variable {name}: {query} found nothing"
            # Grafana's "All" of a multi-value variable: a regex of every value, its backslashes
            # doubled for the PromQL string literal it lands in.
            values[name] = "(" + "|".join(re.escape(v).replace("\\", "\\\\") for v in found) + ")"
        assert set(_label_values(prom, _substitute(variables["log"]["query"]["query"], values))) == set(logs)

        empty = []
        for panel in doc["panels"]:
            for target in panel["targets"]:
                expr = _substitute(target["expr"], values)
                result = prom.query(expr)  # asserts status == success: the query parses
                finite = [v for v in result.values() if not math.isnan(v)]
                if panel["title"] == "Unparsed lines":  # the line fed above, by its reason
                    assert any(("reason", "no-timestamp") in k for k in result), result
                if not finite:
                    empty.append((panel["title"], expr))
        assert empty == [], f"panels without data: {empty}"
        wait_for(lambda: d.value("logscan_queue_messages", queue="deferred") == 2, what="queue on /metrics")
        picture = os.environ.get("LOGSCAN_RENDER_DASHBOARD")
        if picture:  # re-draws docs/dashboard.svg from this stack (scripts/render_dashboard.py)
            subprocess.run(
                [
                    sys.executable,
                    str(REPO / "scripts" / "render_dashboard.py"),
                    "--prometheus",
                    prom.url,
                    "--out",
                    picture,
                    "--minutes",
                    str((time.time() - fed_from + 5) / 60),
                    "--rate-interval",
                    "5s",
                ],
                check=True,
                timeout=60,
            )
    finally:
        prom.close()
        d.stop()
