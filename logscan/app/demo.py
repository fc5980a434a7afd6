"""`python -m logscan.app.demo`: the daemon on the bundled sample logs, with live traffic and a 551 burst.

Copies sample_logs/ into ./demo-run/, starts `logscan run` on it, appends realistic Postfix,
Exim and MailEnable lines for about two minutes (with a burst of 551 replies in the middle),
and shows the 551 counters and the alert state from /metrics as they move.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

RUN = Path("demo-run").resolve()
SAMPLES = Path("sample_logs")
LISTEN = "127.0.0.1:9551"
DURATION_S = 170
BURST = (15.0, 35.0)  # seconds after start: the 551 burst
DOMAINS = ("example.com", "example.net", "example.org", "mail.example", "corp.example")

CONFIG = f"""
[server]
listen = "{LISTEN}"
[state]
dir = "{RUN / "state"}"
save_interval = 5.0
[daemon]
poll_interval = 1.0
log_level = "info"
[[logs]]
name = "postfix"
path = "{RUN / "logs" / "mail.log"}"
format = "auto"
start_at = "beginning"
[[logs]]
name = "exim"
path = "{RUN / "logs" / "mainlog"}"
format = "exim"
start_at = "beginning"
[[logs]]
name = "mailenable"
path = "{RUN / "logs" / "SMTP-Activity-*.log"}"
format = "mailenable"
start_at = "beginning"
[alerts]
enabled = true
# The built-in rules watch 5-minute windows and wait 2 minutes; the demo uses 1-minute
# windows and no wait so that a newcomer sees the alert fire and resolve within three.
default_rules = false
[[alerts.rules]]
name = "demo_551_outbound_spike"
code = "551"
direction = "outbound"
window = 60
min_count = 5
for_s = 0
[[alerts.rules]]
name = "demo_551_inbound_spike"
code = "551"
direction = "inbound"
window = 60
min_count = 5
for_s = 0
"""


def _qid(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789ABCDEF") for _ in range(10))


def postfix_lines(rng: random.Random, now: float, burst: bool) -> list[str]:
    ts = datetime.fromtimestamp(now, UTC).isoformat(timespec="microseconds")
    pre = f"{ts} mx1 postfix"
    qid, dom = _qid(rng), rng.choice(DOMAINS)
    user = f"user{rng.randint(1, 500)}"
    out = [
        f"{pre}/smtpd[2101]: connect from client.example.net[198.51.100.{rng.randint(2, 250)}]",
        f"{pre}/qmgr[812]: {qid}: from=<news@example.com>, size={rng.randint(900, 90000)}, "
        "nrcpt=1 (queue active)",
    ]
    roll = rng.random()
    relay = f"mx.{dom}[203.0.113.{rng.randint(2, 250)}]:25"
    if burst or roll < 0.02:
        out.append(
            f"{pre}/smtp[3301]: {qid}: to=<{user}@{dom}>, relay={relay}, delay=0.4, delays=0.1/0/0.2/0.1, "
            f"dsn=5.1.1, status=bounced (host {relay[:-3]} said: 551 5.1.1 <{user}@{dom}>: User not local; "
            "please try <forward-path> (in reply to RCPT TO command))"
        )
    elif roll < 0.08:
        out.append(
            f"{pre}/smtp[3301]: {qid}: to=<{user}@{dom}>, relay={relay}, delay=1.2, delays=0.1/0/0.9/0.2, "
            f"dsn=4.7.1, status=deferred (host {relay[:-3]} said: 451 4.7.1 Try again later "
            "(in reply to RCPT TO command))"
        )
    elif roll < 0.12:
        out.append(
            f"{pre}/smtpd[2101]: NOQUEUE: reject: RCPT from unknown[192.0.2.{rng.randint(2, 250)}]: "
            "554 5.7.1 <x@example.org>: Relay access denied; from=<spam@example.net> to=<x@example.org> "
            "proto=ESMTP helo=<spammer>"
        )
    else:
        out.append(
            f"{pre}/smtp[3301]: {qid}: to=<{user}@{dom}>, relay={relay}, delay=0.6, delays=0.1/0/0.3/0.2, "
            f"dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as {_qid(rng)})"
        )
    out.append(f"{pre}/qmgr[812]: {qid}: removed")
    return out


def exim_lines(rng: random.Random, now: float) -> list[str]:
    ts = datetime.fromtimestamp(now).strftime("%Y-%m-%d %H:%M:%S")
    mid = f"1t{rng.randint(1000, 9999)}x-00{rng.randint(1000, 9999)}A-{rng.choice('ABCDEFGH')}Q"
    dom = rng.choice(DOMAINS)
    user = f"user{rng.randint(1, 500)}"
    out = [f"{ts} {mid} <= news@example.com H=localhost [127.0.0.1] P=esmtp S={rng.randint(900, 9000)}"]
    if rng.random() < 0.1:
        out.append(
            f"{ts} {mid} ** {user}@{dom} R=dnslookup T=remote_smtp H=mx.{dom} [203.0.113.9]: "
            f"SMTP error from remote mail server after RCPT TO:<{user}@{dom}>: 550 5.1.1 No such user"
        )
    else:
        out.append(
            f"{ts} {mid} => {user}@{dom} R=dnslookup T=remote_smtp H=mx.{dom} [203.0.113.9] "
            'C="250 2.0.0 OK queued"'
        )
    out.append(f"{ts} {mid} Completed")
    return out


def mailenable_lines(rng: random.Random, now: float, burst: bool) -> list[str]:
    ts = datetime.fromtimestamp(now).strftime("%m/%d/%y %H:%M:%S")
    mid = "".join(rng.choice("0123456789ABCDEF") for _ in range(32)) + ".MAI"
    ip = f"198.51.100.{rng.randint(2, 250)}"
    row = f"{ts}\tSMTP-IN\t{mid}\t{rng.randint(1000, 2000)}\t{ip}\t"
    out = [
        f"{row}EHLO\tEHLO client.example.net\t"
        f"250-mx1.example.com [{ip}], this server offers 4 extensions\t132\t24\t\t"
    ]
    if burst or rng.random() < 0.02:
        out.append(
            f"{row}MAIL\tMAIL FROM:<someone@example.com>\t551 This mail server requires authentication "
            "before sending mail from a locally hosted domain. Please reconfigure your mail client to "
            "authenticate before sending mail.\t171\t40\t\t"
        )
    else:
        ok = "250 Requested mail action okay, completed"
        out.append(f"{row}MAIL\tMAIL FROM:<someone@example.net>\t{ok}\t43\t40\t\t")
        out.append(f"{row}RCPT\tRCPT TO:<user@example.com>\t{ok}\t43\t31\t\t")
    out.append(f"{row}QUIT\tQUIT\t221 Service closing transmission channel\t42\t6\t\t")
    return out


def _append(f: TextIO, lines: list[str], crlf: bool = False) -> None:
    f.write("".join(line + ("\r\n" if crlf else "\n") for line in lines))
    f.flush()


def _metrics_excerpt() -> str:
    try:
        with urllib.request.urlopen(f"http://{LISTEN}/metrics", timeout=3) as resp:
            text = resp.read().decode()
    except OSError as exc:
        return f"(no /metrics yet: {exc})"
    keep = [
        ln
        for ln in text.splitlines()
        if (ln.startswith("logscan_smtp_replies_total") and 'code="551"' in ln and not ln.endswith(" 0.0"))
        or ln.startswith("logscan_alert_firing")
        or (ln.startswith("logscan_deliveries_total") and not ln.endswith(" 0.0"))
    ]
    return "\n".join("    " + ln for ln in keep)


def prepare() -> Path:
    if RUN.exists():
        shutil.rmtree(RUN)
    logs = RUN / "logs"
    logs.mkdir(parents=True)
    (RUN / "state").mkdir()
    for src, dst in (("postfix", "mail.log"), ("exim", "mainlog")):
        found = sorted((SAMPLES / src).glob("*.log")) + sorted((SAMPLES / src).glob("mainlog*"))
        if found:
            shutil.copy(found[0], logs / dst)
        else:
            (logs / dst).touch()
    me = sorted((SAMPLES / "mailenable").glob("SMTP-Activity-*.log"))
    today = logs / f"SMTP-Activity-{datetime.now().strftime('%y%m%d')}.log"
    if me:
        shutil.copy(me[0], today)
    else:
        today.touch()
    config = RUN / "logscan.toml"
    config.write_text(CONFIG)
    return config


def main() -> int:
    config = prepare()
    print(f"demo: logs in {RUN / 'logs'}, metrics at http://{LISTEN}/metrics, running {DURATION_S} s")
    print(
        "demo: the daemon first reads the bundled sample logs (their own 551 episodes replay as "
        "alert events stamped with the samples' times), then live traffic with a 551 burst "
        f"{BURST[0]:.0f}-{BURST[1]:.0f} s in: watch for alert_firing, then alert_resolved."
    )
    daemon = subprocess.Popen([sys.executable, "-m", "logscan", "run", "--config", str(config)])
    rng = random.Random(551)
    start = time.time()
    next_report = start + 10
    logs = RUN / "logs"
    me_path = next(iter(sorted(logs.glob("SMTP-Activity-*.log"))))
    try:
        with (
            (logs / "mail.log").open("a") as pf,
            (logs / "mainlog").open("a") as ef,
            me_path.open("a", newline="") as mf,
        ):
            while time.time() - start < DURATION_S and daemon.poll() is None:
                now = time.time()
                burst = BURST[0] <= now - start < BURST[1]
                for _ in range(6 if burst else 2):
                    _append(pf, postfix_lines(rng, now, burst))
                    _append(mf, mailenable_lines(rng, now, burst), crlf=True)
                _append(ef, exim_lines(rng, now))
                if now >= next_report:
                    phase = "551 BURST" if burst else "normal traffic"
                    print(f"\ndemo: t={now - start:.0f}s ({phase}) — from /metrics:\n{_metrics_excerpt()}\n")
                    next_report = now + 15
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    print("demo: done. Re-run the daemon yourself with:")
    print(f"  .venv/bin/logscan run --config {config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
