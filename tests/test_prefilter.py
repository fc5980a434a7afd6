"""The chunk prefilter (docs/decisions/0006-prefilter.md): Pipeline.feed_text must give exactly
what feeding every line to parse() gives, and a line the prefilter skips must parse to NOTHING.
"""

from __future__ import annotations

import io
import re
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logscan.core.aggregate import Aggregate
from logscan.core.pipeline import LineCounts, Pipeline
from logscan.events import NOTHING, Event
from logscan.parsers import FORMATS, make_parser
from logscan.parsers.base import Parser, ParserOptions, Prefilter, prefilter_of

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = 1_796_000_000.0  # 2026-11-29: the sample logs' year
LOGS = [
    *sorted((ROOT / "tests" / "samples").glob("*.log")),
    ROOT / "sample_logs" / "postfix" / "mail.log",
    ROOT / "sample_logs" / "exim" / "mainlog",
    ROOT / "sample_logs" / "mailenable" / "SMTP-Activity-261128.log",
]
PREFILTERED = ("postfix", "exim")


def read(path: Path) -> str:
    """The text as `scan` sees it: surrogateescape, universal newlines."""
    with path.open(encoding="utf-8", errors="surrogateescape", newline=None) as f:
        return f.read()


def parser(fmt: str) -> Parser:
    return make_parser(fmt, ParserOptions(log="x.log", tz=UTC, reference_time=REFERENCE))


def run(fmt: str, text: str, chunk_lines: int | None) -> tuple[LineCounts, list[Event], dict[str, Any]]:
    """Feed `text` line by line (chunk_lines None) or as feed_text chunks of that many lines."""
    events: list[Event] = []
    agg = Aggregate(top_domains=5)
    pipe = Pipeline("x.log", parser(fmt), agg, (events.append,), keep_examples=True)
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if chunk_lines is None:
        pipe.feed(lines)
    else:
        for i in range(0, len(lines), chunk_lines):
            pipe.feed_text("".join(line + "\n" for line in lines[i : i + chunk_lines]))
    state = agg.to_dict()
    # Row order follows first insertion, which batching may change (feed() batches differ too).
    return pipe.counts, events, {k: sorted(v) if isinstance(v, list) else v for k, v in state.items()}


def test_parsers_declare_prefilters() -> None:
    for fmt in FORMATS:
        pf = prefilter_of(parser(fmt))
        assert (pf is not None) == (fmt in PREFILTERED), fmt  # MailEnable: state across rows


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("log", LOGS, ids=[f"{p.parent.name}/{p.name}" for p in LOGS])
def test_feed_text_equals_feed(fmt: str, log: Path) -> None:
    text = read(log)
    want = run(fmt, text, None)
    assert want[0].total == len(text.split("\n")) - (1 if text.endswith("\n") else 0)
    for chunk_lines in (1, 7, 1000, 10**9):
        got = run(fmt, text, chunk_lines)
        assert got[0] == want[0], (chunk_lines, got[0], want[0])
        assert got[1] == want[1], chunk_lines
        assert got[2] == want[2], chunk_lines


@pytest.mark.parametrize("fmt", PREFILTERED)
def test_prefilter_skips_most_lines_of_its_own_log(fmt: str) -> None:
    log = {"postfix": LOGS[-3], "exim": LOGS[-2]}[fmt]
    pf = prefilter_of(parser(fmt))
    assert pf is not None
    lines = read(log).split("\n")[:-1]
    skipped = sum(pf.skips(line) for line in lines)
    assert skipped > len(lines) // 3, (skipped, len(lines))


def test_chunk_edges() -> None:
    pipe = Pipeline("x.log", parser("postfix"), Aggregate())
    assert pipe.feed_text("").total == 0
    line = "2026-11-29T08:49:13.613656+00:00 mx1 postfix/smtpd[31419]: connect from unknown[127.0.0.181]"
    assert pipe.feed_text(line).ignored == 1  # no final newline: read as if it had one
    assert pipe.feed_text("\n\n").unparsed == 2  # empty lines are no-timestamp
    assert pipe.feed_text("x\n" + line + "\n").unparsed == 1  # an odd first line is parsed
    assert pipe.counts.total == 5


def test_prefilter_rejects_bad_triggers() -> None:
    with pytest.raises(ValueError, match="newline"):
        Prefilter(("a\nb",), "x")
    with pytest.raises(ValueError, match="non-empty"):
        Prefilter((), "x")


# --- the property: a skipped line parses to NOTHING ------------------------------------------

SAMPLE_LINES: dict[str, list[str]] = {
    fmt: [line for log in LOGS for line in read(log).split("\n") if line][:4000] for fmt in PREFILTERED
}
ALL_LINES = sorted({line for lines in SAMPLE_LINES.values() for line in lines})
PIECES = [
    "0", "9", " ", "  ", ":", "-", "+", "T", ".", "[", "]", "/", "=", "\r", "\t", "Z", "\udcff", "٣",
    "status=", ": host ", "reject: ", " exim", "exim", " => ", " ** ", " == ", "rejected ",
    " authenticator failed for ", "[1/2] ", "[2/2] ", "postfix/", "smtp[1]: ", "2026-02-29 ",
    "+0100 ", " -0500", "13", "60", "99", "Feb 29 ", "Mar  7 ", "NOQUEUE: ", "warning: ",
    ": SASL ", "many er", "mproper", "synchronization error", " dropped", " dropped by 'connect' ACL",
    "too many errors after ", "SMTP call from ", "proxy-reject: END-OF-MESSAGE: ", "(SASL ",
]  # fmt: skip


@st.composite
def mutated_line(draw: st.DrawFn) -> str:
    line = draw(st.sampled_from(ALL_LINES))
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(line)))
        op = draw(st.sampled_from(("insert", "delete", "replace", "cut")))
        piece = draw(st.sampled_from(PIECES) | st.text(max_size=3))
        if op == "insert":
            line = line[:i] + piece + line[i:]
        elif op == "delete":
            line = line[:i] + line[i + draw(st.integers(1, 8)) :]
        elif op == "replace":
            line = line[:i] + piece + line[i + len(piece) :]
        else:
            line = line[:i]
    return line.replace("\n", "")


# Triggers added for refusals without a reject line (issue 20), and for each a sample line
# that yields something, has the boring shape and holds no other trigger: without the trigger
# the prefilter would skip that line, and the tests above fail.
NEW_TRIGGERS = {"postfix": {": SASL ", "many er", "mproper"}, "exim": {" dropped"}}


@pytest.mark.parametrize("fmt", PREFILTERED)
def test_each_new_trigger_alone_keeps_a_sample_line(fmt: str) -> None:
    pf = prefilter_of(parser(fmt))
    assert pf is not None
    alone = set()
    for line in SAMPLE_LINES[fmt]:
        hits = [t for t in pf.triggers if t in line]
        if len(hits) == 1 and pf.boring.match(line + "\n") and parser(fmt).parse(line) != NOTHING:
            alone.add(hits[0])
    assert alone >= NEW_TRIGGERS[fmt]


@pytest.mark.parametrize("fmt", PREFILTERED)
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(mutated_line(), min_size=1, max_size=6))
def test_skipped_lines_parse_to_nothing(fmt: str, lines: list[str]) -> None:
    pf = prefilter_of(parser(fmt))
    assert pf is not None
    p = parser(fmt)  # one parser for the run: state (caches, split parts) from earlier lines
    for line in lines:
        skip = pf.skips(line)
        result = p.parse(line)
        if skip:
            assert result == NOTHING, (line, result)
            assert p.parse(line) == NOTHING, line  # again, now with this minute cached


@pytest.mark.parametrize("fmt", PREFILTERED)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(mutated_line() | st.sampled_from(ALL_LINES), min_size=1, max_size=40))
def test_feed_text_equals_feed_on_mutated_logs(fmt: str, lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    want = run(fmt, text, None)
    for chunk_lines in (3, 10**9):
        assert run(fmt, text, chunk_lines) == want


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_skipped_means_nothing(text: str) -> None:
    for fmt in PREFILTERED:
        pf = prefilter_of(parser(fmt))
        assert pf is not None
        for line in text.split("\n"):
            if pf.skips(line):
                assert parser(fmt).parse(line) == NOTHING


# --- Postfix's one-regex fast paths give what the step-by-step path gives ---------------------

FAST_LINES = [
    line for line in ALL_LINES if ("status=" in line or "reject: " in line) and "postfix/" in line
]


@st.composite
def mutated_fast_line(draw: st.DrawFn) -> str:
    line = draw(st.sampled_from(FAST_LINES))
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(line)))
        piece = draw(st.sampled_from(PIECES) | st.text(max_size=3))
        if draw(st.booleans()):
            line = line[:i] + piece + line[i:]
        else:
            line = line[:i] + line[i + draw(st.integers(1, 8)) :]
    if draw(st.booleans()):  # servers and resolvers write names in any case
        i, j = sorted((draw(st.integers(0, len(line))), draw(st.integers(0, len(line)))))
        line = line[:i] + line[i:j].upper() + line[j:]
    return line.replace("\n", "")


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=mutated_fast_line())
def test_postfix_fast_paths_equal_general_path(line: str) -> None:
    """The fast delivery and refusal paths give exactly what the step-by-step path gives."""
    from logscan.parsers import postfix  # noqa: PLC0415

    p = parser("postfix")
    first = p.parse(line)
    fast = p.parse(line)  # now with its minute cached, as most lines of a log are
    saved = postfix._FAST_DELIVERY, postfix._FAST_REJECT
    never = re.compile(r"(?!)")
    setattr(postfix, "_FAST_DELIVERY", never)  # noqa: B010 - the names are Final
    setattr(postfix, "_FAST_REJECT", never)  # noqa: B010
    try:
        general = parser("postfix").parse(line)
    finally:
        setattr(postfix, "_FAST_DELIVERY", saved[0])  # noqa: B010
        setattr(postfix, "_FAST_REJECT", saved[1])  # noqa: B010
    assert first == general, line
    assert fast == general, line


def test_the_fast_paths_take_most_sample_lines() -> None:
    """Otherwise the equivalence test above proves little about them (and the speed is gone)."""
    from logscan.parsers import postfix  # noqa: PLC0415

    delivered = [x for x in FAST_LINES if postfix._FAST_DELIVERY.match(x)]
    refused = [x for x in FAST_LINES if postfix._FAST_REJECT.match(x)]
    syslog = [x for x in delivered + refused if x[:1].isalpha()]
    assert len(delivered) + len(refused) >= 0.85 * len(FAST_LINES)  # 418 of 451 now
    assert len(refused) >= 80
    assert len(syslog) >= 50


# --- scan's reader: whole lines per chunk, whatever the read size ----------------------------


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="ab\n", max_size=200), size=st.integers(1, 40))
def test_scan_chunks_keep_lines(text: str, size: int) -> None:
    from logscan.app.scan import _chunks  # noqa: PLC0415

    chunks = list(_chunks(io.StringIO(text), size))
    assert all(c.endswith("\n") and c != "" for c in chunks)
    want = text if not text or text.endswith("\n") else text + "\n"
    assert "".join(chunks) == want
