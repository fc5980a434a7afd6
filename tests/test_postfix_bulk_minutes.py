"""Postfix batches with each minute's replies grouped (PostfixBulk.batch's per_minute) are
exactly base.per_minute() of the replies it lists otherwise: the C grouping (minutes() in
logscan/parsers/_postfix_scan.c) on real, generated and random rows, and safe on any input
(docs/decisions/0016-alerts-from-counts.md, session 8 addendum).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from benchmarks.gen_logs import generate
from benchmarks.restamp import syslog_stamped
from logscan.parsers import make_parser, postfix_bulk
from logscan.parsers.base import ParserOptions, per_minute
from logscan.parsers.postfix import PostfixParser
from logscan.parsers.postfix_bulk import PostfixBulk
from tests import sanitized

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = 1_796_000_000.0  # 2026-11-29
LOGS = (ROOT / "tests" / "samples" / "postfix.log", ROOT / "sample_logs" / "postfix" / "mail.log")
SOURCE = ROOT / "logscan" / "parsers" / "_postfix_scan.c"
MINUTES = postfix_bulk._minutes


def read_lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        return f.read().splitlines()


def reader(tz: tzinfo = UTC) -> PostfixBulk:
    p = make_parser("postfix", ParserOptions(log="x.log", tz=tz, reference_time=REFERENCE))
    assert isinstance(p, PostfixParser)
    return PostfixBulk(p)


def runs(lines: list[str]) -> list[list[tuple[str, ...]]]:
    """The runs of consecutive rows the C scanner makes of these lines (what batch() is given)."""
    got = reader().scan("".join(line + "\n" for line in lines), True)
    assert got is not None
    out: list[list[tuple[str, ...]]] = [[]]
    for item in got[1]:
        if isinstance(item, tuple):
            out[-1].append(item)
        elif out[-1]:
            out.append([])
    return [run for run in out if run]


def pieces(run: list[tuple[str, ...]], size: int) -> Iterator[list[tuple[str, ...]]]:
    for i in range(0, len(run), size):
        yield run[i : i + size]


class Tally:
    """What the compared batches held, so that each test shows it reached the cases it names."""

    def __init__(self) -> None:
        self.grouped = self.listed = self.several = self.merged = self.single = 0


def compare(bulk: PostfixBulk, rows: list[tuple[str, ...]], tally: Tally) -> None:
    """batch() grouped equals per_minute() of batch() listed, and nothing else differs."""
    listed = bulk.batch(rows, each_reply=True, per_minute=False)
    grouped = bulk.batch(rows, each_reply=True, per_minute=True)
    if listed is None:
        assert grouped is None
        return
    assert grouped is not None
    assert not listed.weights
    want = per_minute(listed.times, listed.codes) if listed.times else None
    if want is None:  # no reply, or times that go back: listed as ever
        assert grouped == listed
        tally.listed += bool(listed.times)
        return
    assert (grouped.times, grouped.codes, grouped.weights) == want
    assert msgspec.structs.replace(grouped, times=listed.times, codes=listed.codes, weights=[]) == listed
    tally.grouped += 1
    tally.several += want[2].count(0) > 1
    tally.single += len(listed.times) == 1
    # Minutes where replies of different row keys are one reply: grouping by key would split them.
    keys = [row[3] for row in rows if row[5]]
    tally.merged += len(set(keys)) > len(set(listed.codes))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = tmp_path_factory.mktemp("gen") / "postfix.log"
    generate("postfix", 20_000, path, seed=8, hours=2.0, ndomains=200)
    return read_lines(path)


def test_the_c_grouping_is_built() -> None:
    assert MINUTES is not None


@pytest.mark.parametrize("stamps", ["rfc3339", "syslog"])
def test_generated_batches_group_as_per_minute(generated: list[str], stamps: str) -> None:
    lines = list(map(syslog_stamped, generated)) if stamps == "syslog" else generated
    bulk, tally = reader(), Tally()
    for run in runs(lines):
        for size in (1, 2, 7, 70, 333, len(run)):  # minutes cut apart, one reply, many minutes
            for rows in pieces(run, size):
                compare(bulk, rows, tally)
    assert tally.grouped > 1000
    assert tally.single > 100
    assert tally.several > 100  # batches of several minutes


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.name)
def test_sample_log_batches_group_as_per_minute(log: Path) -> None:
    bulk, tally = reader(), Tally()
    for run in runs(read_lines(log)):
        for size in (1, 3, 10, len(run)):
            for rows in pieces(run, size):
                compare(bulk, rows, tally)
    assert tally.grouped > 10


def test_row_keys_of_one_reply_group_as_one() -> None:
    # Same reply (outbound, 550, 5.1.1), other row keys: another dsn, status word or form.
    line = (
        "2026-11-29T10:{m:02d}:{s:02d}+00:00 mx1 postfix/smtp[7]: 4ABCDEF12{i}: to=<u@d{i}.example>, "
        "relay=mx.d.example[192.0.2.2]:25, delay=0.5, delays=0.1/0/0.2/0.2, dsn={dsn}, "
        "status={word} ({said}550 5.1.1 <u@d.example>: Recipient address rejected)"
    )
    said = "host mx.d.example[192.0.2.2] said: "
    forms = [("5.1.1", "bounced", said), ("5.0.0", "bounced", ""), ("5.1.1", "deferred", "")]
    forms.append(("4.4.1", "bounced", said))
    rnd, bulk, tally = random.Random(3), reader(), Tally()
    lines = []
    for m in range(20):
        for s in sorted(rnd.sample(range(60), 9)):
            dsn, word, said = rnd.choice(forms)
            lines.append(line.format(m=m, s=s, i=rnd.randrange(5), dsn=dsn, word=word, said=said))
    (rows,) = runs(lines)
    for size in (1, 5, 40, len(rows)):
        for piece in pieces(rows, size):
            compare(bulk, piece, tally)
    assert tally.merged > 5
    batch = bulk.batch(rows, each_reply=True, per_minute=True)
    assert batch is not None
    assert set(batch.codes) == {("outbound", "550", "5.1.1")}
    assert len(batch.weights) == 2 * 20  # one entry and the closing one per minute


def test_seconds_that_go_back_inside_a_minute_are_listed() -> None:
    line = (
        "2026-11-29T10:{m:02d}:{s:02d}.{f}+00:00 mx1 postfix/smtpd[7]: NOQUEUE: reject: RCPT from "
        "a.example[192.0.2.1]: 551 5.1.1 <u@example.com>: Recipient address rejected: User not local; "
        "from=<s@d.example> to=<u@example.com> proto=ESMTP helo=<a.example>"
    )
    bulk = reader()
    # Whole seconds decide: 30.9 then 30.1 is the same second, grouped; 31 then 30 is not.
    cases = [
        ([(1, 30, 9), (1, 30, 1)], True),
        ([(1, 31, 0), (1, 30, 0)], False),
        ([(1, 31, 0), (2, 30, 0)], True),
        ([(1, 31, 0), (2, 30, 0), (2, 29, 0)], False),
    ]
    for stamps, grouped in cases:
        (rows,) = runs([line.format(m=m, s=s, f=f) for m, s, f in stamps])
        batch = bulk.batch(rows, each_reply=True, per_minute=True)
        assert batch is not None
        assert bool(batch.weights) == grouped, stamps
        compare(bulk, rows, Tally())


def test_two_minute_texts_of_one_minute_are_listed() -> None:
    # Syslog stamps in the hour New York skips (2026-03-08 02:xx) are dated as 03:xx: two texts,
    # one minute. per_minute() groups by the minute of the time, so such a batch is listed.
    line = (
        "Mar  8 {hm}:{s:02d} mx1 postfix/smtpd[7]: NOQUEUE: reject: RCPT from a.example[192.0.2.1]: "
        "551 5.1.1 <u@example.com>: Recipient address rejected: User not local; from=<s@d.example> "
        "to=<u@example.com> proto=ESMTP helo=<a.example>"
    )
    bulk = reader(ZoneInfo("America/New_York"))
    (rows,) = runs([line.format(hm=hm, s=s) for hm, s in (("02:30", 10), ("03:30", 20), ("03:31", 5))])
    listed = bulk.batch(rows, each_reply=True, per_minute=False)
    assert listed is not None
    assert listed.times[0] // 60 == listed.times[1] // 60
    grouped = bulk.batch(rows, each_reply=True, per_minute=True)
    assert grouped == listed
    # The same texts an hour later are two minutes: grouped.
    (rows,) = runs([line.format(hm=hm, s=s) for hm, s in (("03:30", 10), ("04:30", 20), ("04:31", 5))])
    grouped = bulk.batch(rows, each_reply=True, per_minute=True)
    assert grouped is not None
    assert grouped.weights == [1, 0, 1, 0, 1, 0]


def random_rows(rnd: random.Random) -> tuple[list[tuple[str, ...]], dict[str, int], list[float], list[int]]:
    """Rows of random minutes (in order), seconds (sometimes going back) and keys (some without
    a reply); the ids of the keys with one; the time and reply number of each of those."""
    keys = [f"k{i}" for i in range(rnd.randrange(1, 9))]
    coded = [key for key in keys if rnd.random() < 0.8]
    replies = rnd.randrange(1, len(coded) + 1) if coded else 0  # several keys share a reply
    ids = {key: rnd.randrange(replies) for key in coded}
    minute, second = rnd.randrange(100), 0
    rows: list[tuple[str, ...]] = []
    times: list[float] = []
    numbers: list[int] = []
    for _ in range(rnd.randrange(0, rnd.choice((2, 10, 300)))):
        step = rnd.choice((0, 0, 0, 1, 1, 7))
        minute += step
        if step or rnd.random() < 0.02:  # a new minute, or seconds that may go back
            second = rnd.randrange(60)
        else:
            second = min(59, second + rnd.choice((0, 0, 1, 5)))
        key = rnd.choice(keys)
        text = f"2026-11-29T{minute // 60:02d}:{minute % 60:02d}"
        rows.append((text, f"{second:02d}.{rnd.randrange(10)}", "Z", key))
        if key in ids:
            times.append(minute * 60.0 + second)
            numbers.append(ids[key])
    return rows, ids, times, numbers


@pytest.mark.parametrize("seed", range(300))
def test_random_rows_group_as_per_minute(seed: int) -> None:
    assert MINUTES is not None
    rows, ids, times, numbers = random_rows(random.Random(seed))
    got = MINUTES(rows, ids)
    want = per_minute(times, [("inbound", str(n), "") for n in numbers])
    if want is None:
        assert got is None
        return
    assert got is not None
    index, got_numbers, weights = got
    at = [(int(rows[i][0][11:13]) * 60 + int(rows[i][0][14:16])) * 60.0 + int(rows[i][1][:2]) for i in index]
    assert (at, [("inbound", str(n), "") for n in got_numbers], weights) == want
    assert all(rows[i][3] in ids for i in index)


def test_the_c_grouping_refuses_bad_input() -> None:
    assert MINUTES is not None
    row = ("2026-11-29T10:00", "05", "Z", "k")
    assert MINUTES([], {}) == ([], [], [])
    assert MINUTES([row], {}) == ([], [], [])
    assert MINUTES([row], {"k": 0}) == ([0, 0], [0, 0], [1, 0])
    bad: list[tuple[Any, Any, type[Exception]]] = [
        ((row,), {"k": 0}, TypeError),  # not a list
        ([row], [("k", 0)], TypeError),  # not a dict
        ([list(row)], {"k": 0}, TypeError),
        ([row[:3]], {"k": 0}, TypeError),
        ([(*row[:3], 5)], {"k": 0}, TypeError),
        ([row], {"k": "0"}, TypeError),
        ([row], {5: 0}, TypeError),
        ([row], {"k": 1}, ValueError),
        ([row], {"k": -1}, ValueError),
        ([row], {"k": 2**80}, OverflowError),
        ([("2026-11-29T10:00", "5", "Z", "k")], {"k": 0}, ValueError),
        ([(7, "05", "Z", "k")], {"k": 0}, ValueError),
    ]
    for rows, ids, error in bad:
        with pytest.raises(error):
            MINUTES(rows, ids)


def test_the_c_grouping_stays_in_bounds_under_addresssanitizer(tmp_path: Path, generated: list[str]) -> None:
    so = sanitized.build(SOURCE, tmp_path / "_postfix_scan.so")
    rows = [row for run in runs(generated[:3000]) for row in run]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    probe = f"""
{sanitized.loader("asan._postfix_scan", so)}import json, random
rows = [tuple(row) for row in json.load(open({str(tmp_path / "rows.json")!r}))]
ids = {{key: i for i, key in enumerate(sorted({{row[3] for row in rows}}))}}
rnd = random.Random(16)
ODD = [None, 5, 2**70, -1, "", "5", "\\u0100\\u0101", "\\U0001F600x", "x" * 10000, (), [], b"05", 1.5]
def hostile(row):
    row = list(row)
    for _ in range(rnd.randrange(1, 3)):
        if row and rnd.random() < 0.2:
            del row[rnd.randrange(len(row))]
        elif row:
            row[rnd.randrange(len(row))] = rnd.choice(ODD + [r[rnd.randrange(4)] for r in rows[:3]])
    return tuple(row) if rnd.random() < 0.9 else row
assert m.minutes(rows, ids) is not None
for _ in range(3000):
    i = rnd.randrange(len(rows))
    part = rows[i : i + rnd.randrange(0, 400)]
    picked = dict(rnd.sample(sorted(ids.items()), rnd.randrange(len(ids) + 1)))
    picked = {{key: rnd.randrange(len(picked)) for key in picked}}
    if rnd.random() < 0.3 and part:
        part[rnd.randrange(len(part))] = hostile(rnd.choice(part))
    if rnd.random() < 0.05:
        picked[rnd.choice([None, 5, 2**70, "", "\\u0100", b"k", 1.5, "k"])] = rnd.choice(ODD + [0])
    try:
        got = m.minutes(part, picked)
    except (TypeError, ValueError, OverflowError):
        continue
    assert got is None or len(got[0]) == len(got[1]) == len(got[2]) <= 2 * len(part)
for args in [(), (rows,), (rows, ids, 1), (None, ids), (rows, None), ("x", {{}})]:
    try:
        m.minutes(*args)
    except TypeError:
        pass
print("ok")
"""
    sanitized.run_probe(probe)
