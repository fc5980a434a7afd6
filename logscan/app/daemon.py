"""`logscan run`: wires tailers, parsers, aggregate, alerts, HTTP; owns lifecycle and signals."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from logscan import __version__
from logscan.app import sdnotify
from logscan.app.alerting import notifier_from_config, rules_of
from logscan.app.config import Config, ConfigError, Log, load_config, zone
from logscan.app.logging import configure_logging
from logscan.core.aggregate import Aggregate
from logscan.core.alerts import AlertEngine, Transition, explain
from logscan.core.diagnosis import diagnosis_json
from logscan.core.pipeline import Pipeline
from logscan.core.state import load_state, save_state
from logscan.outputs.http import MetricsServer, load_web_config
from logscan.outputs.metrics import Exposition, LogStatus, make_registry
from logscan.outputs.notify import Notifier
from logscan.parsers import make_parser
from logscan.parsers.base import ParserOptions
from logscan.parsers.detect import SAMPLE_LINES, detect
from logscan.sources.follower import Follower
from logscan.sources.watch import Watcher

log = structlog.get_logger("logscan.app.daemon")
STATE_FILE = "state.json"
STATE_VERSION = 1
NOTIFY_RESULTS = ("success", "failure", "dropped")
# How many bytes of lines one log may hand over per pass, so one busy log cannot starve the others.
POLL_BYTES = 4 << 20


@dataclass(slots=True)
class LogRuntime:
    """One configured log: its follower, and its parser once the format is known."""

    cfg: Log
    follower: Follower
    mta: str = ""
    pipeline: Pipeline | None = None
    warned: set[str] = field(default_factory=set)


class Daemon:
    """The running daemon. `run()` returns the process exit code."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.cfg: Config = load_config(config_path)
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.reload_requested = False
        self.logs: dict[str, LogRuntime] = {}
        self.aggregate = Aggregate(
            top_domains=self.cfg.daemon.top_domains, windows=self.cfg.daemon.bounce_ratio_windows
        )
        self.engine = AlertEngine(rules_of(self.cfg.alerts))
        self.notifier: Notifier | None = None
        self.server: MetricsServer | None = None
        self.watcher: Watcher | None = None
        self.instance = self.cfg.server.instance or socket.gethostname()
        self.state_path = Path(self.cfg.state.dir) / STATE_FILE

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        configure_logging(self.cfg.daemon.log_level)
        log.info("starting", version=__version__, config=str(self.config_path), logs=len(self.cfg.logs))
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not os.access(self.state_path.parent, os.W_OK | os.X_OK):
                raise PermissionError(f"cannot write to {self.state_path.parent}")
        except OSError as exc:
            # Without a state file every restart would be a counter reset: refuse to start.
            log.error("state_dir_unusable", dir=str(self.state_path.parent), error=str(exc))
            return 1
        saved = self._restore()
        for lcfg in self.cfg.logs:
            self._add_log(lcfg, saved.get("logs", {}).get(lcfg.name), saved.get("formats", {}))
        self.notifier = notifier_from_config(self.cfg.alerts, self.instance)
        self.notifier.resume(self.engine.active())
        try:
            web_config = (
                load_web_config(Path(self.cfg.server.web_config_file))
                if self.cfg.server.web_config_file
                else None
            )
            self.server = MetricsServer(
                self.cfg.server.listen, make_registry(self.exposition), self.ready, web_config
            )
            self.server.start()
        except (OSError, ValueError) as exc:
            log.error("http_start_failed", listen=self.cfg.server.listen, error=str(exc))
            self._close()
            return 1
        self.watcher = Watcher(self._watch_dirs(), self.wake, polling=self.cfg.daemon.polling_observer)
        self.watcher.start()
        self._install_signals()
        self._pass()
        sdnotify.ready(f"following {len(self.logs)} logs")
        try:
            self._loop()
        finally:
            with contextlib.suppress(OSError):  # a vanished notify socket must not cost the save
                sdnotify.stopping("saving state")
            self._save(final=True)
            self._close()
        log.info("stopped")
        return 0

    def _loop(self) -> None:
        last_save = time.monotonic()
        dog = sdnotify.watchdog_interval()
        last_dog = 0.0
        while not self.stopping:
            busy = self._pass()
            now = time.monotonic()
            if now - last_save >= self.cfg.state.save_interval:
                self._save()
                last_save = now
            if dog is not None and now - last_dog >= dog / 2:
                try:
                    sdnotify.watchdog_ping()
                except OSError as exc:
                    log.warning("watchdog_ping_failed", error=str(exc))
                last_dog = now
            if self.reload_requested:
                self.reload_requested = False
                self._reload()
            if not busy:
                # Events are hints: the timeout is the safety net for lost inotify events and NFS;
                # it never outlasts half the systemd watchdog interval.
                wait = self.cfg.daemon.poll_interval
                self.wake.wait(min(wait, dog / 2) if dog else wait)
                self.wake.clear()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    def _install_signals(self) -> None:
        def on_term(signum: int, _frame: FrameType | None) -> None:
            log.info("signal", signal=signal.Signals(signum).name, action="stop")
            self.stop()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self.reload_requested = True
            self.wake.set()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)

    def _close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.server is not None:
            self.server.stop()
        if self.notifier is not None:
            self.notifier.close()
        for rt in self.logs.values():
            rt.follower.close()

    # -- reading ---------------------------------------------------------------------------

    def _pass(self) -> bool:
        """Read what every log has; True when some log still has more waiting."""
        busy = False
        caught_up: list[str] = []
        wall = time.time()
        for name, rt in list(self.logs.items()):
            lines = rt.follower.poll(POLL_BYTES)
            self._log_notes(rt)
            if lines:
                self._ingest(rt, lines, wall)
            if rt.follower.lag_bytes > 0:
                busy = True
            else:
                caught_up.append(name)
        with self.lock:
            # Event time drives the rules. A caught-up log may also be moved on by wall time,
            # so an alert resolves after a burst even if no line follows it; a log with a
            # backlog is left to its own timestamps, or its unread lines would count as late.
            t = max(max(self.aggregate.last_event.values(), default=0.0), wall)
            transitions = self.engine.advance(t, logs=caught_up)
            # issue 14: each alert says what its replies mostly are (reason, offenders, fix).
            transitions = [explain(tr, self.aggregate.diagnosis) for tr in transitions]
        self._announce(transitions)
        return busy

    def _ingest(self, rt: LogRuntime, raw: list[bytes], wall: float) -> None:
        if rt.pipeline is None:
            head = [b.decode("utf-8", "surrogateescape") for b in raw[:SAMPLE_LINES]]
            if not self._choose_format(rt, head):
                with self.lock:
                    self.aggregate.count_lines(rt.cfg.name, "unparsed", len(raw), "unknown-format")
                return
        assert rt.pipeline is not None
        rt.pipeline.parser.set_reference_time(wall)
        # One decode for the whole batch; the prefilter then skips boring lines in C.
        chunk = (b"\n".join(raw) + b"\n").decode("utf-8", "surrogateescape")
        with self.lock:
            batch = rt.pipeline.feed_text(chunk)
        if batch.unparsed and batch.unparsed * 2 > batch.total:
            key = "mostly-unparsed"
            if key not in rt.warned:
                rt.warned.add(key)
                log.warning(
                    "log_lines_not_understood",
                    log=rt.cfg.name,
                    format=rt.mta,
                    unparsed=batch.unparsed,
                    lines=batch.total,
                    reasons=batch.reasons,
                    hint="wrong format in the config, or a log line shape this version does not know",
                )

    def _choose_format(self, rt: LogRuntime, texts: list[str]) -> bool:
        fmt: str = rt.cfg.format
        if fmt == "auto":
            found = detect(texts).format
            if found is None:
                if "undetected" not in rt.warned:
                    rt.warned.add("undetected")
                    log.warning("log_format_unknown", log=rt.cfg.name, lines=len(texts))
                return False
            fmt = found
            log.info("log_format_detected", log=rt.cfg.name, format=fmt)
        self._set_format(rt, fmt)
        return True

    def _set_format(self, rt: LogRuntime, fmt: str) -> None:
        options = ParserOptions(
            log=rt.cfg.name,
            tz=zone(rt.cfg.timezone or self.cfg.daemon.timezone),
            reference_time=time.time(),
        )
        rt.mta = fmt
        rt.pipeline = Pipeline(rt.cfg.name, make_parser(fmt, options), self.aggregate, (self.engine.observe,))

    def _log_notes(self, rt: LogRuntime) -> None:
        for event, fields in rt.follower.drain_notes():
            level = "warning" if event in ("log_unreadable", "log_missing", "state_mismatch") else "info"
            getattr(log, level)(event, **{**fields, "log": rt.cfg.name})

    def _announce(self, transitions: list[Transition]) -> None:
        for tr in transitions:
            if self.notifier is not None:
                self.notifier.notify(tr)

    # -- state -----------------------------------------------------------------------------

    def _restore(self) -> Mapping[str, Any]:
        loaded = load_state(self.state_path)
        if loaded.problem == "missing":
            log.info("state_missing", path=str(self.state_path), action="start at each log's start_at")
            return {}
        if loaded.problem or loaded.data is None:
            log.error(
                "state_unusable",
                path=str(self.state_path),
                problem=loaded.problem,
                action="counters start from zero; each log starts at its start_at, nothing is re-counted",
            )
            return {}
        data = loaded.data
        try:
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"unsupported state version {data.get('version')!r}")
            self.aggregate = Aggregate.from_dict(
                data["aggregate"],
                top_domains=self.cfg.daemon.top_domains,
                windows=self.cfg.daemon.bounce_ratio_windows,
            )
            if data.get("alerts"):
                self.engine = AlertEngine.from_dict(data["alerts"], rules_of(self.cfg.alerts))
        except (ValueError, KeyError, TypeError) as exc:
            log.error(
                "state_unusable",
                path=str(self.state_path),
                problem=str(exc),
                action="counters start from zero; each log starts at its start_at, nothing is re-counted",
            )
            return {}
        log.info("state_restored", path=str(self.state_path), logs=sorted(data.get("logs", {})))
        return data

    def _save(self, *, final: bool = False) -> None:
        with self.lock:
            data = {
                "version": STATE_VERSION,
                "saved_at": time.time(),
                "logs": {name: rt.follower.checkpoint() for name, rt in self.logs.items()},
                "formats": {name: rt.mta for name, rt in self.logs.items() if rt.mta},
                "aggregate": self.aggregate.to_dict(),
                "alerts": self.engine.to_dict(),
            }
        try:
            save_state(self.state_path, data)
        except OSError as exc:
            log.error("state_save_failed", path=str(self.state_path), error=exc.strerror or str(exc))
            return
        (log.info if final else log.debug)("state_saved", path=str(self.state_path))

    # -- config ----------------------------------------------------------------------------

    def _add_log(self, lcfg: Log, saved: Mapping[str, Any] | None, formats: Mapping[str, str]) -> None:
        follower = Follower(lcfg.name, lcfg.path, start_at=lcfg.start_at, saved=saved)
        rt = LogRuntime(lcfg, follower)
        self.logs[lcfg.name] = rt
        known = lcfg.format if lcfg.format != "auto" else formats.get(lcfg.name, "")
        if known:
            self._set_format(rt, known)

    def _watch_dirs(self) -> set[str]:
        dirs: set[str] = set()
        for rt in self.logs.values():
            dirs |= rt.follower.watch_dirs()
        return dirs

    def _reload(self) -> None:
        sdnotify.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config_reload_refused", error=str(exc), action="keeping the running config")
            sdnotify.ready("reload refused: invalid config")
            return
        old = self.cfg
        pending: list[Transition] = []
        if new.server != old.server or new.state != old.state:
            log.warning("config_reload_partial", detail="[server] and [state] changes need a restart")
        configure_logging(new.daemon.log_level)
        with self.lock:
            for name in [n for n in self.logs if n not in {lc.name for lc in new.logs}]:
                self.logs.pop(name).follower.close()
                log.info("log_removed", log=name)
            for lcfg in new.logs:
                rt = self.logs.get(lcfg.name)
                if rt is None or rt.cfg != lcfg:
                    saved = rt.follower.checkpoint() if rt is not None and rt.cfg.path == lcfg.path else None
                    if rt is not None:
                        rt.follower.close()
                    self._add_log(lcfg, saved, {})
                    log.info("log_configured", log=lcfg.name, path=lcfg.path)
            if new.alerts != old.alerts:
                pending = self.engine.advance()  # what observe() found since the last pass
                self.engine = AlertEngine.from_dict(self.engine.to_dict(), rules_of(new.alerts))
                for rt in self.logs.values():
                    if rt.pipeline is not None:
                        rt.pipeline.observers = (self.engine.observe,)
            self.cfg = Config(
                logs=new.logs, server=old.server, state=old.state, daemon=new.daemon, alerts=new.alerts
            )
        if new.alerts.receivers != old.alerts.receivers:
            if self.notifier is not None:
                self.notifier.close()
            self.notifier = notifier_from_config(new.alerts, self.instance)
            self.notifier.resume(self.engine.active())
        self._announce(pending)
        if self.watcher is not None:
            self.watcher.update_dirs(self._watch_dirs())
        if self.server is not None and old.server.web_config_file:
            # Renewed certificates and changed passwords apply without a restart.
            try:
                self.server.set_web_config(load_web_config(Path(old.server.web_config_file)))
            except (OSError, ValueError) as exc:
                log.error("web_config_reload_refused", error=str(exc), action="keeping the running one")
        log.info("config_reloaded", logs=len(self.logs))
        sdnotify.ready(f"following {len(self.logs)} logs")

    # -- what the HTTP side reads ----------------------------------------------------------

    def exposition(self) -> Exposition:
        with self.lock:
            snap = self.aggregate.snapshot(time.time())
            firing = self.engine.firing()
            statuses = tuple(
                LogStatus(
                    name=name,
                    mta=rt.mta,
                    up=rt.follower.up,
                    bytes_read=rt.follower.bytes_read,
                    rotations=rt.follower.rotations,
                    lag_bytes=rt.follower.lag_bytes,
                )
                for name, rt in self.logs.items()
            )
        # Every (alert, receiver, result) from the start, so alerts on failures see a series.
        notifications = {
            (rule.name, receiver.name, result): 0
            for rule in rules_of(self.cfg.alerts)
            for receiver in self.cfg.alerts.receivers
            for result in NOTIFY_RESULTS
        }
        if self.notifier is not None:
            notifications.update(self.notifier.counts())
        return Exposition(
            snapshot=snap,
            logs=statuses,
            alerts_firing=firing,
            notifications=notifications,
            version=__version__,
            watcher_up=self.watcher.alive() if self.watcher is not None else False,
            windows=tuple(self.cfg.daemon.bounce_ratio_windows),
        )

    def diagnosis(self) -> bytes:
        """The /diagnosis JSON body (issue 14): recent refusals by reason, offenders, fixes."""
        with self.lock:
            return diagnosis_json(self.aggregate.diagnosis)

    def ready(self) -> tuple[bool, str]:
        down = [name for name, rt in self.logs.items() if not rt.follower.up]
        if down:
            return False, "not open yet: " + ", ".join(sorted(down))
        return True, "ok"


def run_daemon(config_path: Path) -> int:
    """Entry point of `logscan run`."""
    daemon = Daemon(config_path)
    os.umask(0o077)
    return daemon.run()
