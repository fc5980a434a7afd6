"""The one value type every parser produces, and the parse result around it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

import msgspec

Direction = Literal["outbound", "inbound"]
# "" means the line states no outcome (a reply seen on one attempt, a greeting, ...).
Status = Literal["", "sent", "bounced", "deferred", "expired", "rejected"]
MTA = Literal["postfix", "exim", "mailenable"]

DELIVERY_STATUSES: Final = ("sent", "bounced", "deferred", "expired")


class Event(msgspec.Struct, frozen=True, gc=False):
    """One SMTP reply or delivery outcome found in a log line.

    `time` is Unix epoch seconds (UTC) taken from the line, never from a clock.
    A frozen, slotted msgspec Struct rather than a frozen dataclass: it is built on the hot
    path, and constructs about ten times faster (docs/decisions/0001-event-type.md).
    """

    mta: MTA
    log: str
    time: float
    direction: Direction
    code: str = ""
    enhanced: str = ""
    status: Status = ""
    stage: str = ""
    queue_id: str = ""
    remote_host: str = ""
    remote_ip: str = ""
    recipient_domain: str = ""
    sender_domain: str = ""
    delay_s: float | None = None
    # Why a 4xx/5xx reply refused (logscan/parsers/reasons.py: one of REASONS); "" otherwise.
    reason: str = ""


class Unparsed(msgspec.Struct, frozen=True, gc=False):
    """A line the parser did not understand; `reason` is a short, bounded token for a label."""

    reason: str
    detail: str = ""


# A parse result: events (possibly none: understood, carries nothing) or Unparsed.
ParseResult = tuple[Event, ...] | Unparsed

NOTHING: Final[tuple[Event, ...]] = ()


class EventBatch(msgspec.Struct):
    """The events of consecutive lines of one log, grouped for counting.

    Aggregate.add_batch(batch) leaves the aggregate exactly as add() of each event in log
    order would. A batch is built only from events whose delivery minutes never decrease.
    """

    mta: MTA
    log: str
    events: int
    replies: dict[tuple[Direction, str, str], int]  # (direction, code, enhanced) → n; code non-empty
    deliveries: dict[Status, int]  # outcome other than "rejected" → n
    rejections: dict[tuple[str, str], int]  # (stage, code) → n
    # Each event with a code, in order: its remote domain, and its direction and code class ("5xx").
    domains: list[str]
    classes: list[tuple[Direction, str]]
    delays: dict[Status, list[float]]  # outcome → delay_s of each such event, in order (all >= 0)
    minutes: dict[int, list[int]]  # epoch minute → [sent, bounced, expired], in order
    last_time: float  # the latest event time
    # 4xx/5xx replies: (direction, code, reason) → n; and each one in order, for the recent
    # offenders: (epoch minute, direction, code, reason, sender domain, client IP, recipient domain).
    reasons: dict[tuple[Direction, str, str], int] = msgspec.field(default_factory=dict)
    refusals: list[tuple[int, Direction, str, str, str, str, str]] = msgspec.field(default_factory=list)
    # What alert rules count (AlertEngine.observe_batch), for each event with a code, in order
    # (parallel to `domains` unless `unnamed` has some): its time cut to the whole second
    # (Event.time's floor: rules compare times with whole seconds only) and its reply
    # (direction, code, enhanced).
    # Filled only when asked (BulkReader.batch).
    times: list[float] = msgspec.field(default_factory=list)
    codes: list[tuple[Direction, str, str]] = msgspec.field(default_factory=list)
    # Events with a code but no domain that a bulk reader left out of `domains` and `classes`,
    # by (direction, class): they count under "other" and never touch the top-domains sketch.
    # Each class's first such event stays in the lists (so its key is counted in batch order).
    # With `times` and `codes` only when asked for without `aligned` (BulkReader.batch): no
    # per_domain alert rule reads the log, so no reply's domain is needed there.
    unnamed: dict[tuple[Direction, str], int] = msgspec.field(default_factory=dict)
    # When not empty, `times` and `codes` group the replies of each minute (BulkReader.batch's
    # per_minute; replies in time order only): per minute, in order, one entry per distinct
    # reply (its first time, the reply and its count here), then the minute's last time and
    # reply with a 0 here (parsers.base.per_minute). AlertEngine counts them as the replies
    # themselves (_count_runs reads nothing else of a minute).
    weights: list[int] = msgspec.field(default_factory=list)
    # When set, everything but `events`, `minutes` and `last_time` is still to come: calling it
    # once fills it in. Aggregate.add_batch() does so only when it takes the batch, so a bulk
    # reader's steps through its parser's state happen only for a batch that is counted.
    fill: Callable[[EventBatch], None] | None = None
