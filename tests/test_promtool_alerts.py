"""The shipped Prometheus alert rules and Alertmanager example, checked by promtool and amtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "config" / "prometheus" / "logscan-alerts.yml"
RULE_TESTS = ROOT / "config" / "prometheus" / "logscan-alerts.test.yml"
# The queue rule's every selector that leaves the hold queue out.
HOLD_OUT = """\
            logscan_queue_messages{queue!="hold"} - logscan_queue_messages{queue!="hold"} offset 30m >= 100
          )
          and
          deriv(logscan_queue_messages{queue!="hold"}[15m]) > 0"""
AM_CONFIG = ROOT / "config" / "alertmanager" / "alertmanager.yml"


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: install it with `apt-get install {package}`")
    return path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_alert_rules_pass_promtool_check() -> None:
    res = run(tool("promtool", "prometheus"), "check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 11 rules found" in res.stdout


def test_alert_rules_unit_tests_pass() -> None:
    res = run(tool("promtool", "prometheus"), "test", "rules", str(RULE_TESTS))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [
        (">= 3 * (", ">= 0 * (", "without the baseline test the steady 4/min level on mx2 fires"),
        (">= 0.05", ">= 0.04", "with a 4% share the drowned 551s on log busy fire"),
        ("[5m])) >= 10", "[5m])) >= 8", "with 8 as the count the trickle of 9 per 5m on log quiet fires"),
        ("for: 2m\n", "for: 0m\n", "without for: 2m the burst fires while still pending at 122m"),
        # LogscanAuthFailureSurge
        ("[1h] offset 10m))", "[1h] offset 10m)) * 0", "with no baseline mx2's steady guessing fires"),
        ("[10m])) >= 30", "[10m])) >= 20", "with 20 as the count the small rise on log quiet fires"),
        ("for: 5m\n        keep_firing_for: 5m", "for: 0m\n        keep_firing_for: 5m",
         "without for: 5m the surge fires while still pending at 127m"),
        # LogscanMailQueueGrowing
        (HOLD_OUT, HOLD_OUT.replace('!="hold"', '!=""'), "counting the hold queue, mx2's mail fires"),
        ("offset 30m >= 100", "offset 30m >= 200", "with 200 the growing queue of mx1 does not fire"),
        (
            "reason=\"auth_required\"}[1h] offset 10m",
            "reason=\"auth_required\"}[1h] offset 10m) * 0 + 0 * (0",
            "without the auth_required baseline, mx2's steady level fires",
        ),
    ],
)
def test_unit_tests_catch_a_weakened_rule(tmp_path: Path, old: str, new: str, why: str) -> None:
    """Each gate of the 551 rule is pinned by a promtool test: weaken it and a test fails."""
    text = RULES.read_text()
    assert old in text
    (tmp_path / RULES.name).write_text(text.replace(old, new, 1))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    res = run(tool("promtool", "prometheus"), "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert res.returncode != 0, f"promtool tests still pass although {why}:\n{res.stdout}"


def test_alertmanager_example_config_is_valid() -> None:
    res = run(tool("amtool", "prometheus-alertmanager"), "check-config", str(AM_CONFIG))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=page", "alertname=smtp_551_outbound_spike"], "oncall-pager,mail-team"),
        (["severity=page", "alertname=LogscanSmtp551Spike"], "oncall-pager,mail-team"),
        (["severity=warning", "alertname=LogscanLogStale"], "mail-team"),
    ],
)
def test_alertmanager_example_routes_pages_to_on_call(labels: list[str], receivers: str) -> None:
    amtool = tool("amtool", "prometheus-alertmanager")
    res = run(amtool, "config", "routes", "test", f"--config.file={AM_CONFIG}", *labels)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == receivers
