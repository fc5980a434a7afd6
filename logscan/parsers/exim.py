"""Exim main log → Events: deliveries, bounces, deferrals, expiries and our own SMTP refusals.

Line shapes and the codes inferred for refusals are written down in docs/parsers/exim.md.

Unparsed reasons (a fixed set; each becomes a label value):
    no-timestamp        no Exim timestamp, and no syslog prefix of an `exim` program either
    bad-timestamp       timestamp-shaped, but impossible (month 13, hour 25, bad zone, ...)
    orphan-part         a syslog `[n/m]` part whose earlier parts never arrived
    bad-delivery-line   a `=>` `->` `>>` `**` `==` line without an address
    bad-reject-line     `rejected <what>` where <what> is none Exim writes
"""

from __future__ import annotations

import re
from typing import ClassVar, Final

from logscan.events import MTA, NOTHING, Event, ParseResult, Status, Unparsed
from logscan.parsers.base import MAX_LINE, ParserOptions, Prefilter, domain_of, reply_codes
from logscan.parsers.reasons import refusal_reason
from logscan.parsers.timestamps import MONTHS, Clock, parse_offset, utc_epoch

REASONS: Final = (
    "no-timestamp", "bad-timestamp", "orphan-part", "bad-delivery-line", "bad-reject-line", "other-mta",
)  # fmt: skip

_NO_TIMESTAMP: Final = Unparsed("no-timestamp")
_OTHER_MTA: Final = Unparsed("other-mta", "a Postfix line: is this log's format postfix?")
_ORPHAN: Final = Unparsed("orphan-part", "syslog part without its predecessors")
_BAD_DELIVERY: Final = Unparsed("bad-delivery-line", "flag without an address")
_BAD_REJECT: Final = Unparsed("bad-reject-line", "refusal of an unknown kind")

# Two-digit fields, looked up instead of int(): int() takes " 5", "+5", "1_0" and non-ASCII digits.
_MIN: Final = {f"{i:02d}": i for i in range(60)}
_SEC: Final = {**_MIN, "60": 60}  # a leap second is a real time
_MILLIS: Final = {f"{i:03d}": i / 1000 for i in range(1000)}
_DAY: Final = {**{f"{i:02d}": i for i in range(1, 32)}, **{f" {i}": i for i in range(1, 10)}}

_HOUR = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[ T]([0-9]{2})\Z")
# A syslog program tag after the timestamp: up to two words (host, severity), then exim[pid]:.
_POSTFIX_TAG = re.compile(r"(?:[^ ]{1,255} ){0,2}postfix[0-9A-Za-z_.-]{0,40}/")
_TAG = re.compile(r"(?:[^ ]{1,255} ){0,2}exim[0-9A-Za-z_.-]{0,20}(?:\[([0-9]{1,10})\])?: ?")
_SPLIT = re.compile(r"\[([0-9]{1,3})([/\\])([0-9]{1,3})\] ")
_QUEUE_ID = re.compile(r"[0-9A-Za-z]{6}-(?:[0-9A-Za-z]{6}-[0-9A-Za-z]{2}|[0-9A-Za-z]{11}-[0-9A-Za-z]{4})\Z")
_HOST_OK = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}\Z")
_DURATION = re.compile(
    r"(?:([0-9]{1,6})w)?(?:([0-9]{1,6})d)?(?:([0-9]{1,6})h)?(?:([0-9]{1,6})m)?"
    r"(?:([0-9]{1,9}(?:\.[0-9]{1,6})?)s)?\Z"
)
_RFC3339 = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:?[0-9]{2})\Z")
_IP_CHARS: Final = "0123456789abcdefABCDEF.:"

# "SMTP error from remote mail server after <command>": the command tells the stage.
_REMOTE_STAGES: Final = (
    ("RCPT", "rcpt"),
    ("MAIL", "mail"),
    ("DATA", "data"),
    ("end of data", "end-of-data"),
    ("initial connection", "connect"),
    ("EHLO", "helo"),
    ("HELO", "helo"),
    ("LHLO", "helo"),
    ("BDAT", "bdat"),
    ("STARTTLS", "starttls"),
    ("AUTH", "auth"),
    ("QUIT", "quit"),
    ("RSET", "rset"),
)
# `rejected <what>`: what Exim refused, the stage, and the code Exim sends for a `deny` (its
# acl_wherecodes table; `defer` always sends 451). None as code: no SMTP reply was sent.
_REJECTS: Final = (
    ("RCPT ", "rcpt", "550"),
    ("MAIL FROM:", "mail", "552"),  # the SIZE= check: "message too big", Exim's fixed 552
    ("MAIL ", "mail", "550"),
    ("after DATA", "end-of-data", "550"),  # also "after DATA PRDR"
    ("DATA", "data", "550"),  # the predata ACL
    ("during MIME ACL checks", "end-of-data", "550"),
    ("DKIM", "end-of-data", "550"),
    ("EHLO or HELO", "helo", "550"),
    ("EHLO from ", "helo", "501"),  # "syntactically invalid argument(s)", a fixed 501
    ("HELO from ", "helo", "501"),
    ('"EHLO ', "helo", "550"),  # helo_verify_hosts: 550, or 451 when temporarily
    ('"HELO ', "helo", "550"),
    ('connection in "connect" ACL', "connect", "550"),
    ("AUTH", "auth", "503"),
    ("STARTTLS", "starttls", "550"),
    ("ETRN", "etrn", "458"),
    ("EXPN", "expn", "550"),
    ("VRFY", "vrfy", "252"),
    ("from <", "end-of-data", "552"),  # receive.c: "message too big: read=..." (the body hit the limit)
    ("by local_scan()", "end-of-data", "550"),
    ("by non-SMTP ACL", "", None),  # a local submission: nobody got an SMTP reply
)
# `SMTP call from H dropped: too many <what>`: the reply Exim sent as it hung up (smtp_in.c:
# smtp_notquit_exit() with 554 for non-mail commands, 500 for unrecognized commands; after too
# many syntax or protocol errors the code of the last error, not logged: "").
_TOO_MANY: Final = (
    ("nonmail commands", "554"),
    ("unrecognized commands", "500"),
    ("syntax or protocol errors", ""),
)
# Frequent id-less lines that never carry a reply.
_QUIET: Final = ("SMTP connection from ", "no MAIL in SMTP connection ", "Start queue run", "End queue run")


# The prefilter (docs/decisions/0006-prefilter.md). A plain main-log line with a valid
# timestamp (every field possible, so no bad-timestamp; Feb 29 is left to parse()), an
# optional valid zone, then a space and no `+`/`-`/`[` (no zone-shaped word, no `[pid]`),
# reaches _body() at the character after that space (b). The lookaheads refuse a flag
# (`=>` `->` `>>` `**` `==`) where _body() looks for one (after a 16- or 23-character
# message id); then _body() returns NOTHING unless the line holds `rejected `, an auth
# failure, or `exim` where _body() or _TAG looks for a tag: after a space, or right after
# `]` (`U=Debian-exim` is no trigger), or ` dropped` (`dropped: too many ...`, `dropped by
# 'connect' ACL`); a synchronization error holds `rejected `. Syslog-prefixed lines never have
# this shape, so a `[n/m]` part always reaches parse().
_FLAG: Final = r"(?:=>|->|>>|\*\*|==) "
_TRIGGERS: Final = ("rejected ", " authenticator failed for ", " exim", "]exim", " dropped")
_BORING: Final = (
    r"(?:19|20)[0-9][0-9]-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
    r"|(?:0[13578]|1[02])-31) (?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9][0-9][0-9])?"
    r"(?: [+-](?:[01][0-9]|2[0-3])[0-5][0-9])? (?![+\-\[\n])"
    r"(?![^\n]{6}-[^\n]{6}-[^\n]{2} " + _FLAG + r")(?![^\n]{6}-[^\n]{11}-[^\n]{4} " + _FLAG + ")"
)


def duration(text: str) -> float | None:
    """Seconds of an Exim time like `0.004s`, `2m42s`, `1d3h`; None if it is not one."""
    m = _DURATION.match(text)
    if m is None or not text:
        return None
    w, d, h, mi, s = m.groups()
    return int(w or 0) * 604800 + int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)


def _host_at(line: str, i: int, end: int) -> tuple[str, str, int]:
    """Verified name and IP of an Exim host `name (helo) [ip]:port` starting at i; and where it ends.

    The `(helo)` part is what the client claimed, so it is skipped, brackets in it included.
    """
    name = ""
    if not line.startswith("[", i):
        sp = line.find(" ", i, end)
        if sp < 0:
            sp = end
        if not line.startswith("(", i):
            cand = line[i:sp]
            if _HOST_OK.match(cand):
                name = cand
        j = line.find(" [", i, end)
        if j < 0:
            return name, "", sp
        i = j + 1
    close = line.find("]", i, min(end, i + 48))
    stop = line.find(" ", i, end)
    if stop < 0:
        stop = end
    if close < 0 or close > stop:
        # "[4.4.4.4:" without its "]": an IPv4 address ends at the port colon.
        close = stop
        colon = line.find(":", i, stop)
        if colon > 0 and line.find(".", i, colon) > 0:
            close = colon
    ip = line[i + 1 : close]
    if not ip or len(ip) > 45 or ip.strip(_IP_CHARS) or (":" not in ip and "." not in ip):
        ip = ""
    return name, ip, close


def _quoted_colon(line: str, start: int, end: int) -> bool:
    """True when line[start:end] holds ': ' outside double quotes (so it is not a field list)."""
    i = start
    while True:
        c = line.find(": ", i, end)
        if c < 0:
            return False
        q = line.find('"', i, c)
        if q < 0:
            return True
        close = line.find('"', q + 1, end)
        if close < 0:
            return True
        i = close + 1


def _field(line: str, key: str, start: int, end: int) -> str:
    """The value of ` key` (e.g. ` F=`) in line[start:end], up to the next space; "" if absent."""
    k = line.find(key, start, end)
    if k < 0:
        return ""
    k += len(key)
    sp = line.find(" ", k, end)
    return line[k : sp if sp >= 0 else end]


class _Pending:
    """The parts of one syslog-split Exim entry seen so far."""

    __slots__ = ("length", "next", "parts", "time", "total")

    def __init__(self, total: int, time: float | None) -> None:
        self.total = total
        self.next = 1
        self.parts: list[str] = []
        self.length = 0
        self.time = time


class EximParser:
    """Parses Exim main log lines, plain or through syslog.

    Why one class: its methods are the branches of one line grammar sharing one hot-path
    state (time cache, pending syslog parts); splitting them would add a call per line.

    State: the syslog `[n/m]` parts of unfinished entries, keyed by pid, at most
    MAX_PENDING entries of at most MAX_LINE characters each (the oldest is dropped first).
    """

    mta: ClassVar[MTA] = "exim"
    prefilter: ClassVar[Prefilter | None] = Prefilter(_TRIGGERS, _BORING)
    MAX_PENDING: ClassVar[int] = 64
    __slots__ = (
        "_clock",
        "_domains",
        "_durations",
        "_hours",
        "_log",
        "_minutes",
        "_pending",
        "_syslog_hours",
        "_zoned",
    )

    def __init__(self, options: ParserOptions) -> None:
        self._log = options.log
        self._clock = Clock(options.tz, options.reference_time)
        self._hours: dict[str, float] = {}  # "YYYY-MM-DD hh" → epoch of that local hour
        # "YYYY-MM-DD hh:mm" → (epoch of the hour, minute × 60): the fast path's only lookup
        self._minutes: dict[str, tuple[float, int]] = {}
        self._zoned: dict[str, float] = {}  # "YYYY-MM-DD hh±zone" → epoch
        self._syslog_hours: dict[str, float] = {}  # "Mmm dd hh" → epoch (depends on the reference)
        self._pending: dict[str, _Pending] = {}
        self._domains: dict[str, str] = {}  # what follows "@" → domain_of() of it: domains repeat
        self._durations: dict[str, float | None] = {}  # "DT=" values repeat too

    @property
    def log(self) -> str:
        """The log name its events carry."""
        return self._log

    def set_reference_time(self, t: float) -> None:
        """Date year-less syslog prefixes against this moment (file mtime, or now)."""
        self._clock.set_reference(t)
        self._syslog_hours.clear()

    # ---- timestamps -------------------------------------------------------------------------

    def _hour(self, key: str) -> float | None:
        base = self._hours.get(key)
        if base is None:
            m = _HOUR.match(key)
            if m is None:
                return None
            try:
                base = self._clock.local(int(m[1]), int(m[2]), int(m[3]), int(m[4]), 0, 0)
            except (ValueError, OverflowError):
                return None
            if len(self._hours) > 4096:
                self._hours.clear()
            self._hours[key] = base
        return base

    def _exim_time(self, line: str, i: int) -> tuple[float, int]:
        """Exim's `YYYY-MM-DD hh:mm:ss[.mmm][ ±hhmm][ [pid]]` at i → (epoch, index after it).

        Index -1: not an Exim timestamp; -2: one with impossible fields.
        """
        if (
            len(line) < i + 19
            or line[i + 4] != "-"
            or line[i + 10] != " "
            or line[i + 13] != ":"
            or line[i + 16] != ":"
        ):
            return 0.0, -1
        mi = _MIN.get(line[i + 14 : i + 16])
        se = _SEC.get(line[i + 17 : i + 19])
        if mi is None or se is None:
            return 0.0, -2
        j = i + 19
        t: float = mi * 60 + se
        if line.startswith(".", j):
            frac = _MILLIS.get(line[j + 1 : j + 4])
            if frac is None:
                return 0.0, -2
            t += frac
            j += 4
        hour = line[i : i + 13]
        if (line.startswith(" +", j) or line.startswith(" -", j)) and (
            len(line) == j + 6 or line.startswith(" ", j + 6)
        ):
            zone = line[j + 1 : j + 6]
            key = hour + zone
            base = self._zoned.get(key)
            if base is None:
                off = parse_offset(zone)
                m = _HOUR.match(hour)
                if off is None or m is None:
                    return 0.0, -2
                try:
                    base = utc_epoch(int(m[1]), int(m[2]), int(m[3]), int(m[4]), 0, 0, off)
                except (ValueError, OverflowError):
                    return 0.0, -2
                if len(self._zoned) > 4096:
                    self._zoned.clear()
                self._zoned[key] = base
            j += 6
        else:
            hb = self._hour(hour)
            if hb is None:
                return 0.0, -2
            base = hb
            if i == 0:
                if len(self._minutes) > 4096:
                    self._minutes.clear()
                self._minutes[line[:16]] = (hb, mi * 60)
        if line.startswith(" [", j):
            close = line.find("]", j + 2, j + 14)
            if close > j + 2 and line[j + 2 : close].isdigit():
                j = close + 1
        return base + t, j

    def _syslog_time(self, line: str) -> tuple[float, int]:
        """RFC 3164 `Mmm dd hh:mm:ss ` at 0 → (epoch, index after it); index -1: absent, -2: bad."""
        if len(line) < 15 or MONTHS.get(line[:3]) is None or line[3] != " ":
            return 0.0, -1
        d = 4 if line[5] != " " else 3  # "Mar 7 10:00:00": some relays do not pad the day
        day = _DAY.get(line[4:6]) if d == 4 else _DAY.get("0" + line[4])
        j = d + 2  # the space before hh
        if day is None or len(line) < j + 10 or line[j] != " " or line[j + 3] != ":" or line[j + 6] != ":":
            return 0.0, -2
        mi = _MIN.get(line[j + 4 : j + 6])
        se = _SEC.get(line[j + 7 : j + 9])
        hh = _MIN.get(line[j + 1 : j + 3])
        if mi is None or se is None or hh is None or hh > 23:
            return 0.0, -2
        key = line[:3] + str(day) + " " + str(hh)
        base = self._syslog_hours.get(key)
        if base is None:
            try:
                base = self._clock.syslog(line[:3], day, hh, 0, 0)
            except (ValueError, OverflowError):
                return 0.0, -2
            if len(self._syslog_hours) > 4096:
                self._syslog_hours.clear()
            self._syslog_hours[key] = base
        end = j + 9
        if line.startswith(" ", end):
            end += 1
        return base + mi * 60 + se, end

    def _rfc3339_time(self, line: str) -> tuple[float, int]:
        """RFC 3339 `YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm) ` at 0 → (epoch, index after the space)."""
        sp = line.find(" ", 19, 45)
        end = sp if sp >= 0 else len(line)
        m = _RFC3339.match(line, 11, end)
        hm = _HOUR.match(line[:13])
        if m is None or hm is None:
            return 0.0, -2
        off = parse_offset(m[5])
        mi, se = _MIN.get(m[2]), _SEC.get(m[3])
        if off is None or mi is None or se is None:
            return 0.0, -2
        try:
            t = utc_epoch(int(hm[1]), int(hm[2]), int(hm[3]), int(hm[4]), mi, se, off)
        except (ValueError, OverflowError):
            return 0.0, -2
        if m[4]:
            t += float(m[4])
        return t, end + 1

    # ---- entry point -----------------------------------------------------------------------

    def parse(self, line: str) -> ParseResult:
        """Events of one Exim log line (without its newline)."""
        if len(line) > MAX_LINE:
            line = line[:MAX_LINE]
        if line.endswith("\r"):
            line = line[:-1]
        # Fast path: a plain main-log line in a minute seen before (and validated then), no zone.
        # Indexing (not slicing) where the length check allows: it allocates nothing.
        # Same arithmetic, in the same order, and the same `[pid]` rule as _exim_time: which
        # path a line takes depends on the lines before it, its result must not.
        n = len(line)
        if n > 24 and line[16] == ":":
            got = self._minutes.get(line[:16])
            if got is not None:
                hb, m60 = got
                se = _SEC.get(line[17:19])
                j = 19
                t: float | None = None if se is None else m60 + se
                if line[19] == ".":
                    frac = _MILLIS.get(line[20:23])
                    t = None if frac is None or t is None else t + frac
                    j = 23
                c = line[j + 1]
                if t is not None and line[j] == " " and c != "+" and c != "-":  # noqa: PLR1714
                    b = j + 1
                    if c == "[":
                        close = line.find("]", b + 1, b + 13)
                        if close > b + 1 and line[b + 1 : close].isdigit():
                            b = close + 2 if line.startswith(" ", close + 1) else close + 1
                    return self._body(line, b, hb + t)
        return self._slow(line)

    def _slow(self, line: str) -> ParseResult:
        """Everything but the fast path: first lines of a minute, zones, syslog prefixes, junk."""
        c0 = line[:1]
        if "0" <= c0 <= "9":
            if len(line) > 10 and line[10] == "T":
                t, j = self._rfc3339_time(line)
                if j < 0:
                    return Unparsed("bad-timestamp", "RFC 3339 syslog prefix")
                return self._after_syslog(line, j, t)
            t, j = self._exim_time(line, 0)
            if j >= 0:
                return self._body(line, j + 1 if line.startswith(" ", j) else j, t)
            if j == -2 or line[4:5] == "-":
                return Unparsed("bad-timestamp", "Exim timestamp")
            return _NO_TIMESTAMP
        t, j = self._syslog_time(line)
        if j == -2:
            return Unparsed("bad-timestamp", "syslog prefix")
        if j < 0:
            # journald/rsyslog without a time: "host exim[pid]: 2021-07-17 ..."
            return self._after_syslog(line, 0, None)
        return self._after_syslog(line, j, t)

    def _after_syslog(self, line: str, i: int, t: float | None) -> ParseResult:
        """The rest of a syslog record from i: the program tag, split marker, Exim's own stamp."""
        m = _TAG.match(line, i)
        if m is None:
            if _POSTFIX_TAG.match(line, i):
                return _OTHER_MTA  # a wrong `format` must show, not hide as "ignored"
            # Another program in a shared syslog file (or a time-less line that is no record).
            return NOTHING if t is not None else _NO_TIMESTAMP
        k = m.end()
        if line.startswith("[", k):
            s = _SPLIT.match(line, k)
            if s is not None:
                joined = self._join(m[1] or "", int(s[1]), s[2], int(s[3]), line[s.end() :], t)
                if joined is None:
                    return NOTHING
                if isinstance(joined, Unparsed):
                    return joined
                line, k, t = joined[0], 0, joined[1]
        et, j = self._exim_time(line, k)
        if j >= 0:
            return self._body(line, j + 1 if line.startswith(" ", j) else j, et)
        if j == -2:
            return Unparsed("bad-timestamp", "Exim timestamp")
        if t is None:
            return _NO_TIMESTAMP
        if line.startswith("[", k):  # "exim[8001]: [8001] ..." (+pid, no Exim stamp)
            close = line.find("] ", k + 1, k + 13)
            if close > 0 and line[k + 1 : close].isdigit():
                k = close + 2
        return self._body(line, k, t)

    def _join(
        self, pid: str, n: int, sep: str, total: int, text: str, t: float | None
    ) -> tuple[str, float | None] | Unparsed | None:
        """Collects `[n/m]` parts; the whole entry once part m arrives, None while waiting."""
        pending = self._pending
        if n == 1:
            if total <= 1:
                return text, t
            p = _Pending(total, t)
            pending.pop(pid, None)
            if len(pending) >= self.MAX_PENDING:
                del pending[next(iter(pending))]
            pending[pid] = p
        else:
            got = pending.get(pid)
            if got is None or got.total != total or got.next != n:
                pending.pop(pid, None)
                return _ORPHAN
            p = got
        room = MAX_LINE - p.length
        # `\` ends a part cut at a newline: Exim writes such breaks as a literal "\n" in the main log.
        piece = text + "\\n" if sep == "\\" and n < total else text
        if room > 0:
            p.parts.append(piece[:room])
            p.length += min(len(piece), room)
        p.next = n + 1
        if n < total:
            return None
        del pending[pid]
        return "".join(p.parts), p.time

    # ---- the Exim part proper ---------------------------------------------------------------

    def _body(self, line: str, b: int, t: float) -> ParseResult:
        """Dispatch on what follows the timestamp: message id and flag, refusal, auth failure."""
        n = len(line)
        f = 0
        if n > b + 16 and line[b + 6] == "-":
            if line[b + 13] == "-" and line[b + 16] == " ":
                f = b + 17
            elif n > b + 23 and line[b + 18] == "-" and line[b + 23] == " ":
                f = b + 24
        if f:
            c = line[f : f + 3]
            if c == "<= " or c == "*> " or c == "(= ":  # noqa: PLR1714 - fastest on the hot path
                return NOTHING
            if c == "=> " or c == "-> " or c == ">> ":  # noqa: PLR1714
                return self._delivered(line, b, f, t)
            if c == "** " or c == "== ":  # noqa: PLR1714
                return self._failed(line, b, f, t, c == "** ")
            if line.startswith(("H=", "F=", "rejected "), f):
                return self._rejected(line, f, t, b)
            return NOTHING
        c0 = line[b : b + 2]
        if c0 == "H=" or c0 == "U=" or c0 == "F=" or c0 == "re":  # noqa: PLR1714
            return self._rejected(line, b, t, -1)
        if line.startswith(_QUIET, b):
            return NOTHING
        if line.startswith("SMTP ", b):
            return self._smtp_dropped(line, b, t)
        sp = line.find(" ", b, b + 256)
        if sp > b and line.startswith(" authenticator failed for ", sp):
            return self._auth_failed(line, sp + 26, t)
        # syslog-ng can write an Exim-looking stamp of its own before "[severity ][host ]exim[pid]: ".
        if (
            line.startswith("exim", b)
            or line.startswith(" exim", sp)
            or line.startswith(" exim", line.find(" ", sp + 1, sp + 257))
        ) and _TAG.match(line, b) is not None:
            return self._after_syslog(line, b, t)
        return NOTHING

    def domain(self, address: str) -> str:
        """domain_of(address) as parse() reads it (the bulk reader's way in)."""
        return self._domain(address)

    def hour_time(self, hour: str) -> float | None:
        """Epoch of the local hour `YYYY-MM-DD hh` that stamp_time() adds a stamp's minutes and
        seconds to (the C reader's way in); None when parse() would call it bad."""
        return self._hour(hour)

    def stamp_time(self, stamp: str) -> float | None:
        """Epoch of a bare Exim stamp `YYYY-MM-DD hh:mm:ss[.mmm]` as parse() dates a line
        starting with it (the same arithmetic); None when parse() would call it bad."""
        t, j = self._exim_time(stamp, 0)
        return t if j == len(stamp) else None

    def _domain(self, address: str) -> str:
        """domain_of(address), cached on the part after the last "@"; a trailing ":" is no part of it."""
        at = address.rfind("@")
        if at < 0:
            return ""
        tail = address[at + 1 :]
        if len(tail) > 256:  # no domain is this long; do not let junk fill the cache
            return ""
        dom = self._domains.get(tail)
        if dom is None:
            dom = domain_of("@" + tail.rstrip(":"))
            if len(self._domains) > 4096:
                self._domains.clear()
            self._domains[tail] = dom
        return dom

    def _queue_id(self, line: str, b: int) -> str:
        qid = line[b : b + 16] if line[b + 16] == " " else line[b : b + 23]
        return qid if _QUEUE_ID.match(qid) else ""

    def _delivered(self, line: str, b: int, f: int, t: float) -> ParseResult:
        """`=>`, `->`, `>>`: delivered; the remote's reply is in C="..." when it was SMTP."""
        a = f + 3
        n = len(line)
        sp = line.find(" ", a)
        if sp < 0:
            sp = n
        if sp == a:
            return _BAD_DELIVERY
        rdom = self._rcpt_domain(line, a, sp)
        host = ip = code = enhanced = reason = ""
        h = line.find(" H=", sp)
        after = sp
        if h >= 0:
            host, ip, after = _host_at(line, h + 3, n)
        c = line.find(' C="', after)
        if c >= 0:
            dn = line.find(' DN="', after, c)
            if dn >= 0:  # a certificate DN (remote text) can hold ' C="' itself
                close = line.find('" ', dn + 5)
                c = line.find(' C="', close) if close >= 0 else -1
            if c >= 0:
                code, enhanced = reply_codes(line[c + 4 : c + 44])
                reason = refusal_reason(code, enhanced, line, c + 4, line.find('"', c + 4))
        end = h if h >= 0 else n
        return (
            Event(
                mta="exim",
                log=self._log,
                time=t,
                direction="outbound",
                code=code,
                enhanced=enhanced,
                status="sent",
                queue_id=self._queue_id(line, b),
                remote_host=host,
                remote_ip=ip,
                recipient_domain=rdom,
                sender_domain=self._domain(_field(line, " F=", sp, end)),
                delay_s=self._delay(line),
                reason=reason,
            ),
        )

    def _rcpt_domain(self, line: str, a: int, sp: int) -> str:
        dom = self._domain(line[a:sp])
        if not dom and line.startswith(" <", sp):  # "=> userx <userx@test1>": the original address
            end = line.find(">", sp + 2, sp + 1024)
            if end > 0:
                dom = self._domain(line[sp + 2 : end])
        return dom

    def _delay(self, line: str) -> float | None:
        d = line.rfind(" DT=")
        if d < 0:
            return None
        sp = line.find(" ", d + 4, d + 24)
        text = line[d + 4 : sp if sp >= 0 else d + 24]
        if text in self._durations:
            return self._durations[text]
        value = duration(text)
        if len(self._durations) > 1024:
            self._durations.clear()
        self._durations[text] = value
        return value

    def _failed(self, line: str, b: int, f: int, t: float, bounce: bool) -> ParseResult:
        """`**` (bounced or expired) and `==` (deferred), with the remote reply when there was one."""
        a = f + 3
        n = len(line)
        sp = line.find(" ", a)
        if sp < 0:
            sp = n
        if sp == a:
            return _BAD_DELIVERY
        marker = line.find("SMTP error from remote mail", sp)
        fields_end = marker if marker >= 0 else n
        # A skipped try is no attempt. Its errno differs between Exim versions (-44, -53, -61 ...),
        # the text does not; remote text comes only after the marker, so it cannot fake this.
        if not bounce and line.find("retry time not reached", sp, fields_end) >= 0:
            return NOTHING
        status: Status = "bounced" if bounce else "deferred"
        if bounce and (
            line.endswith("retry timeout exceeded") or line.find("have been failing for a long time", sp) >= 0
        ):
            status = "expired"
        host = ip = code = enhanced = stage = reason = ""
        h = line.find(" H=", sp, fields_end)
        if h >= 0:
            host, ip, _ = _host_at(line, h + 3, fields_end)
        if marker >= 0:
            k = line.find(" after ", marker + 27, marker + 48)
            if k >= 0:
                s0 = k + 7
                if line.startswith("pipelined ", s0):
                    s0 += 10
                for word, name in _REMOTE_STAGES:
                    if line.startswith(word, s0):
                        stage = name
                        break
                e = s0
                if stage in ("rcpt", "mail"):
                    gt = line.find(">", s0)
                    e = gt if gt >= 0 else s0
                colon = line.find(": ", e)
                if colon >= 0 and line.startswith("host ", colon + 2):  # older Exim: host inside the text
                    h2, ip2, hend = _host_at(line, colon + 7, n)
                    if not ip:
                        host, ip = h2, ip2
                    colon = line.find(": ", hend)
                if colon >= 0:
                    code, enhanced = reply_codes(line[colon + 2 : colon + 42])
                    reason = refusal_reason(code, enhanced, line, colon + 2)
        return (
            Event(
                mta="exim",
                log=self._log,
                time=t,
                direction="outbound",
                code=code,
                enhanced=enhanced,
                status=status,
                stage=stage,
                queue_id=self._queue_id(line, b),
                remote_host=host,
                remote_ip=ip,
                recipient_domain=self._rcpt_domain(line, a, sp),
                sender_domain=self._domain(_field(line, " F=", sp, h if h >= 0 else fields_end)),
                delay_s=self._delay(line),
                reason=reason,
            ),
        )

    def _rejected(self, line: str, b: int, t: float, qid_at: int) -> ParseResult:
        """Our own refusal: `H=... F=<s> [temporarily ]rejected <what>[: reason]`."""
        r = line.find("rejected ", b)
        d = line.find(" dropped by 'connect' ACL", b, r if r >= 0 else len(line))
        if d >= 0:
            return self._acl_dropped(line, b, t, d)
        if r < 0 or (r > b and line[r - 1] != " "):
            return NOTHING
        fields_end = r
        temporarily = line.startswith("temporarily ", r - 12) and r - 12 >= b
        if temporarily:
            fields_end = r - 12
        # "sender verify fail for <s>: ... rejected ..." and other reasons are not field lists.
        if _quoted_colon(line, b, fields_end):
            return NOTHING
        w = r + 9
        kind: tuple[str, str, str | None] = _REJECTS[0]  # RCPT, by far the most frequent
        if not line.startswith("RCPT ", w):
            for kind in _REJECTS:
                if line.startswith(kind[0], w):
                    break
            else:
                return _BAD_REJECT
        prefix, stage, default = kind
        if default is None:
            return NOTHING
        n = len(line)
        colon = line.find(": ", w)
        # The client is in the field list; a few smtp_in.c lines name it after what was refused.
        h = line.find("H=", b, fields_end)
        if h >= 0 and h != b and line[h - 1] != " ":
            h = -1
        host_at = h + 2 if h >= 0 else -1
        if host_at < 0 and prefix in ("MAIL FROM:", "from <"):
            h = line.find(" H=", w, colon if colon >= 0 else n)
            host_at = h + 3 if h >= 0 else -1
        elif prefix in ("EHLO from ", "HELO from "):
            host_at = w + 10
        elif prefix in ('"EHLO ', '"HELO '):
            q = line.find('" from ', w + 6)
            host_at = q + 7 if q >= 0 else -1
        if stage == "end-of-data" and prefix in ("from <", "by local_scan()") and host_at < 0:
            return NOTHING  # a local submission: no SMTP reply to count
        host = ip = ""
        if host_at >= 0:
            host, ip, _ = _host_at(line, host_at, colon if colon > host_at else n)
        code, enhanced = default, ""
        if temporarily:
            code = "451"
        if colon >= 0 and prefix not in ("EHLO from ", "HELO from "):
            # An ACL `message = 551 5.7.1 ...` sets the code; Exim ignores one of the wrong class.
            c2, e2 = reply_codes(line[colon + 2 : colon + 42])
            if c2 and c2[0] == code[0]:
                code, enhanced = c2, e2
        rdom = sdom = ""
        if stage == "rcpt":
            sp = line.find(" ", w + 5)
            rdom = self._domain(line[w + 5 : sp if sp >= 0 else n])
        if prefix in ("MAIL FROM:", "MAIL ", "from <"):
            s0 = w + len(prefix) - (1 if prefix == "from <" else 0)
            sp = line.find(" ", s0)
            sdom = self._domain(line[s0 : sp if sp >= 0 else n])
        else:
            sdom = self._domain(_field(line, "F=", b, fields_end))
        qid = self._queue_id(line, qid_at) if qid_at >= 0 else ""
        reason = refusal_reason(code, enhanced, line, colon + 2 if colon >= 0 else n)
        return self._refusal(t, code, enhanced, stage, host, ip, qid, rdom, sdom, reason)

    def _auth_failed(self, line: str, i: int, t: float) -> ParseResult:
        """`<driver> authenticator failed for <host>: 535 Incorrect authentication data`."""
        n = len(line)
        host, ip, end = _host_at(line, i, n)
        colon = line.find(": ", end)
        if colon < 0:
            return NOTHING
        code, enhanced = reply_codes(line[colon + 2 : colon + 42])
        if not code:
            return NOTHING
        reason = refusal_reason(code, enhanced, line, colon + 2)
        return self._refusal(t, code, enhanced, "auth", host, ip, reason=reason)

    # ---- sessions ended without a `rejected` line (docs/parsers/exim.md) ----------------------

    def _smtp_dropped(self, line: str, b: int, t: float) -> ParseResult:
        """`SMTP protocol synchronization error (...): rejected ...` (Exim sent `554 SMTP
        synchronization error`) and `SMTP call from H dropped: too many ...`."""
        if line.startswith("SMTP protocol synchronization error", b):
            # Exim always writes what it rejected after `rejected `: a line cut right after the
            # word states too little (and needs no trigger of its own beyond `rejected `).
            r = line.find("): rejected ", b + 35, b + 120)
            if r < 0:
                return NOTHING
            k = r + 11
            h = -1  # where the client's `H=` starts: after the quoted command, or after `from `
            if line.startswith(' "', k):
                q = line.find('" H=', k + 2)
                h = q + 2 if q >= 0 else -1
            elif line.startswith(" connection from H=", k):
                h = k + 17
            host = ip = ""
            if h >= 0:
                host, ip, _ = _host_at(line, h + 2, len(line))
            reason = refusal_reason("554", "", line, b)
            return self._refusal(t, "554", "", "pipelining", host, ip, reason=reason)
        if line.startswith("SMTP call from ", b):
            d = line.find(" dropped: too many ", b + 15)
            if d < 0:
                return NOTHING
            host, ip, _ = _host_at(line, b + 15, d)
            code = ""
            for what, sent in _TOO_MANY:
                if line.startswith(what, d + 19):
                    code = sent
                    break
            return self._refusal(t, code, "", "limit", host, ip, reason=refusal_reason(code, "", line, d + 2))
        return NOTHING

    def _acl_dropped(self, line: str, b: int, t: float, d: int) -> ParseResult:
        """`H=... dropped by 'connect' ACL[: msg]`: Exim >= 4.97 closed a TLS-on-connect session
        before TLS started, so the client got no SMTP reply at all (code "")."""
        if _quoted_colon(line, b, d):
            return NOTHING  # the marker is inside some other text, not after the field list
        h = line.find("H=", b, d)
        if h >= 0 and h != b and line[h - 1] != " ":
            h = -1
        host = ip = ""
        if h >= 0:
            host, ip, _ = _host_at(line, h + 2, d)
        return self._refusal(t, "", "", "connect", host, ip)

    def _refusal(
        self, t: float, code: str, enhanced: str, stage: str, host: str, ip: str,
        qid: str = "", rdom: str = "", sdom: str = "", reason: str = "",
    ) -> tuple[Event]:  # fmt: skip
        """One inbound refusal by our own server."""
        return (
            Event(
                mta="exim", log=self._log, time=t, direction="inbound", code=code, enhanced=enhanced,
                status="rejected", stage=stage, queue_id=qid, remote_host=host, remote_ip=ip,
                recipient_domain=rdom, sender_domain=sdom, reason=reason,
            ),
        )  # fmt: skip
