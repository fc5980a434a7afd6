"""Notifier: payloads, delivery to a real HTTP sink, coalescing, backoff, re-sends, bounded close."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import msgspec
import pytest
import structlog
from structlog.testing import capture_logs

from logscan.core.alerts import DEFAULT_RULES, Rule, State, Transition
from logscan.outputs.notify import Notifier, describe, rfc3339
from logscan.outputs.receivers import Receiver
from tests.alertmanager_fixture import WebhookSink, free_port, wait_for

RULE: Rule = DEFAULT_RULES[0]
T = 1_800_000_000.0


def transition(
    state: State, *, log: str = "mail", at: float = T, since: float = T - 120, count: int = 42
) -> Transition:
    return Transition(
        alert=RULE.name,
        rule=RULE,
        labels={
            "alertname": RULE.name,
            "severity": "page",
            "mta": "postfix",
            "log": log,
            "code": "551",
            "direction": "outbound",
        },
        state=state,
        since=since,
        at=at,
        pending_since=since - 120,
        count=count,
        total=400,
        ratio=count / 400,
        rate=count / 5,
        baseline=0.25,
        peak_count=max(count, 60),
        peak_ratio=0.15,
        peak_rate=12.0,
    )


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as s:
        yield s


@pytest.fixture(autouse=True)
def _plain_structlog() -> Iterator[None]:
    # capture_logs needs loggers that are not cached by an earlier configure().
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(1_800_000_000.25) == "2027-01-15T08:00:00.250Z"


def test_alertmanager_payload_shape_and_ends_at() -> None:
    n = Notifier(
        [], "mx1", resend_interval_s=60, generator_url="http://mx1:9807/metrics", clock=lambda: T + 10
    )
    rx = Receiver(name="am", url="http://127.0.0.1:1/")
    assert rx.endpoint == "http://127.0.0.1:1/api/v2/alerts"
    firing, resolved = (
        msgspec.json.decode(n.payload(rx, [transition(s, at=T + 300)], T + 10))[0]
        for s in ("firing", "resolved")
    )
    assert firing["labels"] == {
        "alertname": RULE.name,
        "severity": "page",
        "mta": "postfix",
        "log": "mail",
        "code": "551",
        "direction": "outbound",
        "instance": "mx1",
    }
    assert firing["startsAt"] == rfc3339(T - 120)
    assert firing["endsAt"] == rfc3339(T + 10 + 4 * 60)  # valid for four re-send intervals
    assert resolved["endsAt"] == rfc3339(T + 300)  # the real end, from the log
    assert firing["generatorURL"] == "http://mx1:9807/metrics"
    assert set(firing["annotations"]) == {"summary", "description"}


def test_annotations_carry_the_numbers_and_no_local_parts() -> None:
    text = describe(transition("firing"))
    assert "42 in 5m (10.5% of replies)" in text["summary"]
    assert "outbound postfix log mail" in text["summary"]
    assert "42 replies with code 551 out of 400 outbound replies" in text["description"]
    assert "rate 8.40/min vs baseline 0.25/min" in text["description"]
    assert "@" not in text["summary"] + text["description"]


def test_webhook_receives_documented_document_in_order(sink: WebhookSink) -> None:
    n = Notifier([Receiver(name="hook", url=sink.url + "/hook", kind="webhook")], "mx1")
    try:
        n.notify(transition("pending"))  # logged only, never sent
        n.notify(transition("firing"))
        n.notify(transition("resolved", at=T + 600))
        bodies = wait_for(lambda: len(sink.received("/hook")) >= 2 and sink.received("/hook"), 5, "two POSTs")
    finally:
        n.close(2)
    alerts = [a for b in bodies for a in b["alerts"]]
    assert [a["status"] for a in alerts] == ["firing", "resolved"]
    doc = bodies[0]
    assert doc["version"] == "1"
    assert doc["receiver"] == "hook"
    assert doc["instance"] == "mx1"
    first = alerts[0]
    assert first["labels"]["instance"] == "mx1"
    assert first["endsAt"] is None
    assert alerts[1]["endsAt"] == rfc3339(T + 600)
    assert first["values"] == {
        "count": 42,
        "total": 400,
        "ratio": 0.105,
        "rate_per_min": 8.4,
        "baseline_per_min": 0.25,
        "peak_count": 60,
        "peak_ratio": 0.15,
        "peak_rate_per_min": 12.0,
        "window_s": 300,
    }
    assert n.counts() == {(RULE.name, "hook", "success"): 2}


def test_receiver_down_keeps_latest_state_and_delivers_it_in_order_when_back(sink: WebhookSink) -> None:
    sink.status = 503
    n = Notifier([Receiver(name="hook", url=sink.url, kind="webhook")], "mx1", backoff_s=(0.05, 0.2))
    try:
        n.notify(transition("firing", count=20))
        wait_for(lambda: n.counts().get((RULE.name, "hook", "failure"), 0) >= 2, 5, "retries")
        # A newer firing replaces the undelivered one; a resolve queues behind it.
        n.notify(transition("firing", count=30))
        n.notify(transition("resolved", count=3, at=T + 900))
        assert n.pending() == 2
        failed_posts = len(sink.received())
        sink.status = 200
        wait_for(lambda: n.pending() == 0, 5, "delivery after the receiver recovered")
    finally:
        n.close(2)
    delivered = [a for b in sink.received()[failed_posts:] for a in b["alerts"]]
    assert [(a["status"], a["values"]["count"]) for a in delivered] == [("firing", 30), ("resolved", 3)]
    counts = n.counts()
    assert counts[(RULE.name, "hook", "success")] == 2
    assert counts[(RULE.name, "hook", "failure")] >= 2


def test_alertmanager_kind_resends_firing_alerts_webhook_does_not(sink: WebhookSink) -> None:
    receivers = [
        Receiver(name="am", url=sink.url + "/am"),
        Receiver(name="hook", url=sink.url + "/hook", kind="webhook"),
    ]
    n = Notifier(receivers, "mx1", resend_interval_s=0.2)
    try:
        n.notify(transition("firing"))
        wait_for(lambda: len(sink.received("/am/api/v2/alerts")) >= 4, 5, "re-sends to Alertmanager")
        ends = [b[0]["endsAt"] for b in sink.received("/am/api/v2/alerts")]
        assert ends == sorted(ends)
        assert ends[0] < ends[-1]  # endsAt moves forward with every re-send
        n.notify(transition("resolved", at=T + 600))
        wait_for(
            lambda: any(b[0]["endsAt"] == rfc3339(T + 600) for b in sink.received("/am/api/v2/alerts")),
            5,
            "the resolve",
        )
        settled = len(sink.received("/am/api/v2/alerts"))
        time.sleep(0.6)
        assert len(sink.received("/am/api/v2/alerts")) == settled  # resolved: no more re-sends
    finally:
        n.close(2)
    assert len(sink.received("/hook")) == 2  # firing, resolved: once each


def test_slow_receiver_never_slows_notify_and_close_is_bounded(sink: WebhookSink) -> None:
    sink.delay_s = 3.0
    n = Notifier([Receiver(name="slow", url=sink.url, kind="webhook", timeout_s=0.5)], "mx1")
    worst = 0.0
    for i in range(200):
        t0 = time.perf_counter()
        n.notify(transition("firing", log=f"log{i % 20}"))
        worst = max(worst, time.perf_counter() - t0)
    assert worst < 0.25, f"notify took {worst:.3f}s"  # half the 0.5 s timeout a wait would take
    wait_for(lambda: n.counts().get((RULE.name, "slow", "failure"), 0) >= 1, 5, "a timed-out delivery")
    t0 = time.perf_counter()
    n.close(1.0)
    assert time.perf_counter() - t0 < 1.5
    counts = n.counts()
    assert counts.get((RULE.name, "slow", "success"), 0) == 0
    # 20 alert series were waiting (coalesced from 200 calls): all accounted as dropped on close.
    assert counts[(RULE.name, "slow", "dropped")] == 20


def test_dead_receiver_does_not_delay_a_live_one(sink: WebhookSink) -> None:
    dead = Receiver(name="dead", url=f"http://127.0.0.1:{free_port()}", kind="webhook", timeout_s=0.5)
    live = Receiver(name="live", url=sink.url, kind="webhook")
    n = Notifier([dead, live], "mx1", backoff_s=(0.05, 0.1))
    try:
        t0 = time.monotonic()
        n.notify(transition("firing"))
        wait_for(sink.received, 2, "delivery to the live receiver")
        assert time.monotonic() - t0 < 1.0
    finally:
        n.close(0.5)
    counts = n.counts()
    assert counts[(RULE.name, "live", "success")] == 1
    assert counts[(RULE.name, "dead", "failure")] >= 1


def test_one_structlog_event_per_transition_with_numbers() -> None:
    n = Notifier([], "mx1")
    with capture_logs() as logs:
        for state in ("pending", "firing", "resolved", "inactive"):
            n.notify(transition(state))
    n.close(0.1)
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("alert_pending", "info"),
        ("alert_firing", "warning"),
        ("alert_resolved", "info"),
        ("alert_inactive", "info"),
    ]
    firing = logs[1]
    assert firing["alertname"] == RULE.name
    assert firing["count"] == 42
    assert firing["ratio"] == 0.105
    assert firing["rate_per_min"] == 8.4
    assert firing["baseline_per_min"] == 0.25
    assert firing["peak_count"] == 60
    assert datetime.fromisoformat(firing["at"].replace("Z", "+00:00")).timestamp() == T


def test_delivery_failure_is_logged_once_then_recovery(sink: WebhookSink) -> None:
    sink.status = 500
    n = Notifier([Receiver(name="hook", url=sink.url, kind="webhook")], "mx1", backoff_s=(0.05, 0.1))
    with capture_logs() as logs:
        n.notify(transition("firing"))
        wait_for(lambda: n.counts().get((RULE.name, "hook", "failure"), 0) >= 3, 5, "three failures")
        sink.status = 200
        wait_for(lambda: n.pending() == 0, 5, "recovery")
        n.close(1)
    events = [e["event"] for e in logs]
    assert events.count("alert_delivery_failed") == 1
    assert events.count("alert_delivery_recovered") == 1


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"name": "a", "url": "http://x", "kind": "pager"}, "$.kind"),
        ({"name": "a", "url": "ftp://x"}, "$.url"),
        ({"name": "a", "url": "http://x", "timeout": 3}, "timeout"),
        ({"name": "a", "url": "http://x", "timeout_s": 0}, "$.timeout_s"),
    ],
)
def test_receiver_config_is_validated(entry: dict[str, object], key: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=key.replace("$", r"\$")):
        msgspec.convert(entry, Receiver)


def test_duplicate_receiver_names_are_refused() -> None:
    rx = Receiver(name="a", url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="duplicate"):
        Notifier([rx, rx], "mx1")


def test_resume_requeues_firing_alerts_after_a_restart(sink: WebhookSink) -> None:
    n = Notifier([Receiver(name="am", url=sink.url)], "mx1")
    with capture_logs() as logs:
        n.resume(
            [transition("firing", log="a"), transition("firing", log="b"), transition("resolved", log="c")]
        )
        wait_for(lambda: n.counts().get((RULE.name, "am", "success"), 0) >= 2, 5, "resumed alerts delivered")
    n.close(1)
    assert [e["event"] for e in logs] == ["alerts_resumed"]
    sent = [a["labels"]["log"] for b in sink.received("/api/v2/alerts") for a in b]
    assert sorted(set(sent)) == ["a", "b"]
