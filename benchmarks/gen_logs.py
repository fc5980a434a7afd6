"""Generate big, realistic benchmark logs (Postfix, Exim, MailEnable) into benchmarks/data/.

Not a repetition of the sample logs: the *shapes* come from them. Each sample log in
sample_logs/ (real Postfix 3.7 and Exim 4.96 logs, the synthetic MailEnable log) is cut into
"stories" — every line of one SMTP session / one queued message, linked by queue id, smtpd
pid session, bounce notification, Exim message id, MailEnable thread — and every variable
token in a story line becomes a placeholder (queue ids, Exim/MailEnable message ids, pids,
IPs, ports, local parts, domains, host names, message-id numbers, embedded timestamps).

The generator then starts story instances at random times (a Poisson process with a
day/night cycle, over `--hours`, default 36 h), fills each instance's placeholders with fresh
values (recipient/sender domains drawn from a Zipf-like distribution over `--domains`
domains, default 5000; client IPs Zipf over 50 000 addresses; fresh queue ids and message
ids; pids that get recycled like real worker processes) and merges the instances'
lines in time order, so sessions interleave as they do on a busy server. Timestamps only
increase. Stories keep their own inner delays.

Postfix also gets story types the sample cannot have (no postscreen, Dovecot or OpenDKIM ran
when it was made): postscreen PASS/reject/hangup, Dovecot IMAP/LMTP lines and OpenDKIM
lines, written in those programs' real formats. Exim gets connection-level lines (lost
connection, no MAIL, TLS errors, synchronisation errors) in Exim 4.96's format.

Seeded and deterministic (same --seed and --size give the same bytes).

    .venv/bin/python benchmarks/gen_logs.py                       # 1M lines per MTA
    .venv/bin/python benchmarks/gen_logs.py --mta postfix --size 10M
    .venv/bin/python benchmarks/gen_logs.py --size 200k --out /tmp/x

Files: benchmarks/data/{postfix,exim,mailenable}-<size>.log (+ .json sidecar with counts).
"""

# ruff: noqa: E501  (log-line templates are long by nature)
from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import random
import re
import time
from bisect import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SAMPLES = {
    "postfix": REPO / "sample_logs" / "postfix" / "mail.log",
    "exim": REPO / "sample_logs" / "exim" / "mainlog",
    "mailenable": REPO / "sample_logs" / "mailenable" / "SMTP-Activity-261128.log",
}
# The sample servers' own domains and host names stay as they are (an MX's own domain is
# the same on every line); every other domain is replaced per story instance.
OWN_DOMAINS = {"example.com", "example.org"}
OWN_HOSTS = {"mx1.example.com", "mail.example.com", "workstation.example.com"}
OWN_IPS = {"127.0.0.1", "192.0.2.25"}
START = datetime(2026, 11, 27, 0, 0, 0, tzinfo=UTC).timestamp()

# ---------------------------------------------------------------------------------------------
# Templates: a line = literal text with placeholders.

Part = str | tuple[str, str]  # literal, or (kind, original value)


@dataclass(slots=True)
class Story:
    kind: str
    lines: list[tuple[float, list[Part]]]  # (seconds after the story's start, parts)


_EMAIL = r"(?P<email>(?P<local>[A-Za-z0-9][A-Za-z0-9._+-]*)@(?P<dom>(?:[A-Za-z0-9-]+\.)+(?:com|org|net|test)))"
_PFMID = r"(?P<pfmid>(?P<pfdate>\d{14})\.(?P<pfq>[0-9A-F]{8,12})@)"
_MEID = r"(?P<meid>\b[0-9A-F]{32}(?=\.MAI\b))"
_EXID = r"(?P<exid>\b[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}\b)"
_QID = r"(?P<qid>\b(?=[0-9A-F]*[A-F])(?=[0-9A-F]*[0-9])[0-9A-F]{8,12}\b)"
_HOST = r"(?P<host>(?<![\w.-])[A-Za-z][A-Za-z0-9-]*\.(?:[A-Za-z0-9-]+\.)*(?:example\.(?:com|org|net)|test)\b)"
_IP = r"(?P<ip>\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b)"
_PID = r"(?P<pid>(?<=\[)\d{2,7}(?=\]: )|(?<=\.MAI\t)\d+(?=\t))"
_PORT = r"(?P<port>(?<=\]:)\d{4,5}\b)"
_METS = r"(?P<mets>\b\d\d/\d\d/\d\d \d\d:\d\d:\d\d\b)"
TOKEN = re.compile("|".join((_PFMID, _EMAIL, _MEID, _EXID, _QID, _HOST, _IP, _PID, _PORT, _METS)))


def templatize(text: str) -> list[Part]:
    parts: list[Part] = []
    pos = 0
    for m in TOKEN.finditer(text):
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        pos = m.end()
        g = m.lastgroup
        if g == "pfmid":  # Postfix's own message-id: <YYYYmmddHHMMSS.QUEUEID@host>
            parts += [("pfdate", m["pfdate"]), ".", ("qid", m["pfq"]), "@"]
        elif g == "email":
            local, dom = m["local"], m["dom"]
            parts += [("local", local), "@", dom if dom in OWN_DOMAINS or dom in OWN_HOSTS else ("dom", dom)]
        elif g == "ip" and m[0] in OWN_IPS:
            parts.append(m[0])
        elif g == "host":
            host = m[0]
            parts.append(host if host in OWN_HOSTS or host in OWN_DOMAINS else ("host", host))
        else:
            assert g is not None
            parts.append((g, m[0]))
    if pos < len(text):
        parts.append(text[pos:])
    return _merge(parts)


def _merge(parts: list[Part]) -> list[Part]:
    out: list[Part] = []
    for p in parts:
        if isinstance(p, str) and out and isinstance(out[-1], str):
            out[-1] += p
        else:
            out.append(p)
    return out


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[object, object] = {}

    def find(self, x: object) -> object:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: object, b: object) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _group(times: list[float], bodies: list[str], uf: UnionFind, kind: str) -> list[Story]:
    groups: dict[object, list[int]] = {}
    for i in range(len(bodies)):
        groups.setdefault(uf.find(("line", i)), []).append(i)
    stories = []
    for idx in groups.values():
        t0 = times[idx[0]]
        stories.append(Story(kind, [(times[i] - t0, templatize(bodies[i])) for i in idx]))
    return stories


# --- Postfix ---------------------------------------------------------------------------------

PF_LINE = re.compile(r"^(\S+) (\S+ (\S+?)\[(\d+)\]: (.*))$")
PF_QID = re.compile(r"([0-9A-F]{6,12}): ")
PF_NDN = re.compile(r"notification: ([0-9A-F]{6,12})$")
# The sample's sink on 127.0.0.1:40026 played every remote MX; in the big log they are remote.
PF_SINK = re.compile(r"127\.0\.0\.1\[127\.0\.0\.1\]")
REMOTE_MX = "mx.remote.example.net[127.0.8.1]"


def _rfc3339(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def postfix_stories(path: Path) -> list[Story]:
    times: list[float] = []
    bodies: list[str] = []
    uf = UnionFind()
    session: dict[tuple[str, str], int] = {}  # (prog, pid) -> session number
    pending: dict[tuple[str, str], list[int]] = {}  # qid-less client lines waiting for their qid
    nsess = 0
    for raw in path.read_text().splitlines():
        m = PF_LINE.match(raw)
        if not m or m[3] in ("postfix/master", "postfix/postfix-script"):
            continue
        i = len(bodies)
        times.append(_rfc3339(m[1]))
        bodies.append(PF_SINK.sub(REMOTE_MX, m[2]).replace(f"{REMOTE_MX}:40026", f"{REMOTE_MX}:25"))
        node = ("line", i)
        uf.find(node)
        key = (m[3], m[4])
        msg = m[5]
        q = PF_QID.match(msg)
        if q:
            uf.union(node, ("qid", q[1]))
            for j in pending.pop(key, []):
                uf.union(node, ("line", j))
        n = PF_NDN.search(msg)
        if n:
            uf.union(node, ("qid", n[1]))
        if msg.startswith("connect from "):
            nsess += 1
            session[key] = nsess
        if key in session:
            uf.union(node, ("sess", session[key]))
            if msg.startswith("disconnect from "):
                del session[key]
        elif not q and not n:
            pending.setdefault(key, []).append(i)
    return _group(times, bodies, uf, "sample")


# Story types the Postfix sample has no source for, in the programs' real formats.
# "+seconds body" lines; the body goes through the same placeholder rules.
POSTFIX_EXTRA: dict[str, tuple[float, list[str]]] = {
    # kind: (share of all lines, story lines)
    "postscreen_reject": (
        0.025,
        [
            "+0 mx1 postfix/postscreen[2301]: CONNECT from [127.0.9.77]:51234 to [127.0.0.1]:25",
            "+0.02 mx1 postfix/dnsblog[2302]: addr 127.0.9.77 listed by domain zen.spamhaus.org as 127.0.0.2",
            "+0.03 mx1 postfix/dnsblog[2303]: addr 127.0.9.77 listed by domain b.barracudacentral.org as 127.0.0.2",
            "+6.0 mx1 postfix/postscreen[2301]: DNSBL rank 6 for [127.0.9.77]:51234",
            "+6.3 mx1 postfix/postscreen[2301]: NOQUEUE: reject: RCPT from [127.0.9.77]:51234: 550 5.7.1 "
            "Service unavailable; client [127.0.9.77] blocked using zen.spamhaus.org; "
            "from=<ana.spam@bulk.example.net>, to=<info@example.com>, proto=ESMTP, helo=<mail.bulk.example.net>",
            "+6.5 mx1 postfix/postscreen[2301]: DISCONNECT [127.0.9.77]:51234",
        ],
    ),
    "postscreen_pass": (
        0.02,
        [
            "+0 mx1 postfix/postscreen[2301]: CONNECT from [127.0.9.78]:40022 to [127.0.0.1]:25",
            "+0.1 mx1 postfix/postscreen[2301]: PASS OLD [127.0.9.78]:40022",
            "+0.2 mx1 postfix/smtpd[2310]: connect from mail2.partner.example.net[127.0.9.78]",
            "+0.4 mx1 postfix/smtpd[2310]: NOQUEUE: reject: RCPT from mail2.partner.example.net[127.0.9.78]: "
            "551 5.1.1 <old.user@example.com>: Recipient address rejected: User not local; "
            "please try <old.user@new.partner.example.net>; from=<lars.ek@partner.example.net> "
            "to=<old.user@example.com> proto=ESMTP helo=<mail2.partner.example.net>",
            "+0.5 mx1 postfix/smtpd[2310]: disconnect from mail2.partner.example.net[127.0.9.78] "
            "ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4",
        ],
    ),
    "postscreen_hangup": (
        0.01,
        [
            "+0 mx1 postfix/postscreen[2301]: CONNECT from [127.0.9.79]:60311 to [127.0.0.1]:25",
            "+0.3 mx1 postfix/postscreen[2301]: PREGREET 11 after 0.3 from [127.0.9.79]:60311: EHLO User\\r\\n",
            "+2.1 mx1 postfix/postscreen[2301]: HANGUP after 2.1 from [127.0.9.79]:60311 in tests after SMTP handshake",
            "+2.1 mx1 postfix/postscreen[2301]: DISCONNECT [127.0.9.79]:60311",
        ],
    ),
    "dovecot": (
        0.05,
        [
            "+0 mx1 dovecot: imap-login: Login: user=<anna.berg@example.com>, method=PLAIN, "
            "rip=127.0.9.80, lip=127.0.0.1, mpid=21733, TLS, session=<kWcM3b8a4N5/AAAB>",
            "+0.4 mx1 dovecot: lmtp(21734): Connect from local",
            "+0.5 mx1 dovecot: lmtp(anna.berg@example.com)<21734><Qm9vdGg0Z2ZqZ2Y>: "
            "msgid=<179594215374.30973.1290@mail1.shop.example.net>: saved mail to INBOX",
            "+0.5 mx1 dovecot: lmtp(21734): Disconnect from local: Client has quit the connection (state=READY)",
            "+95.0 mx1 dovecot: imap(anna.berg@example.com)<21733><kWcM3b8a4N5/AAAB>: Logged out "
            "in=412 out=6871 deleted=0 expunged=0 trashed=0 hdr_count=2 hdr_bytes=1024 body_count=1 body_bytes=2300",
        ],
    ),
    "dovecot_authfail": (
        0.01,
        [
            "+0 mx1 dovecot: auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 "
            "tty=dovecot ruser=admin rhost=127.0.9.81",
            "+2.0 mx1 dovecot: imap-login: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs): "
            "user=<admin>, method=PLAIN, rip=127.0.9.81, lip=127.0.0.1, TLS, session=<x9a0b8c1d2e3f4A5>",
        ],
    ),
    "opendkim": (
        0.03,
        [
            "+0 mx1 postfix/smtpd[2320]: connect from mail7.shop.example.net[127.0.9.82]",
            "+0.2 mx1 postfix/smtpd[2320]: 4F04620C7A1: client=mail7.shop.example.net[127.0.9.82]",
            "+0.3 mx1 postfix/cleanup[2321]: 4F04620C7A1: message-id=<179594215732.30973.1267@mail7.shop.example.net>",
            "+0.3 mx1 opendkim[812]: 4F04620C7A1: mail7.shop.example.net [127.0.9.82] not internal",
            "+0.3 mx1 opendkim[812]: 4F04620C7A1: DKIM verification successful",
            "+0.3 mx1 opendkim[812]: 4F04620C7A1: s=sel2026 d=shop.example.net SSL",
            "+0.4 mx1 postfix/qmgr[2322]: 4F04620C7A1: from=<orders@shop.example.net>, size=8841, nrcpt=1 (queue active)",
            "+0.4 mx1 postfix/smtpd[2320]: disconnect from mail7.shop.example.net[127.0.9.82] "
            "ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7",
            "+0.6 mx1 postfix/lmtp[2323]: 4F04620C7A1: to=<anna.berg@example.com>, relay=mx1.example.com"
            "[private/dovecot-lmtp], delay=0.35, delays=0.25/0.01/0.02/0.07, dsn=2.0.0, status=sent "
            "(250 2.0.0 <anna.berg@example.com> Qm9vdGg0Z2ZqZ2Y Saved)",
            "+0.6 mx1 postfix/qmgr[2322]: 4F04620C7A1: removed",
        ],
    ),
}

# --- Exim ------------------------------------------------------------------------------------

EX_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)$")
EX_ID = re.compile(r"^([0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}) ")
EX_SINK = re.compile(r"(T=remote_smtp\w* (?:defer \(-?\d+\) )?)H=127\.0\.0\.1 \[127\.0\.0\.1\]")
EX_PARENT = re.compile(r" R=([0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}) ")


def exim_stories(path: Path) -> list[Story]:
    times: list[float] = []
    bodies: list[str] = []
    uf = UnionFind()
    for raw in path.read_text().splitlines():
        m = EX_LINE.match(raw)
        if not m or " daemon started" in m[2]:
            continue
        i = len(bodies)
        times.append(datetime.fromisoformat(m[1]).replace(tzinfo=UTC).timestamp())
        bodies.append(EX_SINK.sub(r"\1H=mx.remote.example.net [127.0.8.1]", m[2]))
        node = ("line", i)
        uf.find(node)
        q = EX_ID.match(m[2])
        if q:
            uf.union(node, ("id", q[1]))
        p = EX_PARENT.search(m[2])
        if p:
            uf.union(node, ("id", p[1]))
    return _group(times, bodies, uf, "sample")


EXIM_EXTRA: dict[str, tuple[float, list[str]]] = {
    "conn_lost": (
        0.04,
        ["+0 SMTP connection from (mail3.shop.example.net) [127.0.9.100]:50322 lost D=0.023s"],
    ),
    "no_mail": (
        0.04,
        [
            "+0 no MAIL in SMTP connection from (mail4.bulk.example.net) [127.0.9.101]:50411 D=5s "
            "C=EHLO,STARTTLS,EHLO,QUIT"
        ],
    ),
    "tls_error": (
        0.01,
        [
            "+0 TLS error on connection from (User) [127.0.9.102]:52100 (SSL_accept): "
            "error:0A000126:SSL routines::unexpected eof while reading",
        ],
    ),
    "sync_error": (
        0.01,
        [
            "+0 SMTP protocol synchronization error (input sent without waiting for greeting): "
            "rejected connection from H=[127.0.9.103]:40212 input=\"EHLO User\\r\\n\"",
        ],
    ),
    "unexpected_disc": (
        0.01,
        [
            "+0 unexpected disconnection while reading SMTP command from (mail5.mail.example.net) "
            "[127.0.9.104]:49122 D=10s",
        ],
    ),
}

# --- MailEnable ------------------------------------------------------------------------------


def _me_time(s: str) -> float:
    return datetime.strptime(s, "%m/%d/%y %H:%M:%S").replace(tzinfo=UTC).timestamp()


def mailenable_stories(path: Path) -> list[Story]:
    times: list[float] = []
    bodies: list[str] = []
    uf = UnionFind()
    open_sess: dict[tuple[str, str], int] = {}
    nsess = 0
    with path.open(newline="") as fh:
        for raw in fh:
            row = raw.rstrip("\r\n")
            if row.startswith("[") or "\t" not in row:
                continue  # LOG FILE STARTED/CLOSED markers: written once by the generator
            ts, rest = row.split("\t", 1)
            cols = row.split("\t")
            i = len(bodies)
            times.append(_me_time(ts))
            bodies.append(rest)
            node = ("line", i)
            uf.find(node)
            key = (cols[1], cols[3])
            if key not in open_sess or cols[5] in ("", "CONN"):
                nsess += 1
                open_sess[key] = nsess
            uf.union(node, ("sess", open_sess[key]))
            if cols[5] == "QUIT":
                del open_sess[key]
    return _group(times, bodies, uf, "sample")


def _extra(spec: dict[str, tuple[float, list[str]]]) -> list[tuple[Story, float]]:
    out = []
    for kind, (share, lines) in spec.items():
        parsed = []
        for ln in lines:
            off, body = ln.split(" ", 1)
            parsed.append((float(off), templatize(body)))
        out.append((Story(kind, parsed), share))
    return out


# ---------------------------------------------------------------------------------------------
# Rendering


FIRST = ["anna", "ben", "carla", "dmitri", "elif", "farid", "greta", "hugo", "ines", "jonas", "kemal", "lena", "marco", "nadia", "oskar", "petra", "rosa", "sven", "tanja", "ugo", "vera", "wim", "xenia", "yusuf", "zoe", "aiko", "bram", "chloe", "diego", "emre", "fatima", "gustav", "hana", "ivan", "julia", "karim", "lucia", "mateo", "nora", "omar", "pia", "quentin", "rania", "sami", "tomas", "una", "viktor", "wei", "yara"]
LAST = ["adler", "berg", "costa", "dahl", "eriksen", "fischer", "garcia", "haas", "ivanova", "jensen", "keller", "lang", "meyer", "novak", "olsen", "peters", "quinn", "roth", "schulz", "tan", "vogel", "weber", "yilmaz", "zimmer", "alvarez", "bianchi", "chen", "dubois", "evans", "fontaine", "gomez", "horvat", "ito", "jovanovic", "kowalski", "lindqvist", "moreau", "nakamura", "ortiz"]
ROLES = ["info", "sales", "support", "office", "billing", "noreply", "postmaster", "newsletter", "hr", "jobs", "abuse"]
SYLL = ["ka", "lo", "mi", "ra", "ne", "to", "vi", "su", "pe", "da", "ri", "no", "la", "ze", "mo", "ku", "fi", "sa", "te", "bo", "gu", "na", "li", "ro", "he"]
TLDS = ["example.com", "example.net", "example.org", "test"]
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _zipf_cum(n: int, s: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (k**s) for k in range(1, n + 1)))


def _b62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(B62[r])
    return "".join(reversed(out))


@dataclass
class Pools:
    rng: random.Random
    domains: list[str]
    dom_cum: list[float]
    ips: list[str]
    ip_cum: list[float]
    people: list[str]
    people_cum: list[float]

    @classmethod
    def make(cls, rng: random.Random, ndomains: int) -> Pools:
        domains: list[str] = []
        seen: set[str] = set()
        while len(domains) < ndomains:
            name = "".join(rng.choice(SYLL) for _ in range(rng.randint(2, 4)))
            if rng.random() < 0.3:
                name += str(rng.randint(1, 99))
            d = f"{name}.{rng.choice(TLDS)}"
            if d not in seen and d not in OWN_DOMAINS:
                seen.add(d)
                domains.append(d)
        ips = [
            f"{rng.choice((10, 100, 172, 185, 192, 198, 203))}.{rng.randint(0, 255)}."
            f"{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            for _ in range(50_000)
        ]
        people = [f"{f}.{la}" for f in FIRST for la in LAST] + ROLES
        rng.shuffle(people)
        return cls(
            rng,
            domains,
            _zipf_cum(len(domains), 1.07),
            ips,
            _zipf_cum(len(ips), 0.9),
            people,
            _zipf_cum(len(people), 0.8),
        )

    def pick(self, items: list[str], cum: list[float]) -> str:
        return items[bisect(cum, self.rng.random() * cum[-1])]


@dataclass
class Renderer:
    mta: str
    pools: Pools
    pids: dict[str, str] = field(default_factory=dict)
    stories_done: int = 0

    def instance_values(self, t: float) -> Callable[[str, str, float], str]:
        rng = self.pools.rng
        cache: dict[tuple[str, str], str] = {}
        pools = self.pools
        seq = itertools.count()

        def value(kind: str, orig: str, when: float) -> str:
            if kind in ("pfdate", "mets"):
                return _stamp(kind, when)
            key = (kind, orig)
            got = cache.get(key)
            if got is not None:
                return got
            if kind == "pid":  # worker processes are reused for a while, then replaced
                got = self.pids.get(orig)
                if got is None:
                    got = self.pids[orig] = str(rng.randint(1000, 4_000_000))
                return got
            if kind == "qid":
                got = "".join(rng.choice("0123456789ABCDEF") for _ in range(len(orig)))
            elif kind == "meid":
                got = f"{rng.getrandbits(128):032X}"
            elif kind == "exid":  # Exim 4.96: base62 time, pid, sub-second
                got = f"{_b62(int(t), 6)}-{_b62(rng.randint(1000, 4_000_000), 6)}-{_b62(next(seq) + rng.randint(0, 3000), 2)}"
            elif kind == "local":
                if orig[0].isdigit():  # numeric message-id left-hand side
                    got = re.sub(r"\d", lambda _m: str(rng.randint(0, 9)), orig)
                elif rng.random() < 0.1:
                    got = pools.pick(pools.people, pools.people_cum) + str(rng.randint(1, 99))
                else:
                    got = pools.pick(pools.people, pools.people_cum)
            elif kind == "dom":
                got = pools.pick(pools.domains, pools.dom_cum)
            elif kind == "host":
                first = orig.split(".", 1)[0]
                got = f"{first}.{pools.pick(pools.domains, pools.dom_cum)}"
            elif kind == "ip":
                got = pools.pick(pools.ips, pools.ip_cum)
            elif kind == "port":
                got = "25" if orig == "25" else str(rng.randint(1024, 65535))
            else:
                got = orig
            cache[key] = got
            return got

        return value

    def refresh_pids(self) -> None:
        self.stories_done += 1
        if self.stories_done % 400 == 0:
            self.pids.clear()


_STAMP_CACHE: dict[tuple[str, int], str] = {}


def _stamp(kind: str, when: float) -> str:
    sec = int(when)
    key = (kind, sec)
    got = _STAMP_CACHE.get(key)
    if got is None:
        if len(_STAMP_CACHE) > 4096:
            _STAMP_CACHE.clear()
        dt = datetime.fromtimestamp(sec, UTC)
        fmt = {
            "pfdate": "%Y%m%d%H%M%S",
            "mets": "%m/%d/%y %H:%M:%S",
            "postfix": "%Y-%m-%dT%H:%M:%S",
            "exim": "%Y-%m-%d %H:%M:%S",
            "mailenable": "%m/%d/%y %H:%M:%S",
        }[kind]
        got = _STAMP_CACHE[key] = dt.strftime(fmt)
    return got


def line_stamp(mta: str, when: float) -> str:
    if mta == "postfix":
        return f"{_stamp('postfix', when)}.{int((when % 1) * 1e6):06d}+00:00 "
    return _stamp(mta, when) + ("\t" if mta == "mailenable" else " ")


def arrivals(rng: random.Random, n_per_day: float) -> Iterator[float]:
    """Poisson arrivals with a day/night cycle (peak mid-afternoon, trough at night)."""
    peak = 1.8 * n_per_day / 86400.0
    t = START
    while True:  # runs until the caller has its lines; the span is ~`hours`
        t += rng.expovariate(peak)
        hour = ((t - START) / 3600.0) % 24
        rate = 1.0 + 0.8 * math.sin((hour - 9.0) / 24.0 * 2 * math.pi)
        if rng.random() * 1.8 < rate:
            yield t


def generate(mta: str, size: int, out: Path, seed: int, hours: float, ndomains: int) -> dict[str, object]:
    rng = random.Random(f"{seed}-{mta}")
    sample = {"postfix": postfix_stories, "exim": exim_stories, "mailenable": mailenable_stories}[mta](
        SAMPLES[mta]
    )
    extra = _extra({"postfix": POSTFIX_EXTRA, "exim": EXIM_EXTRA, "mailenable": {}}[mta])
    # Pick probability per story so that each extra kind gets its share of *lines*.
    extra_share = sum(s for _, s in extra)
    sample_lines = sum(len(s.lines) for s in sample)
    weights = [(1.0 - extra_share) / sample_lines for _ in sample]  # each sample line equal
    stories = list(sample)
    for st, share in extra:
        stories.append(st)
        weights.append(share / len(st.lines))
    cum = list(itertools.accumulate(weights))
    mean_lines = sum(w * len(s.lines) for s, w in zip(stories, weights, strict=True)) / cum[-1]
    per_day = size / mean_lines / (hours / 24.0)

    pools = Pools.make(rng, ndomains)
    renderer = Renderer(mta, pools)
    heap: list[tuple[float, int, str]] = []
    tie = itertools.count()
    kinds: dict[str, int] = {}
    written = 0
    eol = "\r\n" if mta == "mailenable" else "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    first_t = last_t = 0.0
    with tmp.open("w", newline="", buffering=1 << 20) as fh:
        if mta == "mailenable":
            fh.write(f"[{_stamp('mailenable', START)}]****************** LOG FILE STARTED *******************\r\n")
            written += 1
        for t in arrivals(rng, per_day):
            # Everything that happened before this story starts can be written now.
            while heap and heap[0][0] <= t and written < size:
                when, _, text = heapq.heappop(heap)
                fh.write(line_stamp(mta, when) + text + eol)
                written += 1
                last_t = when
                first_t = first_t or when
            if written >= size:
                break
            story = stories[bisect(cum, rng.random() * cum[-1])]
            kinds[story.kind] = kinds.get(story.kind, 0) + len(story.lines)
            value = renderer.instance_values(t)
            renderer.refresh_pids()
            for off, parts in story.lines:
                when = t + off
                text = "".join(p if isinstance(p, str) else value(p[0], p[1], when) for p in parts)
                heapq.heappush(heap, (when, next(tie), text))
    tmp.replace(out)
    info: dict[str, object] = {
        "mta": mta,
        "lines": written,
        "bytes": out.stat().st_size,
        "seed": seed,
        "first": datetime.fromtimestamp(first_t, UTC).isoformat(),
        "last": datetime.fromtimestamp(last_t, UTC).isoformat(),
        "sample_stories": len(sample),
        "story_lines_started_by_kind": kinds,
        "domains": ndomains,
    }
    out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use e.g. 1M, 500k, 10M, 250000")
    mult = {"": 1, "k": 1_000, "m": 1_000_000}[m[2].lower()]
    return int(float(m[1]) * mult)


def size_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def data_path(mta: str, size: int, out: Path = DATA) -> Path:
    return out / f"{mta}-{size_label(size)}.log"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mta", choices=("postfix", "exim", "mailenable", "all"), default="all")
    ap.add_argument("--size", type=parse_size, default=1_000_000, help="lines per file (1M, 10M, 500k)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--hours", type=float, default=36.0, help="time span of the log (default 36)")
    ap.add_argument("--domains", type=int, default=5000, help="remote domains (Zipf-distributed)")
    ap.add_argument("--out", type=Path, default=DATA)
    ap.add_argument("--force", action="store_true", help="regenerate even if the file exists")
    args = ap.parse_args()
    for mta in ("postfix", "exim", "mailenable") if args.mta == "all" else (args.mta,):
        path = data_path(mta, args.size, args.out)
        if path.exists() and path.with_suffix(".json").exists() and not args.force:
            print(f"{path}: exists (use --force to regenerate)")
            continue
        t = time.monotonic()
        info = generate(mta, args.size, path, args.seed, args.hours, args.domains)
        print(
            f"{path}: {info['lines']:,} lines, {int(str(info['bytes'])) / 1e6:.0f} MB, "
            f"{info['first']} .. {info['last']}, {time.monotonic() - t:.0f} s"
        )


if __name__ == "__main__":
    main()
