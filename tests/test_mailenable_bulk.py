"""The MailEnable bulk path (docs/decisions/0019-mailenable-bulk.md) counts exactly what
parse() line by line counts, and leaves the parser's per-message state as parse() does.

Three readers of the same chunks must leave identical aggregates, line counts and state: the
general path (parse() and Aggregate.add() per event), the pure-Python bulk reader (the C
extension forced off, as on a Windows install without a compiler) and the C scanner. The C
scanner's items must also equal item()'s, line by line, on real, cut and mutated lines.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.gen_logs import generate
from logscan.core.aggregate import Aggregate
from logscan.core.pipeline import LineCounts, Pipeline
from logscan.events import EventBatch
from logscan.parsers import mailenable_bulk, make_parser, scan_paths
from logscan.parsers.base import Item, ParserOptions, Run, per_minute
from logscan.parsers.mailenable import STATE_CAP, MailEnableParser
from tests import sanitized

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "logscan" / "parsers" / "_mailenable_scan.c"
LOGS = (
    ROOT / "tests" / "samples" / "mailenable.log",
    ROOT / "sample_logs" / "mailenable" / "SMTP-Activity-261128.log",
    ROOT / "tests" / "data" / "mailenable-9.76-SMTP-Activity.log",
)
MODES = ("general", "python", "c")
C_SCAN = mailenable_bulk._scan
C_TALLY = mailenable_bulk._tally


def parser(tz: tzinfo = UTC) -> MailEnableParser:
    p = make_parser("mailenable", ParserOptions(log="x.log", tz=tz))
    assert isinstance(p, MailEnableParser)
    return p


def use(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C extension on (mode "c") or off (as if it was never built), the Python reader on."""
    monkeypatch.setattr(mailenable_bulk, "python_rows", True)
    monkeypatch.setattr(mailenable_bulk, "_scan", C_SCAN if mode == "c" else None)
    monkeypatch.setattr(mailenable_bulk, "_tally", C_TALLY if mode == "c" else None)


def batched_share(
    mode: str, chunks: list[str], monkeypatch: pytest.MonkeyPatch, python_rows: bool = True
) -> tuple[float, int]:
    """The share of the parsed events that reached the aggregate in batches, reading `chunks`
    with one reader; and how many events were parsed."""
    use(mode, monkeypatch)
    monkeypatch.setattr(mailenable_bulk, "python_rows", python_rows)
    agg = Aggregate()
    batched: list[int] = []
    add_batch = agg.add_batch

    def counted(b: EventBatch) -> bool:
        batched.append(b.events)
        return add_batch(b)

    monkeypatch.setattr(agg, "add_batch", counted)
    pipe = Pipeline("x.log", parser(), agg)
    for chunk in chunks:
        pipe.feed_text(chunk)
    return sum(batched) / pipe.counts.parsed, pipe.counts.parsed


def run(
    mode: str, chunks: list[str], monkeypatch: pytest.MonkeyPatch, tz: tzinfo = UTC
) -> tuple[LineCounts, dict[str, Any]]:
    """Feed the chunks through one reader: the line counts, the aggregate and the parser's state."""
    use(mode, monkeypatch)
    agg = Aggregate(top_domains=3, windows=(60, 300))
    p = parser(tz)
    pipe = Pipeline("x.log", p, agg, keep_examples=True)
    if mode == "general":
        pipe.bulk = None
    for chunk in chunks:
        pipe.feed_text(chunk)
    state = {
        **agg.to_dict(),
        "diagnosis": agg.diagnosis.document(),
        "transactions": list(p.transactions.items()),  # order included: it decides evictions
    }
    return pipe.counts, state


def assert_same(
    chunks: list[str], monkeypatch: pytest.MonkeyPatch, modes: tuple[str, ...] = MODES, tz: tzinfo = UTC
) -> None:
    want = run("general", chunks, monkeypatch, tz)
    for mode in modes[1:]:
        got = run(mode, chunks, monkeypatch, tz)
        assert got[0] == want[0], mode
        assert got[1] == want[1], mode


def chunked(lines: list[str], size: int) -> list[str]:
    return ["".join(line + "\n" for line in lines[i : i + size]) for i in range(0, len(lines), size)]


def read_lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        return f.read().split("\n")[:-1]


def c_item(line: str) -> Item | None:
    """What the C scanner makes of one line: None when it skips it."""
    assert C_SCAN is not None
    got = C_SCAN(line + "\n", True)
    assert got is not None
    total, items = got
    assert total == 1
    assert len(items) <= 1
    if items and isinstance(items[0], Run):
        [row] = c_rows(items[0])
        return row
    return items[0] if items else None


def c_rows(run: Run) -> list[tuple[str, ...]]:
    """A C Run's rows as item() makes them; its lines and first line checked against them."""
    rows: list[tuple[str, ...]] = cast(Any, run).rows()
    lines = run.lines()
    assert len(cast(Any, run)) == len(rows) >= 1
    assert lines == [row[-1] for row in rows]
    assert lines[0] is cast(Any, run).first  # the object the parser's undo is keyed on
    return rows


def python_items(chunk: str) -> list[Item]:
    """item() of each line of the chunk, skipped lines left out (the Python reader's scan)."""
    return [i for i in map(mailenable_bulk.item, chunk.split("\n")[:-1]) if i is not None]


def assert_c_scan_is_item(chunk: str) -> None:
    """The C scanner's items for a chunk: item()'s, each maximal run of rows as one Run."""
    assert C_SCAN is not None
    got = C_SCAN(chunk, True)
    assert got is not None
    total, items = got
    assert total == chunk.count("\n")
    assert not any(isinstance(a, Run) and isinstance(b, Run) for a, b in itertools.pairwise(items))
    assert not any(isinstance(i, tuple) for i in items)
    assert [r for i in items for r in (c_rows(i) if isinstance(i, Run) else [i])] == python_items(chunk)


def test_the_c_scanner_is_built() -> None:
    # setup.py builds it where a C compiler exists; without it the tests here would still
    # pass on the Python reader alone, so its absence is a failure, not a skip.
    assert C_SCAN is not None
    assert C_TALLY is not None
    assert scan_paths()["mailenable"] == "C"


def test_without_the_extension_lines_go_one_by_one_and_the_python_reader_still_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The Windows install: no compiler, no extension. MailEnable then reads line by line (the
    # Python reader would be slower) and --version says so; the Python reader, turned on,
    # still batches nearly every event (the other tests hold it to parse()).
    text = ["".join(line + "\n" for line in read_lines(LOGS[2]))]
    share, parsed = batched_share("python", text, monkeypatch, python_rows=False)
    assert parsed > 4000
    assert share == 0
    assert batched_share("python", text, monkeypatch)[0] >= 0.95
    monkeypatch.setitem(sys.modules, "logscan.parsers._mailenable_scan", None)  # as if never built
    assert scan_paths()["mailenable"] == "line by line"


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.name)
def test_sample_logs_count_the_same(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = read_lines(log)
    for size in (1, 7, 1000, len(lines)):
        assert_same(chunked(lines, size), monkeypatch)


def test_the_bulk_paths_count_reasons_offenders_and_domains_as_parse_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The comparisons are no bystanders: the real log has refusals of several reasons, with
    # offenders, and DATA rows whose domains come from the state only.
    state = run("python", chunked(read_lines(LOGS[2]), 1000), monkeypatch)[1]
    assert len({row[4] for row in state["reasons"]}) >= 3
    offenders = [r["offenders"] for row in state["diagnosis"]["codes"] for r in row["reasons"]]
    assert any(o.get("client_ip") for o in offenders)
    assert any(o.get("sender_domain") for o in offenders)
    assert len(state["domains"]) > 3


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = tmp_path_factory.mktemp("gen") / "mailenable.log"
    generate("mailenable", 30_000, path, seed=7, hours=3.0, ndomains=300)
    return read_lines(path)


@pytest.mark.parametrize("mode", MODES[1:])
def test_a_generated_log_counts_the_same_and_mostly_in_batches(
    generated: list[str], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for size in (333, 4096, len(generated)):
        assert_same(chunked(generated, size), monkeypatch, ("general", mode))
    assert batched_share(mode, chunked(generated, 4096), monkeypatch)[0] >= 0.98


@pytest.mark.parametrize(
    ("zone", "day"),
    [("America/New_York", "2026-03-08"), ("America/New_York", "2026-11-01"),
     ("Australia/Lord_Howe", "2026-10-04"), ("Australia/Lord_Howe", "2026-04-05")],
)  # fmt: skip
def test_minutes_around_a_clock_change_are_dated_as_parse_does(
    zone: str, day: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The C tally keeps each hour's start and adds the minutes, as parse()'s Clock does: the
    # same times on the hours a zone skips or repeats, and where a change is 30 minutes (Lord Howe).
    rows = [line for line in read_lines(LOGS[2]) if line.count("\t") == 11][:400]
    start = datetime.fromisoformat(day)
    lines = [
        (start + timedelta(minutes=i * 7 // 10, seconds=i % 60)).strftime("%m/%d/%y %H:%M:%S") + row[17:]
        for i, row in enumerate(rows)
    ]
    assert_same(chunked(lines, 150), monkeypatch, tz=ZoneInfo(zone))


def test_more_transactions_than_the_state_keeps_evict_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    # STATE_CAP open transactions, then more: the oldest tenth goes, in insertion order, and
    # the DATA rows of evicted and kept transactions find (or miss) their domains alike.
    def tx(i: int, verb: str, command: str, reply: str, agent: str = "SMTP-OU") -> str:
        return (
            f"11/28/26 10:{i % 60:02d}:{i % 59:02d}\t{agent}\t{i:032X}.MAI\t1\t198.51.100.{i % 250}\t{verb}"
            f"\t{command}\t{reply}\t1\t2\t\tsubject"
        )

    n = STATE_CAP + STATE_CAP // 4
    lines = [tx(i, "MAIL", f"MAIL FROM:<a@s{i % 97}.example.org>", "250 OK") for i in range(n)]
    lines += [tx(i, "RCPT", f"RCPT TO:<b@r{i % 89}.example.net>", "250 2.1.5 OK") for i in range(0, n, 3)]
    lines += [tx(i, "RCPT", f"RCPT TO:<c@r{i % 7}.example.net>", "250 OK") for i in range(0, n, 6)]
    lines += [tx(i, "DATE", "", "250 2.6.0 queued" if i % 5 else "554 5.7.1 spam") for i in range(0, n, 2)]
    lines += [tx(i, "QUIT", "QUIT", "221 bye") for i in range(0, n, 4)]
    lines.sort(key=lambda line: line[:17])  # in time order, as a log is
    assert_same(chunked(lines, 5000), monkeypatch)


def many_distinct_lines(n: int) -> list[str]:
    """Rows with more distinct message files, domains, IPs and refusal replies than the C
    tally's tables hold (4,096 files and IPs, 8,192 domains, 2,048 replies): their slots are
    taken over, and every answer must still be parse()'s."""
    lines = []
    for i in range(n):
        stamp = f"11/28/26 1{i // 36000 % 10}:{i // 600 % 60:02d}:{i // 10 % 60:02d}"
        qid, ip = f"{i // 3:032X}.MAI", f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
        mail = i % 3 == 0
        verb = "MAIL" if mail else "RCPT"
        command = f"MAIL FROM:<a@s{i}.example>" if mail else f"RCPT TO:<b@r{i}.test>"
        reply = f"550 5.7.1 rejected for policy {i} <x{i}@y.example>" if i % 2 else "250 OK"
        agent = "SMTP-IN" if i % 4 else "SMTP-OU"
        cols = (stamp, agent, qid, "1", ip, verb, command, reply, "1", "2", "", "s")
        lines.append("\t".join(cols))
    return lines


def test_more_distinct_names_than_the_c_tables_hold_count_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    assert_same(chunked(many_distinct_lines(20_000), 3000), monkeypatch, ("general", "c"))


def test_a_batch_older_than_the_kept_minutes_goes_line_by_line_with_the_state_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With a 1-minute window six buckets are kept. A batch of an older minute is refused by
    # add_batch(); its lines then go through parse(), which must see the transactions as they
    # were before the batch (its MAIL/RCPT rows were already applied by walk()).
    def row(minute: str, verb: str, command: str, reply: str, qid: str, agent: str = "SMTP-OU") -> str:
        stamp = f"11/28/26 {minute}:07"
        cols = (stamp, agent, f"{qid}.MAI", "1", "198.51.100.1", verb, command, reply, "1", "2", "")
        return "\t".join(cols) + "\ts\n"

    recent = "".join(row(f"10:0{m}", "DATE", "", "250 queued", "A" * 32) for m in range(6))
    old = (
        row("09:00", "RCPT", "RCPT TO:<x@late.example.net>", "250 OK", "B" * 32)
        + row("09:00", "DATE", "", "550 no", "B" * 32)
        + row("09:00", "RCPT", "RCPT TO:<x@example.com>", "550 no such user", "D" * 32, "SMTP-IN")
        + row("09:00", "QUIT", "QUIT", "221 bye", "B" * 32)
        + row("09:00", "QUIT", "QUIT", "221 bye", "D" * 32, "SMTP-IN")
        + row("09:00", "MAIL", "MAIL FROM:<y@new.example.org>", "250 OK", "C" * 32)
        + row("09:00", "DATE", "", "250 queued", "B" * 32)
    )
    first = row("08:59", "MAIL", "MAIL FROM:<z@early.example.org>", "250 OK", "B" * 32) + row(
        "08:59", "MAIL", "MAIL FROM:<w@client.example.org>", "250 OK", "D" * 32, "SMTP-IN"
    )

    def state(mode: str, undo: bool = True) -> tuple[dict[str, Any], list[tuple[str, tuple[str, str]]]]:
        use(mode, monkeypatch)
        agg = Aggregate(windows=(60,))
        p = parser()
        if not undo:
            monkeypatch.setattr(MailEnableParser, "undo_from", lambda self, line, saved: None)
        pipe = Pipeline("x.log", p, agg)
        if mode == "general":
            pipe.bulk = None
        taken: list[bool] = []
        add_batch = agg.add_batch

        def counted(b: EventBatch) -> bool:
            taken.append(add_batch(b))
            return taken[-1]

        monkeypatch.setattr(agg, "add_batch", counted)
        for chunk in (first, recent, old):
            pipe.feed_text(chunk)
        assert (False in taken) == (mode != "general")
        return {**agg.to_dict(), "diagnosis": agg.diagnosis.document()}, list(p.transactions.items())

    want = state("general")
    for mode in MODES[1:]:
        assert state(mode) == want, mode
    # The undo matters: without it the replayed RCPT and DATE rows miss their sender domain.
    assert state("python", undo=False) != want
    # The C path needs none: a batch's walk through the state waits until the aggregate takes
    # it (EventBatch.fill), so a refused batch never changed it.
    assert state("c", undo=False) == want


@settings(max_examples=300, deadline=None)
@given(
    mo=st.integers(0, 13),
    day=st.integers(0, 32),
    yy=st.integers(0, 99),
    hh=st.integers(0, 25),
    mi=st.integers(0, 61),
)
def test_valid_minute_is_what_the_parser_dates(mo: int, day: int, yy: int, hh: int, mi: int) -> None:
    text = f"{mo:02d}/{day:02d}/{yy:02d} {hh:02d}:{mi:02d}"
    assert mailenable_bulk.valid_minute(text) == (parser().minute(text) is not None)


def test_every_february_29_is_dated_as_the_parser_dates_it() -> None:
    p = parser()
    for yy in range(100):
        for day in (28, 29, 30):
            text = f"02/{day:02d}/{yy:02d} 12:00"
            assert mailenable_bulk.valid_minute(text) == (p.minute(text) is not None), text


# --- random lines: sample rows with their columns replaced by the pieces the readers branch on

BASE = [line for line in read_lines(LOGS[2]) if line.count("\t") >= 11][:400]
QIDS = ("4147BA0C331340D5BED9B73BD0901D12.MAI", "ABFE4D7E109A40A6A49A22A6951B6761.MAI", "X.MAI.MAI", "nomai",
        "Y" * 65 + ".MAI", "Z" * 64 + ".MAI", "")  # fmt: skip
PIECES: dict[int, tuple[str, ...]] = {
    0: ("09/05/18 00:00:53", "02/29/20 10:00:60", "02/29/19 10:00:00", "13/01/20 00:00:00",
        "12/31/99 23:59:61", "01/01/00 24:00:00", "1/5/18 00:00:53", "09/05/18 00:00:5", "09/05/18 00:60:00",
        "０9/05/18 00:00:53"),
    1: ("SMTP-IN", "SMTP-OU", "IMAP4", "POP3", "SMTP-INX", "smtp-in", ""),
    2: QIDS,
    4: ("192.0.2.1", "", "2001:db8::1" * 5, "x" * 45),
    5: ("", "CONN", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "DATE", "AUTH", "STARTTLS", "RSET",
        "QUIT", "NOOP", "mail", "Rcpt", "ſTARTTLS", "XCLIENT", "TURN"),
    6: ("", "MAIL FROM:<a@b.example.org> SIZE=1", "RCPT TO:<u@Example.NET>", "RCPT TO:<a@b@c.example.com",
        "RCPT TO:<x>", "MAIL FROM: a@b.example.org", "RCPT TO:<@>", "MAIL FROM:<a@[192.0.2.1]>",
        "RCPT TO:<a@-bad-.example>", "MAIL FROM:<>", "RCPT TO:<a@b.example.org>x@y>",
        "RCPT TO:<a@é.example>"),
    7: ("", "250 OK", "250-mx hello", "550 5.1.1 no such user", "451 4.7.1 greylisted, try later",
        "250 2.1.0 Sender OK", "550-(#5.7.1) relay denied", "554 #5.7.1 spam", "250", "250-", "2501 x",
        "600 x", "354 Start mail input; end with <CRLF>.<CRLF>", "421 4.2.1 try later", "550 5.1.1234 x",
        "550 5.1.1.2", "530 denied access", "5.1.1 550", "250 2.6.0 queued", " 250 x",
        "452 4.5.3 Too many recipients"),
    8: ("0", "12", "", "1²", "x", "144"),
    9: ("0", "29", "", "٣"),
    11: ("", "subject", "a\tb", "subj\r", "=?UTF-8?B?VXAg?="),
}  # fmt: skip


@st.composite
def mailenable_line(draw: st.DrawFn) -> str:
    cols = draw(st.sampled_from(BASE)).split("\t", 11)
    for col, pieces in PIECES.items():
        if draw(st.integers(0, 3)) == 0:
            cols[col] = draw(st.sampled_from(pieces))
    line = "\t".join(cols)
    for _ in range(draw(st.sampled_from((0, 0, 0, 1, 2)))):  # a few random edits, anywhere
        i = draw(st.integers(0, len(line)))
        j = draw(st.integers(i, min(len(line), i + 3)))
        line = line[:i] + draw(st.text(alphabet="\t :<>@./-05aZé€\udc80\r\x00", max_size=2)) + line[j:]
    if draw(st.integers(0, 9)) == 0:
        line = line[: draw(st.integers(0, len(line)))]  # cut, as a crash leaves it
    return line.replace("\n", " ")


@settings(max_examples=3000, deadline=None)
@given(line=mailenable_line())
def test_a_skipped_line_parses_to_nothing_and_changes_no_state(line: str) -> None:
    p = parser()
    for qid in QIDS:
        p.transactions[qid.removesuffix(".MAI")] = ("s.example.org", "r.example.net")
    before = list(p.transactions.items())
    if mailenable_bulk.item(line) is None:
        assert p.parse(line) == ()
        assert list(p.transactions.items()) == before


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(mailenable_line(), min_size=1, max_size=60), size=st.integers(1, 60))
def test_random_chunks_count_the_same(lines: list[str], size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_same(chunked(lines, size), monkeypatch)


@settings(max_examples=3000, deadline=None)
@given(line=mailenable_line())
def test_c_items_equal_python_items(line: str) -> None:
    if max(map(ord, line), default=0) > 0xFF:
        return  # the C scanner leaves such chunks to Python
    assert c_item(line) == mailenable_bulk.item(line)



@settings(max_examples=500, deadline=None)
@given(lines=st.lists(mailenable_line(), min_size=1, max_size=40))
def test_c_runs_hold_python_items_of_fuzzed_chunks(lines: list[str]) -> None:
    chunk = "".join(line + "\n" for line in lines)
    if max(map(ord, chunk)) <= 0xFF:
        assert_c_scan_is_item(chunk)


def test_c_runs_hold_python_items_at_every_cut_of_a_sample_log() -> None:
    # Every chunk boundary of a real log (and of its first lines at every character): runs
    # start and end where lines for parse() and chunk ends cut them.
    lines = [line for line in read_lines(LOGS[2])[:400] if max(map(ord, line), default=0) <= 0xFF]
    text = "".join(line + "\n" for line in lines)
    cuts = [i + 1 for i, c in enumerate(text) if c == "\n"]
    for lo, hi in itertools.pairwise([0, *cuts[::7]]):
        assert_c_scan_is_item(text[lo:hi])
    for cut in range(1, 3000):
        head = text[:cut]
        head = head if head.endswith("\n") else head + "\n"
        assert_c_scan_is_item(head)


def test_c_items_equal_python_items_on_every_cut_of_every_sample_line() -> None:
    for log in LOGS:
        for line in dict.fromkeys(read_lines(log)):
            if max(map(ord, line), default=0) > 0xFF:
                continue
            for end in range(len(line) + 1):
                assert c_item(line[:end]) == mailenable_bulk.item(line[:end]), line[:end]


def test_the_c_scanner_stays_in_bounds_under_addresssanitizer(tmp_path: Path) -> None:
    # Built with ASan and UBSan, scan() and tally() read every cut of the sample rows,
    # 10,000 mutated lines and 300 mutated chunks through a real Pipeline (alerts' per-reply
    # lists, and their per-minute groups, too) without a finding, and count what the normal
    # build counts.
    so = sanitized.build(SOURCE, tmp_path / "_mailenable_scan.so")
    corpus = sorted({line for log in LOGS for line in read_lines(log) if line.count("\t") >= 7})[:300]
    (tmp_path / "corpus.json").write_text(json.dumps(corpus))
    (tmp_path / "distinct.json").write_text(json.dumps(many_distinct_lines(12_000)))
    probe = f"""
{sanitized.loader("asan._mailenable_scan", so)}import json, random
from datetime import UTC, datetime, timedelta, tzinfo
from logscan.core.aggregate import Aggregate
from logscan.core.pipeline import Pipeline
from logscan.parsers import make_parser, mailenable_bulk
from logscan.parsers.base import ParserOptions
normal = (mailenable_bulk._scan, mailenable_bulk._tally, mailenable_bulk._RUN)
def counted(tally):
    def call(run, *rest):
        tallied.append(tally)
        return tally(run, *rest)
    return call
lines = json.load(open({str(tmp_path / "corpus.json")!r}))
def items(scan, text):
    total, got = scan(text, True)
    return total, [(i.rows(), i.lines(), len(i)) if hasattr(i, "rows") else i for i in got]
for line in lines:
    for end in range(len(line) + 1):
        for text in (line[:end] + "\\n", line[end:] + "\\n"):
            assert items(m.scan, text) == items(normal[0], text), text
rnd = random.Random(5)
PIECES = [*"\\t :<>@./-(#5\\x00\\r", "SMTP-IN", "SMTP-OU", "MAIL", "RCPT", "DATE", "QUIT", "550 5.1.1 x"]
def mutated():
    line = rnd.choice(lines)
    i = rnd.randrange(len(line) + 1)
    junk = "".join(rnd.choice(PIECES) for _ in range(rnd.randrange(4)))
    return line[:i] + junk + line[i + rnd.randrange(3):]
for _ in range(10000):
    text = mutated() + "\\n"
    assert items(m.scan, text) == items(normal[0], text), text
chunks = ["".join(mutated() + "\\n" for _ in range(rnd.randrange(1, 80))) for _ in range(300)]
distinct = json.load(open({str(tmp_path / "distinct.json")!r}))
chunks += ["".join(line + "\\n" for line in distinct[i : i + 2000]) for i in range(0, len(distinct), 2000)]
tallied = []
def run(fns, each):
    mailenable_bulk._scan, mailenable_bulk._tally, mailenable_bulk._RUN = fns[0], counted(fns[1]), fns[2]
    agg = Aggregate(top_domains=3, windows=(60, 300))
    batches = []
    class Seen:
        def observe(self, ev): pass
        def observe_batch(self, b): batches.append((b.times, b.codes, b.weights, b.unnamed))
        def observe_events(self, events): pass
    class Grouped(Seen):  # no per_domain rule: domains compacted, replies grouped per minute
        def needs_domains(self, log): return False
        def takes_minutes(self, log): return True
    pipe = Pipeline("x.log", make_parser("mailenable", ParserOptions(log="x.log", tz=UTC)), agg,
                    () if not each else (Seen(),) if each == 1 else (Grouped(),))
    for chunk in chunks:
        pipe.feed_text(chunk)
    return agg.to_dict(), pipe.counts, batches
for each in (0, 1, 2):
    got = run((m.scan, m.tally, m.Run), each)
    assert got == run(normal, each)
    assert (each != 2) == all(not weights for _, _, weights, _ in got[2])  # grouped batches ran
assert tallied.count(m.tally) > 100 and tallied.count(normal[1]) > 100  # both C tallies ran
print("ok")
"""
    sanitized.run_probe(probe)


REPLY_PIECES = (
    "user unknown", "USER Unknown", "mailbox full", "spam", "<", ">", "<x@y.example>", "<user unknown>",
    "<spam@trap.example>", "a<b", "<" + "u" * 318 + ">", "<" + "u" * 321 + ">", " ", "ÀÉ×Þ", "x" * 150,
)  # fmt: skip


# Pairs that a wrong reading of classify() would take for one (first the one read first): a
# "<...>" of 322 characters is no address, so its phrase counts; the cut is at 400, not before.
COLLIDING = [
    ("550", ["<x@y.example>"]),
    ("550", ["<user unknown" + "u" * 310 + ">"]),
    ("550", ["x" * 300 + "fine"]),
    ("550", ["x" * 300 + "spam"]),
    ("550", ["ok <a@b.example>"]),
    ("550", ["ok <mailbox full>"]),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    replies=st.lists(
        st.tuples(
            st.sampled_from(("550", "451", "554 5.1.1", "550 5.7.1")), st.lists(st.sampled_from(REPLY_PIECES))
        ),
        min_size=1,
        max_size=30,
    )
)
def test_refusal_reasons_kept_by_what_classify_reads_are_parse_s(
    replies: list[tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The C tally keeps reasons by the reply and by what classify() reads of it (lower case,
    # addresses blanked, 400 characters): replies that differ only in an address share one,
    # and an address that hides a phrase, or a "<...>" too long to be one, must not.
    lines = []
    for i, (code, pieces) in enumerate([*COLLIDING, *replies]):
        reply = code + " " + "".join(pieces)
        for agent, verb in (("SMTP-OU", "RCPT"), ("SMTP-IN", "MAIL")):
            cols = (f"11/28/26 10:00:{i % 60:02d}", agent, f"{i:032X}.MAI", "1", "192.0.2.1", verb,
                    f"{verb} TO:<a@b{i % 3}.example>", reply, "1", "2", "", "s")  # fmt: skip
            lines.append("\t".join(cols))
    assert_same(chunked(lines, 7), monkeypatch, ("general", "c"))


def c_reply_lists(chunk: str, grouped: bool) -> list[Any]:
    """The times, codes and weights of each C Run of `chunk` read for alert rules by a fresh
    reader, grouped per minute or listed (None for a run the reader leaves to parse())."""
    p = parser()
    reader = mailenable_bulk.MailEnableBulk(p)
    got = reader.scan(chunk, True)
    assert got is not None
    out: list[Any] = []
    for item in got[1]:
        if not isinstance(item, Run):
            p.parse(cast(str, item))  # its state step, as the pipeline's
            continue
        b = reader.batch([cast(tuple[str, ...], item)], True, False, grouped)
        if b is not None and b.fill is not None:
            b.fill(b)
        out.append(None if b is None else (b.times, b.codes, b.weights))
    return out


def test_c_runs_grouped_per_minute_are_base_per_minute_of_the_listed_replies() -> None:
    # A quiet server's minutes (the real 9.76 log, thinned at random): a few replies each, many
    # in one second. The C tally keeps a grouped run's entries in C and shares one float between
    # entries of the same time; what it gives must still be base.per_minute() of the listed
    # replies (which the alert engine counts as the replies: test_alerts_bulk).
    lines = read_lines(LOGS[2])
    rnd = random.Random(11)
    grouped_runs = 0
    for _ in range(60):
        keep = rnd.random()
        kept = [line for line in lines if rnd.random() < keep]
        size = rnd.choice((50, 400, len(kept) or 1))
        for chunk in chunked(kept, size):
            listed, grouped = c_reply_lists(chunk, False), c_reply_lists(chunk, True)
            assert len(listed) == len(grouped)
            for want, got in zip(listed, grouped, strict=True):
                if want is None:
                    assert got is None
                    continue
                times, codes, weights = want
                assert not weights
                assert got == (per_minute(times, codes) or (times, codes, []))
                grouped_runs += bool(got[2])
    assert grouped_runs > 100
