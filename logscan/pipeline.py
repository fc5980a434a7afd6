"""The hot path shared by `scan` and the daemon: lines → parser → aggregate (+ observers)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from logscan.aggregate import Aggregate
from logscan.events import Event, Unparsed
from logscan.parsers.base import Parser

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


class Pipeline:
    """Feeds one log's lines through its parser into the aggregate and any observers."""

    __slots__ = ("aggregate", "counts", "keep_examples", "log", "observers", "parser")

    def __init__(
        self,
        log: str,
        parser: Parser,
        aggregate: Aggregate,
        observers: Iterable[Callable[[Event], None]] = (),
        *,
        keep_examples: bool = False,
    ) -> None:
        self.log = log
        self.parser = parser
        self.aggregate = aggregate
        self.observers = tuple(observers)
        self.keep_examples = keep_examples
        self.counts = LineCounts()

    def feed(self, lines: Iterable[str]) -> LineCounts:
        """Parse and count every line; returns the counts of this call only."""
        parse = self.parser.parse
        add = self.aggregate.add
        observers = self.observers
        parsed = ignored = unparsed = 0
        batch = LineCounts()
        for line in lines:
            result = parse(line)
            if result.__class__ is tuple:
                if result:
                    parsed += 1
                    for ev in result:
                        add(ev)
                        for observe in observers:
                            observe(ev)
                else:
                    ignored += 1
            else:
                unparsed += 1
                self._unparsed(batch, result, line)  # type: ignore[arg-type]
        batch.parsed, batch.ignored, batch.unparsed = parsed, ignored, unparsed
        self._fold(batch)
        return batch

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
