"""Wake-up hints from the file system: a watchdog observer on the log folders sets an Event."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

# Opened / ClosedNoWrite are left out on purpose: the tailer's own reads would wake it again.
_EVENTS: list[type[FileSystemEvent]] = [
    FileModifiedEvent, FileCreatedEvent, FileMovedEvent, FileDeletedEvent, FileClosedEvent,
    FileAttribEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
]


class _Wake(FileSystemEventHandler):
    """Sets the event; any failure is swallowed because one would kill the observer thread for good."""

    def __init__(self, wake: threading.Event) -> None:
        self._wake = wake
        self.errors = 0

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._wake.set()
        except Exception:
            self.errors += 1


class Watcher:
    """watchdog observer on the log FOLDERS (not files) that sets a threading.Event on any change.

    Events are hints only; the daemon still polls on a timer. Every `retry_every` seconds a helper
    thread re-watches folders that appeared, vanished or were replaced (one stat per folder).
    """

    def __init__(self, dirs: Iterable[str], wake: threading.Event, *, polling: bool = False,
                 retry_every: float = 5.0) -> None:
        self._wanted: set[str] = set(dirs)
        self._wake = wake
        self._handler = _Wake(wake)
        self._polling = polling
        self._retry_every = retry_every
        self._stopped = threading.Event()
        self._retrier: threading.Thread | None = None
        self._observer: BaseObserver | None = None
        self._watches: dict[str, ObservedWatch] = {}
        self._idents: dict[str, tuple[int, int]] = {}  # (dev, inode) of each watched folder
        self._lock = threading.Lock()
        self.schedule_errors: dict[str, str] = {}

    def start(self) -> None:
        """Start the observer thread and watch every folder that exists now."""
        with self._lock:
            if self._observer is not None:
                return
            observer: BaseObserver = PollingObserver() if self._polling else Observer()
            observer.daemon = True
            observer.start()
            self._observer = observer
            self._sync()
            self._stopped.clear()
            self._retrier = threading.Thread(target=self._retry_loop, name="logscan-watch-retry",
                                             daemon=True)
            self._retrier.start()

    def stop(self) -> None:
        """Stop and join the observer thread."""
        self._stopped.set()
        with self._lock:
            observer, self._observer = self._observer, None
            self._watches.clear()
            retrier, self._retrier = self._retrier, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
        if retrier is not None:
            retrier.join(timeout=5)

    def _retry_loop(self) -> None:
        while not self._stopped.wait(self._retry_every):
            try:
                self.retry_missing()
            except Exception:  # never let the helper die; the daemon's own polling still works
                self._handler.errors += 1

    def update_dirs(self, dirs: Iterable[str]) -> None:
        """Watch exactly `dirs`; also the retry hook for folders that did not exist before."""
        with self._lock:
            self._wanted = set(dirs)
            if self._observer is not None:
                self._sync()

    def retry_missing(self) -> None:
        """Re-watch folders that appeared, vanished or were replaced now (the helper thread does it too)."""
        with self._lock:
            if self._observer is not None:
                self._sync()

    def watching(self) -> set[str]:
        """Folders currently watched."""
        with self._lock:
            return set(self._watches)

    def alive(self) -> bool:
        """True while the observer thread runs."""
        observer = self._observer
        return observer is not None and observer.is_alive()

    def _sync(self) -> None:
        observer = self._observer
        assert observer is not None
        for d in list(self._watches):
            if d in self._wanted and _ident(d) == self._idents.get(d):
                continue
            # Unwanted now, or deleted / replaced: inotify watched the old folder's inode.
            with contextlib.suppress(KeyError, OSError):
                observer.unschedule(self._watches[d])
            del self._watches[d]
            self._idents.pop(d, None)
        for d in sorted(self._wanted - set(self._watches)):
            try:
                ident = _ident(d)
                self._watches[d] = observer.schedule(self._handler, d, recursive=False,
                                                     event_filter=_EVENTS)
                if ident is not None:
                    self._idents[d] = ident
            except OSError as exc:
                # watchdog 7 raises FileNotFoundError for a missing folder; inotify limits give
                # errno 24/28. Either way: remember why, and retry on a later call.
                self.schedule_errors[d] = f"{type(exc).__name__}: {exc}"
            else:
                if self.schedule_errors.pop(d, None) is not None:
                    self._wake.set()  # files may have arrived before the watch did
        for d in set(self.schedule_errors) - self._wanted:
            del self.schedule_errors[d]


def _ident(d: str) -> tuple[int, int] | None:
    try:
        st = Path(d).stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
