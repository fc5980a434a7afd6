"""Postfix log lines → parser → AlertEngine → Notifier → a real Alertmanager → its webhook."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from logscan.core.alerts import AlertEngine, Transition
from logscan.events import Event
from logscan.outputs.notify import Notifier, describe_counts
from logscan.outputs.receivers import Receiver
from logscan.parsers.base import ParserOptions
from logscan.parsers.postfix import PostfixParser
from tests.alertmanager_fixture import (
    RunningAlertmanager,
    WebhookSink,
    alertmanager,  # noqa: F401  (pytest fixture)
    free_port,
    start_alertmanager,
    wait_for,
    webhook_sink,  # noqa: F401  (pytest fixture)
)

pytestmark = pytest.mark.slow

INSTANCE = "mx1.test"
OUTBOUND = "smtp_551_outbound_spike"


def postfix_line(t: float, n: int, code: str, domain: str) -> str:
    """One Postfix smtp delivery line at time `t` whose remote server answered `code`."""
    ts = datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")
    head = (
        f"{ts} mx1 postfix/smtp[{2000 + n % 50}]: {n:010X}: to=<user{n}@{domain}>, "
        f"relay=mx.{domain}[192.0.2.7]:25"
    )
    if code == "250":
        return (
            f"{head}, delay=0.4, delays=0.1/0/0.1/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as Q{n})"
        )
    enhanced = {"551": "5.1.1", "550": "5.1.1"}[code]
    return (
        f"{head}, delay=0.4, delays=0.1/0/0.1/0.2, dsn={enhanced}, status=bounced "
        f"(host mx.{domain}[192.0.2.7] said: {code} {enhanced} user not local (in reply to RCPT TO command))"
    )


def traffic(base: float, minutes: range, burst: range, per_min_551: int, trickle_every: int = 0) -> list[str]:
    """Background of 30 × 250 and 2 × 550 a minute, 551s in `burst` minutes, optional slow 551 trickle."""
    lines: list[str] = []
    n = 0
    for m in minutes:
        t0 = base + m * 60
        rows = [(t0 + i * 1.9, "250", "example.net") for i in range(30)]
        rows += [(t0 + 7.3, "550", "example.com"), (t0 + 41.1, "550", "example.com")]
        if m in burst:
            rows += [
                (t0 + 0.5 + i * (59 / per_min_551), "551", "customer.example") for i in range(per_min_551)
            ]
        if trickle_every and m % trickle_every == 0:
            rows.append((t0 + 30.5, "551", "customer.example"))
        for t, code, domain in sorted(rows):
            n += 1
            lines.append(postfix_line(t, n, code, domain))
    return lines


def parse(lines: list[str], reference: float) -> list[Event]:
    parser = PostfixParser(ParserOptions(log="mail", tz=UTC, reference_time=reference))
    events: list[Event] = []
    for line in lines:
        result = parser.parse(line)
        assert isinstance(result, tuple), f"postfix parser did not understand: {line}\n{result}"
        events.extend(result)
    return events


def base_time(minutes_ago: int) -> float:
    now = time.time()
    return (now // 60) * 60 - minutes_ago * 60


def feed(engine: AlertEngine, notifier: Notifier, events: list[Event], until: float) -> list[Transition]:
    out: list[Transition] = []
    for ev in events:
        engine.observe(ev)
    out.extend(engine.advance(until))
    for tr in out:
        notifier.notify(tr)
    return out


def test_burst_fires_in_alertmanager_then_resolves(
    alertmanager: RunningAlertmanager,  # noqa: F811
    webhook_sink: WebhookSink,  # noqa: F811
) -> None:
    base = base_time(120)
    events = parse(traffic(base, range(120), burst=range(90, 95), per_min_551=25), time.time())
    assert sum(ev.code == "551" for ev in events) == 125
    engine = AlertEngine()
    notifier = Notifier(
        [Receiver(name="am", url=alertmanager.url)], INSTANCE, resend_interval_s=2.0, backoff_s=(0.2, 1.0)
    )
    try:
        # Up to the end of minute 93: the burst has lasted long enough (for: 2m) to fire.
        cut = base + 94 * 60
        first = feed(engine, notifier, [e for e in events if e.time < cut], cut - 1)
        states = [(tr.state, (tr.at - base) / 60) for tr in first]
        assert states == [("pending", 91.0), ("firing", 93.0)], states
        fired = first[-1]
        assert fired.count >= 10
        assert fired.ratio >= 0.05

        found = wait_for(
            lambda: alertmanager.find(alertname=OUTBOUND), 15, "the firing alert in Alertmanager"
        )
        assert len(found) == 1
        alert = found[0]
        assert alert["labels"] == {
            "alertname": OUTBOUND,
            "severity": "page",
            "mta": "postfix",
            "log": "mail",
            "code": "551",
            "direction": "outbound",
            "instance": INSTANCE,
        }
        assert alert["status"]["state"] == "active"
        assert "551" in alert["annotations"]["summary"]
        assert f"{fired.count} replies with code 551" in alert["annotations"]["description"]
        starts = datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00")).timestamp()
        assert starts == pytest.approx(base + 93 * 60, abs=0.01)
        first_ends = alert["endsAt"]

        # Alertmanager itself notified its receiver (the real webhook sink) of the firing alert.
        def am_notified(status: str) -> list[object]:
            return [
                b
                for b in webhook_sink.received("/am")
                if b["status"] == status and any(a["labels"]["alertname"] == OUTBOUND for a in b["alerts"])
            ]

        wait_for(lambda: am_notified("firing"), 15, "Alertmanager's webhook notification (firing)")

        # Re-sent while firing: endsAt (now + 4 × 2 s) moves on and the alert outlives its first endsAt.
        time.sleep(9)
        again = alertmanager.find(alertname=OUTBOUND)
        assert len(again) == 1
        assert again[0]["endsAt"] > first_ends, (again, first_ends)

        # The rest of the log: the burst is over, the alert resolves with its real end time.
        rest = feed(engine, notifier, [e for e in events if e.time >= cut], time.time())
        assert [(tr.state, (tr.at - base) / 60) for tr in rest] == [("resolved", 100.0)]
        wait_for(lambda: not alertmanager.find(alertname=OUTBOUND), 15, "the alert to leave Alertmanager")
        wait_for(lambda: am_notified("resolved"), 15, "Alertmanager's webhook notification (resolved)")
        assert engine.firing() == {OUTBOUND: False, "smtp_551_inbound_spike": False}
    finally:
        notifier.close(5)
    counts = notifier.counts()
    assert counts.get((OUTBOUND, "am", "success"), 0) >= 3, describe_counts(counts)
    assert counts.get((OUTBOUND, "am", "failure"), 0) == 0, describe_counts(counts)


def test_slow_trickle_never_alerts(
    alertmanager: RunningAlertmanager,  # noqa: F811
    webhook_sink: WebhookSink,  # noqa: F811
) -> None:
    base = base_time(180)
    # One 551 every 2 minutes for 3 hours: 90 of them, but never 10 in 5 minutes.
    events = parse(traffic(base, range(178), burst=range(0), per_min_551=1, trickle_every=2), time.time())
    assert sum(ev.code == "551" for ev in events) == 89
    engine = AlertEngine()
    notifier = Notifier([Receiver(name="am", url=alertmanager.url)], INSTANCE, resend_interval_s=2.0)
    try:
        transitions = feed(engine, notifier, events, time.time())
        assert transitions == []
        # A control alert proves the path to Alertmanager works, so "nothing there" means something.
        control = AlertEngine()
        burst = parse(traffic(base, range(150, 160), burst=range(150, 156), per_min_551=25), time.time())
        control_trs = feed(control, notifier, burst, base + 156 * 60)
        assert [tr.state for tr in control_trs] == ["pending", "firing"]
        wait_for(lambda: alertmanager.find(alertname=OUTBOUND), 15, "the control alert")
        assert len(alertmanager.alerts()) == 1
        assert engine.firing() == {OUTBOUND: False, "smtp_551_inbound_spike": False}
    finally:
        notifier.close(5)


@pytest.fixture
def hung_port() -> Iterator[tuple[int, socket.socket]]:
    """A port that accepts TCP connections into the backlog but never answers: a hung receiver."""
    port = free_port()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    try:
        yield port, sock
    finally:
        sock.close()


def test_receiver_down_then_up_delivers_firing_alert_and_ingestion_stays_fast(
    tmp_path: Path,
    webhook_sink: WebhookSink,  # noqa: F811
    hung_port: tuple[int, socket.socket],
) -> None:
    port, sock = hung_port
    base = base_time(60)
    events = parse(traffic(base, range(50), burst=range(40, 50), per_min_551=25), time.time())
    engine = AlertEngine()
    receiver = Receiver(name="am", url=f"http://127.0.0.1:{port}", timeout_s=1.0)
    notifier = Notifier([receiver], INSTANCE, resend_interval_s=2.0, backoff_s=(0.2, 0.5))
    try:
        slowest = 0.0
        started = time.perf_counter()
        transitions: list[Transition] = []
        for ev in events:
            engine.observe(ev)
            for tr in engine.advance(ev.time):
                transitions.append(tr)
                t0 = time.perf_counter()
                notifier.notify(tr)
                slowest = max(slowest, time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        assert [tr.state for tr in transitions] == ["pending", "firing"]
        # 1,850 lines' events and two notifications while the receiver hangs: no waiting on it.
        # Half the receiver's 1 s timeout: a notify() that waited on it would take all of it,
        # while a loaded machine (CI, two test workers) may pause a call for tens of ms.
        assert slowest < 0.5, f"notify() took {slowest:.3f}s with the receiver down"
        assert elapsed < 1.0, f"ingestion took {elapsed:.3f}s with the receiver down"

        wait_for(
            lambda: notifier.counts().get((OUTBOUND, "am", "failure"), 0) >= 1,
            10,
            "a failed (timed out) delivery to the hung receiver",
        )
        assert notifier.counts().get((OUTBOUND, "am", "success"), 0) == 0
        assert notifier.pending() == 1  # the firing state is kept, not lost

        # The receiver comes back: a real Alertmanager on the same port.
        sock.close()
        with start_alertmanager(tmp_path / "am", webhook_sink.url + "/am", port=port) as am:
            found = wait_for(
                lambda: am.find(alertname=OUTBOUND), 20, "the firing alert after the receiver returned"
            )
            assert found[0]["labels"]["instance"] == INSTANCE
            assert found[0]["labels"]["log"] == "mail"
            wait_for(lambda: notifier.counts().get((OUTBOUND, "am", "success"), 0) >= 1, 5, "a success count")
            assert notifier.pending() == 0
    finally:
        notifier.close(5)
