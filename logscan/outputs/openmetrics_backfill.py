"""History for Prometheus: the daemon's series over the logs' own event time, one sample a minute.

`scan --openmetrics OUT` scans with a `Timeline` as its aggregate. At every minute boundary of
event time the Timeline builds the same families the daemon serves (`LogscanCollector.families`,
so names, labels and label hygiene are the daemon's), and `write` prints them as OpenMetrics
text with timestamps, which `promtool tsdb create-blocks-from openmetrics` turns into blocks.
Series about the running process (bytes read, lag, up, alerts, build) are left out: an old log
says nothing about them.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping
from typing import IO, Final

from prometheus_client.metrics_core import Metric

from logscan.core.aggregate import BUCKET_S, DEFAULT_WINDOWS, Aggregate, LineResult
from logscan.events import Event, EventBatch
from logscan.outputs.metrics import Exposition, LogscanCollector, LogStatus

# Families about the daemon process rather than the mail in the logs.
PROCESS_FAMILIES: Final = frozenset(
    {
        "logscan_log_bytes_read",
        "logscan_log_rotations",
        "logscan_log_lag_bytes",
        "logscan_log_up",
        "logscan_alert_firing",
        "logscan_alert_notifications",
        "logscan_build_info",
        "logscan_watcher_up",
        "logscan_queue_messages",
        "logscan_queue_scrape_errors",
    }
)

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # sample name, sorted labels


class Timeline(Aggregate):
    """An Aggregate that records the exported samples at each minute boundary of event time.

    Events must arrive oldest first (rotated files oldest first); an event older than the
    current minute is counted in the current minute and in `late`. Lines are counted in the
    minute of the last event read before them.
    """

    def __init__(
        self,
        *,
        top_domains: int = 50,
        windows: Iterable[int] = DEFAULT_WINDOWS,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(top_domains=top_domains, windows=windows)
        self.extra = tuple(sorted((labels or {}).items()))
        self.minute: int | None = None  # the minute events are being added to
        self.late = 0
        self.times: list[int] = []  # sample timestamps, epoch seconds
        self.series: dict[SeriesKey, array[float]] = {}
        self.families_meta: dict[str, tuple[str, str, list[SeriesKey]]] = {}  # name: type, help, series
        self.log_mtas: dict[str, str] = {}
        self._last_row: list[tuple[SeriesKey, float]] = []
        self._last_event_minute = 0

    # -- what the pipeline calls ---------------------------------------------------------

    def add(self, ev: Event) -> None:
        minute = int(ev.time // BUCKET_S)
        if self.minute is None:
            self.log_mtas.setdefault(ev.log, ev.mta)
            self._record(minute * BUCKET_S)  # everything at 0 before the first event
            self.minute = minute
        elif minute > self.minute:
            self._advance(minute)
        elif minute < self.minute:
            self.late += 1
        self.log_mtas[ev.log] = ev.mta
        self._last_event_minute = max(self._last_event_minute, minute)
        super().add(ev)

    def add_batch(self, b: EventBatch) -> bool:
        return False  # event by event, so every event lands in its own minute

    def count_lines(self, log: str, result: LineResult, n: int = 1, reason: str = "") -> None:
        self.log_mtas.setdefault(log, "")
        super().count_lines(log, result, n, reason)

    def finish(self) -> None:
        """Record the minute in progress: the last samples hold the totals."""
        if self.minute is not None:
            self._advance(self.minute + 1)
            self.minute = None

    # -- recording ---------------------------------------------------------------------------

    def _advance(self, minute: int) -> None:
        assert self.minute is not None
        for m in range(self.minute + 1, minute + 1):
            self._record(m * BUCKET_S)
        self.minute = minute

    def _record(self, t: int) -> None:
        quiet = self.windows[-1] // BUCKET_S + 1 if self.windows else 0
        if self._last_row and t // BUCKET_S > self._last_event_minute + quiet:
            row = self._last_row  # nothing changes once every bounce-ratio window is past
        else:
            row = self._row(t)
        i = len(self.times)
        self.times.append(t)
        for key, value in row:
            values = self.series.get(key)
            if values is None:
                values = self.series[key] = array("d", [0.0] * i)
            elif len(values) < i:
                values.extend([values[-1]] * (i - len(values)))
            values.append(value)
        self._last_row = row

    def _row(self, t: int) -> list[tuple[SeriesKey, float]]:
        logs = tuple(LogStatus(name, mta, True) for name, mta in self.log_mtas.items())
        exp = Exposition(self.snapshot(t), logs=logs, windows=self.windows)
        row: list[tuple[SeriesKey, float]] = []
        for fam in LogscanCollector.families(exp):
            if fam.name in PROCESS_FAMILIES:
                continue
            meta = self._meta(fam)
            for s in fam.samples:
                key = (s.name, tuple(sorted({**s.labels, **dict(self.extra)}.items())))
                if key not in self.series:
                    meta.append(key)
                row.append((key, s.value))
        return row

    def _meta(self, fam: Metric) -> list[SeriesKey]:
        meta = self.families_meta.get(fam.name)
        if meta is None:
            meta = self.families_meta[fam.name] = (fam.type, fam.documentation, [])
        return meta[2]

    # -- output ------------------------------------------------------------------------------

    def write(self, out: IO[str]) -> int:
        """The OpenMetrics text for promtool; returns the number of samples written."""
        n = len(self.times)
        written = 0
        stamps = [str(t) for t in self.times]
        for name, (kind, doc, keys) in self.families_meta.items():
            out.write(f"# HELP {name} {_escape_help(doc)}\n# TYPE {name} {kind}\n")
            for key in keys:
                values = self.series[key]
                if len(values) < n:
                    values.extend([values[-1]] * (n - len(values)))
                head = key[0] + _labels(key[1])
                out.writelines(f"{head} {_num(v)} {ts}\n" for v, ts in zip(values, stamps, strict=True))
                written += n
        out.write("# EOF\n")
        return written


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(doc: str) -> str:
    return doc.replace("\\", "\\\\").replace("\n", "\\n")


def _num(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 1 << 53 else repr(v)
