"""Exim parser: the real-line sample table, hostile input, and what must hold for any text."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logscan.events import NOTHING, Event, ParseResult, Unparsed
from logscan.parsers.base import MAX_LINE, ParserOptions
from logscan.parsers.exim import REASONS, EximParser
from tests.samples import Sample, check, load

REF = 1740787200.0  # 2025-03-01T00:00:00Z: dates the year-less syslog prefixes of the table
SAMPLES = load("exim.log")

CODE = re.compile(r"(?:[2-5][0-9][0-9])?\Z")
ENHANCED = re.compile(r"(?:[245]\.[0-9]{1,3}\.[0-9]{1,3})?\Z")
STAGES = {
    "",
    "connect",
    "helo",
    "mail",
    "rcpt",
    "data",
    "end-of-data",
    "bdat",
    "auth",
    "starttls",
    "quit",
    "rset",
    "etrn",
    "expn",
    "vrfy",
    "pipelining",
    "limit",
}
STATUSES = {"", "sent", "bounced", "deferred", "expired", "rejected"}
PRINTABLE = re.compile(r"[\x21-\x7e]*\Z")


def parser(tz: timezone = UTC, ref: float = REF) -> EximParser:
    return EximParser(ParserOptions(log="mainlog", tz=tz, reference_time=ref))


def _run_table() -> list[ParseResult]:
    # One parser over the file in order: syslog [n/m] parts rely on the lines before them.
    p = parser()
    return [p.parse(s.line) for s in SAMPLES]


RESULTS = _run_table()


def assert_sane(result: ParseResult) -> None:
    """What every result must be, whatever the input: events with grammatical fields, or a known reason."""
    if isinstance(result, Unparsed):
        assert result.reason in REASONS
        assert len(result.detail) < 80
        return
    assert isinstance(result, tuple)
    if not result:
        assert result is NOTHING
    for ev in result:
        assert isinstance(ev, Event)
        assert ev.mta == "exim"
        assert ev.log == "mainlog"
        assert CODE.match(ev.code), ev.code
        assert ENHANCED.match(ev.enhanced), ev.enhanced
        assert not ev.enhanced or ev.code, "an enhanced code never comes alone"
        assert ev.stage in STAGES
        assert ev.status in STATUSES
        assert ev.direction in ("inbound", "outbound")
        # Values that may end up in labels or JSON are plain ASCII, whatever bytes the line held.
        for value in (ev.queue_id, ev.remote_host, ev.remote_ip, ev.recipient_domain, ev.sender_domain):
            assert PRINTABLE.match(value), value
        assert "@" not in ev.recipient_domain + ev.sender_domain
        assert ev.delay_s is None or ev.delay_s >= 0


# ---- the sample table ----------------------------------------------------------------------


@pytest.mark.parametrize(("index", "sample"), list(enumerate(SAMPLES)), ids=[s.id for s in SAMPLES])
def test_sample(index: int, sample: Sample) -> None:
    check(sample, RESULTS[index])
    assert_sane(RESULTS[index])


def test_table_covers_what_the_issue_asks() -> None:
    events = [e for r in RESULTS if isinstance(r, tuple) for e in r]
    reasons = {r.reason for r in RESULTS if isinstance(r, Unparsed)}
    assert reasons == set(REASONS), "every Unparsed reason is exercised by a sample"
    assert {e.status for e in events} == STATUSES - {""}
    made_551 = [e for e in events if e.code == "551"]
    assert {e.direction for e in made_551} == {"inbound", "outbound"}
    assert {e.stage for e in made_551 if e.direction == "outbound"} >= {"rcpt", "mail"}
    assert {e.status for e in made_551} >= {"bounced", "rejected"}
    assert any(len(e.queue_id) == 23 for e in events)
    assert any(len(e.queue_id) == 16 for e in events)
    assert {e.stage for e in events if e.status == "rejected"} >= {
        "connect",
        "helo",
        "mail",
        "rcpt",
        "data",
        "end-of-data",
        "auth",
    }


def test_nothing_lines_share_the_empty_tuple() -> None:
    empty = [r for r in RESULTS if isinstance(r, tuple) and not r]
    assert len(empty) > 40
    assert all(r is NOTHING for r in empty)


# ---- timestamps and prefixes ---------------------------------------------------------------


def test_local_time_uses_the_configured_zone() -> None:
    line = "2020-06-19 06:26:02 1jmH1s-000AVD-5t => dave@foo.corp R=dnslookup T=remote_smtp"
    utc = parser().parse(line)
    east = parser(tz=timezone(timedelta(hours=2))).parse(line)
    assert isinstance(utc, tuple)
    assert isinstance(east, tuple)
    assert utc[0].time - east[0].time == 7200


def test_explicit_offset_beats_the_configured_zone() -> None:
    line = "2020-06-20 01:32:57 +0200 [789] 1jmKso-0009d4-Uf ** molly@zee.corp: Unrouteable address"
    for tz in (UTC, timezone(timedelta(hours=-7))):
        result = parser(tz=tz).parse(line)
        assert isinstance(result, tuple)
        assert result[0].time == 1592609577.0  # 2020-06-19T23:32:57Z


def test_milliseconds_and_pid_in_every_combination() -> None:
    body = "1jmH1s-000AVD-5t => dave@foo.corp R=dnslookup T=remote_smtp"
    for stamp, want in [
        ("2020-06-19 06:26:02", 1592547962.0),
        ("2020-06-19 06:26:02.250", 1592547962.25),
        ("2020-06-19 06:26:02 -0130", 1592547962.0 + 5400),
        ("2020-06-19 06:26:02.250 +0000", 1592547962.25),
    ]:
        for pid in ("", " [4242]"):
            result = parser().parse(f"{stamp}{pid} {body}")
            assert isinstance(result, tuple), (stamp, pid)
            assert result[0].time == pytest.approx(want), (stamp, pid)
            assert result[0].queue_id == "1jmH1s-000AVD-5t"


def test_syslog_year_follows_the_reference_time() -> None:
    line = "Dec 31 23:59:59 mx exim[7]: H=[192.0.2.1] F=<a@b.example> rejected RCPT <c@d.example>: no"
    p = parser(ref=REF)  # March 2025: December is last year's
    first = p.parse(line)
    p.set_reference_time(1767225600.0)  # 2026-01-01: still the December just past
    second = p.parse(line)
    assert isinstance(first, tuple)
    assert isinstance(second, tuple)
    assert first[0].time == 1735689599.0  # 2024-12-31T23:59:59Z
    assert second[0].time == 1767225599.0  # 2025-12-31T23:59:59Z


def test_unpadded_and_zero_padded_syslog_days() -> None:
    tail = ' 01:02:03 mx exim[7]: H=[192.0.2.1] rejected connection in "connect" ACL'
    times = []
    for day in ("Mar 7", "Mar  7", "Mar 07"):
        result = parser().parse(day + tail)
        assert isinstance(result, tuple), day
        times.append(result[0].time)
    assert times == [1741309323.0] * 3  # 2025-03-07T01:02:03Z


def test_trailing_cr_changes_nothing() -> None:
    for sample in SAMPLES[:60]:
        assert parser().parse(sample.line + "\r") == parser().parse(sample.line)


# ---- syslog split parts --------------------------------------------------------------------

HEAD = "Feb 14 18:13:00 mx exim[{pid}]: [{n}{sep}{m}] "
ENTRY = (
    "2025-02-14 18:13:00 1tixMq-00000000C5m-1wRd ** someone@far.example R=dnslookup T=remote_smtp "
    "H=mx.far.example [192.0.2.44]: SMTP error from remote mail server after "
    "RCPT TO:<someone@far.example>: 551 5.1.1 not here"
)


def split(pid: int, text: str, parts: int, sep: str = "/") -> list[str]:
    size = -(-len(text) // parts)
    return [
        HEAD.format(pid=pid, n=i + 1, sep=sep, m=parts) + text[i * size : (i + 1) * size]
        for i in range(parts)
    ]


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_split_parts_are_joined(parts: int) -> None:
    p = parser()
    lines = split(1, ENTRY, parts)
    assert [p.parse(x) for x in lines[:-1]] == [NOTHING] * (parts - 1)
    result = p.parse(lines[-1])
    assert isinstance(result, tuple)
    ev = result[0]
    assert (ev.code, ev.enhanced, ev.status, ev.stage) == ("551", "5.1.1", "bounced", "rcpt")


def test_interleaved_pids_are_joined_separately() -> None:
    p = parser()
    a, b = split(10, ENTRY, 2), split(11, ENTRY.replace("551 5.1.1", "452 4.2.2"), 2)
    assert p.parse(a[0]) is NOTHING
    assert p.parse(b[0]) is NOTHING
    rb, ra = p.parse(b[1]), p.parse(a[1])
    assert isinstance(ra, tuple)
    assert isinstance(rb, tuple)
    assert (ra[0].code, rb[0].code) == ("551", "452")


def test_missing_or_foreign_parts_do_not_break_later_entries() -> None:
    p = parser()
    three = split(5, ENTRY, 3)
    assert p.parse(three[1]) == Unparsed("orphan-part", "syslog part without its predecessors")
    assert p.parse(three[0]) is NOTHING
    assert isinstance(p.parse(three[2]), Unparsed), "part 3 after part 1: part 2 was lost"
    assert p.parse(split(5, ENTRY, 4)[3]).__class__ is Unparsed
    whole = split(5, ENTRY, 2)
    assert p.parse(whole[0]) is NOTHING
    result = p.parse(whole[1])
    assert isinstance(result, tuple)
    assert result[0].code == "551"


def test_newline_cut_parts_keep_the_first_lines_meaning() -> None:
    p = parser()
    lines = split(9, ENTRY, 2, sep="\\")
    lines[-1] = lines[-1].replace("[2\\2]", "[2/2]")  # Exim marks the last part "/"
    assert p.parse(lines[0]) is NOTHING
    result = p.parse(lines[1])
    assert isinstance(result, tuple)
    assert result[0].code == "551"


def test_pending_parts_are_bounded() -> None:
    p = parser()
    for pid in range(10_000):
        assert p.parse(split(pid, ENTRY, 2)[0]) is NOTHING
    assert len(p._pending) <= EximParser.MAX_PENDING
    last = split(9_999, ENTRY, 2)[1]
    result = p.parse(last)
    assert isinstance(result, tuple)
    assert result[0].code == "551"
    huge = split(1, "2025-02-14 18:13:00 x" + "y" * 200_000, 100)
    for line in huge:
        assert_sane(p.parse(line))


# ---- robustness ----------------------------------------------------------------------------

PREFIXES = [
    "2020-06-19 04:54:02 1jmFYj-00039V-QX ** a@b.example R=x T=y H=h [192.0.2.1]: ",
    "2020-06-19 04:54:02 1jmFYj-00039V-QX == a@b.example R=x T=y defer (-44) ",
    "2020-06-19 04:54:02 1jmFYj-00039V-QX => a@b.example R=x T=y ",
    "2020-06-19 04:54:02 H=",
    "2020-06-19 04:54:02 H=(x) [192.0.2.1] F=<a@b.example> ",
    "2020-06-19 04:54:02 rejected ",
    "2020-06-19 04:54:02 login authenticator failed for ",
    "Apr 28 15:53:37 ",
    "Apr 28 15:53:37 server exim[12105]: ",
    "2024-03-24T02:04:32.263+00:00 info exim[8001]: ",
    "2020-06-19 04:54:02 ",
    "",
]
FRAGMENTS = [
    "SMTP error from remote mail server after ",
    "SMTP error from remote mail server after RCPT TO:<",
    "H=",
    "H=(",
    "[",
    "<",
    '"',
    ' DN="',
    ' C="',
    " ",
    "9",
    "\\n",
    ": ",
    ": host h [1.2.3.4",
    "]:",
    "rejected ",
    "temporarily ",
    " DT=",
    "1",
    "exim ",
    "host ",
    "[1/2] ",
    "[",
    "(-5",
    "defer (",
    " authenticator failed for ",
    "2020-06-19 04:54:02 ",
]


def best_of_3(fn: Callable[[], object]) -> float:
    best = 1e9
    for _ in range(3):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _parse_checked(text: str) -> Callable[[], None]:
    p = parser()
    return lambda: assert_sane(p.parse(text))


@pytest.mark.parametrize("fragment", FRAGMENTS)
def test_hostile_100kb_lines_parse_fast(fragment: str) -> None:
    worst = 0.0
    for prefix in PREFIXES:
        line = prefix + fragment * (100_000 // len(fragment) + 1)
        tail = line + ": 551 5.1.1 x"
        for text in (line, tail):
            worst = max(worst, best_of_3(_parse_checked(text)))
    assert worst < 0.010, f"{fragment!r}: {worst * 1000:.1f} ms"


def test_one_megabyte_line_is_cut_not_choked_on() -> None:
    reply = "SMTP error from remote mail server after RCPT TO:<a@b.example>: 551 "
    line = PREFIXES[0] + reply + "x" * 1_000_000
    result = parser().parse(line)
    assert isinstance(result, tuple)
    assert result[0].code == "551"
    assert best_of_3(lambda: parser().parse(line)) < 0.010
    assert len(line) > MAX_LINE


def test_invalid_utf8_nul_and_truncation_never_raise() -> None:
    p = parser()
    for sample in SAMPLES:
        raw = sample.line.encode("utf-8", "surrogateescape")
        variants = [
            raw.replace(b" ", b"\x00", 3),
            raw.replace(b"@", b"\xff@"),
            raw[:40] + b"\xc3\x28\xa0\xa1" + raw[40:],
            raw + b"\x00" * 10,
        ]
        for v in variants:
            assert_sane(p.parse(v.decode("utf-8", "surrogateescape")))
        for cut in range(len(sample.line) + 1):
            assert_sane(p.parse(sample.line[:cut]))


def test_raw_bytes_from_old_exim_are_tolerated() -> None:
    raw = [s for s in SAMPLES if any("\udc80" <= c <= "\udcff" for c in s.line)]
    assert raw, "the table holds alaveteli's line with raw non-UTF-8 bytes"
    assert all(parser().parse(s.line) is NOTHING for s in raw)


@pytest.mark.parametrize(
    "line",
    [
        "Apr 28 15:53:39 server postfix/smtpd[123]: NOQUEUE: reject: RCPT from x[1.2.3.4]: 550 5.7.1 no",
        "Apr 28 15:53:39 server dovecot: imap-login: Login: user=<a@b>",
        "2024-03-24T02:04:32.263+00:00 info sshd[1]: Accepted publickey for root",
        "04/28/16 15:53:37\tSMTP-IN\t9E1B5F9C.MAI\t123\t1.2.3.4\tRCPT\tTO:<a@b>\t551 not local",
    ],
)
def test_foreign_lines_are_not_exim_events(line: str) -> None:
    result = parser().parse(line)
    if "postfix/" in line:  # another MTA: a wrong format setting, which must show as unparsed
        assert isinstance(result, Unparsed)
        assert result.reason == "other-mta"
    else:
        assert result is NOTHING or result == Unparsed("no-timestamp")


# ---- properties ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_random_text_never_breaks_the_parser(text: str) -> None:
    assert_sane(parser().parse(text))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SAMPLES),
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "cut", "nul", "surrogate", "dup", "fragment"]),
            st.integers(min_value=0, max_value=10_000),
            st.integers(min_value=0, max_value=255),
            st.sampled_from(FRAGMENTS),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_samples_never_break_the_parser(
    sample: Sample, edits: list[tuple[str, int, int, str]]
) -> None:
    line = sample.line
    for op, at, byte, frag in edits:
        i = at % (len(line) + 1)
        if op == "flip" and line:
            j = min(i, len(line) - 1)
            line = line[:j] + chr(ord(line[j]) ^ (1 << (byte % 7))) + line[j + 1 :]
        elif op == "cut":
            line = line[:i]
        elif op == "nul":
            line = line[:i] + "\x00" + line[i:]
        elif op == "surrogate":
            line = line[:i] + chr(0xDC80 + (byte & 0x7F)) + line[i:]
        elif op == "dup":
            line = line[:i] + line[i : i + 1 + byte] + line[i:]
        else:
            line = line[:i] + frag + line[i:]
    assert_sane(parser().parse(line))
