"""Why refusals happen, recently: reason counts per minute and bounded top offenders per reason.

Fed with every 4xx/5xx Event (its `reason` set by the parser, logscan/parsers/reasons.py).
Kept on event time, like the alerts: per minute, the refusals per (log, direction, code,
reason); per slot of `slot_s`, the heaviest sender domains and client IPs (inbound) or
recipient domains (outbound) of each (log, direction, reason), each in a space-saving
sketch of `capacity` entries (Metwally, Agrawal, El Abbadi 2005: a new key evicts the
lightest and inherits its count, so counts are upper bounds and memory is fixed). Only the
last `window_s` of event time is kept; window_s = 0 keeps one slot for all time (`scan`).
Domains and IPs only: local-parts and user names never reach this module. Pure state, no
I/O, no clock.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from itertools import islice
from operator import itemgetter, le
from typing import Any, Final

from logscan.events import Event
from logscan.parsers.reasons import REASONS, classify, runbook

DEFAULT_WINDOW_S: Final = 3600
DEFAULT_SLOT_S: Final = 600
DEFAULT_CAPACITY: Final = 40
DEFAULT_TOP: Final = 10
# What an offender is, per direction: the remote side of the refused transaction.
KINDS: Final = {"inbound": ("sender_domain", "client_ip"), "outbound": ("recipient_domain",)}

# The fix, in one line, per reason and direction (docs/runbooks/<reason>.md has the details).
FIX: Final[dict[tuple[str, str], str]] = {
    ("auth_required", "inbound"): "clients send as a local domain or relay without SMTP AUTH — enable "
    "'My server requires authentication' (SMTP authentication) in the mail client",
    ("auth_required", "outbound"): "the remote server wants us to authenticate — set the smarthost "
    "login (Postfix smtp_sasl_*, Exim client authenticator, MailEnable smart host credentials)",
    ("sender_mismatch", "inbound"): "authenticated users send as an address that is not theirs — make "
    "the client's From match its login account, or grant that address to the account",
    ("sender_mismatch", "outbound"): "the remote server refuses our sender for this login — send as "
    "the account's own address",
    ("relay_denied", "inbound"): "mail to outside domains from clients that did not authenticate — the "
    "client must use SMTP AUTH; never open the relay to silence this",
    ("relay_denied", "outbound"): "a remote server will not relay for us — check the recipient domain's "
    "MX and our smarthost settings",
    ("unknown_recipient", "inbound"): "mail for addresses that do not exist here — tell the sender; "
    "create the mailbox or alias only if it should exist",
    ("unknown_recipient", "outbound"): "the recipients do not exist at the remote side — tell our "
    "sender to correct the address; remove it from lists",
    ("blocklisted", "inbound"): "the sending hosts are on a block list we use — expected for spam; "
    "whitelist a wrongly listed partner, do not drop the list",
    ("blocklisted", "outbound"): "our IP or domain is on a block list — look the listing up, fix the "
    "cause (compromised account, open relay), request delisting",
    ("mailbox_full", "inbound"): "local mailboxes over quota — ask the user to clean up or raise the quota",
    ("mailbox_full", "outbound"): "the remote mailboxes are full — tell our sender; nothing to fix here",
    ("greylisted", "inbound"): "our greylisting delays first-time senders — normal; act only if a "
    "sender never retries",
    ("greylisted", "outbound"): "remote greylisting — our queue retries; act only if retries never pass",
    ("rate_limited", "inbound"): "clients exceed our connection or message limits — slow the client "
    "down; raise the limit only for trusted hosts",
    ("rate_limited", "outbound"): "the remote server throttles us — lower our concurrency/rate for "
    "that destination",
    ("spam_content", "inbound"): "messages judged spam or infected — expected; check false positives "
    "in the filter's log",
    ("spam_content", "outbound"): "the remote server judges our messages spam — check for a "
    "compromised account sending bulk, and our SPF/DKIM/DMARC",
    ("auth_failed", "inbound"): "SMTP AUTH failures — a client with a stale password, or password "
    "guessing: fix the stored password, block guessing IPs",
    ("auth_failed", "outbound"): "our smarthost login is refused — update the stored credentials",
    ("other", "inbound"): "no known wording — read the reply texts (`logscan scan` examples)",
    ("other", "outbound"): "no known wording — read the reply texts (`logscan scan` examples)",
}


class SpaceSaving:
    """The heaviest keys of a stream in `capacity` entries; counts are upper bounds."""

    __slots__ = ("_floor", "_lightest", "capacity", "counts")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.counts: dict[str, int] = {}
        self._lightest: list[str] = []  # see add_all()
        self._floor = 0

    def add(self, key: str) -> None:
        """Count one occurrence of `key`."""
        counts = self.counts
        n = counts.get(key)
        if n is not None:
            counts[key] = n + 1
        elif len(counts) < self.capacity:
            counts[key] = 1
        else:
            self.add_all((key,))  # an eviction

    def add_all(self, keys: Iterable[str]) -> None:
        """add() of each key in order, in one loop (the batch path: no call per key)."""
        counts = self.counts
        get = counts.get
        capacity = self.capacity
        # Keys that had the smallest count (floor) when last looked for: candidates to evict,
        # first in the dict's order last. Counts only grow, so one still at floor is still a
        # lightest entry, and the first of them in dict order.
        lightest = self._lightest
        pop = lightest.pop
        floor = self._floor
        for key in keys:
            n = get(key)
            if n is not None:
                counts[key] = n + 1
            elif len(counts) < capacity:
                counts[key] = 1
            else:  # a lightest entry makes room; the newcomer inherits its count (an upper bound)
                while lightest:
                    old = pop()
                    if get(old) == floor:
                        break
                else:
                    floor = min(counts.values())
                    lightest.extend(reversed([k for k, v in counts.items() if v == floor]))
                    old = pop()
                del counts[old]
                counts[key] = floor + 1
        self._floor = floor


def top(sketches: Iterable[SpaceSaving], n: int) -> list[tuple[str, int]]:
    """The n heaviest keys over several sketches (counts summed), heaviest first, ties by key."""
    merged: dict[str, int] = {}
    for s in sketches:
        for key, c in s.counts.items():
            merged[key] = merged.get(key, 0) + c
    return sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


CountKey = tuple[str, str, str, str, str]  # mta, log, direction, code, reason
# A refusal as EventBatch.refusals holds it: (epoch minute, direction, code, reason, sender
# domain, client IP, recipient domain).
Refusal = tuple[int, str, str, str, str, str, str]
_MINUTE: Final = itemgetter(0)
_REFUSAL_KEY: Final = itemgetter(1, 2, 3)
_SENDER: Final = itemgetter(4)
_CLIENT: Final = itemgetter(5)
_RECIPIENT: Final = itemgetter(6)
# What the C extension's feed() does (logscan/core/_sketch.c): each refusal's keys into the
# sketches of its group (an index into the groups), in order, as SpaceSaving.add_all() would.
Feed = Callable[[list[Refusal], list[int], list[tuple[SpaceSaving, ...]]], None]


def _c_feed() -> Feed | None:
    try:
        from logscan.core._sketch import feed  # noqa: PLC0415 - optional, compiled at install
    except ImportError:  # installed without a C compiler: add_refusals() does it in Python
        return None
    return feed


_feed = _c_feed()
# Sketch groups (one sketch per kind) per slot; past this, a new (code, reason) pair counts
# under its class ("5xx"), so a server inventing codes cannot grow memory.
MAX_SKETCHES: Final = 1024
# Refusals per slot from which add_refusals() takes a slot at once rather than one by one.
DENSE: Final = 16


@dataclass(frozen=True, slots=True)
class Why:
    """What a group of refusals mostly is: the dominant reason, its share, offenders and fix."""

    reason: str
    share: float
    count: int
    total: int
    reasons: tuple[tuple[str, int], ...]  # every reason seen, heaviest first
    offenders: tuple[tuple[str, str, int], ...]  # (kind, domain or IP, count), heaviest first per kind
    fix: str
    runbook: str

    def line(self) -> str:
        """One line for an alert annotation: share, reason, fix and top offenders."""
        text = f"{self.share:.0%} {self.reason}: {self.fix}"
        by_kind: dict[str, list[str]] = {}
        for kind, value, n in self.offenders:
            by_kind.setdefault(kind, []).append(f"{value} ({n})")
        for kind, items in by_kind.items():
            text += f"; top {kind.replace('_', ' ')}s " + ", ".join(items)
        return text


class Diagnosis:
    """Recent refusals by reason, and their top offenders (see the module docstring)."""

    __slots__ = ("_minutes", "_newest", "_slots", "capacity", "slot_s", "window_s")

    def __init__(
        self, window_s: int = DEFAULT_WINDOW_S, slot_s: int = DEFAULT_SLOT_S, capacity: int = DEFAULT_CAPACITY
    ) -> None:
        self.window_s = window_s
        self.slot_s = slot_s if window_s else 0
        self.capacity = capacity
        self._minutes: dict[int, dict[CountKey, int]] = {}
        self._slots: dict[int, dict[CountKey, tuple[SpaceSaving, ...]]] = {}
        self._newest = 0  # the newest minute seen

    def add(self, ev: Event) -> None:
        """Count one 4xx/5xx Event (others are ignored)."""
        code = ev.code
        if code and code[0] in "45":
            reason = ev.reason or classify(code, ev.enhanced, "")  # no text at hand: the codes decide
            self.add_refusal(
                int(ev.time // 60), ev.mta, ev.log, ev.direction, code, reason,
                ev.sender_domain, ev.remote_ip, ev.recipient_domain,
            )  # fmt: skip

    def add_refusal(
        self, minute: int, mta: str, log: str, direction: str, code: str, reason: str,
        sender_domain: str, client_ip: str, recipient_domain: str,
    ) -> None:  # fmt: skip
        """add() of a refusal at epoch `minute` (the time // 60 of its Event), from its fields."""
        if self.window_s:
            if minute > self._newest:
                self._newest = minute
                self._prune()
            if minute < self._newest - self.window_s // 60:
                return  # older than the window: the cumulative counters still have it
            slot = (minute * 60) // self.slot_s  # = time // slot_s for a whole number of minutes
        else:
            minute = slot = 0
        counts = self._minutes.get(minute)
        if counts is None:
            counts = self._minutes[minute] = {}
        key = (mta, log, direction, code, reason)
        counts[key] = counts.get(key, 0) + 1
        groups = self._slots.get(slot)
        if groups is None:
            groups = self._slots[slot] = {}
        group = groups.get(key)
        if group is None:
            group = self._group(groups, key)
        # The sketches of KINDS[direction], in that order.
        if direction == "inbound":
            if sender_domain:
                group[0].add(sender_domain)
            if client_ip:
                group[1].add(client_ip)
        elif recipient_domain:
            group[0].add(recipient_domain)

    def add_refusals(self, mta: str, log: str, refusals: Sequence[Refusal]) -> None:
        """add_refusal() of each of `log`'s refusals, in order, with the same end state, a slot
        at a time: counts summed, each sketch fed its keys in one SpaceSaving.add_all()."""
        if not refusals:
            return
        if not self.window_s:
            self._add_slot(mta, log, 0, refusals, None)
            return
        minutes = list(map(_MINUTE, refusals))
        slot_s = self.slot_s
        if not all(map(le, minutes, islice(minutes, 1, None))) or len(minutes) < DENSE * (
            (minutes[-1] * 60) // slot_s - (minutes[0] * 60) // slot_s + 1
        ):
            # Minutes going back (not an EventBatch's), or too few refusals per slot to pay
            # for a slot's setup (a quiet server's hour): one by one.
            add = self.add_refusal
            for minute, direction, code, reason, sender, ip, rcpt in refusals:
                add(minute, mta, log, direction, code, reason, sender, ip, rcpt)
            return
        # Minutes never decrease, so only leading refusals can be older than the window, and
        # the window moves only forward: pruning once at the end removes what pruning at each
        # new minute would have (nothing pruned is written again).
        lo = bisect_left(minutes, self._newest - self.window_s // 60)
        while lo < len(minutes):
            slot = (minutes[lo] * 60) // slot_s
            hi = bisect_left(minutes, -(-(slot + 1) * slot_s // 60), lo)  # the next slot's first minute
            self._add_slot(mta, log, slot, refusals[lo:hi], minutes[lo:hi])
            lo = hi
        if minutes and minutes[-1] > self._newest:
            self._newest = minutes[-1]
            self._prune()

    def _add_slot(
        self, mta: str, log: str, slot: int, rows: Sequence[Refusal], minutes: Sequence[int] | None
    ) -> None:
        """add_refusals() of refusals of one slot, kept by the window, at `minutes` (one each;
        None: scan's single slot, minute 0)."""
        keys = list(map(_REFUSAL_KEY, rows))
        groups = self._slots.get(slot)
        if groups is None:
            groups = self._slots[slot] = {}
        # Each refusal's group, as an index into `fed`; keys folded into one group (past
        # MAX_SKETCHES) share one, so their refusals reach its sketches interleaved, in order.
        index: dict[tuple[str, str, str], int] = {}
        by_id: dict[int, int] = {}
        fed: list[tuple[SpaceSaving, ...]] = []
        sizes: list[int] = []
        if minutes is None:  # one slot for all time: every minute is 0
            pairs = {(0, rkey): n for rkey, n in Counter(keys).items()}
        else:
            pairs = Counter(zip(minutes, keys, strict=True))
        for (minute, rkey), n in pairs.items():  # first appearance: made as one by one would
            counts = self._minutes.get(minute)
            if counts is None:
                counts = self._minutes[minute] = {}
            key = (mta, log, *rkey)
            counts[key] = counts.get(key, 0) + n
            i = index.get(rkey)
            if i is None:
                group = groups.get(key)
                if group is None:
                    group = self._group(groups, key)
                i = index[rkey] = by_id.setdefault(id(group), len(fed))
                if i == len(fed):
                    fed.append(group)
                    sizes.append(0)
            sizes[i] += n
        if _feed is not None:  # the C extension: each row into its group's sketches, in order
            _feed(rows if isinstance(rows, list) else list(rows), list(map(index.__getitem__, keys)), fed)
            return
        # Each sketch sees only its own keys, so only the order within a group matters: a
        # stable sort by group keeps it, and each group's rows feed its sketches at once.
        if len(fed) > 1:
            at = list(map(index.__getitem__, keys))
            rows = list(map(rows.__getitem__, sorted(range(len(rows)), key=at.__getitem__)))
        lo = 0
        for group, n in zip(fed, sizes, strict=True):
            mine = rows[lo : lo + n]
            lo += n
            if len(group) == 2:  # inbound: sender domains, client IPs
                group[0].add_all(filter(None, map(_SENDER, mine)))
                group[1].add_all(filter(None, map(_CLIENT, mine)))
            else:
                group[0].add_all(filter(None, map(_RECIPIENT, mine)))

    def _group(
        self, groups: dict[CountKey, tuple[SpaceSaving, ...]], key: CountKey
    ) -> tuple[SpaceSaving, ...]:
        """The sketches of a new (mta, log, direction, code, reason) in one slot; past
        MAX_SKETCHES groups, a new code shares its class's ("5xx") group."""
        if len(groups) >= MAX_SKETCHES:
            mta, log, direction, code, reason = key
            folded = (mta, log, direction, code[0] + "xx", reason)
            group = groups.get(folded)
            if group is not None:
                return group
            key = folded
        group = groups[key] = tuple(SpaceSaving(self.capacity) for _ in KINDS.get(key[2], ("",)))
        return group

    def _prune(self) -> None:
        oldest = self._newest - self.window_s // 60
        for m in [m for m in self._minutes if m < oldest]:
            del self._minutes[m]
        oldest_slot = (oldest * 60) // self.slot_s
        for s in [s for s in self._slots if s < oldest_slot]:
            del self._slots[s]

    # -- queries ---------------------------------------------------------------------------

    def counts(self, start: float | None = None, end: float | None = None) -> dict[CountKey, int]:
        """Refusals per (mta, log, direction, code, reason) in minutes [start, end) (None: all kept)."""
        lo = -1 if start is None or not self.window_s else int(start // 60)
        hi = 1 << 62 if end is None or not self.window_s else int(end // 60)
        out: dict[CountKey, int] = {}
        for minute, counts in self._minutes.items():
            if lo <= minute < hi:
                for key, n in counts.items():
                    out[key] = out.get(key, 0) + n
        return out

    def offenders(
        self,
        log: str | None,
        direction: str,
        code: str,
        reason: str,
        n: int = DEFAULT_TOP,
        start: float | None = None,
    ) -> dict[str, list[tuple[str, int]]]:
        """Top n offenders per kind of (log, direction, code, reason) over the slots from `start`
        on. log None: every log; code "5xx" (or "5.7.1"): every code of that class."""
        first = -1 if start is None or not self.slot_s else int(start // self.slot_s)
        exact = "." not in code and not code.endswith("xx")
        groups = [
            group
            for slot, groups in self._slots.items() if slot >= first
            for (_m, lg, d, c, r), group in groups.items()
            if d == direction and r == reason and (log is None or lg == log)
            and (c == code or c == code[0] + "xx" if exact else c[0] == code[0])
        ]  # fmt: skip
        return {kind: top((g[i] for g in groups), n) for i, kind in enumerate(KINDS.get(direction, ()))}

    def why(self, log: str, direction: str, code: str, start: float, end: float, n: int = 3) -> Why | None:
        """The dominant reason of `log`'s `direction` replies matching `code` ("551", "5xx" or
        "5.7.1", matched by its class) in [start, end); None when there were none."""
        by_reason: dict[str, int] = {}
        by_class = "." in code or code.endswith("xx")
        for (_mta, lg, d, c, reason), k in self.counts(start, end).items():
            if lg == log and d == direction and (c[0] == code[0] if by_class else c == code):
                by_reason[reason] = by_reason.get(reason, 0) + k
        total = sum(by_reason.values())
        if not total:
            return None
        ranked = tuple(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])))
        reason, count = ranked[0]
        offenders = tuple(
            (kind, value, k)
            for kind, items in self.offenders(log, direction, code, reason, n, start).items()
            for value, k in items
        )
        return Why(
            reason=reason,
            share=count / total,
            count=count,
            total=total,
            reasons=ranked,
            offenders=offenders,
            fix=FIX.get((reason, direction), FIX[("other", "inbound")]),
            runbook=runbook(reason),
        )

    def reason_rows(
        self, log: str | None, direction: str, code: str, by_reason: Mapping[str, int], n: int
    ) -> list[dict[str, Any]]:
        """Each reason of one code, most frequent first: count, share, fix, runbook and top
        offenders (of `log`, or of every log when None)."""
        total = sum(by_reason.values())
        return [
            {
                "reason": reason,
                "count": k,
                "share": round(k / total, 4),
                "fix": FIX.get((reason, direction), ""),
                "runbook": runbook(reason),
                "offenders": {
                    kind: [{"value": v, "count": c} for v, c in items]
                    for kind, items in self.offenders(log, direction, code, reason, n).items()
                },
            }
            for reason, k in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def document(self, n: int = DEFAULT_TOP) -> dict[str, Any]:
        """The /diagnosis JSON document: per (log, direction, code), each reason with its count,
        share of that code, fix, runbook and top offenders, over the kept window."""
        groups: dict[tuple[str, str, str, str], dict[str, int]] = {}
        for (mta, log, direction, code, reason), k in self.counts().items():
            g = groups.setdefault((mta, log, direction, code), {})
            g[reason] = g.get(reason, 0) + k
        rows: list[dict[str, Any]] = []
        for (mta, log, direction, code), by_reason in sorted(groups.items()):
            total = sum(by_reason.values())
            rows.append(
                {
                    "mta": mta,
                    "log": log,
                    "direction": direction,
                    "code": code,
                    "count": total,
                    "reasons": self.reason_rows(log, direction, code, by_reason, n),
                }
            )
        newest = self._newest * 60 if self.window_s and self._minutes else None
        return {
            "window_s": self.window_s,
            "until": None if newest is None else datetime.fromtimestamp(newest + 60, UTC).isoformat(),
            "reasons_known": list(REASONS),
            "codes": rows,
        }


def diagnosis_json(diagnosis: Diagnosis, n: int = DEFAULT_TOP) -> bytes:
    """The /diagnosis HTTP body (application/json): Diagnosis.document() encoded."""
    return json.dumps(diagnosis.document(n), indent=1).encode()


def diagnosis_html(doc: Mapping[str, Any], codes: int = 5) -> str:
    """A landing-page fragment of Diagnosis.document(): the busiest codes, their reasons and
    top offenders, HTML-escaped (domains and IPs come from remote input)."""
    rows = sorted(doc.get("codes", ()), key=lambda r: -int(r["count"]))[:codes]
    if not rows:
        return "<h2>Why refusals happen</h2><p>No 4xx/5xx replies in the last hour.</p>"
    out = ["<h2>Why refusals happen (last hour)</h2><ul>"]
    for row in rows:
        where = f"{escape(row['code'])} {escape(row['direction'])} on {escape(row['log'])}"
        out.append(f"<li>{where}: {row['count']}<ul>")
        for r in row["reasons"][:3]:
            who = "; ".join(
                f"{escape(kind.replace('_', ' '))}s "
                + ", ".join(f"{escape(o['value'])} ({o['count']})" for o in items[:3])
                for kind, items in r["offenders"].items()
                if items
            )
            out.append(
                f"<li>{r['share']:.0%} {escape(r['reason'])} — {escape(r['fix'])}"
                + (f" — top {who}" if who else "")
                + f" (<code>{escape(r['runbook'])}</code>)</li>"
            )
        out.append("</ul></li>")
    out.append("</ul>")
    return "".join(out)
