"""Postfix syslog lines → Events: delivery outcomes, remote replies, and our own refusals.

Unparsed reasons, a fixed set (each becomes a label value):

- `no-timestamp`: the line does not start with a syslog (`Nov 29 07:21:49`) or RFC 3339 timestamp.
- `bad-timestamp`: it starts like one, but a field is impossible (day 32, hour 25, offset +99:00).
- `bad-delivery-line`: a delivery-agent or qmgr `status=` line whose status word is unknown or cut.
- `bad-reject-line`: a `reject:` / `milter-reject:` line without a client part (`proxy-reject:`
  has none since Postfix 2.7, and does not need one).
- `bad-reply-line`: a `host H[IP] said:` / `refused to talk to me:` line without a reply code.

Decisions where the format is ambiguous are written down in docs/parsers/postfix.md.
"""

from __future__ import annotations

import inspect
import re
from typing import ClassVar, Final

import msgspec

from logscan.events import MTA, NOTHING, Event, ParseResult, Status, Unparsed
from logscan.parsers.base import MAX_LINE, ParserOptions, Prefilter, domain_of, reply_codes
from logscan.parsers.postfix_grammar import (
    ENHANCED,
    MEMO_MAX,
    REJECT_STAGE,
    SECONDS,
    STATUS,
    valid_enhanced,
)
from logscan.parsers.reasons import refusal_reason
from logscan.parsers.timestamps import MONTHS, Clock, parse_offset, utc_epoch

# Events are built with positional arguments (about twice as fast as keywords on the hot
# path); this pins the field order they rely on.
_EVENT_FIELDS: Final = (
    "mta", "log", "time", "direction", "code", "enhanced", "status", "stage", "queue_id",
    "remote_host", "remote_ip", "recipient_domain", "sender_domain", "delay_s", "reason",
)  # fmt: skip
if tuple(inspect.signature(Event).parameters) != _EVENT_FIELDS:
    raise ImportError("logscan.events.Event changed its fields; update logscan/parsers/postfix.py")

REASONS: Final = (
    "no-timestamp", "bad-timestamp", "bad-delivery-line", "bad-reject-line", "bad-reply-line", "other-mta",
)  # fmt: skip

_NO_TIMESTAMP: Final = Unparsed("no-timestamp")
_OTHER_MTA: Final = Unparsed("other-mta", "an Exim line: is this log's format exim?")
_BAD_TIMESTAMP: Final = Unparsed("bad-timestamp")

# What each daemon (the last element of the syslog tag) can tell us; other daemons → NOTHING.
_SMTP, _AGENT, _QMGR, _REJECTS = 1, 2, 3, 4
_KIND: Final = {
    "smtp": _SMTP,
    "lmtp": _SMTP,
    "local": _AGENT,
    "virtual": _AGENT,
    "pipe": _AGENT,
    "error": _AGENT,
    "retry": _AGENT,
    "discard": _AGENT,
    "qmgr": _QMGR,
    "nqmgr": _QMGR,
    "oqmgr": _QMGR,
    "smtpd": _REJECTS,
    "postscreen": _REJECTS,
    "cleanup": _REJECTS,
}

# msg_warn() and friends put these before everything else; such lines never state an outcome.
_SEVERITIES: Final = ("warning: ", "error: ", "fatal: ", "panic: ", "info: ")

# Address-verification probes: no mail was delivered, so they are no outcome.
_PROBES: Final = frozenset({"deliverable", "undeliverable", "undeliverable-but-not-cached"})

# `(in reply to X command)` → stage.
_REPLY_STAGE: Final = {
    "MAIL FROM": "mail",
    "RCPT TO": "rcpt",
    "DATA": "data",
    "end of DATA": "end-of-data",
    "BDAT": "bdat",
    "EHLO": "helo",
    "HELO": "helo",
    "LHLO": "helo",
    "STARTTLS": "starttls",
    "AUTH": "auth",
    "XFORWARD": "xforward",
    "XCLIENT": "xclient",
    "RSET": "rset",
    "QUIT": "quit",
}

_REJECT_ACTIONS: Final = ("reject: ", "milter-reject: ", "proxy-reject: ")

# Refusals logged without a `reject:` line, and the replies Postfix sent for them (each is
# quoted from the Postfix source in docs/parsers/postfix.md, "Refusals without a reject line").
# smtpd_sasl_glue.c: a failed AUTH gets 535 5.7.8, or 454 4.7.0 when the SASL back end calls
# the failure temporary (Postfix >= 3.1); the client cancelling with `*` gets 501 5.7.0.
_AUTH_FAILED: Final = ("535", "5.7.8")
_AUTH_TEMPORARY: Final = ("454", "4.7.0")
_AUTH_ABORTED: Final = ("501", "5.7.0")
# The reasons a temporary failure logs: Dovecot's own texts (xsasl_dovecot_server.c), and Cyrus
# SASL's sasl_errstring() of SASL_FAIL, SASL_NOMEM, SASL_TRYAGAIN, SASL_UNAVAIL
# (xsasl_cyrus_server.c; the texts as in Debian 12's libsasl2 2.1.28).
_SASL_TEMPORARY: Final = frozenset(
    {
        "Connection lost to authentication server",
        "Can't connect to authentication server",
        "generic failure",
        "no memory available",
        "transient failure (e.g., weak key)",
        "remote authentication server unavailable",
    }
)
# smtpd.c: at smtpd_hard_error_limit it sends `421 4.7.0 HOST Error: too many errors`.
_ERROR_LIMIT: Final = ("421", "4.7.0")
# smtp_sasl_glue.c: our client's AUTH refused by the server; the reply follows `said: `.
_SASL_SERVER: Final = "SASL authentication failed; server "

# postscreen hangs up on these with a fixed reply it does not log (postscreen.c).
_POSTSCREEN_BUSY: Final = {
    "too many connections": ("421", "4.7.0"),
    "all screening ports busy": ("421", "4.3.2"),
    "all server ports busy": ("421", "4.3.2"),
}

# The usual delivery line, in Postfix's field order; anything else takes the slow path.
_DELIVERY: Final = re.compile(
    r"to=([^,]*), (?:orig_to=[^,]*, )?relay=([^,]*), (?:conn_use=[0-9]+, )?delay=([0-9.]+), "
    r"(?:delays=[0-9./]+, )?(?:tls=[^,]*, )?(?:dsn=([0-9.]+), )?status=([^ ]*)"
)
# The fast paths (see parse()) match a whole usual line in one go; each piece is a strict
# subset of what parse() checks step by step: the stamp (RFC 3339 with a zone, `+02:00` or
# journald's `+0200`, with or without a fraction; or classic syslog `Mmm dd hh:mm:ss`, the
# day space-, zero- or un-padded) passes the shape check and ends where it finds the stamp's
# end (RFC 3339: before character 48); the host has no space and does not end in ":"; the
# tag (at most 83 characters, no ":") is `name[/name...]/KIND[pid]`; the queue id is 5-32
# ASCII letters/digits and no severity word. The groups split what the general path splits
# in Python: an RFC 3339 stamp into minute, seconds, fraction and zone (groups 1-4; a syslog
# stamp is group 5 whole), and a `host[ip]` relay or client into host and ip as _host_ip()
# does.
_FAST_HEAD: Final = (
    r"(?:([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?([+-][0-9]{2}:?[0-9]{2}|Z)"
    r"|((?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (?:[ 0-9][0-9]|[0-9])"
    r" [0-9]{2}:[0-9]{2}:[0-9]{2})) "
    r"[A-Za-z0-9_.-]{1,64} [A-Za-z0-9_.-]{1,20}(?:/[A-Za-z0-9_.-]{1,20}){0,2}/"
)
# KIND is a delivery agent or qmgr, then _DELIVERY's fields (any other relay text: group 10).
_FAST_DELIVERY: Final = re.compile(
    _FAST_HEAD + r"(?:smtp|lmtp|local|virtual|pipe|error|retry|discard|qmgr|nqmgr|oqmgr)\[[0-9]{1,10}\]: "
    r"(?!(?:warning|error|fatal|panic|info): )([0-9A-Za-z]{5,32}): "
    r"to=([^,]*), (?:orig_to=[^,]*, )?"
    r"relay=(?:([^\[,]{0,255})\[([0-9A-Fa-f:.]{1,45})\][^,]*|([^,]*)), "
    r"(?:conn_use=[0-9]+, )?delay=([0-9.]+), (?:delays=[0-9./]+, )?(?:tls=[^,]*, )?(?:dsn=([0-9.]+), )?"
    r"status=([^ ]*)"
)
# KIND is smtpd, postscreen or cleanup, then _REJECT_HEAD (below) up to the reply.
_FAST_REJECT: Final = re.compile(
    _FAST_HEAD + r"(?:smtpd|postscreen|cleanup)\[[0-9]{1,10}\]: "
    r"(?!(?:warning|error|fatal|panic|info): )(NOQUEUE|[0-9A-Za-z]{5,32}): (?:milter-|proxy-)?reject: "
    r"([A-Za-z-]{1,16}) from ([^\[ ]{0,255})\[([0-9A-Fa-f:.]{1,45})\](?::[0-9]{1,5})?: "
)
# The usual refusal head: `QID|NOQUEUE: [milter-|proxy-]reject: STAGE from host[ip][:port]: `.
_REJECT_HEAD: Final = re.compile(
    r"(NOQUEUE|[0-9A-Za-z]{5,32}): (?:milter-|proxy-)?reject: ([A-Za-z-]{1,16}) from "
    r"([^\[ ]{0,255}\[[0-9A-Fa-f:.]{1,45}\])(?::[0-9]{1,5})?: "
)
# cleanup appends its reason after the trailer: `... helo=<h>: 5.7.1 text`.
_CLEANUP_REASON: Final = re.compile(r": ([45]\.[0-9]{1,3}\.[0-9]{1,3})(?![0-9.])")
_IP_CHARS: Final = "0123456789abcdefABCDEF:."
_MONTH_PREFIXES: Final = frozenset(m + " " for m in MONTHS)
_DIGITS: Final = "0123456789"
_ZONE_START: Final = "+-Zz"  # what parse_offset() can accept first
_HOST_MAX: Final = 255


# The prefilter (docs/decisions/0006-prefilter.md). parse() returns something other than
# NOTHING only for a line that fails the timestamp shape check (no-timestamp), has a tag
# starting `exim` after a space (other-mta), or reaches a delivery/reply/refusal reader,
# which needs `status=`, `: host ` (smtp/lmtp) or `reject: ` (smtpd, postscreen, cleanup),
# or, for the refusals without a reject line, `: SASL ` (smtpd AUTH, smtp per-host login),
# `many er` (too many errors) or `mproper` (improper command pipelining). The last two share
# their first and last characters and length, so the C scanner tests them in one SIMD pass.
# `bad-timestamp` only comes from those readers. The boring shape is a strict subset of
# what the shape check accepts: `Mmm dd hh:mm:ss ` (day ` 7`, `7` or `07`) or RFC 3339
# `YYYY-MM-DDThh:mm:ss[...] ` whose first space is within the 48 characters parse() looks at.
_TRIGGERS: Final = ("status=", ": host ", "reject: ", " exim", ": SASL ", "many er", "mproper")
# Written out digit by digit (no `{n}` counts) and RFC 3339 first: this lookahead runs at
# every line start of every chunk, and this form costs sre about a sixth less.
_D: Final = "[0-9]"
_BORING: Final = (
    rf"(?:{_D}{_D}{_D}{_D}-{_D}{_D}-{_D}{_D}T{_D}{_D}:{_D}{_D}:{_D}{_D}[^ \n]{{0,28}}"
    rf"|(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (?: {_D}|{_D}{_D}?) {_D}{_D}:{_D}{_D}:{_D}{_D}) "
)


def _host_ip(text: str) -> tuple[str, str]:
    """`host[ip]`, `host[ip]:port` or `[ip]:port` → (host, ip); "" for `unknown` and non-IP brackets."""
    b = text.find("[")
    if b < 0:
        return "", ""
    e = text.find("]", b)
    ip = text[b + 1 : e] if e > 0 else text[b + 1 :]
    if not ip or len(ip) > 45 or ip.strip(_IP_CHARS):
        ip = ""  # `private/dovecot-lmtp` (a unix socket) or junk
    host = text[:b]
    if host == "unknown" or len(host) > _HOST_MAX:
        host = ""
    return host.lower(), ip.lower()


def _reply_stage(text: str, start: int) -> str:
    """Stage from the LAST `(in reply to X command)` after `start`: remote text may quote earlier ones."""
    k = text.rfind("(in reply to ", start)
    if k < 0:
        return ""
    cmd = text[k + 13 : k + 13 + 40]
    end = cmd.find(")")
    if end >= 0:
        cmd = cmd[:end]
    if "greeting" in cmd:
        return "connect"
    return _REPLY_STAGE.get(cmd.removesuffix(" command"), "")


def _angle_address(text: str, key: str, start: int) -> str:
    """The address of `key<...>` at or after `start` (without the brackets); "" if absent."""
    k = text.find(key, start)
    if k < 0:
        return ""
    k += len(key)
    e = text.find(">", k)
    return text[k:e] if e >= 0 else text[k:]


class PostfixParser:
    """Reads Postfix log lines (syslog, RFC 3339, journald short-iso, postlogd `maillog_file`).

    Why one class: its methods are the branches of one line grammar sharing the memo tables
    on the hot path; the grammar's tables live in postfix_grammar, the bulk path in postfix_bulk.

    Internal state is only memo tables, each capped at MEMO_MAX entries: the last timestamp,
    domains by the text after `@` (local-parts are never kept), hosts, and reply heads.
    """

    mta: ClassVar[MTA] = "postfix"
    prefilter: ClassVar[Prefilter | None] = Prefilter(_TRIGGERS, _BORING)
    __slots__ = ("_clock", "_domains", "_hosts", "_last_t", "_last_ts", "_log", "_minutes", "_replies")

    def __init__(self, options: ParserOptions) -> None:
        self._log = options.log
        self._clock = Clock(options.tz, options.reference_time)
        self._last_ts = ""
        self._last_t = 0.0
        self._domains: dict[str, str] = {}
        self._hosts: dict[str, tuple[str, str]] = {}
        self._replies: dict[str, tuple[str, str]] = {}
        self._minutes: dict[str, float] = {}  # RFC 3339 minute and zone → _minute()

    def set_reference_time(self, t: float) -> None:
        """Date year-less syslog lines against `t` (file mtime, or now for a live log)."""
        self._clock.set_reference(t)
        self._last_ts = ""

    @property
    def log(self) -> str:
        """The configured name of the log this parser reads."""
        return self._log

    def parse(self, line: str) -> ParseResult:
        """One line (no newline) → Events, NOTHING, or Unparsed(reason)."""
        if len(line) > MAX_LINE:
            line = line[:MAX_LINE]
        if line.endswith("\r"):
            line = line[:-1]

        # Fast paths for the usual delivery and refusal lines, each matched in one go. Each
        # regex accepts only lines the general steps below take to _delivery() or _reject(),
        # and gives what they give (tests/test_prefilter.py checks both). The `in` scans, at C
        # speed, spare other lines a failing regex.
        if "status=" in line:
            m = _FAST_DELIVERY.match(line)
            if m is not None:
                return self._fast_delivery(line, m)
        elif "reject: " in line:
            m = _FAST_REJECT.match(line)
            if m is not None:
                stage = REJECT_STAGE.get(m.group(7))
                if stage is not None:
                    return self._fast_reject(line, m, stage)

        # Timestamp: only its shape is checked here; its value is computed for event lines.
        try:
            if line[:4] in _MONTH_PREFIXES:
                t = 6 if line[5] == " " else 7  # `Mar 7 ...` (unpadded) or `Mar  7` / `Mar 07`
                ts_end = t + 8
                if line[t + 2] != ":" or line[t + 5] != ":" or line[ts_end] != " ":
                    return _NO_TIMESTAMP
            elif line[4] == "-" and line[10] == "T" and line[:4].isdigit():
                ts_end = line.find(" ", 19, 48)
                if ts_end < 0:
                    return _NO_TIMESTAMP
            else:
                return _NO_TIMESTAMP
        except IndexError:
            return _NO_TIMESTAMP

        # `host tag[pid]: body`; some setups drop the host, then the first word is the tag.
        h_end = line.find(" ", ts_end + 1)
        if h_end < 0:
            return NOTHING
        if line[h_end - 1] == ":":
            tag_start, tag_end = ts_end + 1, h_end - 1
        else:
            tag_start = h_end + 1
            tag_end = line.find(": ", tag_start, tag_start + 128)
            if tag_end < 0:
                return NOTHING
        br = line.find("[", tag_start, tag_end)
        name_end = br if br >= 0 else tag_end
        slash = line.rfind("/", tag_start, name_end)
        if slash < 0:
            if line.startswith("exim", tag_start):
                return _OTHER_MTA  # a wrong `format` must show, not hide as "ignored"
            return NOTHING  # another program, or `postfix[pid]` (postfix-script)
        kind = _KIND.get(line[slash + 1 : name_end])
        if kind is None:
            return NOTHING
        bs = tag_end + 2

        if kind == _REJECTS:
            # `improper command pipelining ... : TEXT` quotes the client: its `reject: ` is no refusal.
            if (
                line.find("reject: ", bs) < 0
                or line.startswith(_SEVERITIES, bs)
                or line.startswith("improper ", bs)
            ):
                return self._session(line, ts_end, bs) if line[slash + 1 : name_end] == "smtpd" else NOTHING
            return self._reject(line, ts_end, bs, line[slash + 1 : name_end] == "cleanup")
        # A per-host reply line is `QID: host ...` or `QID: SASL ...`, so either sits near the start.
        if line.find("status=", bs) < 0 and (
            kind != _SMTP
            or (line.find(": host ", tag_end, bs + 40) < 0 and line.find(_SASL_SERVER, tag_end, bs + 70) < 0)
        ):
            return NOTHING
        if line.startswith(_SEVERITIES, bs):
            return NOTHING

        qid, rs = self._queue_id(line, bs)
        if line.startswith("to=", rs):
            return self._delivery(line, ts_end, rs, qid)
        if kind == _QMGR:
            return self._expired(line, ts_end, rs, qid)
        if kind == _SMTP and line.startswith("host ", rs):
            return self._per_host(line, ts_end, rs, qid)
        if kind == _SMTP and line.startswith(_SASL_SERVER, rs):
            return self._sasl_per_host(line, ts_end, rs, qid)
        return NOTHING

    # -- pieces -----------------------------------------------------------------------------

    def _split_time(
        self, line: str, m: re.Match[str], mkey: str | None, sec_text: str, frac: str | None, zone: str
    ) -> float | None:
        """_time() of a fast-path line from its stamp's groups: same cache, same float operations."""
        if mkey is None:  # a syslog stamp
            return self.stamp_time(line, m.end(5))
        if frac is None:  # whole seconds: _time() caches those per second
            return self.stamp_time(line, m.end(4))
        sec = SECONDS.get(sec_text)
        minute = self._minutes.get(mkey + zone)
        if sec is None or minute is None:
            return self.stamp_time(line, m.end(4))
        return minute + (sec + float(frac))

    def _fast_reject(self, line: str, m: re.Match[str], stage: str) -> ParseResult:
        """_reject() for a _FAST_REJECT match whose stage word is known."""
        mkey, sec_text, frac, zone, _syslog, qid, _word, c_host, c_ip = m.groups()
        host = "" if c_host == "unknown" else c_host.lower()
        t = self._split_time(line, m, mkey, sec_text, frac, zone)
        qid = "" if qid == "NOQUEUE" else qid
        return self._rejected(line, t, qid, stage, host, c_ip.lower(), m.end() - 2)

    def _fast_delivery(self, line: str, m: re.Match[str]) -> ParseResult:
        """_delivery() for a _FAST_DELIVERY match, with the stamp and relay already split."""
        mkey, sec_text, frac, zone, _syslog, qid, to, r_host, r_ip, relay, delay_text, dsn, word = m.groups()
        status = STATUS.get(word)
        if status is None:
            return _not_delivered(word)
        t = self._split_time(line, m, mkey, sec_text, frac, zone)
        if t is None:
            return _BAD_TIMESTAMP
        if r_ip is not None:  # `host[ip]...`: what _host_ip() makes of it
            host, ip = ("" if r_host == "unknown" else r_host.lower()), r_ip.lower()
        else:
            host, ip = self._host(relay) if relay else ("", "")
        qid = "" if qid == "NOQUEUE" else qid
        return self._delivered(line, t, qid, to, host, ip, delay_text, dsn, status, m.end())

    @staticmethod
    def _queue_id(line: str, bs: int) -> tuple[str, int]:
        """(queue id, where the rest starts); `NOQUEUE` → ""; also `QID:from=` without a space."""
        c = line.find(":", bs, bs + 33)
        if c < 0:
            return "", bs
        qid = line[bs:c]
        if len(qid) < 5 or not qid.isalnum() or not qid.isascii():
            return "", bs
        rs = c + 2 if line[c + 1 : c + 2] == " " else c + 1
        return ("" if qid == "NOQUEUE" else qid), rs

    def domain(self, address: str) -> str:
        """domain_of(), memoised by the text after the last `@` (so no local-part is kept)."""
        at = address.rfind("@")
        if at < 0:
            return ""
        key = address[at + 1 :]
        dom = self._domains.get(key)
        if dom is None:
            if len(self._domains) >= MEMO_MAX:
                self._domains.clear()
            dom = self._domains[key] = domain_of(address)
        return dom

    def _host(self, text: str) -> tuple[str, str]:
        got = self._hosts.get(text)
        if got is None:
            if len(self._hosts) >= MEMO_MAX:
                self._hosts.clear()
            got = self._hosts[text] = _host_ip(text)
        return got

    def _codes(self, reply: str) -> tuple[str, str]:
        """reply_codes(), memoised by the part of the first 20 characters its grammar can read.

        An enhanced code holds no space and starts by character 6, so up to the first space
        from character 4 on decides the result (`550 5.1.1 `): the key rarely holds an address.
        """
        sp = reply.find(" ", 4, 20)
        head = reply[: sp + 1] if sp >= 0 else reply[:20]
        got = self._replies.get(head)
        if got is None:
            if len(self._replies) >= MEMO_MAX:
                self._replies.clear()
            got = self._replies[head] = reply_codes(head)
        return got

    def stamp_time(self, line: str, ts_end: int) -> float | None:
        """Epoch seconds of the line's timestamp; None when a field is impossible.

        RFC 3339 stamps with a fraction differ on every line, so the epoch of their minute
        (keyed by the text up to the minutes plus the zone) is cached and the seconds and
        fraction added in the very order _time_slow adds them.
        """
        ts = line[:ts_end]
        if ts == self._last_ts:
            return self._last_t
        if ts_end > 20 and ts[19] == "." and ts[4] == "-":
            zone = ts[20:].lstrip(_DIGITS)
            sec = SECONDS.get(ts[17:19])
            if sec is not None and ts[16] == ":" and (not zone or zone[0] in _ZONE_START):
                key = ts[:16] + zone
                minute = self._minutes.get(key)
                if minute is None:
                    minute = self.minute(key)
                    if minute is None:
                        return self._time_slow(ts)
                    if len(self._minutes) >= MEMO_MAX:
                        self._minutes.clear()
                    self._minutes[key] = minute
                digits_end = ts_end - len(zone)
                t = minute + (sec + float("0" + ts[19:digits_end])) if digits_end > 20 else minute + sec
                self._last_ts, self._last_t = ts, t
                return t
        return self._time_slow(ts)

    def minute(self, key: str) -> float | None:
        """`YYYY-MM-DDThh:mm[zone]` → epoch of that minute, if _time_slow would accept the
        stamp with seconds 00-59 and any fraction; else None (then _time_slow decides)."""
        try:
            if key[7] != "-" or key[13] != ":":
                return None
            year, month, day = int(key[:4]), int(key[5:7]), int(key[8:10])
            hour, minute = int(key[11:13]), int(key[14:16])
            zone = key[16:]
            if zone:
                offset = parse_offset(zone)
                if offset is None:
                    return None
                return utc_epoch(year, month, day, hour, minute, 0.0, offset)
            return self._clock.local(year, month, day, hour, minute, 0.0)
        except (ValueError, OverflowError, IndexError):
            return None

    def _time_slow(self, ts: str) -> float | None:
        """_time() for any timestamp text `ts` (the line up to its end)."""
        try:
            if ts[4] == "-":
                if ts[7] != "-" or ts[13] != ":" or ts[16] != ":":
                    return None
                year, month, day = int(ts[:4]), int(ts[5:7]), int(ts[8:10])
                hour, minute, sec = int(ts[11:13]), int(ts[14:16]), float(ts[17:19])
                rest = ts[19:]
                if rest[:1] == ".":
                    i = 1
                    while i < len(rest) and rest[i].isdigit():
                        i += 1
                    if i > 1:
                        sec += float("0" + rest[:i])
                    rest = rest[i:]
                if rest:
                    offset = parse_offset(rest)
                    if offset is None:
                        return None
                    t = utc_epoch(year, month, day, hour, minute, sec, offset)
                else:
                    t = self._clock.local(year, month, day, hour, minute, sec)
            else:
                tt = len(ts) - 8
                t = self._clock.syslog(
                    ts[:3], int(ts[4:tt]), int(ts[tt : tt + 2]), int(ts[tt + 3 : tt + 5]), int(ts[tt + 6 :])
                )
        except (ValueError, OverflowError, IndexError):
            return None
        self._last_ts, self._last_t = ts, t
        return t

    def _remote_reply(self, line: str, r: int) -> tuple[str, str, str, str, str, int] | None:
        """`host H[IP] said: R` or `... refused to talk to me: R` at `r` → code, enhanced, stage,
        host, ip, and where R starts."""
        said = line.find(" said: ", r)
        refused = line.find(" refused to talk to me: ", r, said if said >= 0 else len(line))
        if refused >= 0:
            host, ip = self._host(line[r + 5 : refused])
            code, enhanced = self._codes(line[refused + 24 : refused + 44])
            return code, enhanced, "connect", host, ip, refused + 24
        if said < 0:
            return None
        host, ip = self._host(line[r + 5 : said])
        # The reply starts after the FIRST `said: `; a quoted bounce inside it can hold more.
        code, enhanced = self._codes(line[said + 7 : said + 27])
        return code, enhanced, _reply_stage(line, said + 7), host, ip, said + 7

    def _delivery(self, line: str, ts_end: int, rs: int, qid: str) -> ParseResult:
        """`to=<r>, [orig_to=<a>, ]relay=R, ..., delay=S, ..., dsn=X.Y.Z, status=WORD (REASON)`."""
        m = _DELIVERY.match(line, rs)
        if m is not None:
            to, relay, delay_text, dsn, word = m.group(1, 2, 3, 4, 5)
            w_end = m.end() if m.end() < len(line) else -1
        else:
            slow = self._delivery_fields(line, rs)
            if isinstance(slow, Unparsed):
                return slow
            to, relay, delay_text, dsn, word, w_end = slow
        status = STATUS.get(word)
        if status is None:
            return _not_delivered(word)
        t = self.stamp_time(line, ts_end)
        if t is None:
            return _BAD_TIMESTAMP
        host, ip = self._host(relay) if relay else ("", "")
        return self._delivered(line, t, qid, to, host, ip, delay_text, dsn, status, w_end)

    def _delivered(
        self, line: str, t: float, qid: str, to: str, host: str, ip: str, delay_text: str,
        dsn: str | None, status: Status, w_end: int,
    ) -> ParseResult:  # fmt: skip
        """The Event of a delivery line from its fields (w_end: where the status word ends, or -1)."""
        rcpt_domain = self.domain(to)
        try:
            delay: float | None = float(delay_text) if delay_text else None
        except ValueError:
            delay = None
        dsn = valid_enhanced(dsn) if dsn else ""
        code = enhanced = stage = reason = ""
        if w_end >= 0 and line.startswith("(", w_end + 1):
            if line.startswith("host ", w_end + 2):
                got = self._remote_reply(line, w_end + 2)
                if got is not None:
                    code, enhanced, stage, r_host, r_ip, r_at = got
                    if not host and not ip:
                        host, ip = r_host, r_ip
                    reason = refusal_reason(code, enhanced or dsn, line, r_at)
            elif line.startswith(_SASL_SERVER, w_end + 2):
                got2 = self._sasl_reply(line, w_end + 2)
                if got2 is not None:
                    code, enhanced, r_host, r_ip = got2
                    stage = "auth" if code else ""
                    if not host and not ip:
                        host, ip = r_host, r_ip
                    reason = refusal_reason(code, enhanced, line, w_end + 2)
            elif line[w_end + 2 : w_end + 3].isdigit():
                # `(250 2.0.0 Ok: queued as X)`: the reply to the end of DATA.
                code, enhanced = self._codes(line[w_end + 2 : w_end + 22])
                if code and status == "sent":
                    stage = "end-of-data"
                reason = refusal_reason(code, enhanced or dsn, line, w_end + 2)
        # Positional: see _EVENT_FIELDS.
        return (
            Event(
                "postfix", self._log, t, "outbound", code, enhanced or dsn, status, stage, qid,
                host, ip, rcpt_domain, "", delay, reason,
            ),
        )  # fmt: skip

    @staticmethod
    def _delivery_fields(line: str, rs: int) -> tuple[str, str, str, str, str, int] | Unparsed:
        """Slow path for odd delivery lines (quoted addresses with commas, unknown fields)."""
        s = line.find(", status=", rs)
        if s < 0:
            return Unparsed("bad-delivery-line", "no status=")
        w = s + 9
        w_end = line.find(" ", w, w + 40)
        word = line[w:w_end] if w_end >= 0 else line[w : w + 40]
        relay_k = line.find(", relay=", rs, s)
        to_end = relay_k if relay_k >= 0 else s
        o = line.find(", orig_to=", rs, to_end)
        to = line[rs + 3 : o if o >= 0 else to_end]
        relay = ""
        if relay_k >= 0:
            r_end = line.find(", ", relay_k + 8, s)
            relay = line[relay_k + 8 : r_end if r_end >= 0 else s]
        delay = dsn = ""
        k = line.find(", delay=", rs, s)
        if k >= 0:
            d_end = line.find(",", k + 8, s)
            delay = line[k + 8 : d_end if d_end >= 0 else s]
        k = line.find(", dsn=", rs, s)
        if k >= 0:
            d_end = line.find(",", k + 6, s)
            dsn = line[k + 6 : d_end if d_end >= 0 else s]
        return to, relay, delay, dsn, word, w_end

    def _expired(self, line: str, ts_end: int, rs: int, qid: str) -> ParseResult:
        """qmgr `QID: from=<s>, status=expired, returned to sender` (also force-expired)."""
        if not line.startswith("from=", rs):
            return NOTHING
        s = line.find(", status=", rs)
        if s < 0:
            return NOTHING
        w_end = line.find(",", s + 9, s + 40)
        word = line[s + 9 : w_end] if w_end >= 0 else line[s + 9 : s + 40]
        if word not in ("expired", "force-expired"):
            return Unparsed("bad-delivery-line", "status=" + word[:30])
        t = self.stamp_time(line, ts_end)
        if t is None:
            return _BAD_TIMESTAMP
        sender = self.domain(line[rs + 5 : s])
        return (
            Event("postfix", self._log, t, "outbound", "", "", "expired", "", qid, "", "", "", sender, None),
        )

    def _per_host(self, line: str, ts_end: int, rs: int, qid: str) -> ParseResult:
        """`QID: host H[IP] said: 451 ...` / `refused to talk to me: 554 ...`: one try, no outcome."""
        got = self._remote_reply(line, rs)
        if got is None:
            return NOTHING
        code, enhanced, stage, host, ip, r_at = got
        if not code:
            return Unparsed("bad-reply-line", "no reply code")
        t = self.stamp_time(line, ts_end)
        if t is None:
            return _BAD_TIMESTAMP
        return (
            Event(
                "postfix", self._log, t, "outbound", code, enhanced, "", stage, qid, host, ip, "", "", None,
                refusal_reason(code, enhanced, line, r_at),
            ),
        )

    def _reject(self, line: str, ts_end: int, bs: int, cleanup: bool) -> ParseResult:
        """smtpd/postscreen/cleanup `[QID|NOQUEUE]: reject: STAGE from CLIENT: REPLY; from=<> to=<>`."""
        m = _REJECT_HEAD.match(line, bs)
        stage = REJECT_STAGE.get(m.group(2)) if m is not None else None
        if m is not None and stage is not None:
            qid = m.group(1)
            if qid == "NOQUEUE":
                qid = ""
            host, ip = self._host(m.group(3))
            colon = m.end() - 2
        else:
            qid, rs = self._queue_id(line, bs)
            if not line.startswith(_REJECT_ACTIONS, rs):
                return NOTHING
            a = line.find(": ", rs) + 2
            sp = line.find(" ", a, a + 20)
            stage = REJECT_STAGE.get(line[a:sp] if sp >= 0 else "")
            if stage is None and cleanup:
                return self._cleanup_reject(line, ts_end, a, qid)
            if stage is None and sp > a and line[sp - 1] == ":" and line.startswith("proxy-", rs):
                stage = REJECT_STAGE.get(line[a : sp - 1])
                if stage is not None:
                    return self._proxy_reject(line, ts_end, qid, stage, sp - 1)
            if sp < 0 or not line.startswith("from ", sp + 1):
                return Unparsed("bad-reject-line", "no client")
            cs = sp + 6
            b = line.find("[", cs, cs + _HOST_MAX + 2)
            e = line.find("]", b, b + 48) if b >= 0 else -1
            if e < 0:
                return Unparsed("bad-reject-line", "no client")
            host, ip = self._host(line[cs : e + 1])
            colon = line.find(": ", e)
        return self._rejected(line, self.stamp_time(line, ts_end), qid, stage or "", host, ip, colon)

    def _rejected(
        self, line: str, t: float | None, qid: str, stage: str, host: str, ip: str, colon: int
    ) -> ParseResult:
        """The Event of a refusal whose reply follows `colon` (-1: none); t None: bad timestamp."""
        reply = line[colon + 2 : colon + 22] if colon >= 0 else ""
        code, enhanced = self._codes(reply)
        if not code:
            code, enhanced = _implied_code(line[colon + 2 :] if colon >= 0 else "")
        trailer = line.rfind("; from=<", colon)
        if trailer < 0:
            trailer = line.rfind("; to=<", colon)
        sender = rcpt = ""
        if trailer >= 0:
            sender = self.domain(_angle_address(line, "from=<", trailer))
            rcpt = self.domain(_angle_address(line, "to=<", trailer))
        if t is None:
            return _BAD_TIMESTAMP
        reason = refusal_reason(code, enhanced, line, colon + 2, trailer)
        return (
            Event(
                "postfix", self._log, t, "inbound", code, enhanced, "rejected", stage, qid,
                host, ip, rcpt, sender, None, reason,
            ),
        )  # fmt: skip

    # -- refusals without a reject line (docs/parsers/postfix.md) --------------------------------

    def _proxy_reject(self, line: str, ts_end: int, qid: str, stage: str, colon: int) -> ParseResult:
        """`[QID: ]proxy-reject: END-OF-MESSAGE: REPLY; from=<s> to=<r> ...`: the filter's reply,
        which smtpd passed on to the client (smtpd.c), logged without the client."""
        got = self._rejected(line, self.stamp_time(line, ts_end), qid, stage, "", "", colon)
        if isinstance(got, tuple) and got[0].code[:1] in ("2", "3"):
            # The filter said yes and a later step failed: the client got a reply not logged here.
            return (msgspec.structs.replace(got[0], code="", enhanced=""),)
        return got

    def _session(self, line: str, ts_end: int, bs: int) -> ParseResult:
        """smtpd lines that state a refusal without `reject:`: failed AUTH, error limit, pipelining."""
        if line.startswith("warning: ", bs):
            return self._sasl_failed(line, ts_end, bs + 9)
        if line.startswith("improper command pipelining after ", bs):
            # 554 5.5.0 with smtpd_forbid_unauth_pipelining = yes, nothing with no: not known here.
            return self._dropped(line, ts_end, bs + 34, "", "", "", "pipelining")
        qid, rs = self._queue_id(line, bs)
        if line.startswith("too many errors after ", rs):
            return self._dropped(line, ts_end, rs + 22, qid, *_ERROR_LIMIT, "limit")
        return NOTHING

    def _dropped(
        self, line: str, ts_end: int, c: int, qid: str, code: str, enhanced: str, stage: str
    ) -> ParseResult:
        """`... after CMD[ (N bytes)] from CLIENT[: text]` at `c` (CMD): one refusal of CLIENT."""
        host = ip = ""
        f = line.find(" from ", c, c + 48)
        if f >= 0:
            b = line.find("[", f + 6, f + 6 + _HOST_MAX + 1)
            e = line.find("]", b, b + 47) if b >= 0 else -1
            if e >= 0:
                host, ip = self._host(line[f + 6 : e + 1])
        t = self.stamp_time(line, ts_end)
        if t is None:
            return _BAD_TIMESTAMP
        return (
            Event(
                "postfix", self._log, t, "inbound", code, enhanced, "rejected", stage, qid,
                host, ip, "", "", None, refusal_reason(code, enhanced, line, c),
            ),
        )  # fmt: skip

    def _sasl_failed(self, line: str, ts_end: int, c: int) -> ParseResult:
        """`warning: CLIENT: SASL METHOD authentication failed: REASON[, sasl_username=U]` or
        `... authentication aborted`, CLIENT at `c`: the AUTH command refused."""
        k = line.find(": SASL ", c, c + _HOST_MAX + 60)
        if k < 0 or line.find("[", c, k) < 0:
            return NOTHING  # `warning: SASL authentication failure: ...` (Cyrus) names no client
        m = line.find(" ", k + 7, k + 108)  # the method, at most 100 characters
        if m < 0:
            return NOTHING
        if line.startswith("authentication failed", m + 1):
            reason = line[m + 24 :] if line.startswith(": ", m + 22) else ""
            u = reason.rfind(", sasl_username=")
            if u >= 0:
                reason = reason[:u]
            code, enhanced = _AUTH_TEMPORARY if reason in _SASL_TEMPORARY else _AUTH_FAILED
        elif line.startswith("authentication aborted", m + 1):
            code, enhanced = _AUTH_ABORTED
        else:
            return NOTHING
        host, ip = self._host(line[c:k])
        t = self.stamp_time(line, ts_end)
        if t is None:
            return _BAD_TIMESTAMP
        return (
            Event(
                "postfix", self._log, t, "inbound", code, enhanced, "rejected", "auth", "",
                host, ip, "", "", None, refusal_reason(code, enhanced, line, k + 2),
            ),
        )  # fmt: skip

    def _sasl_reply(self, line: str, r: int) -> tuple[str, str, str, str] | None:
        """`SASL authentication failed; server H[IP] said: REPLY` at `r` → code, enhanced, host, ip."""
        h = r + len(_SASL_SERVER)
        said = line.find(" said: ", h, h + _HOST_MAX + 60)
        if said < 0:
            return None
        host, ip = self._host(line[h:said])
        code, enhanced = self._codes(line[said + 7 : said + 27])
        return code, enhanced, host, ip

    def _sasl_per_host(self, line: str, ts_end: int, rs: int, qid: str) -> ParseResult:
        """smtp `QID: SASL authentication failed; server H[IP] said: 535 ...` before the next
        server: our login refused by one server, no outcome yet."""
        got = self._sasl_reply(line, rs)
        if got is None:
            return NOTHING
        code, enhanced, host, ip = got
        if not code:
            return Unparsed("bad-reply-line", "no reply code")
        t = self.stamp_time(line, ts_end)
        if t is None:
            return _BAD_TIMESTAMP
        return (
            Event(
                "postfix", self._log, t, "outbound", code, enhanced, "", "auth", qid, host, ip, "", "", None,
                refusal_reason(code, enhanced, line, rs),
            ),
        )

    def _cleanup_reject(self, line: str, ts_end: int, a: int, qid: str) -> ParseResult:
        """cleanup `reject: header|body TEXT from CLIENT; from=<s> to=<r> proto=P helo=<h>: 5.7.1 why`."""
        trailer = line.rfind("; from=<", a)
        if trailer < 0:
            trailer = line.rfind("; to=<", a)
        if trailer < 0:
            return Unparsed("bad-reject-line", "no from=/to=")
        f = line.rfind(" from ", a, trailer)
        host = ip = ""
        if f >= 0:
            host, ip = self._host(line[f + 6 : trailer])
        code = enhanced = reason = ""
        m = _CLEANUP_REASON.search(line, trailer)
        if m is not None:
            code, enhanced = _implied_code(m.group(1))
            reason = refusal_reason(code, enhanced, line, m.start(1))
        t = self.stamp_time(line, ts_end)
        if t is None:
            return _BAD_TIMESTAMP
        rcpt = self.domain(_angle_address(line, "to=<", trailer))
        sender = self.domain(_angle_address(line, "from=<", trailer))
        return (
            Event(
                "postfix", self._log, t, "inbound", code, enhanced, "rejected", "end-of-data", qid,
                host, ip, rcpt, sender, None, reason,
            ),
        )  # fmt: skip


def _not_delivered(word: str) -> ParseResult:
    """What a `status=` word that is no outcome gives: nothing for a verify probe, else Unparsed."""
    if word in _PROBES:
        return NOTHING
    return Unparsed("bad-delivery-line", "status=" + word[:30])


def _implied_code(reply: str) -> tuple[str, str]:
    """A reply logged without its basic code: what Postfix sent for it (see docs/parsers/postfix.md)."""
    m = ENHANCED.match(reply)
    if m is not None:
        enhanced = m.group(1)
        # cleanup_stat.c: content REJECT is 550 5.7.1; a 4.x.x one defers with 451.
        return ("550" if enhanced[0] == "5" else "451" if enhanced[0] == "4" else ""), enhanced
    busy = _POSTSCREEN_BUSY.get(reply)
    if busy is not None:
        return busy
    return "", ""
