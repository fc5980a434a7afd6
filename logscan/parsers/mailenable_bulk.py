"""Runs of usual MailEnable rows → grouped counts: the scan hot path for MailEnable.

docs/decisions/0019-mailenable-bulk.md. `MailEnableParser.parse()` stays the definition.
item() reads a line, without state, into a row of the fields the counts depend on, or skips
it (parse() gives NOTHING and changes no state), or leaves it to parse(). batch() then walks
a run of rows in order through the parser's own per-message state (walk()), exactly as
parse() would, and groups their events into an EventBatch with C-level passes. The optional
C extension (logscan/parsers/_mailenable_scan.c) does item() over a whole chunk, keeping each run
of rows as one Run (offsets into the chunk, no object per row), and batch()'s
per-row work, walk() included (_tally_python), in one call per run; tests/test_mailenable_bulk.py
holds all of it to parse(), with and without the extension.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sized
from functools import partial
from itertools import compress, islice, repeat
from operator import add, floordiv, itemgetter, le
from typing import Any, Final, NamedTuple, cast

from logscan.events import Direction, EventBatch, Status
from logscan.parsers.base import MAX_LINE, Item, Run, domain_of, reply_codes, reply_lists
from logscan.parsers.mailenable import (
    CARRY,
    MAIL,
    MANY,
    MAX_ID,
    MAX_IP,
    OTHER_AGENTS,
    RCPT,
    RESET,
    ROLES,
    SECONDS,
    STAGES,
    MailEnableParser,
    remember,
    status_of,
)
from logscan.parsers.reasons import MAX_TEXT, classify, refusal_reason

# A row: the stamp's minute `MM/DD/YY hh:mm` and seconds `ss`; the key `<i|o><verb>\t<code>\t
# <enhanced>` (what decides every count but the domains); the message file without `.MAI`
# ("" when over MAX_ID); for MAIL and RCPT rows the address from its last "@" on (what
# domain_of reads; "" without one); the remote IP ("" when over MAX_IP); the reply of a
# 4xx/5xx row ("" otherwise); then the line itself.
MINUTE, SECS, KEY, QID, ADDR, IP, REPLY, LINE = range(8)

# Bits of a key's kind, as walk() reads them (and the C tally): its role in the
# low three bits, then these.
OK_2XX: Final = 8  # the reply is 2xx
OUTBOUND: Final = 16
REFUSAL: Final = 32  # 4xx/5xx

_STAMP: Final = re.compile(r"[0-9]{2}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:(?:[0-5][0-9]|60)\Z")
# What parse()'s _CODES lookups accept: "550 ", "250-" or a bare "221" at the reply's start.
_CODE_PREFIXES: Final = frozenset(code + end for code in map(str, range(200, 600)) for end in ("", " ", "-"))
_ROLE: Final = {verb: ROLES.get(stage, 0) for verb, stage in STAGES.items()}  # exact verbs only
_ENHANCED_START: Final = frozenset("245(#")
_MDAYS: Final = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_FINAL: Final = {"sent": 0, "bounced": 1}  # a bounce-ratio bucket's cell per outcome (2: none)
_MEMO: Final = 1 << 12  # keys, minutes and reasons kept between batches (a few MB at most)
_DOMAINS: Final = 1 << 14  # domains kept between batches
_MEMO_LEN: Final = 300  # a longer ADDR is junk to domain_of(): computed, never kept
# One object per class, so the C tally tells classes apart by pointer (a few dozen at most).
_CLASSES: Final[dict[tuple[Direction, str], tuple[Direction, str]]] = {}


def valid_minute(text: str) -> bool:
    """Whether parse() dates a `MM/DD/YY hh:mm` minute (MailEnableParser.minute is not None)."""
    mo, day, yy, hh, mi = int(text[:2]), int(text[3:5]), int(text[6:8]), int(text[9:11]), int(text[12:14])
    if not (1 <= mo <= 12 and 1 <= day <= _MDAYS[mo] and hh < 24 and mi < 60):
        return False
    return mo != 2 or day < 29 or yy % 4 == 0  # 2000-2099: every fourth year is a leap year


def item(line: str) -> Item | None:
    """The row of a usual line (see LINE); the line when parse() must read it; None when
    parse() gives NOTHING for it and changes no state, so it is skipped (counted as ignored)."""
    if len(line) > MAX_LINE:
        return line  # parse() cuts it first
    cols = line.split("\t", 11)
    if len(cols) != 12:
        return line  # markers, short rows
    ts, agent, file, _, ip, verb, command, reply, sent, received, _, rest = cols
    if agent == "SMTP-IN":
        # str.isdigit() alone takes other digits too: those go to parse().
        digits = sent.isdigit() and received.isdigit() and sent.isascii() and received.isascii()
        if not digits or "\t" in rest:
            return line  # misaligned-columns
        direction = "i"
    elif agent == "SMTP-OU":
        direction = "o"
    elif agent.startswith(OTHER_AGENTS):
        return None
    else:
        return line
    role = _ROLE.get(verb)
    if role is None or _STAMP.match(ts) is None:
        return line  # and so verb.upper() never decides the stage here
    if not reply:
        # A RESET row forgets its transaction even without a reply: parse() must see it.
        return None if role != RESET and valid_minute(ts[:14]) else line
    if reply[:4] not in _CODE_PREFIXES and reply not in _CODE_PREFIXES:
        return line
    code = reply[:3]
    enhanced = reply_codes(reply)[1] if reply[4:5] in _ENHANCED_START else ""
    addr = ""
    if role in (MAIL, RCPT):
        lt = command.find("<")
        if lt < 0:
            return line  # a path without "<": _address() strips Unicode spaces, left to it
        gt = command.find(">", lt)
        address = command[lt + 1 : gt] if gt >= 0 else command[lt + 1 :]
        at = address.rfind("@")
        if at >= 0:
            addr = address[at:]
    qid = file[:-4] if file.endswith(".MAI") else file
    return (
        ts[:14],
        ts[15:],
        f"{direction}{verb}\t{code}\t{enhanced}",
        qid if len(qid) <= MAX_ID else "",
        addr,
        ip if len(ip) <= MAX_IP else "",
        reply if code[0] in "45" else "",
        line,
    )


def walk(
    rows: list[tuple[str, ...]],
    kinds: dict[str, int],
    tx: dict[str, tuple[str, str]],
    memo: dict[str, str],
) -> tuple[list[str], list[tuple[str, str]]]:
    """parse()'s state steps for `rows` in order, on the parser's state `tx`: the domain each
    row's event is counted under (recipient outbound, sender inbound), and (sender, recipient)
    of each 4xx/5xx row. `kinds`: each row key's kind (role and bits); `memo`: ADDR → domain."""
    labels: list[str] = []
    pairs: list[tuple[str, str]] = []
    for row in rows:
        kind = kinds[row[KEY]]
        role = kind & 7
        sender = recipient = ""
        if role:
            qid = row[QID]
            if role == RCPT:
                recipient = _domain(memo, row[ADDR])
                known = tx.get(qid)
                if known is not None:
                    sender = known[0]
                if kind & OK_2XX and qid and recipient:
                    if known is None:
                        remember(tx, qid, ("", recipient))
                    elif known[1] != recipient:
                        tx[qid] = (known[0], recipient if not known[1] else MANY)
            elif role == MAIL:
                sender = _domain(memo, row[ADDR])
                if kind & OK_2XX and qid:
                    remember(tx, qid, (sender, ""))
                else:
                    tx.pop(qid, None)
            elif role == CARRY:
                known = tx.get(qid)
                if known is not None:
                    sender = known[0]
                    recipient = known[1] if known[1] != MANY else ""
            else:
                tx.pop(qid, None)
        labels.append(recipient if kind & OUTBOUND else sender)
        if kind & REFUSAL:
            pairs.append((sender, recipient))
    return labels, pairs


def compact(
    labels: list[str], classes: list[tuple[Direction, str]]
) -> tuple[list[str], list[tuple[Direction, str]], dict[tuple[Direction, str], int]]:
    """The events without a domain left out of `labels` and `classes` but the first of each class,
    and how many were left out per class (EventBatch.unnamed): two thirds of MailEnable replies
    (greeting, EHLO, AUTH, QUIT) name no domain, and each would cost Aggregate a step."""
    kept_labels: list[str] = []
    kept_classes: list[tuple[Direction, str]] = []
    unnamed: dict[tuple[Direction, str], int] = {}
    for label, klass in zip(labels, classes, strict=True):
        if not label:
            n = unnamed.get(klass)
            unnamed[klass] = 0 if n is None else n + 1
            if n is not None:
                continue
        kept_labels.append(label)
        kept_classes.append(klass)
    return kept_labels, kept_classes, {k: n for k, n in unnamed.items() if n}


def _domain(memo: dict[str, str], addr: str) -> str:
    domain = memo.get(addr)
    if domain is None:
        domain = domain_of(addr)
        if len(addr) <= _MEMO_LEN:
            if len(memo) >= _DOMAINS:
                memo.clear()
            memo[addr] = domain
    return domain


class Kind(NamedTuple):
    """What a row key means: its event's reply, status and stage, and its kind for walk()."""

    reply: tuple[Direction, str, str]
    status: Status
    stage: str
    klass: tuple[Direction, str]
    final: int  # the bounce-ratio cell (_FINAL), 2 for none
    bits: int


def kind_of(key: str) -> Kind:
    """parse()'s reading of a row key (direction, verb, code, enhanced)."""
    head, code, enhanced = key.split("\t")
    direction: Direction = "inbound" if head[0] == "i" else "outbound"
    stage = STAGES[head[1:]]
    first = code[0]
    status = status_of(direction, stage, first)
    bits = ROLES.get(stage, 0) | (OK_2XX if first == "2" else 0) | (OUTBOUND if head[0] == "o" else 0)
    bits |= REFUSAL if first in "45" else 0
    klass = _CLASSES.setdefault((direction, first + "xx"), (direction, first + "xx"))
    return Kind((direction, code, enhanced), status, stage, klass, _FINAL.get(status, 2), bits)


Scan = Callable[[str, bool], tuple[int, list[Item]] | None]
How = tuple[bool, bool, bool]  # the tally's each_reply, compacted, grouped


def _native() -> tuple[Scan, Callable[..., Any], type] | None:
    try:
        from logscan.parsers._mailenable_scan import Run, scan, tally  # noqa: PLC0415
    except ImportError:  # installed without a C compiler (Windows): parse() reads line by line
        return None
    return scan, tally, Run


_c: Final = _native()
# Without the C extension (a Windows install without a compiler) the Python reader is about
# 1.5x slower than parse() line by line on MailEnable logs: nearly every line is an event and
# none can be skipped, so item() and walk() cost what parse() costs, and batching saves less
# than that. So it is not used there (scan() gives None: the pipeline reads line by line, and
# scan_paths() says so); it stays the definition the C code is held to, and tests turn it on.
python_rows = False
_scan: Scan | None = _c[0] if _c is not None else None
_tally: Callable[..., Any] | None = _c[1] if _c is not None else None
# The C scanner's runs of rows (a Run: fields kept as offsets into the chunk, read by the C tally).
_RUN: Final[type | None] = _c[2] if _c is not None else None


# What batch() needs of a run of rows (see MailEnableBulk._tally_python).
Tally = tuple[
    dict[str, int],
    list[str],
    list[tuple[Direction, str]],
    list[tuple[Direction, str, str]],
    list[float],
    dict[int, list[int]],
    float,
    dict[tuple[Direction, str, str], int],
    list[tuple[int, Direction, str, str, str, str, str]],
    dict[tuple[Direction, str], int],
    list[int],
]


class MailEnableBulk:
    """Reads a chunk's lines into rows, and runs of rows into EventBatches.

    Shares the parser's per-message state and minute clock, so both give the same events.
    """

    __slots__ = ("_domains", "_hours", "_info", "_kinds", "_parser", "_reasons", "_starts")

    def __init__(self, parser: MailEnableParser) -> None:
        self._parser = parser
        self._kinds: dict[str, Kind] = {}
        self._domains: dict[str, str] = {"": ""}  # ADDR → domain_of()
        self._reasons: dict[str, str] = {}  # a 4xx/5xx reply (up to MAX_TEXT long) → its reason
        self._info: dict[str, tuple[int, tuple[Direction, str], int, tuple[Direction, str, str]]] = {}
        self._starts: dict[str, float] = {}  # minute → its start (_tally_python)
        self._hours: dict[str, float] = {}  # `MM/DD/YY hh` → its start, for the C tally

    def scan(self, chunk: str, rows: bool) -> tuple[int, list[Item]] | None:
        """Every line of the chunk that is not skipped, in order: a row (with `rows`) or the line;
        the C scanner gives each run of rows as one Run (its tally reads it).

        None (the pipeline then reads line by line) without the C extension, unless python_rows."""
        if _scan is not None:
            got = _scan(chunk, rows)
            if got is not None:
                return got
        if not python_rows and _tally is None:
            return None
        lines = chunk.split("\n")
        lines.pop()
        items = list(map(item, lines))
        if rows:
            return len(lines), [i for i in items if i is not None]
        return len(lines), [line for line, i in zip(lines, items, strict=True) if i is not None]

    def rows(self, lines: list[str]) -> list[Item] | None:
        """An item per line: its row, or the line (a skipped line too: the caller counts it)."""
        return [line if i is None else i for line, i in zip(lines, map(item, lines), strict=True)]

    def batch(
        self,
        rows: list[tuple[str, ...]],
        each_reply: bool = False,
        aligned: bool = True,
        per_minute: bool = False,
    ) -> EventBatch | None:
        """The events of `rows` (none empty) grouped; None when they must go line by line.

        `each_reply`: with each reply's time and (direction, code, enhanced), for alert rules;
        `aligned`, `per_minute`: see BulkReader.batch."""
        how = (each_reply, not (each_reply and aligned), each_reply and per_minute and not aligned)
        # The memos are cleared between calls only: the C tally keeps pointers into them.
        if len(self._kinds) >= _MEMO:
            self._kinds.clear()
            self._info.clear()
        for memo in (self._starts, self._hours, self._reasons):
            if len(memo) >= _MEMO:
                memo.clear()
        if len(rows) == 1 and _RUN is not None and type(rows[0]) is _RUN and _tally is not None:
            return self._c_batch(cast(Run, rows[0]), how)
        rows = [r for row in rows for r in (cast(Any, row).rows() if isinstance(row, Run) else (row,))]
        got = self._tally_python(rows, how)
        if got is None:
            return None
        b = EventBatch("mailenable", self._parser.log, len(rows), {}, {}, {}, [], [], {}, got[5], got[6])
        self._complete(b, got)
        return b

    def _c_batch(self, run: Run, how: How) -> EventBatch | None:
        """batch() of a C Run: its minutes now (what Aggregate.add_batch decides on), and the
        rest, the walk through the parser's state included, only when the aggregate takes it
        (EventBatch.fill): a refused batch leaves the state as it was, with no copy to keep."""
        p = self._parser
        got = self._c_tally(run, how, walk=False)
        if got is None:
            return None
        minutes, last = got
        b = EventBatch("mailenable", p.log, len(cast(Sized, run)), {}, {}, {}, [], [], {}, minutes, last)
        b.fill = partial(self._fill, run, how)
        return b

    def _c_tally(self, run: Run, how: How, walk: bool) -> tuple[Any, ...] | None:
        """tally() of logscan/parsers/_mailenable_scan.c on this reader's memos and parser."""
        assert _tally is not None
        p = self._parser
        tx, learn = p.transactions, (self._kind, self._hour, self._reason)
        got = _tally(run, self._info, self._hours, tx, *how, walk, *learn)
        return cast(tuple[Any, ...] | None, got)

    def _fill(self, run: Run, how: How, b: EventBatch) -> None:
        """The rest of a C Run's batch, after parse()'s state steps (tally() of _mailenable_scan.c)."""
        # An older batch's saved state (the Python reader's) must not outlive this walk.
        self._parser.undo_from(cast(Any, run).first, None)
        got = self._c_tally(run, how, walk=True)
        if got is None:  # cannot be: the same run gave minutes a moment ago, and nothing changed since
            raise RuntimeError("mailenable_bulk: a run's batch could not be filled")
        self._complete(b, cast(Tally, got))

    def _complete(self, b: EventBatch, got: Tally) -> None:
        """Fills `b` from a tally: its replies, outcomes and rejections by key, domains, reasons."""
        counts, labels, classes, codes, times, _, _, reasons, refusals, unnamed, weights = got
        kinds = self._kinds
        for key in counts.keys() - kinds.keys():  # a memo cleared since the tally learnt it
            self._kind(key)
        replies: dict[tuple[Direction, str, str], int] = {}
        deliveries: dict[Status, int] = {}
        rejections: dict[tuple[str, str], int] = {}
        for key, n in counts.items():
            k = kinds[key]
            replies[k.reply] = replies.get(k.reply, 0) + n
            if k.status == "rejected":
                rkey = (k.stage, k.reply[1])
                rejections[rkey] = rejections.get(rkey, 0) + n
            elif k.status:
                deliveries[k.status] = deliveries.get(k.status, 0) + n
        b.replies, b.deliveries, b.rejections = replies, deliveries, rejections
        b.domains, b.classes, b.unnamed = labels, classes, unnamed
        b.reasons, b.refusals = reasons, refusals
        # times: whole seconds already, a whole start plus seconds
        b.times, b.codes, b.weights = times, codes, weights

    def _kind(self, key: str) -> Kind:
        """kind_of(key), kept (with its C form, for the C tally)."""
        k = self._kinds[key] = kind_of(key)
        self._info[key] = (k.bits, k.klass, k.final, k.reply)
        return k

    def _start(self, text: str) -> float | None:
        """The start of a minute, kept, if parse() dates it and it is a whole second (no zone
        since 1972 has another): parse() adds the seconds to it, and EventBatch.times must be
        whole seconds."""
        start = self._parser.minute(text)
        if start is None or start % 1:
            return None
        self._starts[text] = start
        return start

    def _hour(self, text: str) -> float | None:
        """The start of an hour `MM/DD/YY hh`, kept, as _start() of its minute 00: parse()'s clock
        keeps only each hour's start and adds the minutes, so the C tally does the same."""
        start = self._parser.minute(text + ":00")
        if start is None or start % 1:
            return None
        self._hours[text] = start
        return start

    def _reason(self, reply: str) -> str:
        """The reason of a 4xx/5xx reply, kept when it is short (classify() reads MAX_TEXT)."""
        reason = self._reasons.get(reply)
        if reason is None:
            code = reply[:3]
            enhanced = reply_codes(reply)[1] if reply[4:5] in _ENHANCED_START else ""
            # As Aggregate.add(): a refusal without a reason is classified by its codes.
            reason = refusal_reason(code, enhanced, reply, 0) or classify(code, enhanced, "")
            if len(reply) <= MAX_TEXT:
                self._reasons[reply] = reason
        return reason

    def _tally_python(self, rows: list[tuple[str, ...]], how: How) -> Tally | None:
        """Each row's share of the batch, walking the parser's state; None: parse() the lines.
        `how`: (each_reply, compacted, grouping).

        Returns the count of each row key, the domain label and class of each row (as compact()
        leaves them when `compacted`), the reply and time of each row (each_reply; as
        base.per_minute() gives them when `grouping`, with their weights), the bounce-ratio
        minutes, the latest time, the reasons and offenders of the 4xx/5xx rows in order, and
        compact()'s count of the rows left out."""
        each_reply, compacted, grouping = how
        p = self._parser
        kinds = self._kinds
        keys = list(map(itemgetter(KEY), rows))
        counts = Counter(keys)
        for key in counts.keys() - kinds.keys():
            self._kind(key)

        # Times: parse() adds the seconds to its minute's start.
        minute_texts = list(map(itemgetter(MINUTE), rows))
        starts = self._starts
        for text in dict.fromkeys(minute_texts):
            if text not in starts and self._start(text) is None:
                return None
        seconds = map(SECONDS.__getitem__, map(itemgetter(SECS), rows))
        times = list(map(add, map(starts.__getitem__, minute_texts), seconds))
        finals = list(map({k: kinds[k].final for k in counts}.__getitem__, keys))
        marks = list(map((2).__gt__, finals))
        buckets = list(map(int, map(floordiv, compress(times, marks), repeat(60))))
        if not all(map(le, buckets, islice(buckets, 1, None))):
            return None  # add_batch() fills each minute's bucket at once: minutes must not go back
        minutes: dict[int, list[int]] = {}
        for (bucket, cell), n in Counter(zip(buckets, compress(finals, marks), strict=True)).items():
            minutes.setdefault(bucket, [0, 0, 0])[cell] += n

        # From here on the parser's state changes. A batch with bounce-ratio minutes may still
        # be refused by Aggregate.add_batch(); its lines then reach parse() from the first,
        # which must find the state as it was.
        tx = p.transactions
        p.undo_from(rows[0][LINE], dict(tx) if minutes else None)
        bits = {k: kinds[k].bits for k in counts}
        labels, pairs = walk(rows, bits, tx, self._domains)

        # 4xx/5xx rows: their reason and offenders, in order (the offender sketches depend on it).
        reasons: dict[tuple[Direction, str, str], int] = {}
        refusals: list[tuple[int, Direction, str, str, str, str, str]] = []
        marked = list(map((REFUSAL).__and__, map(bits.__getitem__, keys)))
        refused = zip(compress(rows, marked), compress(times, marked), pairs, strict=True)
        for row, t, (sender, recipient) in refused:
            direction, code, _ = kinds[row[KEY]].reply
            reason = self._reason(row[REPLY])
            rskey = (direction, code, reason)
            reasons[rskey] = reasons.get(rskey, 0) + 1
            refusals.append((int(t // 60), direction, code, reason, sender, row[IP], recipient))
        klass = {k: kinds[k].klass for k in counts}
        classes = list(map(klass.__getitem__, keys))
        unnamed: dict[tuple[Direction, str], int] = {}
        if compacted:
            labels, classes, unnamed = compact(labels, classes)
        replies = {k: kinds[k].reply for k in counts}
        listed = reply_lists(times, keys, replies, grouping) if each_reply else None
        reply_times, codes, weights = listed or ([], [], [])
        found = (dict(counts), labels, classes, codes, reply_times, minutes, max(times))
        return (*found, reasons, refusals, unnamed, weights)
