"""The Exim bulk reader (docs/decisions/0018-exim-bulk.md) counts exactly what parse() line
by line counts.

Three readers of the same chunks must leave identical aggregates and line counts on real,
generated, combined and fuzzed Exim lines, in chunks of several sizes: the general path
(parse() and Aggregate.add() per event), the regex bulk reader and the C scanner. The rows
must carry the usual event lines, or the comparison would hold trivially. The C scanner's
rows must also equal the regex's line by line, and it must stay inside its buffers (checked
under AddressSanitizer).
"""

from __future__ import annotations

import json
import random
from datetime import UTC
from importlib import import_module
from itertools import groupby
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.gen_logs import generate
from logscan.core.aggregate import Aggregate
from logscan.core.pipeline import LineCounts, Pipeline
from logscan.events import EventBatch
from logscan.parsers import bulk_reader_of, exim_bulk, make_parser
from logscan.parsers.base import Item, ParserOptions, per_minute, prefilter_of
from logscan.parsers.exim import EximParser
from logscan.parsers.reasons import refusal_reason, tables
from tests import sanitized

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = 1_796_000_000.0  # 2026-11-29
LOGS = (ROOT / "tests" / "samples" / "exim.log", ROOT / "sample_logs" / "exim" / "mainlog")
MODES = ("general", "regex", "c")
C_SCAN = exim_bulk._scan
SOURCE = ROOT / "logscan" / "parsers" / "_exim_scan.c"


def parser() -> EximParser:
    p = make_parser("exim", ParserOptions(log="x.log", tz=UTC, reference_time=REFERENCE))
    assert isinstance(p, EximParser)
    return p


def run(mode: str, chunks: list[str], min_run: int = 1) -> tuple[LineCounts, dict[str, Any]]:
    """Feed the chunks through one reader; the line counts and the whole aggregate state.

    `min_run`: the shortest run of rows batch() takes (1: every run, so that short ones are
    compared too; the reader's own default in production)."""
    agg = Aggregate(top_domains=3, windows=(60, 300))
    pipe = Pipeline("x.log", parser(), agg, keep_examples=True)
    if mode == "general":
        pipe.bulk = None
    else:
        assert isinstance(pipe.bulk, exim_bulk.EximBulk)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(exim_bulk, "_scan", C_SCAN if mode == "c" else None)
        mp.setattr(exim_bulk, "_MIN_RUN", min_run)
        for chunk in chunks:
            pipe.feed_text(chunk)
    return pipe.counts, {**agg.to_dict(), "diagnosis": agg.diagnosis.document()}


def assert_same(chunks: list[str]) -> None:
    want = run("general", chunks)
    for mode in MODES[1:]:
        got = run(mode, chunks)
        assert got[0] == want[0], mode
        assert got[1] == want[1], mode  # order of rows included


def chunked(lines: list[str], size: int) -> list[str]:
    return ["".join(line + "\n" for line in lines[i : i + size]) for i in range(0, len(lines), size)]


def read_lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        return f.read().splitlines()


def batched_events(
    chunks: list[str], monkeypatch: pytest.MonkeyPatch, mode: str = "regex"
) -> tuple[int, int]:
    """(events counted in batches, events in all) on a bulk path."""
    batched = 0
    add_batch = Aggregate.add_batch

    def counted(agg: Aggregate, batch: EventBatch) -> bool:
        nonlocal batched
        done = add_batch(agg, batch)
        batched += batch.events if done else 0
        return done

    monkeypatch.setattr(Aggregate, "add_batch", counted)
    counts = run(mode, chunks)[0]
    return batched, counts.parsed


def c_item(line: str) -> Item | None:
    """What the C scanner makes of one line: None when it skips it."""
    assert C_SCAN is not None
    got = C_SCAN(line + "\n", True)
    assert got is not None
    total, items = got
    assert total == 1
    assert len(items) <= 1
    return items[0] if items else None


PREFILTER = prefilter_of(parser())


def regex_item(line: str) -> Item | None:
    """What the Python prefilter and the regex reader make of one line (before short runs of
    rows are made lines again, which the C scanner's caller does too)."""
    assert PREFILTER is not None
    if PREFILTER.skips(line):
        return None
    items = exim_bulk._rows([line])
    return line if items is None else items[0]


def test_the_c_scanner_is_built() -> None:
    # setup.py builds it where a C compiler exists; without it every test here would still
    # pass on the regex reader alone, so its absence is a failure, not a skip.
    assert C_SCAN is not None


def test_exim_has_a_bulk_reader() -> None:
    assert isinstance(bulk_reader_of(parser()), exim_bulk.EximBulk)


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.name)
def test_sample_logs_count_the_same(log: Path) -> None:
    lines = read_lines(log)
    for size in (1, 7, 1000, len(lines)):
        assert_same(chunked(lines, size))


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.name)
def test_short_runs_of_rows_go_to_parse_and_count_the_same(log: Path) -> None:
    # With the production threshold, runs shorter than _MIN_RUN are parsed line by line.
    lines = read_lines(log)
    want = run("general", chunked(lines, 1000))
    for mode in MODES[1:]:
        assert run(mode, chunked(lines, 1000), exim_bulk._MIN_RUN) == want, mode


def test_the_sample_log_goes_through_batches_with_reasons_and_offenders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = read_lines(LOGS[1])
    batched, parsed = batched_events(chunked(lines, 1000), monkeypatch)
    assert batched >= 0.95 * parsed
    state = run("regex", chunked(lines, 1000))[1]
    reasons = {row[4] for row in state["reasons"]}
    assert {"unknown_recipient", "sender_mismatch"} <= reasons
    offenders = [r["offenders"] for row in state["diagnosis"]["codes"] for r in row["reasons"]]
    assert any(o.get("client_ip") for o in offenders)
    assert any(o.get("recipient_domain") for o in offenders)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = tmp_path_factory.mktemp("gen") / "exim.log"
    generate("exim", 30_000, path, seed=7, hours=3.0, ndomains=300)
    return read_lines(path)


def test_a_generated_log_counts_the_same_and_mostly_in_batches(
    generated: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for size in (4096, 333):
        assert_same(chunked(generated, size))
    p = parser()
    results = [p.parse(line) for line in generated]
    refusals = sum(ev.code[:1] in ("4", "5") for r in results if isinstance(r, tuple) for ev in r)
    for mode in MODES[1:]:
        batched, parsed = batched_events(chunked(generated, 4096), monkeypatch, mode)
        assert refusals > 0.2 * parsed
        assert batched >= 0.95 * parsed


# Lines built from the pieces the readers branch on, so that random draws reach every branch.
STAMPS = (
    "2026-11-29 07:21:49", "2026-11-29 07:21:49.123", "2026-11-29 07:21:49 [1234]", "2026-11-29 07:21:60",
    "2026-11-29 07:21:49 +0100", "2026-02-30 07:21:49", "2026-11-29 07:21:49.12", "2026-11-29 24:00:00",
    "Nov 29 07:21:49 mx exim[12]:", "2026-11-29 07:21:49 [123456789012]",
)  # fmt: skip
QIDS = ("1xWjNg-000HJ0-Zx", "1tixMn-00000000C5j-1wRa", "1xWjNg-000HJ0-Z", "10HmaX-0005vi-00")
FLAGS = ("=>", "->", ">>", "**", "==", "<=", "*>")
ADDRESSES = (
    "u@example.com", "u@EXAMPLE.org.", "u@b@x.test", "user <user@local.test>", "user <user>", "u@",
    "user <a@b@c>", "u@x.test:", "a@" + "d" * 300, "user <user@x.test", "u@-bad-.test",
)  # fmt: skip
HOSTS = (
    "H=mx.x.test [192.0.2.1]", "H=mx.x.test [192.0.2.1]:25", "H=[2001:db8::1]", "H=(helo) [192.0.2.2]",
    "H=n (h) [192.0.2.3]", "H=mx.x.test [abc]", "H=rejected [192.0.2.4]", "H=mx.x.test",
    "H=(a b) [192.0.2.5]",
    "H=(mail-x.ex-ample) [192.0.2.6]", "H=x [192.0.2.7", "H=x F=<y> [192.0.2.8]",
)  # fmt: skip
FIELDS = ("", " X=TLS1.3:AES:256 CV=no", " I=[192.0.2.9]:25", " P=esmtp S=123", " K", "  ", ' T="s"')
CS = (
    "", ' C="250 2.0.0 Ok: queued"', ' C="250 OK id=1"', ' C="550 5.1.1 no"', ' C="250"', ' C="250-2.0.0 ok"',
    ' C="451 4.7.1 later"', ' C="2500 x"', ' C="250 ok H=x"', ' C="250 ok DT=9s"', ' C="354 go"',
)  # fmt: skip
DTS = ("", " DT=0.5s", " DT=1m2s", " DT=junk", " DT=", " QT=3s DT=1s", " DT=" + "9" * 30)
REMOTES = (
    "", ": SMTP error from remote mail server after RCPT TO:<u@x.test>: 550 5.1.1 <u@x.test>: no such user",
    ": SMTP error from remote mail server after end of data: 451 4.7.0 Temporary server error",
    ": SMTP error from remote mail server after pipelined MAIL FROM:<s@y> SIZE=1: 552 5.2.2 full",
    ": SMTP error from remote mail server after RCPT TO:<u@x>: host mx [1.2.3.4]: 550 x",
    ": SMTP error from remote mail server after initial connection: 421 busy: try later",
    ": SMTP error from remote mail server after RCPT TO:<u@x>: 5.1.1 nope",
    ": SMTP error from remote mail server after DATA: 554",
    ": SMTP error from remote mail serverafter RCPT: 550 x", ": SMTP error from remote mailer after x: 550",
    ": retry timeout exceeded", " defer (-53): retry time not reached for any host",
    ": Unrouteable address", " defer (110): Connection timed out",
    ": SMTP error from remote mail server after RCPT TO:<u@x>: 550 5.7.1 have been failing for a long time",
    ": SMTP error from remote mail server after RCPT TO:<u@x>: 550 user has been failing: sorry",
)  # fmt: skip
REJECTS = (
    "{host}{fields} F=<s@{d}> rejected RCPT <r@x.test>: {reply}",
    "{host}{fields} F=<s@{d}> temporarily rejected RCPT <r@x.test>: {reply}",
    "{host}{fields} rejected EHLO or HELO foo: {reply}",
    "{host}{fields} F=<s@{d}> rejected RCPT <r@x.test>",
    "{host}{fields} F=<s@{d}>temporarily rejected RCPT <r@x.test>: {reply}",
    "{host}{fields} F=<s@{d}> rejected MAIL <s@{d}>: {reply}",
    "{host}{fields} F=s@{d}: rejected RCPT <r@x.test>: {reply}",
    "{host}{fields} F=<s@{d}> dropped by 'connect' ACL rejected RCPT x: {reply}",
    "{host}{fields} F=<> rejected RCPT <r@x.test>: {reply}",
    "{host}{fields} F=<s@{d}rejected rejected RCPT <r@x.test>: {reply}",
    "{host} U=x F=<s@{d}> rejected by non-SMTP ACL: {reply}",
    "{driver} authenticator failed for {client}: {reply}",
    "SMTP protocol synchronization error (input sent without waiting for greeting): rejected connection from "
    "{host} input=\"EHLO x\"",
    "SMTP protocol synchronization error (next input sent too soon: pipelining was not advertised): rejected "
    '"EHLO x" {host}',
    "SMTP call from {client} dropped: too many nonmail commands",
)  # fmt: skip
REPLIES = (
    "550 5.1.1 <r@x.test>: Recipient address rejected",
    "551 5.7.1 Sender address is not valid for your login",
    "451 4.7.1 greylisted", "504 5.5.2 <foo>: Helo command rejected", "535 Incorrect authentication data",
    "relay not permitted", "5.7.1 no", "550", "250 ok", "435 Unable to authenticate at present",
)  # fmt: skip
CLIENTS = ("([192.0.2.1]) [192.0.2.1]", "h.x.test [192.0.2.2]:25",
           "(User) [192.0.2.3]:4250 I=[192.0.2.1]:587",
           "[192.0.2.4]", "h.x (a b) [192.0.2.5]")  # fmt: skip
DRIVERS = ("plain_server", "dovecot_login", "x" * 300, "H=x", "re_auth", "SMTP")
DOMAINS = ("example.com", "EXAMPLE.org.", "x", "", "b.test>")


def delivery(flag: str, address: str, host: str, fields: str, c: str, dt: str, remote: str) -> str:
    hostpart = f" {host}" if host else ""
    return f"{flag} {address} R=r T=t{fields}{hostpart}{c}{dt}{remote}"


@st.composite
def exim_line(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        body = delivery(
            draw(st.sampled_from((*FLAGS[:5], *FLAGS))), draw(st.sampled_from(ADDRESSES)),
            draw(st.sampled_from(("", *HOSTS))), draw(st.sampled_from(FIELDS)), draw(st.sampled_from(CS)),
            draw(st.sampled_from(DTS)), draw(st.sampled_from(REMOTES)),
        )  # fmt: skip
        body = draw(st.sampled_from(QIDS)) + " " + body
    else:
        body = draw(st.sampled_from(REJECTS)).format(
            host=draw(st.sampled_from(HOSTS)), fields=draw(st.sampled_from(FIELDS)),
            d=draw(st.sampled_from(DOMAINS)), reply=draw(st.sampled_from(REPLIES)),
            driver=draw(st.sampled_from(DRIVERS)), client=draw(st.sampled_from(CLIENTS)),
        )  # fmt: skip
    stamp = draw(st.sampled_from((*STAMPS[:3], *STAMPS)))
    line = f"{stamp} {body}"
    for _ in range(draw(st.sampled_from((0, 0, 0, 1, 2)))):  # a few random edits, anywhere
        i = draw(st.integers(0, len(line)))
        j = draw(st.integers(i, min(len(line), i + 3)))
        line = (
            line[:i] + draw(st.text(alphabet=" :;,<>@[]()/.=-\"'05aZé€\udc80\r\x00H", max_size=2)) + line[j:]
        )
    return line


def test_combinations_of_the_branch_pieces_count_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    # The random tests sample these pieces; here a fixed sample of their combinations, in whole runs.
    head = "2026-11-29 07:21:49 1xWjNg-000HJ0-Zx "
    deliveries = [
        head + delivery(flag, address, host, fields, c, dt, remote)
        for flag in FLAGS[:5]
        for address in ADDRESSES
        for host in ("", *HOSTS)
        for fields in FIELDS[:3]
        for c in CS
        for dt in DTS[:4]
        for remote in (REMOTES if flag in ("**", "==") else REMOTES[:2])
    ]
    refusals = [
        "2026-11-29 07:22:01 "
        + body.format(host=host, fields=fields, d=d, reply=reply, driver=driver, client=client)
        for body in REJECTS
        for host in HOSTS
        for fields in FIELDS
        for d in DOMAINS
        for reply in REPLIES
        for driver in DRIVERS[:2]
        for client in CLIENTS[:3]
    ]
    refusals = list(dict.fromkeys(refusals))
    # Every combination once is ~750k lines, minutes of CI; a fixed sample of 60k keeps every
    # piece (each piece is in thousands of combinations) at a tenth of the time.
    lines = random.Random(18).sample(deliveries + refusals, 60_000)
    assert_same(chunked(lines, 5000))
    # The pieces reach the rows, not only parse(): most of the events are counted in batches.
    for mode in MODES[1:]:
        batched, parsed = batched_events(chunked(lines, 5000), monkeypatch, mode)
        assert batched >= 0.5 * parsed
    # And the C scanner makes each line's row exactly as the regex does.
    for line in lines:
        assert c_item(line) == regex_item(line), line


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(exim_line(), min_size=1, max_size=40), size=st.integers(1, 40))
def test_random_chunks_count_the_same(lines: list[str], size: int) -> None:
    lines = [line.replace("\n", " ") for line in lines]
    assert_same(chunked(lines, size))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=exim_line())
def test_one_random_line_counts_the_same(line: str) -> None:
    # One line per chunk: a wrong row cannot hide among right ones.
    assert_same([line.replace("\n", " ") + "\n"])


def test_a_stamp_parse_rejects_goes_line_by_line() -> None:
    # Feb 30 has the row's shape; its time is impossible, so the batch goes to parse(), which
    # counts it as bad-timestamp, and the good line beside it still counts.
    good = '2026-11-29 07:21:49 1xWjNg-000HJ0-Zx => u@x.test R=r T=t H=mx [192.0.2.1] C="250 ok"'
    bad = good.replace("2026-11-29", "2026-02-30")
    assert_same([good + "\n" + bad + "\n"])
    counts = run("regex", [good + "\n" + bad + "\n"])[0]
    assert counts.parsed == 1
    assert counts.reasons == {"bad-timestamp": 1}


def test_c_rows_equal_regex_rows_on_every_cut_of_every_sample_line() -> None:
    for log in LOGS:
        for line in read_lines(log):
            if "\r" in line or max(map(ord, line), default=0) > 0xFF:
                continue  # the C scanner leaves such chunks to Python
            for end in range(len(line) + 1):
                cut = line[:end]
                assert c_item(cut) == regex_item(cut), cut


def test_c_rows_equal_regex_rows_with_a_nul_or_delimiter_anywhere_in_an_event_line() -> None:
    # A NUL byte is an ordinary character to the regex; C string functions must not stop at it.
    for log in LOGS:
        for line in read_lines(log):
            if "\r" in line or max(map(ord, line), default=0) > 0xFF:
                continue
            if not isinstance(regex_item(line), tuple):
                continue
            for i in range(len(line) + 1):
                for piece in ("\x00", "@", " ", '"', ":", "]", ">"):
                    odd = line[:i] + piece + line[i:]
                    assert c_item(odd) == regex_item(odd), odd


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=exim_line())
def test_c_rows_equal_regex_rows_on_random_lines(line: str) -> None:
    if "\r" in line or "\n" in line or max(map(ord, line), default=0) > 0xFF:
        return  # the C scanner leaves such chunks to Python; the tests above cover them
    assert c_item(line) == regex_item(line)


def test_the_c_scanner_stays_in_bounds_under_addresssanitizer(tmp_path: Path) -> None:
    # Built with ASan and UBSan, it must read every cut and mutated line and chunk without a
    # finding, and give the same results as the installed build.
    so = sanitized.build(SOURCE, tmp_path / "_exim_scan.so")
    corpus = [line for log in LOGS for line in read_lines(log) if isinstance(regex_item(line), tuple)]
    (tmp_path / "corpus.json").write_text(json.dumps(corpus))
    pieces = [*' :;,<>@[]()/.=-"\'(#5\x00', " H=", ' C="', " DT=", "rejected ", "F=", "\r", " <", ": ",
              "SMTP error from remote mail server after ", "RCPT ", "temporarily "]  # fmt: skip
    (tmp_path / "pieces.json").write_text(json.dumps(pieces))
    probe = f"""
{sanitized.loader("asan._exim_scan", so)}a = m
import json, random
from logscan.parsers._exim_scan import scan as installed, runs as installed_runs, set_reasons
from datetime import UTC
from zoneinfo import ZoneInfo
from logscan.parsers import make_parser
from logscan.parsers.base import ParserOptions
from logscan.parsers.exim import duration
from logscan.parsers.reasons import tables
a.set_reasons(*tables())
set_reasons(*tables())
PIECES = json.load(open({str(tmp_path / "pieces.json")!r}))
def summaries(runs, text, tz):
    # Each call its own parser and memos, so that the two builds are asked the same.
    p = make_parser("exim", ParserOptions(log="x", tz=tz, reference_time=0))
    dom = lambda key: p.domain("@" + key.partition("\\n")[0])
    return runs(text, rnd.choice((1, 8)), True, rnd.random() < 0.5, p.hour_time, dom, {{}}, duration, {{}})
def check(text, rows):
    assert a.scan(text, rows) == installed(text, rows), text
    tz = rnd.choice((UTC, ZoneInfo("Europe/Berlin")))
    state = rnd.getstate()
    got = summaries(a.runs, text, tz)
    rnd.setstate(state)
    assert got == summaries(installed_runs, text, tz), text
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


# --- runs(): the C reader's run summaries (docs/decisions/0018-exim-bulk.md, "Runs counted in C")


def batches(
    chunk: str,
    c: bool,
    each_reply: bool,
    tz: Any = UTC,
    read_again: bool = False,
    per_minute: bool = False,
    scan_grouped: bool = False,
) -> list[Any] | None:
    """A chunk as one reader makes it: each line left to parse(), and for each run of rows its
    lines and batch(); None when the reader declines the chunk. `read_again`: the C reader
    scans without each reply, and batch() must read the run again to list them. `per_minute`:
    batch() may group each minute's replies; `scan_grouped`: the C reader scans them grouped."""
    p = make_parser("exim", ParserOptions(log="x.log", tz=tz, reference_time=REFERENCE))
    assert isinstance(p, EximParser)
    reader = exim_bulk.EximBulk(p)
    if c:
        reader._each_reply = each_reply and not read_again
        reader._per_minute = reader._each_reply and (per_minute or scan_grouped)
        got = reader.scan(chunk, True)
        items = None if got is None else got[1]
    else:
        assert PREFILTER is not None
        wanted = [line for line in chunk.split("\n")[:-1] if not PREFILTER.skips(line)]
        items = reader.rows(wanted) if wanted else []
    if items is None:
        return None
    out: list[Any] = []
    for kind, run in groupby(items, type):
        if kind is str:
            out.extend(run)
            continue
        rows = cast(list[tuple[str, ...]], list(run))
        out.append(([row[-1] for row in rows], ordered(reader.batch(rows, each_reply, False, per_minute))))
    return out


def ordered(batch: EventBatch | None) -> Any:
    """A batch's fields with each dict as its list of items: their order reaches the aggregate's
    dicts, and so the order of the state and report."""
    if batch is None:
        return None
    return [list(v.items()) if isinstance(v, dict) else v for v in msgspec.structs.astuple(batch)]


def assert_same_batches(chunk: str, tz: Any = UTC, min_run: int = 1) -> None:
    """The C reader's items and batches are the regex reader's, with and without each reply."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(exim_bulk, "_MIN_RUN", min_run)
        for each_reply in (False, True):
            want = batches(chunk, False, each_reply, tz)
            if want is None:  # a CR or a long line: the regex reader leaves the chunk to parse()
                continue
            got = batches(chunk, True, each_reply, tz)
            if got is None:  # a character above U+00FF: the C reader leaves the chunk to Python
                assert max(map(ord, chunk)) > 0xFF
                continue
            assert got == want, (each_reply, chunk)
            if each_reply:
                assert batches(chunk, True, True, tz, read_again=True) == want, chunk
                assert batches(chunk, True, True, tz, scan_grouped=True) == want, chunk
                # Grouped per minute, the C reader's runs are base.per_minute() of the listed
                # replies (the alert engine counts those as the replies: test_alerts_bulk).
                grouped = [grouped_as_per_minute(item) for item in want]
                for again in (False, True):
                    assert batches(chunk, True, True, tz, again, per_minute=True) == grouped, chunk


def grouped_as_per_minute(item: Any) -> Any:
    """A batches() item of a run listing each reply, as the run grouped per minute reads."""
    if isinstance(item, str) or item[1] is None:
        return item
    fields = list(item[1])
    times, codes = fields[_TIMES], fields[_TIMES + 1]
    found = per_minute(times, codes)
    assert found is not None  # a run's times never go back
    fields[_TIMES], fields[_TIMES + 1], fields[_WEIGHTS] = found
    return (item[0], fields)


_TIMES, _WEIGHTS = (EventBatch.__struct_fields__.index(name) for name in ("times", "weights"))


def test_run_summaries_are_the_regex_batches_on_the_sample_logs() -> None:
    for log in LOGS:
        lines = read_lines(log)
        for size in (1, 2, 3, 7, 50, len(lines)):
            for chunk in chunked(lines, size):
                assert_same_batches(chunk)
        assert_same_batches("".join(line + "\n" for line in lines), min_run=exim_bulk._MIN_RUN)


def test_run_summaries_are_the_regex_batches_at_every_chunk_cut() -> None:
    lines = read_lines(LOGS[1])[:300]
    for i in range(len(lines) + 1):
        for chunk in chunked(lines[:i], 300) + chunked(lines[i:], 300):
            assert_same_batches(chunk)


def test_run_summaries_are_the_regex_batches_on_a_generated_log(generated: list[str]) -> None:
    for chunk in chunked(generated, 4096):
        assert_same_batches(chunk, min_run=exim_bulk._MIN_RUN)


def test_run_summaries_are_the_regex_batches_on_the_branch_pieces() -> None:
    head = "2026-11-29 07:21:49 1xWjNg-000HJ0-Zx "
    lines = [
        head + delivery(flag, address, host, fields, c, dt, remote)
        for flag in FLAGS[:5]
        for address in ADDRESSES[:6]
        for host in ("", *HOSTS[:4])
        for fields in FIELDS[:2]
        for c in CS
        for dt in DTS
        for remote in (REMOTES if flag in ("**", "==") else REMOTES[:1])
    ] + [
        "2026-11-29 07:22:01 "
        + body.format(host=host, fields=fields, d=d, reply=reply, driver=driver, client=client)
        for body in REJECTS
        for host in HOSTS[:3]
        for fields in FIELDS[:2]
        for d in DOMAINS
        for reply in REPLIES
        for driver in DRIVERS[:1]
        for client in CLIENTS[:2]
    ]
    lines = random.Random(19).sample(lines, min(len(lines), 20_000))
    for chunk in chunked(lines, 500):
        assert_same_batches(chunk)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(exim_line(), min_size=1, max_size=40), size=st.integers(1, 40))
def test_run_summaries_are_the_regex_batches_on_random_chunks(lines: list[str], size: int) -> None:
    lines = [line.replace("\n", " ") for line in lines]
    for chunk in chunked(lines, size):
        assert_same_batches(chunk)


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Europe/Berlin", "2026-03-29"),  # spring forward: a nonexistent hour, times going back
        ("Europe/Berlin", "2026-10-25"),  # fall back: an hour twice
        ("Africa/Monrovia", "1971-06-01"),  # an offset of -0:44:30: minutes cut mid-stamp-minute
        ("Asia/Kolkata", "2026-11-29"),  # +5:30
    ],
)
def test_run_summaries_are_the_regex_batches_in_odd_zones(zone: str, day: str) -> None:
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    rnd = random.Random(zone + day)
    base = '1xWjNg-000HJ0-Zx => u@x.test R=r T=t H=mx [192.0.2.1] C="250 ok" DT=1s'
    refused = "H=(h) [192.0.2.9] F=<a@s.test> rejected RCPT <b@x.test>: 550 5.1.1 unknown user"
    lines = []
    for hour in range(0, 5):
        for _ in range(40):
            stamp = f"{day} {hour:02d}:{rnd.randrange(60):02d}:{rnd.randrange(61):02d}"
            if rnd.random() < 0.5:
                stamp += f".{rnd.randrange(1000):03d}"
            lines.append(f"{stamp} {base if rnd.random() < 0.5 else refused}")
    for ordered in (sorted(lines), lines):  # in time order (batches), and not (parse())
        for chunk in chunked(ordered, 25):
            assert_same_batches(chunk, tz=ZoneInfo(zone))


def exim_reason(code: str, enhanced: str, reply: str) -> str | None:
    """The C classifier of a row's reply (a failure, not an import error, when it is not built)."""
    got: str | None = import_module("logscan.parsers._exim_scan").reason(code, enhanced, reply)
    return got


REASON_PIECES = (
    *(phrase for phrase, _ in tables()[0]),
    *(phrase.upper() for phrase, _ in tables()[0][::7]),
    "<spam@x.test>", "<", ">", "<<a>", "<" + "a" * 330 + ">", " ", "user unknown", "é", "À", "\x00",
)  # fmt: skip
ENHANCED_CODES = ("", "5.1.1", "4.7.1", "5.7.1", "4.2.2", "5.2.2", "5.7.8", "5.5.5", *tables()[1])


@settings(max_examples=3000, deadline=None)
@given(
    code=st.sampled_from(
        ["421", "450", "451", "452", "530", "534", "535", "550", "551", "552", "554", "599"]
    ),
    enhanced=st.sampled_from(ENHANCED_CODES),
    pieces=st.lists(
        st.one_of(st.sampled_from(REASON_PIECES), st.text(alphabet="aZ <>.é", max_size=8)), max_size=12
    ),
    pad=st.integers(0, 420),
)
def test_c_reasons_are_refusal_reason(code: str, enhanced: str, pieces: list[str], pad: int) -> None:
    # The C classifier reads a row's reply text as batch() hands it to refusal_reason().
    text = "".join(pieces)
    for reply in (text, "x" * pad + text, text + "y" * pad):
        want = refusal_reason(code, enhanced, exim_bulk._reply(reply), 0)
        assert exim_reason(code, enhanced, reply) == want, (code, enhanced, reply)


def test_c_reasons_find_every_phrase_in_priority_order() -> None:
    phrases = tables()[0]
    for i, (phrase, reason) in enumerate(phrases):
        later = " ".join(p for p, _ in phrases[i + 1 :][:5])
        for text in (phrase, phrase.upper(), f"550 {later} {phrase.title()} end", f"{phrase}<a@b>"):
            assert exim_reason("550", "", text) == refusal_reason("550", "", exim_bulk._reply(text), 0)
        assert exim_reason("550", "", phrase) == reason


def test_run_summaries_with_more_reply_keys_than_the_c_table_holds() -> None:
    # The C reader counts the first 64 keys of a run in a table, later ones in a dict, and
    # leaves more than 32 (direction, code, reason) to batch(); the batch must still list
    # every key in first-seen order.
    head = "2026-11-29 07:21:49 1xWjNg-000HJ0-Zx "
    lines = [
        head + f'=> u@x.test R=r T=t H=mx [192.0.2.1] C="250 2.{i % 7}.{i}" DT=1s'
        if i % 3
        else f"2026-11-29 07:21:49 H=(h) [192.0.2.9] F=<a@s> rejected RCPT <b@x>: 5{i % 100:02d} 5.1.{i} no"
        for i in range(200)
    ]
    chunk = "".join(line + "\n" for line in lines + lines[::-1])
    assert_same_batches(chunk)
    summary = batches(chunk, True, False)
    assert summary is not None
    assert len(summary) == 1
    assert len(summary[0][1][3]) > 150  # replies
    assert len(summary[0][1][11]) > 32  # reasons


def test_c_reasons_from_other_tables() -> None:
    # set_reasons() takes any table of the shape (one-character phrases, odd basic keys):
    # the C classifier decides as _decide() would from it; non-ASCII phrases are refused.
    scan = import_module("logscan.parsers._exim_scan")
    phrases = (("zz", "b"), ("q", "a"), ("qx", "c"))
    try:
        scan.set_reasons(phrases, {"5.1.1": "e"}, {"551": "d", "55": "never", "abc": "never"})
        for text, enhanced, code, want in [
            ("a qx b", "", "550", "a"),  # "q" comes first in the table
            ("a zz q", "", "550", "b"),
            ("Q", "", "550", "a"),
            ("none", "5.1.1", "551", "e"),
            ("none", "5.1.2", "551", "d"),
            ("none", "", "550", "other"),
        ]:
            assert exim_reason(code, enhanced, text) == want, text
        with pytest.raises(ValueError, match="phrase 0"):
            scan.set_reasons((("é", "x"),), {}, {})
    finally:
        scan.set_reasons(*tables())
    assert exim_reason("550", "", "relay access denied") == "relay_denied"


@pytest.mark.parametrize("level", [0, 1, 2])
def test_the_prefilter_finds_the_same_lines_each_way(level: int) -> None:
    # The triggers are looked for 32, 16 or 1 places at a time (by the CPU); every way must
    # keep the lines the Python prefilter keeps, a trigger at any place of a line and chunk.
    scan = import_module("logscan.parsers._exim_scan")
    was = scan.set_simd(level)
    try:
        filler = "2026-11-29 07:21:49 1xWjNg-000HJ0-Zx Completed"
        triggers = [
            "rejected ",
            " authenticator failed for ",
            " exim",
            "]exim",
            " dropped",
            "exim",
            " exi",
            "xim",
        ]
        rnd = random.Random(level)
        for trigger in triggers:
            for at in range(len(filler) + 1):
                lines = [filler] * rnd.randrange(0, 6) + [filler[:at] + trigger + filler[at:]] + [filler] * 3
                chunk = "".join(line + "\n" for line in lines)
                assert PREFILTER is not None
                want = [line for line in lines if not PREFILTER.skips(line)]
                got = C_SCAN(chunk, False) if C_SCAN is not None else None
                assert got == (len(lines), want), (trigger, at)
        for log in LOGS:
            lines = [
                line
                for line in read_lines(log)
                if "\r" not in line and max(map(ord, line), default=0) <= 0xFF
            ]
            for chunk in chunked(lines, 37):
                assert_same_batches(chunk)
    finally:
        scan.set_simd(was)
