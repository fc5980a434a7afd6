"""Deliver alert transitions to Alertmanager (v2 API) and generic JSON webhooks, off the ingest path.

Each receiver has its own worker thread, so a dead or slow receiver delays nobody else.
`Notifier.notify()` only records the transition under a lock and wakes the workers: it
never does I/O and never blocks ingestion. Per alert series a worker keeps only what is
still undelivered, coalesced (a newer `firing` replaces an unsent older one; a `resolved`
queues behind an unsent `firing` so a receiver still sees both), so its queue is bounded by
the number of alert series, and the latest state survives any outage.

Retries are a small explicit backoff (1 s doubling to 60 s, no request-level retries): a
retry must send the LATEST state of every alert, not replay a stale request body as
urllib3's Retry would, and it must not hold the worker inside one request.

Alertmanager forgets an alert at its endsAt, so while an alert fires the worker re-sends it
every `resend_interval_s` with endsAt = now + 4 × resend_interval_s (what Prometheus does);
a resolve sends the real end time. Webhooks get each state change once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import structlog
import urllib3

from logscan.core.alerts import Transition
from logscan.core.diagnosis import Why
from logscan.outputs.receivers import Receiver

RESULTS: Final = ("success", "failure", "dropped")
BACKOFF_MIN_S: Final = 1.0
BACKOFF_MAX_S: Final = 60.0
# Undelivered transitions kept per alert series: enough for firing, resolved, firing again.
PER_ALERT_LIMIT: Final = 3

Key = tuple[tuple[str, str], ...]

log = structlog.get_logger("logscan.alerts")
_json = msgspec.json.Encoder()


def rfc3339(t: float) -> str:
    """Epoch seconds → RFC 3339 UTC with milliseconds, as Alertmanager parses it."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _window(tr: Transition) -> str:
    w = tr.rule.window
    return f"{w // 60}m" if w % 60 == 0 else f"{w}s"


# Where `runbook_url` annotations point: the runbooks ship in the repository's docs/runbooks/.
RUNBOOK_BASE: Final = "docs/runbooks/"


def describe(tr: Transition, runbook_base: str = RUNBOOK_BASE) -> dict[str, str]:
    """Human summary and description with the numbers behind the transition, and its diagnosis."""
    lb = tr.labels
    where = f"{lb.get('direction', '')} {lb.get('mta', '')} log {lb.get('log', '')}"
    if "domain" in lb:
        where += f", domain {lb['domain']}"
    summary = (
        f"SMTP {tr.rule.code} replies spiking on {where}: "
        f"{tr.count} in {_window(tr)} ({tr.ratio:.1%} of replies)"
    )
    description = (
        f"{tr.count} replies with code {tr.rule.code} out of {tr.total} {tr.rule.direction} replies in the "
        f"last {_window(tr)} ({tr.ratio:.1%}); rate {tr.rate:.2f}/min vs baseline {tr.baseline:.2f}/min "
        f"(EWMA, {tr.rule.baseline_s // 60}m time constant). Peak {tr.peak_count} in {_window(tr)}, "
        f"{tr.peak_ratio:.1%}, {tr.peak_rate:.2f}/min. Thresholds: count >= {tr.rule.min_count}, "
        f"share >= {tr.rule.min_ratio:.1%}, rate >= {tr.rule.factor:g} x baseline, for {tr.rule.for_s}s."
    )
    out = {"summary": summary, "description": description}
    if tr.why is not None:
        # The diagnosis (docs/runbooks/): dominant reason and share, the fix, the top offenders.
        out["diagnosis"] = tr.why.line()
        out["reason"] = tr.why.reason
        out["runbook_url"] = runbook_base + tr.why.runbook.removeprefix("docs/runbooks/")
        out["summary"] = f"{summary}; {tr.why.share:.0%} {tr.why.reason}"
    return out


class Notifier:
    """Sends alert transitions to receivers from background threads; see the module docstring."""

    def __init__(
        self,
        receivers: Sequence[Receiver],
        instance: str,
        *,
        resend_interval_s: float = 60.0,
        generator_url: str = "",
        runbook_base: str = RUNBOOK_BASE,
        max_alerts: int = 1000,
        backoff_s: tuple[float, float] = (BACKOFF_MIN_S, BACKOFF_MAX_S),
        clock: Callable[[], float] = time.time,
    ) -> None:
        names = [r.name for r in receivers]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate receiver names in {names}")
        self.instance = instance
        self.resend_interval_s = resend_interval_s
        self.generator_url = generator_url
        self.runbook_base = runbook_base
        self.clock = clock
        self._counts: dict[tuple[str, str, str], int] = {}
        self._counts_lock = threading.Lock()
        self._workers = [_Worker(self, r, max_alerts, backoff_s) for r in receivers]
        for w in self._workers:
            w.start()

    def notify(self, tr: Transition) -> None:
        """Log the transition and queue it for every receiver; never blocks on I/O."""
        fields: dict[str, Any] = {
            **tr.labels,
            "since": rfc3339(tr.since),
            "at": rfc3339(tr.at),
            "count": tr.count,
            "total": tr.total,
            "ratio": round(tr.ratio, 4),
            "rate_per_min": round(tr.rate, 3),
            "baseline_per_min": round(tr.baseline, 3),
        }
        if tr.state in ("firing", "resolved"):
            fields.update(peak_count=tr.peak_count, peak_ratio=round(tr.peak_ratio, 4))
        if tr.state == "firing":
            log.warning("alert_firing", **fields)
        else:
            log.info(f"alert_{tr.state}", **fields)
        if tr.state in ("firing", "resolved"):
            for w in self._workers:
                w.offer(tr)

    def resume(self, firing: Sequence[Transition]) -> None:
        """Queue alerts already firing before a restart (AlertEngine.active()) without re-logging each."""
        trs = [tr for tr in firing if tr.state == "firing"]
        if trs:
            log.info("alerts_resumed", firing=len(trs), alerts=sorted({tr.alert for tr in trs}))
        for tr in trs:
            for w in self._workers:
                w.offer(tr)

    def counts(self) -> dict[tuple[str, str, str], int]:
        """(alert, receiver, result) → notifications, result ∈ success · failure · dropped."""
        with self._counts_lock:
            return dict(self._counts)

    def pending(self) -> int:
        """Transitions not yet delivered, over all receivers."""
        return sum(w.backlog() for w in self._workers)

    def close(self, timeout: float = 5.0) -> None:
        """Try once more to deliver what is queued, for at most `timeout` s in all; count the rest dropped."""
        deadline = time.monotonic() + timeout
        for w in self._workers:
            w.stop(deadline)
        for w in self._workers:
            w.join(max(0.0, deadline - time.monotonic()))
        for w in self._workers:
            w.drop_all()

    def _count(self, alert: str, receiver: str, result: str, n: int = 1) -> None:
        with self._counts_lock:
            key = (alert, receiver, result)
            self._counts[key] = self._counts.get(key, 0) + n

    def payload(self, receiver: Receiver, items: Sequence[Transition], now: float) -> bytes:
        """The JSON body one POST carries to `receiver` (public for tests and docs)."""
        if receiver.kind == "alertmanager":
            return _json.encode([self._am_alert(tr, now) for tr in items])
        return _json.encode(
            {
                "version": "1",
                "receiver": receiver.name,
                "instance": self.instance,
                "alerts": [self._webhook_alert(tr) for tr in items],
            }
        )

    def _am_alert(self, tr: Transition, now: float) -> dict[str, Any]:
        ends = tr.at if tr.state == "resolved" else now + 4 * self.resend_interval_s
        alert: dict[str, Any] = {
            "labels": {**tr.labels, "instance": self.instance},
            "annotations": describe(tr, self.runbook_base),
            "startsAt": rfc3339(tr.since),
            "endsAt": rfc3339(ends),
        }
        if self.generator_url:
            alert["generatorURL"] = self.generator_url
        return alert

    def _webhook_alert(self, tr: Transition) -> dict[str, Any]:
        return {
            "status": tr.state,
            "labels": {**tr.labels, "instance": self.instance},
            "annotations": describe(tr, self.runbook_base),
            "diagnosis": None if tr.why is None else _why_doc(tr.why),
            "startsAt": rfc3339(tr.since),
            "endsAt": rfc3339(tr.at) if tr.state == "resolved" else None,
            "values": {
                "count": tr.count,
                "total": tr.total,
                "ratio": tr.ratio,
                "rate_per_min": tr.rate,
                "baseline_per_min": tr.baseline,
                "peak_count": tr.peak_count,
                "peak_ratio": tr.peak_ratio,
                "peak_rate_per_min": tr.peak_rate,
                "window_s": tr.rule.window,
            },
        }


def _why_doc(why: Why) -> dict[str, Any]:
    """The webhook's structured diagnosis: the same facts as the annotation line."""
    return {
        "reason": why.reason,
        "share": round(why.share, 4),
        "count": why.count,
        "total": why.total,
        "reasons": [{"reason": r, "count": n} for r, n in why.reasons],
        "offenders": [{"kind": k, "value": v, "count": n} for k, v, n in why.offenders],
        "fix": why.fix,
        "runbook": why.runbook,
    }


class _Worker(threading.Thread):
    """Delivery loop for one receiver: coalesced queue, backoff, periodic re-send of firing alerts."""

    def __init__(
        self, owner: Notifier, receiver: Receiver, max_alerts: int, backoff_s: tuple[float, float]
    ) -> None:
        super().__init__(name=f"logscan-notify-{receiver.name}", daemon=True)
        self.owner = owner
        self.receiver = receiver
        self.max_alerts = max_alerts
        self.backoff_min, self.backoff_max = backoff_s
        self.resends = receiver.kind == "alertmanager"
        self.http = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=receiver.timeout_s, connect=receiver.timeout_s),
            retries=False,
            headers={"Content-Type": "application/json", **receiver.headers},
        )
        self.cond = threading.Condition()
        self.queue: dict[Key, list[Transition]] = {}
        self.firing: dict[Key, Transition] = {}
        self.sent_at: dict[Key, float] = {}
        self.backoff = 0.0
        self.next_try = 0.0  # monotonic
        self.deadline: float | None = None  # set by stop()
        self.failing = False

    def offer(self, tr: Transition) -> None:
        key = tr.key
        with self.cond:
            items = self.queue.setdefault(key, [])
            if items and items[-1].state == tr.state:
                items[-1] = tr
            else:
                items.append(tr)
            if len(items) > PER_ALERT_LIMIT:
                lost = items.pop(0)
                self.owner._count(lost.alert, self.receiver.name, "dropped")
            if tr.state == "firing":
                self.firing[key] = tr
            else:
                self.firing.pop(key, None)
                self.sent_at.pop(key, None)
            while len(self.queue) > self.max_alerts:
                # Shed the oldest series first; its firing state (if any) is still re-sent.
                oldest = next(iter(self.queue))
                for lost in self.queue.pop(oldest):
                    self.owner._count(lost.alert, self.receiver.name, "dropped")
            self.cond.notify()

    def backlog(self) -> int:
        with self.cond:
            return sum(len(v) for v in self.queue.values())

    def stop(self, deadline: float) -> None:
        with self.cond:
            self.deadline = deadline
            self.cond.notify()

    def drop_all(self) -> None:
        with self.cond:
            for items in self.queue.values():
                for lost in items:
                    self.owner._count(lost.alert, self.receiver.name, "dropped")
            self.queue.clear()

    def _due(self, mono: float, now: float) -> tuple[list[Transition], float]:
        """What to send now, or the seconds to wait until something is due."""
        if self.deadline is None and mono < self.next_try:
            return [], self.next_try - mono
        batch = [items[0] for items in self.queue.values()]
        wait = 3600.0
        if self.resends:
            queued = self.queue.keys()
            for key, tr in self.firing.items():
                if key in queued:
                    continue
                left = self.sent_at.get(key, 0.0) + self.owner.resend_interval_s - now
                if left <= 0 or self.deadline is not None:
                    batch.append(tr)
                else:
                    wait = min(wait, left)
        return batch, wait

    def run(self) -> None:
        while True:
            with self.cond:
                while True:
                    batch, wait = self._due(time.monotonic(), self.owner.clock())
                    if batch or self.deadline is not None:
                        break
                    self.cond.wait(wait)
                stopping = self.deadline is not None
            if batch:
                self._send(batch)
            if stopping:
                return

    def _send(self, batch: list[Transition]) -> None:
        rx = self.receiver
        now = self.owner.clock()
        body = self.owner.payload(rx, batch, now)
        error = ""
        try:
            resp = self.http.request("POST", rx.endpoint, body=body)
            if not 200 <= resp.status < 300:
                error = f"HTTP {resp.status}: {resp.data[:200].decode('utf-8', 'replace')}"
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        result = "failure" if error else "success"
        with self.cond:
            for tr in batch:
                self.owner._count(tr.alert, rx.name, result)
            if error:
                self.backoff = min(self.backoff_max, max(self.backoff_min, self.backoff * 2))
                self.next_try = time.monotonic() + self.backoff
            else:
                self.backoff = 0.0
                self.next_try = 0.0
                for tr in batch:
                    items = self.queue.get(tr.key)
                    if items and items[0] is tr:
                        items.pop(0)
                        if not items:
                            del self.queue[tr.key]
                    if tr.state == "firing":
                        self.sent_at[tr.key] = now
        # One log event per change of a receiver's health, not one per retry.
        if error and not self.failing:
            log.warning("alert_delivery_failed", receiver=rx.name, error=error, retry_in_s=self.backoff)
        elif not error and self.failing:
            log.info("alert_delivery_recovered", receiver=rx.name)
        self.failing = bool(error)


def describe_counts(counts: Mapping[tuple[str, str, str], int]) -> str:
    """Compact text of `counts()` for logs and test failure messages."""
    return ", ".join(f"{a}/{r}/{res}={n}" for (a, r, res), n in sorted(counts.items()))
