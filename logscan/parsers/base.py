"""What every parser shares: its interface, its options and the SMTP reply grammar."""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from itertools import islice
from operator import le
from typing import ClassVar, Protocol, cast, runtime_checkable

from logscan.events import MTA, Direction, EventBatch, ParseResult

# Lines longer than this are cut before parsing: Postfix itself cuts at 2,000 and
# journald at 48 KiB; a longer line is hostile or broken, and must not cost more.
MAX_LINE = 65536

# RFC 5321 basic code at the start of a reply, then RFC 3463 enhanced code if present.
# Only [2-5]xx is a reply; "850 NONSENSE" (Exim test suite) is not.
_REPLY = re.compile(r"([2-5][0-9][0-9])(?:[ -]|$)(?:\(?#?([245]\.[0-9]{1,3}\.[0-9]{1,3})(?![0-9.]))?")
_DOMAIN_OK = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?\Z")


@dataclass(slots=True)
class ParserOptions:
    """Settings a parser needs that the line does not carry.

    `reference_time` (epoch seconds) dates syslog lines that have no year: a month later
    than the reference month belongs to the year before. The caller sets it (file mtime
    for `scan`, the current time for the daemon); the parser never reads a clock.
    `tz` is the zone of timestamps that carry none (None: the machine's local zone).
    """

    log: str = ""
    tz: tzinfo | None = None
    reference_time: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


class Parser(Protocol):
    """A pure parser: one line in (no newline), events or an Unparsed reason out.

    Optional class attribute `prefilter: ClassVar[Prefilter | None]` (read through
    `prefilter_of`, so a parser without it still satisfies this protocol): lines it lets
    the pipeline skip are counted as ignored without calling parse().
    """

    mta: ClassVar[MTA]

    def __init__(self, options: ParserOptions) -> None: ...

    def parse(self, line: str) -> ParseResult: ...

    def set_reference_time(self, t: float) -> None:
        """Date year-less timestamps against `t` (the caller's clock; parsers read none)."""
        ...


def reply_codes(text: str) -> tuple[str, str]:
    """Basic and enhanced code at the start of a reply text; ("", "") when it has none."""
    m = _REPLY.match(text)
    if m is None:
        return "", ""
    return m.group(1), m.group(2) or ""


def domain_of(address: str) -> str:
    """Lower-cased domain of an address (`<a@B.org>` → `b.org`); "" when there is none or it is junk."""
    at = address.rfind("@")
    if at < 0:
        return ""
    dom = address[at + 1 :].strip().strip("<>[]").rstrip(".").lower()
    if not dom or _DOMAIN_OK.match(dom) is None:
        return ""
    return dom


@dataclass(frozen=True, slots=True, init=False)
class Prefilter:
    """What lets the pipeline skip lines without calling parse() (docs/decisions/0006-prefilter.md).

    The parser's promise: parse(line) is NOTHING for every line that contains none of
    `triggers` and whose start matches `boring` (a strict, anchored shape, usually "a valid
    timestamp"), whatever lines came before it. So every line yielding events or Unparsed
    contains a trigger or fails the shape. `boring` is matched against the line followed by
    its "\n", and must never match past that "\n" (use `[^...\n]` classes, never `.` with
    DOTALL): in a chunk it is applied as the lookahead `\n(?!boring)`, which sre scans at C
    speed from the literal "\n".
    """

    triggers: tuple[str, ...]
    boring: re.Pattern[str]  # at a line start: the line has the shape that may be skipped
    odd: re.Pattern[str]  # in a chunk: a "\n" NOT followed by a boring line start

    def __init__(self, triggers: tuple[str, ...], boring: str) -> None:
        if not triggers or any(not t or "\n" in t for t in triggers):
            raise ValueError("triggers must be non-empty and hold no newline")
        object.__setattr__(self, "triggers", triggers)
        object.__setattr__(self, "boring", re.compile(boring))
        object.__setattr__(self, "odd", re.compile("\n(?!" + boring + ")"))

    def skips(self, line: str) -> bool:
        """True when the pipeline would count `line` (no newline) as ignored without parsing it."""
        if "\n" in line:
            return False
        return self.boring.match(line + "\n") is not None and not any(t in line for t in self.triggers)


def prefilter_of(parser: object) -> Prefilter | None:
    """The parser's optional `prefilter` class attribute (None: every line goes to parse())."""
    pf = getattr(parser, "prefilter", None)
    return pf if isinstance(pf, Prefilter) else None


@runtime_checkable
class Run(Protocol):
    """Consecutive rows a bulk reader keeps as one item (MailEnable's C reader), for batch()."""

    def lines(self) -> list[str]:
        """The rows' lines in order, for parse() when the batch goes line by line."""
        ...


# What a bulk reader makes of a chunk's lines that matter, in order: a line for parse(), or
# a row of fields for batch() whose last field is the line itself. A reader may give a Run in
# place of a run of rows (typed as a row: it goes where rows go, to batch() and lines_of()).
Item = str | tuple[str, ...]


def lines_of(rows: Iterable[object]) -> list[str]:
    """The lines of a group of rows for parse(): each row's last field, or a Run's lines."""
    lines: list[str] = []
    for row in rows:
        if isinstance(row, Run):
            lines.extend(row.lines())
        else:
            lines.append(cast(tuple[str, ...], row)[-1])
    return lines


Reply = tuple[Direction, str, str]


def per_minute(times: list[float], replies: list[Reply]) -> tuple[list[float], list[Reply], list[int]] | None:
    """EventBatch.times, .codes and .weights of these replies: per minute, each reply's first
    time, the reply and its count in the order replies first occur, then the minute's last time
    and reply with a count of 0. None when times go back."""
    if not all(map(le, times, islice(times, 1, None))):
        return None
    out_times: list[float] = []
    codes: list[Reply] = []
    weights: list[int] = []
    i, n = 0, len(times)
    while i < n:
        j = bisect_left(times, (int(times[i] // 60) + 1) * 60, i + 1)  # as AlertEngine._count_runs
        for reply, count in Counter(replies[i:j]).items():  # in the order they first occur
            out_times.append(times[replies.index(reply, i, j)])
            codes.append(reply)
            weights.append(count)
        out_times.append(times[j - 1])
        codes.append(replies[j - 1])
        weights.append(0)
        i = j
    return out_times, codes, weights


def reply_lists(
    times: list[float], keys: list[str], reply_of: Mapping[str, Reply], grouped: bool
) -> tuple[list[float], list[Reply], list[int]]:
    """EventBatch.times, .codes and .weights of replies: each one listed, or when `grouped` and
    their times never go back, per_minute()'s groups."""
    codes = list(map(reply_of.__getitem__, keys))
    found = per_minute(times, codes) if grouped else None
    return found if found is not None else (times, codes, [])


class BulkReader(Protocol):
    """Reads many lines at once into grouped events, exactly as parse() line by line would."""

    def scan(self, chunk: str, rows: bool) -> tuple[int, list[Item]] | None:
        """(lines in chunk, the items of its lines that are not skipped); None: not done here.

        Without `rows` every item is a line. The lines are those the prefilter keeps.
        """
        ...

    def rows(self, lines: list[str]) -> list[Item] | None:
        """An item for each of these lines; None: parse() them all."""
        ...

    def batch(
        self,
        rows: list[tuple[str, ...]],
        each_reply: bool = False,
        aligned: bool = True,
        per_minute: bool = False,
    ) -> EventBatch | None:
        """The events of consecutive rows, grouped; None: parse() their lines instead.

        `each_reply`: also fill EventBatch.times and .codes (what alert rules count); then
        `aligned` keeps `domains` parallel to them (no EventBatch.unnamed), which only a
        per_domain rule reads: False lets a reader count events without a domain per class.
        `per_minute` (never with `aligned`): a reader may group each minute's replies
        (EventBatch.weights) instead of listing each."""
        ...
