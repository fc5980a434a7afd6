"""The metric contract as exported: names, types, labels, zero-filled series, label hygiene."""

from __future__ import annotations

import re
import shutil
import subprocess
import tracemalloc
import zlib
from collections.abc import Callable, Iterable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics import parser as om_parser
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from logscan.core.aggregate import DELAY_BUCKETS, STANDARD_ENHANCED, Aggregate, Snapshot
from logscan.events import Event
from logscan.outputs import metrics as metrics_module
from logscan.outputs.metrics import (
    COMMON_CODES,
    MAX_ENHANCED_PER_LOG,
    Exposition,
    LogscanCollector,
    LogStatus,
    make_registry,
)

# DESIGN.md's contract table plus the extensions of docs/decisions/0004-metric-extensions.md.
CONTRACT: dict[str, tuple[str, frozenset[str]]] = {
    "logscan_smtp_replies": ("counter", frozenset({"mta", "log", "direction", "code", "enhanced"})),
    "logscan_deliveries": ("counter", frozenset({"mta", "log", "status"})),
    "logscan_rejections": ("counter", frozenset({"mta", "log", "stage", "code"})),
    "logscan_bounce_ratio": ("gauge", frozenset({"mta", "window"})),
    "logscan_delivery_delay_seconds": ("histogram", frozenset({"mta", "status"})),
    "logscan_domain_replies": ("counter", frozenset({"domain", "direction", "class"})),
    "logscan_lines": ("counter", frozenset({"log", "result"})),
    "logscan_log_bytes_read": ("counter", frozenset({"log"})),
    "logscan_log_rotations": ("counter", frozenset({"log"})),
    "logscan_log_lag_bytes": ("gauge", frozenset({"log"})),
    "logscan_state_save_failures": ("counter", frozenset()),
    "logscan_state_last_save_timestamp_seconds": ("gauge", frozenset()),
    "logscan_log_last_event_timestamp_seconds": ("gauge", frozenset({"log"})),
    "logscan_log_up": ("gauge", frozenset({"log"})),
    "logscan_alert_firing": ("gauge", frozenset({"alert"})),
    "logscan_alert_notifications": ("counter", frozenset({"alert", "receiver", "result"})),
    "logscan_build_info": ("gauge", frozenset({"version"})),
    # extensions (0004)
    "logscan_unparsed_lines": ("counter", frozenset({"log", "reason"})),
    "logscan_watcher_up": ("gauge", frozenset()),
    "logscan_export_folded": ("counter", frozenset({"metric", "label", "reason"})),
    # reasons (0012)
    "logscan_smtp_reply_reasons": ("counter", frozenset({"mta", "log", "direction", "code", "reason"})),
}


def generate_openmetrics(registry: Collector) -> bytes:
    """Typed wrapper: the OpenMetrics half of prometheus_client has no annotations."""
    out: bytes = om_exposition.generate_latest(registry)  # type: ignore[no-untyped-call]
    return out


def parse_openmetrics(text: str) -> list[Metric]:
    return list(om_parser.text_string_to_metric_families(text))  # type: ignore[no-untyped-call]


LOGS = (LogStatus("mx1", "postfix", True, 1234, 2, 10), LogStatus("me", "mailenable", False))
T0 = 1_790_000_000.0


def ev(**kw: object) -> Event:
    base: dict[str, object] = {"mta": "postfix", "log": "mx1", "time": T0, "direction": "outbound"}
    base.update(kw)
    return Event(**base)  # type: ignore[arg-type]


def exposition(agg: Aggregate, **kw: object) -> Exposition:
    defaults: dict[str, object] = {
        "logs": LOGS,
        "alerts_firing": {"smtp551_spike": False},
        "notifications": {("smtp551_spike", "alertmanager", "success"): 0},
        "version": "1.2.3",
    }
    defaults.update(kw)
    return Exposition(agg.snapshot(T0), **defaults)  # type: ignore[arg-type]


def scrape(exp: Exposition) -> str:
    return generate_latest(make_registry(lambda: exp, process_metrics=False)).decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


def busy_aggregate() -> Aggregate:
    agg = Aggregate(top_domains=5)
    for i in range(3):
        agg.add(
            ev(
                code="551",
                enhanced="5.1.1",
                status="bounced",
                stage="rcpt",
                recipient_domain="a.example",
                delay_s=3,
            )
        )
        agg.add(
            ev(code="250", enhanced="2.0.0", status="sent", recipient_domain="b.example", delay_s=0.2 * i)
        )
    agg.add(ev(direction="inbound", code="554", enhanced="5.7.1", status="rejected", stage="rcpt"))
    agg.add(
        ev(
            mta="mailenable",
            log="me",
            direction="inbound",
            code="551",
            stage="mail",
            sender_domain="c.example",
        )
    )
    agg.count_lines("mx1", "parsed", 7)
    agg.count_lines("mx1", "unparsed", reason="bad-timestamp")
    return agg


def test_every_family_has_the_contract_name_type_and_labels() -> None:
    snap = replace(busy_aggregate().snapshot(T0), unparsed={("mx1", "Bad Reason"): 1})  # one fold
    text = scrape(replace(exposition(busy_aggregate()), snapshot=snap))
    seen = {}
    for fam in text_string_to_metric_families(text):
        label_sets = {frozenset(s.labels) - {"le"} for s in fam.samples}
        assert len(label_sets) == 1, (fam.name, label_sets)
        seen[fam.name] = (fam.type, label_sets.pop())
    assert seen == CONTRACT


def test_openmetrics_exposition_parses_and_carries_the_same_families() -> None:
    exp = exposition(busy_aggregate())
    text = generate_openmetrics(make_registry(lambda: exp, process_metrics=False)).decode()
    assert text.endswith("# EOF\n")
    names = {fam.name: fam.type for fam in parse_openmetrics(text)}
    assert names == {n: t for n, (t, _) in CONTRACT.items()}


def test_no_created_series_in_either_format() -> None:
    exp = exposition(busy_aggregate())
    reg = make_registry(lambda: exp, process_metrics=False)
    for text in (generate_latest(reg).decode(), generate_openmetrics(reg).decode()):
        assert "_created" not in text


def test_known_series_exist_at_zero_before_any_event() -> None:
    text = scrape(exposition(Aggregate()))
    for log in LOGS:
        for direction in ("inbound", "outbound"):
            for code in COMMON_CODES:
                got = value(
                    text,
                    "logscan_smtp_replies_total",
                    mta=log.mta,
                    log=log.name,
                    direction=direction,
                    code=code,
                    enhanced="",
                )
                assert got == 0.0, (log, direction, code)
        for status in ("sent", "bounced", "deferred", "expired"):
            assert value(text, "logscan_deliveries_total", mta=log.mta, log=log.name, status=status) == 0.0
            assert value(text, "logscan_delivery_delay_seconds_count", mta=log.mta, status=status) == 0.0
        for result in ("parsed", "ignored", "unparsed"):
            assert value(text, "logscan_lines_total", log=log.name, result=result) == 0.0
        for window in ("5m", "1h"):
            assert value(text, "logscan_bounce_ratio", mta=log.mta, window=window) == 0.0
        assert value(text, "logscan_log_last_event_timestamp_seconds", log=log.name) == 0.0
    for direction in ("inbound", "outbound"):
        for klass in ("2xx", "4xx", "5xx"):
            assert (
                value(
                    text,
                    "logscan_domain_replies_total",
                    domain="other",
                    direction=direction,
                    **{"class": klass},
                )
                == 0
            )
    assert value(text, "logscan_alert_firing", alert="smtp551_spike") == 0.0
    assert (
        value(
            text,
            "logscan_alert_notifications_total",
            alert="smtp551_spike",
            receiver="alertmanager",
            result="success",
        )
        == 0
    )
    assert value(text, "logscan_build_info", version="1.2.3") == 1.0
    assert value(text, "logscan_watcher_up") == 1.0


def test_values_follow_the_aggregate() -> None:
    text = scrape(exposition(busy_aggregate()))
    assert (
        value(
            text,
            "logscan_smtp_replies_total",
            mta="postfix",
            log="mx1",
            direction="outbound",
            code="551",
            enhanced="5.1.1",
        )
        == 3
    )
    assert value(text, "logscan_deliveries_total", mta="postfix", log="mx1", status="bounced") == 3
    assert value(text, "logscan_deliveries_total", mta="postfix", log="mx1", status="sent") == 3
    assert value(text, "logscan_rejections_total", mta="postfix", log="mx1", stage="rcpt", code="554") == 1
    assert value(text, "logscan_bounce_ratio", mta="postfix", window="5m") == pytest.approx(0.5)
    assert value(text, "logscan_lines_total", log="mx1", result="parsed") == 7
    assert value(text, "logscan_unparsed_lines_total", log="mx1", reason="bad-timestamp") == 1
    assert value(text, "logscan_log_bytes_read_total", log="mx1") == 1234
    assert value(text, "logscan_log_rotations_total", log="mx1") == 2
    assert value(text, "logscan_log_lag_bytes", log="mx1") == 10
    assert value(text, "logscan_log_up", log="me") == 0
    assert value(text, "logscan_log_last_event_timestamp_seconds", log="mx1") == T0
    assert (
        value(
            text,
            "logscan_export_folded_total",
            metric="logscan_smtp_replies_total",
            label="code",
            reason="invalid",
        )
        is None
    )


def test_delay_histogram_is_cumulative_with_inf_equal_to_count() -> None:
    agg = Aggregate()
    delays = [0.1, 0.5, 0.7, 4.0, 4.0, 100.0, 10**7]
    for d in delays:
        agg.add(ev(status="sent", code="250", delay_s=d))
    text = scrape(exposition(agg))
    buckets = [
        value(text, "logscan_delivery_delay_seconds_bucket", mta="postfix", status="sent", le=repr(float(b)))
        for b in DELAY_BUCKETS
    ]
    assert buckets == [sum(1 for d in delays if d <= b) for b in DELAY_BUCKETS]
    assert value(
        text, "logscan_delivery_delay_seconds_bucket", mta="postfix", status="sent", le="+Inf"
    ) == len(delays)
    assert value(text, "logscan_delivery_delay_seconds_count", mta="postfix", status="sent") == len(delays)
    assert value(text, "logscan_delivery_delay_seconds_sum", mta="postfix", status="sent") == pytest.approx(
        sum(delays)
    )


HOSTILE = [
    ("postfix", "mx1", "outbound", "5x1", ""),  # not a code
    ("postfix", "mx1", "outbound", "551", "5.1.1234"),  # enhanced too long
    ("postfix", "mx1", "outbound", "551", "4.1.1"),  # class disagrees with the code
    ("postfix", "mx1", "outbound", "551", "User unknown <bob@example.com>"),  # raw reply text
    ("postfix", "/var/log/mail.log-20260101", "outbound", "550", ""),  # date-named path as log
    ("postfix", "bob@example.com", "outbound", "550", ""),  # address as log
    ("sendmail", "mx1", "outbound", "550", ""),  # unknown mta
    ("postfix", "mx1", "sideways", "550", ""),  # unknown direction
]
LABEL_OK = {
    "code": re.compile(r"[2-5][0-9][0-9]\Z"),
    "enhanced": re.compile(r"(?:[245]\.[0-9]{1,3}\.[0-9]{1,3})?\Z"),
}


def hostile_snapshot() -> Snapshot:
    snap = Aggregate().snapshot(T0)
    return replace(
        snap,
        replies=dict.fromkeys(HOSTILE, 10),
        rejections={
            ("postfix", "mx1", "RCPT TO:<bob@example.com>", "554"): 2,
            ("postfix", "mx1", "rcpt", "5.5"): 3,
        },
        domains={("bob@example.com", "outbound", "5xx"): 4, ("Example.NET", "outbound", "5xx"): 1},
        unparsed={("mx1", "Connection from 1.2.3.4 said: go away"): 5},
    )


def assert_clean(text: str) -> None:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            for k, v in s.labels.items():
                assert not set(v) & set("@/ "), (s.name, k, v)
                if k in LABEL_OK:
                    assert LABEL_OK[k].match(v), (s.name, k, v)


def test_hostile_label_values_are_dropped_or_folded_and_counted() -> None:
    exp = Exposition(hostile_snapshot(), logs=LOGS)
    text = scrape(exp)
    assert_clean(text)
    # invalid enhanced codes keep their count under enhanced="" of the same code
    assert (
        value(
            text,
            "logscan_smtp_replies_total",
            mta="postfix",
            log="mx1",
            direction="outbound",
            code="551",
            enhanced="",
        )
        == 30
    )
    folded = {
        (lab["metric"], lab["label"], lab["reason"]): v
        for (name, labels), v in samples(text).items()
        if name == "logscan_export_folded_total"
        for lab in [dict(labels)]
    }
    assert folded == {
        ("logscan_smtp_replies_total", "code", "invalid"): 10,
        ("logscan_smtp_replies_total", "enhanced", "invalid"): 30,
        ("logscan_smtp_replies_total", "log", "invalid"): 20,
        ("logscan_smtp_replies_total", "mta", "invalid"): 10,
        ("logscan_smtp_replies_total", "direction", "invalid"): 10,
        ("logscan_rejections_total", "stage", "invalid"): 2,
        ("logscan_rejections_total", "code", "invalid"): 3,
        ("logscan_domain_replies_total", "domain", "invalid"): 4,
        ("logscan_unparsed_lines_total", "reason", "invalid"): 5,
    }
    assert value(text, "logscan_rejections_total", mta="postfix", log="mx1", stage="other", code="554") == 2
    assert (
        value(text, "logscan_domain_replies_total", domain="other", direction="outbound", **{"class": "5xx"})
        == 4
    )
    assert (
        value(
            text,
            "logscan_domain_replies_total",
            domain="example.net",
            direction="outbound",
            **{"class": "5xx"},
        )
        == 1
    )
    assert value(text, "logscan_unparsed_lines_total", log="mx1", reason="other") == 5


label_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.tuples(
            st.sampled_from(["postfix", "exim", "x"]),
            label_text,
            st.sampled_from(["inbound", "outbound", "up"]),
            label_text,
            label_text,
        ),
        st.integers(min_value=1, max_value=1000),
        max_size=20,
    )
)
def test_any_reply_labels_export_clean_and_every_event_is_accounted_for(
    replies: dict[tuple[str, str, str, str, str], int],
) -> None:
    snap = replace(Aggregate().snapshot(T0), replies=replies)
    text = scrape(Exposition(snap))
    assert_clean(text)
    exported = sum(v for (name, _), v in samples(text).items() if name == "logscan_smtp_replies_total")
    dropped = sum(
        v
        for (name, labels), v in samples(text).items()
        if name == "logscan_export_folded_total"
        and dict(labels)["reason"] == "invalid"
        and dict(labels)["label"] != "enhanced"
    )
    assert exported + dropped == sum(replies.values())


def enhanced_flood(agg: Aggregate, start: int, n: int) -> None:
    for i in range(start, start + n):
        agg.add(ev(code="550", enhanced=f"5.{i // 1000}.{i % 1000}"))


def reply_series(text: str) -> set[frozenset[tuple[str, str]]]:
    return {labels for (name, labels) in samples(text) if name == "logscan_smtp_replies_total"}


def test_enhanced_codes_are_capped_per_log_and_admission_never_flips() -> None:
    agg = Aggregate()
    enhanced_flood(agg, 0, 1000)
    first = scrape(exposition(agg))
    enhanced = {
        dict(s)["enhanced"]
        for s in reply_series(first)
        if dict(s)["log"] == "mx1" and dict(s)["direction"] == "outbound"
    }
    assert len(enhanced - {""} - STANDARD_ENHANCED) == MAX_ENHANCED_PER_LOG
    enhanced_flood(agg, 1000, 1000)
    enhanced_flood(agg, 0, 1000)  # the admitted ones again, and the folded ones
    second = scrape(exposition(agg))
    added = {dict(s)["enhanced"] for s in reply_series(second) - reply_series(first)}
    assert added == {f"5.1.{d}" for d in range(9)}  # RFC 3463 codes of the second flood: never capped
    admitted = value(
        second,
        "logscan_smtp_replies_total",
        mta="postfix",
        log="mx1",
        direction="outbound",
        code="550",
        enhanced="5.0.1",
    )
    assert admitted == 2
    folded = value(
        second,
        "logscan_smtp_replies_total",
        mta="postfix",
        log="mx1",
        direction="outbound",
        code="550",
        enhanced="",
    )
    # RFC 3463 codes in the flood are never folded: 5.0.0 (twice) and 5.1.0-5.1.8
    assert folded == 3000 - 2 * MAX_ENHANCED_PER_LOG - 2 - 9
    # and a restart from saved state admits exactly the same pairs
    restored = Aggregate.from_dict(agg.to_dict())
    assert scrape(exposition(restored)) == second


def test_counters_never_decrease_while_events_arrive() -> None:
    agg = Aggregate(top_domains=3)
    previous: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for step in range(30):
        for i in range(200):
            agg.add(
                ev(
                    code="551",
                    enhanced=f"5.1.{(step * 7 + i) % 400}",
                    recipient_domain=f"d{(i * step) % 37}.example",
                )
            )
        now = samples(scrape(exposition(agg)))
        for key, v in previous.items():
            if key[0].endswith("_total"):
                assert now.get(key, -1) >= v, key
        previous = now


def domain_series(text: str) -> list[Sample]:
    return [
        Sample(name, dict(labels), v)
        for (name, labels), v in samples(text).items()
        if name == "logscan_domain_replies_total"
    ]


@pytest.mark.slow
def test_a_million_distinct_domains_keep_series_and_memory_bounded() -> None:
    top = 50
    agg = Aggregate(top_domains=top)
    heavy = [f"heavy{i}.example" for i in range(10)]

    def feed(lo: int, hi: int) -> None:
        add = agg.add
        for i in range(lo, hi):
            add(
                Event(
                    "postfix",
                    "mx1",
                    T0,
                    "outbound",
                    code="551",
                    recipient_domain=f"u{i}.spam{i % 9973}.example",
                )
            )
            if i % 100 == 0:  # ten remote domains with 0.1 % of the traffic each
                add(
                    Event(
                        "postfix", "mx1", T0, "outbound", code="551", recipient_domain=heavy[(i // 100) % 10]
                    )
                )

    feed(0, 400_000)
    # Trace the last 600k only (tracemalloc triples the run time): growth with the number of
    # distinct domains would show here as tens of MB; a bounded sketch shows as churn.
    tracemalloc.start()
    try:
        feed(400_000, 1_000_000)
        text = scrape(exposition(agg))
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    series = domain_series(text)
    domains = {s.labels["domain"] for s in series}
    assert len(domains) <= top + 1, len(domains)
    assert len(series) <= (top + 1) * 2 * 3
    assert set(heavy) <= domains, "the domains that carry real volume must get their own series"
    assert sum(s.value for s in series) == 1_000_000 + 10_000
    assert len(agg.top.sketch) <= 2 * agg.top.capacity + 1
    assert peak < 50 * 2**20, f"tracemalloc peak {peak / 2**20:.1f} MiB"
    assert current < 5 * 2**20, f"{current / 2**20:.1f} MiB still held after 600k distinct domains"
    assert len(text) < 200_000


def test_source_failure_propagates_so_the_scrape_fails() -> None:
    def broken() -> Exposition:
        raise RuntimeError("aggregate lock poisoned")

    with pytest.raises(RuntimeError, match="poisoned"):
        generate_latest(make_registry(broken, process_metrics=False))


def test_process_metrics_are_namespaced_and_optional() -> None:
    exp = exposition(Aggregate())
    with_proc = generate_latest(make_registry(lambda: exp)).decode()
    names = {fam.name for fam in text_string_to_metric_families(with_proc)}
    assert "logscan_process_resident_memory_bytes" in names
    assert not any(n.startswith(("process_", "python_")) for n in names)
    without = generate_latest(make_registry(lambda: exp, process_metrics=False)).decode()
    assert "logscan_process_" not in without


def test_unnamed_or_unsafe_configured_logs_are_not_exported() -> None:
    logs: Iterable[LogStatus] = (
        LogStatus("/var/log/maillog", "postfix", True),
        LogStatus("ok", "postfix", True),
    )
    fams = LogscanCollector.families(Exposition(Aggregate().snapshot(T0), logs=tuple(logs)))
    up = next(f for f in fams if f.name == "logscan_log_up")
    assert [s.labels["log"] for s in up.samples] == ["ok"]


def test_refusals_without_a_known_code_and_the_session_stages_are_exported() -> None:
    # Parsers count a refusal whose reply is not known with code "" (docs/parsers/), and
    # sessions cut off at the stages "pipelining" and "limit": all exported as they are, none
    # folded; code "" adds no SMTP reply.
    agg = Aggregate()
    agg.add(ev(direction="inbound", status="rejected", stage="pipelining", code=""))
    agg.add(ev(direction="inbound", status="rejected", stage="pipelining", code=""))
    agg.add(ev(direction="inbound", status="rejected", stage="limit", code="421", enhanced="4.7.0"))
    agg.add(ev(direction="inbound", status="rejected", stage="auth", code="535", enhanced="5.7.8"))
    text = scrape(exposition(agg))
    rejections = "logscan_rejections_total"
    assert value(text, rejections, mta="postfix", log="mx1", stage="pipelining", code="") == 2
    assert value(text, rejections, mta="postfix", log="mx1", stage="limit", code="421") == 1
    assert value(text, rejections, mta="postfix", log="mx1", stage="auth", code="535") == 1
    assert {k: v for k, v in samples(text).items() if k[0] == "logscan_export_folded_total" and v} == {}
    replies = sum(v for (name, _), v in samples(text).items() if name == "logscan_smtp_replies_total")
    assert replies == 2


# ---------------------------------------------------------------- the direct renderer


def hostile_exposition() -> Exposition:
    agg = busy_aggregate()
    agg.add(ev(code="550", enhanced='5.1.1"', status="bounced"))  # folded, counted
    agg.add(ev(log='we"ird\\log\n', code="550"))  # dropped, counted
    agg.add(ev(direction="inbound", code="554", stage="weird stage"))  # folded into "other"
    return exposition(
        agg,
        alerts_firing={"smtp551_spike": True, 'bad"alert': True},
        notifications={("smtp551_spike", "am", "success"): 3},
    )


@pytest.mark.parametrize("process", [False, True])
def test_direct_render_is_byte_for_byte_what_prometheus_client_writes(process: bool) -> None:
    for exp in (exposition(Aggregate()), exposition(busy_aggregate()), hostile_exposition()):
        reg = make_registry(lambda e=exp: e, process_metrics=process)  # type: ignore[misc]
        fast_text, fast_om = reg.exposition(openmetrics=False), reg.exposition(openmetrics=True)
        if process:  # process metrics move between two reads; compare the logscan part
            fast_text = fast_text[: fast_text.index(b"# HELP logscan_process_")]
            fast_om = fast_om[: fast_om.index(b"# HELP logscan_process_")]
            ref = make_registry(lambda e=exp: e, process_metrics=False)  # type: ignore[misc]
            assert fast_text == generate_latest(ref)
            assert fast_om + b"# EOF\n" == generate_openmetrics(ref)
        else:
            assert fast_text == generate_latest(reg)
            assert fast_om == generate_openmetrics(reg)


def test_render_escapes_label_values_and_help_as_prometheus_client_does() -> None:
    fam = metrics_module.Family(
        "x_total", "counter", 'doc with \\ and "quotes"\nand a newline', ("b", "a"),
        {('q"uote', "back\\slash"): 1.0, ("new\nline", "plain"): 2.5e6, ("z", "y"): float("inf")},
    )  # fmt: skip

    class One(Collector):
        def collect(self) -> Iterable[Metric]:
            return [metrics_module._metric(fam)]

    reg = One()
    render = metrics_module.render
    assert render([fam], openmetrics=False).encode() == generate_latest(reg)
    assert render([fam], openmetrics=True).encode() + b"# EOF\n" == generate_openmetrics(reg)


def test_the_cached_body_follows_every_change_of_the_snapshot() -> None:
    agg = busy_aggregate()
    reg = make_registry(lambda: exposition(agg), process_metrics=False)
    first = reg.exposition(openmetrics=False)
    assert reg.exposition(openmetrics=False) == first  # same snapshot: the cached body
    agg.add(ev(code="551", enhanced="5.1.1"))
    second = reg.exposition(openmetrics=False)
    assert second != first
    assert second == generate_latest(reg)


def test_promtool_check_metrics_accepts_the_exposition() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool not found: apt-get install prometheus"
    reg = make_registry(hostile_exposition)
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=reg.exposition(openmetrics=False),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_kept_reply_decisions_match_a_fresh_export_as_keys_arrive_and_aggregates_change() -> None:
    first, second = Aggregate(), Aggregate()
    current = [first]
    reg = make_registry(lambda: exposition(current[0]), process_metrics=False)
    for i in range(MAX_ENHANCED_PER_LOG + 30):  # past the cap: overflow decisions are kept too
        first.add(ev(code="550", enhanced=f"5.{i % 9}.{i}"))
        if i % 23 == 0:
            first.add(ev(code="5x0", enhanced="5.1.1"))  # invalid code, dropped and counted
            assert reg.exposition(openmetrics=False) == generate_latest(reg)  # the pure path
    assert reg.exposition(openmetrics=False) == generate_latest(reg)
    second.add(ev(code="551", enhanced="5.1.1"))
    second.add(ev(log="bad log", code="550"))
    for agg in (second, first, second):  # another key order: the decisions start afresh
        current[0] = agg
        assert reg.exposition(openmetrics=True) == generate_openmetrics(reg)


def test_gzipped_exposition_is_one_gzip_stream_of_the_same_body() -> None:
    agg = busy_aggregate()
    reg = make_registry(lambda: exposition(agg))  # with process metrics: the per-scrape tail
    for openmetrics in (False, True):
        for _ in range(2):  # the second time from the kept compressor state
            packed = reg.exposition(openmetrics=openmetrics, gzipped=True)
            reader = zlib.decompressobj(16 + zlib.MAX_WBITS)
            text = reader.decompress(packed)
            assert reader.eof
            assert reader.unused_data == b""  # one member: every client reads it all
            plain = reg.exposition(openmetrics=openmetrics)
            cut = b"# HELP logscan_process_"
            assert text[: text.index(cut)] == plain[: plain.index(cut)]
            assert text.endswith(b"# EOF\n") == openmetrics
        agg.add(ev(code="551"))


def test_a_flood_of_invented_enhanced_codes_never_blinds_a_standard_one() -> None:
    # The cap used to be first-come forever, also across restarts.
    agg = Aggregate()
    for i in range(3000):
        agg.add(ev(code="550", enhanced=f"5.9.{i}"))
    agg.add(ev(code="550", enhanced="5.1.1"))
    restored = Aggregate.from_dict(agg.to_dict())
    restored.add(ev(code="550", enhanced="5.1.1"))
    text = scrape(exposition(restored))
    got = value(text, "logscan_smtp_replies_total", mta="postfix", log="mx1", direction="outbound",
                code="550", enhanced="5.1.1")
    assert got == 2
    assert len(STANDARD_ENHANCED) == 147
    assert "5.7.1" in STANDARD_ENHANCED
    assert "5.9.0" not in STANDARD_ENHANCED


# Hostile and ordinary label values for the kept export decisions (replies, reasons, domains).
kept_key = st.one_of(
    st.tuples(
        st.just("replies"),
        st.tuples(
            st.sampled_from(["postfix", "exim", "qmail"]),
            st.sampled_from(["mx1", "me", "bad log"]),
            st.sampled_from(["inbound", "outbound", "up"]),
            st.sampled_from(["250", "550", "551", "5x0"]),
            st.sampled_from(["", "5.1.1", "2.0.0", "5.9.1", "5.9.2", '5.1.1"', "4.7.1"]),
        ),
    ),
    st.tuples(
        st.just("reasons"),
        st.tuples(
            st.sampled_from(["postfix", "mailenable", "qmail"]),
            st.sampled_from(["mx1", "me", "a/b"]),
            st.sampled_from(["inbound", "outbound", "sideways"]),
            st.sampled_from(["551", "451", "250", "55"]),
            st.sampled_from(["user-unknown", "other", "not-a-reason"]),
        ),
    ),
    st.tuples(
        st.just("domains"),
        st.tuples(
            st.sampled_from(["a.example", "B.Example", "b.example", "other", "bad domain", "-x"]),
            st.sampled_from(["inbound", "outbound", "up"]),
            st.sampled_from(["2xx", "5xx", "6xx", "5x"]),
        ),
    ),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.tuples(kept_key, st.integers(1, 50)), max_size=12), st.booleans()),
        min_size=1,
        max_size=6,
    )
)
def test_kept_decisions_and_blocks_match_a_fresh_export_whatever_arrives(
    batches: list[tuple[list[tuple[tuple[str, tuple[str, ...]], int]], bool]],
) -> None:
    counts: dict[str, dict[tuple[str, ...], int]] = {"replies": {}, "reasons": {}, "domains": {}}
    current = [exposition(Aggregate())]
    reg = make_registry(lambda: current[0], process_metrics=False)
    last: tuple[bytes, bytes] = (reg.exposition(openmetrics=False), reg.exposition(openmetrics=True))
    for batch, reorder in batches:
        for (kind, key), n in batch:
            counts[kind][key] = counts[kind].get(key, 0) + n
        if reorder:  # not an extension of the last keys: the kept decisions must start afresh
            counts = {kind: dict(reversed(d.items())) for kind, d in counts.items()}
        fields = {kind: dict(d) for kind, d in counts.items()}
        snap = replace(Aggregate().snapshot(T0), **fields)  # type: ignore[arg-type]  # keys of any length
        same = snap == current[0].snapshot  # equal dicts, maybe in another order: the kept bodies
        current[0] = replace(current[0], snapshot=snap)
        now = (reg.exposition(openmetrics=False), reg.exposition(openmetrics=True))
        assert now == (last if same else (generate_latest(reg), generate_openmetrics(reg)))
        last = now


def big_aggregate(logs: int = 21) -> Aggregate:
    """About 10k series: every log at the cap of distinct enhanced codes, in both directions."""
    agg = Aggregate(top_domains=300)
    for li in range(logs):
        for direction in ("inbound", "outbound"):
            for i in range(MAX_ENHANCED_PER_LOG):
                code = ("250", "450", "550", "551", "554")[i % 5]
                enhanced = f"{code[0]}.{i % 8}.{i // 8}"
                agg.add(ev(log=f"log{li}", direction=direction, code=code, enhanced=enhanced,
                           status="sent", recipient_domain=f"d{i}.example"))  # fmt: skip
    return agg


def unpack(body: bytes) -> bytes:
    """The body of one complete gzip member, checked by zlib and by the gzip program."""
    reader = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = reader.decompress(body)
    assert reader.eof
    assert reader.unused_data == b""
    gunzip = subprocess.run(["gzip", "-dc"], input=body, capture_output=True, check=True)
    assert gunzip.stdout == text
    return text


def test_10k_series_in_every_format_follow_every_change_and_promtool_accepts_them() -> None:
    agg = big_aggregate()
    logs = tuple(LogStatus(f"log{li}", "postfix", True) for li in range(21))
    reg = make_registry(lambda: exposition(agg, logs=logs), process_metrics=False)
    # i = 98 of log10 inbound in big_aggregate: in the middle of the replies, not its first block
    series = {"mta": "postfix", "log": "log10", "direction": "inbound", "code": "551", "enhanced": "5.2.12"}

    def every_log() -> None:
        for li in range(21):
            agg.add(ev(log=f"log{li}", code="551", enhanced="5.1.1", status="bounced"))

    steps: list[Callable[[], None]] = [
        lambda: None,  # unchanged: the kept bodies
        lambda: agg.add(ev(log="log10", direction="inbound", code="551", enhanced="5.2.12")),  # one block
        every_log,
        lambda: agg.add(ev(log="log20", code="421", enhanced="4.4.2", recipient_domain="new.example")),
    ]
    seen = []
    for step in steps:
        step()
        text, om = generate_latest(reg), generate_openmetrics(reg)
        seen.append(value(text.decode(), "logscan_smtp_replies_total", **series))
        for gz in (False, True):
            for openmetrics, reference in ((False, text), (True, om)):
                body = reg.exposition(openmetrics=openmetrics, gzipped=gz)
                assert (unpack(body) if gz else body) == reference
    assert seen == [1, 2, 2, 2]
    assert len(samples(text.decode())) > 9000
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool not found: apt-get install prometheus"
    done = subprocess.run([promtool, "check", "metrics"], input=reg.exposition(openmetrics=False),
                          capture_output=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
