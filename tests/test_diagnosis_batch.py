"""Diagnosis.add_refusals (a batch's refusals at once) against add_refusal one by one: the same
end state, sketch contents, insertion order and eviction bookkeeping included."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logscan.core import diagnosis
from logscan.core.diagnosis import Diagnosis, Refusal, SpaceSaving
from tests import sanitized

ROOT = Path(__file__).resolve().parents[1]

# Few values, so that keys repeat, sketches fill and evict (capacity 3), and groups fold.
_refusal = st.tuples(
    st.integers(0, 30),
    st.sampled_from(["inbound", "outbound"]),
    st.sampled_from(["450", "550", "551", "554"]),
    st.sampled_from(["other", "relay_denied", "unknown_recipient"]),
    st.sampled_from(["", "a.example", "b.example", "c.example", "d.example", "e.example"]),
    st.sampled_from(["", "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]),
    st.sampled_from(["", "x.example", "y.example", "z.example", "w.example"]),
)
# Many offenders, few groups: nearly every key is new and evicts another (ties at the floor).
_many = st.integers(0, 60).map(lambda n: f"d{n}.example")
_crowded = st.tuples(
    st.integers(0, 200),
    st.sampled_from(["inbound", "outbound"]),
    st.just("550"),
    st.sampled_from(["other", "unknown_recipient"]),
    _many,
    st.integers(0, 80).map(lambda n: f"198.51.100.{n}"),
    _many,
)


def _state(d: Diagnosis) -> Any:
    """Everything a Diagnosis holds, in its dicts' orders (eviction depends on them)."""

    def sketch(s: SpaceSaving) -> Any:
        return list(s.counts.items()), list(s._lightest), s._floor

    return (
        d._newest,
        [(m, list(c.items())) for m, c in d._minutes.items()],
        [(s, [(k, [sketch(x) for x in g]) for k, g in groups.items()]) for s, groups in d._slots.items()],
    )


def _both(
    window_s: int, batches: list[list[Refusal]], capacity: int = 3, slot_s: int = 120
) -> tuple[Any, Any]:
    one, many = Diagnosis(window_s, slot_s, capacity), Diagnosis(window_s, slot_s, capacity)
    for batch in batches:
        for r in batch:
            one.add_refusal(r[0], "exim", "mainlog", *r[1:])
        many.add_refusals("exim", "mainlog", batch)
    return _state(one), _state(many)


# Each way add_refusals() can go: the C feed (when built) or Python's add_all, and slots
# taken at once however few their refusals (DENSE 0) or as in production.
Way = tuple[diagnosis.Feed | None, int]
_WAYS = [
    pytest.param((feed, dense), id=f"{'c' if feed else 'python'}-dense{dense}")
    for feed in ([diagnosis._feed] if diagnosis._feed else []) + [None]
    for dense in (0, diagnosis.DENSE)
]


@contextmanager
def _going(way: Way) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as m:
        m.setattr(diagnosis, "_feed", way[0])
        m.setattr(diagnosis, "DENSE", way[1])
        yield


@pytest.mark.parametrize("way", _WAYS)
@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([(0, 120), (600, 120), (3600, 600)]),  # scan's window, a short one, the daemon's
    st.lists(st.lists(_refusal, max_size=60), max_size=5),
    st.booleans(),
)
def test_add_refusals_is_add_refusal_one_by_one(
    way: Way, window: tuple[int, int], batches: list[list[Refusal]], ordered: bool
) -> None:
    if ordered:  # as an EventBatch's: minutes never decrease
        batches = [sorted(b, key=lambda r: r[0]) for b in batches]
    with _going(way):
        one, many = _both(window[0], batches, slot_s=window[1])
    assert one == many


@pytest.mark.parametrize("way", _WAYS)
@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([(0, 120), (600, 120), (3600, 600)]),
    st.lists(st.lists(_crowded, max_size=150).map(sorted), max_size=4),
    st.integers(1, 4),
)
def test_add_refusals_with_evicting_offenders(
    way: Way, window: tuple[int, int], batches: list[list[Refusal]], capacity: int
) -> None:
    # Minutes up to 200 in batches sorted by minute: windows of 10 minutes expire within one batch.
    with _going(way):
        one, many = _both(window[0], batches, capacity, window[1])
    assert one == many


@pytest.mark.parametrize("way", _WAYS)
@settings(max_examples=200, deadline=None)
@given(st.sampled_from([0, 600]), st.lists(st.lists(_refusal, max_size=60), max_size=4))
def test_add_refusals_with_folded_groups(way: Way, window_s: int, batches: list[list[Refusal]]) -> None:
    batches = [sorted(b, key=lambda r: r[0]) for b in batches]
    with _going(way), pytest.MonkeyPatch.context() as m:
        m.setattr(diagnosis, "MAX_SKETCHES", 2)  # new codes fold into their class's group at once
        one, many = _both(window_s, batches)
    assert one == many


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from("abcdefg"), max_size=40), st.lists(st.sampled_from("abcdefgh"), max_size=40))
def test_space_saving_add_all_is_add_one_by_one(first: list[str], then: list[str]) -> None:
    one, many = SpaceSaving(4), SpaceSaving(4)
    want: dict[str, int] = {}
    for keys in (first, then):
        for k in keys:
            one.add(k)
            _reference_add(want, 4, k)
        many.add_all(keys)
        assert list(many.counts.items()) == list(want.items())
    assert (list(one.counts.items()), one._lightest, one._floor) == (
        list(many.counts.items()),
        many._lightest,
        many._floor,
    )


def _reference_add(counts: dict[str, int], capacity: int, key: str) -> None:
    """Space-saving as its definition: a full sketch evicts its first lightest entry."""
    if key in counts:
        counts[key] += 1
    elif len(counts) < capacity:
        counts[key] = 1
    else:
        floor = min(counts.values())
        del counts[next(k for k, v in counts.items() if v == floor)]
        counts[key] = floor + 1


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from("abcdefghij"), max_size=120), st.integers(1, 5))
def test_space_saving_is_its_definition(keys: list[str], capacity: int) -> None:
    # add() and replace() keep candidates between evictions; the result is the plain rule's.
    sketch, want = SpaceSaving(capacity), dict[str, int]()
    for key in keys:
        sketch.add(key)
        _reference_add(want, capacity, key)
        assert list(sketch.counts.items()) == list(want.items())


@settings(max_examples=300, deadline=None)
@given(st.lists(_refusal, max_size=120) | st.lists(_crowded, max_size=120))  # the second: evictions
def test_add_refusal_sketches_are_the_definition(refusals: list[Refusal]) -> None:
    d = Diagnosis(0, 120, 3)
    want: dict[tuple[str, ...], list[dict[str, int]]] = {}
    for r in refusals:
        d.add_refusal(r[0], "exim", "mainlog", *r[1:])
        _m, direction, code, reason, sender, ip, rcpt = r
        sketches = want.setdefault(("exim", "mainlog", direction, code, reason), [{}, {}])
        for i, key in enumerate((sender, ip) if direction == "inbound" else (rcpt,)):
            if key:
                _reference_add(sketches[i], 3, key)
    got: dict[tuple[str, ...], list[dict[str, int]]] = {
        k: [s.counts for s in g] for k, g in d._slots.get(0, {}).items()
    }
    assert got == {k: v[: len(got[k])] for k, v in want.items()}


def test_the_sketch_extension_stays_in_bounds_under_addresssanitizer(tmp_path: Path) -> None:
    # Built with ASan and UBSan, feed() and tally() must run random batches (evictions, table
    # growth past 64 pairs, label() called back) without a finding, equal to the Python paths.
    so = sanitized.build(ROOT / "logscan" / "core" / "_sketch.c", tmp_path / "_sketch.so")
    probe = f"""
{sanitized.loader("asan._sketch", so)}import random
from collections import Counter
from logscan.core import aggregate, diagnosis
from logscan.core.aggregate import TopDomains
from logscan.core.diagnosis import Diagnosis
rnd = random.Random(7)
def refusal():
    return (rnd.randint(0, 90), rnd.choice(["inbound", "outbound"]), rnd.choice(["550", "451"]), "other",
            rnd.choice(["", f"d{{rnd.randint(0, 50)}}.example"]), f"198.51.100.{{rnd.randint(0, 60)}}",
            f"r{{rnd.randint(0, 50)}}.example")
for trial in range(300):
    batches = [sorted((refusal() for _ in range(rnd.randint(0, 200))), key=lambda r: r[0]) for _ in range(3)]
    states = []
    window_s, capacity = rnd.choice([0, 3600]), rnd.randint(1, 5)
    for feed in (m.feed, None):
        diagnosis._feed, diagnosis.DENSE = feed, 0
        d = Diagnosis(window_s, 600, capacity)
        for b in batches:
            d.add_refusals("exim", "mainlog", b)
        states.append(d.document())
    assert states[0] == states[1]
    domains = [rnd.choice(["", *(f"t{{i}}.test" for i in range(300))]) for _ in range(rnd.randint(0, 900))]
    classes = [rnd.choice([("inbound", "5xx"), ("outbound", "2xx"), ("inbound", "4xx")]) for _ in domains]
    one, two = TopDomains(limit=5, capacity=20), TopDomains(limit=5, capacity=20)
    assert m.tally(one, domains, classes, aggregate.OTHER) == Counter(zip(two.labels(domains), classes))
    assert list(one.sketch.items()) == list(two.sketch.items()) and one.labelled == two.labelled
print("ok")
"""
    sanitized.run_probe(probe)
