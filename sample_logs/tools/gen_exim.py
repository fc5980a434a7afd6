"""Make sample_logs/exim/: a real Exim 4.96 (Debian 12 build) mainlog, with expected counts
from the sink's and the client's own records.

Debian's exim4-daemon-light conflicts with postfix as a package, so Exim runs from the
unpacked .debs (nothing is installed):

    apt-get install libidn12        # the one library exim4 needs that a postfix host lacks
    .venv/bin/python -m sample_logs.tools.gen_exim [--seed 2027] [--out sample_logs/exim]

Run as root from the repository root. What it does, all on loopback and under /tmp/sl-exim:
- `apt-get download exim4-daemon-light exim4-base exim4-config` and `dpkg-deb -x` them;
- creates the system user Debian-exim (the Debian build looks it up by name at start-up)
  and /etc/exim4/trusted_configs naming our config (so Exim keeps root when it re-executes
  itself with -C, as an installed Exim does), and removes both again at the end if it
  created them;
- starts the scripted sink (sink.py) on 127.0.0.1:40126 and Exim's daemon on 127.0.0.1:40125
  (no queue runner; every message is delivered at once; a manualroute router sends
  everything to the sink);
- plays the seeded sessions (as for Postfix);
- waits until the sink is idle and 25 s have passed since the last temporary failure, then
  runs one forced queue run (`exim -qff`): each deferred recipient is tried once more, the
  sink answers 4xx again, and as the retry rule `* * F,20s,5s` has timed out Exim logs
  `** rcpt: retry timeout exceeded` and returns the message;
- stops Exim, copies mainlog and the records, writes expected.json from the records.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sample_logs.tools import client, expected, sink
from sample_logs.tools.plan import LOCAL_USERS, LOCAL_USERS_WITH_RULES, Plan, build_sessions

WORK = Path("/tmp/sl-exim")
ROOT = WORK / "root"
EXIM = ROOT / "usr/sbin/exim4"
CONF = WORK / "exim.conf"
TRUSTED = Path("/etc/exim4/trusted_configs")
SMTPD_PORT = 40125
SINK_PORT = 40126
SPOOFED_SENDERS = ["ceo@example.com", "payroll@example.com", "accounts@example.com"]
AUTH_PASSWORD = "sample-only-not-a-secret"  # noqa: S105 - a throw-away test instance on loopback
GREYLIST_SOURCES = [f"127.0.0.{n}" for n in range(200, 206)]

EXIM_CONF = """\
# logscan sample-log generator: a throw-away Exim on loopback.
primary_hostname = mx2.example.com
qualify_domain = example.com
exim_user = Debian-exim
exim_group = Debian-exim
exim_path = {exim}
spool_directory = {work}/spool
log_file_path = {work}/log/%slog
pid_file_path = {work}/exim.pid
daemon_smtp_ports = {port}
local_interfaces = 127.0.0.1
keep_environment =
host_lookup =
rfc1413_hosts =
tls_advertise_hosts = *
tls_certificate = {work}/mx2.crt
tls_privatekey = {work}/mx2.key
never_users = root
domainlist local_domains = example.com
hostlist relay_from_hosts = 127.0.0.1
hostlist greylist_hosts = {greylist}
acl_smtp_helo = acl_check_helo
acl_smtp_rcpt = acl_check_rcpt
ignore_bounce_errors_after = 2d
timeout_frozen_after = 7d

begin acl

acl_check_helo:
  accept hosts = +relay_from_hosts
  deny   condition = ${{if match{{$sender_helo_name}}{{\\N^[^.]+$\\N}}}}
         message = 504 5.5.2 <$sender_helo_name>: Helo command rejected: need fully-qualified hostname
  accept

acl_check_rcpt:
  accept hosts = :
  accept hosts = +relay_from_hosts
  accept authenticated = *
  defer  hosts = +greylist_hosts
         message = 450 4.7.1 Greylisted, please try again in 5 minutes
  deny   senders = {spoofed}
         message = 551 5.7.1 Sender address is not valid for your login; authenticate first
  # Debian's default wording; Exim answers it with its default deny code, 550, and logs no code.
  deny   domains = !+local_domains
         message = relay not permitted
  deny   domains = +local_domains
         !local_parts = lsearch;{work}/local_users
         message = 550 5.1.1 <$local_part@$domain>: Recipient address rejected: User unknown
  accept

begin routers

mailstore:
  driver = manualroute
  domains = +local_domains
  local_parts = lsearch;{work}/local_users
  transport = mailstore_smtp
  route_list = * 127.0.0.1
  self = send

smarthost:
  driver = manualroute
  domains = ! +local_domains
  transport = remote_smtp_smarthost
  route_list = * 127.0.0.1
  self = send

begin transports

remote_smtp_smarthost:
  driver = smtp
  port = {sink}
  interface = 127.0.0.1

mailstore_smtp:
  driver = smtp
  port = {sink}
  interface = 127.0.0.1

begin authenticators

plain_server:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${{if eq{{$auth3}}{{{password}}}}}
  server_set_id = $auth2
  server_advertise_condition = ${{if def:tls_in_cipher}}

begin retry

*   *   F,20s,5s
"""


def unpack() -> None:
    debs = WORK / "debs"
    debs.mkdir(parents=True)
    subprocess.run(["apt-get", "download", "exim4-daemon-light", "exim4-base", "exim4-config"],
                   cwd=debs, check=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(ROOT)], check=True)


def exim(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXIM), "-C", str(CONF), *args], check=True, text=True, **kw)


def sendmail(plan: dict[str, Any]) -> None:
    msg = (f"From: {plan['mail_from']}\nTo: {', '.join(plan['rcpts'])}\nSubject: {plan['subject']}\n\n"
           f"{plan['body']}")
    exim("-f", plan["mail_from"], "--", *plan["rcpts"], input=msg)


def queue_count() -> int:
    return int(exim("-bpc", capture_output=True).stdout.strip() or "0")


def wait_idle(record: Path, quiet: float = 4.0, limit: float = 120.0) -> None:
    """Until the sink's record has not grown for `quiet` seconds."""
    end = time.time() + limit
    size = -1
    while time.time() < end:
        now = record.stat().st_size if record.exists() else 0
        if now == size:
            return
        size = now
        time.sleep(quiet)


def setup(p: Plan) -> tuple[bool, bool]:
    """Config, user, trusted list; returns (created user, created trusted list)."""
    made_user = made_trusted = False
    try:
        pwd.getpwnam("Debian-exim")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", str(WORK / "spool"),
                        "--shell", "/usr/sbin/nologin", "Debian-exim"], check=True)
        made_user = True
    for d in ("spool", "log"):
        (WORK / d).mkdir()
        shutil.chown(WORK / d, "Debian-exim", "Debian-exim")
    users = [*LOCAL_USERS, *LOCAL_USERS_WITH_RULES]
    (WORK / "local_users").write_text("".join(f"{u}:\n" for u in users))
    CONF.write_text(EXIM_CONF.format(exim=EXIM, work=WORK, port=SMTPD_PORT, sink=SINK_PORT,
                                     greylist=" : ".join(GREYLIST_SOURCES),
                                     spoofed=" : ".join(SPOOFED_SENDERS),
                                     password=AUTH_PASSWORD))
    CONF.chmod(0o644)
    if not TRUSTED.exists():
        TRUSTED.parent.mkdir(exist_ok=True)
        TRUSTED.write_text(f"{CONF}\n")
        TRUSTED.chmod(0o644)
        made_trusted = True
    elif str(CONF) not in TRUSTED.read_text().split():
        sys.exit(f"{TRUSTED} exists and does not list {CONF}; add it or remove the file")
    (WORK / "rules.json").write_text(json.dumps(p.rules, indent=1, sort_keys=True))
    for name, cn in (("mx2", "mx2.example.com"), ("sink", "smarthost.example.net")):
        _, key = sink.self_signed(WORK, name, cn)
        key.chmod(0o644)  # read by Exim as Debian-exim; a throw-away key
    return made_user, made_trusted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=2027)
    ap.add_argument("--out", type=Path, default=Path("sample_logs/exim"))
    ap.add_argument("--pause", type=float, default=0.8, help="mean seconds between sessions")
    ap.add_argument("--derive-only", action="store_true",
                    help="only recompute OUT/expected.json from the log and OUT/record/ (no run)")
    args = ap.parse_args()
    if args.derive_only:
        expected.write_expected(args.out / "expected.json", derive(args.out))
        return
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(mode=0o755)
    unpack()
    p, sessions = build_sessions(args.seed, SPOOFED_SENDERS, GREYLIST_SOURCES, AUTH_PASSWORD)
    (WORK / "plan.json").write_text(json.dumps(sessions, indent=1))
    made_user, made_trusted = setup(p)
    sink_proc = subprocess.Popen([sys.executable, "-m", "sample_logs.tools.sink", "--port", str(SINK_PORT),
                                  "--rules", str(WORK / "rules.json"), "--record", str(WORK / "sink.jsonl"),
                                  "--hostname", "smarthost.example.net", "--tls-cert", str(WORK / "sink.crt"),
                                  "--tls-key", str(WORK / "sink.key")])
    try:
        time.sleep(1.5)
        exim("-bd", "-oX", str(SMTPD_PORT), "-oP", str(WORK / "exim.pid"))
        time.sleep(1.5)
        with (WORK / "client.jsonl").open("a", encoding="utf-8") as out:
            for s in sessions:
                if s["kind"] == "sendmail":
                    sendmail(s)
                else:
                    client.run_session("127.0.0.1", SMTPD_PORT, s, out)
                time.sleep(p.rng.uniform(0, 2 * args.pause))
        wait_idle(WORK / "sink.jsonl")
        last_4xx = max((r["t"] for r in expected.read_jsonl(WORK / "sink.jsonl") if r["code"][0] == "4"),
                       default=0.0)
        time.sleep(max(0.0, last_4xx + 25 - time.time()))
        (WORK / "phases.json").write_text(json.dumps({"forced_queue_run_started": time.time()}) + "\n")
        exim("-qff")
        wait_idle(WORK / "sink.jsonl")
        if queue_count():
            print("WARNING: queue not empty after the forced run", file=sys.stderr)
            exim("-bp")
        time.sleep(1)
    finally:
        pid_file = WORK / "exim.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        sink_proc.send_signal(signal.SIGTERM)
        sink_proc.wait(timeout=20)
        if made_trusted:
            TRUSTED.unlink()
            if not any(TRUSTED.parent.iterdir()):
                TRUSTED.parent.rmdir()
        if made_user:
            time.sleep(1)
            subprocess.run(["userdel", "Debian-exim"], check=False)
    finish(args.out)


def derive(out: Path) -> dict[str, Any]:
    """expected.json from the records in out/record/ (sink.jsonl, client.jsonl)."""
    sink = expected.read_jsonl(out / "record" / "sink.jsonl")
    cli = expected.read_jsonl(out / "record" / "client.jsonl")
    forced = json.loads((out / "record" / "phases.json").read_text())["forced_queue_run_started"]
    t = expected.Tally()
    for r in sink:
        # Each answer is one delivery line: `=>`/`->` (2xx, C="250 ..."), `**` (5xx), `==` (4xx).
        t.outbound_attempt(r["code"], r["enhanced"])
        # In the forced queue run every recipient is past its retry cutoff: a 4xx there is logged
        # `==` (counted above) and then `** rcpt: retry timeout exceeded` (expired, no reply).
        if r["t"] >= forced and r["code"][0] == "4":
            t.deliveries["expired"] += 1
    for r in cli:
        if r["stage"] in ("helo", "ehlo", "auth", "mail", "rcpt") and r["code"][0] in "45":
            t.inbound_refusal(r["code"], r["enhanced"])
        elif r["stage"] in ("connect", "end-of-data") and r["code"][0] in "45":
            raise SystemExit(f"unexpected refusal the generator cannot map: {r}")
    return t.result(expected.count_lines(out / "mainlog"))


def finish(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "record").mkdir(exist_ok=True)
    shutil.copy(WORK / "log" / "mainlog", out / "mainlog")
    panic = WORK / "log" / "paniclog"
    if panic.exists() and panic.stat().st_size:
        print(f"WARNING: {panic} is not empty", file=sys.stderr)
    for name in ("sink.jsonl", "client.jsonl", "rules.json", "phases.json"):
        shutil.copy(WORK / name, out / "record" / name)
    # The plan without message bodies (they are random words; the sizes are in sink.jsonl).
    plan = [{k: v for k, v in s.items() if k != "body"} for s in json.loads((WORK / "plan.json").read_text())]
    (out / "record" / "plan.json").write_text(json.dumps(plan, indent=1) + "\n")
    shutil.copy(CONF, out / "record" / "exim.conf")
    result = derive(out)
    expected.write_expected(out / "expected.json", result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
