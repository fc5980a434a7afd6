"""Reasons downstream of the parsers (issue 14): counted, saved, exported, the last hour's top
offenders in bounded sketches, /diagnosis, and the diagnosis alerts carry."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from logscan.core.aggregate import Aggregate
from logscan.core.alerts import DEFAULT_RULES, AlertEngine, explain
from logscan.core.diagnosis import (
    FIX,
    MAX_SKETCHES,
    Diagnosis,
    SpaceSaving,
    diagnosis_html,
    diagnosis_json,
)
from logscan.events import Event, EventBatch
from logscan.outputs.metrics import Exposition, LogStatus, make_registry
from logscan.outputs.notify import Notifier
from logscan.outputs.receivers import Receiver
from logscan.parsers.reasons import REASONS, runbook

T0 = 1_790_000_040.0  # a minute boundary + 40 s


def refusal(
    reason: str = "auth_required", *, t: float = T0, code: str = "551", sender: str = "example.com",
    ip: str = "192.0.2.1", direction: str = "inbound", rcpt: str = "", log: str = "me",
) -> Event:  # fmt: skip
    return Event(
        mta="mailenable", log=log, time=t, direction=direction, code=code,  # type: ignore[arg-type]
        status="rejected" if direction == "inbound" else "bounced", stage="mail",
        remote_ip=ip, sender_domain=sender, recipient_domain=rcpt, reason=reason,
    )  # fmt: skip


# -- the sketch ------------------------------------------------------------------------------


def test_space_saving_keeps_the_heavy_hitters_in_fixed_memory() -> None:
    s = SpaceSaving(40)
    for i in range(20_000):
        s.add(f"spoofed{i}.example")  # a flood of one-off domains
        if i % 4 == 0:
            s.add("heavy.example")
        if i % 10 == 0:
            s.add("second.example")
    assert len(s.counts) == 40
    ranked = sorted(s.counts.items(), key=lambda kv: -kv[1])
    assert [k for k, _ in ranked[:2]] == ["heavy.example", "second.example"]
    # Upper bounds, never below the true counts.
    assert s.counts["heavy.example"] >= 5000
    assert s.counts["second.example"] >= 2000


def test_offenders_are_per_reason_and_bounded_whatever_the_input() -> None:
    d = Diagnosis()
    for i in range(5000):
        d.add(refusal("auth_required", sender=f"d{i}.example", ip=f"198.51.{i // 256}.{i % 256}"))
        d.add(refusal("auth_required", sender="example.com", ip="192.0.2.9"))
        d.add(refusal("relay_denied", sender="relay.example"))
    got = d.offenders("me", "inbound", "551", "auth_required", 3)
    assert got["sender_domain"][0][0] == "example.com"
    assert got["sender_domain"][0][1] >= 5000
    assert got["client_ip"][0][0] == "192.0.2.9"
    assert d.offenders("me", "inbound", "551", "relay_denied")["sender_domain"] == [("relay.example", 5000)]
    sketches = [sk for slot in d._slots.values() for group in slot.values() for sk in group]
    assert all(len(sk.counts) <= d.capacity for sk in sketches)


def test_a_flood_of_invented_codes_folds_into_the_class() -> None:
    d = Diagnosis()
    for code in range(400, 600):
        for reason in REASONS:
            d.add(refusal(reason, code=str(code), sender=f"x{code}.example"))
    assert max(len(s) for s in d._slots.values()) <= MAX_SKETCHES + 2 * len(REASONS)


def test_only_the_last_hour_of_event_time_is_kept() -> None:
    d = Diagnosis(window_s=3600)
    d.add(refusal("auth_required", t=T0, sender="old.example"))
    d.add(refusal("relay_denied", t=T0 + 7200, sender="new.example"))
    counts = d.counts()
    assert [k[4] for k in counts] == ["relay_denied"]
    assert d.offenders("me", "inbound", "551", "auth_required")["sender_domain"] == []
    d.add(refusal("auth_required", t=T0, sender="late.example"))  # older than the window: not kept
    assert [k[4] for k in d.counts()] == ["relay_denied"]


def test_why_names_the_dominant_reason_with_its_share_offenders_and_fix() -> None:
    d = Diagnosis()
    for _ in range(78):
        d.add(refusal("auth_required", sender="example.com"))
    for _ in range(22):
        d.add(refusal("sender_mismatch", sender="example.org"))
    d.add(refusal("relay_denied", code="554"))  # another code: not part of the 551s
    why = d.why("me", "inbound", "551", T0 - 300, T0 + 60)
    assert why is not None
    assert (why.reason, why.count, why.total) == ("auth_required", 78, 100)
    assert why.reasons == (("auth_required", 78), ("sender_mismatch", 22))
    line = why.line()
    assert line.startswith("78% auth_required: ")
    assert "My server requires authentication" in line
    assert "top sender domains example.com (78)" in line
    assert "top client ips 192.0.2.1 (78)" in line
    assert why.runbook == "docs/runbooks/auth_required.md"
    assert d.why("me", "inbound", "551", T0 + 600, T0 + 900) is None
    assert d.why("other-log", "inbound", "551", T0 - 300, T0 + 60) is None


def test_the_diagnosis_document_and_landing_fragment_escape_remote_text() -> None:
    d = Diagnosis()
    d.add(refusal("blocklisted", sender="<script>.example"))
    doc = json.loads(diagnosis_json(d))
    assert doc["window_s"] == 3600
    (row,) = doc["codes"]
    assert (row["code"], row["direction"], row["count"]) == ("551", "inbound", 1)
    (r,) = row["reasons"]
    assert r["reason"] == "blocklisted"
    assert r["runbook"] == "docs/runbooks/blocklisted.md"
    assert r["offenders"]["sender_domain"] == [{"value": "<script>.example", "count": 1}]
    html = diagnosis_html(doc)
    assert "<script>" not in html
    assert "&lt;script&gt;.example" in html


# -- aggregate, state, metrics ---------------------------------------------------------------


def test_reasons_are_counted_saved_and_restored() -> None:
    agg = Aggregate()
    agg.add(refusal("auth_required"))
    agg.add(refusal("auth_required"))
    agg.add(refusal("", code="550"))  # a refusal whose parser set no reason: its codes decide
    agg.add(refusal("", code="535"))
    agg.add(msgspec.structs.replace(refusal(""), code="250", status=""))
    assert agg.reasons == {
        ("mailenable", "me", "inbound", "551", "auth_required"): 2,
        ("mailenable", "me", "inbound", "550", "other"): 1,
        ("mailenable", "me", "inbound", "535", "auth_failed"): 1,
    }
    data = msgspec.json.decode(msgspec.json.encode(agg.to_dict()))
    assert Aggregate.from_dict(data).reasons == agg.reasons
    del data["reasons"]  # a state file written before issue 14
    assert Aggregate.from_dict(data).reasons == {}


def test_a_batch_folds_in_its_refusals_as_add_would() -> None:
    ev = msgspec.structs.replace(
        refusal("relay_denied", code="554", sender="x.example", ip="192.0.2.3"), mta="postfix", log="x"
    )
    by_add = Aggregate()
    by_add.add(ev)
    by_batch = Aggregate()
    batch = EventBatch(
        "postfix", "x", 1, {("inbound", "554", ""): 1}, {}, {("mail", "554"): 1}, ["x.example"],
        [("inbound", "5xx")], {}, {}, T0, {("inbound", "554", "relay_denied"): 1},
        [(int(T0 // 60), "inbound", "554", "relay_denied", "x.example", "192.0.2.3", "")],
    )  # fmt: skip
    assert by_batch.add_batch(batch) is True
    assert by_batch.to_dict() == by_add.to_dict()
    assert by_batch.diagnosis.document() == by_add.diagnosis.document()


def test_reasons_are_exported_with_551_series_from_the_start_and_bad_values_folded() -> None:
    agg = Aggregate()
    agg.add(refusal("relay_denied", code="554"))
    agg.reasons[("mailenable", "me", "inbound", "551", "made_up")] = 3  # not a reason: folded
    exp = Exposition(agg.snapshot(T0), logs=(LogStatus("me", "mailenable", True),))
    text = generate_latest(make_registry(lambda: exp, process_metrics=False)).decode()
    got = {
        (s.labels["direction"], s.labels["code"], s.labels["reason"]): s.value
        for fam in text_string_to_metric_families(text)
        if fam.name == "logscan_smtp_reply_reasons"
        for s in fam.samples
    }
    assert got[("inbound", "554", "relay_denied")] == 1
    assert got[("inbound", "551", "other")] == 3
    assert got[("outbound", "551", "auth_required")] == 0
    assert {r for d, c, r in got if c == "551" and d == "outbound"} == set(REASONS)
    assert 'logscan_export_folded_total{label="reason",metric="logscan_smtp_reply_reasons_total"' in text


# -- alerts ----------------------------------------------------------------------------------


def test_a_firing_551_alert_carries_the_diagnosis_to_alertmanager_and_webhooks() -> None:
    agg = Aggregate()
    engine = AlertEngine(DEFAULT_RULES)
    base = 1_790_000_000.0
    for minute in range(3 * 60):  # quiet hours: a few accepted replies, no 551
        ok = msgspec.structs.replace(refusal(""), time=base + minute * 60, code="250", status="")
        engine.observe(ok)
        agg.add(ok)
    burst = base + 3 * 3600
    for i in range(400):
        ev = refusal("auth_required" if i % 10 < 8 else "sender_mismatch", t=burst + i * 1.5)
        engine.observe(ev)
        agg.add(ev)
    transitions = engine.advance(burst + 900)
    firing = [explain(tr, agg.diagnosis) for tr in transitions if tr.state == "firing"]
    assert firing, transitions
    why = firing[0].why
    assert why is not None
    assert why.reason == "auth_required"
    assert 0.75 <= why.share <= 0.85
    notifier = Notifier([], "mx1")
    am = json.loads(notifier.payload(Receiver(name="am", url="http://127.0.0.1:1/"), [firing[0]], burst))
    ann = am[0]["annotations"]
    assert ann["reason"] == "auth_required"
    assert ann["runbook_url"] == "docs/runbooks/auth_required.md"
    assert ann["diagnosis"].startswith(f"{why.share:.0%} auth_required: clients send as a local domain")
    assert "top sender domains example.com" in ann["diagnosis"]
    assert "auth_required" in ann["summary"]
    hook = Receiver(name="hook", url="http://127.0.0.1:1/", kind="webhook")
    doc = json.loads(notifier.payload(hook, [firing[0]], burst))
    diag = doc["alerts"][0]["diagnosis"]
    assert diag["reason"] == "auth_required"
    top = {"kind": "sender_domain", "value": "example.com", "count": why.offenders[0][2]}
    assert diag["offenders"][0] == top
    notifier.close(0.1)


# -- runbooks --------------------------------------------------------------------------------


def test_every_reason_has_a_runbook_with_the_fix_for_each_mta_and_a_warning() -> None:
    root = Path(__file__).resolve().parent.parent
    index = (root / "docs" / "runbooks" / "README.md").read_text()
    for reason in REASONS:
        path = root / runbook(reason)
        text = path.read_text()
        assert f"]({reason}.md)" in index
        for mta in ("MailEnable", "Postfix", "Exim"):
            assert mta in text, (reason, mta)
        assert "## Do not" in text, reason
        assert (reason, "inbound") in FIX
        assert (reason, "outbound") in FIX
