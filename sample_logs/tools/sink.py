"""A scripted SMTP sink on loopback: the "remote servers" our MTA delivers to.

It answers by recipient, from a rules file written by the generator, and writes its
own record (JSON lines) of every answer it gave: which recipient, at which stage
(RCPT or end-of-data), which code. The expected counts of a sample log are derived
from this record, never from logscan.

Rules file (JSON): {"<recipient address, lower case>": "<rule name>"}. Recipients not
in the file get 250. Rule names are the keys of RCPT_RULES / EOD_RULES below.

Run: python -m sample_logs.tools.sink --port 40026 --rules rules.json --record sink.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

# Answers at RCPT time. {addr} is replaced by the recipient address.
RCPT_RULES: dict[str, str] = {
    "user-not-local": "551 5.1.1 <{addr}>: User not local; please try <{forward}>",
    "not-our-customer": "551 5.7.1 <{addr}>: not our customer, relaying denied",
    "unknown": "550 5.1.1 <{addr}>: Recipient address rejected: User unknown in virtual mailbox table",
    "disabled": "550 5.2.1 <{addr}>: mailbox disabled, not accepting messages",
    "full": "552 5.2.2 <{addr}>: Recipient address rejected: Mailbox full",
    "bad-name": "553 5.1.3 <{addr}>: mailbox name not allowed",
    "policy": "554 5.7.1 <{addr}>: Recipient address rejected: Access denied",
    "busy": "450 4.2.1 <{addr}>: Mailbox busy, try again later",
    "tempfail": "451 4.3.0 <{addr}>: Temporary lookup failure",
    "over-quota-soft": "452 4.2.2 <{addr}>: Mailbox over quota, try again later",
}
# Recipients accepted at RCPT whose message is refused at end of data. The end-of-data
# reply is one per transaction: the first such recipient (in RCPT order) decides it, and
# every accepted recipient of the transaction gets that reply.
EOD_RULES: dict[str, str] = {
    "spam": "554 5.7.1 Message rejected: content looks like spam",
    "too-big": "552 5.3.4 Message size exceeds fixed maximum message size",
    "eod-tempfail": "451 4.7.0 Temporary server error. Please try again later",
}
RCPT_OK = "250 2.1.5 Ok"
MAIL_OK = "250 2.1.0 Ok"


def self_signed(directory: Path, name: str, cn: str) -> tuple[Path, Path]:
    """A throw-away self-signed certificate and key (openssl), as (cert, key)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                    "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def code_of(reply: str) -> tuple[str, str]:
    """("551", "5.1.1") from "551 5.1.1 text"."""
    parts = reply.split(" ", 2)
    enhanced = parts[1] if len(parts) > 1 and parts[1][:1] in "245" and parts[1].count(".") == 2 else ""
    return parts[0], enhanced


class Handler:
    def __init__(self, rules: dict[str, str], record: Path, name: str) -> None:
        self.rules = rules
        self.record = record.open("a", encoding="utf-8")
        self.name = name
        self.txn = itertools.count(1)
        self.queue_ids = itertools.count(0x3AB5A100)

    def write(self, **fields: Any) -> None:
        fields["t"] = round(time.time(), 6)
        fields["sink"] = self.name
        self.record.write(json.dumps(fields, sort_keys=True) + "\n")
        self.record.flush()

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        # A transaction number, so the record shows which recipients shared one SMTP transaction.
        session.txn_id = next(self.txn)  # type: ignore[attr-defined]
        session.accepted = []  # type: ignore[attr-defined]
        return MAIL_OK

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        rule = self.rules.get(address.lower(), "")
        txn = getattr(session, "txn_id", 0)
        if rule in RCPT_RULES:
            local, _, domain = address.partition("@")
            reply = RCPT_RULES[rule].format(addr=address, forward=f"{local}@new.{domain}")
            code, enhanced = code_of(reply)
            self.write(stage="rcpt", txn=txn, mail_from=envelope.mail_from, rcpt=address, rule=rule,
                       code=code, enhanced=enhanced, reply=reply)
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        # Accepted at RCPT: the outcome of this recipient is decided at end of data, where it is recorded.
        return RCPT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        txn = getattr(session, "txn_id", 0)
        reply = ""
        rule = ""
        for rcpt in envelope.rcpt_tos:
            r = self.rules.get(rcpt.lower(), "")
            if r in EOD_RULES:
                rule, reply = r, EOD_RULES[r]
                break
        if not reply:
            reply = f"250 2.0.0 Ok: queued as {next(self.queue_ids):X}"
        code, enhanced = code_of(reply)
        for rcpt in envelope.rcpt_tos:
            self.write(stage="end-of-data", txn=txn, mail_from=envelope.mail_from, rcpt=rcpt, rule=rule,
                       code=code, enhanced=enhanced, reply=reply, size=len(envelope.content or b""))
        return reply


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rules", type=Path, required=True)
    ap.add_argument("--record", type=Path, required=True)
    ap.add_argument("--hostname", default="mx.example.net")
    ap.add_argument("--name", default="sink")
    ap.add_argument("--tls-cert", type=Path, help="offer STARTTLS with this certificate (PEM)")
    ap.add_argument("--tls-key", type=Path, help="... and this key")
    args = ap.parse_args()
    if args.host not in ("127.0.0.1", "::1"):
        raise SystemExit("the sink listens on loopback only")
    rules = {k.lower(): v for k, v in json.loads(args.rules.read_text()).items()}
    handler = Handler(rules, args.record, args.name)
    tls: ssl.SSLContext | None = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    controller = Controller(handler, hostname=args.host, port=args.port, server_hostname=args.hostname,
                            ident="ESMTP sink", tls_context=tls, require_starttls=False)
    controller.start()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"sink listening on {args.host}:{args.port}", flush=True)
    loop.run_until_complete(stop.wait())
    controller.stop()
    handler.record.close()


if __name__ == "__main__":
    main()
