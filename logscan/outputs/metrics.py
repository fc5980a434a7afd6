"""The metric contract as a prometheus_client Collector that reads one snapshot per scrape.

The daemon hands `make_registry` a callable returning an `Exposition`; it is called on the
HTTP thread at every scrape, so it must copy shared state under the daemon's lock and
return quickly. Nothing here keeps state between scrapes: label hygiene is a pure function
of the snapshot, which is what keeps every exported counter monotonic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

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
    # State file health (issue 12)
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


def _replies(snap: Snapshot, logs: Iterable[LogStatus], folds: _Folds) -> dict[Labels, float]:
    out: dict[Labels, float] = {}
    for log in logs:
        for direction in DIRECTIONS:
            for code in COMMON_CODES:
                out[(log.mta, log.name, direction, code, "")] = 0
    admitted: dict[Labels, set[tuple[str, str]]] = {}
    valid: set[Labels] = set()  # (mta, log, direction) prefixes already checked this scrape
    name = "logscan_smtp_replies_total"
    for (mta, log_name, direction, code, raw_enhanced), n in snap.replies.items():
        enhanced = raw_enhanced
        if (mta, log_name, direction) not in valid:
            if _bad_label(folds, name, n, mta=mta, log=log_name, direction=direction):
                continue
            valid.add((mta, log_name, direction))
        if not _CODE.match(code):
            folds.add(name, "code", "invalid", n)
            continue
        if enhanced and (not _ENHANCED.match(enhanced) or enhanced[0] != code[0]):
            folds.add(name, "enhanced", "invalid", n)
            enhanced = ""
        if enhanced and enhanced not in STANDARD_ENHANCED:  # RFC 3463 codes never fold (issue 12)
            seen = admitted.setdefault((mta, log_name, direction), set())
            if (code, enhanced) not in seen:
                if len(seen) >= MAX_ENHANCED_PER_LOG:
                    folds.add(name, "enhanced", "overflow", n)
                    enhanced = ""
                else:
                    seen.add((code, enhanced))
        _add(out, (mta, log_name, direction, code, enhanced), n)
    return out


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
        if not _CODE.match(code):
            folds.add(name, "code", "invalid", n)
            continue
        if stage not in STAGES:
            folds.add(name, "stage", "invalid", n)
            stage = "other"
        _add(out, (mta, log_name, stage, code), n)
    return out


def _domains(snap: Snapshot, folds: _Folds) -> dict[Labels, float]:
    out: dict[Labels, float] = {(OTHER, d, c): 0 for d in DIRECTIONS for c in CLASSES}
    name = "logscan_domain_replies_total"
    for (raw_domain, direction, klass), n in snap.domains.items():
        if _bad_label(folds, name, n, direction=direction):
            continue
        if len(klass) != 3 or klass[0] not in "2345" or klass[1:] != "xx":
            folds.add(name, "class", "invalid", n)
            continue
        domain = raw_domain.lower()
        if domain != OTHER and not _DOMAIN.match(domain):
            folds.add(name, "domain", "invalid", n)
            domain = OTHER
        _add(out, (domain, direction, klass), n)
    return out


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


def _counter(name: str, doc: str, labels: Labels, values: Mapping[Labels, float]) -> CounterMetricFamily:
    # CounterMetricFamily wants the name without _total and emits no _created when created=None.
    fam = CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)
    for key, v in values.items():
        fam.add_metric(key, v)
    return fam


def _gauge(name: str, doc: str, labels: Labels, values: Mapping[Labels, float]) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, doc, labels=labels)
    for key, v in values.items():
        fam.add_metric(key, v)
    return fam


class LogscanCollector:
    """Builds every family of the metric contract from one `Exposition` per scrape."""

    def __init__(self, source: Callable[[], Exposition]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        """Called by the registry on the scraping thread; raising makes the scrape fail (HTTP 500)."""
        yield from self.families(self._source())

    @staticmethod
    def families(exp: Exposition) -> list[Metric]:
        """The exported families for one exposition; pure, so tests can call it directly."""
        snap = exp.snapshot
        folds = _Folds()
        # Per-log self-metrics exist for every configured log from the start; series that
        # carry an `mta` label wait until the log's format is known (auto-detected or set).
        named = [log for log in exp.logs if _NAME.match(log.name)]
        logs = [log for log in named if log.mta in MTAS]
        mtas = sorted({log.mta for log in logs})
        fams: list[Metric] = [
            _counter(
                "logscan_smtp_replies_total",
                "SMTP replies seen in the logs, by basic and enhanced status code.",
                ("mta", "log", "direction", "code", "enhanced"),
                _replies(snap, logs, folds),
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

        hist = HistogramMetricFamily(
            "logscan_delivery_delay_seconds",
            "Delay from queueing to the final outcome of a delivery.",
            labels=("mta", "status"),
        )
        bounds = [repr(float(b)) for b in DELAY_BUCKETS] + ["+Inf"]
        for key, (buckets, total) in _delays(snap, logs, folds).items():
            cumulative: list[tuple[str, float]] = []
            running = 0.0
            for le, b in zip(bounds, buckets, strict=True):
                running += b
                cumulative.append((le, running))
            hist.add_metric(key, cumulative, total)
        fams.append(hist)

        fams.append(
            _counter(
                "logscan_domain_replies_total",
                "Replies by remote domain (top N; the rest as other) and reply class.",
                ("domain", "direction", "class"),
                _domains(snap, folds),
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


def _log_families(logs: list[LogStatus], snap: Snapshot) -> list[Metric]:
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
    ]


def _state_families(exp: Exposition) -> list[Metric]:
    """State file health (issue 12): a failing save is otherwise invisible until a restart."""
    return [
        _counter(
            "logscan_state_save_failures",
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


def _alert_families(exp: Exposition, folds: _Folds) -> list[Metric]:
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


def make_registry(source: Callable[[], Exposition], *, process_metrics: bool = True) -> CollectorRegistry:
    """A private registry with the logscan collector (and logscan_process_* when asked).

    No gc/platform collectors: they say nothing about mail. Process memory, CPU and open
    files do matter for a daemon that reads hostile input, so they are kept, namespaced.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LogscanCollector(source))
    if process_metrics:
        ProcessCollector(namespace="logscan", registry=registry)
    return registry
