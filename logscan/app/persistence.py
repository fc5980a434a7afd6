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
from logscan.core.aggregate import Aggregate
from logscan.core.alerts import AlertEngine
from logscan.core.state import load_state, save_state

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
        loaded = load_state(self.path)
        if loaded.problem == "missing":
            log.info("state_missing", path=str(self.path), action="start at each log's start_at")
            return Restored()
        if loaded.problem or loaded.data is None:
            log.error("state_unusable", path=str(self.path), problem=loaded.problem, action=_START_OVER)
            return Restored()
        data = loaded.data
        try:
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"unsupported state version {data.get('version')!r}")
            aggregate = Aggregate.from_dict(
                data["aggregate"], top_domains=cfg.daemon.top_domains, windows=cfg.daemon.bounce_ratio_windows
            )
            alerts = data.get("alerts")
            engine = AlertEngine.from_dict(alerts, rules_of(cfg.alerts)) if alerts else None
        except (ValueError, KeyError, TypeError) as exc:
            log.error("state_unusable", path=str(self.path), problem=str(exc), action=_START_OVER)
            return Restored()
        log.info("state_restored", path=str(self.path), logs=sorted(data.get("logs", {})))
        return Restored(aggregate, engine, data.get("logs", {}), data.get("formats", {}))

    def save(self, data: Mapping[str, Any], *, final: bool = False) -> bool:
        """Write `data` atomically; False (and logged) when the disk refused."""
        try:
            save_state(self.path, {"version": STATE_VERSION, "saved_at": time.time(), **data})
        except OSError as exc:
            log.error("state_save_failed", path=str(self.path), error=exc.strerror or str(exc))
            return False
        (log.info if final else log.debug)("state_saved", path=str(self.path))
        return True
