"""The engine's shortcuts change nothing but the time taken: counting a minute of replies at a
time (observe_events, observe_batch) and evaluating idle series in one step give the same
transitions, in the same order, and the same state as the plain path, observe() of one event
at a time with every evaluation step taken (AlertEngine._shortcuts off).
"""

from __future__ import annotations

import math
import random
from itertools import cycle
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from logscan.core.alerts import AlertEngine, Rule, Transition, _Series
from logscan.events import Event

START = 1_796_000_040.0  # 2026-11-30 00:54 UTC, a whole minute
REPLIES = (
    ("outbound", "551", "5.1.1"),
    ("outbound", "550", "5.1.1"),
    ("outbound", "250", ""),
    ("inbound", "551", ""),
    ("inbound", "421", "4.7.0"),
    ("inbound", "250", ""),
)
DOMAINS = ("a.example", "b.example", "c.example", "")

rules_st = st.builds(
    Rule,
    name=st.just("r"),  # renamed below to be unique
    direction=st.sampled_from(["inbound", "outbound"]),
    code=st.sampled_from(["551", "5xx", "5.1.1", "250", "4xx"]),
    window=st.sampled_from([60, 120, 300, 600]),
    min_count=st.integers(1, 6),
    min_ratio=st.sampled_from([0.0, 0.05, 0.3]),
    factor=st.sampled_from([0.0, 1.0, 3.0]),
    baseline_s=st.sampled_from([60, 300, 3600]),
    for_s=st.sampled_from([0, 60, 120]),
    resolve_fraction=st.sampled_from([0.3, 0.7, 1.0]),
    # Mostly not: a per_domain rule sends its log's replies to observe() one by one.
    per_domain=st.sampled_from([False, False, False, True]),
    max_domains=st.integers(1, 3),
)

# From one event to the next: a step of seconds (bursts), a jump to second s of a later minute
# (minutes or many windows later: idle series are dropped and made again; a second before
# settle_s puts an evaluation point inside the minute), or, rarely, a step back (late replies;
# a list of events out of order goes to observe() one by one, so most lists should not have one).
step_st = st.one_of(
    st.tuples(st.just("step"), st.floats(0.0, 20.0)),
    st.tuples(st.just("step"), st.integers(0, 3).map(float)),
    st.tuples(st.just("jump"), st.integers(1, 12), st.integers(0, 59)),
    st.tuples(st.just("jump"), st.integers(12, 400), st.integers(0, 59)),
    st.tuples(st.just("step"), st.floats(0.0, 20.0)),
    st.tuples(st.just("jump"), st.integers(1, 3), st.integers(0, 59)),
    st.tuples(st.just("back"), st.integers(1, 900)),
)
event_st = st.tuples(step_st, st.sampled_from(REPLIES), st.sampled_from(DOMAINS), st.sampled_from(["a", "b"]))
Raw = list[tuple[tuple[Any, ...], tuple[str, str, str], str, str]]


def make_events(raw: Raw) -> list[Event]:
    """Events of two logs from (step, reply, domain, log); times never before START."""
    t = START
    out = []
    for step, (direction, code, enhanced), domain, log in raw:
        if step[0] == "step":
            t += step[1]
        elif step[0] == "jump":
            t = (t // 60 + step[1]) * 60 + step[2]
        else:
            t = max(START, t - step[1])
        outbound = direction == "outbound"
        out.append(
            Event(
                "postfix",
                log,
                t,
                direction,  # type: ignore[arg-type]
                code,
                enhanced,
                recipient_domain=domain if outbound else "",
                sender_domain="" if outbound else domain,
            )
        )
    return out


def run(
    rules: list[Rule], settle_s: float, events: list[Event], chunks: list[int], plain: bool
) -> tuple[list[list[Transition]], list[dict[str, Any]]]:
    """Feed `events` in chunks of the sizes `chunks` (cycled; per log, in order); each chunk's
    transitions and the state after it."""
    engine = AlertEngine(rules, settle_s=settle_s)
    engine._shortcuts = not plain
    transitions: list[list[Transition]] = []
    states: list[dict[str, Any]] = []
    i = 0
    for size in cycle(chunks):
        if i >= len(events):
            break
        part, i = events[i : i + size], i + size
        for log in ("a", "b"):
            mine = [ev for ev in part if ev.log == log]
            if plain:
                for ev in mine:
                    engine.observe(ev)
            elif mine:
                engine.observe_events(mine)
        transitions.append(engine.advance())
        states.append(engine.to_dict())
    last = max((ev.time for ev in events), default=START)
    transitions.append(engine.advance(last + 3600))
    states.append(engine.to_dict())
    return transitions, states


# Two rules that count the same code in both directions, with kinds of hit of each.
BOTH_WAYS = (
    Rule(name="x_out", direction="outbound", code="5xx", window=120, min_count=2, min_ratio=0.0, factor=1.0,
         baseline_s=300, for_s=0),
    Rule(name="x_in", direction="inbound", code="551", window=60, min_count=1, min_ratio=0.0, factor=0.0,
         for_s=60, resolve_fraction=0.5),
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(  # a reply before next_min − 1 (late) in a batch into idle series: found by this test
    rules=[Rule(name="r", direction="inbound", code="551", window=60, min_count=1, min_ratio=0.0, factor=0.0,
                baseline_s=60, for_s=0, resolve_fraction=0.3)],
    settle_s=0.0,
    raw=[(("step", 0.0), REPLIES[0], "a.example", "a")] * 17
    + [(("jump", 1, 0), REPLIES[0], "a.example", "a"), (("back", 1), REPLIES[0], "a.example", "a"),
       (("step", 0.0), REPLIES[4], "a.example", "a")],
    chunks=[1],
)  # fmt: skip
@given(
    rules=st.one_of(
        st.lists(rules_st, min_size=1, max_size=3),
        st.lists(rules_st, max_size=2).map(lambda rs: [*BOTH_WAYS, *rs]),
    ),
    settle_s=st.sampled_from([0.0, 10.0, 59.0]),
    raw=st.lists(event_st, min_size=20, max_size=300),
    chunks=st.lists(st.integers(1, 60), min_size=1, max_size=8),
)
def test_shortcuts_give_the_plain_transitions_and_state(
    rules: list[Rule], settle_s: float, raw: Raw, chunks: list[int]
) -> None:
    rules = [msgspec.structs.replace(r, name=f"r{i}") for i, r in enumerate(rules)]
    events = make_events(raw)
    fast = run(rules, settle_s, events, chunks, plain=False)
    assert fast == run(rules, settle_s, events, chunks, plain=True)


def test_a_long_quiet_stretch_after_hits_decays_and_drops_the_series_as_plain() -> None:
    """Hits build a baseline, then one reply a minute for a day: the shortcut folds each minute."""
    rule = Rule(name="r", direction="inbound", code="551", window=120, min_count=2, min_ratio=0.0,
                factor=1.0, baseline_s=300, for_s=0)  # fmt: skip
    raw: Raw = [(("step", 1.0), REPLIES[3], "", "a")] * 40
    raw += [(("step", 60.0), REPLIES[5], "", "a")] * 1440 + [(("jump", 15, 5), REPLIES[3], "", "a")] * 3
    events = make_events(raw)
    for chunk in (1, 100, 10_000):
        fast, plain = run([rule], 10.0, events, [chunk], False), run([rule], 10.0, events, [chunk], True)
        assert fast == plain
        assert any(fast[0]), "the burst fires"


def test_a_reply_before_an_evaluation_point_inside_its_minute_keeps_its_series_as_plain() -> None:
    """After a quiet spell the series is gone; a reply at :05 before the evaluation point at :10
    makes it before that evaluation (one minute further back), so a reply from 5 minutes back counts."""
    stamps = [(0, 5), (0, 30), (12, 5), (12, 30), (7, 40), (13, 5), (13, 30), (30, 5)]
    events = [
        Event("postfix", "a", START + 60 * m + s, "outbound", "250", "2.0.0", recipient_domain="d.example")
        for m, s in stamps
    ]
    # Replies that no rule counts as hits: a series with no baseline, dropped once it is empty.
    rules = [
        Rule(name="r", direction="outbound", window=300),
        Rule(name="s", direction="outbound", window=60),
    ]
    for size in range(1, len(events) + 1):
        assert run(rules, 10.0, events, [size], False) == run(rules, 10.0, events, [size], True)


def test_a_series_made_at_an_evaluation_point_inside_a_minute_is_dropped_on_time() -> None:
    """Idle series of two windows: the short one, made again before an in-minute evaluation
    point and then quiet, must be dropped at its own time, not the long one's."""
    rules = [
        Rule(name="out", direction="outbound", window=60),
        Rule(name="in", direction="inbound", window=600),
    ]
    stamps = [(m, 30, "inbound") for m in range(31)]
    stamps += [(0, 30, "outbound"), (5, 5, "outbound"), (5, 15, "outbound"), (10, 40, "outbound")]
    events = [
        Event("postfix", "a", START + 60 * m + s, d, "250", "")  # type: ignore[arg-type]
        for m, s, d in sorted(stamps)
    ]
    for size in range(1, len(events) + 1):
        assert run(rules, 10.0, events, [size], False) == run(rules, 10.0, events, [size], True)


def _fold_reference(s: _Series, start: int, keep: float) -> tuple[float, dict[int, int], dict[int, int]]:
    """fold() with learning as first written, minute by minute: the spec of its one-minute step."""
    b, cur = s.baseline, s.folded
    for m in sorted(m for m in s.hits if m < start):
        b *= keep ** (m - cur)
        b = keep * b + (1.0 - keep) * s.hits[m]
        cur = m + 1
    b *= keep ** (start - cur)
    left = {m: n for m, n in s.hits.items() if m >= start}, {m: n for m, n in s.totals.items() if m >= start}
    return (b if b > 1e-9 else 0.0), *left


@settings(max_examples=600, deadline=None)
@given(
    st.dictionaries(st.integers(0, 8), st.integers(0, 40), max_size=9),
    st.dictionaries(st.integers(0, 8), st.integers(0, 90), max_size=9),
    st.one_of(st.just(0.0), st.just(1e-9), st.floats(0.0, 500.0)),
    st.sampled_from([60, 300, 3600, 7 * 86400]),
    st.integers(1, 4),
)
def test_a_fold_of_one_minute_learns_as_the_general_fold(
    hits: dict[int, int], totals: dict[int, int], baseline: float, baseline_s: int, ahead: int
) -> None:
    # fold() takes one minute leaving the window (the step of every evaluation) apart from the
    # general loop; both must give the very same float.
    keep = math.exp(-60 / baseline_s)
    s = _Series(folded=0, hits=dict(hits), totals=dict(totals), baseline=baseline)
    want = _fold_reference(s, ahead, keep)
    s.fold(ahead, keep, True)
    assert (s.baseline, s.hits, s.totals, s.folded) == (*want, ahead)


@pytest.mark.parametrize("seed", range(30))
def test_a_quiet_log_whose_series_all_go_between_replies_counts_as_plain(seed: int) -> None:
    """Replies far apart, by about the longest window (a quiet server): a batch's minutes before
    its last drop of every series are skipped, so steps of one minute more or less than the
    window, either side of the in-minute evaluation point, must drop (or keep) as observe() does."""
    rnd = random.Random(seed)
    rules = [
        Rule(name="out", direction="outbound", window=300),
        Rule(name="in", direction="inbound", window=60),
        Rule(name="in_long", direction="inbound", window=rnd.choice((120, 300, 360))),
    ]
    settle = rnd.choice((0.0, 10.0, 59.0))
    longest = max(r.window for r in rules) // 60
    t = START
    events = []
    for _ in range(rnd.randrange(20, 120)):
        minutes = rnd.choice((0, 1, longest - 1, longest, longest + 1, longest + 2, 3 * longest))
        second = rnd.choice((0, max(0, int(settle) - 1), int(settle), min(59, int(settle) + 1), 59))
        t = max(t, (t // 60 + minutes) * 60 + second)
        for _ in range(rnd.choice((1, 1, 1, 2, 5))):
            reply = rnd.choice(REPLIES[2:3] + REPLIES[5:6] + REPLIES[4:5])  # none of them a 551
            events.append(Event("postfix", "a", t, reply[0], reply[1], reply[2]))  # type: ignore[arg-type]
            t += rnd.choice((0, 0, 1, 20))
    for chunks in ([len(events)], [rnd.randrange(2, 30)], [1, 7, 3]):
        assert run(rules, settle, events, chunks, False) == run(rules, settle, events, chunks, True)


def test_a_quiet_batch_after_a_later_reply_keeps_that_reply_as_plain() -> None:
    """A batch may start a minute before the last reply counted (that reply came before the
    evaluation point of its minute); that reply, not only the batch's own, decides whether a
    long step drops the series."""
    rule = Rule(name="in", direction="inbound", window=300)
    m = 3 * 60  # START is a whole minute
    stamps = [m - 180 + 30, m + 5, m - 60 + 40, m + 300 + 15]  # the 3rd goes back a minute
    events = [Event("postfix", "a", START + s, "inbound", "250", "") for s in stamps]
    for chunks in ([2], [2, 1], [1]):
        assert run([rule], 10.0, events, chunks, False) == run([rule], 10.0, events, chunks, True)


def test_a_series_exactly_at_its_thresholds_turns_hot_as_plain() -> None:
    """count = min_count and ratio = min_ratio (2 hits in 20 replies) are hot: the busy-minute
    shortcut must test them as _step does."""
    rule = Rule(name="r", direction="outbound", code="551", window=60, min_count=2, min_ratio=0.1,
                factor=0.0, for_s=60)  # fmt: skip
    events = []
    for minute in range(4):
        for i in range(20):
            code = "551" if i < 2 and minute != 1 else "250"
            events.append(Event("postfix", "a", START + 60 * minute + i, "outbound", code, ""))
    fast = run([rule], 10.0, events, [len(events)], False)
    assert fast == run([rule], 10.0, events, [len(events)], True)
    states = [tr.state for batch in fast[0] for tr in batch]
    assert states == ["pending", "inactive", "pending", "firing", "resolved"]
