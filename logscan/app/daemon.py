"""`logscan run`: wires tailers, parsers, aggregate, alerts, HTTP; owns lifecycle and signals."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from logscan import __version__
from logscan.app import sdnotify
from logscan.app.alerting import notification_counts, notifier_from_config, rules_of
from logscan.app.config import (
    DEFAULT_CONFIG,
    DEFAULT_PATH,
    Config,
    ConfigError,
    Log,
    Queue,
    load_config,
    parse_config,
)
from logscan.app.ingest import LogRuntime, drain, head_texts, line_count
from logscan.app.logging import configure_logging
from logscan.app.persistence import StateStore, saved, state_of
from logscan.app.reload import plan_reload
from logscan.app.sources import Source, source_of
from logscan.core.aggregate import Aggregate
from logscan.core.alerts import AlertEngine, Transition, explain
from logscan.core.diagnosis import diagnosis_json
from logscan.outputs.http import MetricsServer, load_web_config
from logscan.outputs.metrics import Exposition, make_registry
from logscan.outputs.notify import Notifier
from logscan.sources.queue import QueueSampler
from logscan.sources.watch import Watcher

log = structlog.get_logger("logscan.daemon")
# How many bytes of lines one log may hand over per pass, so one busy log cannot starve the others.
POLL_BYTES = 4 << 20


class Daemon:
    """The running daemon. `run()` returns the process exit code."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.cfg: Config = load_or_default(config_path)
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
        self.store = StateStore(self.cfg.state.dir)
        self.queue_sampler = queue_sampler_of(self.cfg.queue)  # [queue] needs a restart to change

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        configure_logging(self.cfg.daemon.log_level)
        log.info("starting", version=__version__, config=str(self.config_path), logs=len(self.cfg.logs))
        problem = self.store.prepare()
        if problem:
            # Without a state file every restart would be a counter reset: refuse to start.
            log.error("state_dir_unusable", dir=str(self.store.path.parent), error=problem)
            return 1
        restored = self.store.restore(self.cfg)
        if restored.aggregate is not None:
            self.aggregate = restored.aggregate
        if restored.engine is not None:
            self.engine = restored.engine
        for lcfg in self.cfg.logs:
            self._add_log(lcfg, restored.logs.get(lcfg.name), restored.formats)
        self.notifier = notifier_from_config(self.cfg.alerts, self.instance)
        self.notifier.resume(self.engine.active())
        try:
            web_config = (
                load_web_config(Path(self.cfg.server.web_config_file))
                if self.cfg.server.web_config_file
                else None
            )
            self.server = MetricsServer(
                self.cfg.server.listen, make_registry(self.exposition), self.ready, web_config,
                diagnosis=self.diagnosis,
            )
            self.server.start()
        except (OSError, ValueError) as exc:
            log.error("http_start_failed", listen=self.cfg.server.listen, error=str(exc))
            self._close()
            return 1
        self.watcher = Watcher(self._watch_dirs(), self.wake, polling=self.cfg.daemon.polling_observer)
        self.watcher.start()
        if self.queue_sampler is not None:
            self.queue_sampler.start()
        install_signals(self)
        for rt in self.logs.values():  # every position is on disk before the first line is read
            rt.follower.open()
            rt.log_notes()
        self._save()
        self._pass()
        sdnotify.ready(f"following {len(self.logs)} logs")
        saved = False
        try:
            self._loop()
        finally:
            with contextlib.suppress(OSError):  # a vanished notify socket must not cost the save
                sdnotify.stopping("saving state")
            saved = self._save(final=True)
            self._close()
        if not saved:  # exit non-zero so systemd shows it; a restart re-reads past the last good save
            log.error("stopped", state_saved=False, error=self.store.last_error)
            return 1
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

    def _close(self) -> None:
        if self.queue_sampler is not None:
            self.queue_sampler.stop()
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
        """Read what every log has; True when some log still has more waiting.

        A pass that opened, rotated or closed a file ends with a save (the interval retries a failed one)."""
        busy = self._pass_once()
        moved = any(rt.follower.epoch != rt.saved_epoch for rt in self.logs.values())
        if moved and not self.store.last_error:
            self._save()
        return busy

    def _pass_once(self) -> bool:
        busy = False
        caught_up: list[str] = []
        wall = time.time()
        for name, rt in list(self.logs.items()):
            drain(rt.follower, POLL_BYTES, partial(self._ingest, rt, wall=wall), rt.log_notes,
                  step=rt.read_bytes())
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
            # Each alert says what its replies mostly are (reason, offenders, fix).
            transitions = [explain(tr, self.aggregate.diagnosis) for tr in transitions]
        self._announce(transitions)
        return busy

    def _ingest(self, rt: LogRuntime, raw: list[bytes], *, wall: float) -> None:
        if rt.pipeline is None:
            fmt = rt.choose_format(head_texts(raw))
            if not fmt:
                with self.lock:
                    self.aggregate.count_lines(rt.cfg.name, "unparsed", line_count(raw), "unknown-format")
                return
            self._set_format(rt, fmt)
        rt.ingest(raw, wall, self.lock, self.aggregate)

    def _set_format(self, rt: LogRuntime, fmt: str) -> None:
        rt.set_format(fmt, self.cfg.daemon.timezone, self.aggregate, (self.engine,))

    def _announce(self, transitions: list[Transition]) -> None:
        for tr in transitions:
            if self.notifier is not None:
                self.notifier.notify(tr)

    # -- state -----------------------------------------------------------------------------

    def _save(self, *, final: bool = False) -> bool:
        """Offsets and counters together, from one moment; True when they reached the disk."""
        with self.lock:
            logs = dict(self.logs)
            epochs, data = state_of(logs, self.aggregate, self.engine)
        return self.store.save(data, final=final) and saved(logs, epochs)

    # -- config ----------------------------------------------------------------------------

    def _add_log(self, lcfg: Log, saved: Mapping[str, Any] | Source | None,
                 formats: Mapping[str, str]) -> None:
        # rt.cfg stays as configured, so a reload compares like with like and keeps the position.
        source = source_of(lcfg, saved) if saved is None or isinstance(saved, Mapping) else saved
        rt = LogRuntime(lcfg, source)
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
            new = load_or_default(self.config_path)
        except ConfigError as exc:
            log.error("config_reload_refused", error=str(exc), action="keeping the running config")
            sdnotify.ready("reload refused: invalid config")
            return
        old = self.cfg
        pending: list[Transition] = []
        if new.server != old.server or new.state != old.state:
            log.warning("config_reload_partial", detail="[server] and [state] changes need a restart")
        configure_logging(new.daemon.log_level)
        plan = plan_reload(old, new, {name: rt.cfg for name, rt in self.logs.items()})
        try:
            # Every new follower is built before anything changes: one that cannot run refuses
            # the whole reload, and the old config keeps running with all its counts.
            made = {lcfg.name: source_of(lcfg, None) for lcfg, keep in plan.configured if not keep}
        except (ValueError, OSError) as exc:
            log.error("config_reload_refused", error=str(exc), action="keeping the running config")
            sdnotify.ready("reload refused: a log cannot be followed")
            return
        with self.lock:
            for name in plan.removed:
                self.logs.pop(name).follower.close()
                log.info("log_removed", log=name)
            for lcfg, keep_position in plan.configured:
                rt = self.logs.get(lcfg.name)
                saved = rt.follower.checkpoint() if rt is not None and keep_position else None
                if rt is not None:
                    rt.follower.close()
                self._add_log(lcfg, made.get(lcfg.name, saved), {})
                log.info("log_configured", log=lcfg.name, path=lcfg.path)
            if plan.alerts_changed:
                pending = self.engine.advance()  # what observe() found since the last pass
                self.engine = AlertEngine.from_dict(self.engine.to_dict(), rules_of(new.alerts))
                for rt in self.logs.values():
                    if rt.pipeline is not None:
                        rt.pipeline.observers = (self.engine,)
            self.cfg = plan.config
        if plan.receivers_changed:
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
            statuses = tuple(rt.status() for rt in self.logs.values())
        notifications = notification_counts(self.cfg.alerts, self.notifier)
        return Exposition(
            snapshot=snap,
            logs=statuses,
            alerts_firing=firing,
            notifications=notifications,
            version=__version__,
            watcher_up=self.watcher.alive() if self.watcher is not None else False,
            windows=tuple(self.cfg.daemon.bounce_ratio_windows),
            queues=(self.queue_sampler.status(),) if self.queue_sampler is not None else (),
            state_save_failures=self.store.failures,
            state_last_save=self.store.last_saved,
        )

    def diagnosis(self) -> bytes:
        """The /diagnosis JSON body: recent refusals by reason, offenders, fixes."""
        with self.lock:
            return diagnosis_json(self.aggregate.diagnosis)

    def ready(self) -> tuple[bool, str]:
        if self.store.last_error:  # a kill now would lose the counts since the last good save
            return False, self.store.unsaved()
        down = [name for name, rt in self.logs.items() if not rt.follower.up]
        if down:
            return False, "not open yet: " + ", ".join(sorted(down))
        return True, "ok"


def install_signals(daemon: Daemon) -> None:
    """SIGTERM/SIGINT stop the daemon (after a final save); SIGHUP asks for a reload."""

    def on_term(signum: int, _frame: FrameType | None) -> None:
        log.info("signal", signal=signal.Signals(signum).name, action="stop")
        daemon.stop()

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        daemon.reload_requested = True
        daemon.wake.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)


def load_or_default(path: Path) -> Config:
    """The config at `path`; the built-in default when `path` is the default path and absent."""
    if path == DEFAULT_PATH and not path.exists():
        return parse_config(DEFAULT_CONFIG, "(built-in default config)")
    return load_config(path)


def run_daemon(config_path: Path) -> int:
    """Entry point of `logscan run`."""
    daemon = Daemon(config_path)
    os.umask(0o077)
    return daemon.run()


def queue_sampler_of(q: Queue) -> QueueSampler | None:
    """The [queue] sampler, or None when no mta is set."""
    if not q.mta:
        return None
    return QueueSampler(
        q.mta,
        interval=q.interval,
        timeout=q.timeout,
        command=tuple(q.command),
        directory=q.directory,
        on_error=lambda msg: log.warning("queue_sample_failed", error=msg),
    )
