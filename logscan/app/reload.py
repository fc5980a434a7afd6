"""SIGHUP: what a new config changes in the running daemon (the daemon applies it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from logscan.app.config import Config, Log


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """Logs to drop, logs to (re)create with whether their position carries over, and the config to run."""

    removed: tuple[str, ...]
    configured: tuple[tuple[Log, bool], ...]
    alerts_changed: bool
    receivers_changed: bool
    config: Config


def plan_reload(old: Config, new: Config, running: Mapping[str, Log]) -> ReloadPlan:
    """Compare the running config with `new`; [server] and [state] keep their running values."""
    names = {lc.name for lc in new.logs}
    removed = tuple(n for n in running if n not in names)
    configured = tuple(
        (lc, _same_place(running[lc.name], lc) if lc.name in running else False)
        for lc in new.logs
        if running.get(lc.name) != lc
    )
    config = Config(logs=new.logs, server=old.server, state=old.state, daemon=new.daemon, alerts=new.alerts)
    receivers_changed = new.alerts.receivers != old.alerts.receivers
    return ReloadPlan(removed, configured, new.alerts != old.alerts, receivers_changed, config)


def _same_place(a: Log, b: Log) -> bool:
    """The saved position still means something: same file(s), or same journal."""
    return (a.path, a.source, a.journal_directory) == (b.path, b.source, b.journal_directory)
