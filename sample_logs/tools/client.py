"""An SMTP client that plays scripted sessions against our MTA on loopback and records
every reply it got (JSON lines), so the inbound side of a sample log has an independent
record.

A session plan is a dict:
    {"id": "s17", "source": "127.0.0.23", "helo": "mail.example.net", "ehlo": true, "tls": true,
     "mail_from": "a@example.net", "rcpts": ["b@example.com"], "subject": "...", "body": "..."}
Optional keys: "tls" (STARTTLS when offered), "auth" ({"user", "password"}: AUTH PLAIN).
After a refused HELO/EHLO or AUTH the client sends QUIT. After MAIL and RCPT the client sends DATA
only if at least one recipient was accepted, otherwise it sends QUIT: the MTA logs its own
refusals, and no reply that the MTA does not log (such as "554 5.5.1 Error: no valid
recipients") is ever provoked.
"""

from __future__ import annotations

import base64
import json
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, TextIO


def _write(out: TextIO, **fields: Any) -> None:
    fields["t"] = round(time.time(), 6)
    out.write(json.dumps(fields, sort_keys=True) + "\n")
    out.flush()


def _codes(code: int, text: bytes) -> tuple[str, str]:
    words = text.decode("utf-8", "replace").split(" ", 1)
    enhanced = words[0] if words and words[0][:1] in "245" and words[0].count(".") == 2 else ""
    return str(code), enhanced


def run_session(host: str, port: int, plan: dict[str, Any], out: TextIO) -> None:
    """Play one session; append one record per command reply to `out`."""
    if host not in ("127.0.0.1", "::1"):
        raise ValueError("loopback only")
    sid = plan["id"]
    smtp = smtplib.SMTP(timeout=30, source_address=(plan.get("source", "127.0.0.1"), 0),
                        local_hostname=plan.get("helo", "client.example.net"))

    def rec(stage: str, arg: str, code: int, text: bytes) -> None:
        c, e = _codes(code, text)
        _write(out, session=sid, source=plan.get("source", "127.0.0.1"), stage=stage, arg=arg,
               code=c, enhanced=e, reply=text.decode("utf-8", "replace"))

    code, text = smtp.connect(host, port)
    rec("connect", "", code, text)
    if code >= 400:
        smtp.close()
        return
    helo: str = plan.get("helo", "client.example.net")
    if plan.get("ehlo", True):
        code, text = smtp.ehlo(helo)
        rec("ehlo", helo, code, text)
    else:
        code, text = smtp.helo(helo)
        rec("helo", helo, code, text)
    if code < 400 and plan.get("tls") and plan.get("ehlo", True) and smtp.has_extn("starttls"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the MTA's throw-away self-signed certificate
        # smtplib takes the TLS server name from _host, which connect() alone leaves empty.
        smtp._host = host  # type: ignore[attr-defined]
        code, text = smtp.starttls(context=ctx)
        rec("starttls", "", code, text)
        code, text = smtp.ehlo(helo)
        rec("ehlo", helo, code, text)
    if code >= 400:  # a refused HELO: say goodbye (Exim would answer MAIL with 503 otherwise)
        code, text = smtp.docmd("QUIT")
        rec("quit", "", code, text)
        smtp.close()
        return
    if "auth" in plan:  # AUTH PLAIN with {"user": ..., "password": ...}; a refusal ends the session
        user, password = plan["auth"]["user"], plan["auth"]["password"]
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        code, text = smtp.docmd("AUTH", f"PLAIN {token}")
        rec("auth", user, code, text)
        if code >= 400:
            code, text = smtp.docmd("QUIT")
            rec("quit", "", code, text)
            smtp.close()
            return
    sender = plan["mail_from"]
    code, text = smtp.mail(sender)
    rec("mail", sender, code, text)
    accepted: list[str] = []
    if code < 400:
        for rcpt in plan["rcpts"]:
            code, text = smtp.rcpt(rcpt)
            rec("rcpt", rcpt, code, text)
            if code < 400:
                accepted.append(rcpt)
    if accepted:
        msg = EmailMessage()
        msg["From"] = sender or "MAILER-DAEMON"
        msg["To"] = ", ".join(plan["rcpts"])
        msg["Subject"] = plan.get("subject", "Hello")
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=plan.get("helo", "client.example.net"))
        msg.set_content(plan.get("body", "Hello.\n"))
        code, text = smtp.data(msg.as_bytes())
        rec("end-of-data", "", code, text)
    code, text = smtp.docmd("QUIT")
    rec("quit", "", code, text)
    smtp.close()


def run_all(host: str, port: int, plans: list[dict[str, Any]], record: Path, pause: float = 0.0) -> None:
    with record.open("a", encoding="utf-8") as out:
        for plan in plans:
            run_session(host, port, plan, out)
            if pause:
                time.sleep(pause)
