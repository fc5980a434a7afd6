"""End-to-end: `logscan scan --json` over the sample logs in sample_logs/ must give exactly the
counts in each expected.json, which were derived from an independent record (the SMTP sink,
the client, or the MailEnable generator), never from logscan. See sample_logs/README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sample_logs.tools import expected as exp
from sample_logs.tools import gen_exim, gen_mailenable, gen_postfix

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_logs"
CASES = [
    ("postfix", SAMPLES / "postfix" / "mail.log"),
    ("exim", SAMPLES / "exim" / "mainlog"),
    ("mailenable", SAMPLES / "mailenable" / "SMTP-Activity-261128.log"),
]
KEYS = ("lines", "unparsed", "replies", "enhanced", "deliveries", "rejections")


def drop_zeros(value: Any) -> Any:
    """Zero counts may be absent on either side: remove them (and maps left empty)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            kept = drop_zeros(v)
            if kept not in (0, {}):
                out[k] = kept
        return out
    return value


def scan(fmt: str, log: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "logscan", "scan", "--json", "--format", fmt, str(log)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def expected(log: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((log.parent / "expected.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize(("mta", "log"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("fmt", ["named", "auto"])
def test_scan_matches_expected(mta: str, log: Path, fmt: str) -> None:
    want = expected(log)
    got = scan(mta if fmt == "named" else "auto", log)
    # Every key the contract names is in expected.json, and each must be equal.
    assert set(KEYS) <= set(want), f"{log.parent}/expected.json lacks {set(KEYS) - set(want)}"
    for key in want:
        assert drop_zeros(got.get(key)) == drop_zeros(want[key]), f"{mta} {key} ({fmt} format)"


@pytest.mark.parametrize(("mta", "log"), CASES, ids=[c[0] for c in CASES])
def test_sample_is_sane(mta: str, log: Path) -> None:
    """The sample is the kind of log it claims to be, and big enough to mean something."""
    want = expected(log)
    assert want["lines"] >= 300
    assert want["lines"] == log.read_bytes().count(b"\n")
    # Every sample carries 551s in at least one direction: the alert this project exists for.
    assert any(want["replies"][d].get("551", 0) > 0 for d in ("outbound", "inbound")), mta
    if mta == "mailenable":
        assert b"\r\n" in log.read_bytes()[:200]


@pytest.mark.parametrize("mta", ["postfix", "exim"])
def test_expected_follows_from_the_record(mta: str) -> None:
    """expected.json is what the generator derives from the sink/client records (no hand edits)."""
    derive = gen_postfix.derive if mta == "postfix" else gen_exim.derive
    out = SAMPLES / mta
    assert derive(out) == json.loads((out / "expected.json").read_text(encoding="utf-8"))


def test_mailenable_sample_is_reproducible() -> None:
    """The synthetic MailEnable log and its counts are exactly what the seeded generator writes."""
    w = gen_mailenable.generate(976)
    log = SAMPLES / "mailenable" / "SMTP-Activity-261128.log"
    assert log.read_bytes() == ("\r\n".join(w.rows) + "\r\n").encode("ascii")
    assert gen_mailenable.derive(w.record, exp.count_lines(log)) == expected(log)
