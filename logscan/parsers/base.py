"""What every parser shares: its interface, its options and the SMTP reply grammar."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import ClassVar, Protocol

from logscan.events import MTA, ParseResult

# Lines longer than this are cut before parsing: Postfix itself cuts at 2,000 and
# journald at 48 KiB; a longer line is hostile or broken, and must not cost more.
MAX_LINE = 65536

# RFC 5321 basic code at the start of a reply, then RFC 3463 enhanced code if present.
# Only [2-5]xx is a reply; "850 NONSENSE" (Exim test suite) is not.
_REPLY = re.compile(r"([2-5][0-9][0-9])(?:[ -]|$)(?:\(?#?([245]\.[0-9]{1,3}\.[0-9]{1,3})(?![0-9.]))?")
_DOMAIN_OK = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?\Z")


@dataclass(slots=True)
class ParserOptions:
    """Settings a parser needs that the line does not carry.

    `reference_time` (epoch seconds) dates syslog lines that have no year: a month later
    than the reference month belongs to the year before. The caller sets it (file mtime
    for `scan`, the current time for the daemon); the parser never reads a clock.
    `tz` is the zone of timestamps that carry none (None: the machine's local zone).
    """

    log: str = ""
    tz: tzinfo | None = None
    reference_time: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


class Parser(Protocol):
    """A pure parser: one line in (no newline), events or an Unparsed reason out."""

    mta: ClassVar[MTA]

    def __init__(self, options: ParserOptions) -> None: ...

    def parse(self, line: str) -> ParseResult: ...


def reply_codes(text: str) -> tuple[str, str]:
    """Basic and enhanced code at the start of a reply text; ("", "") when it has none."""
    m = _REPLY.match(text)
    if m is None:
        return "", ""
    return m.group(1), m.group(2) or ""


def domain_of(address: str) -> str:
    """Lower-cased domain of an address (`<a@B.org>` → `b.org`); "" when there is none or it is junk."""
    at = address.rfind("@")
    if at < 0:
        return ""
    dom = address[at + 1 :].strip().strip("<>[]").rstrip(".").lower()
    if not dom or _DOMAIN_OK.match(dom) is None:
        return ""
    return dom
