"""Counters and event-time windows over Events: pure state, no I/O, time passed in."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import reduce
from operator import add
from typing import Any, Final, Literal, TypeVar

import msgspec

from logscan.core.diagnosis import DEFAULT_WINDOW_S, Diagnosis
from logscan.events import Event, EventBatch
from logscan.parsers import scan_paths_text
from logscan.parsers.reasons import classify

LineResult = Literal["parsed", "ignored", "unparsed"]
K = TypeVar("K")

# Delivery delays run from sub-second to the 5-day queue lifetime.
DELAY_BUCKETS: Final = (0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0, 432000.0)
DEFAULT_WINDOWS: Final = (300, 3600)
OTHER: Final = "other"
BUCKET_S: Final = 60
STATE_VERSION: Final = 1
_CLASS: Final = {c: c + "xx" for c in "0123456789"}  # reply code's first digit → its class label

# The enhanced status codes of RFC 3463 (class.subject.detail): a fixed, small set (147 codes)
# that rules and dashboards ask for by name, so an export cardinality cap never folds them away:
# a flood of invented codes must not blind a rule on 5.1.1. Invented codes share the capped slots.
_RFC3463_LAST_DETAIL: Final = {0: 0, 1: 8, 2: 4, 3: 5, 4: 7, 5: 5, 6: 5, 7: 7}
STANDARD_ENHANCED: Final = frozenset(
    f"{c}.{subject}.{detail}"
    for c in "245"
    for subject, last in _RFC3463_LAST_DETAIL.items()
    for detail in range(last + 1)
)

ReplyKey = tuple[str, str, str, str, str]  # mta, log, direction, code, enhanced
DeliveryKey = tuple[str, str, str]  # mta, log, status
RejectKey = tuple[str, str, str, str]  # mta, log, stage, code
DomainKey = tuple[str, str, str]  # domain, direction, class
ReasonKey = tuple[str, str, str, str, str]  # mta, log, direction, code, reason


def _load_tally() -> Callable[[TopDomains, list[str], list[Any], str], dict[tuple[str, Any], int]] | None:
    try:
        from logscan.core._sketch import tally  # noqa: PLC0415 - optional, compiled at install
    except ImportError:  # installed without a C compiler: TopDomains.labels() in Python
        return None
    return tally


def paths_text() -> str:
    """The path each format's lines take, and where refusal sketches and top-domain labels are
    counted (C, or Python without a compiler at install): for --version and the landing page."""
    return f"{scan_paths_text()}, sketches: {'C' if _c_tally is not None else 'Python'}"


def window_label(seconds: int) -> str:
    """Prometheus-style duration for a window label: 300 → "5m", 3600 → "1h"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(slots=True)
class Histogram:
    """Cumulative-on-export histogram: per-bucket counts, sum and count."""

    buckets: list[int]
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(DELAY_BUCKETS, value)] += 1
        self.total += value
        self.count += 1


class TopDomains:
    """Bounded top-N domain labels fed by a frequent-items sketch.

    A domain gets its own series once its estimated volume earns a place among the top N;
    everything else counts as `other`. The sketch keeps at most 2 × capacity entries and
    halves itself to the heaviest when full, so memory is bounded whatever the input: a
    flood of distinct domains only churns the light half.
    """

    __slots__ = ("_floor", "capacity", "labelled", "limit", "sketch")

    def __init__(self, limit: int, capacity: int | None = None) -> None:
        self.limit = limit
        self.capacity = capacity or max(1000, 20 * limit)
        self.sketch: dict[str, int] = {}
        self.labelled: set[str] = set()
        # A lower bound of the weakest labelled domain's count: labelled counts only grow
        # between halvings, so it is only recomputed when a candidate might beat it.
        self._floor = 0

    def label(self, domain: str) -> str:
        """The label value this occurrence of `domain` counts under."""
        if self.limit <= 0 or not domain:
            return OTHER
        sketch = self.sketch
        est = sketch.get(domain, 0) + 1
        sketch[domain] = est
        if len(sketch) > 2 * self.capacity:
            self._halve()
        if domain in self.labelled:
            return domain
        if est < 2:
            return OTHER
        if len(self.labelled) < self.limit:
            self.labelled.add(domain)
            return domain
        if est > 2 * self._floor + 10:
            # Ties go to the first name, not to the set's hash order: the same input, the same labels.
            weakest = min(self.labelled, key=lambda d: (sketch.get(d, 0), d))
            self._floor = sketch.get(weakest, 0)
            if est > 2 * self._floor + 10:
                self.labelled.discard(weakest)
                self.labelled.add(domain)
                self._floor = min(sketch.get(d, 0) for d in self.labelled)
                return domain
        return OTHER

    def labels(self, domains: Iterable[str]) -> list[str]:
        """[label(d) for d in domains], the usual case (a domain already labelled) inline."""
        out: list[str] = []
        append = out.append
        labelled, limit = self.labelled, self.limit
        sketch, floor = self.sketch, self._floor
        for domain in domains:
            est = sketch.get(domain)
            # A domain already in the sketch: counting it does not grow the sketch.
            if est is not None and domain in labelled:
                sketch[domain] = est + 1
                append(domain)
            elif est is not None and len(labelled) >= limit and est + 1 <= 2 * floor + 10:
                sketch[domain] = est + 1  # too light to displace the weakest labelled domain
                append(OTHER)
            elif not domain:
                append(OTHER)  # as label(""): no domain (most MailEnable replies) is never counted
            else:
                append(self.label(domain))
                sketch, floor = self.sketch, self._floor  # both may change
        return out

    def tally(self, domains: list[str], classes: list[K]) -> dict[tuple[str, K], int]:
        """Counter(zip(self.labels(domains), classes)): each event's label and class counted, in
        one C loop when built (logscan/core/_sketch.c)."""
        if _c_tally is not None:
            return _c_tally(self, domains, classes, OTHER)
        return Counter(zip(self.labels(domains), classes, strict=True))

    def _halve(self) -> None:
        keep = sorted(self.sketch.items(), key=lambda kv: kv[1], reverse=True)[: self.capacity]
        self.sketch = dict(keep)
        for d in sorted(self.labelled):  # in a fixed order: the sketch's order breaks later ties
            self.sketch.setdefault(d, 0)
        self._floor = 0


_c_tally = _load_tally()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A consistent copy of the aggregate for one scrape or one report."""

    replies: Mapping[ReplyKey, int]
    deliveries: Mapping[DeliveryKey, int]
    rejections: Mapping[RejectKey, int]
    delays: Mapping[tuple[str, str], tuple[tuple[int, ...], float, int]]
    domains: Mapping[DomainKey, int]
    lines: Mapping[tuple[str, str], int]
    unparsed: Mapping[tuple[str, str], int]
    last_event: Mapping[str, float]
    bounce_ratio: Mapping[tuple[str, str], float]
    reasons: Mapping[ReasonKey, int] = field(default_factory=dict)


class Aggregate:
    """Every counter logscan exports, plus per-minute delivery buckets for bounce ratios."""

    def __init__(
        self,
        *,
        top_domains: int = 50,
        windows: Iterable[int] = DEFAULT_WINDOWS,
        diagnosis_window_s: int = DEFAULT_WINDOW_S,
    ) -> None:
        self.windows = tuple(sorted(set(windows)))
        self.replies: dict[ReplyKey, int] = {}
        # 4xx/5xx replies by reason (parsers/reasons.py), and the recent ones with their offenders.
        self.reasons: dict[ReasonKey, int] = {}
        self.diagnosis = Diagnosis(diagnosis_window_s)
        self.deliveries: dict[DeliveryKey, int] = {}
        self.rejections: dict[RejectKey, int] = {}
        self.delays: dict[tuple[str, str], Histogram] = {}
        self.domains: dict[DomainKey, int] = {}
        self.lines: dict[tuple[str, str], int] = {}
        self.unparsed: dict[tuple[str, str], int] = {}
        self.last_event: dict[str, float] = {}
        self.top = TopDomains(top_domains)
        # mta -> minute (epoch // 60) -> [sent, bounced, expired]; pruned to the longest window.
        self._minutes: dict[str, dict[int, list[int]]] = {}

    def count_lines(self, log: str, result: LineResult, n: int = 1, reason: str = "") -> None:
        """Count `n` lines read from `log`; unparsed lines also by reason."""
        key = (log, result)
        self.lines[key] = self.lines.get(key, 0) + n
        if result == "unparsed":
            rkey = (log, reason)
            self.unparsed[rkey] = self.unparsed.get(rkey, 0) + n

    def add(self, ev: Event) -> None:
        """Fold one event into every counter it belongs to."""
        # The hot path of every scan: Histogram.observe and _bucket are inlined here (same
        # updates, same order), locals save attribute lookups; the dicts are as before.
        code = ev.code
        mta = ev.mta
        log = ev.log
        if code:
            direction = ev.direction
            key = (mta, log, direction, code, ev.enhanced)
            replies = self.replies
            replies[key] = replies.get(key, 0) + 1
            label = self.top.label(ev.recipient_domain if direction == "outbound" else ev.sender_domain)
            dkey = (label, direction, _CLASS.get(code[0]) or code[0] + "xx")
            domains = self.domains
            domains[dkey] = domains.get(dkey, 0) + 1
            if code[0] in "45":
                reason = ev.reason
                if not reason:
                    # A refusal built where its text was not at hand: its codes alone decide.
                    reason = classify(code, ev.enhanced, "")
                    ev = msgspec.structs.replace(ev, reason=reason)
                rskey = (mta, log, direction, code, reason)
                self.reasons[rskey] = self.reasons.get(rskey, 0) + 1
                self.diagnosis.add(ev)
        status = ev.status
        if status:
            if status == "rejected":
                rkey = (mta, log, ev.stage, code)
                rejections = self.rejections
                rejections[rkey] = rejections.get(rkey, 0) + 1
            else:
                dkey2 = (mta, log, status)
                deliveries = self.deliveries
                deliveries[dkey2] = deliveries.get(dkey2, 0) + 1
                delay = ev.delay_s
                if delay is not None and delay >= 0:
                    hkey = (mta, status)
                    hist = self.delays.get(hkey)
                    if hist is None:
                        hist = self.delays[hkey] = Histogram([0] * (len(DELAY_BUCKETS) + 1))
                    hist.buckets[bisect_left(DELAY_BUCKETS, delay)] += 1
                    hist.total += delay
                    hist.count += 1
                if status != "deferred":
                    minutes = self._minutes.get(mta)
                    if minutes is None:
                        minutes = self._minutes[mta] = {}
                    cell = minutes.get(int(ev.time // BUCKET_S))
                    if cell is None:
                        self._bucket(ev, status)
                    else:
                        cell[0 if status == "sent" else 1 if status == "bounced" else 2] += 1
        t = ev.time
        last_event = self.last_event
        if t > last_event.get(log, 0.0):
            last_event[log] = t

    def add_batch(self, b: EventBatch) -> bool:
        """Fold in a batch: the same end state as add() of each of its events, in order.

        Returns False, changing nothing, when that cannot be promised: when a minute of the
        batch is older than the bounce-ratio buckets kept, add() would drop and re-create its
        bucket event by event, so the caller must add those events one by one.
        """
        mta, log = b.mta, b.log
        kept = self._minutes.get(mta)
        if (
            b.minutes
            and kept
            and self.windows
            and next(iter(b.minutes)) < max(kept) - self.windows[-1] // BUCKET_S - 1
        ):
            return False
        if b.fill is not None:  # taken: the rest of the batch can be made now
            fill, b.fill = b.fill, None
            fill(b)
        replies = self.replies
        for (direction, code, enhanced), n in b.replies.items():
            key = (mta, log, direction, code, enhanced)
            replies[key] = replies.get(key, 0) + n
        reasons = self.reasons
        for (direction, code, reason), n in b.reasons.items():
            rskey = (mta, log, direction, code, reason)
            reasons[rskey] = reasons.get(rskey, 0) + n
        self.diagnosis.add_refusals(mta, log, b.refusals)  # in order: the sketches depend on it
        # The top-domains sketch depends on the order it sees domains in: one step per event.
        domains = self.domains
        for (label, (direction, klass)), n in self.top.tally(b.domains, b.classes).items():
            dkey = (label, direction, klass)
            domains[dkey] = domains.get(dkey, 0) + n
        # Counted above already (each class's first event without a domain is in the lists):
        # the order of new keys stays that of add().
        for (direction, klass), n in b.unnamed.items():
            dkey = (OTHER, direction, klass)
            domains[dkey] = domains.get(dkey, 0) + n
        rejections = self.rejections
        for (stage, code), n in b.rejections.items():
            rkey = (mta, log, stage, code)
            rejections[rkey] = rejections.get(rkey, 0) + n
        deliveries = self.deliveries
        for status, n in b.deliveries.items():
            dkey2 = (mta, log, status)
            deliveries[dkey2] = deliveries.get(dkey2, 0) + n
        for status, values in b.delays.items():
            hkey = (mta, status)
            hist = self.delays.get(hkey)
            if hist is None:
                hist = self.delays[hkey] = Histogram([0] * (len(DELAY_BUCKETS) + 1))
            for value, n in Counter(values).items():
                hist.buckets[bisect_left(DELAY_BUCKETS, value)] += n
            hist.total = reduce(add, values, hist.total)  # one addition per event, in order: same float
            hist.count += len(values)
        if b.minutes:
            minutes = self._minutes.get(mta)
            if minutes is None:
                minutes = self._minutes[mta] = {}
            for minute, counts in b.minutes.items():
                cell = minutes.get(minute)
                if cell is None:
                    cell = self._new_cell(minutes, minute)
                cell[0] += counts[0]
                cell[1] += counts[1]
                cell[2] += counts[2]
        if b.events and b.last_time > self.last_event.get(log, 0.0):
            self.last_event[log] = b.last_time
        return True

    def _bucket(self, ev: Event, status: str) -> None:
        minutes = self._minutes.get(ev.mta)
        if minutes is None:
            minutes = self._minutes[ev.mta] = {}
        minute = int(ev.time // BUCKET_S)
        cell = minutes.get(minute)
        if cell is None:
            cell = self._new_cell(minutes, minute)
        cell[0 if status == "sent" else 1 if status == "bounced" else 2] += 1

    def _new_cell(self, minutes: dict[int, list[int]], minute: int) -> list[int]:
        """A new [sent, bounced, expired] cell; minutes older than the longest window are pruned."""
        cell = minutes[minute] = [0, 0, 0]
        if self.windows and len(minutes) > 2 * self.windows[-1] // BUCKET_S + 4:
            newest = max(minutes)
            for old in [m for m in minutes if m < newest - self.windows[-1] // BUCKET_S - 1]:
                del minutes[old]
        return cell

    def bounce_ratios(self, now: float) -> dict[tuple[str, str], float]:
        """bounced ÷ (sent + bounced + expired) per mta and window ending at `now`, on event time."""
        out: dict[tuple[str, str], float] = {}
        now_min = int(now // BUCKET_S)
        for mta, minutes in self._minutes.items():
            for window in self.windows:
                start = now_min - window // BUCKET_S
                sent = bounced = expired = 0
                for minute, (s, b, e) in minutes.items():
                    if start < minute <= now_min:
                        sent += s
                        bounced += b
                        expired += e
                total = sent + bounced + expired
                out[(mta, window_label(window))] = bounced / total if total else 0.0
        return out

    def snapshot(self, now: float) -> Snapshot:
        """Copy every counter; `now` (epoch seconds) ends the bounce-ratio windows."""
        return Snapshot(
            replies=dict(self.replies),
            deliveries=dict(self.deliveries),
            rejections=dict(self.rejections),
            delays={k: (tuple(h.buckets), h.total, h.count) for k, h in self.delays.items()},
            domains=dict(self.domains),
            lines=dict(self.lines),
            unparsed=dict(self.unparsed),
            last_event=dict(self.last_event),
            bounce_ratio=self.bounce_ratios(now),
            reasons=dict(self.reasons),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state; `from_dict` restores it exactly."""

        def rows(items: Iterable[tuple[tuple[str, ...], int]]) -> list[list[Any]]:
            return [[*k, v] for k, v in items]

        return {
            "version": STATE_VERSION,
            "replies": rows(self.replies.items()),
            "reasons": rows(self.reasons.items()),
            "deliveries": rows(self.deliveries.items()),
            "rejections": rows(self.rejections.items()),
            "delays": [[m, s, h.buckets, h.total, h.count] for (m, s), h in self.delays.items()],
            "domains": rows(self.domains.items()),
            "lines": rows(self.lines.items()),
            "unparsed": rows(self.unparsed.items()),
            "last_event": self.last_event,
            "top": {"sketch": self.top.sketch, "labelled": sorted(self.top.labelled)},
            "minutes": {m: [[k, *v] for k, v in mins.items()] for m, mins in self._minutes.items()},
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        top_domains: int = 50,
        windows: Iterable[int] = DEFAULT_WINDOWS,
        diagnosis_window_s: int = DEFAULT_WINDOW_S,
    ) -> Aggregate:
        """Rebuild from `to_dict` output; raises ValueError on a shape it does not know."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported aggregate version {data.get('version')!r}")
        agg = cls(top_domains=top_domains, windows=windows, diagnosis_window_s=diagnosis_window_s)
        try:
            agg.replies = {(r[0], r[1], r[2], r[3], r[4]): int(r[5]) for r in data["replies"]}
            # A state saved before reasons were counted has none: they start at 0.
            agg.reasons = {(r[0], r[1], r[2], r[3], r[4]): int(r[5]) for r in data.get("reasons", ())}
            agg.deliveries = {(r[0], r[1], r[2]): int(r[3]) for r in data["deliveries"]}
            agg.rejections = {(r[0], r[1], r[2], r[3]): int(r[4]) for r in data["rejections"]}
            for m, s, buckets, total, count in data["delays"]:
                if len(buckets) != len(DELAY_BUCKETS) + 1:
                    raise ValueError("delay buckets changed")
                agg.delays[(m, s)] = Histogram([int(b) for b in buckets], float(total), int(count))
            agg.domains = {(r[0], r[1], r[2]): int(r[3]) for r in data["domains"]}
            agg.lines = {(r[0], r[1]): int(r[2]) for r in data["lines"]}
            agg.unparsed = {(r[0], r[1]): int(r[2]) for r in data["unparsed"]}
            agg.last_event = {str(k): float(v) for k, v in data["last_event"].items()}
            # No domain ("") is never counted (label() answers it "other"): a state that has it
            # is not one this aggregate saved, and EventBatch.unnamed relies on its absence.
            agg.top.sketch = {str(k): int(v) for k, v in data["top"]["sketch"].items() if k}
            agg.top.labelled = set(data["top"]["labelled"][: agg.top.limit]) - {""}
            agg.top._floor = 0
            agg._minutes = {
                m: {int(r[0]): [int(r[1]), int(r[2]), int(r[3])] for r in rows}
                for m, rows in data["minutes"].items()
            }
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"malformed aggregate state: {exc!r}") from exc
        return agg
