"""Runs of usual Exim event lines → grouped counts: the scan hot path for Exim.

docs/decisions/0018-exim-bulk.md. `EximParser.parse()` stays the definition: the regex below
accepts only plain main-log lines (an Exim stamp, no zone, no syslog prefix) of the usual
shapes — a delivery, a bounce or deferral, an RCPT refusal, an authenticator failure — whose
reading is unambiguous, and reads from them exactly what the aggregate counts into a row.
Every other line stays a line, for parse(). Such a line changes no parser state that another
line's result depends on (syslog `[n/m]` parts never have this shape), so rows and lines may
be counted apart. The C scanner (logscan/parsers/_exim_scan.c) makes the same rows faster,
and counts each run of them as batch() would, so that a row there is only its line;
tests/test_exim_bulk.py holds all these readers to each other.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from functools import cache
from itertools import compress, groupby, islice
from operator import itemgetter, le, mul, not_
from typing import Final

from logscan.events import Direction, EventBatch, Status
from logscan.parsers.base import MAX_LINE, Item
from logscan.parsers.exim import EximParser, duration
from logscan.parsers.reasons import MAX_TEXT, refusal_reason, tables

# The stamp parse() reads at a line's start, then an optional `[pid]`; no zone (a zone-shaped
# word, `+`/`-`, never starts a body below). Group: the stamp.
_HEAD: Final = r"([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?)(?: \[[0-9]{1,10}\])? "
_QID: Final = r"[0-9A-Za-z]{6}-(?:[0-9A-Za-z]{6}-[0-9A-Za-z]{2}|[0-9A-Za-z]{11}-[0-9A-Za-z]{4}) "
# _body() takes a body whose 7th character is "-" for a message id when these hold.
_NO_QID: Final = r"(?![^\n]{6}-(?:[^\n]{6}-[^\n]{2} |[^\n]{11}-[^\n]{4} ))"
# reply_codes() of a reply's first 40 characters; `$` (the slice's end) can only be the line's.
_CODE: Final = r"([2-5][0-9][0-9])(?:[ -]|(?=\n))(?:\(?#?([245]\.[0-9]{1,3}\.[0-9]{1,3})(?![0-9.]))?"
# The address after a flag, up to its space: group the text after its last "@" (what
# _domain() reads). `=> user <user@dom>`: when that gives no domain, _rcpt_domain() reads the
# `<...>` (group: the text after its last "@"); a ` <` not of this shape is left to parse().
_ADDRESS: Final = (
    r"(?:[^ \n]*@([^ @\n]*)|[^ @\n]+)(?= |\n)"
    r"(?: <(?:[^<> \n\"@]*@([^<> \n\"@]*)|[^<> \n\"@]*)>(?= |\n)|(?! <))"
)
# _delivered()'s last " DT=" (rfind), value cut as it cuts it. Group: the value.
_DT: Final = r"(?:(?=[^\n]* DT=([^ \n]{0,20}))|)"


# `H=[name ][(helo) ][ip]` as _host_at() reads it when nothing in it is odd (a name ending in
# `rejected` would be read as the refusal's word). Group (when `ip`): the IP.
def _host(ip: str) -> str:
    return (
        r"H=(?:[^ \n\"'\[\]()=:]{1,255}(?<!rejected) )?(?:\([^ \n\"'\[\]()=]{0,255}\) )?"
        r"\[" + ip + r"(?=[^\]\n]*[.:])[0-9A-Fa-f.:]{1,45})\](?::[0-9]{1,5})?"
    )


# A delivery (`=>` `->` `>>`): fields without quotes; the first ` H=` a host of the shape
# above (or none at all), so the first ` C="` after it is the C= field; its reply 2xx/3xx or
# no code (4xx/5xx, with a reason to read, go to parse()). Groups: code, enhanced code.
_DELIVERY: Final = (
    r"(?:=>|->|>>) " + _ADDRESS + r"(?:(?> (?:[^ \n\"]+ )*?H=)" + _host("(?:")[2:] + r"|(?![^\n]* H=))"
    r"(?:[^\n\"]* C=\"(?:([23][0-9][0-9])[ -](?:\(?#?([245]\.[0-9]{1,3}\.[0-9]{1,3})(?![0-9.]))?"
    r"|(?![2-5][0-9][0-9][ -]))[^\"\n]*\"(?= |\n))?[^\n\"]*(?=\n)"
)
# A bounce or expiry (`**`) or deferral (`==`, but not a skipped try). Group: what makes a
# `**` an expiry. Then the remote reply as _failed() finds it: after the first `SMTP error
# from remote mail` (which must read `... server after `), past `pipelined `, past the first
# ">" after `RCPT`/`MAIL`, at the first ": " (not an older `host ...: ` prefix). Groups:
# code, enhanced code, the reply text.
_FAILED: Final = (
    r"(\*\*|==) " + _ADDRESS + r"(?:(?>[^\n]*?SMTP error from remote mail) server after "
    r"(?>(?:pipelined )?)(?>(?:(?:RCPT|MAIL)[^>\n]*>)?)[^:\n]*(?::(?! )[^:\n]*)*: (?!host )"
    r"(?=" + _CODE + r"|(?![2-5][0-9][0-9](?:[ -]|\n)))([^\n]*)"
    r"|(?![^\n]*SMTP error from remote mail)[^\n]*)(?=\n)"
)
# Our refusal `H=HOST FIELDS [F=<s> ...][temporarily ]rejected RCPT|EHLO or HELO ...: REPLY`:
# fields with no quote, no ": " (parse() reads such as no field list), no `rejected ` before
# the one read, the first "F=" (if any) a sender followed by a space. Groups: IP, sender text
# after its last "@" (the sender's domain), `temporarily`, what was refused, the reply's code,
# enhanced code and text.
_REJECT: Final = (
    _NO_QID + _host("(") + r"(?:[^\n\"':rF]|:(?! )|r(?!ejected )|F(?!=))*"
    r"(?:F=(?:[^ \n\"':@]*@([^ \n\"':@]*)|[^ \n\"':@]*)(?<!temporarily)(?<!rejected) "
    r"(?:[^\n\"':r]|:(?! )|r(?!ejected ))*)?"
    r"(?<= )rejected (?:(?<=(temporarily) rejected )|)(RCPT|EHLO or HELO) (?:[^:\n]|:(?! ))*: "
    r"(?=" + _CODE + r"|(?![2-5][0-9][0-9](?:[ -]|\n)))([^\n]*)"
)
# `SMTP protocol synchronization error (...): rejected connection from H=HOST ...`: Exim sent
# 554; the reason is read from the whole message. Groups: the message, IP.
_SYNC: Final = (
    r"(?=(SMTP protocol synchronization error [^\n]*))SMTP protocol synchronization error "
    r"\((?:[^)\n]|\)(?!: rejected )){0,71}\): rejected connection from " + _host("(") + r"[^\n]*"
)
# `DRIVER authenticator failed for HOST: REPLY` with a code. Groups: IP, code, enhanced, text.
_AUTH: Final = (
    _NO_QID + r"(?!H=|U=|F=|re|SMTP |\[)[^ \n]{1,255} authenticator failed for "
    r"(?:[^ \n\[(][^ \n]{0,254} )?(?:\([^ \n]{0,255}\) )?"
    r"\[((?=[^\]\n]*[.:])[0-9A-Fa-f.:]{1,45})\](?::[0-9]{1,5})?: (?=" + _CODE + r")([^\n]*)"
)
_ROW: Final = f"(?:{_HEAD}(?:{_QID}{_DT}(?:{_DELIVERY}|{_FAILED})|{_REJECT}|{_AUTH}|{_SYNC})|[^\n]*)\n"

# A row: what batch() reads of a usual event line (the C scanner makes the same): the stamp;
# `key`, what decides the counts (`S|code|enhanced` a delivery, `B`/`X`/`D|code|enhanced` a
# bounce, expiry or deferral, `R|code|enhanced` an RCPT refusal, `A|code|enhanced` an auth
# failure, with the code Exim sent); the remote domain's key (the text after the last "@",
# then for `=> user <user@dom>` "\n" and the same of the `<...>`); `o5`/`i4`-style direction
# and code class, "" without a code; the DT= text ("" without); the reply text of a 4xx/5xx
# (where its reason is read); the client IP of our refusals; then the line itself.
_STAMP, _KEY, _DOMAIN, _CLASS, _DELAY, _TEXT, _IP, _LINE = range(8)
_STATUS: Final[dict[str, Status]] = {
    "S": "sent", "B": "bounced", "X": "expired", "D": "deferred", "R": "rejected", "H": "rejected",
    "A": "rejected", "P": "rejected",
}  # fmt: skip
_STAGE: Final = {"R": "rcpt", "H": "helo", "A": "auth", "P": "pipelining"}
_FINAL: Final = {"S": 0, "B": 1, "X": 2}  # the bounce-ratio cell index of an outcome
_CLASSES: Final[dict[str, tuple[Direction, str]]] = {
    d[0] + c: (d, c + "xx") for d in ("outbound", "inbound") for c in "2345"
}
_REFUSALS: Final = frozenset({"o4", "o5", "i4", "i5"})
_TIMEOUT: Final = "retry timeout exceeded"
_FAILING: Final = "have been failing for a long time"
_NOT_REACHED: Final = "retry time not reached"
# Memo sizes: stamps only move forward, so their memo need hold little more than one run of
# rows (a 1 MiB chunk holds at most a few thousand seconds); domains repeat across chunks
# (the 1M-line benchmark log has 11k domain keys: at 4k a third of the lookups missed).
# All bounded so that peak RSS stays under the 60 MB limit (issue 16 part 5).
_STAMP_MEMO: Final = 1 << 12
_DOMAIN_MEMO: Final = 1 << 14
_REASON_MEMO: Final = 1 << 10
# A batch costs about as much as parse() of ten lines before its first row (tests set 1, so
# that every run of rows goes through batch()).
_MIN_RUN: Final = 8


# What classify() reads of a reply is its first MAX_TEXT characters with every `<address>`
# made a space (reasons.py). Doing that here, in the row, makes the texts of one reply to
# different recipients the same, so batch() classifies each wording once (memo) instead of
# once per refusal. When a "<" is left (nested or unclosed brackets) classify() could strip
# again what one pass left, so the text stays as it was cut.
_BRACKETED: Final = re.compile(r"<[^<>]{0,320}>")


def _reply(text: str) -> str:
    """A refusal's reply text as classify() will read it: cut, addresses made spaces."""
    cut = text[:MAX_TEXT]
    if "<" not in cut:
        return cut
    stripped = _BRACKETED.sub(" ", cut)
    return cut if "<" in stripped else stripped


@cache
def _row_regex() -> re.Pattern[str]:
    """_ROW compiled, when first needed: with the C scanner built it never is."""
    return re.compile(_ROW)


def _row(g: tuple[str, ...], line: str) -> Item:
    """The row of a line from _ROW's groups."""
    stamp, dt = g[0], g[1]
    (d_dom, d_alt, d_code, d_enh) = g[2:6]
    (f_flag, f_dom, f_alt, f_code, f_enh, f_text) = g[6:12]
    (r_ip, r_dom, r_tmp, r_what, r_code, r_enh, r_text) = g[12:19]
    (a_ip, a_code, a_enh, a_text, s_text, s_ip) = g[19:25]
    if f_flag:
        # _failed(): a skipped try is no event; `**` is an expiry on these words. Neither can
        # be in the stamp, message id or address, so the whole line may be searched.
        if f_flag == "**":
            kind = "X" if line.endswith(_TIMEOUT) or _FAILING in line else "B"
        elif _NOT_REACHED in line:
            return line
        else:
            kind = "D"
        dom = f_dom + "\n" + f_alt if f_alt else f_dom
        refusal = f_code[:1] in ("4", "5")
        return (
            stamp, f"{kind}|{f_code}|{f_enh}", dom, "o" + f_code[0] if f_code else "", dt,
            _reply(f_text) if refusal else "", "", line,
        )  # fmt: skip
    if r_ip:
        # Exim sends 550 (451 when `temporarily`); an ACL's code of the same class replaces it.
        code, enh = ("451" if r_tmp else "550"), ""
        if r_code and r_code[0] == code[0]:
            code, enh = r_code, r_enh
        kind = "R" if r_what == "RCPT" else "H"
        return stamp, f"{kind}|{code}|{enh}", r_dom, "i" + code[0], "", _reply(r_text), r_ip, line
    if a_ip:
        refusal = a_code[0] in "45"
        reply = _reply(a_text) if refusal else ""
        return stamp, f"A|{a_code}|{a_enh}", "", "i" + a_code[0], "", reply, a_ip, line
    if s_ip:
        return stamp, "P|554|", "", "i5", "", _reply(s_text), s_ip, line
    dom = d_dom + "\n" + d_alt if d_alt else d_dom
    return stamp, f"S|{d_code}|{d_enh}", dom, "o" + d_code[0] if d_code else "", dt, "", "", line


# What the C reader makes of a run of rows (runs() in _exim_scan.c): its first row (by which
# batch() finds it), rows, whether every time is good and never goes back, the last time,
# then EventBatch's fields as batch() makes them from full rows: counts per key, classes,
# domains, minutes, DT= durations per kind, refusals; reply times and keys (each_reply only);
# refusals per (direction, code, reason), None when a run has too many of those to count in C;
# with per_minute, the weights of the times and keys grouped as base.per_minute() groups
# replies (a key stands for its reply), else None.
Summary = tuple[
    tuple[str], int, bool, float, dict[str, int], list[tuple[Direction, str]], list[str],
    dict[int, list[int]], dict[str, list[float]], list[tuple[int, Direction, str, str, str, str, str]],
    list[float] | None, list[str] | None, dict[tuple[Direction, str, str], int] | None, list[int] | None,
]  # fmt: skip
Runs = Callable[
    [str, int, bool, bool, Callable[[str], float | None], Callable[[str], str], dict[str, str],
     Callable[[str], float | None], dict[str, float | None]],
    tuple[int, list[Item], list[Summary]] | None,
]  # fmt: skip


def _native() -> tuple[Callable[[str, bool], tuple[int, list[Item]] | None], Runs] | None:
    try:
        from logscan.parsers._exim_scan import runs, scan, set_reasons  # noqa: PLC0415
    except ImportError:  # installed without a C compiler: the regex does the same, slower
        return None
    set_reasons(*tables())  # so that C classifies replies from the one list in reasons.py
    return scan, runs


_NATIVE: Final = _native()
# The C row reader (tests compare it with the regex, and set it None for the Python path);
# with it, EximBulk.scan() reads chunks with _runs.
_scan: Final = None if _NATIVE is None else _NATIVE[0]
_runs: Final = None if _NATIVE is None else _NATIVE[1]


def _rows(lines: list[str]) -> list[Item] | None:
    """Each line's row, or the line when _ROW leaves it to parse(); None: parse() them all."""
    text = "\n".join(lines)
    if "\r" in text or max(map(len, lines), default=0) > MAX_LINE:
        return None  # parse() strips a CR and cuts long lines; the regex does neither
    found: list[tuple[str, ...]] = _row_regex().findall(text + "\n")
    if len(found) != len(lines):
        return None
    return [_row(row, line) if row[0] else line for row, line in zip(found, lines, strict=True)]


def _short_runs_as_lines(items: list[Item]) -> list[Item]:
    """The items with each run of fewer than _MIN_RUN rows made lines again: batch() would
    refuse it, and one run of lines costs the pipeline less than several."""
    if _MIN_RUN <= 1:
        return items
    out: list[Item] = []
    for kind, run in groupby(items, type):
        if kind is str:
            out.extend(run)
            continue
        got = list(run)
        out.extend(got if len(got) >= _MIN_RUN else map(itemgetter(-1), got))
    return out


_REASON_KEY: Final = itemgetter(1, 2, 3)  # a refusal's (direction, code, reason)


def _by_key(
    counts: dict[str, int],
) -> tuple[
    dict[tuple[Direction, str, str], int],
    dict[Status, int],
    dict[tuple[str, str], int],
    dict[str, tuple[Direction, str, str]],
]:
    """Replies, outcomes and our rejections from the rows per key; and each key's reply."""
    replies: dict[tuple[Direction, str, str], int] = {}
    deliveries: dict[Status, int] = {}
    rejections: dict[tuple[str, str], int] = {}
    reply_of: dict[str, tuple[Direction, str, str]] = {}
    for key, n in counts.items():
        kind, code, enhanced = key.split("|")
        status = _STATUS[kind]
        if status == "rejected":
            skey = (_STAGE[kind], code)
            rejections[skey] = rejections.get(skey, 0) + n
        else:
            deliveries[status] = deliveries.get(status, 0) + n
        if code:
            rkey: tuple[Direction, str, str] = (
                "inbound" if status == "rejected" else "outbound",
                code,
                enhanced,
            )
            replies[rkey] = replies.get(rkey, 0) + n
            reply_of[key] = rkey
    return replies, deliveries, rejections, reply_of


class EximBulk:
    """Reads a chunk's candidate lines into rows, and runs of rows into EventBatches.

    Shares the parser's memo tables and time arithmetic, so both give the same floats.
    """

    __slots__ = (
        "_buckets", "_delays", "_domains", "_each_reply", "_parser", "_per_minute", "_reasons", "_summaries",
        "_times",
    )  # fmt: skip

    def __init__(self, parser: EximParser) -> None:
        self._parser = parser
        self._delays: dict[str, float | None] = {}
        self._domains: dict[str, str] = {}  # a row's domain key → the domain parse() gives
        self._times: dict[str, float | None] = {}  # stamp → its time
        self._buckets: dict[str, int] = {}  # stamp → its bounce-ratio minute
        self._reasons: dict[tuple[tuple[Direction, str, str], str], str] = {}  # (reply, text) → reason
        self._summaries: dict[int, Summary] = {}  # id of a run's first row → the run's summary
        # Whether the last batch() asked for each reply (alert rules): the C reader then lists
        # them for the next chunk (a batch asking without them goes to parse(): same counts).
        self._each_reply = False
        # Whether it also let them be grouped per minute (batch()'s per_minute): the same.
        self._per_minute = False

    def scan(self, chunk: str, rows: bool) -> tuple[int, list[Item]] | None:
        """The prefilter and rows() over a whole chunk in C (logscan/parsers/_exim_scan.c), if
        built: each row `(line,)`, each run's counts kept for batch() (see Summary)."""
        if _scan is None or _runs is None:
            return None
        if not rows:
            return _scan(chunk, False)
        p = self._parser
        got = _runs(
            chunk,
            _MIN_RUN,
            self._each_reply,
            self._per_minute,
            p.hour_time,
            self._domain,
            self._domains,
            duration,
            self._delays,
        )
        if got is None:
            return None
        total, items, summaries = got
        self._summaries = {id(s[0]): s for s in summaries}
        for memo in (self._domains, self._delays):
            if len(memo) > _DOMAIN_MEMO:
                memo.clear()
        return total, items

    def rows(self, lines: list[str]) -> list[Item] | None:
        """Each line's row (see _row) or, when it is left to parse(), the line itself."""
        items = _rows(lines)
        return None if items is None else _short_runs_as_lines(items)

    def batch(
        self,
        rows: list[tuple[str, ...]],
        each_reply: bool = False,
        aligned: bool = True,
        per_minute: bool = False,
    ) -> EventBatch | None:
        """The events of `rows` (none empty) grouped; None when they must go line by line.

        `each_reply`: with each reply's time and (direction, code, enhanced), for alert rules.
        `aligned` changes nothing here (every event's domain is listed); `per_minute`: runs the C
        reader counted group each minute's replies (EventBatch.weights); rows read here list each."""
        if len(rows) < _MIN_RUN:
            return None  # parse() is cheaper than a batch's fixed cost for a few lines
        if len(rows[0]) == 1:  # a row of the C reader: its run is counted already
            grouped = each_reply and per_minute
            self._each_reply, self._per_minute = each_reply, grouped
            summary = self._summaries.pop(id(rows[0]), None)
            if summary is None or summary[0] is not rows[0] or summary[1] != len(rows):
                return None
            if each_reply and (summary[10] is None or (summary[13] is not None and not grouped)):
                # Read without each reply, or grouped where each must be listed (the first batch
                # since alert rules came or changed): read again.
                summary = self._read_again([row[0] for row in rows], grouped)
            return None if summary is None else self._counted(summary, each_reply)
        p = self._parser
        stamps = list(map(itemgetter(_STAMP), rows))
        memo_t, memo_b = self._times, self._buckets
        missing_t = set(stamps).difference(memo_t)
        if len(memo_t) + len(missing_t) > _STAMP_MEMO:
            memo_t.clear()
            memo_b.clear()
            missing_t = set(stamps)
        for stamp in missing_t:
            t = memo_t[stamp] = p.stamp_time(stamp)
            memo_b[stamp] = -1 if t is None else int(t // 60)
        got = list(map(memo_t.__getitem__, stamps))
        if None in got:
            return None
        times: list[float] = got  # type: ignore[assignment]
        if not all(map(le, times, islice(times, 1, None))):
            return None  # add_batch() fills each minute at once only when minutes never decrease
        buckets = list(map(memo_b.__getitem__, stamps))

        replies, deliveries, rejections, reply_of = _by_key(Counter(map(itemgetter(_KEY), rows)))
        classes = list(map(itemgetter(_CLASS), rows))
        codes = []
        if each_reply:
            codes = list(map(reply_of.__getitem__, compress(map(itemgetter(_KEY), rows), classes)))
        keys = list(map(itemgetter(_DOMAIN), rows))
        memo = self._domains
        missing = set(keys).difference(memo)
        if len(memo) + len(missing) > _DOMAIN_MEMO:
            memo.clear()
            missing = set(keys)
        for key in missing:
            memo[key] = self._domain(key)
        domains = list(map(memo.__getitem__, compress(keys, classes)))

        # 4xx/5xx rows: their reason and offenders, in order (the offender sketches depend on
        # it), with C-level passes: a fifth of this log's lines are such rows.
        marks = list(map(_REFUSALS.__contains__, classes))
        refused = list(compress(rows, marks))
        replied = list(map(reply_of.__getitem__, map(itemgetter(_KEY), refused)))
        directions = list(map(itemgetter(0), replied))
        rcodes = list(map(itemgetter(1), replied))
        memo_r = self._reasons
        asked = list(zip(replied, map(itemgetter(_TEXT), refused), strict=True))
        unknown = set(asked).difference(memo_r)
        if len(memo_r) + len(unknown) > _REASON_MEMO:
            memo_r.clear()
            unknown = set(asked)
        for asking in unknown:
            (_, code, enhanced), reply = asking
            memo_r[asking] = refusal_reason(code, enhanced, reply, 0)
        why = list(map(memo_r.__getitem__, asked))
        remote = list(map(memo.__getitem__, map(itemgetter(_DOMAIN), refused)))
        ours = list(map("inbound".__eq__, directions))  # the remote is the sender, else the recipient
        theirs = list(map(not_, ours))
        refusals: list[tuple[int, Direction, str, str, str, str, str]] = list(
            zip(
                compress(buckets, marks), directions, rcodes, why, map(mul, remote, ours),
                map(itemgetter(_IP), refused), map(mul, remote, theirs), strict=True,
            )
        )  # fmt: skip
        reasons: dict[tuple[Direction, str, str], int] = dict(
            Counter(zip(directions, rcodes, why, strict=True))
        )

        delays: dict[Status, list[float]] = {}
        timed = [row for row in rows if row[_DELAY]]
        if timed:
            for row in timed:
                value = self._delay(row[_DELAY])
                if value is not None:
                    delays.setdefault(_STATUS[row[_KEY][0]], []).append(value)
        minutes: dict[int, list[int]] = {}
        kinds = map(itemgetter(0), map(itemgetter(_KEY), rows))
        for (bucket, kind), n in Counter(zip(buckets, kinds, strict=True)).items():
            index = _FINAL.get(kind)
            if index is not None:
                minutes.setdefault(bucket, [0, 0, 0])[index] += n
        return EventBatch(
            "exim",
            p.log,
            len(rows),
            replies,
            deliveries,
            rejections,
            domains,
            list(map(_CLASSES.__getitem__, filter(None, classes))),
            delays,
            minutes,
            times[-1],
            reasons,
            refusals,
            [t // 1 for t in compress(times, classes)] if each_reply else [],
            codes,
        )

    def _read_again(self, lines: list[str], grouped: bool) -> Summary | None:
        """The summary of a run's lines, with each reply's time and key (`grouped`: per minute)."""
        p = self._parser
        assert _runs is not None  # only C rows come here
        text = "\n".join(lines) + "\n"
        got = _runs(text, 1, True, grouped, p.hour_time, self._domain, self._domains, duration, self._delays)
        if got is None or len(got[2]) != 1 or got[2][0][1] != len(lines):
            return None
        return got[2][0]

    def _counted(self, s: Summary, each_reply: bool) -> EventBatch | None:
        """batch() of a run the C reader counted (see Summary)."""
        (_, n, ok, last_time, keys, classes, domains, minutes, delays, refusals, times, coded, reasons,
         weights) = s  # fmt: skip
        if not ok or (each_reply and (times is None or coded is None)):
            return None
        replies, deliveries, rejections, reply_of = _by_key(keys)
        return EventBatch(
            "exim",
            self._parser.log,
            n,
            replies,
            deliveries,
            rejections,
            domains,
            classes,
            {_STATUS[kind]: values for kind, values in delays.items()},
            minutes,
            last_time,
            dict(Counter(map(_REASON_KEY, refusals))) if reasons is None else reasons,
            refusals,
            times if each_reply and times is not None else [],
            list(map(reply_of.__getitem__, coded)) if each_reply and coded is not None else [],
            weights=weights if each_reply and weights is not None else [],
        )

    def _domain(self, key: str) -> str:
        """The domain parse() gives for a row's domain key (see the row layout above)."""
        p = self._parser
        tail, nl, alt = key.partition("\n")
        dom = p.domain("@" + tail) if tail else ""
        if not dom and nl:
            dom = p.domain("@" + alt) if alt else ""
        return dom

    def _delay(self, text: str) -> float | None:
        """duration() of a DT= text, memoised as parse() memoises it."""
        if text in self._delays:
            return self._delays[text]
        if len(self._delays) > 1024:
            self._delays.clear()
        got = self._delays[text] = duration(text)
        return got
