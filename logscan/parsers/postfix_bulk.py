"""Runs of usual Postfix event lines → grouped counts: the scan hot path.

docs/decisions/0008-bulk-scan.md. `PostfixParser.parse()` stays the definition: the regex
below accepts only lines whose event parse() gives through its fast paths, and reads from
them exactly the fields the aggregate counts, into a row; every other line stays a line, for
parse(). A 4xx/5xx row's reason (parsers/reasons.py) and offenders are read from its line by
_refusal(), from the very spans parse() reads them from. The C scanner
(logscan/parsers/_postfix_scan.c) makes the same rows faster, and tests/test_bulk.py holds all
three to each other.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from functools import cache
from itertools import compress, islice, repeat
from operator import add, floordiv, itemgetter, le, lt
from typing import Final, NamedTuple, cast

from logscan.events import Direction, EventBatch, Status
from logscan.parsers.base import MAX_LINE, Item, Reply
from logscan.parsers.postfix import PostfixParser
from logscan.parsers.postfix_grammar import MEMO_MAX, REJECT_STAGE, SECONDS, STATUS, valid_enhanced
from logscan.parsers.reasons import refusal_reason

# What _FAST_HEAD accepts, narrowed. Either RFC 3339 with a zone (groups: minute, seconds,
# fraction, zone), years 1900-2099, seconds 00-59 and at most 6 fraction digits, so that
# minute + seconds never rounds up to the next minute and an event's bounce-ratio bucket is
# its stamp's minute; or a classic syslog stamp (groups: `Mmm dd hh:mm`, seconds), whose
# time batch() asks the parser for, second by second. `\n` is excluded everywhere: the lines
# are read joined by "\n".
_HEAD: Final = (
    r"(?:((?:19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}):([0-5][0-9])(\.[0-9]{1,6})?"
    r"([+-][0-9]{2}:?[0-9]{2}|Z)"
    r"|((?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (?:[ 0-9][0-9]|[0-9]) [0-9]{2}:[0-9]{2})"
    r":([0-5][0-9])) "
    r"[A-Za-z0-9_.-]{1,64} [A-Za-z0-9_.-]{1,20}(?:/[A-Za-z0-9_.-]{1,20}){0,2}/"
)
# reply_codes() of a reply's first 20 characters (its grammar, with `$` as the line's end):
# code, enhanced. _NO_CODE is where it finds none.
_CODE: Final = r"([2-5][0-9][0-9])(?:[ -]|(?=\n))(?:\(?#?([245]\.[0-9]{1,3}\.[0-9]{1,3})(?![0-9.]))?"
_NO_CODE: Final = r"(?![2-5][0-9][0-9](?:[ -]|\n))"
# _FAST_DELIVERY with a known status word; then what _delivered() reads after it: nothing,
# `(host H said: REPLY`, `(REPLY` or other text. `(host ` followed by anything else (a
# `refused to talk to me`, or a host with spaces) and `(SASL ` (a smarthost refusing our
# login, read by _delivered()) are left to parse().
# Groups: recipient domain (text after the last "@"), delay, dsn, status word, code and
# enhanced code of a `said:` reply, code and enhanced code of a `(` reply.
_DELIVERY: Final = (
    r"(?:smtp|lmtp|local|virtual|pipe|error|retry|discard|qmgr|nqmgr|oqmgr)\[[0-9]{1,10}\]: "
    r"(?!(?:warning|error|fatal|panic|info): )[0-9A-Za-z]{5,32}: "
    r"to=(?:[^,@\n]*@([^,@\n]*)|[^,@\n]*), (?:orig_to=[^,\n]*, )?relay=[^,\n]*, "
    r"(?:conn_use=[0-9]+, )?delay=([0-9.]+), (?:delays=[0-9./]+, )?(?:tls=[^,\n]*, )?(?:dsn=([0-9.]+), )?"
    r"status=(sent|bounced|SOFTBOUNCE|deferred|expired|force-expired)"
    r"(?:(?=\n)| \((?:host [^ \n]* said: (?:"
    + _CODE
    + "|"
    + _NO_CODE
    + r")|(?!host |SASL )(?:"
    + _CODE
    + "|"
    + _NO_CODE
    + r"))| (?!\())[^\n]*"
)
# _FAST_REJECT with a known stage and a reply code, ending in the usual trailer
# `; from=<s>[ to=<r>][ proto=P][ helo=<h>]`. With no "<" inside it, its `; from=<` is the
# line's last, the one _rejected() reads. Groups: stage word, code, enhanced code, sender
# domain (text after the last "@").
_REJECT: Final = (
    r"(?:smtpd|postscreen|cleanup)\[[0-9]{1,10}\]: "
    r"(?!(?:warning|error|fatal|panic|info): )(?:NOQUEUE|[0-9A-Za-z]{5,32}): (?:milter-|proxy-)?reject: "
    r"("
    + "|".join(REJECT_STAGE)
    + r") from [^\[ \n]{0,255}\[[0-9A-Fa-f:.]{1,45}\](?::[0-9]{1,5})?: "
    + _CODE
    + r"[^\n]*; from=<(?:[^<>@\n]*@([^<>@\n]*)|[^<>@\n]*)>(?:,? to=<[^<>\n]*>)?(?:,? proto=[^ ,;<>\n]*)?"
    r"(?:,? helo=<[^<>\n]*>)?(?=\n)"
)
# qmgr's `QID: from=<s>, status=expired, returned to sender` as _expired() reads it (its
# `, status=` is the first: no comma in the sender). Group: status word.
_EXPIRED: Final = (
    r"(?:qmgr|nqmgr|oqmgr)\[[0-9]{1,10}\]: (?!(?:warning|error|fatal|panic|info): )[0-9A-Za-z]{5,32}: "
    r"from=<[^<>,\n]*>, status=(expired|force-expired),[^\n]*"
)
_ROW: Final = f"(?:{_HEAD}(?:{_DELIVERY}|{_REJECT}|{_EXPIRED})|[^\n]*)\n"

# A row: what batch() reads of a usual event line (the C scanner makes the same, see _row):
# minute `YYYY-MM-DDThh:mm`, seconds with any fraction, zone (a syslog stamp: `Mmm dd hh:mm`,
# seconds, ""); `key`, what decides the counts (`D<status word>|<code>|<enhanced>|<dsn>` for
# a delivery, `R<stage word>|<code>|<enhanced>` for a refusal, `E<status word>` for an
# expiry); the remote domain's key (text after the last "@"); `o5`/`i4`-style direction and
# code class, "" without a code; the delay text and the status word of a delivery or
# expiry; then the line itself.
_MINUTE, _SECONDS, _ZONE, _KEY, _DOMAIN, _CLASS, _DELAY, _WORD, _LINE = range(9)
_FINAL: Final = {"sent": 0, "bounced": 1, "expired": 2}  # _bucket()'s cell index per outcome
_CLASSES: Final[dict[str, tuple[Direction, str]]] = {
    d[0] + c: (d, c + "xx") for d in ("outbound", "inbound") for c in "2345"
}
_REFUSALS: Final = frozenset({"o4", "o5", "i4", "i5"})  # _CLASS values of 4xx/5xx replies
_MISSING: Final = -1.0  # not a delay _delay() could give
_WHOLE: Final = itemgetter(slice(0, 2))  # the whole seconds of a row's seconds
_DOMAIN_MEMO: Final = 1 << 16  # domains kept between chunks (a few MB at most)


@cache
def _row_regex() -> re.Pattern[str]:
    """_ROW compiled, when first needed: with the C scanner built it never is."""
    return re.compile(_ROW)


def _row(groups: tuple[str, ...], line: str) -> tuple[str, ...]:
    """The row of a line from _ROW's groups."""
    minute, sec, frac, zone, s_minute, s_sec = groups[:6]
    minute, sec = minute or s_minute, sec or s_sec
    d_dom, delay, dsn, word, c_said, e_said, c_paren, e_paren = groups[6:14]
    stage, c_rej, e_rej, r_dom, q_word = groups[14:]
    if word:
        code = c_said or c_paren
        key = f"D{word}|{code}|{e_said or e_paren}|{dsn}"
        return minute, sec + frac, zone, key, d_dom, "o" + code[:1] if code else "", delay, word, line
    if stage:
        return minute, sec + frac, zone, f"R{stage}|{c_rej}|{e_rej}", r_dom, "i" + c_rej[0], "", "", line
    return minute, sec + frac, zone, "E" + q_word, "", "", "", q_word, line


def _refusal(key: str, line: str) -> tuple[Direction, str, str, str]:
    """Direction, code, reason and client IP (our refusals) of a 4xx/5xx row: the reply text is
    read where parse()'s fast paths read it, which the row's regex leaves the only place."""
    fields = key[1:].split("|")
    code = fields[1]
    if key[0] == "R":
        # `reject: STAGE from HOST[IP][:PORT]: REPLY; from=<...`: no "[" in HOST, no ": " in PORT.
        lb = line.find("[", line.find(" from ", line.find("reject: ")))
        rb = line.find("]", lb)
        colon = line.find(": ", rb)
        reason = refusal_reason(code, fields[2], line, colon + 2, line.rfind("; from=<", colon))
        return "inbound", code, reason, line[lb + 1 : rb].lower()
    # `..., status=WORD (host H said: REPLY` or `(REPLY`: no "," before the status field.
    w_end = line.find(" ", line.find(", status=") + 9)
    start = line.find(" said: ", w_end) + 7 if line.startswith("(host ", w_end + 1) else w_end + 2
    enhanced = fields[2] or (valid_enhanced(fields[3]) if fields[3] else "")
    return "outbound", code, refusal_reason(code, enhanced, line, start), ""


def _native() -> Callable[[str, bool], tuple[int, list[Item]] | None] | None:
    try:
        from logscan.parsers._postfix_scan import scan  # noqa: PLC0415
    except ImportError:  # installed without a C compiler: the regex does the same, slower
        return None
    return scan


# minutes(rows, ids) of the C scanner: of the rows whose key `ids` holds (key → reply number),
# per minute text in order, the index of each distinct reply's first row, its number and its
# count, then the minute's last such row, its number and 0; None when a row's whole seconds are
# below the last one's in its minute. Grouping in Python cost more than the engine saved
# (docs/decisions/0016-alerts-from-counts.md, session 7 addendum): here only the entries cost.
Grouper = Callable[[list[tuple[str, ...]], dict[str, int]], tuple[list[int], list[int], list[int]] | None]


def _native_minutes() -> Grouper | None:
    try:
        from logscan.parsers._postfix_scan import minutes  # noqa: PLC0415
    except ImportError:  # without the C scanner every reply is listed, as ever
        return None
    return minutes


_scan: Final = _native()
_minutes: Final = _native_minutes()


class _Times(NamedTuple):
    """What _times() gives: each row's bounce-ratio minute, the latest time, the times of rows by
    index, and whether the minute texts are whole minutes in increasing order (so a minute text's
    rows are one run, and the grouping minutes() makes is per_minute()'s)."""

    buckets: list[int]
    last: float
    at: Callable[[list[int]], list[float]]
    whole: bool


def _whole_minutes(starts: list[float]) -> bool:
    """Whether the starts of a batch's minute texts (in order of first occurrence) are whole
    minutes, each later than the one before."""
    return all(start % 60 == 0 for start in starts) and all(map(lt, starts, islice(starts, 1, None)))


def _codes(rows: list[tuple[str, ...]], reply_of: dict[str, Reply], classes: list[str]) -> list[Reply]:
    """The reply of each row with a code, in order."""
    return list(map(reply_of.__getitem__, compress(map(itemgetter(_KEY), rows), classes)))


def _grouped(
    rows: list[tuple[str, ...]], got: _Times, reply_of: dict[str, Reply]
) -> tuple[list[float], list[Reply], list[int]] | None:
    """EventBatch.times, .codes and .weights of the rows' replies grouped per minute, as
    base.per_minute() groups them; None when that is not done here (see _minutes)."""
    if _minutes is None or not got.whole:
        return None
    number: dict[Reply, int] = {}
    for reply in reply_of.values():
        number.setdefault(reply, len(number))
    found = _minutes(rows, {key: number[reply] for key, reply in reply_of.items()})
    if found is None:
        return None
    index, numbers, weights = found
    return got.at(index), list(map(list(number).__getitem__, numbers)), weights


class PostfixBulk:
    """Reads a chunk's candidate lines into rows, and runs of rows into EventBatches.

    Shares the parser's memo tables and time arithmetic, so both give the same floats.
    """

    __slots__ = ("_delays", "_domains", "_parser")

    def __init__(self, parser: PostfixParser) -> None:
        self._parser = parser
        self._delays: dict[str, float | None] = {}
        self._domains: dict[str, str] = {}  # text after "@" → domain_of()

    def scan(self, chunk: str, rows: bool) -> tuple[int, list[Item]] | None:
        """The prefilter and rows() over a whole chunk in C (logscan/parsers/_postfix_scan.c), if built."""
        return None if _scan is None else _scan(chunk, rows)

    def rows(self, lines: list[str]) -> list[Item] | None:
        """Each line's row (see _row) or, when it is left to parse(), the line itself."""
        text = "\n".join(lines)
        if "\r" in text or max(map(len, lines), default=0) > MAX_LINE:
            return None  # parse() strips a CR and cuts long lines; the regex does neither
        found: list[tuple[str, ...]] = _row_regex().findall(text + "\n")
        if len(found) != len(lines):
            return None
        return [_row(row, line) if row[0] or row[4] else line for row, line in zip(found, lines, strict=True)]

    def batch(
        self,
        rows: list[tuple[str, ...]],
        each_reply: bool = False,
        aligned: bool = True,
        per_minute: bool = False,
    ) -> EventBatch | None:
        """The events of `rows` (none empty) grouped; None when they must go line by line.

        `each_reply`: with each reply's time and (direction, code, enhanced), for alert rules;
        `per_minute`: those grouped per minute (EventBatch.weights) when the C scanner is built
        and the times never go back. `aligned` changes nothing: every reply's domain is listed."""
        p = self._parser
        zones = set(map(itemgetter(_ZONE), rows))
        if len(zones) != 1:
            return None
        got = self._times(rows, zones.pop())
        if got is None:
            return None
        buckets, last = got.buckets, got.last

        replies: dict[tuple[Direction, str, str], int] = {}
        deliveries: dict[Status, int] = {}
        rejections: dict[tuple[str, str], int] = {}
        reply_of: dict[str, tuple[Direction, str, str]] = {}  # row key → its reply, for `codes`
        for key, n in Counter(map(itemgetter(_KEY), rows)).items():
            kind, fields = key[0], key[1:].split("|")
            if kind == "R":
                stage = REJECT_STAGE[fields[0]]
                code = fields[1]
                rejections[(stage, code)] = rejections.get((stage, code), 0) + n
                rkey: tuple[Direction, str, str] = ("inbound", code, fields[2])
            else:
                status = STATUS[fields[0]]
                deliveries[status] = deliveries.get(status, 0) + n
                if kind == "E" or not fields[1]:
                    continue
                code, enhanced, dsn = fields[1:]
                rkey = ("outbound", code, enhanced or (valid_enhanced(dsn) if dsn else ""))
            replies[rkey] = replies.get(rkey, 0) + n
            reply_of[key] = rkey

        # The order-dependent parts: the domain of each event with a code, and each delay.
        classes = list(map(itemgetter(_CLASS), rows))
        listed: tuple[list[float], list[Reply], list[int]] = ([], [], [])
        if each_reply:
            grouped = _grouped(rows, got, reply_of) if per_minute else None
            coded = list(compress(range(len(rows)), classes))
            listed = grouped or (got.at(coded), _codes(rows, reply_of, classes), [])
        keys = list(compress(map(itemgetter(_DOMAIN), rows), classes))
        memo = self._domains
        missing = set(keys).difference(memo)
        if len(memo) + len(missing) > _DOMAIN_MEMO:
            memo.clear()
            missing = set(keys)
        for key in missing:
            memo[key] = p.domain("@" + key) if key else ""
        domains = list(map(memo.__getitem__, keys))
        # 4xx/5xx rows: their reason and offenders, in order (the offender sketches depend on it).
        reasons: dict[tuple[Direction, str, str], int] = {}
        refusals: list[tuple[int, Direction, str, str, str, str, str]] = []
        for i in [i for i, c in enumerate(classes) if c in _REFUSALS]:
            row = rows[i]
            direction, code, reason, ip = _refusal(row[_KEY], row[_LINE])
            domain = memo[row[_DOMAIN]]
            rkey = (direction, code, reason)
            reasons[rkey] = reasons.get(rkey, 0) + 1
            if direction == "inbound":
                refusals.append((buckets[i], direction, code, reason, domain, ip, ""))
            else:
                refusals.append((buckets[i], direction, code, reason, "", "", domain))
        delays: dict[Status, list[float]] = {}
        delivered = [row for row in rows if row[_DELAY]]
        if delivered:
            texts = list(map(itemgetter(_DELAY), delivered))
            values = list(map(self._delays.get, texts, repeat(_MISSING)))
            if _MISSING in values:
                values = list(map(self._delay, texts))
            if None in values:
                return None  # parse() gives no delay_s; such lines are rare enough to parse
            statuses = list(map(STATUS.__getitem__, map(itemgetter(_WORD), delivered)))
            for status in dict.fromkeys(statuses):
                delays[status] = list(compress(cast(list[float], values), map(status.__eq__, statuses)))
        minutes: dict[int, list[int]] = {}
        for (bucket, word), n in Counter(zip(buckets, map(itemgetter(_WORD), rows), strict=True)).items():
            index = _FINAL.get(STATUS[word]) if word else None
            if index is not None:
                minutes.setdefault(bucket, [0, 0, 0])[index] += n
        return EventBatch(
            "postfix",
            p.log,
            len(rows),
            replies,
            deliveries,
            rejections,
            domains,
            list(map(_CLASSES.__getitem__, filter(None, classes))),
            delays,
            minutes,
            last,
            reasons,
            refusals,
            listed[0],
            listed[1],
            weights=listed[2],
        )

    def _times(self, rows: list[tuple[str, ...]], zone: str) -> _Times | None:
        """The rows' minutes and times (see _Times); None when the rows' minutes decrease
        somewhere or a stamp is one parse() would reject.

        add_batch() may fill each minute's bucket at once only because minutes never decrease.
        """
        minute_texts = list(map(itemgetter(_MINUTE), rows))
        p = self._parser
        if zone:  # RFC 3339: within one zone, text order is time order
            if not all(map(le, minute_texts, islice(minute_texts, 1, None))):
                return None
            bucket_of: dict[str, int] = {}
            start_of: dict[str, float] = {}
            for text in dict.fromkeys(minute_texts):
                start = p.minute(text + zone)
                if start is None:
                    return None
                bucket_of[text] = int(start // 60)
                start_of[text] = start
            minute, seconds = max(zip(minute_texts, map(itemgetter(_SECONDS), rows), strict=True))
            stamp = f"{minute}:{seconds}{zone}"
            last = p.stamp_time(stamp, len(stamp))

            def at(index: list[int]) -> list[float]:
                # Cut to the whole second (EventBatch.times): float() of the fraction costs more
                # than all the rest of a row.
                chosen = list(map(rows.__getitem__, index))
                starts = map(start_of.__getitem__, map(itemgetter(_MINUTE), chosen))
                whole = map(_WHOLE, map(itemgetter(_SECONDS), chosen))
                return list(map(add, starts, map(SECONDS.__getitem__, whole)))

            if last is None:
                return None
            buckets = list(map(bucket_of.__getitem__, minute_texts))
            return _Times(buckets, last, at, _whole_minutes(list(start_of.values())))
        # Classic syslog: no year, month names. The parser's clock dates each minute; it adds
        # the seconds last (Clock.local), so minute + seconds is the float parse() gets.
        starts: dict[str, float] = {}
        for text in dict.fromkeys(minute_texts):
            start = p.stamp_time(text + ":00", len(text) + 3)
            if start is None:
                return None
            starts[text] = start
        seconds = map(SECONDS.__getitem__, map(itemgetter(_SECONDS), rows))
        times = list(map(add, map(starts.__getitem__, minute_texts), seconds))
        if not all(map(le, times, islice(times, 1, None))):
            return None
        return _Times(
            list(map(int, map(floordiv, times, repeat(60)))),
            times[-1],
            lambda index: list(map(times.__getitem__, index)),
            _whole_minutes(list(starts.values())),
        )

    def _delay(self, text: str) -> float | None:
        """float(delay=) as _delivered() reads it; None when it is no number."""
        if text in self._delays:
            return self._delays[text]
        if len(self._delays) >= MEMO_MAX:
            self._delays.clear()
        try:
            got: float | None = float(text)
        except ValueError:
            got = None
        self._delays[text] = got
        return got
