"""End to end: the real daemon on the bundled sample logs, and its alerts in a real Alertmanager."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.alertmanager_fixture import WebhookSink, free_port, start_alertmanager
from tests.daemon_fixture import Daemon, start_daemon, wait_for, write_config
from tests.test_daemon import postfix_line

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_logs"
LOGS = {  # log name -> (sample file, mta)
    "postfix": ("postfix/mail.log", "postfix"),
    "exim": ("exim/mainlog", "exim"),
    "mailenable": ("mailenable/SMTP-Activity-261128.log", "mailenable"),
}


def _nonzero(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v}


def _from_metrics(d: Daemon, log: str) -> dict[str, Any]:
    """The scan --json shape, rebuilt from /metrics of one log."""
    replies: dict[str, dict[str, int]] = defaultdict(dict)
    enhanced: dict[str, dict[str, int]] = defaultdict(dict)
    deliveries: dict[str, int] = {}
    rejections: dict[str, int] = {}
    lines = unparsed = 0
    for (name, labels), value in d.scrape().items():
        lb = dict(labels)
        if lb.get("log") != log or not value:
            continue
        n = int(value)
        if name == "logscan_smtp_replies_total":
            direction = lb["direction"]
            replies[direction][lb["code"]] = replies[direction].get(lb["code"], 0) + n
            if lb["enhanced"]:
                enhanced[direction][lb["enhanced"]] = enhanced[direction].get(lb["enhanced"], 0) + n
        elif name == "logscan_deliveries_total":
            deliveries[lb["status"]] = n
        elif name == "logscan_rejections_total":
            rejections[lb["code"]] = rejections.get(lb["code"], 0) + n
        elif name == "logscan_lines_total":
            lines += n
            if lb["result"] == "unparsed":
                unparsed += n
    return {
        "lines": lines,
        "unparsed": unparsed,
        "replies": {k: v for k, v in replies.items() if v},
        "enhanced": {k: v for k, v in enhanced.items() if v},
        "deliveries": deliveries,
        "rejections": rejections,
    }


def _expected(log: str) -> dict[str, Any]:
    sample, _ = LOGS[log]
    doc = json.loads((SAMPLES / sample).parent.joinpath("expected.json").read_text())
    return {
        "lines": doc["lines"],
        "unparsed": doc["unparsed"],
        "replies": {k: _nonzero(v) for k, v in doc["replies"].items() if _nonzero(v)},
        "enhanced": {k: _nonzero(v) for k, v in doc["enhanced"].items() if _nonzero(v)},
        "deliveries": _nonzero(doc["deliveries"]),
        "rejections": _nonzero(doc["rejections"]),
    }


def test_daemon_on_sample_logs_exports_the_expected_counts(tmp_path: Path) -> None:
    logs = []
    for name, (sample, _mta) in LOGS.items():
        dst = tmp_path / "logs" / name / Path(sample).name
        dst.parent.mkdir(parents=True)
        shutil.copyfile(SAMPLES / sample, dst)
        path = dst if name != "mailenable" else dst.parent / "SMTP-Activity-*.log"
        logs.append({"name": name, "path": str(path), "start_at": "beginning", "format": "auto"})
    port = free_port()
    d = start_daemon(write_config(tmp_path, logs, port=port), port)
    try:
        for name in LOGS:
            want = _expected(name)

            def read(n: str = name, w: dict[str, Any] = want) -> bool:
                return bool(_from_metrics(d, n)["lines"] == w["lines"])

            wait_for(read, what=f"{name} read")
            assert _from_metrics(d, name) == want, name
        for name, (_sample, mta) in LOGS.items():
            assert d.value("logscan_log_up", log=name) == 1
            assert d.value("logscan_build_info") == 1
            # the detected format is the mta label
            assert d.value("logscan_deliveries_total", log=name, mta=mta) > 0
    finally:
        d.stop()


def _alert_config(receiver_url: str, *, window: int = 60, for_s: int = 0) -> str:
    return f"""
[alerts]
default_rules = false
[[alerts.rules]]
name = "smtp_551_outbound_spike"
code = "551"
direction = "outbound"
window = {window}
min_count = 10
for_s = {for_s}
[[alerts.receivers]]
name = "am"
kind = "alertmanager"
url = "{receiver_url}"
"""


def _write(log: Path, lines: list[str]) -> None:
    with log.open("a") as f:
        f.write("".join(line + "\n" for line in lines))


def _seq_at(t: float) -> int:
    """The postfix_line() sequence number whose timestamp is `t`."""
    from tests import test_daemon  # noqa: PLC0415

    return round((t - test_daemon.T0) / 0.01)


def _follow_alerting_to(tmp_path: Path, log: Path, am_url: str) -> Daemon:
    """The real daemon following `log` from its start, with the 551 rule sending to `am_url`."""
    port = free_port()
    cfg = write_config(
        tmp_path,
        [{"name": "mail", "path": str(log), "start_at": "beginning"}],
        port=port,
        extra=_alert_config(am_url),
    )
    return start_daemon(cfg, port)


class Traffic(threading.Thread):
    """Steady live deliveries, one line a second with the current time, as a mail server writes."""

    def __init__(self, log: Path) -> None:
        super().__init__(daemon=True)
        self.log = log
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(1.0):
            _write(self.log, [postfix_line(_seq_at(time.time()), "sent")])


@pytest.mark.slow
def test_551_burst_fires_in_alertmanager_then_resolves(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    now = time.time()
    # Ten minutes of history (one delivery every 5 s), so the rule has a baseline.
    _write(log, [postfix_line(_seq_at(t), "sent") for t in range(int(now) - 600, int(now), 5)])
    traffic = Traffic(log)
    with WebhookSink() as sink, start_alertmanager(tmp_path / "am", sink.url) as am:
        d = _follow_alerting_to(tmp_path, log, am.url)
        traffic.start()
        try:
            assert not am.find(alertname="smtp_551_outbound_spike")
            # Rules evaluate at whole minutes of log time: put the whole burst in seconds 45-53
            # of one minute, so it neither waits long for the boundary nor straddles it (a burst
            # split over two minutes stays in the window a minute longer and resolves late).
            while not 45 <= time.time() % 60 < 48:
                time.sleep(0.2)
            for _ in range(8):  # the burst: 40 bounces with 551 in 4 seconds
                _write(log, [postfix_line(_seq_at(time.time()), "bounced") for _ in range(5)])
                time.sleep(0.5)
            alerts = wait_for(
                lambda: am.find(alertname="smtp_551_outbound_spike"), timeout=60, what="alert in Alertmanager"
            )
            labels = alerts[0]["labels"]
            assert labels["severity"] == "page"
            assert labels["mta"] == "postfix"
            assert labels["log"] == "mail"
            assert labels["code"] == "551"
            assert labels["instance"] == "test-mx"
            assert "551" in alerts[0]["annotations"]["summary"]
            assert d.value("logscan_alert_firing", alert="smtp_551_outbound_spike") == 1
            # The burst is over; steady traffic goes on: the alert resolves once the window passes.
            wait_for(
                lambda: not am.find(alertname="smtp_551_outbound_spike"), timeout=180, what="alert resolved"
            )
            assert d.value("logscan_alert_firing", alert="smtp_551_outbound_spike") == 0
            sent = d.value(
                "logscan_alert_notifications_total", alert="smtp_551_outbound_spike", result="success"
            )
            assert sent >= 2
            # Alertmanager tells its own receivers too (its webhook here), resolved included.
            def states() -> list[str]:
                return [str(n.get("status")) for n in sink.received() if isinstance(n, dict)]

            wait_for(lambda: "resolved" in states(), timeout=30, what="Alertmanager's resolved notification")
            assert "firing" in states()
        finally:
            traffic.halt.set()
            d.stop()
        events = [json.loads(x) for x in d.logs().splitlines() if x.startswith("{")]
        kinds = [e["event"] for e in events if e["event"].startswith("alert_")]
        assert kinds[-1] == "alert_resolved"
        assert "alert_firing" in kinds


def test_slow_trickle_of_551_never_alerts(tmp_path: Path) -> None:
    now = time.time()
    log = tmp_path / "mail.log"
    lines = []
    for t in range(int(now) - 1800, int(now), 5):
        # one 551 a minute among steady deliveries: 2 per window, far below min_count
        lines.append(postfix_line(_seq_at(t), "bounced" if t % 60 < 5 else "sent"))
    _write(log, lines)
    with WebhookSink() as sink, start_alertmanager(tmp_path / "am", sink.url) as am:
        d = _follow_alerting_to(tmp_path, log, am.url)
        try:
            wait_for(
                lambda: d.value("logscan_lines_total", log="mail") == len(lines), what="all lines read"
            )
            assert d.value("logscan_smtp_replies_total", log="mail", code="551") >= 25
            time.sleep(3)
            assert am.alerts() == []
            assert d.value("logscan_alert_firing", alert="smtp_551_outbound_spike") == 0
        finally:
            d.stop()
        assert "alert_pending" not in d.logs()
        assert sink.received() == []
