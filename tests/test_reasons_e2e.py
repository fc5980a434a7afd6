"""Why 551s happen, end to end: real lines of Postfix, Exim and MailEnable in files → the real
`logscan run` → /metrics over HTTP (reasons), and → a real Alertmanager (the diagnosis: dominant
reason, share, top offenders, fix, runbook)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from logscan.app.daemon import Daemon
from logscan.events import Event
from tests.alertmanager_fixture import (
    RunningAlertmanager,
    WebhookSink,
    alertmanager,  # noqa: F401  (pytest fixture)
    free_port,
    wait_for,
    webhook_sink,  # noqa: F401  (pytest fixture)
)
from tests.daemon_fixture import start_daemon, write_config

pytestmark = pytest.mark.slow

ALERT = "smtp_551_inbound_spike"
MSG = "9E107D9D372BB6826BD81D3542A419D6"
AUTH_REQUIRED = (
    "551 This mail server requires authentication before sending mail from a locally hosted domain. "
    "Please reconfigure your mail client to authenticate before sending mail."
)


def mailenable_row(t: float, ip: str, sender: str, reply: str) -> str:
    ts = datetime.fromtimestamp(t, UTC).strftime("%m/%d/%y %H:%M:%S")
    return f"{ts}\tSMTP-IN\t{MSG}.MAI\t1368\t{ip}\tMAIL\tMAIL FROM:<{sender}>\t{reply}\t40\t120\t\t\r"


def postfix_lines(t: float) -> list[str]:
    ts = datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")
    head = f"{ts} mx1 postfix/smtpd[2001]: NOQUEUE: reject: RCPT from unknown[198.51.100.17]: "
    return [
        head + "554 5.7.1 <x@partner.example.org>: Relay access denied; from=<spam@bulk.example> "
        "to=<x@partner.example.org> proto=ESMTP helo=<pc>",
        head + "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in local "
        "recipient table; from=<a@sender.example> to=<nobody@example.com> proto=ESMTP helo=<pc>",
        f"{ts} mx1 postfix/smtp[2002]: 4F1A2B3C4D: to=<gone@remote.example>, relay=mx.remote.example"
        "[192.0.2.7]:25, delay=0.4, delays=0.1/0/0.1/0.2, dsn=5.1.1, status=bounced (host mx.remote.example"
        "[192.0.2.7] said: 551 5.1.1 <gone@remote.example>: User not local; please try "
        "<gone@new.remote.example> (in reply to RCPT TO command))",
    ]


def exim_lines(t: float) -> list[str]:
    ts = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return [
        f"{ts} H=(laptop) [192.0.2.44] F=<payroll@example.com> rejected RCPT <boss@example.com>: "
        "551 5.7.1 Sender address is not valid for your login",
        f"{ts} login authenticator failed for (ylmf-pc) [203.0.113.45]: 535 Incorrect authentication data",
    ]


def test_reasons_reach_metrics_and_the_alert_says_why(
    tmp_path: Path,
    alertmanager: RunningAlertmanager,  # noqa: F811
    webhook_sink: WebhookSink,  # noqa: F811
) -> None:
    now = time.time()
    minute = (now // 60) * 60
    # MailEnable: ten quiet minutes of accepted senders, then in the last minute a burst of 40
    # refused ones: 30 clients sending as a local domain without AUTH (24 as example.com,
    # 6 as example.org), 10 authenticated ones sending as someone else.
    rows = [
        mailenable_row(
            minute - 600 + i * 20, "192.0.2.200", f"u{i}@partner.example", "250 Requested mail action okay"
        )
        for i in range(30)
    ]
    burst = minute - 60
    for i in range(40):
        t = burst + 5 + i
        if i < 30:
            sender = "ceo@example.com" if i < 24 else "billing@example.org"
            rows.append(mailenable_row(t, f"203.0.113.{i % 3 + 1}", sender, AUTH_REQUIRED))
        else:
            rows.append(
                mailenable_row(
                    t, "192.0.2.99", "boss@example.com", "551 Sender address is not valid for your login"
                )
            )
    me = tmp_path / "SMTP-Activity-261128.log"
    me.write_text("\n".join(rows) + "\n", newline="")
    pf = tmp_path / "mail.log"
    pf.write_text("\n".join(postfix_lines(minute - 120)) + "\n")
    ex = tmp_path / "mainlog"
    ex.write_text("\n".join(exim_lines(minute - 120)) + "\n")

    port = free_port()
    extra = f"""
[alerts]
default_rules = false
[[alerts.rules]]
name = "{ALERT}"
code = "551"
direction = "inbound"
window = 300
min_count = 10
for_s = 0
[[alerts.receivers]]
name = "am"
kind = "alertmanager"
url = "{alertmanager.url}"
[[alerts.receivers]]
name = "hook"
kind = "webhook"
url = "{webhook_sink.url}/hook"
"""
    logs = [
        {"name": "mailenable", "path": str(me), "format": "mailenable", "start_at": "beginning"},
        {"name": "postfix", "path": str(pf), "format": "postfix", "start_at": "beginning"},
        {"name": "exim", "path": str(ex), "format": "exim", "start_at": "beginning"},
    ]
    d = start_daemon(write_config(tmp_path, logs, port=port, extra=extra), port)
    try:

        def reasons() -> dict[tuple[str, str, str, str], float]:
            return {
                (lb["log"], lb["direction"], lb["code"], lb["reason"]): v
                for (name, labels), v in d.scrape().items()
                if name == "logscan_smtp_reply_reasons_total"
                for lb in [dict(labels)]
                if v
            }

        got = wait_for(lambda: len(reasons()) >= 7 and reasons(), 30, "the reasons on /metrics")
        assert got == {
            ("mailenable", "inbound", "551", "auth_required"): 30,
            ("mailenable", "inbound", "551", "sender_mismatch"): 10,
            ("postfix", "inbound", "554", "relay_denied"): 1,
            ("postfix", "inbound", "550", "unknown_recipient"): 1,
            ("postfix", "outbound", "551", "relay_denied"): 1,
            ("exim", "inbound", "551", "sender_mismatch"): 1,
            ("exim", "inbound", "535", "auth_failed"): 1,
        }

        # The alert in Alertmanager says what the 551s are, who sends them, and what fixes them.
        found = wait_for(lambda: alertmanager.find(alertname=ALERT), 40, "the firing alert in Alertmanager")
        ann = found[0]["annotations"]
        assert found[0]["labels"]["log"] == "mailenable"
        assert ann["reason"] == "auth_required"
        assert ann["diagnosis"].startswith("75% auth_required: clients send as a local domain")
        assert "My server requires authentication" in ann["diagnosis"]
        assert "top sender domains example.com (24), example.org (6)" in ann["diagnosis"]
        assert "top client ips 203.0.113.1 (10), 203.0.113.2 (10), 203.0.113.3 (10)" in ann["diagnosis"]
        assert ann["runbook_url"] == "docs/runbooks/auth_required.md"
        assert "ceo" not in str(found[0])  # local-parts never leave the daemon

        # The generic webhook gets the same diagnosis as structured fields.
        hook = wait_for(
            lambda: [b for b in webhook_sink.received("/hook") if b["alerts"][0]["status"] == "firing"],
            20,
            "the webhook's firing alert",
        )
        diag = hook[0]["alerts"][0]["diagnosis"]
        assert (diag["reason"], diag["count"], diag["total"]) == ("auth_required", 30, 40)
        assert diag["reasons"] == [
            {"reason": "auth_required", "count": 30},
            {"reason": "sender_mismatch", "count": 10},
        ]
        assert {"kind": "sender_domain", "value": "example.com", "count": 24} in diag["offenders"]

        # /diagnosis over real HTTP, and the landing page naming the dominant reason.
        status, body = d.get("/diagnosis")
        assert status == 200
        dominant = {(r["code"], r["reasons"][0]["reason"]) for r in json.loads(body)["codes"]}
        assert ("551", "auth_required") in dominant
        status, page = d.get("/")
        assert status == 200
        assert "Why refusals happen (last hour)" in page
        assert "auth_required" in page
        assert "ceo" not in body + page
    finally:
        d.stop()


def test_the_daemon_serves_the_diagnosis_body_the_http_server_routes_to(tmp_path: Path) -> None:
    # The HTTP server routes /diagnosis to Daemon.diagnosis().
    log = tmp_path / "SMTP-Activity-261128.log"
    log.write_text("")
    d = Daemon(write_config(tmp_path, [{"name": "me", "path": str(log)}], port=free_port()))
    assert json.loads(d.diagnosis())["codes"] == []
    d.aggregate.add(
        Event(
            mta="mailenable", log="me", time=time.time(), direction="inbound", code="551",
            status="rejected", remote_ip="192.0.2.1", sender_domain="example.com", reason="auth_required",
        )
    )  # fmt: skip
    (row,) = json.loads(d.diagnosis())["codes"]
    assert row["reasons"][0]["offenders"]["sender_domain"] == [{"value": "example.com", "count": 1}]
