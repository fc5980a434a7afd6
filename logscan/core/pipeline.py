"""The hot path shared by `scan` and the daemon: lines → parser → aggregate (+ observers)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Protocol, cast, runtime_checkable

from logscan.core.aggregate import Aggregate
from logscan.events import Event, EventBatch, Unparsed
from logscan.parsers import bulk_reader_of
from logscan.parsers.base import BulkReader, Item, Parser, Prefilter, lines_of, prefilter_of

EXAMPLES_PER_REASON = 3


@dataclass(slots=True)
class LineCounts:
    """What became of the lines of one log."""

    parsed: int = 0
    ignored: int = 0
    unparsed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.parsed + self.ignored + self.unparsed


@runtime_checkable
class Observer(Protocol):
    """Something fed alongside the aggregate (the alert engine): each event the parser gives,
    or each EventBatch the aggregate took, never both for the same line."""

    def observe(self, ev: Event) -> None: ...

    def observe_batch(self, batch: EventBatch) -> None: ...

    def observe_events(self, events: list[Event]) -> None:
        """observe() of each, in order: the events of one call of the per-line path."""
        ...


def needs_domains(observer: Observer, log: str) -> bool:
    """Whether `observer` reads the domain of each reply of `log`'s batches (an optional
    `needs_domains(log)` of it says; without one, yes): see BulkReader.batch's `aligned`."""
    wants: Callable[[str], bool] | None = getattr(observer, "needs_domains", None)
    return True if wants is None else wants(log)


def takes_minutes(observer: Observer, log: str) -> bool:
    """Whether `observer` takes `log`'s replies grouped per minute (an optional
    `takes_minutes(log)` of it says; without one, no): see BulkReader.batch's `per_minute`."""
    takes: Callable[[str], bool] | None = getattr(observer, "takes_minutes", None)
    return False if takes is None else takes(log)


class Pipeline:
    """Feeds one log's lines through its parser into the aggregate and any observers."""

    __slots__ = (
        "_aligned",
        "_batched",
        "_each",
        "_observers",
        "_per_minute",
        "aggregate",
        "bulk",
        "counts",
        "keep_examples",
        "log",
        "parser",
        "prefilter",
    )

    def __init__(
        self,
        log: str,
        parser: Parser,
        aggregate: Aggregate,
        observers: Iterable[Observer | Callable[[Event], None]] = (),
        *,
        keep_examples: bool = False,
    ) -> None:
        self.log = log
        self.parser = parser
        self.aggregate = aggregate
        self.observers = tuple(observers)
        self.keep_examples = keep_examples
        self.counts = LineCounts()
        self.prefilter: Prefilter | None = prefilter_of(parser)
        self.bulk: BulkReader | None = bulk_reader_of(parser)

    @property
    def observers(self) -> tuple[Observer | Callable[[Event], None], ...]:
        """Fed each event or batch; a plain callable needs each event, so it turns batches off."""
        return self._observers

    @observers.setter
    def observers(self, observers: Iterable[Observer | Callable[[Event], None]]) -> None:
        self._observers = tuple(observers)
        self._batched = tuple(o for o in self._observers if isinstance(o, Observer))
        self._each = tuple(o for o in self._observers if not isinstance(o, Observer))
        self._aligned = any(needs_domains(o, self.log) for o in self._batched)
        self._per_minute = all(takes_minutes(o, self.log) for o in self._batched)

    def feed_text(self, chunk: str) -> LineCounts:
        """Like feed(), for a chunk of whole lines each ending in "\n"; returns this call's counts.

        With the parser's prefilter, only lines holding a trigger or not of the boring shape
        reach parse() (in file order); the others are counted as ignored, with no Python step
        per skipped line. With the parser's bulk reader, runs of usual event lines are counted
        in EventBatches (docs/decisions/0008-bulk-scan.md), which observers get whole
        (docs/decisions/0016-alerts-from-counts.md). The result is
        exactly that of feed(chunk.split("\n")[:-1]). A chunk not ending in "\n" is read as if
        it did.
        """
        if not chunk:
            return LineCounts()
        if chunk[-1] != "\n":
            chunk += "\n"
        batch = LineCounts()
        bulk = self.bulk
        rows = len(self._batched) == len(self._observers)
        scanned = bulk.scan(chunk, rows) if bulk is not None else None
        if bulk is not None and scanned is not None:
            total, found = scanned
            self._parse_items(bulk, found, batch)
            batch.ignored = total - batch.parsed - batch.unparsed
            self._fold(batch)
            return batch
        pf = self.prefilter
        if pf is None:
            lines = chunk.split("\n")
            lines.pop()
            return self.feed(lines)
        find = chunk.find
        rfind = chunk.rfind
        # End (the index of its "\n") → start (-1: not looked up yet) of each line to parse.
        spans: dict[int, int] = {}
        for trigger in pf.triggers:
            i = find(trigger)
            while i >= 0:
                end = find("\n", i)
                if end not in spans:
                    spans[end] = -1
                i = find(trigger, end + 1)
        if pf.boring.match(chunk) is None:
            spans[find("\n")] = 0
        last = len(chunk) - 1
        for m in pf.odd.finditer(chunk):
            start = m.end()
            if start <= last:
                spans[find("\n", start)] = start

        lines = [
            chunk[(rfind("\n", 0, end) + 1 if start < 0 else start) : end]
            for end, start in sorted(spans.items())
        ]
        items = bulk.rows(lines) if bulk is not None and rows and lines else None
        if bulk is not None and items is not None:
            self._parse_items(bulk, items, batch)
        else:
            self._parse(lines, batch)
        batch.ignored = chunk.count("\n") - batch.parsed - batch.unparsed
        self._fold(batch)
        return batch

    def feed(self, lines: Iterable[str]) -> LineCounts:
        """Parse and count every line; returns the counts of this call only."""
        batch = LineCounts()
        self._parse(lines, batch)
        self._fold(batch)
        return batch

    def _parse_items(self, bulk: BulkReader, items: list[Item], batch: LineCounts) -> None:
        """_parse() for a bulk reader's items: each run of rows in one batch, lines one by one."""
        for kind, run in groupby(items, type):
            if kind is str:
                self._parse(cast(list[str], list(run)), batch)
                continue
            rows = cast(list[tuple[str, ...]], list(run))
            events = bulk.batch(rows, bool(self._batched), self._aligned, self._per_minute)
            if events is not None and self.aggregate.add_batch(events):
                batch.parsed += events.events
                for observer in self._batched:
                    observer.observe_batch(events)
            else:
                self._parse(lines_of(rows), batch)

    def _parse(self, lines: Iterable[str], batch: LineCounts) -> None:
        """The hot loop: parse each line, fold its events in, count it into `batch`."""
        parse = self.parser.parse
        add = self.aggregate.add
        # Observers that take lists get this call's events at the end (cheaper than one
        # call per event); plain callables each event as it comes.
        observers = self._each
        seen: list[Event] = []
        keep = seen.extend if self._batched else None
        parsed = ignored = unparsed = 0
        for line in lines:
            result = parse(line)
            if result.__class__ is tuple:
                if result:
                    parsed += 1
                    for ev in result:
                        add(ev)
                        for observe in observers:
                            observe(ev)
                    if keep is not None:
                        keep(result)
                else:
                    ignored += 1
            else:
                unparsed += 1
                self._unparsed(batch, result, line)  # type: ignore[arg-type]
        if seen:
            for observer in self._batched:
                observer.observe_events(seen)
        batch.parsed += parsed
        batch.ignored += ignored
        batch.unparsed += unparsed

    def _unparsed(self, batch: LineCounts, result: Unparsed, line: str) -> None:
        reason = result.reason
        batch.reasons[reason] = batch.reasons.get(reason, 0) + 1
        if self.keep_examples:
            examples = self.counts.examples.setdefault(reason, [])
            if len(examples) < EXAMPLES_PER_REASON:
                examples.append(line[:300])

    def _fold(self, batch: LineCounts) -> None:
        agg, log, counts = self.aggregate, self.log, self.counts
        counts.parsed += batch.parsed
        counts.ignored += batch.ignored
        counts.unparsed += batch.unparsed
        if batch.parsed:
            agg.count_lines(log, "parsed", batch.parsed)
        if batch.ignored:
            agg.count_lines(log, "ignored", batch.ignored)
        for reason, n in batch.reasons.items():
            counts.reasons[reason] = counts.reasons.get(reason, 0) + n
            agg.count_lines(log, "unparsed", n, reason)
