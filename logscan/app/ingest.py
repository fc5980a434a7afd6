"""One configured log at run time: its follower, its parser once the format is known, and
how a batch of raw lines reaches the aggregate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import structlog

from logscan.app.config import Log, zone
from logscan.app.sources import Source
from logscan.core.aggregate import Aggregate
from logscan.core.pipeline import LineCounts, Observer, Pipeline
from logscan.outputs.metrics import LogStatus
from logscan.parsers import make_parser
from logscan.parsers.base import ParserOptions
from logscan.parsers.detect import SAMPLE_LINES, detect
from logscan.sources.follower import Follower
from logscan.sources.journal import JournalSource

log = structlog.get_logger("logscan.daemon")
# One poll of a follower: decoded and counted before the next is read, while it is still in
# the CPU cache, so the daemon holds one read at a time, never a whole pass's budget. A log
# parsed line by line makes Python objects per line: 256 KiB reads keep its peak RSS 3-10 MB
# lower than 1 MiB ones. A log with a bulk reader makes few, and pays per batch: it reads
# 1 MiB, the size of `scan`'s chunks; except where its bulk reader makes a row of nearly every
# line (MailEnable: every line is a command or a reply). For MailEnable a 1M-line burst peaked
# at 60 MB with 1 MiB reads, 58 MB with 512 KiB and 57 MB with 256 KiB, at 98 %, 91-93 % and
# 83 % of `scan`'s speed (session 8, docs/benchmarks.md): 512 KiB.
READ_BYTES = 1 << 18
BULK_READ_BYTES = 1 << 20
ROW_PER_LINE_READ_BYTES: Final = {"mailenable": 1 << 19}
_WARN_EVENTS = ("log_unreadable", "log_missing", "state_mismatch")


@dataclass(slots=True)
class LogRuntime:
    """One configured log: its follower, and its parser once the format is known."""

    cfg: Log
    follower: Source
    mta: str = ""
    pipeline: Pipeline | None = None
    warned: set[str] = field(default_factory=set)
    saved_epoch: int = -1  # the follower's epoch in the last state on disk

    def set_format(self, fmt: str, default_tz: str, aggregate: Aggregate,
                   observers: Sequence[Observer]) -> None:
        """Parse this log as `fmt` from now on."""
        options = ParserOptions(log=self.cfg.name, tz=zone(self.cfg.timezone or default_tz),
                                reference_time=time.time())
        self.mta = fmt
        self.pipeline = Pipeline(self.cfg.name, make_parser(fmt, options), aggregate, tuple(observers))

    def read_bytes(self) -> int:
        """How much of this log to read at a time (see READ_BYTES)."""
        if self.pipeline is None or self.pipeline.bulk is None:
            return READ_BYTES
        return ROW_PER_LINE_READ_BYTES.get(self.mta, BULK_READ_BYTES)

    def choose_format(self, texts: list[str]) -> str:
        """The configured format, or the one detected from `texts`; "" when none is known yet."""
        if self.cfg.format != "auto":
            return self.cfg.format
        found = detect(texts).format
        if found is None:
            if "undetected" not in self.warned:
                self.warned.add("undetected")
                log.warning("log_format_unknown", log=self.cfg.name, lines=len(texts))
            return ""
        log.info("log_format_detected", log=self.cfg.name, format=found)
        return found

    def status(self) -> LogStatus:
        """What a scrape shows of this log (under the daemon's lock)."""
        f = self.follower
        gaps = f.cursor_gaps if isinstance(f, JournalSource) else None
        return LogStatus(name=self.cfg.name, mta=self.mta, up=f.up, bytes_read=f.bytes_read,
                         rotations=f.rotations, lag_bytes=f.lag_bytes, journal_cursor_gaps=gaps)

    def log_notes(self) -> None:
        """Pass the follower's state changes on to the operator's log."""
        for event, fields in self.follower.drain_notes():
            level = "warning" if event in _WARN_EVENTS else "info"
            getattr(log, level)(event, **{**fields, "log": self.cfg.name})

    def ingest(self, raw: list[bytes], wall: float, lock: threading.Lock, aggregate: Aggregate) -> None:
        """Parse and count runs of complete lines, each line ending in "\n" (Follower.poll with
        blocks=True); the pipeline must be set."""
        assert self.pipeline is not None
        self.pipeline.parser.set_reference_time(wall)
        # One decode per run of lines read (about 1 MiB: it stays in the CPU cache from read to
        # count), never a Python object per line; the bulk reader or the prefilter then skips
        # boring lines in C. The lock is held per run, so a scrape never waits long.
        batch = LineCounts()
        for block in raw:
            chunk = block.decode("utf-8", "surrogateescape")
            with lock:
                got = self.pipeline.feed_text(chunk)
            batch.parsed += got.parsed
            batch.ignored += got.ignored
            batch.unparsed += got.unparsed
            for reason, n in got.reasons.items():
                batch.reasons[reason] = batch.reasons.get(reason, 0) + n
        if batch.unparsed and batch.unparsed * 2 > batch.total and "mostly-unparsed" not in self.warned:
            self.warned.add("mostly-unparsed")
            log.warning(
                "log_lines_not_understood",
                log=self.cfg.name,
                format=self.mta,
                unparsed=batch.unparsed,
                lines=batch.total,
                reasons=batch.reasons,
                hint="wrong format in the config, or a log line shape this version does not know",
            )


def drain(source: Source, budget: int, take: Callable[[list[bytes]], None],
          notes: Callable[[], None] = lambda: None, *, step: int = READ_BYTES) -> None:
    """Hand `take` what `source` has, up to about `budget` bytes: a local file `step` bytes
    at a time; the journal and SMB in one poll (each poll of a share lists it).

    Stops early when nothing is left, or once the source's files changed (its epoch): the
    daemon saves such a change before reading on (docs/decisions/0013). `notes` runs after
    each poll, so the follower's notes reach the log in order."""
    step = step if isinstance(source, Follower) else budget
    epoch = source.epoch
    while budget > 0:
        before = source.bytes_read
        lines = source.poll(min(budget, step), blocks=True)
        notes()
        if lines:
            take(lines)
        # Bytes skipped inside an over-long line count too; a source that does not count bytes
        # is charged what it returned, so the loop always ends.
        budget -= max(source.bytes_read - before, sum(map(len, lines)), 1)
        if not lines or source.epoch != epoch or source.lag_bytes <= 0:
            return


def head_texts(raw: list[bytes]) -> list[str]:
    """The first lines of runs of lines (see ingest), decoded, for format detection."""
    lines: list[bytes] = []
    for block in raw:
        lines += block.split(b"\n", SAMPLE_LINES - len(lines))[:-1]
        if len(lines) >= SAMPLE_LINES:
            break
    return [b.decode("utf-8", "surrogateescape") for b in lines[:SAMPLE_LINES]]


def line_count(raw: list[bytes]) -> int:
    """How many lines runs of lines (see ingest) hold."""
    return sum(block.count(b"\n") for block in raw)
