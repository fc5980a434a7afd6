"""Watcher on real folders: wakes on changes, survives handler errors and missing folders, idles."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from logscan.sources.follower import Follower
from logscan.sources.watch import Watcher, _Wake
from tests.helpers_files import LogWriter, rename_rotate


def _wakes(wake: threading.Event, timeout: float = 5.0) -> bool:
    ok = wake.wait(timeout)
    wake.clear()
    return ok


@pytest.mark.parametrize("polling", [False, True])
def test_wakes_on_append_rename_and_create(tmp_path: Path, polling: bool) -> None:
    wake = threading.Event()
    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    w = Watcher([str(tmp_path)], wake, polling=polling)
    w.start()
    try:
        assert w.alive()
        time.sleep(0.2 if not polling else 1.2)  # let a polling observer take its first snapshot
        wake.clear()
        with log.open("ab") as fh:
            fh.write(b"x\n")
        assert _wakes(wake)
        log.rename(tmp_path / "mail.log.1")
        assert _wakes(wake)
        log.write_bytes(b"")
        assert _wakes(wake)
    finally:
        w.stop()
    assert not w.alive()


def test_our_own_reads_do_not_wake_us(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_bytes(b"x\n")
    wake = threading.Event()
    w = Watcher([str(tmp_path)], wake)
    w.start()
    try:
        time.sleep(0.1)
        wake.clear()
        for _ in range(3):
            with log.open("rb") as fh:  # what Follower does when it opens or fingerprints a file
                fh.read()
        assert not _wakes(wake, 0.5)
        with log.open("ab") as fh:
            fh.write(b"y\n")
        assert _wakes(wake)
    finally:
        w.stop()


def test_missing_folder_is_retried_until_it_exists(tmp_path: Path) -> None:
    wake = threading.Event()
    later = tmp_path / "later"
    w = Watcher([str(later)], wake)
    w.start()
    try:
        assert w.watching() == set()
        assert str(later) in w.schedule_errors
        assert "FileNotFoundError" in w.schedule_errors[str(later)]
        w.retry_missing()
        assert w.watching() == set()
        later.mkdir()
        w.retry_missing()
        assert w.watching() == {str(later)}
        assert w.schedule_errors == {}
        (later / "SMTP-Activity-261129.log").write_bytes(b"a\r\n")
        assert _wakes(wake)
    finally:
        w.stop()


def test_folder_deleted_and_recreated_is_watched_again(tmp_path: Path) -> None:
    d = tmp_path / "exim4"
    d.mkdir()
    wake = threading.Event()
    w = Watcher([str(d)], wake)
    w.start()
    try:
        assert w.watching() == {str(d)}
        d.rmdir()
        w.retry_missing()
        assert w.watching() == set()
        d.mkdir()
        w.retry_missing()
        assert w.watching() == {str(d)}
        time.sleep(0.1)
        wake.clear()
        (d / "mainlog").write_bytes(b"x\n")
        assert _wakes(wake)
        assert w.alive()
    finally:
        w.stop()


def test_missing_folder_is_picked_up_by_the_helper_thread(tmp_path: Path) -> None:
    wake = threading.Event()
    later = tmp_path / "Logging" / "SMTP"
    w = Watcher([str(later)], wake, retry_every=0.05)
    w.start()
    try:
        assert w.watching() == set()
        later.mkdir(parents=True)
        assert _wakes(wake)  # woken when the watch is finally in place
        assert w.watching() == {str(later)}
        (later / "SMTP-Activity-261129.log").write_bytes(b"a\r\n")
        assert _wakes(wake)
    finally:
        w.stop()
    assert not w.alive()


def test_update_dirs_adds_and_removes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    wake = threading.Event()
    w = Watcher([str(a)], wake)
    w.start()
    try:
        w.update_dirs([str(b)])
        assert w.watching() == {str(b)}
        time.sleep(0.1)
        wake.clear()
        (a / "x").write_bytes(b"1")
        assert not _wakes(wake, 0.5)  # a is no longer watched
        (b / "x").write_bytes(b"1")
        assert _wakes(wake)
    finally:
        w.stop()


def test_handler_error_never_kills_the_observer(tmp_path: Path) -> None:
    class Exploding(threading.Event):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def set(self) -> None:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("boom")
            super().set()

    wake = Exploding()
    w = Watcher([str(tmp_path)], wake)
    w.start()
    try:
        (tmp_path / "a").write_bytes(b"1")
        time.sleep(0.3)
        assert w.alive()
        (tmp_path / "b").write_bytes(b"1")
        assert wake.wait(5)
        assert w.alive()
        assert w._handler.errors >= 1
    finally:
        w.stop()


def test_wake_handler_swallows_errors() -> None:
    class Broken(threading.Event):
        def set(self) -> None:
            raise OSError("nope")

    h = _Wake(Broken())
    h.on_any_event(None)  # type: ignore[arg-type]  # the event itself is never looked at
    assert h.errors == 1


def test_idle_watcher_uses_almost_no_cpu(tmp_path: Path) -> None:
    wake = threading.Event()
    w = Watcher([str(tmp_path)], wake)
    w.start()
    try:
        before = os.times()
        t0 = time.monotonic()
        time.sleep(1.0)
        spent = (os.times().user - before.user) + (os.times().system - before.system)
        elapsed = time.monotonic() - t0
    finally:
        w.stop()
    assert spent / elapsed < 0.05, spent  # an inotify observer blocks in read(); no busy loop


def test_daemon_style_loop_sees_lines_soon_after_they_are_written(tmp_path: Path) -> None:
    """Watcher wakes, Follower reads; the timed wait is the safety net for lost events."""
    log = tmp_path / "mail.log"
    w = LogWriter(log)
    f = Follower("m", str(log), start_at="end")
    wake = threading.Event()
    watcher = Watcher(f.watch_dirs(), wake)
    got: list[tuple[float, bytes]] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            wake.wait(5.0)  # a real daemon polls every few seconds even without events
            wake.clear()
            got.extend((time.monotonic(), line) for line in f.poll())

    f.poll()
    watcher.start()
    t = threading.Thread(target=loop)
    t.start()
    try:
        sent: list[tuple[float, bytes]] = []
        for i in range(20):
            if i == 10:
                rename_rotate(log)
                w.reopen()
            sent += [(time.monotonic(), line) for line in w.line(1)]
            time.sleep(0.02)
        deadline = time.monotonic() + 5
        while len(got) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        wake.set()
        t.join()
        watcher.stop()
    assert [line for _, line in got] == [line for _, line in sent]
    delays = [g - s for (s, _), (g, _) in zip(sent, got, strict=True)]
    assert max(delays) < 1.0, delays  # driven by events, not by the 5 s timer
