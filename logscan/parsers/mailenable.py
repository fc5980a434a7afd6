"""MailEnable `SMTP-Activity-YYMMDD.log`: one TAB-separated row per SMTP command and its reply.

Columns (1-based, see docs/parsers/mailenable.md): 1 `MM/DD/YY hh:mm:ss` local time,
2 agent (`SMTP-IN` our server answers a client, `SMTP-OU` a remote answers us),
3 message file `<32 hex>.MAI`, 4 socket number, 5 remote IP, 6 verb, 7 command text,
8 reply to that command (first line only), 9/10 byte counts, 11 AUTH account, 12 subject.
Columns 11 and 12 are never read: they hold personal data.

Unparsed reasons (a fixed set; each becomes a label value):
    not-mailenable      no TAB and not a `[..]*** LOG FILE STARTED/CLOSED ***` marker
    unknown-agent       column 2 is not SMTP-IN, SMTP-OU, IMAP-*, POP*
    too-few-columns     fewer than the 8 columns that reach the reply
    misaligned-columns  SMTP-IN row with a TAB inside a column (client text), or byte-count
                        columns that are not numbers: column 8 cannot be trusted
    bad-timestamp       column 1 is not a valid `MM/DD/YY hh:mm:ss`
    no-reply-code       column 8 is not empty but does not start with a [2-5]xx code

State: one bounded dict, message file -> (sender domain, recipient domain), so that DATA and
end-of-data replies carry the domains their transaction's MAIL/RCPT rows named. It holds at
most `STATE_CAP` transactions; the oldest tenth is dropped when it is full (FIFO).
"""

from __future__ import annotations

import re
from itertools import islice
from typing import ClassVar, Final

from logscan.events import MTA, NOTHING, Direction, Event, ParseResult, Status, Unparsed
from logscan.parsers.base import MAX_LINE, ParserOptions, domain_of, reply_codes
from logscan.parsers.reasons import refusal_reason
from logscan.parsers.timestamps import Clock

STATE_CAP: Final = 10_000

REASONS: Final = frozenset(
    {
        "not-mailenable",
        "unknown-agent",
        "too-few-columns",
        "misaligned-columns",
        "bad-timestamp",
        "no-reply-code",
    }
)

# Verb (column 6) -> stage. An empty verb is the inbound greeting or connection deny; any
# verb not listed becomes "other" so that the stage label stays bounded.
STAGES: Final[dict[str, str]] = {
    "": "connect",
    "CONN": "connect",
    "EHLO": "helo",
    "HELO": "helo",
    "MAIL": "mail",
    "RCPT": "rcpt",
    "DATA": "data",
    "BDAT": "data",
    "DATE": "end-of-data",
    "AUTH": "auth",
    "STARTTLS": "starttls",
    "RSET": "rset",
    "QUIT": "quit",
    "NOOP": "noop",
    "VRFY": "vrfy",
    "EXPN": "expn",
    "HELP": "help",
    "ETRN": "etrn",
    "TURN": "etrn",
}

# Outbound failures at these stages decide a delivery. A failed EHLO is followed by HELO and
# a failed QUIT comes after the message was taken, so neither is a bounce or a deferral.
DELIVERY_STAGES: Final = frozenset({"connect", "mail", "rcpt", "data", "end-of-data"})
# What a stage does to the per-message state: nothing (0), or one of these.
RCPT, MAIL, CARRY, RESET = 1, 2, 3, 4
ROLES: Final = {
    "rcpt": RCPT,
    "mail": MAIL,
    "data": CARRY,
    "end-of-data": CARRY,
    "connect": RESET,
    "rset": RESET,
    "quit": RESET,
}

_MINUTE = re.compile(r"([0-9][0-9])/([0-9][0-9])/([0-9][0-9]) ([0-9][0-9]):([0-9][0-9])\Z")
_SECONDS: Final = {f":{n:02d}": n for n in range(61)}  # 60: a leap second, as Clock allows
SECONDS: Final = {f"{n:02d}": n for n in range(61)}  # the same, without the colon (bulk rows)
_MINUTE_CACHE: Final = 4096
_DOMAIN_CACHE: Final = 4096
_MAX_DOMAIN: Final = 255  # longer "domains" are junk: computed, never cached
MANY: Final = "\x00many"  # more than one recipient domain in one transaction
MAX_ID: Final = 64  # a message file name is 36 characters; anything much longer is junk
MAX_IP: Final = 45  # longest textual IPv6 address
OTHER_AGENTS: Final = ("IMAP", "POP")

# Every reply prefix reply_codes() accepts ("550 ", "250-", or a bare "221"), mapped to its code.
_CODES: Final = {code + end: code for code in map(str, range(200, 600)) for end in ("", " ", "-")}
_ENHANCED_START: Final = frozenset("245(#")


def _event(
    log: str, t: float, direction: Direction, code: str, enhanced: str, status: Status,
    stage: str, qid: str, ip: str, recipient: str, sender: str, reason: str = "",
) -> Event:  # fmt: skip
    return Event("mailenable", log, t, direction, code, enhanced, status, stage, qid, "", ip,
                 recipient, sender, None, reason)  # fmt: skip


def _address(command: str) -> str:
    """The path of `MAIL FROM:<a@b> SIZE=1` / `RCPT TO:<a@b>`: what is between < and >."""
    lt = command.find("<")
    if lt >= 0:
        gt = command.find(">", lt)
        return command[lt + 1 : gt] if gt >= 0 else command[lt + 1 :]
    colon = command.find(":")
    rest = command[colon + 1 :].strip() if colon >= 0 else ""
    return rest.split(" ", 1)[0] if rest else ""


def status_of(direction: Direction, stage: str, first: str) -> Status:
    """The delivery outcome a reply whose code starts with `first` gives at `stage` ("" for none)."""
    if direction == "inbound":
        return "rejected" if first in "45" else ""
    if first == "2":
        return "sent" if stage == "end-of-data" else ""
    if first != "3" and stage in DELIVERY_STAGES:
        return "bounced" if first == "5" else "deferred"
    return ""


def remember(tx: dict[str, tuple[str, str]], key: str, value: tuple[str, str]) -> None:
    """tx[key] = value, dropping the oldest tenth first when STATE_CAP transactions are kept."""
    if key not in tx and len(tx) >= STATE_CAP:
        for old in list(islice(tx, STATE_CAP // 10)):
            del tx[old]
    tx[key] = value


def _hint(text: str) -> str:
    """A short, printable excerpt for Unparsed.detail."""
    return text[:24].encode("ascii", "backslashreplace").decode("ascii")[:40]


class MailEnableParser:
    """Parser for MailEnable SMTP-Activity rows (versions 9.x seen; CRLF; 11 or 12 columns)."""

    mta: ClassVar[MTA] = "mailenable"

    __slots__ = ("_clock", "_domains", "_last_epoch", "_last_ts", "_log", "_minutes", "_tx", "_undo")

    def __init__(self, options: ParserOptions) -> None:
        self._log = options.log
        self._clock = Clock(options.tz, options.reference_time)
        self._last_ts = ""
        self._last_epoch = 0.0
        self._minutes: dict[str, float] = {}
        self._domains: dict[str, str] = {}
        self._tx: dict[str, tuple[str, str]] = {}
        self._undo: tuple[str, dict[str, tuple[str, str]]] | None = None

    @property
    def open_transactions(self) -> int:
        """How many transactions the parser remembers domains for (at most STATE_CAP)."""
        return len(self._tx)

    @property
    def log(self) -> str:
        """The log's name, as its Events carry it."""
        return self._log

    @property
    def transactions(self) -> dict[str, tuple[str, str]]:
        """The per-message state itself (message file -> (sender, recipient domain)), shared
        with the bulk reader (logscan/parsers/mailenable_bulk.py), which updates it as parse() does."""
        return self._tx

    def undo_from(self, line: str, saved: dict[str, tuple[str, str]] | None) -> None:
        """If parse() is next given this very `line` object, first put back `saved` as the state.

        The bulk reader has then applied a batch's rows to the state, but the aggregate refused
        the batch, so the pipeline parses its lines one by one, from the first: they must find
        the state as it was before the batch (docs/decisions/0019-mailenable-bulk.md)."""
        self._undo = None if saved is None else (line, saved)

    def set_reference_time(self, t: float) -> None:
        """Rows carry a full date, so this only keeps the interface of the other parsers."""
        self._clock.set_reference(t)

    def minute(self, text: str) -> float | None:
        """Epoch seconds of a `MM/DD/YY hh:mm` minute's start; None if it is not one. Cached."""
        base = self._minutes.get(text)
        if base is None:
            m = _MINUTE.match(text)
            if m is None:
                return None
            mo, day, yy, hh, mi = m.groups()
            try:
                # Two-digit year: MailEnable dates from 2001, so 00-99 means 2000-2099.
                base = self._clock.local(2000 + int(yy), int(mo), int(day), int(hh), int(mi), 0)
            except (ValueError, OverflowError):
                return None
            if len(self._minutes) >= _MINUTE_CACHE:
                self._minutes.clear()
            self._minutes[text] = base
        return base

    def _epoch(self, ts: str) -> float | None:
        """Epoch seconds of `MM/DD/YY hh:mm:ss`; None if it is not one. Cached per minute."""
        sec = _SECONDS.get(ts[14:])
        if sec is None:
            return None
        base = self.minute(ts[:14])
        if base is None:
            return None
        t = base + sec
        self._last_ts = ts
        self._last_epoch = t
        return t

    def _domain(self, command: str) -> str:
        """Domain of the path in `MAIL FROM:`/`RCPT TO:`; domain_of's answers are cached per raw domain."""
        address = _address(command)
        at = address.rfind("@")
        if at < 0:
            return ""
        raw = address[at + 1 :]
        domain = self._domains.get(raw)
        if domain is None:
            domain = domain_of(address)
            if len(raw) <= _MAX_DOMAIN:
                if len(self._domains) >= _DOMAIN_CACHE:
                    self._domains.clear()
                self._domains[raw] = domain
        return domain

    def parse(self, line: str) -> ParseResult:
        """One row of the log (without its newline) -> one Event per reply, NOTHING, or Unparsed."""
        undo = self._undo
        if undo is not None:
            self._undo = None
            if line is undo[0]:
                self._tx.clear()
                self._tx.update(undo[1])
        if len(line) > MAX_LINE:
            line = line[:MAX_LINE]
        cols = line.split("\t", 11)
        n = len(cols)
        if n < 12:
            # The CR of CRLF sits in the last column; column 12 (the subject) is never read,
            # so full rows need no copy of the line to drop it.
            last = cols[-1]
            if last[-1:] == "\r":
                cols[-1] = last[:-1]
            if n < 8:
                return self._not_a_row(cols[0]) if n == 1 else self._short_row(cols)
        agent = cols[1]
        if agent == "SMTP-IN":
            direction: Direction = "inbound"
            # Column 7 of an inbound row is the client's own text. A TAB in it would shift
            # column 8, and a client could then write its own "551 ..." reply into our log.
            # split() leaves any TAB beyond the eleventh in the last column.
            if n > 9 and (
                not (cols[8].isdigit() and cols[9].isdigit()) or (n == 12 and "\t" in cols[11])
            ):
                return Unparsed("misaligned-columns")
        elif agent == "SMTP-OU":
            direction = "outbound"
        elif agent.startswith(OTHER_AGENTS):
            return NOTHING
        else:
            return Unparsed("unknown-agent", _hint(agent))
        ts = cols[0]
        if ts == self._last_ts:
            t = self._last_epoch
        else:
            # The minute-cache hit, inline; _epoch does the rest (and the checks).
            base = self._minutes.get(ts[:14])
            sec = _SECONDS.get(ts[14:])
            if base is not None and sec is not None:
                t = base + sec
                self._last_ts = ts
                self._last_epoch = t
            else:
                t_or_none = self._epoch(ts)
                if t_or_none is None:
                    return Unparsed("bad-timestamp", _hint(ts))
                t = t_or_none
        verb = cols[5]
        stage = STAGES.get(verb)
        if stage is None:
            stage = STAGES.get(verb.upper(), "other")
        role = ROLES.get(stage, 0)
        qid = cols[2]
        if qid.endswith(".MAI"):
            qid = qid[:-4]
        if len(qid) > MAX_ID:
            qid = ""
        reply = cols[7]
        if not reply:
            # A dropped connection, or the TLS handshake row that comes before `STARTTLS`.
            if role == RESET:
                self._tx.pop(qid, None)
            return NOTHING
        # Most replies are "NNN text" without an enhanced code: a dict lookup answers them;
        # the regex of reply_codes runs only when an enhanced code may follow.
        code = _CODES.get(reply[:4]) or _CODES.get(reply)
        if code is None:
            return Unparsed("no-reply-code", _hint(reply))
        enhanced = reply_codes(reply)[1] if reply[4:5] in _ENHANCED_START else ""

        sender = recipient = ""
        if role:  # most rows (greeting, EHLO, AUTH, ...) touch no state
            if role == RCPT:
                recipient = self._domain(cols[6])
                known = self._tx.get(qid)
                if known is not None:
                    sender = known[0]
                if code[0] == "2" and qid and recipient:
                    # Only accepted recipients go on to DATA; note them for its reply.
                    if known is None:
                        remember(self._tx, qid, ("", recipient))
                    elif known[1] != recipient:
                        self._tx[qid] = (known[0], recipient if not known[1] else MANY)
            elif role == MAIL:
                sender = self._domain(cols[6])
                # A new transaction starts only if MAIL was accepted.
                if code[0] == "2" and qid:
                    remember(self._tx, qid, (sender, ""))
                else:
                    self._tx.pop(qid, None)
            elif role == CARRY:
                known = self._tx.get(qid)
                if known is not None:
                    sender = known[0]
                    recipient = known[1] if known[1] != MANY else ""
            else:
                self._tx.pop(qid, None)

        first = code[0]
        status = status_of(direction, stage, first)

        ip = cols[4]
        if len(ip) > MAX_IP:
            ip = ""
        return (
            _event(
                self._log,
                t,
                direction,
                code,
                enhanced,
                status,
                stage,
                qid,
                ip,
                recipient,
                sender,
                refusal_reason(code, enhanced, reply, 0) if first in "45" else "",
            ),
        )

    def _short_row(self, cols: list[str]) -> ParseResult:
        """A row cut before column 8: IMAP/POP rows carry nothing anyway, others are broken."""
        if cols[1].startswith(OTHER_AGENTS):
            return NOTHING
        if cols[1] in ("SMTP-IN", "SMTP-OU"):
            return Unparsed("too-few-columns", f"{len(cols)} columns")
        return Unparsed("unknown-agent", _hint(cols[1]))

    def _not_a_row(self, line: str) -> ParseResult:
        """A line without TABs: a LOG FILE marker, MailEnable's end-of-file ^Z, or foreign text."""
        # A UTF-8 byte-order mark can only precede the first line, which is a marker.
        line = line.removeprefix("\ufeff")
        if line.startswith("[") and ("LOG FILE STARTED" in line or "LOG FILE CLOSED" in line):
            return NOTHING
        # Windows writers end a closed file with ^Z (0x1A); a stray CR/blank carries nothing.
        if not line.strip("\r\x1a \t"):
            return NOTHING
        return Unparsed("not-mailenable", _hint(line))
