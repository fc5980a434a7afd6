"""Why a server refused: one reason class per 4xx/5xx SMTP reply, from its text and enhanced code.

`classify(code, enhanced, text)` is pure and total: every refusal gets exactly one of
REASONS. The reply text decides first (case-insensitive substring phrases, checked in a
fixed priority order, because real servers pack several ideas into one line: "not our
customer, relaying denied" is a relay refusal, "Sender address is not valid for your
login; authenticate first" is a sender mismatch); when no phrase matches, the RFC 3463
enhanced code decides where it is unambiguous (5.1.1 → unknown_recipient, 5.2.2 →
mailbox_full, 5.7.8 → auth_failed, ...), then a basic code that means one thing (535).
Everything else is `other`. The phrases come from the variants in docs/runbooks/README.md
(the 551 article's list), real Postfix, Exim and MailEnable logs, and the RFCs' own texts.

Only the first MAX_TEXT characters are read, so a hostile server's long reply costs a
bounded amount; the text is never kept (a parser memoises the answer by its key only).
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

Reason = Literal[
    "auth_required",
    "sender_mismatch",
    "relay_denied",
    "unknown_recipient",
    "blocklisted",
    "mailbox_full",
    "greylisted",
    "rate_limited",
    "spam_content",
    "auth_failed",
    "other",
]
REASONS: Final[tuple[Reason, ...]] = get_args(Reason)  # in this order
MAX_TEXT: Final = 400

# (phrase, reason), checked in this order against the lower-cased text; the first found wins.
# The order is the point: a more specific idea before a more general one that real replies
# combine it with.
_PHRASES: Final[tuple[tuple[str, Reason], ...]] = (
    # An authenticated user sending as an address that is not theirs (MailEnable "Authenticated
    # senders must use valid sender address", Postfix reject_sender_login_mismatch, Exim ACLs).
    ("not valid for your login", "sender_mismatch"),
    ("not owned by user", "sender_mismatch"),
    ("not owned by", "sender_mismatch"),
    ("login mismatch", "sender_mismatch"),
    ("does not match your login", "sender_mismatch"),
    ("does not match authenticated", "sender_mismatch"),
    ("does not match the authenticated", "sender_mismatch"),
    ("not authorized to send as", "sender_mismatch"),
    ("not authorised to send as", "sender_mismatch"),
    ("not allowed to send as", "sender_mismatch"),
    ("not allowed to send on behalf", "sender_mismatch"),
    ("sender address not allowed for", "sender_mismatch"),
    # A client that did not authenticate (before relaying, or sending as a local domain).
    ("requires authentication", "auth_required"),
    ("authentication required", "auth_required"),
    ("authentication is required", "auth_required"),
    ("must authenticate", "auth_required"),
    ("must be authenticated", "auth_required"),
    ("please authenticate", "auth_required"),
    ("authenticate first", "auth_required"),
    ("auth required", "auth_required"),
    ("not logged in", "auth_required"),
    ("smtp authentication is required", "auth_required"),
    # A failed SMTP AUTH (wrong password, unknown user, mechanism refused).
    ("authentication failed", "auth_failed"),
    ("authentication unsuccessful", "auth_failed"),
    ("incorrect authentication data", "auth_failed"),
    ("invalid username or password", "auth_failed"),
    ("username and password not accepted", "auth_failed"),
    ("authentication credentials invalid", "auth_failed"),
    ("invalid credentials", "auth_failed"),
    ("bad username or password", "auth_failed"),
    # Relay refused: not our domain, and the client may not relay.
    ("relay access denied", "relay_denied"),
    ("relay denied", "relay_denied"),
    ("relaying denied", "relay_denied"),
    ("relay request denied", "relay_denied"),
    ("relay not permitted", "relay_denied"),
    ("relaying not permitted", "relay_denied"),
    ("relaying not allowed", "relay_denied"),
    ("relay not allowed", "relay_denied"),
    ("not a relay host", "relay_denied"),
    ("unable to relay", "relay_denied"),
    ("we do not relay", "relay_denied"),
    ("not permitted to relay", "relay_denied"),
    ("user not local; please try", "relay_denied"),  # RFC 5321's own 551 text
    ("mail must be to or from host domain", "relay_denied"),
    # The sender or its host is on a block list (DNSBL, the receiver's own list).
    ("blacklist", "blocklisted"),
    ("black list", "blocklisted"),
    ("blocklist", "blocklisted"),
    ("block list", "blocklisted"),
    ("blocked using", "blocklisted"),
    ("dnsbl", "blocklisted"),
    ("spamhaus", "blocklisted"),
    ("spamcop", "blocklisted"),
    ("barracudacentral", "blocklisted"),
    ("listed at", "blocklisted"),
    ("listed in", "blocklisted"),
    ("listed on", "blocklisted"),
    ("denylist", "blocklisted"),
    ("ip blocked", "blocklisted"),
    ("banned", "blocklisted"),
    ("denied access", "blocklisted"),  # MailEnable's connection deny (IP access control, auto-ban)
    # Greylisting (a deliberate, temporary first refusal).
    ("greylist", "greylisted"),
    ("graylist", "greylisted"),
    ("grey-list", "greylisted"),
    ("gray-list", "greylisted"),
    ("grey list", "greylisted"),
    ("gray list", "greylisted"),
    # Too much, too fast.
    ("rate limit", "rate_limited"),
    ("ratelimit", "rate_limited"),
    ("rate-limit", "rate_limited"),
    ("too many connections", "rate_limited"),
    ("too many messages", "rate_limited"),
    ("too many recipients", "rate_limited"),
    ("too many concurrent", "rate_limited"),
    ("too many errors", "rate_limited"),
    ("too many invalid", "rate_limited"),
    ("sending limit", "rate_limited"),
    ("throttl", "rate_limited"),
    ("unusual rate", "rate_limited"),
    ("exceeded the maximum number of", "rate_limited"),
    # The mailbox exists but cannot take more.
    ("mailbox full", "mailbox_full"),
    ("mailbox is full", "mailbox_full"),
    ("mailbox is over", "mailbox_full"),
    ("over quota", "mailbox_full"),
    ("quota exceeded", "mailbox_full"),
    ("exceeded quota", "mailbox_full"),
    ("exceeds quota", "mailbox_full"),
    ("quota full", "mailbox_full"),
    ("out of storage", "mailbox_full"),
    ("exceeded storage allocation", "mailbox_full"),  # RFC 5321's 552 text
    ("insufficient storage", "mailbox_full"),
    ("mailbox size limit", "mailbox_full"),
    # The message itself was judged (spam score, virus, content policy).
    ("spam", "spam_content"),
    ("virus", "spam_content"),
    ("malware", "spam_content"),
    ("content rejected", "spam_content"),
    ("content looks", "spam_content"),
    ("message content", "spam_content"),
    ("hits=", "spam_content"),
    ("phish", "spam_content"),
    ("junk", "spam_content"),
    ("unsolicited", "spam_content"),
    # No such recipient (or no longer: disabled, moved without forwarding).
    ("user unknown", "unknown_recipient"),
    ("unknown user", "unknown_recipient"),
    ("unknown recipient", "unknown_recipient"),
    ("recipient unknown", "unknown_recipient"),
    ("no such user", "unknown_recipient"),
    ("no such recipient", "unknown_recipient"),
    ("no such mailbox", "unknown_recipient"),
    ("no such account", "unknown_recipient"),
    ("does not exist", "unknown_recipient"),
    ("doesn't exist", "unknown_recipient"),
    ("not exist", "unknown_recipient"),
    ("no valid recipients", "unknown_recipient"),
    ("not our customer", "unknown_recipient"),
    ("failed to route the address", "unknown_recipient"),
    ("unrouteable address", "unknown_recipient"),
    ("user not local", "unknown_recipient"),
    ("invalid recipient", "unknown_recipient"),
    ("recipient not found", "unknown_recipient"),
    ("address not found", "unknown_recipient"),
    ("mailbox not found", "unknown_recipient"),
    ("mailbox unavailable", "unknown_recipient"),
    ("mailbox not available", "unknown_recipient"),
    ("invalid mailbox", "unknown_recipient"),
    ("no mailbox", "unknown_recipient"),
    ("mailbox disabled", "unknown_recipient"),
    ("account disabled", "unknown_recipient"),
    ("has been disabled", "unknown_recipient"),
    ("account is disabled", "unknown_recipient"),
    ("undeliverable address", "unknown_recipient"),
    ("mailbox name not allowed", "unknown_recipient"),
    ("bad destination mailbox", "unknown_recipient"),
    ("unknown local part", "unknown_recipient"),
    ("recipient address rejected: invalid", "unknown_recipient"),
    ("addressee unknown", "unknown_recipient"),
)

# Enhanced codes that name one reason whatever the text says (RFC 3463, RFC 4954, RFC 7372).
_ENHANCED: Final[dict[str, Reason]] = {
    "5.1.1": "unknown_recipient",  # bad destination mailbox address
    "5.1.6": "unknown_recipient",  # destination mailbox has moved, no forwarding address
    "5.1.10": "unknown_recipient",  # recipient address has null MX
    "5.2.1": "unknown_recipient",  # mailbox disabled (4.2.1 is what servers send for "busy")
    "4.2.2": "mailbox_full",
    "5.2.2": "mailbox_full",
    "4.7.8": "auth_failed",  # authentication credentials invalid
    "5.7.8": "auth_failed",
    "5.7.9": "auth_failed",  # authentication mechanism is too weak
    "4.7.28": "rate_limited",  # mail flood detected
    "5.7.28": "rate_limited",
}
# Basic codes that name one reason (RFC 4954: 530 authentication required, 535 credentials invalid).
_BASIC: Final[dict[str, Reason]] = {"530": "auth_required", "535": "auth_failed", "534": "auth_failed"}


# An address in angle brackets is the sender's or recipient's, not the server's words: a
# local-part like `spamtrap` or `blacklist-admin` must not decide the reason.
_ADDRESS: Final = re.compile(r"<[^<>]{0,320}>")


# Answers by (code, enhanced, normalised text): the same wordings repeat all day. Cleared when full.
_MEMO: dict[tuple[str, str, str], Reason] = {}
_MEMO_MAX: Final = 4096


def classify(code: str, enhanced: str, text: str) -> Reason:
    """The reason of a reply `code` [`enhanced`] `text` (the text with or without the codes)."""
    if not code or code[0] not in "45":
        return "other"
    low = text[:MAX_TEXT].lower()
    if "<" in low:
        low = _ADDRESS.sub(" ", low)
    key = (code, enhanced, low)
    got = _MEMO.get(key)
    if got is None:
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.clear()
        got = _MEMO[key] = _decide(code, enhanced, low)
    return got


def _decide(code: str, enhanced: str, low: str) -> Reason:
    """classify() of a lower-cased text without addresses."""
    for phrase, reason in _PHRASES:
        if phrase in low:
            return reason
    if enhanced:
        got = _ENHANCED.get(enhanced)
        if got is not None:
            return got
    return _BASIC.get(code, "other")


def refusal_reason(code: str, enhanced: str, line: str, start: int, end: int = -1) -> str:
    """classify() of the reply text line[start:end] when `code` is 4xx/5xx; "" for any other code.

    What parsers call where they build an Event: the reason is part of every refusal's Event.
    """
    if not code or code[0] not in "45":
        return ""
    if end < 0 or end - start > MAX_TEXT:
        end = start + MAX_TEXT
    return classify(code, enhanced, line[max(start, 0) : end])


def runbook(reason: str) -> str:
    """The runbook of a reason, relative to the repository root."""
    return f"docs/runbooks/{reason}.md"


def tables() -> tuple[tuple[tuple[str, Reason], ...], dict[str, Reason], dict[str, Reason]]:
    """What _decide() reads, for a reader that classifies in C (logscan/parsers/_exim_scan.c):
    the phrases in priority order, the enhanced codes, the basic codes."""
    return _PHRASES, dict(_ENHANCED), dict(_BASIC)
