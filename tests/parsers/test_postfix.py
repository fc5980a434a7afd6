"""Postfix parser: the sample table, hostile input, and properties over mutated real lines."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logscan.events import NOTHING, Event, ParseResult, Unparsed
from logscan.parsers.base import MAX_LINE, ParserOptions
from logscan.parsers.postfix import REASONS, PostfixParser
from tests.samples import Sample, check, load

REFERENCE = datetime(2026, 11, 29, 8, 0, tzinfo=UTC).timestamp()
SAMPLES = load("postfix.log")
CODE = re.compile(r"[2-5][0-9][0-9]")
ENHANCED = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
STAGES = {
    "", "connect", "helo", "mail", "rcpt", "data", "end-of-data", "bdat", "auth", "starttls",
    "quit", "rset", "vrfy", "etrn", "xforward", "xclient", "pipelining", "limit",
}  # fmt: skip
STATUSES = {"", "sent", "bounced", "deferred", "expired", "rejected"}

SENT = (
    "Feb 11 16:49:24 letterman postfix/smtp[8204]: AAB4D259B1: to=<me@example.net>, "
    "relay=example.com[127.0.0.1]:25, delay=0.1, delays=0.1/0/0/0, dsn=2.0.0, "
    "status=sent (250 2.0.0 Ok: queued as AAB4D259B1)"
)
BOUNCED_PREFIX = (
    "Oct 10 13:22:49 host postfix/smtp[11876]: 6FB9036F1307: to=<foo@example.com>, "
    "relay=mx.example.net[198.51.100.9]:25, delay=1.5, delays=0.03/0/0.48/1, dsn=5.1.1, status=bounced "
)
REJECT_PREFIX = "Jul 12 07:47:48 saturn postfix/smtpd[8738]: NOQUEUE: reject: RCPT from "
CLEANUP_PREFIX = "Jul 12 07:47:48 saturn postfix/cleanup[8739]: 3D74ADB7400B: reject: header Subject: "
PER_HOST_PREFIX = "Dec 29 02:54:09 mail postfix/smtp[7648]: 732BB407C3: host "
SMTP_QID = "Nov 29 07:21:49 h postfix/smtp[1]: A1B2C3D4E5: "


def make_parser(log: str = "mail.log") -> PostfixParser:
    return PostfixParser(ParserOptions(log=log, tz=UTC, reference_time=REFERENCE))


PARSER = make_parser()


def assert_well_formed(result: ParseResult) -> None:
    """What every result must satisfy, whatever the input."""
    if isinstance(result, Unparsed):
        assert result.reason in REASONS
        assert len(result.detail) <= 64
        return
    assert isinstance(result, tuple)
    for event in result:
        assert isinstance(event, Event)
        assert event.mta == "postfix"
        assert event.code == "" or CODE.fullmatch(event.code), event
        assert event.enhanced == "" or ENHANCED.fullmatch(event.enhanced), event
        assert event.status in STATUSES
        assert event.stage in STAGES, event
        assert event.direction in ("inbound", "outbound")
        assert "@" not in event.recipient_domain
        assert "@" not in event.sender_domain
        assert len(event.remote_host) <= 255
        assert len(event.remote_ip) <= 45


# -- the sample table ---------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.id for s in SAMPLES])
def test_sample(sample: Sample) -> None:
    result = PARSER.parse(sample.line)
    check(sample, result)
    assert_well_formed(result)


def test_sample_table_covers_what_the_issue_asks_for() -> None:
    """The table is only worth something if it holds the hard cases; count a few of them."""
    results = [(s, PARSER.parse(s.line)) for s in SAMPLES]
    events = [e for _, r in results if isinstance(r, tuple) for e in r]
    assert len(SAMPLES) >= 170
    assert sum(e.code == "551" for e in events) >= 8
    assert {e.stage for e in events} >= {"connect", "helo", "mail", "rcpt", "data", "end-of-data", "bdat"}
    assert {e.status for e in events} == STATUSES
    assert any(":" in e.remote_ip for e in events)  # IPv6
    assert sum(s.line.startswith("20") and "T" in s.line[:11] for s in SAMPLES) >= 15
    assert any(len(s.line) == 2000 for s in SAMPLES)


def test_nothing_is_the_shared_empty_tuple() -> None:
    for line in (
        "Nov 29 07:21:49 mx postfix/smtpd[1]: connect from a.example[192.0.2.1]",
        "Nov 29 07:21:49 mx postfix/qmgr[1]: ABCDEF12345: removed",
        "Nov 29 07:21:49 mx dovecot: imap-login: Login: user=<a>",
        "Nov 29 07:21:49 mx postfix/smtp[1]: warning: status=sent said: 550 x",
    ):
        assert PARSER.parse(line) is NOTHING


def test_trailing_cr_is_ignored() -> None:
    assert PARSER.parse(SENT + "\r") == PARSER.parse(SENT)
    (event,) = PARSER.parse(SENT + "\r")  # type: ignore[misc]
    assert event.code == "250"


def test_log_name_and_reference_year() -> None:
    parser = make_parser("edge-1")
    (event,) = parser.parse(SENT)  # type: ignore[misc]
    assert event.log == "edge-1"
    assert event.time == datetime(2026, 2, 11, 16, 49, 24, tzinfo=UTC).timestamp()
    # A file last written in January: a February line is from the year before.
    parser.set_reference_time(datetime(2027, 1, 5, tzinfo=UTC).timestamp())
    (event,) = parser.parse(SENT)  # type: ignore[misc]
    assert event.time == datetime(2026, 2, 11, 16, 49, 24, tzinfo=UTC).timestamp()
    parser.set_reference_time(datetime(2027, 3, 5, tzinfo=UTC).timestamp())
    (event,) = parser.parse(SENT)  # type: ignore[misc]
    assert event.time == datetime(2027, 2, 11, 16, 49, 24, tzinfo=UTC).timestamp()


def test_time_cache_does_not_leak_between_lines() -> None:
    parser = make_parser()
    a = parser.parse(SENT)
    b = parser.parse(SENT.replace("16:49:24", "16:49:25"))
    assert isinstance(a, tuple)
    assert isinstance(b, tuple)
    assert b[0].time - a[0].time == 1.0


def test_long_line_is_cut_before_parsing() -> None:
    line = BOUNCED_PREFIX + "(host mx.example.net[198.51.100.9] said: 551 5.1.1 " + "x" * (2 * MAX_LINE)
    (event,) = PARSER.parse(line)  # type: ignore[misc]
    assert (event.code, event.enhanced, event.stage, event.status) == ("551", "5.1.1", "", "bounced")


def test_one_megabyte_line_and_nul_and_surrogates() -> None:
    big = SENT + "x" * 1_000_000
    assert_well_formed(PARSER.parse(big))
    nul = SENT.replace("to=<me@", "to=<m\x00e@")
    (event,) = PARSER.parse(nul)  # type: ignore[misc]
    assert event.recipient_domain == "example.net"
    bad = (
        b"Feb 11 16:49:24 h postfix/smtp[1]: AAB4D259B1: to=<\xff\xfe@ex\xc3.net>, relay=none, "
        b"delay=1, dsn=5.0.0, status=bounced (x)"
    )
    (event,) = PARSER.parse(bad.decode("utf-8", "surrogateescape"))  # type: ignore[misc]
    assert event.status == "bounced"
    assert event.recipient_domain == ""
    assert_well_formed(PARSER.parse("\udcff" * 50))
    assert PARSER.parse("\x00" * 100) == Unparsed("no-timestamp")


@pytest.mark.parametrize(
    "line",
    [
        "",
        " ",
        "Nov",
        "Nov 29",
        "Nov 29 07:21:49",
        "Nov 29 07:21:49 ",
        "Nov 29 07:21:49 host",
        "Nov 29 07:21:49 host postfix/smtp[1]:",
        "Nov 29 07:21:49 host postfix/smtp[1]: ",
        "Nov 29 07:21:49 host postfix/smtp[1]: ABCDEF12345:",
        "Nov 29 07:21:49 host postfix/smtp[1]: ABCDEF12345: to=",
        "Nov 29 07:21:49 host postfix/smtp[1]: ABCDEF12345: to=<a@b>, status=",
        "Nov 29 07:21:49 host postfix/smtp[1]: ABCDEF12345: host",
        "Nov 29 07:21:49 host postfix/smtp[1]: ABCDEF12345: host  said: ",
        "Nov 29 07:21:49 host postfix/smtpd[1]: NOQUEUE: reject: ",
        "Nov 29 07:21:49 host postfix/smtpd[1]: NOQUEUE: reject: RCPT from [",
        "Nov 29 07:21:49 host postfix/cleanup[1]: ABCDEF12345: reject: ",
        "Nov 29 07:21:49 host postfix/qmgr[1]: ABCDEF12345: from=<>, status=",
        "2026-11-29T",
        "2026-11-29T07:21:49.",
        "2026-11-29T07:21:49.+09:00 h postfix/smtp[1]: A1B2C3D4E5: to=<a@b>, relay=none, status=sent (ok)",
        "2026-11-29Tab:cd:efZ h postfix/smtp[1]: A1B2C3D4E5: to=<a@b>, relay=none, status=sent (ok)",
        "Nov 99 99:99:99 h postfix/smtp[1]: A1B2C3D4E5: to=<a@b>, relay=none, status=sent (ok)",
        "Nov 2_ 07:21:49 h postfix/smtp[1]: A1B2C3D4E5: to=<a@b>, relay=none, status=sent (ok)",
    ],
)
def test_truncated_and_odd_lines_do_not_raise(line: str) -> None:
    assert_well_formed(PARSER.parse(line))


def test_every_truncation_of_every_sample_is_well_formed() -> None:
    """Records get cut anywhere (syslog relays cut at 1024, Postfix at 2000)."""
    for sample in SAMPLES:
        line = sample.line[:600]
        for n in range(len(line) + 1):
            assert_well_formed(PARSER.parse(line[:n]))


def test_foreign_lines_are_ignored_not_unparsed() -> None:
    for line in (
        "Nov 29 07:21:49 mx dovecot: lmtp(a@b.c): said: 550 status=bounced reject: RCPT from x[1.2.3.4]",
        "Nov 29 07:21:49 mx opendkim[1]: ABCDEF12345: to=<a@b.c>, relay=x[1.2.3.4], status=sent (250 ok)",
        "Nov 29 07:21:49 mx amavis[2]: (02345-01) Passed CLEAN {RelayedInbound}, [192.0.2.1]:4321 <a@b>",
        "2026-11-29T07:21:49.1+00:00 mx systemd[1]: Started postfix.service.",
    ):
        assert PARSER.parse(line) is NOTHING


# -- hostile input: every line in well under 10 ms ------------------------------------------------

N = 100_000
HOSTILE: dict[str, str] = {
    "said-runs": BOUNCED_PREFIX + "(host x[1.2.3.4] " + "said: " * (N // 6),
    "said-no-space": BOUNCED_PREFIX + "(host x[1.2.3.4] said:" * (N // 22),
    "open-parens": BOUNCED_PREFIX + "(host x[1.2.3.4] said: 550 " + "(" * N,
    "in-reply-runs": BOUNCED_PREFIX + "(host x[1.2.3.4] said: 550 " + "(in reply to " * (N // 13),
    "brackets": REJECT_PREFIX + "[" * N,
    "brackets-host": BOUNCED_PREFIX + "(host " + "[" * N + " said: 550 x",
    "close-brackets": REJECT_PREFIX + "x[1.2.3.4" + "]" * N,
    "angles": REJECT_PREFIX + "x[1.2.3.4]: 550 5.1.1 " + "; from=<" * (N // 8),
    "angles-to": REJECT_PREFIX + "x[1.2.3.4]: 550 5.1.1 ; from=<" + "<" * N,
    "spaces": REJECT_PREFIX + " " * N,
    "spaces-after-ts": "Nov 29 07:21:49 " + " " * N,
    "digits": BOUNCED_PREFIX + "(host x[1.2.3.4] said: " + "5" * N,
    "enhanced-digits": BOUNCED_PREFIX + "(host x[1.2.3.4] said: 550 5." + "1" * N,
    "dots": BOUNCED_PREFIX + "(host x[1.2.3.4] said: 550 " + "5.5." * (N // 4),
    "domain": SMTP_QID + "to=<a@" + "a-" * (N // 2) + ">, relay=none, status=sent (x)",
    "domain-dots": SMTP_QID + "to=<a@" + "a." * (N // 2) + "->, status=sent (x)",
    "at-signs": SMTP_QID + "to=<" + "@" * N + ">, status=bounced (x)",
    "status-runs": SMTP_QID + "to=<a@b>" + ", status=" * (N // 9),
    "relay-runs": SMTP_QID + "to=<a@b>" + ", relay=" * (N // 8) + ", status=sent (x)",
    "cleanup-reason": CLEANUP_PREFIX + "x from a[1.2.3.4]; from=<a@b> to=<c@d>" + ": 5." * (N // 4),
    "cleanup-from": CLEANUP_PREFIX + " from " * (N // 6) + "; from=<a@b>",
    "refused": PER_HOST_PREFIX + "x[1.2.3.4]" + " refused to talk to me: " * (N // 24),
    "colons": "Nov 29 07:21:49 h postfix/smtpd[1]: " + ":" * N + " reject: ",
    "tag": "Nov 29 07:21:49 h " + "postfix/" * (N // 8) + "smtp[1]: x",
    "iso-fraction": "2026-11-29T07:21:49." + "1" * N + " h postfix/smtp[1]: A1B2C3D4E5: to=<a@b>",
    "queue-id": "Nov 29 07:21:49 h postfix/smtp[1]: " + "A" * N + ": to=<a@b>, status=sent (x)",
}


def best_of_3(fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_line_parses_fast(name: str) -> None:
    line = HOSTILE[name]
    assert len(line) >= 90_000
    parser = make_parser()
    assert_well_formed(parser.parse(line))
    elapsed = best_of_3(lambda: parser.parse(line))
    assert elapsed < 0.010, f"{name}: {elapsed * 1000:.2f} ms"


# -- properties --------------------------------------------------------------------------------

LINES = [s.line for s in SAMPLES]


@st.composite
def mutated_sample(draw: st.DrawFn) -> str:
    line = draw(st.sampled_from(LINES))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 5))
        i = draw(st.integers(0, len(line)))
        if kind == 0:  # flip one bit of one byte, then decode as the tailer does
            raw = bytearray(line.encode("utf-8", "surrogateescape"))
            if raw:
                j = min(i, len(raw) - 1)
                raw[j] ^= 1 << draw(st.integers(0, 7))
            line = raw.decode("utf-8", "surrogateescape")
        elif kind == 1:  # truncate
            line = line[:i]
        elif kind == 2:  # NUL or an invalid-UTF-8 surrogate, as surrogateescape gives them
            line = line[:i] + draw(st.sampled_from(["\x00", "\udcff", "\udc80\udcc3", "\r"])) + line[i:]
        elif kind == 3:  # duplicate a fragment
            j = draw(st.integers(i, min(len(line), i + 80)))
            line = line[:j] + line[i:j] * draw(st.integers(1, 5)) + line[j:]
        elif kind == 4:  # splice in a piece of another sample
            other = draw(st.sampled_from(LINES))
            k = draw(st.integers(0, len(other)))
            line = line[:i] + other[k : k + draw(st.integers(0, 120))] + line[i:]
        else:  # insert random text
            line = line[:i] + draw(st.text(max_size=40)) + line[i:]
    return line


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_sample())
def test_mutated_samples_never_raise(line: str) -> None:
    assert_well_formed(PARSER.parse(line))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_random_text_never_raises(text: str) -> None:
    assert_well_formed(PARSER.parse(text))
    assert_well_formed(PARSER.parse("Nov 29 07:21:49 mx postfix/smtp[1]: ABCDEF12345: " + text))
    assert_well_formed(PARSER.parse("Nov 29 07:21:49 mx postfix/smtpd[1]: NOQUEUE: reject: " + text))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(100, 999).map(str),
    st.tuples(st.integers(0, 9), st.integers(0, 9999), st.integers(0, 9999)).map(
        lambda t: f"{t[0]}.{t[1]}.{t[2]}"
    ),
    st.text(max_size=30),
)
def test_any_reply_code_obeys_the_grammar(code: str, enhanced: str, text: str) -> None:
    """Remote servers send any digits; only [2-5]xx and [245].x.x may come out."""
    reply = f"{code} {enhanced} {text} (in reply to RCPT TO command))"
    line = BOUNCED_PREFIX + "(host mx.example.net[198.51.100.9] said: " + reply
    result = PARSER.parse(line)
    assert_well_formed(result)
    assert isinstance(result, tuple)
    assert len(result) == 1
    event = result[0]
    assert event.status == "bounced"
    assert event.code == (code if code[0] in "2345" else "")


_CACHED = make_parser()
_STAMP_PART = st.sampled_from(
    ["0", "5", "9", "00", "07", "12", "23", "29", "31", "59", "60", " 5", "+5", "1_", "x"]
)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["2026", "1999", "0000", "9999"]),
    st.lists(_STAMP_PART, min_size=5, max_size=5),
    st.sampled_from(["", ".1", ".999999999", ".0000005", ".", ".12345678901"]),
    st.sampled_from(["", "Z", "z", "+00:00", "-05:30", "+0900", "+23:59", "+24:00", "-5", "+", "X"]),
    st.sampled_from(["-", "/"]),
)
def test_cached_rfc3339_time_equals_the_uncached_conversion(
    year: str, parts: list[str], frac: str, zone: str, sep: str
) -> None:
    """The per-minute cache gives exactly (bit for bit, None included) what _time_slow gives."""
    month, day, hour, minute, sec = parts
    date = f"{year}-{month.zfill(2)}{sep}{day.zfill(2)}"
    stamp = f"{date}T{hour.zfill(2)}:{minute.zfill(2)}:{sec.zfill(2)}{frac}{zone}"
    line = stamp + " mx postfix/smtp[1]: ABCDEF12345: to=<a@b.example>, relay=none, delay=1, status=sent"
    cached = _CACHED  # shared by every example, so a wrong cache key shows up
    want = make_parser()._time_slow(stamp)
    assert cached.stamp_time(line, len(stamp)) == want
    # again, now from the cache; and a neighbour second in the same minute
    assert cached.stamp_time(line, len(stamp)) == want
    other = make_parser()._time_slow(stamp[:17] + "30" + stamp[19:])
    assert cached.stamp_time(stamp[:17] + "30" + stamp[19:] + " x", len(stamp)) == other
