"""The pure alert engine: rule config, event-time evaluation, hysteresis, baseline, replay, state."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logscan.core.alerts import (
    DEFAULT_RULES,
    AlertEngine,
    AlertPeriod,
    Rule,
    Transition,
    replay,
    rules_from,
)
from logscan.events import Direction, Event

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 60  # a whole minute
OUT = "smtp_551_outbound_spike"
IN = "smtp_551_inbound_spike"


def minute_events(
    m: int,
    *,
    ok: int = 50,
    hits: int = 0,
    code: str = "551",
    log: str = "mail",
    direction: Direction = "outbound",
    domain: str = "example.org",
) -> list[Event]:
    """Minute `m` after T0: `ok` 250 replies and `hits` replies with `code`, spread over the minute."""
    evs = [Event("postfix", log, T0 + m * 60 + i * 59 / max(ok, 1), direction, "250") for i in range(ok)]
    evs += [
        Event(
            "postfix",
            log,
            T0 + m * 60 + 0.25 + i * 59 / max(hits, 1),
            direction,
            code,
            "5.1.1",
            "bounced",
            recipient_domain=domain if direction == "outbound" else "local.example",
            sender_domain=domain if direction == "inbound" else "local.example",
        )
        for i in range(hits)
    ]
    return sorted(evs, key=lambda e: e.time)


def schedule(minutes: Iterable[int], burst: dict[int, int], trickle: int = 0, **kw: object) -> list[Event]:
    out: list[Event] = []
    for m in minutes:
        out += minute_events(m, hits=burst.get(m, trickle), **kw)  # type: ignore[arg-type]
    return out


def run(engine: AlertEngine, events: Iterable[Event], until: float | None = None) -> list[Transition]:
    for ev in events:
        engine.observe(ev)
    return engine.advance(until)


def at_min(tr: Transition | AlertPeriod) -> tuple[object, ...]:
    if isinstance(tr, Transition):
        return (tr.alert, tr.state, (tr.at - T0) / 60)
    return (tr.alert, (tr.start - T0) / 60, None if tr.end is None else (tr.end - T0) / 60)


# -- rule config ------------------------------------------------------------------------


def test_default_rules_are_the_two_551_spikes() -> None:
    assert [(r.name, r.direction, r.code) for r in DEFAULT_RULES] == [
        (OUT, "outbound", "551"),
        (IN, "inbound", "551"),
    ]
    r = DEFAULT_RULES[0]
    assert (r.window, r.min_count, r.min_ratio, r.factor, r.for_s, r.severity, r.per_domain, r.logs) == (
        300,
        10,
        0.05,
        3.0,
        120,
        "page",
        False,
        None,
    )


def test_rules_from_toml_shaped_data() -> None:
    rules = rules_from(
        [
            {"name": "a", "direction": "inbound", "code": "5xx", "logs": ["mail", "exim"], "window": 600},
            {"name": "b", "direction": "outbound", "code": "5.7.1", "per_domain": True},
        ]
    )
    assert rules[0].logs == ("mail", "exim")
    assert rules[0].window == 600
    assert rules[1].per_domain


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "a", "direction": "outbound", "treshold": 3}, "treshold"),
        ({"name": "a", "direction": "outbound", "code": "55"}, "$[0].code"),
        ({"name": "a", "direction": "outbound", "code": "651"}, "$[0].code"),
        ({"name": "a", "direction": "sideways"}, "$[0].direction"),
        ({"name": "a", "direction": "outbound", "window": 90}, "$[0].window"),
        ({"name": "a", "direction": "outbound", "min_count": 0}, "$[0].min_count"),
        ({"name": "a", "direction": "outbound", "min_ratio": 1.5}, "$[0].min_ratio"),
        ({"name": "bad name", "direction": "outbound"}, "$[0].name"),
        ({"direction": "outbound"}, "name"),
    ],
)
def test_bad_rule_config_names_the_key(entry: dict[str, object], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re_escape(message)):
        rules_from([entry])


def re_escape(s: str) -> str:
    return re.escape(s)


def test_duplicate_rule_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        rules_from([{"name": "a", "direction": "outbound"}, {"name": "a", "direction": "inbound"}])
    with pytest.raises(ValueError, match="duplicate"):
        AlertEngine([DEFAULT_RULES[0], DEFAULT_RULES[0]])


@pytest.mark.parametrize(
    ("code", "ev_code", "ev_enh", "hit"),
    [
        ("551", "551", "5.1.1", True),
        ("551", "550", "5.1.1", False),
        ("5xx", "554", "", True),
        ("5xx", "451", "", False),
        ("5.1.1", "550", "5.1.1", True),
        ("5.1.1", "551", "5.7.1", False),
    ],
)
def test_rule_matches_code_class_and_enhanced(code: str, ev_code: str, ev_enh: str, hit: bool) -> None:
    rule = Rule(name="r", direction="outbound", code=code)
    assert rule.matches(Event("postfix", "mail", T0, "outbound", ev_code, ev_enh)) is hit


# -- evaluation -------------------------------------------------------------------------


def test_burst_goes_pending_then_firing_after_for_then_resolves_with_hysteresis() -> None:
    engine = AlertEngine()
    trs = run(engine, schedule(range(120), {100: 20, 101: 20, 102: 20, 103: 20}), until=T0 + 120 * 60)
    assert [at_min(t) for t in trs] == [
        (OUT, "pending", 101.0),  # window 96..100 holds 20
        (OUT, "firing", 103.0),  # hot for 2 minutes
        (OUT, "resolved", 109.0),  # 104's burst minute left the window at 109: count 0
    ]
    _pending, firing, resolved = trs
    assert firing.since == firing.at == T0 + 103 * 60
    assert firing.pending_since == T0 + 101 * 60
    assert (firing.count, firing.total) == (60, 310)
    assert firing.ratio == pytest.approx(60 / 310)
    assert firing.rate == pytest.approx(12.0)
    assert firing.baseline == 0.0
    assert resolved.since == firing.at
    assert resolved.peak_count == 80
    assert resolved.labels == {
        "alertname": OUT,
        "severity": "page",
        "mta": "postfix",
        "log": "mail",
        "code": "551",
        "direction": "outbound",
    }
    assert engine.firing() == {OUT: False, IN: False}


def test_hysteresis_keeps_firing_between_70_percent_and_threshold() -> None:
    # 12 a minute for 6 minutes, then 1.6/min (8 per window: below 10, above 7): stays firing.
    burst = dict.fromkeys(range(10, 16), 12)
    burst |= {m: (2 if m % 5 in (0, 2, 4) else 1) for m in range(16, 40)}
    burst |= {m: 1 for m in range(16, 40) if m % 5 in (1, 3)}
    engine = AlertEngine([Rule(name="r", direction="outbound", factor=0)])
    evs = schedule(range(60), burst, ok=20)
    trs = run(engine, evs, until=T0 + 60 * 60)
    states = [at_min(t)[1:] for t in trs]
    assert states[:2] == [("pending", 11.0), ("firing", 13.0)]
    # While between 7 and 9 per 5 minutes it never resolves; it does once the level drops to 0.
    # At 41 the window 36..39 + 40 holds 6 < 7.
    assert states[2:] == [("resolved", 41.0)]


def test_a_burst_shorter_than_for_goes_pending_then_back_to_inactive() -> None:
    # A burst stays in a 5-minute window for 5 evaluations, so `for` must be longer to matter.
    engine = AlertEngine([Rule(name=OUT, direction="outbound", for_s=600)])
    trs = run(engine, schedule(range(30), {10: 30}), until=T0 + 30 * 60)
    assert [at_min(t) for t in trs] == [(OUT, "pending", 11.0), (OUT, "inactive", 16.0)]
    assert trs[1].since == T0 + 11 * 60


def test_slow_trickle_never_fires() -> None:
    # One 551 a minute for 6 hours: 5 per window < min_count 10.
    trs = run(AlertEngine(), schedule(range(360), {}, trickle=1), until=T0 + 400 * 60)
    assert trs == []


def test_many_551s_drowned_in_traffic_fail_the_share_test() -> None:
    # 30 a minute is plenty, but only 3% of 1,000 replies a minute.
    trs = run(AlertEngine(), schedule(range(20), dict.fromkeys(range(5, 15), 30), ok=970), until=T0 + 30 * 60)
    assert trs == []


def test_baseline_is_an_ewma_with_one_hour_time_constant_fed_as_minutes_leave_the_window() -> None:
    engine = AlertEngine([Rule(name="r", direction="outbound", min_count=10_000)])
    run(engine, schedule(range(200), {}, trickle=4), until=T0 + 200 * 60 + 30)
    # At boundary 200 the window is 195..199; minutes 0..194 (195 of them, 4 each) are folded.
    series = engine.to_dict()["logs"]["mail"]["series"][0][3]
    keep = math.exp(-60 / 3600)
    assert series["baseline"] == pytest.approx(4 * (1 - keep**195), rel=1e-9)


def test_factor_gate_needs_three_times_the_baseline() -> None:
    # A steady 4/min for 3 hours (at 7% share): with baseline ~4/min, 8/min is not a spike, 16/min is.
    rule = Rule(name="r", direction="outbound")
    steady = schedule(range(180), {}, trickle=4)
    engine = AlertEngine([rule])
    early = run(engine, steady, until=T0 + 180 * 60)
    # Fresh engine, no baseline yet: the steady level pages once; the baseline stays frozen for
    # an hour of incident, then learns the level and the alert resolves.
    assert [t.state for t in early] == ["pending", "firing", "resolved"]
    assert 63 * 60 < early[-1].at - T0 < 120 * 60
    double = run(engine, schedule(range(180, 200), {}, trickle=8), until=T0 + 200 * 60)
    assert double == []
    quad = run(engine, schedule(range(200, 210), {}, trickle=16), until=T0 + 210 * 60)
    assert [t.state for t in quad] == ["pending", "firing"]
    assert quad[1].baseline > 3.5


def test_baseline_is_frozen_while_firing() -> None:
    # A 40-minute incident must not teach itself to be normal: it fires all the way through.
    engine = AlertEngine()
    trs = run(engine, schedule(range(120), dict.fromkeys(range(60, 100), 20)), until=T0 + 130 * 60)
    assert [at_min(t) for t in trs] == [
        (OUT, "pending", 61.0),
        (OUT, "firing", 63.0),
        (OUT, "resolved", 105.0),
    ]


def test_advance_without_new_events_resolves_a_quiet_log() -> None:
    engine = AlertEngine()
    trs = run(engine, schedule(range(10), {5: 15, 6: 15, 7: 15, 8: 15, 9: 15}))
    assert [t.state for t in trs] == ["pending", "firing"]
    assert engine.firing()[OUT]
    # The log goes silent; the live daemon, caught up, advances with the wall clock.
    assert engine.advance(T0 + 14 * 60 + 9) == []  # boundary 14 needs 10 s of settle
    assert engine.firing()[OUT]
    done = engine.advance(T0 + 15 * 60 + 10)
    assert [at_min(t) for t in done] == [(OUT, "resolved", 15.0)]
    assert not engine.firing()[OUT]
    assert engine.advance(T0 + 30 * 60) == []


def test_advance_for_caught_up_logs_leaves_a_backlogged_log_to_its_own_timestamps() -> None:
    engine = AlertEngine()
    # Log "a" is live and quiet; log "b" is still reading a backlog that holds a burst.
    run(engine, schedule(range(5), {}, log="a") + schedule(range(5), {}, log="b"))
    assert engine.advance(T0 + 60 * 60, logs=["a"]) == []
    trs = run(engine, schedule(range(5, 30), {10: 20, 11: 20, 12: 20}, log="b"))
    assert [(t.labels["log"], at_min(t)[1:]) for t in trs] == [
        ("b", ("pending", 11.0)),
        ("b", ("firing", 13.0)),
        ("b", ("resolved", 18.0)),
    ]
    assert engine.late == 0
    # Whereas advancing "b" with wall time before its backlog is read loses that backlog.
    wrong = AlertEngine()
    run(wrong, schedule(range(5), {}, log="b"))
    wrong.advance(T0 + 60 * 60)
    assert run(wrong, schedule(range(5, 30), {10: 20, 11: 20, 12: 20}, log="b")) == []
    assert wrong.late > 0


def test_per_log_and_both_directions_are_separate_series() -> None:
    evs = schedule(range(20), dict.fromkeys(range(5, 10), 20), log="a")
    evs += schedule(range(20), dict.fromkeys(range(5, 10), 20), log="b", direction="inbound")
    evs += schedule(range(20), {}, log="c")
    trs = run(AlertEngine(), sorted(evs, key=lambda e: e.time), until=T0 + 20 * 60)
    fired = {(t.labels["log"], t.labels["direction"], t.alert) for t in trs if t.state == "firing"}
    assert fired == {("a", "outbound", OUT), ("b", "inbound", IN)}


def test_logs_filter_limits_a_rule_to_named_logs() -> None:
    rule = Rule(name="r", direction="outbound", logs=("a",))
    evs = schedule(range(20), dict.fromkeys(range(5, 10), 20), log="a")
    evs += schedule(range(20), dict.fromkeys(range(5, 10), 20), log="b")
    trs = run(AlertEngine([rule]), sorted(evs, key=lambda e: e.time), until=T0 + 20 * 60)
    assert {t.labels["log"] for t in trs} == {"a"}


def test_firing_is_keyed_by_alert_name_any_log() -> None:
    engine = AlertEngine()
    run(engine, schedule(range(10), dict.fromkeys(range(4, 10), 20), log="x"), until=T0 + 9 * 60 + 30)
    assert engine.firing() == {OUT: True, IN: False}
    active = engine.active()
    assert [(t.alert, t.state, t.labels["log"]) for t in active] == [(OUT, "firing", "x")]


def test_per_domain_labels_and_bounded_domain_tracking() -> None:
    rule = Rule(name="d", direction="outbound", per_domain=True, max_domains=3, factor=0, min_ratio=0.0)
    engine = AlertEngine([rule])
    evs: list[Event] = []
    for m in range(20):
        evs += minute_events(m, hits=15 if 5 <= m < 10 else 0, domain="bad.example")
        # A flood of one-off domains, each seen once.
        evs += [
            Event(
                "postfix",
                "mail",
                T0 + m * 60 + i * 0.5,
                "outbound",
                "551",
                recipient_domain=f"d{m}-{i}.example",
            )
            for i in range(100)
        ]
    trs = run(engine, sorted(evs, key=lambda e: e.time), until=T0 + 20 * 60)
    firing = {t.labels["domain"] for t in trs if t.state == "firing"}
    assert "bad.example" in firing
    assert "other" in firing  # the flood counts together once the domain slots are full
    assert all(t.labels.keys() >= {"alertname", "domain", "log"} for t in trs)
    series = engine.to_dict()["logs"]["mail"]["series"]
    assert len(series) <= rule.max_domains + 1


def test_memory_stays_bounded_without_advance_calls() -> None:
    engine = AlertEngine()
    for ev in schedule(range(600), {}, ok=3, trickle=1):
        engine.observe(ev)
    state = engine.to_dict()["logs"]["mail"]
    for *_, s in state["series"]:
        assert len(s["totals"]) <= 7  # window (5) + the current minute, + settle


def test_late_events_are_counted_not_used() -> None:
    engine = AlertEngine()
    run(engine, schedule(range(30), {}), until=T0 + 30 * 60)
    engine.observe(Event("postfix", "mail", T0 + 60, "outbound", "551"))
    assert engine.late == 1


# -- event time: replay equals live ------------------------------------------------------


def test_replay_reports_periods_with_start_and_end() -> None:
    evs = schedule(range(240), {30: 20, 31: 20, 32: 20, 33: 20, 150: 30, 151: 30, 152: 30})
    periods = replay(evs, until=T0 + 240 * 60)
    assert [at_min(p) for p in periods] == [(OUT, 33.0, 39.0), (OUT, 153.0, 158.0)]
    assert periods[0].peak_count == 80
    assert periods[1].pending_since == T0 + 151 * 60
    open_end = replay(evs[: len(evs) // 2 + 10])  # cut inside nothing: no open period
    assert [at_min(p) for p in open_end] == [(OUT, 33.0, 39.0)]
    still = replay(schedule(range(40), dict.fromkeys(range(30, 40), 20)))
    assert [at_min(p) for p in still] == [(OUT, 33.0, None)]


def test_replay_of_logs_one_after_the_other_matches_interleaved() -> None:
    a = schedule(range(120), {40: 25, 41: 25, 42: 25}, log="a")
    b = schedule(range(120), {80: 25, 81: 25, 82: 25}, log="b")
    together = sorted(a + b, key=lambda e: e.time)
    assert replay(a + b, until=T0 + 200 * 60) == replay(together, until=T0 + 200 * 60)
    assert [(p.labels["log"], at_min(p)[1]) for p in replay(a + b)] == [("a", 43.0), ("b", 83.0)]


@settings(max_examples=60, deadline=None)
@given(
    bursts=st.dictionaries(st.integers(0, 179), st.integers(0, 40), max_size=40),
    silent=st.sets(st.integers(0, 179), max_size=60),
    ticks=st.lists(st.floats(0, 1), max_size=40),
    restart=st.floats(0, 1),
)
def test_live_with_caught_up_ticks_and_a_restart_equals_replay(
    bursts: dict[int, int], silent: set[int], ticks: list[float], restart: float
) -> None:
    """Wall-clock ticks while caught up (even through silent minutes) and a save/restore change nothing."""
    evs = [e for e in schedule(range(180), bursts, ok=20) if int((e.time - T0) // 60) not in silent]
    expected = replay(evs, until=T0 + 200 * 60)

    engine = AlertEngine()
    seen: list[Transition] = []
    tick_after = {int(f * (len(evs) - 1)) for f in ticks}
    restart_at = int(restart * (len(evs) - 1))
    for i, ev in enumerate(evs):
        engine.observe(ev)
        if i in tick_after and i + 1 < len(evs):
            # Caught up and idle until the next line is written: "now" is that line's time.
            seen += engine.advance(evs[i + 1].time)
        if i == restart_at:
            seen += engine.advance(ev.time)
            state = msgspec.json.decode(msgspec.json.encode(engine.to_dict()))
            engine = AlertEngine.from_dict(state)
    seen += engine.advance(T0 + 200 * 60)

    live: list[AlertPeriod] = []
    starts: dict[object, Transition] = {}
    for tr in seen:
        if tr.state == "firing":
            starts[tr.key] = tr
        elif tr.state == "resolved":
            s = starts.pop(tr.key)
            live.append(AlertPeriod(s.alert, s.labels, s.pending_since, s.since, tr.at, 0, 0, 0, 0))
    assert [(p.start, p.end, p.pending_since) for p in live] == [
        (p.start, p.end, p.pending_since) for p in expected
    ]
    assert engine.late == 0


# -- state -------------------------------------------------------------------------------


def test_state_round_trip_mid_incident_continues_exactly() -> None:
    evs = schedule(range(120), dict.fromkeys(range(60, 70), 20))
    cut = next(i for i, e in enumerate(evs) if e.time >= T0 + 65 * 60)
    whole = run(AlertEngine(), evs, until=T0 + 120 * 60)

    first = AlertEngine()
    before = run(first, evs[:cut])
    blob = msgspec.json.encode(first.to_dict())
    second = AlertEngine.from_dict(msgspec.json.decode(blob))
    assert second.firing() == {OUT: True, IN: False}
    assert [t.alert for t in second.active()] == [OUT]
    after = run(second, evs[cut:], until=T0 + 120 * 60)
    assert before + after == whole
    assert second.to_dict() == run_state(evs, T0 + 120 * 60)


def run_state(evs: list[Event], until: float) -> dict[str, object]:
    e = AlertEngine()
    run(e, evs, until=until)
    return e.to_dict()


def test_from_dict_drops_series_of_changed_or_removed_rules() -> None:
    engine = AlertEngine()
    run(engine, schedule(range(10), dict.fromkeys(range(4, 10), 20)), until=T0 + 9 * 60 + 30)
    state = engine.to_dict()
    kept = AlertEngine.from_dict(state, [Rule(name=OUT, direction="outbound", min_count=5)])
    assert kept.firing() == {OUT: True}
    changed = AlertEngine.from_dict(state, [Rule(name=OUT, direction="outbound", code="5xx")])
    assert changed.firing() == {OUT: False}
    with pytest.raises(ValueError, match="version"):
        AlertEngine.from_dict({"version": 99})
    with pytest.raises(ValueError, match="malformed"):
        AlertEngine.from_dict({"version": 1, "rules": {}, "late": 0, "logs": {"x": {}}})
