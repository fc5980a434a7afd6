"""Seeded traffic plans shared by the Postfix and Exim generators.

Everything here is neutral: our domain is example.com, remote domains are example.net /
example.org and their subdomains, and names are drawn from a small list.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

FIRST = ["anna", "ben", "carla", "dmitri", "elif", "farid", "greta", "hugo", "ines", "jonas", "kemal",
         "lena", "marco", "nadia", "oskar", "petra", "quentin", "rosa", "sven", "tanja", "ugo", "vera",
         "wim", "xenia", "yusuf", "zoe"]
LAST = ["adler", "berg", "costa", "dahl", "eriksen", "fischer", "garcia", "haas", "ivanova", "jensen",
        "keller", "lang", "meyer", "novak", "olsen", "peters", "quinn", "roth", "schulz", "tan",
        "unger", "vogel", "weber", "yilmaz", "zimmer"]
REMOTE_DOMAINS = ["example.net", "example.org", "mail.example.net", "corp.example.org", "shop.example.net",
                  "lists.example.org", "uni.example.net", "partner.example.org"]
LOCAL_DOMAIN = "example.com"
LOCAL_USERS = ["anna.adler", "ben.berg", "carla.costa", "info", "sales", "support", "billing",
               "hugo.haas", "ines.ivanova", "jonas.jensen", "office", "noc"]
# Valid local users whose internal mailbox store refuses or defers (rules of the sink).
LOCAL_USERS_WITH_RULES = {"old.account": "user-not-local", "moved.user": "user-not-local",
                          "quota.full": "full", "store.busy": "busy"}
SUBJECTS = ["Invoice 2026-{n:04d}", "Re: meeting on Thursday", "Weekly report #{n}", "Order {n} shipped",
            "Fwd: contract draft", "Your ticket {n} was updated", "Lunch?", "Re: Re: budget {n}",
            "Newsletter November", "Password change notice", "Quarterly numbers", "Re: question about {n}"]

# Behaviour of remote recipients of outbound mail (sink rule names, "" = accept) and weights.
OUTBOUND_RULES: list[tuple[str, int]] = [
    ("", 60), ("user-not-local", 9), ("not-our-customer", 3), ("unknown", 6), ("disabled", 2),
    ("full", 3), ("bad-name", 2), ("policy", 3), ("busy", 3), ("tempfail", 2), ("over-quota-soft", 2),
    ("spam", 2), ("too-big", 1), ("eod-tempfail", 2),
]


@dataclass
class Plan:
    rng: random.Random
    rules: dict[str, str] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def person(self) -> str:
        return f"{self.rng.choice(FIRST)}.{self.rng.choice(LAST)}"

    def remote_address(self, rule: str) -> str:
        """A fresh remote address; its sink rule is recorded."""
        while True:
            local = self.person()
            if self.rng.random() < 0.3:
                local += str(self.rng.randint(1, 99))
            addr = f"{local}@{self.rng.choice(REMOTE_DOMAINS)}"
            if addr not in self.used:
                self.used.add(addr)
                if rule:
                    self.rules[addr] = rule
                return addr

    def outbound_rule(self) -> str:
        names = [r for r, _ in OUTBOUND_RULES]
        weights = [w for _, w in OUTBOUND_RULES]
        return self.rng.choices(names, weights)[0]

    def local_user(self) -> str:
        return f"{self.rng.choice(LOCAL_USERS)}@{LOCAL_DOMAIN}"

    def subject(self) -> str:
        return self.rng.choice(SUBJECTS).format(n=self.rng.randint(1, 9999))

    def body(self) -> str:
        words = ["please", "find", "attached", "the", "numbers", "we", "discussed", "thanks", "regards",
                 "see", "below", "for", "details", "and", "let", "me", "know"]
        lines = [" ".join(self.rng.choices(words, k=self.rng.randint(5, 12)))
                 for _ in range(self.rng.randint(2, 30))]
        return "\n".join(lines) + "\n"

    def outbound_message(self, sid: str, max_rcpts: int = 3) -> dict[str, Any]:
        n = self.rng.choices([1, 2, 3], [70, 20, 10])[0]
        rcpts = [self.remote_address(self.outbound_rule()) for _ in range(min(n, max_rcpts))]
        return {"id": sid, "kind": "outbound", "source": "127.0.0.1", "helo": "workstation.example.com",
                "mail_from": self.local_user(), "rcpts": rcpts, "subject": self.subject(),
                "body": self.body()}


def all_local_users() -> list[str]:
    return [f"{u}@{LOCAL_DOMAIN}" for u in [*LOCAL_USERS, *LOCAL_USERS_WITH_RULES]]


def build_sessions(seed: int, spoofed_senders: list[str], greylist_sources: list[str],
                   auth_password: str = "") -> tuple[Plan, list[dict[str, Any]]]:
    """The seeded session list: outbound submissions over SMTP from 127.0.0.1, a few through
    the MTA's sendmail, and inbound sessions from 127.0.0.N of the kinds below. With an
    `auth_password`, also authenticated submissions from 127.0.0.N (STARTTLS + AUTH PLAIN)
    and password-guessing sessions."""
    p = Plan(random.Random(seed))
    for user, rule in LOCAL_USERS_WITH_RULES.items():
        p.rules[f"{user}@{LOCAL_DOMAIN}"] = rule
    rng = p.rng
    sessions: list[dict[str, Any]] = []
    n = 0

    def sid() -> str:
        nonlocal n
        n += 1
        return f"s{n:03d}"

    def remote_host() -> tuple[str, str]:
        return f"127.0.0.{rng.randint(10, 190)}", f"mail{rng.randint(1, 9)}.{rng.choice(REMOTE_DOMAINS)}"

    for _ in range(95):
        sessions.append(p.outbound_message(sid()))
    # Every sink rule at least once, alone, and one transaction mixing RCPT and end-of-data refusals.
    for rule in sorted({r for r, _ in OUTBOUND_RULES if r}):
        m = p.outbound_message(sid())
        m["rcpts"] = [p.remote_address(rule)]
        sessions.append(m)
    m = p.outbound_message(sid())
    m["rcpts"] = [p.remote_address(r) for r in ("user-not-local", "", "eod-tempfail", "busy")]
    sessions.append(m)
    for i in range(12):
        m = p.outbound_message(sid())
        m["kind"] = "sendmail"
        if i % 3 == 0:
            m["rcpts"] = m["rcpts"][:1]
        sessions.append(m)
    kinds = [("legit", 30), ("unknown-user", 12), ("relay", 8), ("spoof", 6), ("greylist", 5),
             ("bad-helo", 5), ("dictionary", 3), ("mixed", 6)]
    for _ in range(75):
        kind = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        source, helo = remote_host()
        sender = f"{p.person()}@{rng.choice(REMOTE_DOMAINS)}"
        local_ok = all_local_users()
        rcpts: list[str]
        if kind == "legit":
            rcpts = rng.sample(local_ok, rng.choice([1, 1, 1, 2]))
            if rng.random() < 0.15:
                sender = ""
        elif kind == "unknown-user":
            rcpts = [f"{p.person()}@{LOCAL_DOMAIN}"]
        elif kind == "relay":
            rcpts = [f"{p.person()}@{rng.choice(REMOTE_DOMAINS)}"]
        elif kind == "spoof":
            sender = rng.choice(spoofed_senders)
            rcpts = rng.sample(local_ok, 1)
        elif kind == "greylist":
            source = rng.choice(greylist_sources)
            rcpts = rng.sample(local_ok, rng.choice([1, 2]))
        elif kind == "bad-helo":
            helo = rng.choice(["WIN-" + "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", k=11)),
                               "localhost", "User", "desktop-7h2k9q"])
            rcpts = rng.sample(local_ok, 1)
        elif kind == "dictionary":
            rcpts = [f"{w}@{LOCAL_DOMAIN}" for w in rng.sample(
                ["admin", "test", "webmaster", "root", "postmaster1", "contact", "hr", "jobs", "marketing"],
                rng.randint(3, 6))]
        else:  # mixed: one valid, one unknown, in one transaction
            rcpts = [rng.choice(local_ok), f"{p.person()}@{LOCAL_DOMAIN}"]
            rng.shuffle(rcpts)
        sessions.append({"id": sid(), "kind": f"inbound-{kind}", "source": source, "helo": helo,
                         "ehlo": rng.random() < 0.85, "mail_from": sender, "rcpts": rcpts,
                         "subject": p.subject(), "body": p.body()})
    rng.shuffle(sessions)
    if auth_password:
        # From their own generator, inserted at random places: the rest of the plan is unchanged.
        arng = random.Random(seed * 11 + 3)
        extra: list[dict[str, Any]] = []
        for i in range(18):
            m = p.outbound_message(f"a{i + 1:03d}")
            user = m["mail_from"]
            m.update(kind="submission-auth", source=f"127.0.0.{arng.randint(10, 190)}",
                     helo=arng.choice(["laptop.example.com", "[192.168.1.20]", "DESKTOP-4K2J9Q"]),
                     ehlo=True, auth={"user": user, "password": auth_password})
            extra.append(m)
        for burst in range(3):
            source = f"127.0.0.{arng.randint(191, 199)}"
            victim = p.local_user()
            for j in range(arng.randint(2, 5)):
                guess = arng.choice(["123456", "password", "qwerty"])
                extra.append({"id": f"b{burst + 1}{j + 1:02d}", "kind": "inbound-authfail", "source": source,
                              "helo": f"[{source}]", "ehlo": True,
                              "auth": {"user": victim, "password": guess}, "mail_from": victim,
                              "rcpts": [p.remote_address("")], "subject": "", "body": ""})
        for m in extra:
            sessions.insert(arng.randint(0, len(sessions)), m)
    # STARTTLS for about half the SMTP sessions, from its own generator so that the rest of
    # the plan does not depend on it.
    tls_rng = random.Random(seed * 7 + 1)
    for s in sessions:
        s["tls"] = s["kind"] != "sendmail" and tls_rng.random() < 0.5
        if "auth" in s:
            s["tls"] = True  # AUTH is offered only after STARTTLS
    return p, sessions
