#!/usr/bin/env python3
"""Anonymize a MailEnable SMTP-Activity log, deterministically, keeping what the parser counts.

    python3 scripts/anonymize_mailenable.py ORIGINAL.log OUTPUT.log
    python3 scripts/anonymize_mailenable.py --verify ORIGINAL.log OUTPUT.log

Replaced consistently (the same original always gives the same replacement, so transactions,
repeated clients and per-domain counts keep their shape), in order of first appearance:

- our own mail domain, found as the host in the inbound greeting `220 ***welcome to HOST***`,
  becomes example.com and that host mx.example.com; every other registrable domain becomes
  dN.example.net and host names under a domain hM.<its replacement>;
- host names given as a bare word (`EHLO WIN-8CQ9`) become hostN;
- IPv4 addresses: clients (column 5 of SMTP-IN rows and any address first seen elsewhere)
  192.0.2.x, then 203.0.113.x; servers we deliver to (column 5 of SMTP-OU rows) 198.51.100.x;
  loopback stays;
- the local part of every address becomes uN; subjects become `Subject N`; AUTH data other
  than the mechanism and MailEnable's own `{blank}` becomes the base64 of a made-up word.

Left as they are: times, agents, message ids, thread ids, verbs, byte counts, reply codes and
the server's wording, the block markers and the final ^Z; line endings and everything else
byte for byte. `--verify` checks that no address, domain, host name or IP of the original is
left in the output, and prints the tokens the two files share (all should be protocol words,
numbers, ids and times) for a person to read.
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
from collections.abc import Iterator
from pathlib import Path

EMAIL = re.compile(r"([^\s<>@,;:\"\[\]()]+)@([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+)")
DOMAIN = re.compile(r"(?<![\w.@-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}(?![\w-])")
IPV4 = re.compile(r"(?<![\w.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![\w.])")
# One pass over a text column: an address, else a domain, else an IP.
TOKEN = re.compile(f"{EMAIL.pattern}|({DOMAIN.pattern})|({IPV4.pattern})")
REPLY_CODE = re.compile(r"[0-9]{3}[ -]")
WELCOME = re.compile(r"220 \*\*\*welcome to ([A-Za-z0-9.-]+)\*\*\*")
BARE_HOST = re.compile(r"(EHLO|HELO) ([A-Za-z0-9_-]+)\Z", re.IGNORECASE)
AUTH_KEEP = {"{blank}", "AUTH", "LOGIN", "PLAIN", "CRAM-MD5", "XOAUTH2", "*"}
KEEP_HOSTS = {"localhost", "localhost.localdomain"}
# Second-level labels under a country code that are public suffixes (com.br, co.uk, net.id).
# Labels of domains that are also ordinary words in replies ("Requested mail action").
GENERIC_LABELS = {"mail", "email", "smtp", "post", "info", "server", "service", "local"}
CC_SECOND = {
    "ac",
    "co",
    "com",
    "edu",
    "go",
    "gob",
    "gov",
    "ltd",
    "mil",
    "ne",
    "net",
    "or",
    "org",
    "plc",
    "sch",
}
# Columns (0-based) of a row: 4 the IP, 6 the command, 7 the reply, 10 the account, 11 the subject.
COL_IP, COL_VERB, COL_COMMAND, COL_REPLY, COL_ACCOUNT, COL_SUBJECT = 4, 5, 6, 7, 10, 11


def registrable(host: str) -> str:
    labels = host.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in CC_SECOND:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def distinctive_labels(lines: list[str]) -> set[str]:
    """The name part of every registrable domain ("earthlink" of earthlink.net), lower-cased:
    replies also use it as a word ("ESMTP EarthLink SMTP Server")."""
    labels = set()
    for cols in rows(lines):
        for value in text_columns(cols):
            for m in TOKEN.finditer(value):
                host = m.group(2) or m.group(3)
                if host and host.lower() not in KEEP_HOSTS:
                    labels.add(registrable(host.lower()).split(".")[0])
    return {label for label in labels if len(label) >= 4 and label not in GENERIC_LABELS}


def pool(*prefixes: str) -> Iterator[str]:
    for prefix in prefixes:
        for n in range(1, 255):
            yield f"{prefix}.{n}"


class Anonymizer:
    def __init__(self, ours: str, labels: set[str]) -> None:
        self.our_host = ours.lower()
        # Whole words only, and only outside what TOKEN already replaced (no dot beside them).
        self.labels = (
            re.compile(
                r"(?<![\w.-])("
                + "|".join(sorted(map(re.escape, labels), key=len, reverse=True))
                + r")(?![\w.-])",
                re.IGNORECASE,
            )
            if labels
            else None
        )
        self.our_domain = registrable(self.our_host)
        self.domains: dict[str, str] = {self.our_domain: "example.com"}
        self.hosts: dict[str, str] = {self.our_host: "mx.example.com"}
        self.host_counts: dict[str, int] = {}
        self.bare: dict[str, str] = {}
        self.locals: dict[str, str] = {}
        self.subjects: dict[str, str] = {}
        self.secrets: dict[str, str] = {}
        self.ips: dict[str, str] = {}
        self.clients = pool("192.0.2", "203.0.113")
        self.servers = pool("198.51.100")

    def host(self, name: str) -> str:
        key = name.lower().rstrip(".")
        if key in KEEP_HOSTS:
            return key
        if key not in self.hosts:
            reg = registrable(key)
            if reg not in self.domains:
                self.domains[reg] = f"d{len(self.domains)}.example.net"
            if key == reg:
                self.hosts[key] = self.domains[reg]
            else:
                n = self.host_counts[reg] = self.host_counts.get(reg, 0) + 1
                self.hosts[key] = f"h{n}.{self.domains[reg]}"
        return self.hosts[key]

    def ip(self, address: str, *, server: bool = False) -> str:
        if address.startswith("127."):
            return address
        if address not in self.ips:
            try:
                self.ips[address] = next(self.servers if server else self.clients)
            except StopIteration:
                raise SystemExit("more distinct IPs than the documentation ranges hold") from None
        return self.ips[address]

    def local(self, part: str) -> str:
        return self.locals.setdefault(part, f"u{len(self.locals) + 1}")

    def _token(self, m: re.Match[str]) -> str:
        local, domain, name, address = m.group(1), m.group(2), m.group(3), m.group(4)
        if local is not None:
            return f"{self.local(local)}@{self.host(domain)}"
        if name is not None:
            return self.host(name)
        return self.ip(address)

    def text(self, value: str) -> str:
        value = TOKEN.sub(self._token, value)
        return self.labels.sub(self._label, value) if self.labels else value

    def _label(self, m: re.Match[str]) -> str:
        """A domain's name as a word: the first label of that domain's replacement ("d12")."""
        word = m.group(1).lower()
        for reg, replacement in self.domains.items():
            if reg.split(".")[0] == word:
                return replacement.split(".")[0]
        raise LookupError(f"{word}: a label of no domain seen so far")

    def command(self, verb: str, value: str) -> str:
        if verb.upper() == "AUTH":
            words = value.split(" ")
            return " ".join(w if w.upper() in AUTH_KEEP or not w else self.secret(w) for w in words)
        bare = BARE_HOST.match(value)
        if bare and bare.group(2).lower() not in KEEP_HOSTS:
            name = self.bare.setdefault(bare.group(2), f"host{len(self.bare) + 1}")
            return f"{bare.group(1)} {name}"
        return self.text(value)

    def secret(self, word: str) -> str:
        if word not in self.secrets:
            made_up = f"madeup{len(self.secrets) + 1}".encode()
            self.secrets[word] = base64.b64encode(made_up).decode()
        return self.secrets[word]

    def row(self, cols: list[str]) -> list[str]:
        out = list(cols)
        if len(cols) > COL_IP and IPV4.fullmatch(cols[COL_IP]):
            out[COL_IP] = self.ip(cols[COL_IP], server=cols[1] == "SMTP-OU")
        if len(cols) > COL_COMMAND:
            out[COL_COMMAND] = self.command(cols[COL_VERB], cols[COL_COMMAND])
        if len(cols) > COL_REPLY:
            # The code and its separator ("250-mx.example.com" is no host name) stay as they are.
            code = REPLY_CODE.match(cols[COL_REPLY])
            cut = code.end() if code else 0
            out[COL_REPLY] = cols[COL_REPLY][:cut] + self.text(cols[COL_REPLY][cut:])
        if len(cols) > COL_ACCOUNT:
            out[COL_ACCOUNT] = self.text(cols[COL_ACCOUNT])
        if len(cols) > COL_SUBJECT and cols[COL_SUBJECT]:
            out[COL_SUBJECT] = self.subjects.setdefault(
                cols[COL_SUBJECT], f"Subject {len(self.subjects) + 1}"
            )
        return out


def our_host(lines: list[str]) -> str:
    seen: dict[str, int] = {}
    for line in lines:
        m = WELCOME.search(line)
        if m and "\tSMTP-IN\t" in line:
            seen[m.group(1)] = seen.get(m.group(1), 0) + 1
    if not seen:
        raise SystemExit("no inbound greeting `220 ***welcome to HOST***`: which domain is ours?")
    return max(seen, key=lambda h: seen[h])


def read_lines(path: Path) -> list[str]:
    """Lines with their endings, decoded so that any byte comes back unchanged."""
    return path.read_bytes().decode("utf-8", "surrogateescape").splitlines(keepends=True)


def anonymize(lines: list[str]) -> tuple[list[str], Anonymizer]:
    anon = Anonymizer(our_host(lines), distinctive_labels(lines))
    # Twice: the first pass numbers everything in order of appearance, so that the second
    # knows every domain before a reply names it as a word.
    for _ in range(2):
        out = []
        for line in lines:
            body = line.rstrip("\r\n")
            ending = line[len(body) :]
            cols = body.split("\t")
            out.append("\t".join(anon.row(cols)) + ending if len(cols) > 1 else line)
    return out, anon


def sensitive(lines: list[str]) -> dict[str, set[str]]:
    """What must not survive, by kind: IPs, host and domain names with their distinctive
    labels, local parts, bare EHLO names, subjects, AUTH data."""
    found: dict[str, set[str]] = {
        k: set() for k in ("ip", "host", "label", "local", "bare", "subject", "auth")
    }
    for cols in rows(lines):
        if IPV4.fullmatch(cols[COL_IP]) and not cols[COL_IP].startswith("127."):
            found["ip"].add(cols[COL_IP])
        bare = BARE_HOST.match(cols[COL_COMMAND])
        if bare and bare.group(2).lower() not in KEEP_HOSTS:
            found["bare"].add(bare.group(2).lower())
        if cols[COL_VERB].upper() == "AUTH":
            found["auth"].update(w for w in cols[COL_COMMAND].split(" ") if w and w.upper() not in AUTH_KEEP)
        for value in text_columns(cols):
            for m in TOKEN.finditer(value):
                local, domain, name, address = m.group(1), m.group(2), m.group(3), m.group(4)
                if address and not address.startswith("127."):
                    found["ip"].add(address)
                for host in (domain, name):
                    if host and host.lower() not in KEEP_HOSTS:
                        found["host"].update({host.lower(), registrable(host.lower())})
                if local:
                    found["local"].add(local.lower())
        if len(cols) > COL_SUBJECT and cols[COL_SUBJECT]:
            found["subject"].add(cols[COL_SUBJECT].lower())
    found["label"] = distinctive_labels(lines)
    return found


def text_columns(cols: list[str]) -> list[str]:
    """Command, reply without its code, account: where addresses, hosts and IPs are written."""
    reply = cols[COL_REPLY] if len(cols) > COL_REPLY else ""
    code = REPLY_CODE.match(reply)
    return [
        cols[COL_COMMAND],
        reply[code.end() if code else 0 :],
        cols[COL_ACCOUNT] if len(cols) > COL_ACCOUNT else "",
    ]


def rows(lines: list[str]) -> Iterator[list[str]]:
    for line in lines:
        cols = line.rstrip("\r\n").split("\t")
        if len(cols) > COL_COMMAND:
            yield cols


WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+=-]*[A-Za-z0-9=]|[A-Za-z0-9]")


def verify(original: Path, output: Path) -> int:
    before, after = read_lines(original), read_lines(output)
    problems = []
    if len(before) != len(after):
        problems.append(f"{len(before)} lines in, {len(after)} out")
    text = "".join(after).lower()
    words = set(WORD.findall(text)) | set(re.findall(r"[a-z0-9]+", text))
    left: dict[str, set[str]] = {"ip": set(IPV4.findall(text)), "host": set(DOMAIN.findall(text)),
                                 "label": words, "local": set(), "bare": set(), "subject": set()}  # fmt: skip
    for cols in rows(after):
        left["local"].update(m.group(1).lower() for m in EMAIL.finditer("\t".join(cols[COL_COMMAND:])))
        bare = BARE_HOST.match(cols[COL_COMMAND])
        if bare:
            left["bare"].add(bare.group(2).lower())
        if len(cols) > COL_SUBJECT:
            left["subject"].add(cols[COL_SUBJECT].lower())
    for kind, secrets in sorted(sensitive(before).items()):
        for secret in sorted(secrets):
            # Hosts, IPs and AUTH data nowhere, not even inside a longer word; a local part
            # ("later"), a bare EHLO name ("hostname") or a subject not in its own place.
            anywhere = kind in ("ip", "host", "auth") and len(secret) >= 6 and secret in text
            if anywhere or secret in left.get(kind, set()):
                problems.append(f"{kind} left in the output: {secret!r}")
    shared = set(WORD.findall("".join(before).lower())) & set(WORD.findall(text))
    boring = re.compile(r"[0-9a-f]{32}\.mai|[0-9.:/-]+|[0-9]+[a-z]?|size=[0-9]+")
    print("tokens in both files (numbers, times, sizes and message ids left out):")
    print(" ".join(sorted(w for w in shared if not boring.fullmatch(w))))
    for problem in problems:
        print("PROBLEM:", problem, file=sys.stderr)
    print(f"{sum(len(s) for s in sensitive(before).values())} originals checked, {len(problems)} left")
    return 1 if problems else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--verify", action="store_true", help="check OUTPUT against ORIGINAL instead of writing")
    ap.add_argument("original", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args()
    if args.verify:
        return verify(args.original, args.output)
    out, anon = anonymize(read_lines(args.original))
    args.output.write_bytes("".join(out).encode("utf-8", "surrogateescape"))
    print(
        f"{len(out)} lines; replaced {len(anon.domains)} domains, {len(anon.hosts)} host names, "
        f"{len(anon.bare)} bare host names, {len(anon.ips)} IPs, {len(anon.locals)} local parts, "
        f"{len(anon.subjects)} subjects, {len(anon.secrets)} AUTH data"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
