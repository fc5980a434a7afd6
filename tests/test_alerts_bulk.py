"""Alert rules fed from EventBatches (AlertEngine.observe_batch, the bulk scan path) fire
exactly what observe() of each event fires: same transitions at the same times, same state
(docs/decisions/0016-alerts-from-counts.md).

Every log is read twice through a real Pipeline: once line by line (the bulk reader off, so
each event reaches observe()), once with the bulk reader (C scanner or regex), in chunks of
several sizes. Sensitive extra rules make the logs fire, pend and resolve often.
"""

from __future__ import annotations

import json
import random
from datetime import UTC
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import pytest

from benchmarks.gen_logs import generate
from benchmarks.restamp import syslog_stamped
from logscan.core.aggregate import Aggregate
from logscan.core.alerts import (
    DEFAULT_RULES,
    DEFAULT_SETTLE_S,
    AlertEngine,
    AlertPeriod,
    Replay,
    Rule,
    Transition,
)
from logscan.core.pipeline import Pipeline
from logscan.events import Direction, Event, EventBatch
from logscan.parsers import exim_bulk, mailenable_bulk, make_parser, postfix_bulk
from logscan.parsers.base import ParserOptions, per_minute

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = 1_796_000_000.0  # 2026-11-29
LOGS = (ROOT / "tests" / "samples" / "postfix.log", ROOT / "sample_logs" / "postfix" / "mail.log")
C_SCAN = postfix_bulk._scan
C_MINUTES = postfix_bulk._minutes
EXIM_C = exim_bulk._scan
ME_C = (mailenable_bulk._scan, mailenable_bulk._tally)
# A state saved by AlertEngine.to_dict() of commit 6322f4b (before batches fed the engine):
# RULES over the first half of sample_logs/postfix/mail.log, line by line.
SAVED = ROOT / "tests" / "samples" / "alert-state-6322f4b.json"

SENSITIVE = (
    Rule(name="in_5xx", direction="inbound", code="5xx", window=120, min_count=2, min_ratio=0.0,
         factor=0.0, for_s=60),
    Rule(name="out_511", direction="outbound", code="5.1.1", window=60, min_count=1, min_ratio=0.0,
         factor=0.0, for_s=0),
    Rule(name="out_4xx", direction="outbound", code="4xx", window=60, min_count=3, min_ratio=0.01,
         factor=2.0, baseline_s=600, for_s=0),
    Rule(name="in_550", direction="inbound", code="550", window=180, min_count=2, min_ratio=0.01,
         factor=1.5, baseline_s=300, for_s=60, resolve_fraction=0.5),
)  # fmt: skip
RULES = (*DEFAULT_RULES, *SENSITIVE)
PER_DOMAIN = (
    *RULES,
    Rule(name="out_5xx_domain", direction="outbound", code="5xx", per_domain=True, window=120,
         min_count=2, min_ratio=0.0, factor=0.0, for_s=0, max_domains=3),
)  # fmt: skip


def read_lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        return f.read().splitlines()


def chunked(lines: list[str], size: int) -> list[str]:
    return ["".join(line + "\n" for line in lines[i : i + size]) for i in range(0, len(lines), size)]


def without_c(fmt: str, c: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """`fmt`'s bulk reader with its C scanner (`c`) or with its pure-Python rows."""
    if fmt == "postfix":
        monkeypatch.setattr(postfix_bulk, "_scan", C_SCAN if c else None)
        monkeypatch.setattr(postfix_bulk, "_minutes", C_MINUTES if c else None)
    elif fmt == "exim":
        monkeypatch.setattr(exim_bulk, "_scan", EXIM_C if c else None)
    else:
        monkeypatch.setattr(mailenable_bulk, "python_rows", True)
        monkeypatch.setattr(mailenable_bulk, "_scan", ME_C[0] if c else None)
        monkeypatch.setattr(mailenable_bulk, "_tally", ME_C[1] if c else None)


class Fed(NamedTuple):
    transitions: list[Transition]
    batched: int  # replies that reached the engine in batches
    compacted: int  # of those, replies in batches with EventBatch.unnamed (domains not each reply's)
    grouped: int  # of those, replies grouped per minute (EventBatch.weights)
    aggregate: dict[str, Any]


def feed(
    engine: AlertEngine,
    chunks: list[str],
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str = "postfix",
    per_minute: bool = True,
) -> Fed:
    """Every transition (collected after each chunk, then 2 h past the end), what reached the
    engine in batches, and the aggregate. `mode`: "each" (parse() per line), "c" (the bulk
    reader with its C scanner) or "regex" (the bulk reader's pure-Python rows); `per_minute`:
    whether the engine takes replies grouped per minute where it can."""
    without_c(fmt, mode == "c", monkeypatch)
    parser = make_parser(fmt, ParserOptions(log="x.log", tz=UTC, reference_time=REFERENCE))
    agg = Aggregate(top_domains=3, windows=(60, 300))
    batched = compacted = grouped = 0

    class Counting:
        def observe(self, ev: Any) -> None:
            engine.observe(ev)

        def observe_batch(self, batch: EventBatch) -> None:
            nonlocal batched, compacted, grouped
            n = sum(batch.weights) if batch.weights else len(batch.times)
            batched += n
            compacted += n if batch.unnamed else 0
            grouped += sum(batch.weights)
            engine.observe_batch(batch)

        def observe_events(self, events: list[Event]) -> None:
            for ev in events:
                engine.observe(ev)

        def needs_domains(self, log: str) -> bool:
            return engine.needs_domains(log)

        def takes_minutes(self, log: str) -> bool:
            return per_minute and engine.takes_minutes(log)

    pipe = Pipeline("x.log", parser, agg, (Counting(),))
    if mode == "each":
        pipe.bulk = None
    out: list[Transition] = []
    for chunk in chunks:
        pipe.feed_text(chunk)
        out += engine.advance()
    last = agg.last_event.get("x.log", REFERENCE)
    out += engine.advance(last + 7200)
    return Fed(out, batched, compacted, grouped, agg.to_dict())


def assert_same(
    chunks: list[str],
    rules: tuple[Rule, ...],
    monkeypatch: pytest.MonkeyPatch,
    fmt: str = "postfix",
    *,
    settle_s: float = DEFAULT_SETTLE_S,
    per_minute: bool = True,
) -> Fed:
    """Both bulk readers against the per-event path (transitions, engine state, aggregate);
    returns what the C reader fed."""
    want_engine = AlertEngine(rules, settle_s=settle_s)
    want = feed(want_engine, chunks, "each", monkeypatch, fmt)
    assert want.batched == 0
    fed: list[Fed] = []
    for mode in ("c", "regex"):
        engine = AlertEngine(rules, settle_s=settle_s)
        got = feed(engine, chunks, mode, monkeypatch, fmt, per_minute)
        assert got.batched > 0, mode  # the batches did feed the engine
        assert got.transitions == want.transitions, mode
        assert engine.to_dict() == want_engine.to_dict(), mode
        assert got.aggregate == want.aggregate, mode
        fed.append(got)
    return fed[0]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = tmp_path_factory.mktemp("gen") / "postfix.log"
    generate("postfix", 20_000, path, seed=16, hours=2.0, ndomains=200)
    return read_lines(path)


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.name)
def test_sample_logs_fire_the_same_from_batches(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = read_lines(log)
    for size in (1, 7, 1000, len(lines)):
        fed = assert_same(chunked(lines, size), RULES, monkeypatch)
        assert fed.grouped == fed.batched  # every batch's replies grouped per minute (C)


@pytest.mark.parametrize("stamps", ["rfc3339", "syslog"])
@pytest.mark.parametrize("size", [333, 4096, 20_000])
def test_a_generated_log_fires_the_same_from_batches(
    generated: list[str], stamps: str, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = list(map(syslog_stamped, generated)) if stamps == "syslog" else generated
    fed = assert_same(chunked(lines, size), RULES, monkeypatch)
    assert len(fed.transitions) >= 20  # pending, firing, resolved
    assert fed.grouped == fed.batched  # each minute's replies grouped in C
    for rules in (SENSITIVE, DEFAULT_RULES):
        assert assert_same(chunked(lines, size), rules, monkeypatch).grouped > 0
    # Listed one by one (the form of a batch whose times go back), the same.
    assert assert_same(chunked(lines, size), RULES, monkeypatch, per_minute=False).grouped == 0


def test_per_domain_rules_fire_the_same_from_batches(
    generated: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A per_domain rule's series depend on the order of domains: such logs go event by event.
    fed = assert_same(chunked(generated, 4096), PER_DOMAIN, monkeypatch)
    assert len(fed.transitions) >= 20
    assert fed.grouped == 0


def test_times_out_of_order_within_a_minute_fire_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bulk reader only needs minutes in order; seconds may step back inside one.
    line = (
        "2026-11-29T10:{m:02d}:{s:02d}.000001+00:00 mx1 postfix/smtpd[7]: NOQUEUE: reject: RCPT from "
        "a.example[192.0.2.1]: 551 5.1.1 <u@example.com>: Recipient address rejected: User not local; "
        "from=<s@d{m}.example> to=<u@example.com> proto=ESMTP helo=<a.example>"
    )
    lines = [line.format(m=m, s=s) for m in range(0, 30) for s in (30, 5, 12, 9, 59, 10, 11)]
    for size in (3, 50, len(lines)):
        fed = assert_same(chunked(lines, size), RULES, monkeypatch)
        assert len(fed.transitions) >= 2
        assert fed.grouped < fed.batched  # listed where the seconds go back
    # Then replies from minutes that every window has left: counted as late, not in buckets.
    late = [line.format(m=m, s=s) for m in (1, 2) for s in (3, 40, 41, 42, 43, 44, 45)]
    assert len(assert_same(chunked(lines + late, 7), RULES, monkeypatch).transitions) >= 2
    engine = AlertEngine(RULES)
    feed(engine, chunked(lines + late, 7), "c", monkeypatch)
    assert engine.late == 14 * sum(r.direction == "inbound" for r in RULES)


def test_a_state_saved_before_batches_restores_and_runs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = read_lines(LOGS[1])
    half = len(lines) // 2
    saved = json.loads(SAVED.read_text())
    # This version, event by event, saves exactly that state: the format did not change.
    fresh = AlertEngine(RULES)
    monkeypatch.setattr(postfix_bulk, "_scan", None)
    parser = make_parser("postfix", ParserOptions(log="x.log", tz=UTC, reference_time=REFERENCE))
    pipe = Pipeline("x.log", parser, Aggregate(), (fresh,))
    pipe.bulk = None
    pipe.feed_text("".join(line + "\n" for line in lines[:half]))
    fresh.advance()
    assert json.loads(json.dumps(fresh.to_dict())) == saved
    # Restored, the rest of the log fires the same from batches as event by event.
    chunks = chunked(lines[half:], 500)
    want_engine = AlertEngine.from_dict(saved, RULES)
    want, *_ = feed(want_engine, chunks, "each", monkeypatch)
    got_engine = AlertEngine.from_dict(saved, RULES)
    got, batched, *_ = feed(got_engine, chunks, "c", monkeypatch)
    assert batched > 0
    assert got == want
    assert got_engine.to_dict() == want_engine.to_dict()


def test_scan_alerts_replay_is_the_same_from_batches(
    generated: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def periods(mode: str) -> list[AlertPeriod]:
        monkeypatch.setattr(postfix_bulk, "_scan", C_SCAN if mode == "c" else None)
        parser = make_parser("postfix", ParserOptions(log="x.log", tz=UTC, reference_time=REFERENCE))
        rp = Replay(RULES)
        pipe = Pipeline("x.log", parser, Aggregate(), (rp,))
        if mode == "each":
            pipe.bulk = None
        for chunk in chunked(generated, 4096):
            pipe.feed_text(chunk)
        return rp.finish(REFERENCE + 86400 * 30)

    want = periods("each")
    assert len(want) >= 5
    assert periods("c") == want
    assert periods("regex") == want


def test_a_quiet_series_that_an_evaluation_would_drop_stays_as_per_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # After a quiet spell a series is empty and dropped at the next evaluation, unless a reply
    # of the minute came before the evaluation point (here :05 before :30): then it stays.
    line = (
        "2026-11-29T10:{m:02d}:{s:02d}+00:00 mx1 postfix/smtp[7]: 4ABCDEF123: to=<u@d.example>, "
        "relay=mx.d.example[192.0.2.2]:25, delay=0.5, delays=0.1/0/0.2/0.2, dsn=2.0.0, "
        "status=sent (250 2.0.0 Ok)"
    )
    # A reply from 10:07 then still counts (the kept series reaches back to 12 − 5 minutes).
    stamps = [(0, 5), (0, 30), (12, 5), (12, 30), (7, 40), (13, 5), (13, 30), (30, 5)]
    lines = [line.format(m=m, s=s) for m, s in stamps]
    # Late only for the two outbound rules whose window is one minute.
    for rules, late in ((RULES, 2), (DEFAULT_RULES, 0)):
        for size in (1, 2):
            engine = AlertEngine(rules)
            chunks = chunked(lines, size)
            assert len(assert_same(chunks, rules, monkeypatch).transitions) == 0
            feed(engine, chunks, "c", monkeypatch)
            assert engine.late == late


def each_and_lists(fmt: str, lines: list[str], rules: tuple[Rule, ...], size: int) -> int:
    """A pipeline without a bulk reader: the engine given each call's events as one list
    (observe_events) against the engine given each event (a plain callable observer)."""
    got: list[list[Transition]] = []
    states = []
    for listed in (False, True):
        engine = AlertEngine(rules)
        parser = make_parser(fmt, ParserOptions(log="x.log", tz=UTC, reference_time=REFERENCE))
        agg = Aggregate()
        pipe = Pipeline("x.log", parser, agg, (engine,) if listed else (engine.observe,))
        out: list[Transition] = []
        for chunk in chunked(lines, size):
            pipe.feed_text(chunk)
            out += engine.advance()
        out += engine.advance(agg.last_event.get("x.log", REFERENCE) + 7200)
        got.append(out)
        states.append(engine.to_dict())
    assert got[0] == got[1]
    assert states[0] == states[1]
    return len(got[0])


@pytest.mark.parametrize("fmt", ["exim", "mailenable"])
def test_exim_and_mailenable_fire_the_same_from_lists_of_events(fmt: str, tmp_path: Path) -> None:
    sample = read_lines(ROOT / "tests" / "samples" / f"{fmt}.log")
    path = tmp_path / f"{fmt}.log"
    generate(fmt, 20_000, path, seed=16, hours=2.0, ndomains=200)
    generated = read_lines(path)
    for size in (1, 7, 1000):
        each_and_lists(fmt, sample, RULES, size)
    fired = 0
    for size in (333, 4096):
        fired += each_and_lists(fmt, generated, RULES, size)
    fired += each_and_lists(fmt, generated, PER_DOMAIN, 4096)
    assert fired >= 20


# --- MailEnable (docs/decisions/0019-mailenable-bulk.md): the same, from its bulk reader

ME_LOGS = (
    ROOT / "tests" / "samples" / "mailenable.log",
    ROOT / "sample_logs" / "mailenable" / "SMTP-Activity-261128.log",
    ROOT / "tests" / "data" / "mailenable-9.76-SMTP-Activity.log",
)


@pytest.fixture(scope="module")
def me_generated(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = tmp_path_factory.mktemp("gen") / "mailenable.log"
    generate("mailenable", 20_000, path, seed=16, hours=2.0, ndomains=200)
    return read_lines(path)


@pytest.mark.parametrize("log", ME_LOGS, ids=lambda p: p.name)
def test_mailenable_sample_logs_fire_the_same_from_batches(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = read_lines(log)
    for size in (1, 7, 1000, len(lines)):
        assert_same(chunked(lines, size), RULES, monkeypatch, "mailenable")


@pytest.mark.parametrize("size", [333, 4096, 20_000])
def test_a_generated_mailenable_log_fires_the_same_from_batches(
    me_generated: list[str], size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    fed = assert_same(chunked(me_generated, size), RULES, monkeypatch, "mailenable")
    assert len(fed.transitions) >= 20
    # No per_domain rule: the batches counted replies without a domain per class, and the
    # engine took each minute's replies grouped.
    assert fed.compacted > 0.9 * fed.batched
    assert fed.grouped > 0.9 * fed.batched
    # Listed one by one (the form of a batch whose times go back), the same.
    fed = assert_same(chunked(me_generated, size), RULES, monkeypatch, "mailenable", per_minute=False)
    assert fed.compacted > 0.9 * fed.batched
    assert fed.grouped == 0


@pytest.mark.parametrize("settle_s", [DEFAULT_SETTLE_S, 60.0], ids=["runs", "each"])
def test_mailenable_per_domain_rules_fire_the_same_from_batches(
    me_generated: list[str], settle_s: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = chunked(me_generated, 4096)
    fed = assert_same(chunks, PER_DOMAIN, monkeypatch, "mailenable", settle_s=settle_s)
    assert len(fed.transitions) >= 20
    # A per_domain rule reads each reply's domain: no batch may leave one out or group them.
    assert fed.compacted == fed.grouped == 0
    # The same rule kept to another log reads none of this one's domains.
    elsewhere = tuple(msgspec.structs.replace(r, logs=("y.log",)) if r.per_domain else r for r in PER_DOMAIN)
    assert assert_same(chunks, elsewhere, monkeypatch, "mailenable", settle_s=settle_s).compacted > 0


def test_compacted_batches_fire_the_same_event_by_event(
    me_generated: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # settle_s of a minute or more: observe_batch() rebuilds each event (_observe_each) from a
    # batch whose replies without a domain were counted per class.
    fed = assert_same(chunked(me_generated, 4096), RULES, monkeypatch, "mailenable", settle_s=60.0)
    assert len(fed.transitions) >= 20
    assert fed.compacted > 0.9 * fed.batched
    assert fed.grouped == 0


def test_a_compacted_batch_is_refused_for_a_per_domain_rule() -> None:
    # Its replies' domains are not there: a per_domain rule must not count them all as "other".
    batch = EventBatch(
        "mailenable", "x.log", 3, {}, {}, {}, [""], [("inbound", "2xx")], {}, {}, 60.0,
        times=[60.0, 61.0, 62.0], codes=[("inbound", "250", "")] * 3, unnamed={("inbound", "2xx"): 2},
    )  # fmt: skip
    AlertEngine(RULES, settle_s=60).observe_batch(batch)
    with pytest.raises(ValueError, match="per_domain"):
        AlertEngine(PER_DOMAIN, settle_s=60).observe_batch(batch)
    # Grouped per minute, its replies cannot be observed one by one at all.
    grouped = msgspec.structs.replace(
        batch, times=[60.0, 62.0], codes=[("inbound", "250", "")] * 2, weights=[3, 0]
    )
    AlertEngine(RULES).observe_batch(grouped)
    for engine in (AlertEngine(PER_DOMAIN), AlertEngine(RULES, settle_s=60)):
        with pytest.raises(ValueError, match="grouped per minute"):
            engine.observe_batch(grouped)


# --- Exim (docs/decisions/0018-exim-bulk.md): the same, from its bulk reader

@pytest.fixture(scope="module")
def generated_exim(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = tmp_path_factory.mktemp("gen") / "exim.log"
    generate("exim", 20_000, path, seed=16, hours=2.0, ndomains=200)
    return read_lines(path)


@pytest.mark.parametrize("size", [333, 4096])
@pytest.mark.parametrize("rules", [RULES, PER_DOMAIN], ids=["rules", "per_domain"])
def test_exim_fires_the_same_from_batches(
    generated_exim: list[str], size: int, rules: tuple[Rule, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = read_lines(ROOT / "sample_logs" / "exim" / "mainlog")
    assert EXIM_C is not None
    assert_same(chunked(sample, size), rules, monkeypatch, "exim")
    # pending, firing, resolved on the generated log
    assert len(assert_same(chunked(generated_exim, size), rules, monkeypatch, "exim").transitions) >= 20


@pytest.mark.parametrize("seed", range(40))
def test_replies_grouped_per_minute_fire_as_listed(seed: int) -> None:
    # base.per_minute() against the same replies listed one by one, straight into the engine:
    # sparse minutes (a reply or two, before or after the evaluation point), busy ones, gaps.
    rnd = random.Random(seed)
    replies: list[tuple[Direction, str, str]] = [
        ("inbound", "551", "5.1.1"), ("inbound", "250", ""), ("outbound", "551", ""),
        ("outbound", "450", "4.2.0"), ("inbound", "421", ""),
    ]  # fmt: skip
    keys = [f"k{i}" for i in range(len(replies))]
    reply_of = dict(zip(keys, replies, strict=True))
    t = REFERENCE
    times: list[float] = []
    coded: list[str] = []
    for _ in range(rnd.randrange(200, 1500)):
        t += rnd.choice((0, 0, 1, 3, 9, 11, 30, 59, 60, 61, 400, 3600))
        times.append(t)
        coded.append(rnd.choice(keys[: rnd.randrange(1, len(keys) + 1)]))
    for rules in (RULES, SENSITIVE, PER_DOMAIN):
        listed, grouped = AlertEngine(rules), AlertEngine(rules)
        i = 0
        while i < len(times):
            j = min(len(times), i + rnd.randrange(1, 300))
            batch = EventBatch(
                "mailenable", "x.log", j - i, dict.fromkeys(map(reply_of.__getitem__, coded[i:j]), 1), {}, {},
                [""] * (j - i), [("inbound", "5xx")] * (j - i), {}, {}, times[j - 1], times=times[i:j],
                codes=list(map(reply_of.__getitem__, coded[i:j])),
            )  # fmt: skip
            listed.observe_batch(batch)
            found = per_minute(times[i:j], list(map(reply_of.__getitem__, coded[i:j])))
            assert found is not None
            if grouped.takes_minutes("x.log"):
                batch = msgspec.structs.replace(batch, times=found[0], codes=found[1], weights=found[2])
            grouped.observe_batch(batch)
            assert grouped.advance() == listed.advance()
            i = j
        assert grouped.advance(t + 7200) == listed.advance(t + 7200)
        assert grouped.to_dict() == listed.to_dict()
