"""The metric contract as a prometheus_client Collector that reads one snapshot per scrape.

The daemon hands `make_registry` a callable returning an `Exposition`; it is called on the
HTTP thread at every scrape, so it must copy shared state under the daemon's lock and
return quickly. Label hygiene is a pure function of the snapshot, which is what keeps every
exported counter monotonic; what the registry keeps between scrapes (decisions per key,
rendered blocks, deflate segments) only caches that function and is checked every scrape.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import compress
from operator import itemgetter
from typing import Final, TypeVar, cast

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.utils import floatToGoString

from logscan import __version__
from logscan.core.aggregate import (
    DEFAULT_WINDOWS,
    DELAY_BUCKETS,
    OTHER,
    STANDARD_ENHANCED,
    Snapshot,
    window_label,
)
from logscan.events import DELIVERY_STATUSES
from logscan.parsers import FORMATS
from logscan.parsers.reasons import REASONS
from logscan.sources.queue import QueueStatus

MTAS: Final = FORMATS
DIRECTIONS: Final = ("inbound", "outbound")
LINE_RESULTS: Final = ("parsed", "ignored", "unparsed")
CLASSES: Final = ("2xx", "4xx", "5xx")
# Present at 0 for every configured log so that alerts on them never meet a missing series.
COMMON_CODES: Final = ("250", "421", "450", "451", "452", "550", "551", "552", "553", "554")
# The SMTP commands a parser may name; anything else is folded into "other". "" = not known.
STAGES: Final = frozenset(
    {
        "",
        "connect",
        "helo",
        "mail",
        "rcpt",
        "data",
        "end-of-data",
        "auth",
        "starttls",
        "rset",
        "quit",
        "noop",
        "vrfy",
        "expn",
        "help",
        "etrn",
        "other",
        # Sessions ended without a reply to a command (docs/parsers/): a protocol
        # synchronization (pipelining) violation, and a limit of errors or commands reached.
        "pipelining",
        "limit",
    }
)
# Distinct (code, enhanced) pairs exported per (mta, log, direction). Remote servers choose
# the enhanced code, so a hostile one could mint thousands; past the cap a pair keeps its
# code and loses its enhanced part. Pairs are admitted in first-seen order (the snapshot
# dicts keep insertion order, and so does the saved state), so admission never flips and
# no counter ever goes backwards.
MAX_ENHANCED_PER_LOG: Final = 200

_CODE = re.compile(r"[2-5][0-9][0-9]\Z")
_ENHANCED = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}\Z")
# Configured names: no "/" (no file paths), no "@" (no addresses), no spaces.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")
_TOKEN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}\Z")
_DOMAIN = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9])?\Z")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}\Z")

Labels = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LogStatus:
    """One configured log as its tailer sees it."""

    name: str
    mta: str
    up: bool
    bytes_read: int = 0
    rotations: int = 0
    lag_bytes: int = 0
    # Journal sources only (None for files): saved cursors found vacuumed away.
    journal_cursor_gaps: int | None = None


@dataclass(frozen=True, slots=True)
class Exposition:
    """Everything one scrape exports; built by the daemon under its lock.

    `alerts_firing` and `notifications` should list every configured alert (and receiver)
    at False / 0 from the start, for the same missing-series reason as COMMON_CODES.
    """

    snapshot: Snapshot
    logs: tuple[LogStatus, ...] = ()
    alerts_firing: Mapping[str, bool] = field(default_factory=dict)
    notifications: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    version: str = __version__
    watcher_up: bool = True
    windows: tuple[int, ...] = DEFAULT_WINDOWS
    queues: tuple[QueueStatus, ...] = ()  # mail queue depth ([queue])
    # State file health: failed saves, and when the last one reached the disk
    state_save_failures: int = 0
    state_last_save: float = 0.0


class _Folds:
    """Counts of events whose labels were folded or dropped at export, by metric and label."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[Labels, float] = {}

    def add(self, metric: str, label: str, reason: str, n: float) -> None:
        key = (metric, label, reason)
        self.counts[key] = self.counts.get(key, 0) + n


def _add(acc: dict[Labels, float], key: Labels, n: float) -> None:
    acc[key] = acc.get(key, 0) + n


_CHECKS: Final[dict[str, Callable[[str], bool]]] = {
    "mta": lambda v: v in MTAS,
    "log": lambda v: _NAME.match(v) is not None,
    "direction": lambda v: v in DIRECTIONS,
}


def _bad_label(folds: _Folds, metric: str, n: float, **labels: str) -> bool:
    """True (and counted) when a label shared by several metrics is out of bounds."""
    for label, value in labels.items():
        if not _CHECKS[label](value):
            folds.add(metric, label, "invalid", n)
            return True
    return False


_K = TypeVar("_K", bound=Labels)
Decision = tuple[Labels | None, str, str]  # (exported key or None if dropped, folded label, reason)


class _Plan:
    """Export decisions for the keys of one snapshot dict, kept between scrapes.

    The aggregate only ever appends keys (dicts keep insertion order), so the decisions made
    for the keys of the last scrape hold for the same leading keys now, and only new keys
    need deciding. That is checked at every scrape (one list comparison); any other change
    (a different aggregate, a reset, domains leaving the top N) starts afresh.
    """

    __slots__ = ("decisions", "kept", "keys", "moved", "zero", "zero_for")

    def __init__(self) -> None:
        self.keys: list[Labels] = []
        self.decisions: list[Decision] = []
        # Per key: exported as it is (nothing folded), the most common case by far; or not.
        self.kept: list[bool] = []
        self.moved: list[bool] = []
        self.zero: dict[Labels, float] = {}
        self.zero_for: object = self  # nothing the caller passes

    def reset(self) -> None:
        self.keys, self.decisions, self.kept, self.moved = [], [], [], []

    def decide(self, key: Labels) -> Decision:
        raise NotImplementedError

    def run(self, counts: Iterable[_K]) -> list[Decision]:
        """One decision per key of `counts`, in its order."""
        keys: list[Labels] = list(counts)
        if keys[: len(self.keys)] != self.keys:
            self.reset()
        for key in keys[len(self.keys) :]:
            decision = self.decide(key)
            self.decisions.append(decision)
            self.kept.append(decision[0] is key)
            self.moved.append(decision[0] is not key)
        self.keys = keys
        return self.decisions

    def zeros(self, made_for: object, make: Callable[[], dict[Labels, float]]) -> dict[Labels, float]:
        """The series present at 0 (`make()`), kept while `made_for` (the configured logs) holds."""
        if made_for != self.zero_for:
            self.zero, self.zero_for = make(), made_for
        return self.zero

    def export(
        self, counts: Mapping[_K, float], zero: Mapping[Labels, float], name: str, folds: _Folds
    ) -> dict[Labels, float]:
        """`zero` plus `counts` under their exported keys, folds counted against `name`."""
        out = dict(zero)
        decisions = self.run(counts)
        # Keys exported as they are go in at C speed (each occurs once, so a zero is replaced
        # by its count); then the folded and dropped ones, usually none.
        if True not in self.moved:
            out.update(cast(Mapping[Labels, float], counts))
            return out
        out.update(compress(counts.items(), self.kept))
        for n, (out_key, label, reason) in compress(zip(counts.values(), decisions, strict=True), self.moved):
            if label:
                folds.add(name, label, reason, n)
            if out_key is not None:
                out[out_key] = out.get(out_key, 0) + n
        return out


class _ReplyPlan(_Plan):
    """`_Plan` for replies: also keeps which enhanced codes each log has admitted under the cap."""

    __slots__ = ("admitted", "code_ok", "enhanced_ok", "prefixes")

    def __init__(self) -> None:
        super().__init__()
        self.prefixes: dict[Labels, str] = {}  # (mta, log, direction) -> "" or the bad label
        self.admitted: dict[Labels, set[Labels]] = {}
        self.code_ok: dict[str, bool] = {}
        self.enhanced_ok: dict[str, bool] = {}

    def reset(self) -> None:
        super().reset()
        self.prefixes, self.admitted, self.code_ok, self.enhanced_ok = {}, {}, {}, {}

    def decide(self, key: Labels) -> Decision:
        prefix = key[:3]
        bad = self.prefixes.get(prefix)
        if bad is None:
            bad = ""
            for label, value in zip(("mta", "log", "direction"), prefix, strict=True):
                if not _CHECKS[label](value):
                    bad = label
                    break
            self.prefixes[prefix] = bad
        if bad:
            return None, bad, "invalid"
        code, enhanced = key[3], key[4]
        ok = self.code_ok.get(code)
        if ok is None:
            ok = self.code_ok[code] = _CODE.match(code) is not None
        if not ok:
            return None, "code", "invalid"
        if not enhanced:
            return key, "", ""
        good = self.enhanced_ok.get(enhanced)
        if good is None:
            good = self.enhanced_ok[enhanced] = _ENHANCED.match(enhanced) is not None
        if not good or enhanced[0] != code[0]:
            return (*prefix, code, ""), "enhanced", "invalid"
        if enhanced in STANDARD_ENHANCED:
            return key, "", ""  # RFC 3463 codes never fold: a flood of invented ones cannot blind rules
        seen = self.admitted.setdefault(prefix, set())
        pair = key[3:]
        if pair not in seen:
            if len(seen) >= MAX_ENHANCED_PER_LOG:
                return (*prefix, code, ""), "enhanced", "overflow"
            seen.add(pair)
        return key, "", ""


class _ReasonPlan(_Plan):
    """`_Plan` for reply reasons: (mta, log, direction, code, reason)."""

    __slots__ = ()

    def decide(self, key: Labels) -> Decision:
        for label, value in zip(("mta", "log", "direction"), key, strict=False):
            if not _CHECKS[label](value):
                return None, label, "invalid"
        code = key[3]
        if not _CODE.match(code) or code[0] not in "45":
            return None, "code", "invalid"
        if key[4] not in REASONS:
            return (*key[:4], "other"), "reason", "invalid"
        return key, "", ""


class _DomainPlan(_Plan):
    """`_Plan` for per-domain replies: (domain, direction, class)."""

    __slots__ = ()

    def decide(self, key: Labels) -> Decision:
        raw_domain, direction, klass = key
        if direction not in DIRECTIONS:
            return None, "direction", "invalid"
        if len(klass) != 3 or klass[0] not in "2345" or klass[1:] != "xx":
            return None, "class", "invalid"
        domain = raw_domain.lower()
        if domain != OTHER and not _DOMAIN.match(domain):
            return (OTHER, direction, klass), "domain", "invalid"
        return (key, "", "") if domain == raw_domain else ((domain, direction, klass), "", "")


@dataclass(frozen=True, slots=True)
class _Plans:
    """The export decisions a registry keeps between scrapes, one `_Plan` per large family."""

    replies: _ReplyPlan = field(default_factory=_ReplyPlan)
    reasons: _ReasonPlan = field(default_factory=_ReasonPlan)
    domains: _DomainPlan = field(default_factory=_DomainPlan)


def _replies(snap: Snapshot, logs: list[LogStatus], folds: _Folds, plan: _ReplyPlan) -> dict[Labels, float]:
    def zero() -> dict[Labels, float]:
        return {
            (log.mta, log.name, direction, code, ""): 0
            for log in logs
            for direction in DIRECTIONS
            for code in COMMON_CODES
        }

    made_for = [(log.mta, log.name) for log in logs]
    return plan.export(snap.replies, plan.zeros(made_for, zero), "logscan_smtp_replies_total", folds)


def _reasons(snap: Snapshot, logs: list[LogStatus], folds: _Folds, plan: _ReasonPlan) -> dict[Labels, float]:
    """4xx/5xx replies by reason; every reason of a 551 starts at 0 for each log and direction."""

    def zero() -> dict[Labels, float]:
        return {
            (log.mta, log.name, direction, "551", reason): 0
            for log in logs
            for direction in DIRECTIONS
            for reason in REASONS
        }

    made_for = [(log.mta, log.name) for log in logs]
    return plan.export(snap.reasons, plan.zeros(made_for, zero), "logscan_smtp_reply_reasons_total", folds)


def _deliveries(snap: Snapshot, logs: Iterable[LogStatus], folds: _Folds) -> dict[Labels, float]:
    out: dict[Labels, float] = {(log.mta, log.name, s): 0 for log in logs for s in DELIVERY_STATUSES}
    for (mta, log_name, status), n in snap.deliveries.items():
        if _bad_label(folds, "logscan_deliveries_total", n, mta=mta, log=log_name):
            continue
        if status not in DELIVERY_STATUSES:
            folds.add("logscan_deliveries_total", "status", "invalid", n)
            continue
        _add(out, (mta, log_name, status), n)
    return out


def _rejections(snap: Snapshot, folds: _Folds) -> dict[Labels, float]:
    out: dict[Labels, float] = {}
    name = "logscan_rejections_total"
    for (mta, log_name, raw_stage, code), n in snap.rejections.items():
        stage = raw_stage
        if _bad_label(folds, name, n, mta=mta, log=log_name):
            continue
        if code and not _CODE.match(code):  # "": refused, but the code sent is not known
            folds.add(name, "code", "invalid", n)
            continue
        if stage not in STAGES:
            folds.add(name, "stage", "invalid", n)
            stage = "other"
        _add(out, (mta, log_name, stage, code), n)
    return out


def _domains(snap: Snapshot, folds: _Folds, plan: _DomainPlan) -> dict[Labels, float]:
    zero = plan.zeros(None, lambda: {(OTHER, d, c): 0 for d in DIRECTIONS for c in CLASSES})
    return plan.export(snap.domains, zero, "logscan_domain_replies_total", folds)


def _lines(snap: Snapshot, logs: Iterable[LogStatus], folds: _Folds) -> dict[Labels, float]:
    out: dict[Labels, float] = {(log.name, r): 0 for log in logs for r in LINE_RESULTS}
    for (log_name, result), n in snap.lines.items():
        if _bad_label(folds, "logscan_lines_total", n, log=log_name):
            continue
        if result not in LINE_RESULTS:
            folds.add("logscan_lines_total", "result", "invalid", n)
            continue
        _add(out, (log_name, result), n)
    return out


def _unparsed(snap: Snapshot, folds: _Folds) -> dict[Labels, float]:
    out: dict[Labels, float] = {}
    for (log_name, raw_reason), n in snap.unparsed.items():
        reason = raw_reason
        if _bad_label(folds, "logscan_unparsed_lines_total", n, log=log_name):
            continue
        if not _TOKEN.match(reason):
            folds.add("logscan_unparsed_lines_total", "reason", "invalid", n)
            reason = OTHER
        _add(out, (log_name, reason), n)
    return out


def _delays(
    snap: Snapshot, logs: Iterable[LogStatus], folds: _Folds
) -> dict[Labels, tuple[list[float], float]]:
    """(mta, status) -> (per-bucket counts incl. +Inf, sum); cumulated by the caller."""
    width = len(DELAY_BUCKETS) + 1
    out: dict[Labels, tuple[list[float], float]] = {
        (log.mta, s): ([0.0] * width, 0.0) for log in logs for s in DELIVERY_STATUSES
    }
    name = "logscan_delivery_delay_seconds"
    for (mta, status), (buckets, total, _count) in snap.delays.items():
        n = sum(buckets)
        if _bad_label(folds, name, n, mta=mta):
            continue
        if status not in DELIVERY_STATUSES or len(buckets) != width:
            folds.add(name, "status", "invalid", n)
            continue
        acc, acc_sum = out.get((mta, status), ([0.0] * width, 0.0))
        out[(mta, status)] = ([a + b for a, b in zip(acc, buckets, strict=True)], acc_sum + total)
    return out


@dataclass(frozen=True, slots=True)
class Family:
    """One exported family, independent of any client library: what both renderers read.

    `name` is the name as the text format writes it (counters end in `_total`); a
    histogram's `values` is empty and `histogram` maps labels to (cumulative buckets, sum).
    """

    name: str
    kind: str
    doc: str
    labels: Labels
    values: Mapping[Labels, float] = field(default_factory=dict)
    histogram: Mapping[Labels, tuple[list[float], float]] = field(default_factory=dict)


def _counter(name: str, doc: str, labels: Labels, values: Mapping[Labels, float]) -> Family:
    return Family(name, "counter", doc, labels, values)


def _gauge(name: str, doc: str, labels: Labels, values: Mapping[Labels, float]) -> Family:
    return Family(name, "gauge", doc, labels, values)


_BOUNDS: Final = tuple([repr(float(b)) for b in DELAY_BUCKETS] + ["+Inf"])


def _metric(fam: Family) -> Metric:
    """The prometheus_client object for one family (the registry path; render() skips it)."""
    if fam.kind == "histogram":
        hist = HistogramMetricFamily(fam.name, fam.doc, labels=fam.labels)
        for key, (cumulative, total) in fam.histogram.items():
            hist.add_metric(key, list(zip(_BOUNDS, cumulative, strict=True)), total)
        return hist
    out: CounterMetricFamily | GaugeMetricFamily
    if fam.kind == "counter":
        # CounterMetricFamily wants the name without _total and emits no _created when created=None.
        out = CounterMetricFamily(fam.name.removesuffix("_total"), fam.doc, labels=fam.labels)
    else:
        out = GaugeMetricFamily(fam.name, fam.doc, labels=fam.labels)
    for key, v in fam.values.items():
        out.add_metric(key, v)
    return out


class LogscanCollector:
    """Builds every family of the metric contract from one `Exposition` per scrape."""

    def __init__(self, source: Callable[[], Exposition]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        """Called by the registry on the scraping thread; raising makes the scrape fail (HTTP 500)."""
        yield from self.families(self._source())

    def source(self) -> Exposition:
        """One exposition from the daemon (copied under its lock)."""
        return self._source()

    @staticmethod
    def families(exp: Exposition) -> list[Metric]:
        """The exported families for one exposition; pure, so tests can call it directly."""
        return [_metric(f) for f in exported(exp)]


def exported(exp: Exposition, plans: _Plans | None = None) -> list[Family]:
    """Every family of the metric contract for one exposition, in exposition order.

    Pure without `plans`; a registry passes the plans it keeps between scrapes.
    """
    plans = plans or _Plans()
    snap = exp.snapshot
    folds = _Folds()
    # Per-log self-metrics exist for every configured log from the start; series that
    # carry an `mta` label wait until the log's format is known (auto-detected or set).
    named = [log for log in exp.logs if _NAME.match(log.name)]
    logs = [log for log in named if log.mta in MTAS]
    mtas = sorted({log.mta for log in logs})
    fams: list[Family] = [
        _counter(
            "logscan_smtp_replies_total",
            "SMTP replies seen in the logs, by basic and enhanced status code.",
            ("mta", "log", "direction", "code", "enhanced"),
            _replies(snap, logs, folds, plans.replies),
        ),
        _counter(
            "logscan_smtp_reply_reasons_total",
            "4xx/5xx SMTP replies by why they refused (docs/runbooks/<reason>.md).",
            ("mta", "log", "direction", "code", "reason"),
            _reasons(snap, logs, folds, plans.reasons),
        ),
        _counter(
            "logscan_deliveries_total",
            "Delivery outcomes stated by the logs.",
            ("mta", "log", "status"),
            _deliveries(snap, logs, folds),
        ),
        _counter(
            "logscan_rejections_total",
            "Inbound SMTP commands our server refused, by stage and code.",
            ("mta", "log", "stage", "code"),
            _rejections(snap, folds),
        ),
    ]

    ratios: dict[Labels, float] = {(m, window_label(w)): 0.0 for m in mtas for w in exp.windows}
    for (mta, window), v in snap.bounce_ratio.items():
        if mta in MTAS and _TOKEN.match(window):
            ratios[(mta, window)] = v
    fams.append(
        _gauge(
            "logscan_bounce_ratio",
            "bounced / (sent + bounced + expired) over the window, on event time; 0 when idle.",
            ("mta", "window"),
            ratios,
        )
    )

    hist: dict[Labels, tuple[list[float], float]] = {}
    for key, (buckets, total) in _delays(snap, logs, folds).items():
        cumulative: list[float] = []
        running = 0.0
        for b in buckets:
            running += b
            cumulative.append(running)
        hist[key] = (cumulative, total)
    fams.append(
        Family(
            "logscan_delivery_delay_seconds",
            "histogram",
            "Delay from queueing to the final outcome of a delivery.",
            ("mta", "status"),
            histogram=hist,
        )
    )

    fams.append(
        _counter(
            "logscan_domain_replies_total",
            "Replies by remote domain (top N; the rest as other) and reply class.",
            ("domain", "direction", "class"),
            _domains(snap, folds, plans.domains),
        )
    )
    fams.append(
        _counter(
            "logscan_lines_total",
            "Log lines read, by parse result.",
            ("log", "result"),
            _lines(snap, named, folds),
        )
    )
    fams.append(
        _counter(
            "logscan_unparsed_lines_total",
            "Log lines the parser did not understand, by reason.",
            ("log", "reason"),
            _unparsed(snap, folds),
        )
    )
    fams.extend(_log_families(named, snap))
    fams.extend(_alert_families(exp, folds))
    fams.extend(_queue_families(exp.queues))
    fams.append(
        _gauge(
            "logscan_build_info",
            "Build of logscan; always 1.",
            ("version",),
            {(exp.version if _VERSION.match(exp.version) else "unknown",): 1},
        )
    )
    fams.append(
        _gauge(
            "logscan_watcher_up",
            "1 when the file-system watcher is running.",
            (),
            {(): float(exp.watcher_up)},
        )
    )
    fams.extend(_state_families(exp))
    fams.append(
        _counter(
            "logscan_export_folded_total",
            "Events whose label value was invalid or over a cardinality cap at export.",
            ("metric", "label", "reason"),
            folds.counts,
        )
    )
    return fams


def _log_families(logs: list[LogStatus], snap: Snapshot) -> list[Family]:
    def per_log(get: Callable[[LogStatus], float]) -> dict[Labels, float]:
        return {(log.name,): get(log) for log in logs}

    return [
        _counter(
            "logscan_log_bytes_read_total",
            "Bytes read from the log.",
            ("log",),
            per_log(lambda s: s.bytes_read),
        ),
        _counter(
            "logscan_log_rotations_total",
            "Rotations of the log noticed.",
            ("log",),
            per_log(lambda s: s.rotations),
        ),
        _gauge(
            "logscan_log_lag_bytes",
            "Bytes written to the log but not yet read.",
            ("log",),
            per_log(lambda s: s.lag_bytes),
        ),
        _gauge(
            "logscan_log_last_event_timestamp_seconds",
            "Time of the newest event in the log (from the line); 0 before the first.",
            ("log",),
            per_log(lambda s: snap.last_event.get(s.name, 0.0)),
        ),
        _gauge(
            "logscan_log_up",
            "1 when the log is open and being followed.",
            ("log",),
            per_log(lambda s: float(s.up)),
        ),
        *_journal_families(logs),
    ]


def _journal_families(logs: list[LogStatus]) -> list[Family]:
    """Only when some log reads the journal: a file-only daemon exports no such family."""
    gaps: dict[Labels, float] = {
        (s.name,): s.journal_cursor_gaps for s in logs if s.journal_cursor_gaps is not None
    }
    if not gaps:
        return []
    return [_counter(
        "logscan_journal_cursor_gaps_total",
        "Restarts where the saved journal cursor had been vacuumed away; entries may be lost.",
        ("log",),
        gaps,
    )]


def _state_families(exp: Exposition) -> list[Family]:
    """State file health: a failing save is otherwise invisible until a restart."""
    return [
        _counter(
            "logscan_state_save_failures_total",
            "Saves of the state file the disk refused since start.",
            (),
            {(): exp.state_save_failures},
        ),
        _gauge(
            "logscan_state_last_save_timestamp_seconds",
            "Wall time of the last state save that reached the disk; 0 before the first.",
            (),
            {(): exp.state_last_save},
        ),
    ]


def _alert_families(exp: Exposition, folds: _Folds) -> list[Family]:
    firing: dict[Labels, float] = {}
    for alert, on in exp.alerts_firing.items():
        if _NAME.match(alert):
            firing[(alert,)] = float(on)
        else:
            folds.add("logscan_alert_firing", "alert", "invalid", 1)
    sent: dict[Labels, float] = {}
    for (alert, receiver, result), n in exp.notifications.items():
        if _NAME.match(alert) and _NAME.match(receiver) and _TOKEN.match(result):
            _add(sent, (alert, receiver, result), n)
        else:
            folds.add("logscan_alert_notifications_total", "alert", "invalid", n)
    return [
        _gauge("logscan_alert_firing", "1 while the built-in alert is firing.", ("alert",), firing),
        _counter(
            "logscan_alert_notifications_total",
            "Notifications sent for built-in alerts, by receiver and result.",
            ("alert", "receiver", "result"),
            sent,
        ),
    ]


def _queue_families(queues: tuple[QueueStatus, ...]) -> list[Family]:
    """Queue depth; a failed last sample leaves no depth (never a stale one)."""
    if not queues:
        return []
    depths: dict[Labels, float] = {}
    errors: dict[Labels, float] = {}
    for q in queues:
        errors[(q.mta,)] = q.errors
        for queue, n in (q.depths or {}).items():
            depths[(q.mta, queue)] = n
    return [
        _gauge("logscan_queue_messages", "Messages in the MTA's queue.", ("mta", "queue"), depths),
        _counter(
            "logscan_queue_scrape_errors_total",
            "Queue samples that failed or timed out.",
            ("mta",),
            errors,
        ),
    ]


def _go_float(v: float) -> str:
    out: str = floatToGoString(v)  # type: ignore[no-untyped-call]
    return out


def _om_latest(registry: CollectorRegistry) -> bytes:
    out: bytes = om_exposition.generate_latest(registry)  # type: ignore[no-untyped-call]
    return out


def _escape_value(v: str) -> str:
    # Label values as prometheus_client writes them in both formats.
    if "\\" in v or "\n" in v or '"' in v:
        return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return v


def _doc(doc: str, openmetrics: bool) -> str:
    doc = doc.replace("\\", r"\\").replace("\n", r"\n")
    return doc.replace('"', r"\"") if openmetrics else doc


def _template(sample: str, labels: Labels) -> tuple[str, tuple[int, ...]]:
    """A %-template for one sample line, labels in sorted order (as prometheus_client sorts them)."""
    order = tuple(sorted(range(len(labels)), key=lambda i: labels[i]))
    if not labels:
        return sample + " %s\n", order
    # Metric and label names are legacy-valid constants: no "%" to escape in the template.
    return sample + "{" + ",".join(f'{labels[i]}="%s"' for i in order) + "} %s\n", order


Prefixes = dict[str, dict[Labels, str]]

# Series per block: a changed value re-renders and re-compresses the ~512 lines around it,
# not the whole ~1 MB of 10k series.
_BLOCK: Final = 512
_SEGMENT: Final = 16_384  # bytes of text at least per deflate segment: short ones compress badly
# Level 1: ~1 MB of repetitive text shrinks ~15x at level 1 or 6; level 6 costs 3-4x the CPU.
_GZIP_LEVEL: Final = 1
_GZIP_HEAD: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime
_DEFLATE_END: Final = b"\x03\x00"  # an empty final block (fixed Huffman, end-of-block only)


def _deflate(data: bytes) -> bytes:
    """`data` as raw deflate that ends byte-aligned and refers to nothing before it.

    Such segments concatenate into one valid deflate stream (what pigz does), so a body
    made of kept pieces is gzipped by compressing only the pieces that changed.
    """
    if not data:
        return b""
    packer = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush(zlib.Z_SYNC_FLUSH)


class _Piece:
    """A run of exposition bytes and the inputs it was rendered from."""

    __slots__ = ("data", "inputs")

    def __init__(self, data: bytes, inputs: object = None) -> None:
        self.data = data
        self.inputs = inputs


Group = tuple[list[_Piece], bytes]  # consecutive pieces (kept alive, so ids stay theirs), deflated


class _Renderer:
    """Renders families into pieces, keeping them between calls; one per registry.

    A family's samples are cut into blocks of `_BLOCK` series; a block whose keys and
    values equal those it was rendered from is reused as it is, with its deflate segment.
    Blocks carry no format: text and OpenMetrics differ only in the HELP/TYPE heads.
    """

    __slots__ = ("blocks", "groups", "heads", "memo", "prefixes")

    def __init__(self) -> None:
        self.blocks: dict[tuple[str, int], _Piece] = {}
        self.groups: dict[bool, dict[tuple[int, ...], Group]] = {}  # per format
        self.heads: dict[tuple[str, str, str, bool], _Piece] = {}
        self.prefixes: Prefixes = {}  # each series' `name{labels} `, the same in both formats
        self.memo: dict[float, str] = {}  # most values repeat (0, 1, small counts)

    def fmt(self, v: float) -> str:
        s = self.memo.get(v)
        if s is None:
            if len(self.memo) > 100_000:  # counts only grow: keep the memo bounded
                self.memo.clear()
            s = self.memo[v] = _go_float(v)
        return s

    def head(self, fam: Family, openmetrics: bool) -> _Piece:
        key = (fam.name, fam.kind, fam.doc, openmetrics)
        piece = self.heads.get(key)
        if piece is None:
            name = fam.name.removesuffix("_total") if openmetrics and fam.kind == "counter" else fam.name
            text = f"# HELP {name} {_doc(fam.doc, openmetrics)}\n# TYPE {name} {fam.kind}\n"
            piece = self.heads[key] = _Piece(text.encode())
        return piece

    def pieces(self, families: Iterable[Family], *, openmetrics: bool) -> list[_Piece]:
        """The exposition of `families` as pieces in order, without the OpenMetrics `# EOF`."""
        out: list[_Piece] = []
        blocks: dict[tuple[str, int], _Piece] = {}  # only this call's: no growth with churn
        for fam in families:
            out.append(self.head(fam, openmetrics))
            if fam.kind == "histogram":
                old = self.blocks.get((fam.name, -1))
                if old is None or old.inputs != fam.histogram:
                    old = _Piece(self.histogram(fam).encode(), fam.histogram)
                blocks[(fam.name, -1)] = old
                out.append(old)
                continue
            keys, values = list(fam.values), list(fam.values.values())
            for i, start in enumerate(range(0, len(keys), _BLOCK)):
                inputs = (keys[start : start + _BLOCK], values[start : start + _BLOCK])
                old = self.blocks.get((fam.name, i))
                if old is None or old.inputs != inputs:
                    old = _Piece(self.samples(fam, len(keys), *inputs).encode(), inputs)
                blocks[(fam.name, i)] = old
                out.append(old)
        self.blocks = blocks
        return out

    def deflated(self, pieces: list[_Piece], *, openmetrics: bool) -> bytes:
        """`pieces` as concatenated deflate segments, each of at least `_BLOCK` series' worth
        of bytes (heads and small families go together); a run of the same pieces as last
        time (by identity: unchanged blocks are the same objects) reuses its segment."""
        kept = self.groups.get(openmetrics, {})
        groups: dict[tuple[int, ...], Group] = {}
        out: list[bytes] = []
        run: list[_Piece] = []
        size = 0
        for i, piece in enumerate(pieces):
            run.append(piece)
            size += len(piece.data)
            if size < _SEGMENT and i < len(pieces) - 1:
                continue
            key = tuple(map(id, run))
            group = kept.get(key)
            if group is None:
                group = (run, _deflate(b"".join(p.data for p in run)))
            groups[key] = group
            out.append(group[1])
            run, size = [], 0
        self.groups[openmetrics] = groups
        return b"".join(out)

    def samples(self, fam: Family, total: int, keys: list[Labels], values: list[float]) -> str:
        known = self.prefixes.get(fam.name)
        if known is None or len(known) > 2 * total + 1000:  # label churn: start afresh
            known = self.prefixes[fam.name] = {}
        line, order = _template(fam.name, fam.labels)
        line = line.removesuffix("%s\n")
        permute = itemgetter(*order) if len(order) > 1 else None
        fmt = self.fmt
        out: list[str] = []
        emit = out.append
        for key, v in zip(keys, values, strict=True):
            prefix = known.get(key)
            if prefix is None:
                clean = _clean(key)
                prefix = known[key] = line % (permute(clean) if permute is not None else clean)
            emit(prefix + fmt(v) + "\n")
        return "".join(out)

    def histogram(self, fam: Family) -> str:
        bucket, border = _template(fam.name + "_bucket", (*fam.labels, "le"))
        count, order = _template(fam.name + "_count", fam.labels)
        total, _ = _template(fam.name + "_sum", fam.labels)
        fmt = self.fmt
        out: list[str] = []
        emit = out.append
        for key, (cumulative, sum_value) in fam.histogram.items():
            vals = _clean(key)
            for le, n in zip(_BOUNDS, cumulative, strict=True):
                full = (*vals, le)
                emit(bucket % (*[full[i] for i in border], fmt(n)))
            plain = tuple(vals[i] for i in order)
            emit(count % (*plain, fmt(cumulative[-1])))
            emit(total % (*plain, fmt(sum_value)))
        return "".join(out)


def render(families: Iterable[Family], *, openmetrics: bool) -> str:
    """The text (0.0.4) or OpenMetrics exposition of `families`, without the OpenMetrics `# EOF`.

    Byte-for-byte what prometheus_client's encoders write for the same families, built
    straight from the values: no object per sample (tests/test_metrics.py compares the two).
    """
    return b"".join(p.data for p in _Renderer().pieces(families, openmetrics=openmetrics)).decode()


def _clean(key: Labels) -> Labels:
    joined = "".join(key)
    if "\\" in joined or "\n" in joined or '"' in joined:
        return tuple(_escape_value(v) for v in key)
    return key


class LogscanRegistry(CollectorRegistry):
    """The registry of the logscan collector (and process metrics), plus a fast direct renderer.

    `generate_latest(registry)` still works (and is the reference); the HTTP server calls
    `exposition()` instead, which writes the same bytes ~10x faster at 10k series.
    """

    def __init__(self, source: Callable[[], Exposition], *, process_metrics: bool) -> None:
        super().__init__(auto_describe=False)
        self._collector = LogscanCollector(source)
        self.register(self._collector)
        self._process: CollectorRegistry | None = None
        # One lock over the kept state (bodies, renderer, plans): scrapes run on 2 threads.
        self._lock = threading.Lock()
        self._bodies: dict[bool, _Body] = {}
        self._renderer = _Renderer()
        self._plans = _Plans()
        if process_metrics:
            self._process = CollectorRegistry(auto_describe=False)
            collector = ProcessCollector(namespace="logscan", registry=self._process)
            self.register(collector)

    def exposition(self, *, openmetrics: bool, gzipped: bool = False) -> bytes:
        """The whole scrape body in one format, gzipped when asked; raises what the source raises.

        A scrape that finds the same exposition as the last one of its format (no new lines
        read, a second Prometheus of an HA pair) costs one comparison of the snapshots
        (~0.3 ms at 10k series). Otherwise only the blocks of series whose values changed
        are rendered and compressed again (`_Renderer`). The process metrics, read anew at
        every scrape, are the only part compressed every time.
        """
        exp = self._collector.source()
        with self._lock:
            entry = self._bodies.get(openmetrics)
            if entry is None or entry.exposition != exp:
                families = exported(exp, self._plans)
                entry = _Body(exp, self._renderer.pieces(families, openmetrics=openmetrics))
                self._bodies[openmetrics] = entry
            packed = entry.packed(self._renderer, openmetrics) if gzipped else b""
        if openmetrics:
            tail = _om_latest(self._process) if self._process is not None else b"# EOF\n"
        else:
            tail = generate_latest(self._process) if self._process is not None else b""
        if not gzipped:
            return entry.body + tail
        crc = zlib.crc32(tail, entry.crc)
        size = (len(entry.body) + len(tail)) & 0xFFFFFFFF
        trailer = crc.to_bytes(4, "little") + size.to_bytes(4, "little")
        return _GZIP_HEAD + packed + _deflate(tail) + _DEFLATE_END + trailer


class _Body:
    """One rendered logscan body, its pieces and, once asked for, their gzip segments and CRC."""

    __slots__ = ("body", "crc", "exposition", "gzipped", "pieces")

    def __init__(self, exposition: Exposition, pieces: list[_Piece]) -> None:
        self.exposition = exposition
        self.pieces = pieces
        self.body = b"".join(p.data for p in pieces)
        self.gzipped: bytes | None = None
        self.crc = 0

    def packed(self, renderer: _Renderer, openmetrics: bool) -> bytes:
        """The body as deflate segments (called under the registry's lock)."""
        if self.gzipped is None:
            self.crc = zlib.crc32(self.body)
            self.gzipped = renderer.deflated(self.pieces, openmetrics=openmetrics)
        return self.gzipped


def make_registry(source: Callable[[], Exposition], *, process_metrics: bool = True) -> LogscanRegistry:
    """A private registry with the logscan collector (and logscan_process_* when asked).

    No gc/platform collectors: they say nothing about mail. Process memory, CPU and open
    files do matter for a daemon that reads hostile input, so they are kept, namespaced.
    """
    return LogscanRegistry(source, process_metrics=process_metrics)
