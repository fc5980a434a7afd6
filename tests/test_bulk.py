"""The bulk scan path for Postfix (docs/decisions/0008-bulk-scan.md) counts exactly what
parse() line by line counts.

Three readers of the same chunks must leave identical aggregates and line counts: the
general path (parse() and Aggregate.add() per event), the regex bulk reader and the C
scanner. The C scanner's rows must also equal the regex's, line by line, on real, generated,
cut and mutated lines, and it must stay inside its buffers (checked under AddressSanitizer).
"""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.gen_logs import generate
from benchmarks.restamp import syslog_stamped
from logscan.core.aggregate import Aggregate
from logscan.core.pipeline import LineCounts, Pipeline
from logscan.events import EventBatch
from logscan.parsers import make_parser, postfix_bulk
from logscan.parsers.base import Item, ParserOptions, prefilter_of
from logscan.parsers.postfix import PostfixParser
from tests import sanitized

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = 1_796_000_000.0  # 2026-11-29
LOGS = (ROOT / "tests" / "samples" / "postfix.log", ROOT / "sample_logs" / "postfix" / "mail.log")
MODES = ("general", "regex", "c")
C_SCAN = postfix_bulk._scan
SOURCE = ROOT / "logscan" / "parsers" / "_postfix_scan.c"


def parser() -> PostfixParser:
    p = make_parser("postfix", ParserOptions(log="x.log", tz=UTC, reference_time=REFERENCE))
    assert isinstance(p, PostfixParser)
    return p


def run(mode: str, chunks: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[LineCounts, dict[str, Any]]:
    """Feed the chunks through one reader; the line counts and the whole aggregate state."""
    monkeypatch.setattr(postfix_bulk, "_scan", C_SCAN if mode == "c" else None)
    agg = Aggregate(top_domains=3, windows=(60, 300))
    pipe = Pipeline("x.log", parser(), agg, keep_examples=True)
    if mode == "general":
        pipe.bulk = None
    for chunk in chunks:
        pipe.feed_text(chunk)
    # The reasons are in the state; the recent refusals and their offenders (issue 14) too.
    return pipe.counts, {**agg.to_dict(), "diagnosis": agg.diagnosis.document()}


def assert_same(chunks: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    want = run("general", chunks, monkeypatch)
    for mode in MODES[1:]:
        got = run(mode, chunks, monkeypatch)
        assert got[0] == want[0], mode
        assert got[1] == want[1], mode  # order of rows included


def chunked(lines: list[str], size: int) -> list[str]:
    return ["".join(line + "\n" for line in lines[i : i + size]) for i in range(0, len(lines), size)]


def read_lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        return f.read().splitlines()


def c_item(line: str) -> Item | None:
    """What the C scanner makes of one line: None when it skips it."""
    assert C_SCAN is not None
    got = C_SCAN(line + "\n", True)
    assert got is not None
    total, items = got
    assert total == 1
    assert len(items) <= 1
    return items[0] if items else None


READER = postfix_bulk.PostfixBulk(parser())  # rows() keeps no state between calls
PREFILTER = prefilter_of(parser())  # a class attribute: the same for every parser


def regex_item(line: str) -> Item | None:
    """What the Python prefilter and the regex reader make of one line."""
    assert PREFILTER is not None
    if PREFILTER.skips(line):
        return None
    items = READER.rows([line])
    return line if items is None else items[0]


def test_the_c_scanner_is_built() -> None:
    # setup.py builds it where a C compiler exists; without it every test here would still
    # pass on the regex reader alone, so its absence is a failure, not a skip.
    assert C_SCAN is not None


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.name)
def test_sample_logs_count_the_same(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = read_lines(log)
    for size in (1, 7, 1000, len(lines)):
        assert_same(chunked(lines, size), monkeypatch)


def test_the_bulk_paths_count_reasons_and_offenders_as_parse_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # The comparison above is no bystander for reasons: the sample log's refusals carry many.
    lines = read_lines(LOGS[1])
    state = run("c", chunked(lines, 1000), monkeypatch)[1]
    reasons = {row[4] for row in state["reasons"]}
    assert {"relay_denied", "unknown_recipient", "greylisted", "sender_mismatch", "mailbox_full"} <= reasons
    offenders = [r["offenders"] for row in state["diagnosis"]["codes"] for r in row["reasons"]]
    assert any(o.get("client_ip") for o in offenders)
    assert any(o.get("recipient_domain") for o in offenders)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = tmp_path_factory.mktemp("gen") / "postfix.log"
    generate("postfix", 30_000, path, seed=7, hours=3.0, ndomains=300)
    return read_lines(path)


@pytest.mark.parametrize("stamps", ["rfc3339", "syslog"])
def test_a_generated_log_counts_the_same_and_mostly_in_batches(
    generated: list[str], stamps: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if stamps == "syslog":
        generated = list(map(syslog_stamped, generated))
    assert_same(chunked(generated, 4096), monkeypatch)
    # The bulk path is no bystander: batches, not parse(), count nearly all of the events,
    # refusals (whose reasons and offenders batch() reads) included.
    p = parser()
    results = [p.parse(line) for line in generated]
    refusals = sum(ev.code[:1] in ("4", "5") for r in results if isinstance(r, tuple) for ev in r)
    batched = 0
    add_batch = Aggregate.add_batch

    def counted(agg: Aggregate, batch: EventBatch) -> bool:
        nonlocal batched
        done = add_batch(agg, batch)
        batched += batch.events if done else 0
        return done

    monkeypatch.setattr(Aggregate, "add_batch", counted)
    counts = run("c", chunked(generated, 4096), monkeypatch)[0]
    assert counts.total == len(generated)
    assert refusals > 0.05 * counts.parsed
    assert batched >= 0.95 * counts.parsed


@pytest.mark.parametrize("zone", ["UTC", "Europe/Amsterdam", "America/St_Johns", "Asia/Kathmandu"])
def test_a_syslog_minute_plus_its_seconds_is_the_time_parse_gives(zone: str) -> None:
    # batch() dates a classic syslog stamp as its minute's time + the seconds; parse() dates
    # the whole stamp. Both must be the same float, across DST changes and odd offsets too.
    p = make_parser("postfix", ParserOptions(log="x", tz=ZoneInfo(zone), reference_time=REFERENCE))
    assert isinstance(p, PostfixParser)
    for day in ("Mar 29", "Mar 30", "Oct 25", "Oct 26", "Nov  2", "Nov 29", "Dec 31", "Jan  1"):
        for hm in ("00:00", "01:59", "02:30", "03:01", "23:59"):
            start = p.stamp_time(f"{day} {hm}:00", 15)
            for sec in ("00", "01", "30", "59"):
                whole = p.stamp_time(f"{day} {hm}:{sec}", 15)
                assert start is not None
                assert whole == start + float(sec), (zone, day, hm, sec)


def test_c_rows_equal_regex_rows_on_every_cut_of_every_sample_line() -> None:
    for log in LOGS:
        for line in read_lines(log):
            if "\r" in line:
                continue
            for end in range(len(line) + 1):
                cut = line[:end]
                assert c_item(cut) == regex_item(cut), cut


def test_c_rows_equal_regex_rows_with_a_nul_or_delimiter_anywhere_in_an_event_line() -> None:
    # A NUL byte is an ordinary character to the regex; C string functions must not stop at it.
    for log in LOGS:
        for line in read_lines(log):
            if "\r" in line or not ("status=" in line or "reject: " in line):
                continue
            for i in range(len(line) + 1):
                for piece in ("\x00", "@", ","):
                    odd = line[:i] + piece + line[i:]
                    assert c_item(odd) == regex_item(odd), odd


# Lines built from the pieces the readers branch on, so that random draws reach every branch.
STAMPS = (
    "2026-11-29T07:21:49.123456+00:00", "2026-11-29T07:21:49+02:00", "2026-11-29T07:22:01.5-0500",
    "2026-11-29T07:20:59.9999999Z", "2026-11-29T07:21:60.1+00:00", "1899-12-31T23:59:59Z",
    "2026-13-29T07:21:49+00:00", "2026-11-29T07:21:49.123+99:00", "Nov 29 07:21:49", "Nov  9 07:21:49",
    "2026-11-29T08:30:00.000001+00:00", "2026-11-29 07:21:49", "Nov 9 07:21:49", "Dec 31 23:59:59",
    "Nov 29 07:21:60", "Nov 029 07:21:49", "Nov 29 7:21:49", "Feb 30 07:21:49",
)  # fmt: skip
TAGS = (
    "postfix/smtp[123]", "postfix-out/relay/smtp[9]", "a/b/c/lmtp[1]", "a/b/c/d/smtp[1]", "postfix/qmgr[7]",
    "postfix/smtpd[5]", "postfix/postscreen[6]", "postfix/submission/smtpd[2]", "postfix/cleanup[3]",
    "postfix/smtp[]", "postfix/local[4]", "exim[3]", "postfix/error[8]", "postfix/smtpdx[1]",
)  # fmt: skip
QIDS = ("4Fg2kX0zQ1z", "NOQUEUE", "warning", "ABC", "3A2B1C0D9E", "info", "")
DELIVERY = (
    "to=<u@{d}>, relay={r}, delay={delay}, delays=0.1/0/0.2/0.3, dsn={dsn}, status={word}{tail}",
    "to=<u@{d}>, orig_to=<o@x>, relay={r}, conn_use=2, delay={delay}, delays=1/2/3/4, tls=ok, dsn={dsn}, "
    "status={word}{tail}",
    "to=<{d}>, relay={r}, delay={delay}, status={word}{tail}",
    "to=<a@b@{d}>, relay={r}, delay={delay}, dsn={dsn}, status={word}{tail}",
)  # fmt: skip
TAILS = (
    "", " (250 2.0.0 Ok: queued as 1234)", " (host mx.{d}[192.0.2.1] said: 550 5.1.1 <u@{d}>: no such user "
    "(in reply to RCPT TO command))", " (host mx[2001:db8::1] refused to talk to me: 554 go away)",
    " (connect to mx.{d}[192.0.2.1]:25: Connection refused)", " (host h said: 451-4.7.1 (#4.7.1) later)",
    " (delivered to mailbox)", " (host h said: 5501 x)", " (550)", " (250-2.0.0)", ",x",
    " (host a b said: 550 x)", " (host h said: 552 5.2.2.1 full)", " (421 4.4.2 timeout)",
    " (SASL authentication failed; server mx.{d}[192.0.2.1] said: 535 5.7.8 Error: authentication failed: x)",
    " (SASL [CACHED] authentication failed; server h[192.0.2.1] said: 535 5.7.8 x)",
    " (SASL authentication failed; cannot authenticate to server h[192.0.2.1]: no mechanism available)",
    # a reason-bearing word outside the reply: read from the wrong place, it changes the reason
    " (host blacklist.{d}[192.0.2.1] said: 450 4.2.1 busy (in reply to RCPT TO command))",
)  # fmt: skip
REJECT = (
    "{pre}reject: {stage} from {client}: {reply}; from=<s@{d}> to=<r@x> proto=ESMTP helo=<h>",
    "{pre}reject: {stage} from {client}: {reply}; from=<s@{d}>, to=<r@x>, proto=ESMTP, helo=<h>",
    "{pre}reject: {stage} from {client}: {reply}; proto=SMTP helo=<h>",
    "{pre}reject: {stage} from {client}: {reply}; from=<s@{d}> to=<r@x> proto=ESMTP helo=<h> extra",
    "{pre}reject: {stage} from {client}: {reply}; from=<s@{d}> x; from=<t@y.test",
    "{pre}reject: {stage}: {reply}; from=<s@{d}> to=<r@x> proto=ESMTP helo=<h>",
    "{pre}reject: {stage} from {client}: {reply}; from=<s@{d}> to=<r@x> proto=SPAMSMTP",
)  # fmt: skip
# Refusals without a reject line (smtpd, and the smtp per-host SASL line) and their look-alikes.
SESSION = (
    "warning: {client}: SASL LOGIN authentication failed: {reply}",
    "warning: {client}: SASL PLAIN authentication failed: generic failure, sasl_username=u@{d}",
    "warning: {client}: SASL LOGIN authentication aborted",
    "warning: SASL authentication failure: Password verification failed",
    "too many errors after {stage} from {client}",
    "lost connection after {stage} from {client}",
    "improper command pipelining after {stage} from {client}: QUIT",
    "SASL authentication failed; server {client} said: {reply}",
)  # fmt: skip
EXPIRED = ("from=<s@{d}>, status={word}, returned to sender", "from=<a,b@{d}>, status=expired, returned")
DOMAINS = ("example.com", "EXAMPLE.org.", "x", "", "b.test>")
RELAYS = ("mx.x[192.0.2.1]:25", "none", "private/dovecot-lmtp", "[::1]:24")
DELAYS = ("0.1", "12", "0.1", "12", "1.2.3", ".")
DSNS = ("2.0.0", "5.1.1", "4.4.1", "9.9", "5.123.123")
WORDS = ("sent", "bounced", "deferred", "SOFTBOUNCE", "expired", "force-expired", "deliverable", "sentx")
PRES = ("", "milter-", "proxy-")
STAGES = ("RCPT", "CONNECT", "END-OF-MESSAGE", "connect", "FOO", "DATA")
CLIENTS = ("u[192.0.2.9]", "h.x[2001:db8::2]:25", "[1.2.3.4]:123456", "a b[1.2.3.4]", "R.X[2001:DB8::3]:25")
REPLIES = ("550 5.7.1 <x>: Relay denied", "450 4.1.8 later", "5.7.1 no", "554", "421-4.3.2 busy", "too many")


@st.composite
def postfix_line(draw: st.DrawFn) -> str:
    d = draw(st.sampled_from(DOMAINS))
    body = draw(
        st.sampled_from(
            (*DELIVERY, *REJECT, *EXPIRED, *SESSION, "connect from x[1.2.3.4]", "QID: host h said: 451")
        )
    )
    text = body.format(
        d=d,
        r=draw(st.sampled_from(RELAYS)),
        delay=draw(st.sampled_from(DELAYS)),
        dsn=draw(st.sampled_from(DSNS)),
        word=draw(st.sampled_from(WORDS)),
        tail=draw(st.sampled_from(TAILS)).format(d=d),
        pre=draw(st.sampled_from(PRES)),
        stage=draw(st.sampled_from(STAGES)),
        client=draw(st.sampled_from(CLIENTS)),
        reply=draw(st.sampled_from(REPLIES)),
    )
    # Mostly well-formed heads, so that most lines reach the readers' deeper branches.
    stamp = draw(st.sampled_from((*STAMPS[:3], *STAMPS)))
    tag = draw(st.sampled_from((*TAGS[:2], *TAGS[5:7], *TAGS)))
    qid = draw(st.sampled_from((QIDS[0], QIDS[0], *QIDS)))
    line = f"{stamp} mx {tag}: {qid}: {text}" if qid else f"{stamp} mx {tag}: {text}"
    for _ in range(draw(st.sampled_from((0, 0, 0, 1, 2)))):  # a few random edits, anywhere
        i = draw(st.integers(0, len(line)))
        j = draw(st.integers(i, min(len(line), i + 3)))
        line = line[:i] + draw(st.text(alphabet=" :;,<>@[]()/.=-05aZé€\udc80\r\x00", max_size=2)) + line[j:]
    return line


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=postfix_line())
def test_c_rows_equal_regex_rows_on_random_lines(line: str) -> None:
    if "\r" in line or "\n" in line or max(map(ord, line), default=0) > 0xFF:
        return  # the C scanner leaves such chunks to Python; the tests below cover them
    assert c_item(line) == regex_item(line)


def test_every_combination_of_the_branch_pieces_counts_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    # The random tests sample these pieces; here each combination runs once, in whole runs of
    # well-formed lines (each bad delay sends its whole batch to parse(), so those go apart).
    heads = (
        "2026-11-29T07:21:49.123456+00:00 mx postfix/smtp[1]: 4Fg2kX0zQ1z: ",
        "Nov 29 07:21:50 mx postfix/smtp[1]: 4Fg2kX0zQ1z: ",
    )
    deliveries = [  # a run per stamp style: a batch takes one zone only
        head + body.format(d=d, r=RELAYS[0], delay=delay, dsn=dsn, word=word, tail=tail.format(d=d))
        for head in heads
        for body in DELIVERY
        for tail in TAILS
        for dsn in DSNS
        for word in WORDS
        for d in DOMAINS
        for delay in ("0.1", "1.2.3")
    ]
    heads = (
        "2026-11-29T07:21:49.5+00:00 mx postfix/smtpd[1]: NOQUEUE: ",
        "Nov 29 07:21:49 mx postfix/smtpd[1]: NOQUEUE: ",
    )
    rejects = [
        head + body.format(d=d, pre=pre, stage=stage, client=client, reply=reply)
        for head in heads
        for body in REJECT
        for pre in PRES
        for stage in STAGES
        for client in CLIENTS
        for reply in REPLIES
        for d in DOMAINS
    ]
    session_heads = (
        "2026-11-29T07:21:49.5+00:00 mx postfix/smtpd[1]: ",
        "Nov 29 07:21:49 mx postfix/smtp[1]: 4Fg2kX0zQ1z: ",
        "2026-11-29T07:21:49.5+00:00 mx postfix/smtpd[1]: NOQUEUE: ",
    )
    sessions = [
        head + body.format(d=d, stage=stage, client=client, reply=reply)
        for head in session_heads
        for body in SESSION
        for stage in STAGES
        for client in CLIENTS
        for reply in REPLIES
        for d in DOMAINS[:2]
    ]
    good = [line for line in deliveries + rejects + sessions if "1.2.3" not in line]
    bad = [line for line in deliveries if "1.2.3" in line]
    assert_same(chunked(good, 5000) + chunked(bad, 5000), monkeypatch)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(postfix_line(), min_size=1, max_size=40), size=st.integers(1, 40))
def test_random_chunks_count_the_same(lines: list[str], size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [line.replace("\n", " ") for line in lines]
    assert_same(chunked(lines, size), monkeypatch)


def test_a_batch_older_than_the_kept_minutes_goes_line_by_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # With a 1-minute window six buckets are kept before add() prunes. An event of an older
    # minute then creates its bucket, which the prune drops at once (the event is lost); the
    # next one re-creates it. add_batch() refuses such a batch, so the same happens.
    def line(minute: str, word: str) -> str:
        return (
            f"2026-11-29T{minute}:00.5+00:00 mx postfix/smtp[1]: 4Fg2kX0zQ1z: to=<u@x.test>, "
            f"relay=mx[192.0.2.1]:25, delay=1, dsn=2.0.0, status={word} (250 2.0.0 Ok)"
        )

    chunks = [
        "".join(line(f"10:0{m}", "sent") + "\n" for m in range(6)),
        line("09:00", "bounced") + "\n" + line("09:00", "sent") + "\n",
    ]

    def minutes(mode: str) -> list[list[int]]:
        monkeypatch.setattr(postfix_bulk, "_scan", C_SCAN if mode == "c" else None)
        agg = Aggregate(windows=(60,))
        pipe = Pipeline("x.log", parser(), agg)
        if mode == "general":
            pipe.bulk = None
        for chunk in chunks:
            pipe.feed_text(chunk)
        rows: list[list[int]] = agg.to_dict()["minutes"]["postfix"]
        return rows

    want = minutes("general")
    assert [29932380, 1, 0, 0] in want  # 09:00: the sent event only
    assert minutes("regex") == want
    assert minutes("c") == want


def test_the_c_scanner_stays_in_bounds_under_addresssanitizer(tmp_path: Path) -> None:
    # Built twice with ASan and UBSan: with the SSE2 trigger search (as installed on x86-64)
    # and with the portable memmem one (other CPUs). Both must read every cut and mutated
    # line and chunk without a finding, and give the same results.
    builds = {}
    for name, flags in (("simd", []), ("portable", ["-DLOGSCAN_NO_SIMD"])):
        (tmp_path / name).mkdir()
        builds[name] = sanitized.build(SOURCE, tmp_path / name / "_postfix_scan.so", *flags)
    corpus = [line for log in LOGS for line in read_lines(log) if "status=" in line or "reject: " in line]
    (tmp_path / "corpus.json").write_text(json.dumps(corpus))
    probe = f"""
import importlib.machinery, importlib.util, json, random
def load(name, path):
    spec = importlib.util.spec_from_file_location(name + "._postfix_scan", path,
        loader=importlib.machinery.ExtensionFileLoader(name + "._postfix_scan", path))
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    return m
a, b = load("simd", {builds["simd"]!r}), load("portable", {builds["portable"]!r})
PIECES = [*" :;,<>@[]()/.=-(#5\\x00", " exim", "status=", "reject: ", ": host ", "\\r"]
def check(text, rows):
    got = a.scan(text, rows)
    assert got == b.scan(text, rows), text
    if got is not None:  # the scanner's rows grouped per minute (PostfixBulk.batch's per_minute)
        made = [item for item in got[1] if isinstance(item, tuple)]
        ids = {{key: i for i, key in enumerate(dict.fromkeys(row[3] for row in made))}}
        assert a.minutes(made, ids) == b.minutes(made, ids), text
lines = json.load(open({str(tmp_path / "corpus.json")!r}))
rnd = random.Random(5)
for line in lines:
    for end in range(len(line) + 1):
        check(line[:end] + "\\n", True)
        check(line[end:] + "\\n", True)
def mutated():
    line = rnd.choice(lines)
    i = rnd.randrange(len(line) + 1)
    junk = "".join(rnd.choice(PIECES) for _ in range(rnd.randrange(4)))
    return line[:i] + junk + line[i:]
for _ in range(20000):
    check(mutated() + "\\n", rnd.random() < 0.9)
for _ in range(500):
    check("".join(mutated() + "\\n" for _ in range(rnd.randrange(1, 60))), True)
print("ok")
"""
    sanitized.run_probe(probe)
