"""Make sample_logs/mailenable/: a SYNTHETIC MailEnable 9.76 SMTP-Activity log.

MailEnable runs on Windows only, so no real server made this file. It is written by this
seeded script, row by row, modelled on the structure of a real 9.76 SMTP-Activity log
(12 TAB-separated columns, CRLF, `LOG FILE STARTED/CLOSED` marker rows, `SMTP-IN` and
`SMTP-OU` rows, byte counts = reply/command length + CRLF, a new .MAI id after an accepted
message, the AUTH LOGIN dialogue with its account column, STARTTLS logged twice). All
names and addresses are neutral: example.com/.net/.org domains, 192.0.2.0/24,
198.51.100.0/24 and 203.0.113.0/24 addresses.

Expected counts come from the generator's own record of every reply it wrote
(record.jsonl), not from logscan.

    .venv/bin/python -m sample_logs.tools.gen_mailenable [--seed 976] [--out sample_logs/mailenable]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sample_logs.tools import expected

HOST = "mail.example.com"
VERSION = "9.76--9.76"
LOCAL_DOMAINS = ["example.com", "example.org"]
LOCAL_USERS = ["anna.adler", "ben.berg", "carla.costa", "info", "sales", "office", "dmitri.dahl",
               "elif.eriksen", "hugo.haas"]
REMOTE_DOMAINS = ["example.net", "mail.example.net", "corp.example.net", "shop.example.net",
                  "lists.example.net", "partner.example.net"]
FIRST = ["anna", "ben", "carla", "farid", "greta", "ines", "jonas", "kemal", "lena", "marco",
         "nadia", "oskar", "petra", "rosa", "sven", "vera", "yusuf", "zoe"]
LAST = ["adler", "berg", "costa", "fischer", "garcia", "jensen", "keller", "meyer", "novak",
        "olsen", "peters", "roth", "schulz", "vogel", "weber", "zimmer"]
SUBJECTS = ["Re: Meeting tomorrow", "Invoice {n}", "Order confirmation {n}", "Fwd: photos",
            "Weekly report", "=?UTF-8?B?R3LDvMOfZSBhdXMgV2llbg==?=", "Re: Re: quote {n}",
            "=?UTF-8?Q?Caf=C3=A9_on_Friday?=", "Contract draft v{n}", "Password reset"]

OK_250 = "250 Requested mail action okay, completed"
R354 = "354 Start mail input; end with <CRLF>.<CRLF>"
R221 = "221 Service closing transmission channel"
R221_TLS = "221 Service closing TLS SSL transmission session"
R550_LOCAL = "550 Requested action not taken: mailbox unavailable or not local."
R551_AUTH = "551 This mail server requires authentication before sending mail from a locally hosted domain"
R551_LOGIN = "551 Sender address is not valid for your login"
R530_RELAY = ("530 This mail server requires authentication when attempting to send to a non-local "
              "e-mail address. Please check your mail client settings or contact your administrator "
              "to verify that the domain or address is defined for this server.")
R451_GREY = ("451 This server employs greylisting as a means of reducing spam. Your message has been "
             "delayed and will be accepted later.")
R535 = "535 Invalid Username or Password"
R554_DNSBL = ("554 The IP Address of the sender ({ip}) was found in a DNS blacklist database and was "
              "therefore refused.")
R501_DOMAIN = "501 Sender domain is invalid. Could not find DNS record."
R500 = "500 Syntax error, command unrecognized."
R454 = "454 TLS not available due to temporary reason"

# Remote replies to our outbound deliveries: (stage, reply) by outcome.
OUT_RCPT_FAIL = [
    ("551 5.1.1 <{rcpt}>: User not local; please try <{fwd}>", 8),
    ("551 5.7.1 <{rcpt}>: not our customer", 3),
    ("550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table", 6),
    ("550 5.7.1 <{rcpt}>: Relay access denied", 2),
    ("552 5.2.2 <{rcpt}>: Mailbox full", 3),
    ("553 5.1.3 <{rcpt}>: mailbox name not allowed", 1),
    ("450 4.2.1 <{rcpt}>: Mailbox busy, try again later", 3),
    ("451 4.3.0 <{rcpt}>: Temporary lookup failure", 2),
    ("452 4.2.2 <{rcpt}>: Mailbox over quota", 1),
]
OUT_DATE_FAIL = [
    ("554 5.7.1 Message rejected: content looks like spam", 3),
    ("552 5.3.4 Message size exceeds fixed maximum message size", 1),
    ("451 4.7.1 Please try again later", 2),
]
OUT_CONN_FAIL = [
    ("554 5.7.1 Service unavailable; client [{me}] blocked using a local blocklist", 2),
    ("421 4.7.0 Too many connections from your address, try again later", 1),
]
OUR_IP = "192.0.2.25"


def enhanced_of(reply: str) -> str:
    parts = reply.split(" ", 2)
    if len(parts) > 1 and parts[1][:1] in "245":
        nums = parts[1].split(".")
        if len(nums) == 3 and all(n.isdigit() and 1 <= len(n) <= 3 for n in nums):
            return parts[1]
    return ""


class Writer:
    def __init__(self, rng: random.Random, start: datetime) -> None:
        self.rng = rng
        self.now = start
        self.rows: list[str] = []
        self.record: list[dict[str, Any]] = []
        self.sockets = list(range(1260, 1700, 4))

    def tick(self, lo: float = 0.0, hi: float = 1.2) -> None:
        self.now += timedelta(seconds=self.rng.uniform(lo, hi))

    def stamp(self) -> str:
        return self.now.strftime("%m/%d/%y %H:%M:%S")

    def marker(self, what: str) -> None:
        pad = "*******************" if what == "STARTED" else "********************"
        self.rows.append(f"[{self.stamp()}]****************** LOG FILE {what} {pad}")

    def row(self, direction: str, mai: str, sock: int, ip: str, verb: str, cmd: str, reply: str,
            sent: int | None = None, recv: int | None = None, account: str = "", subject: str = "",
            kind: str = "") -> None:
        """One activity row. Byte counts: IN = reply sent / command received; OU the reverse."""
        if direction == "SMTP-IN":
            s = len(reply) + 2 if sent is None and reply else (sent or 0)
            r = len(cmd) + 2 if recv is None and cmd else (recv or 0)
        else:
            s = len(cmd) + 2 if sent is None and cmd else (sent or 0)
            r = len(reply) + 2 if recv is None and reply else (recv or 0)
        self.rows.append("\t".join([self.stamp(), direction, mai, str(sock), ip, verb, cmd, reply,
                                    str(s), str(r), account, subject]))
        if reply:
            self.record.append({"time": self.stamp(), "direction": "inbound" if direction == "SMTP-IN"
                                else "outbound", "verb": verb, "code": reply[:3],
                                "enhanced": enhanced_of(reply), "kind": kind})

    # ---- helpers

    def mai(self) -> str:
        return "".join(self.rng.choices("0123456789ABCDEF", k=32)) + ".MAI"

    def sock(self) -> int:
        return self.rng.choice(self.sockets)

    def remote_ip(self) -> str:
        net = self.rng.choice(["203.0.113", "198.51.100", "192.0.2"])
        return f"{net}.{self.rng.randint(30, 254)}"

    def person(self, domains: list[str]) -> str:
        return f"{self.rng.choice(FIRST)}.{self.rng.choice(LAST)}@{self.rng.choice(domains)}"

    def local_user(self) -> str:
        return f"{self.rng.choice(LOCAL_USERS)}@{self.rng.choice(LOCAL_DOMAINS)}"

    def banner(self, mai: str, sock: int, ip: str) -> None:
        self.row("SMTP-IN", mai, sock, ip, "", "",
                 f"220 {HOST} ESMTP MailEnable Service, Version: {VERSION} ready at {self.stamp()}",
                 sent=0, recv=0)

    def ehlo(self, mai: str, sock: int, ip: str, helo: str, ext: int = 6, account: str = "") -> None:
        reply = f"250-{HOST} [{ip}], this server offers {ext} extensions"
        full = len(reply) + 2 + {6: 96, 5: 82, 4: 70}[ext]
        self.row("SMTP-IN", mai, sock, ip, "EHLO", f"EHLO {helo}", reply, sent=full, account=account)

    def b64(self, text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    # ---- inbound sessions

    def inbound_delivery(self, kind: str) -> None:
        """A remote server delivers to us: accepted, greylisted, unknown user, DNSBL, bad domain."""
        mai, sock, ip = self.mai(), self.sock(), self.remote_ip()
        helo = f"mail{self.rng.randint(1, 9)}.{self.rng.choice(REMOTE_DOMAINS)}"
        sender = self.person(REMOTE_DOMAINS)
        self.banner(mai, sock, ip)
        self.tick(0, 0.5)
        tls = self.rng.random() < 0.4 and kind == "accept"
        self.ehlo(mai, sock, ip, helo, 5)
        if tls:
            self.row("SMTP-IN", mai, sock, ip, "STARTTLS", "", "", sent=24, recv=10)
            self.row("SMTP-IN", mai, sock, ip, "STARTTLS", "STARTTLS", "", sent=24, recv=10)
            self.tick(0, 1)
            self.ehlo(mai, sock, ip, helo, 4)
        self.tick(0, 0.5)
        if kind == "bad-domain":
            bogus = f"{sender.split('@')[0]}@unresolvable.example"
            self.row("SMTP-IN", mai, sock, ip, "MAIL", f"MAIL FROM:<{bogus}>", R501_DOMAIN, kind="rejected")
            self.row("SMTP-IN", mai, sock, ip, "QUIT", "QUIT", R221)
            return
        self.row("SMTP-IN", mai, sock, ip, "MAIL", f"MAIL FROM:<{sender}>", OK_250)
        rcpts = [self.local_user() for _ in range(self.rng.choice([1, 1, 1, 2]))]
        accepted = 0
        for rcpt in rcpts:
            self.tick(0, 0.3)
            if kind == "greylist":
                self.row("SMTP-IN", mai, sock, ip, "RCPT", f"RCPT TO:<{rcpt}>", R451_GREY, kind="rejected")
                return  # the client drops the connection: no QUIT row
            if kind == "dnsbl":
                self.row("SMTP-IN", mai, sock, ip, "RCPT", f"RCPT TO:<{rcpt}>", R554_DNSBL.format(ip=ip),
                         kind="rejected")
                continue
            if kind == "unknown":
                nobody = f"{self.rng.choice(FIRST)}{self.rng.randint(1, 99)}@{self.rng.choice(LOCAL_DOMAINS)}"
                self.row("SMTP-IN", mai, sock, ip, "RCPT", f"RCPT TO:<{nobody}>", R550_LOCAL, kind="rejected")
                continue
            self.row("SMTP-IN", mai, sock, ip, "RCPT", f"RCPT TO:<{rcpt}>", OK_250)
            accepted += 1
        if accepted:
            self.row("SMTP-IN", mai, sock, ip, "DATA", "DATA", R354, kind="accepted")
            self.tick(0.5, 3)
            mai = self.mai()  # the message is stored; the session goes on under a new id
        self.row("SMTP-IN", mai, sock, ip, "QUIT", "QUIT", R221_TLS if tls else R221)

    def inbound_submission(self, kind: str) -> None:
        """A client of ours: AUTH and send, or a 551 (no auth / wrong sender), or a relay try."""
        mai, sock, ip = self.mai(), self.sock(), self.remote_ip()
        user = self.local_user()
        helo = self.rng.choice(["[10.0.0.23]", "DESKTOP-4K2J9Q", "laptop.example.com", "[192.168.1.20]"])
        self.banner(mai, sock, ip)
        self.tick(0, 0.4)
        self.ehlo(mai, sock, ip, helo, 6)
        account = ""
        if kind in ("send", "wrong-sender"):
            self.row("SMTP-IN", mai, sock, ip, "AUTH", "AUTH LOGIN", "334 VXNlcm5hbWU6")
            account = user
            self.row("SMTP-IN", mai, sock, ip, "AUTH", "{blank}", "334 UGFzc3dvcmQ6",
                     recv=len(self.b64(user)) + 2, account=account)
            self.row("SMTP-IN", mai, sock, ip, "AUTH", "{blank}", "235 Authenticated", recv=18,
                     account=account)
        sender = user
        if kind == "wrong-sender":
            sender = self.local_user()
            while sender == user:
                sender = self.local_user()
        self.tick(0, 0.4)
        if kind in ("no-auth", "wrong-sender"):
            reply = R551_AUTH if kind == "no-auth" else R551_LOGIN
            self.row("SMTP-IN", mai, sock, ip, "MAIL", f"MAIL FROM:<{sender}>", reply, account=account,
                     kind="rejected")
            self.row("SMTP-IN", mai, sock, ip, "QUIT", "QUIT", R221, account=account)
            return
        if kind == "relay":
            self.row("SMTP-IN", mai, sock, ip, "MAIL", f"MAIL FROM:<{self.person(REMOTE_DOMAINS)}>", OK_250)
            rcpt = self.person(REMOTE_DOMAINS)
            self.row("SMTP-IN", mai, sock, ip, "RCPT", f"RCPT TO:<{rcpt}>", R530_RELAY, kind="rejected")
            self.row("SMTP-IN", mai, sock, ip, "QUIT", "QUIT", R221)
            return
        self.row("SMTP-IN", mai, sock, ip, "MAIL", f"MAIL FROM:<{sender}>", OK_250, account=account)
        rcpts = [self.person(REMOTE_DOMAINS) for _ in range(self.rng.choice([1, 1, 2]))]
        for rcpt in rcpts:
            self.row("SMTP-IN", mai, sock, ip, "RCPT", f"RCPT TO:<{rcpt}>", OK_250, account=account)
        self.row("SMTP-IN", mai, sock, ip, "DATA", "DATA", R354, account=account, kind="accepted")
        self.tick(0.5, 2)
        self.row("SMTP-IN", self.mai(), sock, ip, "QUIT", "QUIT", R221, account=account)
        subject = self.rng.choice(SUBJECTS).format(n=self.rng.randint(100, 9999))
        size = self.rng.randint(900, 60000)
        for rcpt in rcpts:  # MailEnable delivers one recipient per outbound connection here
            self.tick(0.3, 2)
            self.outbound(sender, rcpt, account, subject, size)

    def outbound(self, sender: str, rcpt: str, account: str, subject: str, size: int) -> None:
        """One delivery to a remote MX: exactly one outcome row (DATE 2xx, or one 4xx/5xx row)."""
        mai, sock = self.mai(), self.sock()
        ip = f"198.51.100.{self.rng.randint(2, 254)}"
        domain = rcpt.split("@")[1]
        mx = f"mx{self.rng.randint(1, 3)}.{domain}"
        tag = "".join(self.rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=12))

        def ou(verb: str, cmd: str, reply: str, kind: str = "", sent: int | None = None) -> None:
            self.row("SMTP-OU", mai, sock, ip, verb, cmd, reply, sent=sent, account=account,
                     subject=subject, kind=kind)

        roll = self.rng.random()
        if roll < 0.05:
            reply = self.weighted(OUT_CONN_FAIL).format(me=OUR_IP)
            ou("CONN", "", reply, kind="deferred" if reply[0] == "4" else "bounced", sent=0)
            if reply[0] == "5":  # after a 554 greeting the server waits for QUIT; a 421 closes at once
                ou("QUIT", "QUIT", f"221 2.0.0 {mx} closing connection")
            return
        ou("CONN", "", f"220 {mx} ESMTP ready {tag}", sent=0)
        ou("EHLO", f"EHLO {HOST}", f"250-{mx} Hello {HOST} [{OUR_IP}], pleased to meet you")
        ou("MAIL", f"MAIL FROM:<{sender}> SIZE={size}", f"250 2.1.0 Sender <{sender}> OK")
        self.tick(0, 0.3)
        if roll < 0.30:
            local, _, dom = rcpt.partition("@")
            reply = self.weighted(OUT_RCPT_FAIL).format(rcpt=rcpt, fwd=f"{local}@new.{dom}")
            ou("RCPT", f"RCPT TO:<{rcpt}>", reply, kind="deferred" if reply[0] == "4" else "bounced")
            ou("QUIT", "QUIT", f"221 2.0.0 {mx} closing connection")
            return
        ou("RCPT", f"RCPT TO:<{rcpt}>", f"250 2.1.5 Recipient <{rcpt}> OK")
        ou("DATA", "DATA", "354 End data with <CR><LF>.<CR><LF>")
        self.tick(0.2, 2)
        if roll < 0.38:
            reply = self.weighted(OUT_DATE_FAIL)
            ou("DATE", ".", reply, kind="deferred" if reply[0] == "4" else "bounced", sent=size + 5)
        else:
            ou("DATE", ".", f"250 2.0.0 Ok: queued as {tag.upper()[:10]}", kind="sent", sent=size + 5)
        ou("QUIT", "QUIT", f"221 2.0.0 {mx} closing connection")

    def weighted(self, table: list[tuple[str, int]]) -> str:
        return self.rng.choices([t for t, _ in table], [w for _, w in table])[0]

    # ---- noise and attacks

    def brute_force(self) -> None:
        ip = self.remote_ip()
        victim = self.local_user()
        for _ in range(self.rng.randint(3, 8)):
            mai, sock = self.mai(), self.sock()
            self.banner(mai, sock, ip)
            self.ehlo(mai, sock, ip, self.rng.choice(["User", "ylmf-pc", "WIN-CLJ1B0GQ6JP"]), 6)
            self.row("SMTP-IN", mai, sock, ip, "AUTH", "AUTH LOGIN", "334 VXNlcm5hbWU6")
            self.row("SMTP-IN", mai, sock, ip, "AUTH", "{blank}", "334 UGFzc3dvcmQ6",
                     recv=len(self.b64(victim)) + 2, account=victim)
            pw = self.b64(self.rng.choice(["123456", "password", "qwerty1", "letmein", "Summer2026"]))
            self.row("SMTP-IN", mai, sock, ip, "AUTH", pw, R535, account=victim, kind="rejected")
            self.row("SMTP-IN", mai, sock, ip, "QUIT", "QUIT", R221, account=victim)
            self.tick(0.5, 2)

    def denied(self) -> None:
        mai, sock, ip = self.mai(), self.sock(), self.remote_ip()
        self.row("SMTP-IN", mai, sock, ip, "", "",
                 f"530 {HOST} ESMTP MailEnable Service, Version: {VERSION} denied access at {self.stamp()}",
                 sent=0, recv=0, kind="rejected")

    def odd(self) -> None:
        """Rows real logs have: AUTH without EHLO (500), TLS failure (454), a HELO with no reply."""
        mai, sock, ip = self.mai(), self.sock(), self.remote_ip()
        what = self.rng.choice(["auth500", "tls454", "helo-drop", "rset"])
        self.banner(mai, sock, ip)
        if what == "auth500":
            self.row("SMTP-IN", mai, sock, ip, "AUTH", "AUTH LOGIN", R500, kind="rejected")
        elif what == "tls454":
            self.ehlo(mai, sock, ip, f"mta.{self.rng.choice(REMOTE_DOMAINS)}", 5)
            self.row("SMTP-IN", mai, sock, ip, "STARTTLS", "STARTTLS", R454, kind="rejected")
            self.row("SMTP-IN", mai, sock, ip, "QUIT", "QUIT", R221)
        elif what == "helo-drop":
            self.row("SMTP-IN", mai, sock, ip, "HELO", f"HELO {self.rng.choice(REMOTE_DOMAINS)}", "", sent=0)
        else:
            self.ehlo(mai, sock, ip, f"mta.{self.rng.choice(REMOTE_DOMAINS)}", 5)
            self.row("SMTP-IN", mai, sock, ip, "RSET", "RSET", OK_250)
            self.row("SMTP-IN", mai, sock, ip, "QUIT", "QUIT", R221)


def generate(seed: int) -> Writer:
    rng = random.Random(seed)
    w = Writer(rng, datetime(2026, 11, 28, 0, 0, 17))
    w.marker("STARTED")
    kinds: list[tuple[str, int]] = [
        ("in:accept", 30), ("in:greylist", 8), ("in:unknown", 7), ("in:dnsbl", 3), ("in:bad-domain", 2),
        ("sub:send", 40), ("sub:no-auth", 7), ("sub:wrong-sender", 4), ("sub:relay", 3),
        ("brute", 2), ("denied", 6), ("odd", 6),
    ]
    restart_done = False
    for _ in range(190):
        w.now += timedelta(seconds=rng.expovariate(1 / 400))
        if w.now >= datetime(2026, 11, 28, 23, 55):
            break  # the day file ends at midnight
        if not restart_done and w.now.hour >= 13:
            # A service restart: CLOSED and STARTED markers in the same day file.
            w.marker("CLOSED")
            w.now += timedelta(seconds=rng.randint(20, 90))
            w.marker("STARTED")
            restart_done = True
        kind = rng.choices([k for k, _ in kinds], [n for _, n in kinds])[0]
        if kind.startswith("in:"):
            w.inbound_delivery(kind[3:])
        elif kind.startswith("sub:"):
            w.inbound_submission(kind[4:])
        elif kind == "brute":
            w.brute_force()
        elif kind == "denied":
            w.denied()
        else:
            w.odd()
    w.now = max(w.now, datetime(2026, 11, 29, 0, 0, 0)) + timedelta(seconds=rng.randint(5, 40))
    w.marker("CLOSED")
    return w


def derive(record: list[dict[str, Any]], lines: int) -> dict[str, Any]:
    t = expected.Tally()
    for r in record:
        t.reply(r["direction"], r["code"], r["enhanced"])
        if r["direction"] == "inbound" and r["code"][0] in "45":
            t.rejections[r["code"]] += 1
        if r["direction"] == "outbound" and r["kind"] in ("sent", "bounced", "deferred"):
            t.deliveries[r["kind"]] += 1
    return t.result(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=976)
    ap.add_argument("--out", type=Path, default=Path("sample_logs/mailenable"))
    args = ap.parse_args()
    w = generate(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "SMTP-Activity-261128.log"
    log.write_bytes(("\r\n".join(w.rows) + "\r\n").encode("ascii"))
    (args.out / "record.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in w.record))
    result = derive(w.record, expected.count_lines(log))
    expected.write_expected(args.out / "expected.json", result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
