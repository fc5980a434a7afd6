"""Postfix log grammar shared by the line parser and the bulk scanner: status words, refusal
stages, the enhanced-code check, and the sizes both keep their memo tables to."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from logscan.events import Status

STATUS: Final[dict[str, Status]] = {
    "sent": "sent",
    "bounced": "bounced",
    "SOFTBOUNCE": "bounced",
    "deferred": "deferred",
    "expired": "expired",
    "force-expired": "expired",
}
# smtpd/postscreen/cleanup `reject: STAGE from ...` → stage.
REJECT_STAGE: Final = {
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
ENHANCED: Final = re.compile(r"([245]\.[0-9]{1,3}\.[0-9]{1,3})(?![0-9.])")
# Per-parser memo tables (domains, relay/client hosts, reply heads) repeat a lot in a mail
# log; each is cleared when it reaches this size, so memory stays bounded.
MEMO_MAX: Final = 4096
SECONDS: Final = {f"{s:02d}": float(s) for s in range(60)}  # with any fraction, still < 61


@lru_cache(maxsize=512)
def valid_enhanced(text: str) -> str:
    """`dsn=` value if it is RFC 3463 `[245].d{1,3}.d{1,3}`, else "" (memoised: few distinct values)."""
    return text if ENHANCED.fullmatch(text) is not None else ""
