"""Alert rules and receivers built from the config, and the `scan --alerts` replay around them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from logscan.core.alerts import DEFAULT_RULES, AlertPeriod, Replay, Rule
from logscan.events import Event, EventBatch

if TYPE_CHECKING:  # `scan --alerts` needs neither: their imports cost it a tenth of a second
    from logscan.app.config import Alerts
    from logscan.outputs.notify import Notifier

NOTIFY_RESULTS = ("success", "failure", "dropped")


def rules_of(cfg: Alerts) -> list[Rule]:
    """The rules a config asks for: the defaults (unless switched off) plus its own."""
    if not cfg.enabled:
        return []
    return [*(DEFAULT_RULES if cfg.default_rules else ()), *cfg.rules]


def notifier_from_config(cfg: Alerts, instance: str) -> Notifier:
    from logscan.outputs.notify import Notifier  # noqa: PLC0415 - see the imports above

    return Notifier(cfg.receivers if cfg.enabled else [], instance)


class Replayer:
    """Collects the alert periods of a `scan --alerts` run, one event at a time."""

    def __init__(self, rules: list[Rule]) -> None:
        self.replay = Replay(rules)

    @classmethod
    def from_config(cls, cfg: Alerts | None) -> Replayer:
        return cls(rules_of(cfg) if cfg is not None else list(DEFAULT_RULES))

    def observe(self, ev: Event) -> None:
        self.replay.observe(ev)

    def observe_batch(self, batch: EventBatch) -> None:
        self.replay.observe_batch(batch)

    def observe_events(self, events: list[Event]) -> None:
        self.replay.observe_events(events)

    def needs_domains(self, log: str) -> bool:
        return self.replay.engine.needs_domains(log)

    def takes_minutes(self, log: str) -> bool:
        return self.replay.engine.takes_minutes(log)

    def finish(self) -> list[dict[str, Any]]:
        """Every firing period, as JSON-able dicts with ISO start and end."""
        return [_period_doc(p) for p in self.replay.finish()]


def notification_counts(cfg: Alerts, notifier: Notifier | None) -> dict[tuple[str, str, str], int]:
    """Every (alert, receiver, result) from the start, so alerts on failures see a series."""
    counts = {
        (rule.name, receiver.name, result): 0
        for rule in rules_of(cfg)
        for receiver in cfg.receivers
        for result in NOTIFY_RESULTS
    }
    if notifier is not None:
        counts.update(notifier.counts())
    return counts


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def _period_doc(p: AlertPeriod) -> dict[str, Any]:
    return {
        "alert": p.alert,
        "labels": dict(p.labels),
        "pending_since": _iso(p.pending_since),
        "start": _iso(p.start),
        "end": _iso(p.end),
        "peak_count": p.peak_count,
        "peak_ratio": round(p.peak_ratio, 4),
        "peak_rate_per_min": round(p.peak_rate, 3),
        "baseline_per_min": round(p.baseline, 3),
    }


def render_alerts(periods: list[dict[str, Any]]) -> str:
    """The alert section of the human `scan` summary."""
    if not periods:
        return "\nAlerts: none would have fired."
    out = [f"\nAlerts that would have fired ({len(periods)}):"]
    for p in periods:
        lb = p["labels"]
        where = f"{lb.get('direction', '')} {lb.get('log', '')}" + (
            f" domain {lb['domain']}" if "domain" in lb else ""
        )
        out.append(
            f"  {p['alert']} [{where}] {p['start']} → {p['end'] or 'still firing'}: "
            f"peak {p['peak_count']} replies ({p['peak_ratio']:.1%}), baseline {p['baseline_per_min']}/min"
        )
    return "\n".join(out)
