"""Spike alerts on SMTP reply codes, evaluated on event time: pure state, no I/O, no clock.

How a rule is evaluated (docs/alerts.md has the operator's version):

- Every reply (an Event with a code) of the rule's direction is counted per log, per mta
  (and per domain for `per_domain` rules) in one-minute buckets keyed by EVENT time
  (`minute = floor(time / 60)`); a matching reply also counts as a hit.
- Evaluation happens at whole-minute boundaries E = 60·M, like a Prometheus rule group
  with a 1-minute interval. At E the window is the `window / 60` complete minutes before E.
  count = hits in the window; ratio = count / all replies of that direction in the window;
  rate = count per minute over the window.
- baseline = EWMA of hits per minute, fed one minute at a time as the minute LEAVES the
  window (so a spike never feeds its own baseline): b ← b + α·(hits − b) with
  α = 1 − exp(−60 / baseline_s) (time constant baseline_s, default 1 h; a minute's weight
  halves every ln 2 · baseline_s ≈ 42 min). It starts at 0 and is frozen while the series
  is pending or firing, so an incident does not teach itself to be normal — but for at
  most baseline_s after the episode began: a level that lasts longer becomes the new normal.
- hot = count ≥ min_count and ratio ≥ min_ratio and rate ≥ factor · baseline
  (factor 0 disables the baseline test; baseline 0 always passes it).
- inactive → pending when hot; pending → firing once hot for for_s; pending → inactive
  when not hot. A firing series stays firing while count ≥ f·min_count and
  ratio ≥ f·min_ratio and rate ≥ f·factor·baseline, with f = resolve_fraction (0.7);
  otherwise it resolves (hysteresis: no flapping around the threshold).
- Boundary E of a log is evaluated once that log shows an event at or after E + settle_s,
  or when the caller calls advance(t) with t ≥ E + settle_s (the daemon does that only when
  its tailers are caught up, so a quiet log still resolves). The same events in the same
  order therefore give the same alerts live, after a restart backlog, or in a replay.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_left
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, islice, repeat
from operator import attrgetter, itemgetter, le, lt, sub
from typing import Annotated, Any, Final, Literal

import msgspec

from logscan.core.diagnosis import Diagnosis, Why
from logscan.events import Direction, Event, EventBatch

BUCKET_S: Final = 60
STATE_VERSION: Final = 1
OTHER_DOMAIN: Final = "other"
DEFAULT_SETTLE_S: Final = 10.0

State = Literal["inactive", "pending", "firing", "resolved"]

_CODE_PATTERN = r"^(?:[2-5][0-9][0-9]|[2-5]xx|[245]\.[0-9]{1,3}\.[0-9]{1,3})$"
_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One alert rule, as written under `[[alerts.rules]]` in the TOML config."""

    name: Annotated[str, msgspec.Meta(pattern=_NAME_PATTERN)]
    direction: Direction
    # "551" (basic code), "5xx" (class) or "5.1.1" (enhanced code).
    code: Annotated[str, msgspec.Meta(pattern=_CODE_PATTERN)] = "551"
    window: Annotated[int, msgspec.Meta(ge=60, le=86400, multiple_of=60)] = 300
    min_count: Annotated[int, msgspec.Meta(ge=1)] = 10
    min_ratio: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.05
    factor: Annotated[float, msgspec.Meta(ge=0.0)] = 3.0
    baseline_s: Annotated[int, msgspec.Meta(ge=60, le=7 * 86400)] = 3600
    for_s: Annotated[int, msgspec.Meta(ge=0, le=86400)] = 120
    resolve_fraction: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.7
    severity: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,31}$")] = "page"
    per_domain: bool = False
    max_domains: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    logs: tuple[str, ...] | None = None

    def matches(self, ev: Event) -> bool:
        """Whether the reply in `ev` is one this rule counts as a hit."""
        code = self.code
        if "." in code:
            return ev.enhanced == code
        if code.endswith("xx"):
            return ev.code[:1] == code[0]
        return ev.code == code


DEFAULT_RULES: Final[tuple[Rule, ...]] = (
    Rule(name="smtp_551_outbound_spike", direction="outbound"),
    Rule(name="smtp_551_inbound_spike", direction="inbound"),
)


def rules_from(obj: Any) -> list[Rule]:
    """Validate a decoded `[[alerts.rules]]` list; raises msgspec.ValidationError naming the key."""
    rules = msgspec.convert(obj, list[Rule])
    _check_unique(rules)
    return rules


def _check_unique(rules: Iterable[Rule]) -> None:
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ValueError(f"duplicate alert rule name {rule.name!r}")
        seen.add(rule.name)


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change of one alert series, with the numbers behind it.

    `since` is when the current episode began (pending start for pending/inactive, firing
    start for firing/resolved); `at` is the evaluation time of this change. Rates are per
    minute. Times are event-time epoch seconds.
    """

    alert: str
    rule: Rule
    labels: Mapping[str, str]
    state: State
    since: float
    at: float
    pending_since: float
    count: int
    total: int
    ratio: float
    rate: float
    baseline: float
    peak_count: int
    peak_ratio: float
    peak_rate: float
    # What the replies mostly are (dominant reason, offenders, fix): see explain().
    why: Why | None = None

    @property
    def key(self) -> tuple[tuple[str, str], ...]:
        """Identity of the alert series (its sorted labels)."""
        return tuple(sorted(self.labels.items()))


@dataclass(frozen=True, slots=True)
class AlertPeriod:
    """One firing period found by `replay`; `end` is None when still firing at the end of input."""

    alert: str
    labels: Mapping[str, str]
    pending_since: float
    start: float
    end: float | None
    peak_count: int
    peak_ratio: float
    peak_rate: float
    baseline: float


@dataclass(slots=True)
class _Series:
    """Buckets, baseline and state of one (rule, log, mta[, domain]) series."""

    folded: int  # buckets of minutes before this are folded into the baseline and gone
    hits: dict[int, int] = field(default_factory=dict)
    totals: dict[int, int] = field(default_factory=dict)
    baseline: float = 0.0
    state: State = "inactive"
    pending_since: float = 0.0
    fired_at: float = 0.0
    peak_count: int = 0
    peak_ratio: float = 0.0
    peak_rate: float = 0.0

    def add(self, minute: int, hit: bool) -> bool:
        """Count one reply; False when its minute is already folded (too late to count)."""
        if minute < self.folded:
            return False
        self.totals[minute] = self.totals.get(minute, 0) + 1
        if hit:
            self.hits[minute] = self.hits.get(minute, 0) + 1
        return True

    def fold(self, start: int, keep: float, learn: bool) -> None:
        """Feed minutes before `start` into the EWMA (keep = 1 − α) if `learn`, then drop them."""
        if self.folded >= start:
            return
        if not self.hits and (not learn or self.baseline == 0.0):
            # The usual idle step: no hit to learn and a zero baseline that would stay zero
            # (0 · keep^n = 0), so only the totals that left the window go.
            totals = self.totals
            if totals:
                for m in [m for m in totals if m < start]:
                    del totals[m]
            self.folded = start
            return
        if learn:
            b = self.baseline
            cur = self.folded
            if start == cur + 1:
                # The usual step, one minute leaving: the loop below for that minute alone (no
                # bucket is ever below `folded`), without its sort, powers of 1 and list scans.
                h = self.hits.pop(cur, 0)
                self.totals.pop(cur, None)
                b = keep * b + (1.0 - keep) * h if h else b * keep
                self.baseline = b if b > 1e-9 else 0.0
                self.folded = start
                return
            for m in sorted(m for m in self.hits if m < start):
                b *= keep ** (m - cur)
                b = keep * b + (1.0 - keep) * self.hits[m]
                cur = m + 1
            b *= keep ** (start - cur)
            # Denormals are slow and meaningless here.
            self.baseline = b if b > 1e-9 else 0.0
        for d in (self.hits, self.totals):
            for m in [m for m in d if m < start]:
                del d[m]
        self.folded = start

    def to_list(self) -> dict[str, Any]:
        return {
            "folded": self.folded,
            "hits": sorted(self.hits.items()),
            "totals": sorted(self.totals.items()),
            "baseline": self.baseline,
            "state": self.state,
            "pending_since": self.pending_since,
            "fired_at": self.fired_at,
            "peak": [self.peak_count, self.peak_ratio, self.peak_rate],
        }

    @classmethod
    def from_list(cls, d: Mapping[str, Any]) -> _Series:
        state = d["state"]
        if state not in ("inactive", "pending", "firing"):
            raise ValueError(f"bad series state {state!r}")
        pc, pr, prate = d["peak"]
        folded = int(d["folded"])
        # Buckets below `folded` are gone by definition (fold() relies on it): a saved one is not read.
        return cls(
            folded=folded,
            hits={int(m): int(n) for m, n in d["hits"] if int(m) >= folded},
            totals={int(m): int(n) for m, n in d["totals"] if int(m) >= folded},
            baseline=float(d["baseline"]),
            state=state,
            pending_since=float(d["pending_since"]),
            fired_at=float(d["fired_at"]),
            peak_count=int(pc),
            peak_ratio=float(pr),
            peak_rate=float(prate),
        )


SeriesKey = tuple[int, str, str]  # rule index, mta, domain ("" unless per_domain)
_TIME: Final = attrgetter("time")
_WHERE: Final = attrgetter("log", "mta")
_REPLY: Final = attrgetter("direction", "code", "enhanced")
_DIRECTION: Final = itemgetter(0)
_OTHER_DIRECTION: Final = {"inbound": "outbound", "outbound": "inbound"}
_NEVER: Final = 1 << 62  # a boundary minute no log reaches


@dataclass(slots=True)
class _Log:
    """Evaluation horizon and series of one log: boundary `next_min`·60 is the next to evaluate."""

    next_min: int
    series: dict[SeriesKey, _Series] = field(default_factory=dict)
    # Hot-path cache: (direction, mta) → the non-domain series an event feeds, with the
    # matcher of its rule. Rebuilt after an evaluation that drops idle series.
    fast: dict[tuple[str, str], list[tuple[_Series, int, str]]] = field(default_factory=dict)
    # per_domain rules: (rule index, mta) → recent hits of domains not yet tracked.
    candidates: dict[tuple[int, str], dict[str, int]] = field(default_factory=dict)


class AlertEngine:
    """Evaluates alert rules over Events on event time; see the module docstring for the rules.

    Why one class: one state machine per rule (inactive → pending → firing → resolved) over
    shared per-minute series; its parts are the steps of one evaluation, not separate jobs.
    """

    def __init__(self, rules: Sequence[Rule] = DEFAULT_RULES, *, settle_s: float = DEFAULT_SETTLE_S) -> None:
        _check_unique(rules)
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.settle_s = float(settle_s)
        # Replies dropped because their minute had already left every window.
        self.late = 0
        self._logs: dict[str, _Log] = {}
        self._outbox: list[Transition] = []
        self._keep = tuple(math.exp(-BUCKET_S / r.baseline_s) for r in self.rules)
        self._window = tuple(r.window // BUCKET_S for r in self.rules)  # in minutes
        self._applicable: dict[tuple[str, str], tuple[tuple[int, Rule], ...]] = {}
        self._hits_of: dict[tuple[str, tuple[str, str, str]], bool] = {}  # (log, reply) → _hits()
        # False: evaluate every step the plain way, the reference that tests hold the
        # shortcuts of _evaluate and _step to (they must change nothing but the time taken).
        self._shortcuts = True

    # -- input ---------------------------------------------------------------------------

    def observe(self, ev: Event) -> None:
        """Count one event; evaluates its log's boundaries that this event's time closes."""
        code = ev.code
        if not code:
            return
        t = ev.time
        minute = int(t // BUCKET_S)
        log = self._logs.get(ev.log)
        if log is None:
            log = self._logs[ev.log] = _Log(next_min=minute + 1)
        elif t >= log.next_min * BUCKET_S + self.settle_s:
            self._evaluate(ev.log, log, self._target(t))
        slots = log.fast.get((ev.direction, ev.mta))
        if slots is None:
            slots = self._slots(ev.log, log, ev.direction, ev.mta)
        # This loop runs for every reply of every log: kept flat on purpose.
        for series, kind, want in slots:
            if minute < series.folded:
                self.late += 1
                continue
            totals = series.totals
            totals[minute] = totals.get(minute, 0) + 1
            if (code == want) if kind == 0 else (code[0] == want) if kind == 1 else (ev.enhanced == want):
                hits = series.hits
                hits[minute] = hits.get(minute, 0) + 1
        domain_rules = self._applicable.get((ev.log, ev.direction))
        if domain_rules:
            for idx, rule in domain_rules:
                hit = rule.matches(ev)
                if not self._domain_series(log, idx, rule, ev, hit).add(minute, hit):
                    self.late += 1

    def observe_batch(self, batch: EventBatch) -> None:
        """Count a batch's replies: the same state and transitions as observe() of each of its
        events in order, counted a run at a time (docs/decisions/0016-alerts-from-counts.md).

        A run is the events of one minute before the next evaluation point; between two such
        points observe() only adds to buckets, so a run's replies are added as counts. Batch
        times are cut to whole seconds, which decide the same as long as settle_s is whole.
        """
        times, codes, weights = batch.times, batch.codes, batch.weights
        listed = len(weights) if weights else len(batch.classes) + sum(batch.unnamed.values())
        if len(times) != listed or len(codes) != len(times):
            raise ValueError("EventBatch without the time and reply of each event with a code")
        if not self.settle_s.is_integer():
            raise ValueError("observe_batch() needs a whole settle_s; feed events with observe()")
        if not times:
            return
        if not self._count_runs(batch.log, batch.mta, times, codes, batch.replies.keys(), weights or None):
            if weights:
                raise ValueError("EventBatch of replies grouped per minute, for a log that needs each reply")
            self._observe_each(batch)

    def observe_events(self, events: Sequence[Event]) -> None:
        """observe() of each event in order (all of one log and mta), counted as observe_batch()
        counts: the per-event path of a pipeline without a bulk reader (Exim, MailEnable)."""
        coded = [ev for ev in events if ev.code]
        if not coded:
            return
        name, mta = coded[0].log, coded[0].mta
        one = len(set(map(_WHERE, coded))) == 1
        if not one or not self._count_runs(name, mta, list(map(_TIME, coded)), list(map(_REPLY, coded))):
            for ev in coded:
                self.observe(ev)

    def _count_runs(
        self,
        name: str,
        mta: str,
        times: list[float],
        codes: Sequence[tuple[str, str, str]],
        kinds: Collection[tuple[str, str, str]] | None = None,
        weights: list[int] | None = None,
    ) -> bool:
        """Count replies in order, a minute at a time; False (nothing done) when that would not
        be the same as observe() one by one: a per_domain rule counts the log (domain series
        depend on the order of domains), the times are out of order, or settle_s is 60 s or more.
        `kinds`: every distinct reply of `codes` (read twice), when known, else worked out here; `weights`:
        the count of each entry, when the replies are grouped per minute (EventBatch.weights).

        Such groups count the same: what is read of a minute is its first and last time, the
        directions of the replies before an evaluation point in it (the entries before it: each
        reply's entry has its first time), which direction comes first, and the counts."""
        # Grouped replies are in time order by construction (base.per_minute()).
        if not self.takes_minutes(name) or (not weights and not all(map(le, times, islice(times, 1, None)))):
            return False
        log = self._logs.get(name)
        if log is None:
            log = self._logs[name] = _Log(next_min=int(times[0] // BUCKET_S) + 1)
        settle = self.settle_s
        fast = log.fast  # cleared in place, never replaced: this name stays right
        if kinds is None:
            kinds = set(codes)
        hits_of = self._hits_of
        if len(hits_of) > 4096:
            hits_of.clear()  # replies are few, unless a log makes up enhanced codes
        hitting = set()
        for reply in kinds:
            hit = hits_of.get((name, reply))
            if hit is None:
                hit = hits_of[(name, reply)] = self._hits(name, reply)
            if hit:
                hitting.add(reply)
        hit_free = not hitting
        both = len({reply[0] for reply in kinds}) > 1
        existing = log.series.values()
        if (
            hit_free
            and not log.candidates
            and all(s.state == "inactive" and not s.hits and s.baseline == 0.0 for s in existing)
            and int(times[0] // BUCKET_S) >= max((s.folded for s in existing), default=log.next_min - 1)
            and int(times[0] // BUCKET_S) >= log.next_min - 1
        ):
            self._count_idle(name, log, mta, times, codes, both, weights)
            return True
        # Each reply's direction, when the batch has both (else unused).
        dirs = list(map(_DIRECTION, codes)) if both else []
        # The entries that hit a rule: a minute's others only add to its totals per direction.
        hit_at = list(compress(range(len(codes)), map(hitting.__contains__, codes)))
        h = 0
        i, n = 0, len(times)
        # Per minute of events, not per event: a quiet log has a few replies in each of many
        # minutes, so every name lookup and call here counts (_target() is inlined).
        while i < n:
            t = times[i]
            if t >= log.next_min * BUCKET_S + settle:
                self._evaluate(name, log, math.floor((t - settle) / BUCKET_S))
            minute = int(t // BUCKET_S)
            j = bisect_left(times, (minute + 1) * BUCKET_S, i + 1)  # the minute's end
            due = log.next_min * BUCKET_S + settle
            if times[j - 1] >= due:
                # An evaluation point inside the minute, at event k. The events before it may
                # go in after it all the same: the evaluation reads only earlier minutes. Two
                # things they do first: make their series, and keep those from being dropped
                # as empty (a 0 in this minute, which their count then raises; a minute already
                # folded they count as late, as observe() does, so it gets no 0 either).
                k = bisect_left(times, due, i, j)
                for direction in _first_directions(dirs, codes, i, k):
                    slots = fast.get((direction, mta))
                    if slots is None:
                        slots = self._slots(name, log, direction, mta)
                    for series, _, _ in slots:
                        if minute >= series.folded:
                            series.totals.setdefault(minute, 0)
                self._evaluate(name, log, math.floor((times[k] - settle) / BUCKET_S))
            # A minute adds to the totals of each direction, in the order the directions first
            # come (the order their series are made), then its hits to the series they match.
            first = codes[i][0]
            n_first, n_all = _directions(dirs, weights, first, i, j)
            for direction, k in ((first, n_first), (_OTHER_DIRECTION[first], n_all - n_first)):
                if not k:
                    continue
                slots = fast.get((direction, mta))
                if slots is None:
                    slots = self._slots(name, log, direction, mta)
                for series, _, _ in slots:
                    if minute < series.folded:
                        self.late += k
                        continue
                    totals = series.totals
                    totals[minute] = totals.get(minute, 0) + k
            if hit_free:
                i = j
                continue
            a = bisect_left(hit_at, i, h)
            h = bisect_left(hit_at, j, a)
            for e in hit_at[a:h]:
                k = weights[e] if weights is not None else 1
                if not k:
                    continue  # a minute's trailing entry (EventBatch.weights): nothing to add
                direction, code, enhanced = codes[e]
                for series, kind, want in fast[(direction, mta)]:
                    if minute >= series.folded and (
                        (code == want) if kind == 0 else (code[0] == want) if kind == 1 else enhanced == want
                    ):
                        hits = series.hits
                        hits[minute] = hits.get(minute, 0) + k
            i = j
        return True

    def _count_idle(
        self,
        name: str,
        log: _Log,
        mta: str,
        times: list[float],
        codes: Sequence[tuple[str, str, str]],
        both: bool,
        weights: list[int] | None,
    ) -> None:
        """_count_runs of a batch without hits into a log whose series are all idle (inactive,
        no hits, zero baseline), with its evaluations put off while they cannot drop a series.

        Such series stay idle through the batch, and an evaluation at boundary T only folds
        each to T − window (dropping older totals) and drops the ones left empty. So the last
        of several evaluations does what all of them do, unless one of them drops a series: that
        happens first at T = (its last minute with replies) + window + 1, which `doom` never
        exceeds (a series made or counted since it was worked out only raises its own; once
        reached it is worked out again from the replies counted so far before anything is
        applied, since most series have had replies since). Events
        are in time order from at or after every series' folded minute and next_min − 1, so none
        is late either way (a series made at next_min N starts at N − window, and N is at most
        the minute of its event + 1); next_min moves with each evaluation as before, so new
        series start where they did.
        """
        settle = self.settle_s
        fast = log.fast
        shortest = min(self._window)
        i = self._last_reset(log, times)
        if i:
            # Every series is dropped at event i's evaluation: what came before leaves nothing.
            log.series.clear()
            fast.clear()
            log.next_min = math.floor((times[i] - settle) / BUCKET_S) + 1
            # Nor is it read again: the rest goes on alone (on a quiet log, a few minutes of the
            # batch's hundreds).
            times, codes = times[i:], codes[i:]
            if weights is not None:
                weights = weights[i:]
        i, n = 0, len(times)
        # Each reply's direction, when the batch has both (else unused).
        dirs = list(map(_DIRECTION, codes)) if both else []
        doom = self._doom(log)
        pending = -1  # the boundary evaluated last but not yet applied to the series; -1: none
        keys = (("inbound", mta), ("outbound", mta))
        due = log.next_min * BUCKET_S + settle
        while i < n:
            t = times[i]
            if t >= due:
                pending = math.floor((t - settle) / BUCKET_S)
                log.next_min = pending + 1
                due = log.next_min * BUCKET_S + settle
                if pending >= doom and pending >= (doom := self._doom(log)):
                    self._fold_idle(log, pending)
                    doom, pending = self._doom(log), -1
            minute = int(t // BUCKET_S)
            j = bisect_left(times, (minute + 1) * BUCKET_S, i + 1)  # the minute's end
            if times[j - 1] >= due:
                # An evaluation point inside the minute, at event k: as in _count_runs, unless
                # the evaluation is put off and the series of both directions are there (then
                # their 0s for this minute would change nothing).
                k = bisect_left(times, due, i, j)
                target = math.floor((times[k] - settle) / BUCKET_S)
                if target >= doom or fast.get(keys[0]) is None or fast.get(keys[1]) is None:
                    for direction in _first_directions(dirs, codes, i, k):
                        slots = fast.get((direction, mta))
                        if slots is None:
                            slots = self._slots(name, log, direction, mta)
                            doom = min(doom, minute + 1 + shortest)
                        for s, _, _ in slots:
                            s.totals.setdefault(minute, 0)
                pending = target
                log.next_min = pending + 1
                due = log.next_min * BUCKET_S + settle
                if pending >= doom and pending >= (doom := self._doom(log)):
                    self._fold_idle(log, pending)
                    doom, pending = self._doom(log), -1
            first = codes[i][0]
            n_first, n_all = _directions(dirs, weights, first, i, j)
            for direction, k in ((first, n_first), (_OTHER_DIRECTION[first], n_all - n_first)):
                if not k:
                    continue
                slots = fast.get((direction, mta))
                if slots is None:
                    slots = self._slots(name, log, direction, mta)
                    doom = min(doom, minute + 1 + shortest)
                for s, _, _ in slots:
                    totals = s.totals
                    totals[minute] = totals.get(minute, 0) + k
            i = j
        if pending >= 0:
            self._fold_idle(log, pending)

    def _last_reset(self, log: _Log, times: list[float]) -> int:
        """For _count_idle: the last event whose evaluation drops every series of `log` (each one's
        replies, in the batch before it or counted earlier, lie a whole window or more behind
        the boundary it closes), or 0. On a quiet log most of a batch's minutes end so."""
        n = len(times)
        settle = self.settle_s
        longest = max(self._window)
        if n < 2 or n > 8 * (times[-1] - times[0]) / BUCKET_S:
            return 0  # a busy log: its replies are never that far apart (and the search costs)
        counted = max((max(s.totals) for s in log.series.values() if s.totals), default=-1)
        gap = longest * BUCKET_S + settle
        # Looked for from the end, in ever longer stretches: on a quiet log the last is near it,
        # mostly within the last 20 or so replies (the answer does not depend on the sizes).
        end, size = n, 16
        while end > 1:
            begin = max(1, end - size)
            # A drop at event r needs a step from event r − 1 longer than the longest window + settle.
            # Slices: islice() would step through the whole batch up to `begin` for each stretch.
            steps = map(sub, times[begin:end], times[begin - 1 : end - 1])
            for r in reversed(list(compress(range(begin, end), map(lt, repeat(gap), steps)))):
                last = max(counted, int(times[r - 1] // BUCKET_S))  # the latest minute with a reply
                if math.floor((times[r] - settle) / BUCKET_S) > last + longest:
                    return r
            end, size = begin, size * 4
        return 0

    def _doom(self, log: _Log) -> int:
        """The first boundary whose evaluation may drop an idle series of `log`."""
        window = self._window
        # A loop, not min() of a generator: called several times a batch, for a series or two.
        doom = _NEVER
        for key, s in log.series.items():
            doom = min(doom, max(s.totals) + window[key[0]] + 1 if s.totals else -1)
        return doom

    def _fold_idle(self, log: _Log, target: int) -> None:
        """The evaluation at boundary `target` of a log whose series are all idle (see _evaluate)."""
        window = self._window
        dead = False
        for key, s in log.series.items():
            fold_to = target - window[key[0]]
            totals = s.totals
            if s.folded < fold_to:
                if totals:
                    for m in [m for m in totals if m < fold_to]:
                        del totals[m]
                s.folded = fold_to
            if not totals:
                dead = True
        if dead:
            for key in [k for k, s in log.series.items() if not s.totals]:
                del log.series[key]
            log.fast.clear()

    def _hits(self, name: str, reply: tuple[str, str, str]) -> bool:
        """Whether `reply` is a hit of any rule that counts log `name` (as Rule.matches)."""
        direction, code, enhanced = reply
        for rule in self.rules:
            if rule.direction != direction or (rule.logs is not None and name not in rule.logs):
                continue
            want = rule.code
            if "." in want:
                if enhanced == want:
                    return True
            elif code[:1] == want[0] if want.endswith("xx") else code == want:
                return True
        return False

    def takes_minutes(self, name: str) -> bool:
        """Whether batches of log `name` may group each minute's replies (EventBatch.weights):
        whether _count_runs counts them (no per_domain rule, settle_s under a minute)."""
        return 0.0 <= self.settle_s < BUCKET_S and not self.needs_domains(name)

    def needs_domains(self, name: str) -> bool:
        """Whether a per_domain rule counts the replies of log `name`: only then do its batches
        need every reply's domain (EventBatch.domains parallel to .times, no .unnamed)."""
        return any(r.per_domain and (r.logs is None or name in r.logs) for r in self.rules)

    def _observe_each(self, batch: EventBatch) -> None:
        """observe() of each event of the batch with a code, rebuilt from what rules read."""
        mta, name = batch.mta, batch.log
        domains: Iterable[str] = batch.domains
        if batch.unnamed:
            # Events without a domain were counted per class, so `domains` is not each reply's.
            # Only per_domain rules read a reply's domain (observe() → _domain_series).
            if self.needs_domains(name):
                raise ValueError("EventBatch without each reply's domain, for a per_domain rule")
            domains = repeat("", len(batch.times))
        replies = zip(batch.times, batch.codes, domains, strict=True)
        for t, (direction, code, enhanced), domain in replies:
            outbound = direction == "outbound"
            self.observe(
                Event(
                    mta,
                    name,
                    t,
                    direction,
                    code,
                    enhanced,
                    recipient_domain=domain if outbound else "",
                    sender_domain="" if outbound else domain,
                )
            )

    def _slots(self, name: str, log: _Log, direction: str, mta: str) -> list[tuple[_Series, int, str]]:
        slots: list[tuple[_Series, int, str]] = []
        for idx, rule in enumerate(self.rules):
            if rule.direction != direction or (rule.logs is not None and name not in rule.logs):
                continue
            if rule.per_domain:
                continue
            key = (idx, mta, "")
            series = log.series.get(key)
            if series is None:
                series = log.series[key] = self._new_series(log, rule)
            code = rule.code
            kind = 2 if "." in code else 1 if code.endswith("xx") else 0
            slots.append((series, kind, code[0] if kind == 1 else code))
        log.fast[(direction, mta)] = slots
        if (name, direction) not in self._applicable:
            self._applicable[(name, direction)] = tuple(
                (i, r)
                for i, r in enumerate(self.rules)
                if r.per_domain and r.direction == direction and (r.logs is None or name in r.logs)
            )
        return slots

    def _domain_series(self, log: _Log, idx: int, rule: Rule, ev: Event, hit: bool) -> _Series:
        """The series this reply counts in: its domain's if tracked, else `other`.

        A domain earns its own series once it has max(2, min_count // 2) recent hits (a
        bounded candidate sketch, halved every minute) and a slot is free or held by a
        domain that is inactive with fewer hits in its window. Everything else, such as a
        flood of one-off spoofed domains, counts together as domain="other", which is
        evaluated like any domain. At most max_domains + 1 series per rule, log and mta.
        """
        domain = (ev.recipient_domain if ev.direction == "outbound" else ev.sender_domain) or OTHER_DOMAIN
        series = log.series.get((idx, ev.mta, domain))
        if series is not None:
            return series
        if hit and domain != OTHER_DOMAIN:
            cands = log.candidates.setdefault((idx, ev.mta), {})
            n = cands[domain] = cands.get(domain, 0) + 1
            if n >= max(2, rule.min_count // 2) and self._make_room(log, idx, rule, ev.mta, n):
                del cands[domain]
                series = log.series[(idx, ev.mta, domain)] = self._new_series(log, rule)
                return series
            if len(cands) > 16 * rule.max_domains:
                keep = sorted(cands.items(), key=lambda kv: kv[1], reverse=True)[: 8 * rule.max_domains]
                log.candidates[(idx, ev.mta)] = dict(keep)
        other = (idx, ev.mta, OTHER_DOMAIN)
        series = log.series.get(other)
        if series is None:
            series = log.series[other] = self._new_series(log, rule)
        return series

    def _make_room(self, log: _Log, idx: int, rule: Rule, mta: str, hits: int) -> bool:
        mine = [k for k in log.series if k[0] == idx and k[1] == mta and k[2] != OTHER_DOMAIN]
        if len(mine) < rule.max_domains:
            return True
        weakest = min(
            (k for k in mine if log.series[k].state == "inactive"),
            key=lambda k: (sum(log.series[k].hits.values()), log.series[k].baseline),
            default=None,
        )
        if weakest is None or sum(log.series[weakest].hits.values()) >= hits:
            return False
        del log.series[weakest]
        return True

    @staticmethod
    def _new_series(log: _Log, rule: Rule) -> _Series:
        # It starts with the window that the log's next evaluation looks at.
        return _Series(folded=log.next_min - rule.window // BUCKET_S)

    # -- evaluation ----------------------------------------------------------------------

    def advance(self, t: float | None = None, *, logs: Iterable[str] | None = None) -> list[Transition]:
        """Evaluate logs up to event time `t`; return all transitions since the last call.

        `t` promises that no event older than t − settle_s will still arrive for those logs
        (`logs`, default all): the daemon passes max(last event time, now) for the logs
        whose tailer is caught up, and t=None (evaluate nothing more, only collect what
        observe() found) while a log still has a backlog, so that backlog is judged on its
        own timestamps. Each log's own events move its evaluation anyway.
        """
        if t is not None:
            target = self._target(t)
            names = self._logs.keys() if logs is None else [n for n in logs if n in self._logs]
            for name in list(names):
                log = self._logs[name]
                if log.next_min <= target:
                    self._evaluate(name, log, target)
        out, self._outbox = self._outbox, []
        out.sort(key=lambda tr: (tr.at, tr.alert, tr.key))
        return out

    def _target(self, t: float) -> int:
        """Last boundary minute that time `t` closes."""
        return math.floor((t - self.settle_s) / BUCKET_S)

    def _evaluate(self, name: str, log: _Log, target: int) -> None:
        start = log.next_min
        shortcuts = self._shortcuts
        dead = False
        for key, series in log.series.items():
            if shortcuts and series.state == "inactive" and not series.hits:
                # No hit in any window: _run would take one step, at `target`, whose count of 0
                # cannot turn it hot (min_count ≥ 1); that step's fold is all it changes.
                fold_to = target - self._window[key[0]]
                if series.baseline == 0.0 and series.folded < fold_to:
                    # fold() of nothing into a zero baseline (inlined: once per minute and series).
                    totals = series.totals
                    if totals:
                        for m in [m for m in totals if m < fold_to]:
                            del totals[m]
                    series.folded = fold_to
                else:
                    series.fold(fold_to, self._keep[key[0]], True)
            elif shortcuts and series.state == "inactive" and start == target:
                # One step of an inactive series (each minute of a busy log): _step's fold, then
                # its test for hot; only a series turning hot needs the rest of _step (whose
                # fold is then done already, and whose sums come out the same).
                idx = key[0]
                rule, w = self.rules[idx], self._window[idx]
                series.fold(target - w, self._keep[idx], True)
                hits = series.hits
                count = sum(map(hits.get, range(target - w, target), repeat(0))) if hits else 0
                if count >= rule.min_count:
                    total = sum(map(series.totals.get, range(target - w, target), repeat(0)))
                    ratio = count / total if total else 0.0
                    if ratio >= rule.min_ratio and count / w >= rule.factor * series.baseline:
                        self._step(name, key, series, rule, self._keep[idx], target)
            else:
                self._run(name, key, series, start, target)
            if series.state == "inactive" and not series.totals and series.baseline == 0.0:
                dead = True
        steps = target + 1 - log.next_min
        log.next_min = target + 1
        if log.candidates:
            for cands in log.candidates.values():
                # Halve candidate counts per minute evaluated, so they measure recent hits.
                for d in list(cands):
                    cands[d] >>= min(steps, 62)
                    if not cands[d]:
                        del cands[d]
        if dead or not shortcuts:
            # Forget series with nothing left to say, so idle domains and logs cost nothing.
            gone = [
                k
                for k, s in log.series.items()
                if s.state == "inactive" and not s.totals and s.baseline == 0.0
            ]
            for key in gone:
                del log.series[key]
            log.fast.clear()  # it may hold a dropped series; while none is, it stays right

    def _run(self, log: str, key: SeriesKey, s: _Series, first: int, last: int) -> None:
        rule = self.rules[key[0]]
        w = rule.window // BUCKET_S
        keep = self._keep[key[0]]
        m = first
        while m <= last:
            if m < last and s.state == "inactive":
                # Boundaries whose window holds no hit cannot turn hot: jump to the first one that does.
                nxt = min((h for h in s.hits if h >= m - w), default=None)
                m = last if nxt is None else max(m, min(nxt + 1, last))
            self._step(log, key, s, rule, keep, m)
            m += 1

    def _step(self, log: str, key: SeriesKey, s: _Series, rule: Rule, keep: float, m: int) -> None:
        w = rule.window // BUCKET_S
        start = m - w
        at = float(m * BUCKET_S)
        # Frozen during an episode, but for at most baseline_s: a level that lasts longer
        # is the new normal (and a fresh start in the middle of one must not page forever).
        s.fold(start, keep, s.state == "inactive" or at - s.pending_since >= rule.baseline_s)
        hits, totals = s.hits, s.totals
        # map() over dict.get: the same sums without a generator frame per minute evaluated.
        count = sum(map(hits.get, range(start, m), repeat(0))) if hits else 0
        total = sum(map(totals.get, range(start, m), repeat(0))) if totals else 0
        ratio = count / total if total else 0.0
        rate = count / w
        base = s.baseline
        state = s.state
        if state == "firing":
            f = rule.resolve_fraction
            hot = (
                count >= f * rule.min_count and ratio >= f * rule.min_ratio and rate >= f * rule.factor * base
            )
        else:
            hot = count >= rule.min_count and ratio >= rule.min_ratio and rate >= rule.factor * base
        if hot:
            if state == "inactive":
                s.state, s.pending_since = "pending", at
                s.peak_count, s.peak_ratio, s.peak_rate = count, ratio, rate
                self._emit(log, key, s, "pending", at, at, count, total, ratio, rate, base)
            else:
                s.peak_count = max(s.peak_count, count)
                s.peak_ratio = max(s.peak_ratio, ratio)
                s.peak_rate = max(s.peak_rate, rate)
            if s.state == "pending" and at - s.pending_since >= rule.for_s:
                s.state, s.fired_at = "firing", at
                self._emit(log, key, s, "firing", at, at, count, total, ratio, rate, base)
        elif state == "pending":
            s.state = "inactive"
            self._emit(log, key, s, "inactive", s.pending_since, at, count, total, ratio, rate, base)
        elif state == "firing":
            s.state = "inactive"
            self._emit(log, key, s, "resolved", s.fired_at, at, count, total, ratio, rate, base)

    def _labels(self, log: str, key: SeriesKey) -> dict[str, str]:
        rule = self.rules[key[0]]
        labels = {
            "alertname": rule.name,
            "severity": rule.severity,
            "mta": key[1],
            "log": log,
            "code": rule.code,
            "direction": rule.direction,
        }
        if rule.per_domain:
            labels["domain"] = key[2]
        return labels

    def _emit(
        self,
        log: str,
        key: SeriesKey,
        s: _Series,
        state: State,
        since: float,
        at: float,
        count: int,
        total: int,
        ratio: float,
        rate: float,
        base: float,
    ) -> None:
        rule = self.rules[key[0]]
        self._outbox.append(
            Transition(
                alert=rule.name,
                rule=rule,
                labels=self._labels(log, key),
                state=state,
                since=since,
                at=at,
                pending_since=s.pending_since,
                count=count,
                total=total,
                ratio=ratio,
                rate=rate,
                baseline=base,
                peak_count=s.peak_count,
                peak_ratio=s.peak_ratio,
                peak_rate=s.peak_rate,
            )
        )

    # -- output --------------------------------------------------------------------------

    def firing(self) -> dict[str, bool]:
        """Alert name → whether any of its series (any log, mta, domain) fires; every rule listed.

        Keyed by rule name only, so logscan_alert_firing{alert} stays bounded by the config.
        """
        out = dict.fromkeys((r.name for r in self.rules), False)
        for log in self._logs.values():
            for (idx, _, _), s in log.series.items():
                if s.state == "firing":
                    out[self.rules[idx].name] = True
        return out

    def active(self) -> list[Transition]:
        """A `firing` transition for every series firing now, e.g. to re-announce after a restart."""
        out: list[Transition] = []
        for name, log in self._logs.items():
            at = float((log.next_min - 1) * BUCKET_S)
            for key, s in log.series.items():
                if s.state == "firing":
                    rule = self.rules[key[0]]
                    w = rule.window // BUCKET_S
                    count = sum(s.hits.get(i, 0) for i in range(log.next_min - 1 - w, log.next_min - 1))
                    total = sum(s.totals.get(i, 0) for i in range(log.next_min - 1 - w, log.next_min - 1))
                    tr = Transition(
                        alert=rule.name,
                        rule=rule,
                        labels=self._labels(name, key),
                        state="firing",
                        since=s.fired_at,
                        at=at,
                        pending_since=s.pending_since,
                        count=count,
                        total=total,
                        ratio=count / total if total else 0.0,
                        rate=count / w,
                        baseline=s.baseline,
                        peak_count=s.peak_count,
                        peak_ratio=s.peak_ratio,
                        peak_rate=s.peak_rate,
                    )
                    out.append(tr)
        out.sort(key=lambda tr: tr.key)
        return out

    # -- persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (undelivered transitions excluded: drain with advance() first)."""
        return {
            "version": STATE_VERSION,
            "late": self.late,
            "rules": {r.name: _signature(r) for r in self.rules},
            "logs": {
                name: {
                    "next_min": log.next_min,
                    "series": [
                        [self.rules[idx].name, mta, domain, s.to_list()]
                        for (idx, mta, domain), s in log.series.items()
                    ],
                    "candidates": [
                        [self.rules[idx].name, mta, dict(c)] for (idx, mta), c in log.candidates.items() if c
                    ],
                }
                for name, log in self._logs.items()
            },
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        rules: Sequence[Rule] = DEFAULT_RULES,
        *,
        settle_s: float = DEFAULT_SETTLE_S,
    ) -> AlertEngine:
        """Rebuild from `to_dict` output under `rules`; series of rules that are gone or now count
        something else (code, direction, per_domain) are dropped. Raises ValueError on a bad shape."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported alert state version {data.get('version')!r}")
        engine = cls(rules, settle_s=settle_s)
        index = {r.name: i for i, r in enumerate(engine.rules)}
        try:
            saved_sig = {str(k): list(v) for k, v in data["rules"].items()}
            engine.late = int(data["late"])
            for name, d in data["logs"].items():
                log = engine._logs[str(name)] = _Log(next_min=int(d["next_min"]))
                for rule_name, mta, domain, sd in d["series"]:
                    idx = index.get(rule_name)
                    if idx is None or saved_sig.get(rule_name) != _signature(engine.rules[idx]):
                        continue
                    rule = engine.rules[idx]
                    if rule.logs is not None and name not in rule.logs:
                        continue
                    log.series[(idx, str(mta), str(domain))] = _Series.from_list(sd)
                for rule_name, mta, cands in d.get("candidates", ()):
                    idx = index.get(rule_name)
                    if idx is not None and saved_sig.get(rule_name) == _signature(engine.rules[idx]):
                        log.candidates[(idx, str(mta))] = {str(k): int(v) for k, v in cands.items()}
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed alert state: {exc!r}") from exc
        return engine


def _first_directions(
    dirs: list[str], codes: Sequence[tuple[str, str, str]], i: int, k: int
) -> Iterable[str]:
    """The directions of replies i to k in the order they first come (the order their series are
    made in); `dirs` as for _directions."""
    if dirs:
        return dict.fromkeys(dirs[i:k])
    return (codes[i][0],) if k > i else ()


def _directions(dirs: list[str], weights: list[int] | None, first: str, i: int, j: int) -> tuple[int, int]:
    """How many of replies i to j are of direction `first`, and how many there are (`dirs`: each
    one's direction, [] when all are `first`; `weights`: see EventBatch.weights)."""
    if weights is None:
        return (dirs[i:j].count(first) if dirs else j - i), j - i
    counts = weights[i:j]
    n = sum(counts)
    return (sum(compress(counts, map(first.__eq__, dirs[i:j]))) if dirs else n), n


def explain(tr: Transition, diagnosis: Diagnosis) -> Transition:
    """`tr` with its `why` filled in from the refusals of its log, direction and code over the
    rule's window ending at the transition (4xx/5xx rules only; others are returned as they are)."""
    code = tr.rule.code
    if code[0] not in "45" or tr.state == "inactive":
        return tr
    end = tr.at
    why = diagnosis.why(tr.labels.get("log", ""), tr.rule.direction, code, end - tr.rule.window, end)
    return tr if why is None else dataclasses.replace(tr, why=why)


def _signature(rule: Rule) -> list[Any]:
    """What a rule's buckets mean: if this changes, saved buckets are meaningless."""
    return [rule.code, rule.direction, rule.per_domain]


class Replay:
    """Incremental `replay`: feed events one at a time (e.g. from `scan`), then `finish()`."""

    def __init__(self, rules: Sequence[Rule] = DEFAULT_RULES, *, settle_s: float = DEFAULT_SETTLE_S) -> None:
        self.engine = AlertEngine(rules, settle_s=settle_s)
        self._open: dict[tuple[tuple[str, str], ...], Transition] = {}
        self._periods: list[AlertPeriod] = []
        self._seen = 0

    def observe(self, ev: Event) -> None:
        self.engine.observe(ev)
        self._seen += 1
        if self._seen % 65536 == 0:
            self._take(self.engine.advance())

    def observe_events(self, events: Sequence[Event]) -> None:
        self.engine.observe_events(events)
        seen = self._seen + len(events)
        if seen // 65536 != self._seen // 65536:
            self._take(self.engine.advance())
        self._seen = seen

    def observe_batch(self, batch: EventBatch) -> None:
        self.engine.observe_batch(batch)
        seen = self._seen + len(batch.times)
        # advance() without a time only collects transitions: when it runs changes nothing.
        if seen // 65536 != self._seen // 65536:
            self._take(self.engine.advance())
        self._seen = seen

    def _take(self, transitions: Iterable[Transition]) -> None:
        for tr in transitions:
            if tr.state == "firing":
                self._open[tr.key] = tr
            elif tr.state == "resolved":
                start = self._open.pop(tr.key, None)
                self._periods.append(_period(start or tr, tr))

    def finish(self, until: float | None = None) -> list[AlertPeriod]:
        """Every firing period; `until` evaluates past the last event so finished bursts resolve."""
        self._take(self.engine.advance(until))
        periods = self._periods + [_period(tr, None) for tr in self._open.values()]
        periods.sort(key=lambda p: (p.start, p.alert, sorted(p.labels.items())))
        return periods


def replay(
    events: Iterable[Event],
    rules: Sequence[Rule] = DEFAULT_RULES,
    *,
    until: float | None = None,
    settle_s: float = DEFAULT_SETTLE_S,
) -> list[AlertPeriod]:
    """The firing periods a live daemon would have paged for on these events.

    Give each log's events in time order (rotated files oldest first); logs may follow one
    another. `until` (e.g. now) evaluates past the last event so that finished bursts
    resolve; without it, a period still firing at the last event has end=None.
    """
    rp = Replay(rules, settle_s=settle_s)
    for ev in events:
        rp.observe(ev)
    return rp.finish(until)


def _period(start: Transition, end: Transition | None) -> AlertPeriod:
    last = end or start
    return AlertPeriod(
        alert=start.alert,
        labels=dict(start.labels),
        pending_since=start.pending_since,
        start=start.since,
        end=None if end is None else end.at,
        peak_count=last.peak_count,
        peak_ratio=last.peak_ratio,
        peak_rate=last.peak_rate,
        baseline=start.baseline,
    )


__all__ = [
    "DEFAULT_RULES",
    "AlertEngine",
    "AlertPeriod",
    "Replay",
    "Rule",
    "Transition",
    "explain",
    "replay",
    "rules_from",
]
