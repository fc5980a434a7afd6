"""The `logscan` command as an operator runs it: real subprocesses, real files."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from logscan import __version__
from logscan.core.aggregate import paths_text
from logscan.parsers import scan_paths_text
from tests.test_daemon import Writer, postfix_line

REPO = Path(__file__).resolve().parent.parent


def logscan(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logscan", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=REPO,
        timeout=120,
    )


def test_version_and_help() -> None:
    out = logscan("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"logscan {__version__} ({paths_text()})"
    assert paths_text().endswith(", sketches: C")
    assert "postfix: C" in scan_paths_text()
    assert "mailenable: C" in scan_paths_text()
    assert "Python bulk" not in scan_paths_text()
    helped = logscan("--help")
    assert helped.returncode == 0
    for word in ("run", "scan", "parse", "check-config", "exit codes"):
        assert word in helped.stdout


def test_scan_json_counts_plain_and_gzip_alike(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    w = Writer(log)
    w.append(300)
    with log.open("a") as f:
        f.write("Nov 29 07:00:00 mx1 dovecot[77]: imap-login: Login: user=<x>\n")  # a foreign line
        f.write("this is not a log line at all\n")
    gz = tmp_path / "mail.log.2.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    for path in (log, gz):
        out = logscan("scan", "--json", str(path))
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["lines"] == 302
        assert doc["unparsed"] == 1
        assert doc["ignored"] == 1
        assert doc["deliveries"]["sent"] == w.truth["sent"]
        assert doc["deliveries"]["bounced"] == w.truth["bounced"]
        assert doc["replies"]["outbound"] == {"250": w.truth["sent"], "551": w.truth["bounced"]}
        assert doc["enhanced"]["outbound"] == {"2.0.0": w.truth["sent"], "5.1.1": w.truth["bounced"]}
        assert doc["files"][0]["format"] == "postfix"
        assert doc["unparsed_examples"]["no-timestamp"] == ["this is not a log line at all"]


def test_wrong_format_is_visible_not_silent(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    Writer(log).append(50)
    out = logscan("scan", "--json", "--format", "exim", str(log))
    assert out.returncode == 0
    doc = json.loads(out.stdout)
    assert doc["unparsed"] == 50
    assert "not understood as exim" in out.stderr
    text = logscan("scan", "--format", "exim", str(log))
    assert "Not understood" in text.stdout


def test_scan_text_summary_and_missing_file(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    w = Writer(log)
    w.append(100)
    out = logscan("scan", str(log), str(tmp_path / "nope.log"))
    assert out.returncode == 1
    assert "nope.log" in out.stderr
    assert f"sent {w.truth['sent']}" in out.stdout
    assert "551:" in out.stdout
    assert "example.net" in out.stdout


def test_scan_alerts_replays_a_burst_with_start_and_end(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    lines = [postfix_line(i * 100, "sent") for i in range(1, 600)]  # 1 s apart, 10 minutes
    lines += [postfix_line(60_000 + i * 10, "bounced") for i in range(60)]  # 60 bounces in 6 s
    lines += [postfix_line(61_000 + i * 100, "sent") for i in range(900)]  # 15 quiet minutes
    log.write_text("".join(line + "\n" for line in lines))
    out = logscan("scan", "--json", "--alerts", str(log))
    assert out.returncode == 0, out.stderr
    alerts = json.loads(out.stdout)["alerts"]
    assert [a["alert"] for a in alerts] == ["smtp_551_outbound_spike"]
    assert alerts[0]["labels"]["code"] == "551"
    assert alerts[0]["start"] is not None
    assert alerts[0]["end"] is not None
    assert alerts[0]["end"] > alerts[0]["start"]
    text = logscan("scan", "--alerts", str(log))
    assert "smtp_551_outbound_spike" in text.stdout


def test_parse_shows_every_field_or_the_reason() -> None:
    line = postfix_line(7, "bounced")
    out = logscan("parse", "--json", line)
    doc = json.loads(out.stdout)
    assert doc["parser"] == "postfix"
    assert doc["result"] == "parsed"
    (event,) = doc["events"]
    assert event["code"] == "551"
    assert event["enhanced"] == "5.1.1"
    assert event["status"] == "bounced"
    assert event["stage"] == "rcpt"
    assert event["recipient_domain"] == "example.net"
    many = logscan("parse", stdin="garbage line\n" + line + "\n")
    assert "reason:" in many.stdout
    assert "code: 551" in many.stdout


def test_check_config_exit_codes(tmp_path: Path) -> None:
    assert logscan("check-config", "--config", str(REPO / "config" / "logscan.toml")).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[[logs]]\nname = "x"\npath = "/x"\nformat = "qmail"\n')
    out = logscan("check-config", "--config", str(bad))
    assert out.returncode == 2
    assert str(bad) in out.stderr
    assert "logs[0].format" in out.stderr


def test_scan_splits_lines_on_lf_only_like_the_daemon(tmp_path: Path) -> None:
    """A lone CR inside a CRLF MailEnable row (a client's bare CR echoed in the log) is no new row."""
    row = (
        "11/28/26 10:00:00\tSMTP-IN\t9E107D9D372BB6826BD81D3542A419D6.MAI\t1320\t198.51.100.7\tMAIL\t"
        "MAIL FROM:<a@example.com>\r551 fake\t551 Sender address is not valid for your login\t60\t40\t\t\r\n"
    )
    log = tmp_path / "SMTP-Activity-261128.log"
    log.write_bytes(row.encode() * 3)
    doc = json.loads(logscan("scan", "--json", "--format", "mailenable", str(log)).stdout)
    assert doc["lines"] == 3
    assert doc["unparsed"] == 0
    assert doc["replies"]["inbound"] == {"551": 3}


def test_parse_shows_the_reason_of_a_refusal() -> None:
    line = postfix_line(7, "bounced")
    (event,) = json.loads(logscan("parse", "--json", line).stdout)["events"]
    assert event["reason"] == "unknown_recipient"  # "<u@example.net>: User not local", no forward-path
    assert "reason: unknown_recipient" in logscan("parse", line).stdout


def test_scan_says_why_per_code_with_shares_and_offenders() -> None:
    samples = [
        REPO / "sample_logs" / "mailenable" / "SMTP-Activity-261128.log",
        REPO / "sample_logs" / "exim" / "mainlog",
    ]
    doc = json.loads(logscan("scan", "--json", *map(str, samples)).stdout)
    why = {(row["direction"], row["code"]): row for row in doc["why"]}
    inbound_551 = why[("inbound", "551")]
    reasons = {r["reason"]: r for r in inbound_551["reasons"]}
    assert set(reasons) == {"sender_mismatch", "auth_required"}
    assert sum(r["count"] for r in reasons.values()) == inbound_551["count"]
    assert sum(r["share"] for r in reasons.values()) == 1.0
    assert reasons["auth_required"]["offenders"]["sender_domain"]
    assert reasons["auth_required"]["offenders"]["client_ip"]
    assert reasons["auth_required"]["runbook"] == "docs/runbooks/auth_required.md"
    assert why[("inbound", "535")]["reasons"][0]["reason"] == "auth_failed"
    text = logscan("scan", *map(str, samples)).stdout
    assert "Why (per code and direction" in text
    assert "  551 inbound: " in text
    assert "    auth_required: " in text
