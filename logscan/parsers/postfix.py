"""Postfix syslog lines → Events: delivery outcomes, remote replies, and our own refusals.

Unparsed reasons, a fixed set (each becomes a label value):

- `no-timestamp`: the line does not start with a syslog (`Nov 29 07:21:49`) or RFC 3339 timestamp.
- `bad-timestamp`: it starts like one, but a field is impossible (day 32, hour 25, offset +99:00).
- `bad-delivery-line`: a delivery-agent or qmgr `status=` line whose status word is unknown or cut.
- `bad-reject-line`: a `reject:` / `milter-reject:` / `proxy-reject:` line without a client part.
- `bad-reply-line`: a `host H[IP] said:` / `refused to talk to me:` line without a reply code.

Decisions where the format is ambiguous are written down in docs/parsers/postfix.md.
"""

from __future__ import annotations

import re
from typing import ClassVar, Final

from logscan.events import MTA, NOTHING, Event, ParseResult, Status, Unparsed
from logscan.parsers.base import MAX_LINE, ParserOptions, domain_of, reply_codes
from logscan.parsers.timestamps import MONTHS, Clock, parse_offset, utc_epoch

REASONS: Final = ("no-timestamp", "bad-timestamp", "bad-delivery-line", "bad-reject-line", "bad-reply-line")

_NO_TIMESTAMP: Final = Unparsed("no-timestamp")
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

_STATUS: Final[dict[str, Status]] = {
    "sent": "sent",
    "bounced": "bounced",
    "SOFTBOUNCE": "bounced",
    "deferred": "deferred",
    "expired": "expired",
    "force-expired": "expired",
}
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

# smtpd/postscreen/cleanup `reject: STAGE from ...` → stage.
_REJECT_STAGE: Final = {
    "CONNECT": "connect",
    "EHLO": "helo",
    "HELO": "helo",
    "MAIL": "mail",
    "RCPT": "rcpt",
    "DATA": "data",
    "BDAT": "bdat",
    "END-OF-MESSAGE": "end-of-data",
    "VRFY": "vrfy",
    "ETRN": "etrn",
    "AUTH": "auth",
    "STARTTLS": "starttls",
    "connect": "connect",  # postscreen before Postfix 2.8 wrote it in lower case
}
_REJECT_ACTIONS: Final = ("reject: ", "milter-reject: ", "proxy-reject: ")

# postscreen hangs up on these with a fixed reply it does not log (postscreen.c).
_POSTSCREEN_BUSY: Final = {
    "too many connections": ("421", "4.7.0"),
    "all screening ports busy": ("421", "4.3.2"),
    "all server ports busy": ("421", "4.3.2"),
}

_ENHANCED: Final = re.compile(r"([245]\.[0-9]{1,3}\.[0-9]{1,3})(?![0-9.])")
# cleanup appends its reason after the trailer: `... helo=<h>: 5.7.1 text`.
_CLEANUP_REASON: Final = re.compile(r": ([45]\.[0-9]{1,3}\.[0-9]{1,3})(?![0-9.])")
_IP_CHARS: Final = "0123456789abcdefABCDEF:."
_HOST_MAX: Final = 255


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


def _valid_enhanced(text: str) -> str:
    m = _ENHANCED.fullmatch(text)
    return text if m is not None else ""


def _reply_stage(reply: str) -> str:
    """Stage from the LAST `(in reply to X command)`: remote text may quote earlier ones."""
    k = reply.rfind("(in reply to ")
    if k < 0:
        return ""
    cmd = reply[k + 13 : k + 13 + 40]
    end = cmd.find(")")
    if end >= 0:
        cmd = cmd[:end]
    if "greeting" in cmd:
        return "connect"
    return _REPLY_STAGE.get(cmd.removesuffix(" command"), "")


def _remote_reply(text: str) -> tuple[str, str, str, str, str] | None:
    """`host H[IP] said: REPLY` or `... refused to talk to me: REPLY` → code, enhanced, stage, host, ip."""
    said = text.find(" said: ")
    refused = text.find(" refused to talk to me: ")
    if refused >= 0 and (said < 0 or refused < said):
        host, ip = _host_ip(text[5:refused])
        code, enhanced = reply_codes(text[refused + 24 :])
        return code, enhanced, "connect", host, ip
    if said < 0:
        return None
    host, ip = _host_ip(text[5:said])
    # The reply starts after the FIRST `said: `; a quoted bounce inside it can hold more.
    reply = text[said + 7 :]
    code, enhanced = reply_codes(reply)
    return code, enhanced, _reply_stage(reply), host, ip


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

    Stateless apart from a one-entry cache of the last timestamp text and its epoch value.
    """

    mta: ClassVar[MTA] = "postfix"
    __slots__ = ("_clock", "_last_t", "_last_ts", "_log")

    def __init__(self, options: ParserOptions) -> None:
        self._log = options.log
        self._clock = Clock(options.tz, options.reference_time)
        self._last_ts = ""
        self._last_t = 0.0

    def set_reference_time(self, t: float) -> None:
        """Date year-less syslog lines against `t` (file mtime, or now for a live log)."""
        self._clock.set_reference(t)
        self._last_ts = ""

    def parse(self, line: str) -> ParseResult:
        """One line (no newline) → Events, NOTHING, or Unparsed(reason)."""
        if len(line) > MAX_LINE:
            line = line[:MAX_LINE]
        if line.endswith("\r"):
            line = line[:-1]

        # Timestamp: only its shape is checked here; its value is computed for event lines.
        if line[4:5] == "-":
            ts_end = line.find(" ", 19, 48)
            if ts_end < 0 or line[10:11] != "T" or not line[:4].isdigit():
                return _NO_TIMESTAMP
        elif line[3:4] == " " and line[:3] in MONTHS:
            t = 6 if line[5:6] == " " else 7  # `Mar 7 ...` (unpadded) or `Mar  7` / `Mar 07`
            ts_end = t + 8
            if line[t + 2 : t + 3] != ":" or line[t + 5 : t + 6] != ":" or line[ts_end : ts_end + 1] != " ":
                return _NO_TIMESTAMP
        else:
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
            return NOTHING  # another program, or `postfix[pid]` (postfix-script)
        kind = _KIND.get(line[slash + 1 : name_end])
        if kind is None:
            return NOTHING
        bs = tag_end + 2

        if kind == _REJECTS:
            if line.find("reject: ", bs) < 0 or line.startswith(_SEVERITIES, bs):
                return NOTHING
            return self._reject(line, ts_end, bs, line[slash + 1 : name_end])
        if kind == _SMTP:
            if (
                line.find("status=", bs) < 0
                and line.find(" said: ", bs) < 0
                and line.find(" refused to talk to me: ", bs) < 0
            ):
                return NOTHING
        elif line.find("status=", bs) < 0:
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
        return NOTHING

    # -- pieces -----------------------------------------------------------------------------

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

    def _time(self, line: str, ts_end: int) -> float | None:
        """Epoch seconds of the line's timestamp; None when a field is impossible."""
        ts = line[:ts_end]
        if ts == self._last_ts:
            return self._last_t
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
                tt = ts_end - 8
                t = self._clock.syslog(
                    ts[:3], int(ts[4:tt]), int(ts[tt : tt + 2]), int(ts[tt + 3 : tt + 5]), int(ts[tt + 6 :])
                )
        except (ValueError, OverflowError, IndexError):
            return None
        self._last_ts, self._last_t = ts, t
        return t

    def _delivery(self, line: str, ts_end: int, rs: int, qid: str) -> ParseResult:
        """`to=<r>, [orig_to=<a>, ]relay=R, ..., delay=S, ..., dsn=X.Y.Z, status=WORD (REASON)`."""
        s = line.find(", status=", rs)
        if s < 0:
            return Unparsed("bad-delivery-line", "no status=")
        w = s + 9
        w_end = line.find(" ", w, w + 40)
        word = line[w:w_end] if w_end >= 0 else line[w : w + 40]
        status = _STATUS.get(word)
        if status is None:
            if word in _PROBES:
                return NOTHING
            return Unparsed("bad-delivery-line", "status=" + word[:30])
        t = self._time(line, ts_end)
        if t is None:
            return _BAD_TIMESTAMP

        relay_k = line.find(", relay=", rs, s)
        to_end = relay_k if relay_k >= 0 else s
        o = line.find(", orig_to=", rs, to_end)
        rcpt_domain = domain_of(line[rs + 3 : o if o >= 0 else to_end])
        host = ip = ""
        if relay_k >= 0:
            r_end = line.find(", ", relay_k + 8, s)
            host, ip = _host_ip(line[relay_k + 8 : r_end if r_end >= 0 else s])
        delay: float | None = None
        k = line.find(", delay=", rs, s)
        if k >= 0:
            d_end = line.find(",", k + 8, s)
            try:
                delay = float(line[k + 8 : d_end if d_end >= 0 else s])
            except ValueError:
                delay = None
        dsn = ""
        k = line.find(", dsn=", rs, s)
        if k >= 0:
            d_end = line.find(",", k + 6, s)
            dsn = _valid_enhanced(line[k + 6 : d_end if d_end >= 0 else s])

        code = enhanced = stage = ""
        if w_end >= 0 and line[w_end + 1 : w_end + 2] == "(":
            reason = line[w_end + 2 :]
            if reason.startswith("host "):
                got = _remote_reply(reason)
                if got is not None:
                    code, enhanced, stage, r_host, r_ip = got
                    if not host and not ip:
                        host, ip = r_host, r_ip
            elif reason[:1].isdigit():
                # `(250 2.0.0 Ok: queued as X)`: the reply to the end of DATA.
                code, enhanced = reply_codes(reason)
                if code and status == "sent":
                    stage = "end-of-data"
        return (
            Event(
                mta="postfix",
                log=self._log,
                time=t,
                direction="outbound",
                code=code,
                enhanced=enhanced or dsn,
                status=status,
                stage=stage,
                queue_id=qid,
                remote_host=host,
                remote_ip=ip,
                recipient_domain=rcpt_domain,
                delay_s=delay,
            ),
        )

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
        t = self._time(line, ts_end)
        if t is None:
            return _BAD_TIMESTAMP
        return (
            Event(
                mta="postfix",
                log=self._log,
                time=t,
                direction="outbound",
                status="expired",
                queue_id=qid,
                sender_domain=domain_of(line[rs + 5 : s]),
            ),
        )

    def _per_host(self, line: str, ts_end: int, rs: int, qid: str) -> ParseResult:
        """`QID: host H[IP] said: 451 ...` / `refused to talk to me: 554 ...`: one try, no outcome."""
        got = _remote_reply(line[rs:])
        if got is None:
            return NOTHING
        code, enhanced, stage, host, ip = got
        if not code:
            return Unparsed("bad-reply-line", "no reply code")
        t = self._time(line, ts_end)
        if t is None:
            return _BAD_TIMESTAMP
        return (
            Event(
                mta="postfix",
                log=self._log,
                time=t,
                direction="outbound",
                code=code,
                enhanced=enhanced,
                stage=stage,
                queue_id=qid,
                remote_host=host,
                remote_ip=ip,
            ),
        )

    def _reject(self, line: str, ts_end: int, bs: int, daemon: str) -> ParseResult:
        """smtpd/postscreen/cleanup `[QID|NOQUEUE]: reject: STAGE from CLIENT: REPLY; from=<> to=<>`."""
        qid, rs = self._queue_id(line, bs)
        if not line.startswith(_REJECT_ACTIONS, rs):
            return NOTHING
        a = line.find(": ", rs) + 2
        sp = line.find(" ", a, a + 20)
        stage_word = line[a:sp] if sp >= 0 else ""
        stage = _REJECT_STAGE.get(stage_word)
        if stage is None and daemon == "cleanup":
            return self._cleanup_reject(line, ts_end, a, qid)
        if sp < 0 or not line.startswith("from ", sp + 1):
            return Unparsed("bad-reject-line", "no client")
        cs = sp + 6
        b = line.find("[", cs, cs + _HOST_MAX + 2)
        e = line.find("]", b, b + 48) if b >= 0 else -1
        if e < 0:
            return Unparsed("bad-reject-line", "no client")
        host, ip = _host_ip(line[cs : e + 1])
        colon = line.find(": ", e)
        reply = line[colon + 2 :] if colon >= 0 else ""
        code, enhanced = reply_codes(reply)
        if not code:
            code, enhanced = self._implied_code(reply)
        trailer = line.rfind("; from=<", colon)
        if trailer < 0:
            trailer = line.rfind("; to=<", colon)
        sender = rcpt = ""
        if trailer >= 0:
            sender = domain_of(_angle_address(line, "from=<", trailer))
            rcpt = domain_of(_angle_address(line, "to=<", trailer))
        t = self._time(line, ts_end)
        if t is None:
            return _BAD_TIMESTAMP
        return (
            Event(
                mta="postfix",
                log=self._log,
                time=t,
                direction="inbound",
                code=code,
                enhanced=enhanced,
                status="rejected",
                stage=stage or "",
                queue_id=qid,
                remote_host=host,
                remote_ip=ip,
                recipient_domain=rcpt,
                sender_domain=sender,
            ),
        )

    @staticmethod
    def _implied_code(reply: str) -> tuple[str, str]:
        """A reply logged without its basic code: what Postfix sent for it (see docs/parsers/postfix.md)."""
        m = _ENHANCED.match(reply)
        if m is not None:
            enhanced = m.group(1)
            # cleanup_stat.c: content REJECT is 550 5.7.1, a 4.x.x one defers with 451.
            return ("550" if enhanced[0] == "5" else "451" if enhanced[0] == "4" else ""), enhanced
        busy = _POSTSCREEN_BUSY.get(reply)
        if busy is not None:
            return busy
        return "", ""

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
            host, ip = _host_ip(line[f + 6 : trailer])
        code = enhanced = ""
        m = _CLEANUP_REASON.search(line, trailer)
        if m is not None:
            code, enhanced = self._implied_code(m.group(1))
        t = self._time(line, ts_end)
        if t is None:
            return _BAD_TIMESTAMP
        return (
            Event(
                mta="postfix",
                log=self._log,
                time=t,
                direction="inbound",
                code=code,
                enhanced=enhanced,
                status="rejected",
                stage="end-of-data",
                queue_id=qid,
                remote_host=host,
                remote_ip=ip,
                recipient_domain=domain_of(_angle_address(line, "to=<", trailer)),
                sender_domain=domain_of(_angle_address(line, "from=<", trailer)),
            ),
        )
