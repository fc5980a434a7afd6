"""The daemon's state file: what goes in it, restoring from it, and saving it atomically."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import structlog

from logscan.app.alerting import rules_of
from logscan.app.config import Config
from logscan.app.ingest import LogRuntime
from logscan.core.aggregate import Aggregate
from logscan.core.alerts import AlertEngine
from logscan.core.state import DaemonState, load_state, save_state, set_aside

log = structlog.get_logger("logscan.daemon")
STATE_FILE: Final = "state.json"
STATE_VERSION: Final = 1
_START_OVER: Final = "counters start from zero; each log starts at its start_at, nothing is re-counted"


@dataclass(frozen=True, slots=True)
class Restored:
    """What a state file gave back; None/empty parts start fresh."""

    aggregate: Aggregate | None = None
    engine: AlertEngine | None = None
    logs: Mapping[str, Any] = field(default_factory=dict)
    formats: Mapping[str, str] = field(default_factory=dict)


class StateStore:
    """One state file: offsets of every log and all counters, saved together."""

    def __init__(self, state_dir: str) -> None:
        self.path = Path(state_dir) / STATE_FILE
        self.failures = 0  # saves the disk refused since start
        self.last_saved = 0.0  # wall time of the last save that reached the disk; 0 before the first
        self.last_error = ""  # why the last save failed; "" when it succeeded

    def prepare(self) -> str:
        """Create the state folder; "" when it is usable, else why not."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not os.access(self.path.parent, os.W_OK | os.X_OK):
                raise PermissionError(f"cannot write to {self.path.parent}")
        except OSError as exc:
            return str(exc)
        return ""

    def restore(self, cfg: Config) -> Restored:
        """Counters, alert state and log positions from the file; an unusable file starts over."""
        loaded = load_state(self.path, DaemonState)
        if loaded.problem == "missing":
            log.info("state_missing", path=str(self.path), action="start at each log's start_at")
            return Restored()
        if loaded.problem or loaded.data is None:
            log.error("state_unusable", path=str(self.path), problem=loaded.problem, action=_START_OVER)
            return Restored()
        data = loaded.data  # its whole tree has the schema's types: no KeyError/TypeError below
        try:
            aggregate = Aggregate.from_dict(
                data["aggregate"], top_domains=cfg.daemon.top_domains, windows=cfg.daemon.bounce_ratio_windows
            )
            alerts = data.get("alerts")
            engine = AlertEngine.from_dict(alerts, rules_of(cfg.alerts)) if alerts else None
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            problem = set_aside(self.path, f"corrupt: {exc}")
            log.error("state_unusable", path=str(self.path), problem=problem, action=_START_OVER)
            return Restored()
        log.info("state_restored", path=str(self.path), logs=sorted(data["logs"]))
        return Restored(aggregate, engine, data["logs"], data["formats"])

    def unsaved(self) -> str:
        """Why /ready says no while the last save failed."""
        return f"state not saved: {self.last_error} ({self.path})"

    def save(self, data: Mapping[str, Any], *, final: bool = False) -> bool:
        """Write `data` atomically; False (and logged) when the disk refused."""
        now = time.time()
        try:
            save_state(self.path, {"version": STATE_VERSION, "saved_at": now, **data})
        except OSError as exc:
            self.failures += 1
            self.last_error = exc.strerror or str(exc)
            log.error("state_save_failed", path=str(self.path), error=self.last_error, final=final,
                      hint="free space or fix permissions of the state folder; counts since the last "
                      "save are re-read after a restart")
            return False
        if self.last_error:
            log.info("state_save_recovered", path=str(self.path), failures=self.failures)
        self.last_error = ""
        self.last_saved = now
        (log.info if final else log.debug)("state_saved", path=str(self.path))
        return True


def state_of(logs: Mapping[str, LogRuntime], aggregate: Aggregate,
             engine: AlertEngine) -> tuple[dict[str, int], dict[str, Any]]:
    """Every log's epoch and the state to save, taken together under the daemon's lock."""
    epochs = {name: rt.follower.epoch for name, rt in logs.items()}
    data = {
        "logs": {name: rt.follower.checkpoint() for name, rt in logs.items()},
        "formats": {name: rt.mta for name, rt in logs.items() if rt.mta},
        "aggregate": aggregate.to_dict(),
        "alerts": engine.to_dict(),
    }
    return epochs, data


def saved(logs: Mapping[str, LogRuntime], epochs: Mapping[str, int]) -> bool:
    """The state taken with `epochs` is on disk: tell each follower (it may close finished files)."""
    for name, rt in logs.items():
        if name in epochs:
            rt.saved_epoch = epochs[name]
            rt.follower.saved()
    return True
