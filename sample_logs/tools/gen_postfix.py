"""Make sample_logs/postfix/: a real Postfix 3.7 (Debian 12) log, logged through rsyslog in
Debian 12's default RFC 3339 format, with expected counts from the sink's and the client's
own records.

Run as root from the repository root (Debian's `postfix` and `rsyslog` installed):

    .venv/bin/python -m sample_logs.tools.gen_postfix [--seed 2026] [--out sample_logs/postfix]

What it does, all on loopback and under /tmp/sl-postfix (removed first):
- starts rsyslogd (own config, own pid file) on /dev/log with Debian 12's default file format,
  writing mail.* to /tmp/sl-postfix/mail.log; /dev/log is removed again at the end;
- starts the scripted sink (sink.py) on 127.0.0.1:40026;
- starts Postfix with its own config directory (smtpd on 127.0.0.1:40025, relayhost = the sink,
  maximal_queue_lifetime = 0 so a deferred message is tried once and then expires);
- plays the seeded sessions: outbound submissions from 127.0.0.1 (trusted, relayed to the
  sink) and a few through /usr/sbin/sendmail, inbound sessions from 127.0.0.N (N > 1,
  untrusted) that Postfix refuses or accepts;
- waits until the queue is empty, stops Postfix and rsyslogd, copies the log and the
  records, and writes expected.json from the records.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sample_logs.tools import client, expected, sink
from sample_logs.tools.plan import LOCAL_DOMAIN, Plan, all_local_users, build_sessions

WORK = Path("/tmp/sl-postfix")
SMTPD_PORT = 40025
SINK_PORT = 40026
SPOOFED_SENDERS = ["ceo@example.com", "payroll@example.com", "accounts@example.com"]
SPOOF_REPLY = "551 5.7.1 Sender address is not valid for your login; authenticate first"
GREYLIST_SOURCES = [f"127.0.0.{n}" for n in range(200, 206)]
GREYLIST_REPLY = "450 4.7.1 Greylisted, please try again in 5 minutes"

MAIN_CF = """\
# logscan sample-log generator: a throw-away Postfix instance on loopback.
compatibility_level = 3.6
queue_directory = {work}/spool
data_directory = {work}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
biff = no
append_dot_mydomain = no
readme_directory = no
myhostname = mx1.example.com
mydomain = example.com
myorigin = $mydomain
mydestination = localhost
alias_maps =
alias_database =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
relay_domains = example.com
relay_recipient_maps = hash:{etc}/relay_recipients
relayhost = [127.0.0.1]:{sink}
smtp_host_lookup = native
smtp_bind_address = 127.0.0.1
smtpd_peername_lookup = no
# As Debian's default main.cf (opportunistic TLS both ways), with summary TLS logging on.
smtpd_tls_cert_file = {work}/mx1.crt
smtpd_tls_key_file = {work}/mx1.key
smtpd_tls_security_level = may
smtp_tls_security_level = may
smtp_tls_CApath = /etc/ssl/certs
smtpd_tls_loglevel = 1
smtp_tls_loglevel = 1
recipient_delimiter = +
mailbox_size_limit = 0
smtpd_helo_required = yes
smtpd_client_restrictions = permit_mynetworks, check_client_access hash:{etc}/client_access
smtpd_helo_restrictions = permit_mynetworks, reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname
smtpd_sender_restrictions = permit_mynetworks, check_sender_access hash:{etc}/sender_access
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access hash:{etc}/recipient_access
# Deterministic expiry: a message with a temporary failure is tried once, then returned.
maximal_queue_lifetime = 0
bounce_queue_lifetime = 0
"""


def master_cf() -> str:
    """Debian's master.cf with chroot off and smtpd on our loopback port."""
    out = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        fields = line.split()
        if fields and not line.startswith((" ", "\t", "#")) and len(fields) >= 8:
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = f"127.0.0.1:{SMTPD_PORT}"
            fields[4] = "n"  # chroot: the instance lives in /tmp and logs through /dev/log
            out.append("  ".join(fields[:8]) + ("  " + " ".join(fields[8:]) if len(fields) > 8 else ""))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


RSYSLOG_CONF = """\
global(localHostName="mx1" workDirectory="{work}/rsyslog")
module(load="imuxsock" SysSock.Name="/dev/log" SysSock.RateLimit.Interval="0")
# Debian 12 default: RSYSLOG_FileFormat (RFC 3339 with microseconds and offset).
mail.* action(type="omfile" file="{work}/mail.log" template="RSYSLOG_FileFormat")
"""


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MAIL_CONFIG=str(WORK / "etc"))
    return subprocess.run(cmd, check=True, text=True, env=env, **kw)


def build_plan(seed: int) -> tuple[Plan, list[dict[str, Any]]]:
    return build_sessions(seed, SPOOFED_SENDERS, GREYLIST_SOURCES)


def write_config(p: Plan) -> None:
    etc = WORK / "etc"
    etc.mkdir(parents=True)
    (WORK / "rsyslog").mkdir()
    (etc / "main.cf").write_text(MAIN_CF.format(work=WORK, etc=etc, sink=SINK_PORT))
    (etc / "master.cf").write_text(master_cf())
    (etc / "relay_recipients").write_text("".join(f"{a} OK\n" for a in all_local_users()))
    (etc / "sender_access").write_text("".join(f"{s} {SPOOF_REPLY}\n" for s in SPOOFED_SENDERS))
    (etc / "client_access").write_text("".join(f"{s} {GREYLIST_REPLY}\n" for s in GREYLIST_SOURCES))
    (etc / "recipient_access").write_text(f"abuse@{LOCAL_DOMAIN} OK\n")
    for name in ("relay_recipients", "sender_access", "client_access", "recipient_access"):
        run(["postmap", f"hash:{etc / name}"])
    (WORK / "rules.json").write_text(json.dumps(p.rules, indent=1, sort_keys=True))
    (WORK / "rsyslog.conf").write_text(RSYSLOG_CONF.format(work=WORK))
    sink.self_signed(WORK, "mx1", "mx1.example.com")
    sink.self_signed(WORK, "sink", "mx.example.net")


def queue_empty() -> bool:
    spool = WORK / "spool"
    return not any(f.is_file() for q in ("maildrop", "incoming", "active", "deferred", "hold")
                   for f in (spool / q).rglob("*"))


def sendmail(plan: dict[str, Any]) -> None:
    msg = (f"From: {plan['mail_from']}\nTo: {', '.join(plan['rcpts'])}\nSubject: {plan['subject']}\n\n"
           f"{plan['body']}")
    run(["/usr/sbin/sendmail", "-C", str(WORK / "etc"), "-f", plan["mail_from"], "--", *plan["rcpts"]],
        input=msg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", type=Path, default=Path("sample_logs/postfix"))
    ap.add_argument("--pause", type=float, default=0.8, help="mean seconds between sessions")
    ap.add_argument("--derive-only", action="store_true",
                    help="only recompute OUT/expected.json from the log and OUT/record/ (no run)")
    args = ap.parse_args()
    if args.derive_only:
        expected.write_expected(args.out / "expected.json", derive(args.out))
        return
    if Path("/dev/log").exists():
        sys.exit("/dev/log exists: another syslog daemon runs; stop it or adapt the generator")
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(mode=0o755)
    p, sessions = build_plan(args.seed)
    write_config(p)
    (WORK / "plan.json").write_text(json.dumps(sessions, indent=1))
    (WORK / "spool").mkdir(mode=0o755)
    (WORK / "data").mkdir(mode=0o700)
    shutil.chown(WORK / "data", "postfix")
    run(["postfix", "-c", str(WORK / "etc"), "check"])  # creates the queue directories
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(["rsyslogd", "-n", "-f", str(WORK / "rsyslog.conf"),
                                       "-i", str(WORK / "rsyslog.pid")]))
        procs.append(subprocess.Popen([sys.executable, "-m", "sample_logs.tools.sink",
                                       "--port", str(SINK_PORT), "--rules", str(WORK / "rules.json"),
                                       "--record", str(WORK / "sink.jsonl"), "--hostname", "mx.example.net",
                                       "--tls-cert", str(WORK / "sink.crt"),
                                       "--tls-key", str(WORK / "sink.key")]))
        time.sleep(1.5)
        run(["postfix", "-c", str(WORK / "etc"), "start"])
        time.sleep(2)
        with (WORK / "client.jsonl").open("a", encoding="utf-8") as out:
            for s in sessions:
                if s["kind"] == "sendmail":
                    sendmail(s)
                else:
                    client.run_session("127.0.0.1", SMTPD_PORT, s, out)
                time.sleep(p.rng.uniform(0, 2 * args.pause))
        deadline = time.time() + 180
        while time.time() < deadline:
            time.sleep(3)
            if queue_empty():
                break
        else:
            print("WARNING: queue not empty after 180 s", file=sys.stderr)
        time.sleep(2)
    finally:
        subprocess.run(["postfix", "-c", str(WORK / "etc"), "stop"], check=False)
        time.sleep(2)
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        Path("/dev/log").unlink(missing_ok=True)
    finish(args.out)


def derive(out: Path) -> dict[str, Any]:
    """expected.json from the records in out/record/ (sink.jsonl, client.jsonl)."""
    sink = expected.read_jsonl(out / "record" / "sink.jsonl")
    cli = expected.read_jsonl(out / "record" / "client.jsonl")
    t = expected.Tally()
    deferred_txns: set[tuple[str, int]] = set()
    for r in sink:
        if r["stage"] == "rcpt" or r["stage"] == "end-of-data":
            t.outbound_attempt(r["code"], r["enhanced"])
            if r["code"].startswith("4"):
                deferred_txns.add((r["sink"], r["txn"]))
    # maximal_queue_lifetime = 0: a message with a deferred recipient is tried once, then
    # qmgr logs "status=expired, returned to sender" once for the message.
    t.deliveries["expired"] = len(deferred_txns)
    for r in cli:
        if r["stage"] in ("helo", "ehlo", "auth", "mail", "rcpt") and r["code"][0] in "45":
            t.inbound_refusal(r["code"], r["enhanced"])
        elif r["stage"] in ("connect", "end-of-data") and r["code"][0] in "45":
            raise SystemExit(f"unexpected refusal the generator cannot map: {r}")
    return t.result(expected.count_lines(out / "mail.log"))


def finish(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "record").mkdir(exist_ok=True)
    shutil.copy(WORK / "mail.log", out / "mail.log")
    for name in ("sink.jsonl", "client.jsonl", "rules.json"):
        shutil.copy(WORK / name, out / "record" / name)
    # The plan without message bodies (they are random words; the sizes are in sink.jsonl).
    plan = [{k: v for k, v in s.items() if k != "body"} for s in json.loads((WORK / "plan.json").read_text())]
    (out / "record" / "plan.json").write_text(json.dumps(plan, indent=1) + "\n")
    expected.write_expected(out / "expected.json", derive(out))
    print(json.dumps(derive(out), indent=1))


if __name__ == "__main__":
    main()
