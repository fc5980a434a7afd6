"""State file: atomic replace, corrupt files kept aside, versions, a kill during save."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from logscan.app.config import Config, parse_config
from logscan.app.persistence import Restored, StateStore
from logscan.core.aggregate import Aggregate
from logscan.core.alerts import DEFAULT_RULES, AlertEngine
from logscan.core.state import STATE_VERSION, DaemonState, LoadedState, load_state, save_state
from logscan.events import Event
from logscan.sources import logfiles
from logscan.sources.follower import Follower


def test_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    data = {"logs": {"mail": {"offset": 12, "fp": "ab"}}, "counters": [1, 2.5, "x"]}
    save_state(p, data)
    assert load_state(p) == LoadedState(data, "")
    assert json.loads(p.read_text())["version"] == STATE_VERSION
    assert oct(p.stat().st_mode & 0o777) == "0o600"
    assert [x.name for x in tmp_path.iterdir()] == ["state.json"]  # no temp file left behind


def test_follower_checkpoint_survives_the_file(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_bytes(b"a\nb\n")
    f = Follower("m", str(log), start_at="beginning")
    assert f.poll() == [b"a", b"b"]
    save_state(tmp_path / "state.json", {"mail": f.checkpoint()})
    with log.open("ab") as fh:
        fh.write(b"c\n")
    loaded = load_state(tmp_path / "state.json")
    assert loaded.data is not None
    assert Follower("m", str(log), saved=loaded.data["mail"]).poll() == [b"c"]


def test_missing(tmp_path: Path) -> None:
    assert load_state(tmp_path / "nope.json") == LoadedState(None, "missing")


def test_corrupt_file_is_set_aside_and_numbered(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    for n in (1, 2):
        p.write_bytes(b'{"version": 1, "data": {"trunc')
        got = load_state(p)
        assert got.data is None
        assert got.problem.startswith("corrupt: ")
        assert f"state.json.corrupt-{n}" in got.problem
        assert not p.exists()
        assert (tmp_path / f"state.json.corrupt-{n}").read_bytes().startswith(b'{"version"')


def test_empty_and_wrong_shape_are_corrupt(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    p.write_bytes(b"")
    assert load_state(p).problem.startswith("corrupt")
    p.write_bytes(b"[1, 2]")
    assert load_state(p).problem.startswith("corrupt: not a logscan state document")
    p.write_bytes(b'{"version": 1, "data": 5}')
    assert load_state(p).problem.startswith("corrupt: 'data' is not an object")


def test_unsupported_version_is_left_in_place(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    p.write_bytes(b'{"version": 7, "data": {}}')
    assert load_state(p) == LoadedState(None, "unsupported version 7")
    assert p.exists()


def test_unreadable_path_is_reported_not_raised(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    p.mkdir()
    got = load_state(p)
    assert got.data is None
    assert got.problem.startswith("unreadable: ")
    assert p.is_dir()


def test_kill_during_saves_leaves_old_or_new_never_half(tmp_path: Path) -> None:
    """SIGKILL a process that saves in a loop: the file always loads as one complete version."""
    p = tmp_path / "state.json"
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from logscan.core.state import save_state
        p = Path({str(p)!r})
        big = "x" * 200_000
        i = 0
        while True:
            save_state(p, {{"i": i, "pad": big, "check": i * 7}})
            if i == 3:
                print("ready", flush=True)
            i += 1
    """)
    seen = set()
    for delay in (0.0, 0.01, 0.03, 0.1, 0.2):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                cwd=str(Path(__file__).parent.parent))
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(delay)
        proc.kill()
        proc.wait()
        got = load_state(p)
        assert got.problem == ""
        assert got.data is not None
        assert got.data["check"] == got.data["i"] * 7
        assert len(got.data["pad"]) == 200_000
        seen.add(got.data["i"])
    assert not [x for x in tmp_path.iterdir() if "corrupt" in x.name]
    assert len(seen) > 1  # the kills landed at different points of the save loop


# ---------------------------------------------------------------- hostile state files (issue 12)

def _real_state(tmp_path: Path) -> dict[str, Any]:
    """A state file as the daemon writes it: a followed log, counters, alert series."""
    log = tmp_path / "mail.log"
    log.write_bytes(b"a\nb\n")
    f = Follower("mx", str(log), start_at="beginning")
    f.poll()
    agg = Aggregate()
    engine = AlertEngine(DEFAULT_RULES)
    for i in range(30):
        e = Event(mta="postfix", log="mx", time=1_790_000_000.0 + i, direction="outbound",
                  code="551" if i % 3 else "250", enhanced="5.1.1" if i % 3 else "2.0.0",
                  status="bounced" if i % 3 else "sent", recipient_domain=f"d{i % 4}.example", delay_s=1.5)
        agg.add(e)
        engine.observe(e)
    agg.count_lines("mx", "parsed", 30)
    engine.advance(1_790_000_100.0)
    return {"version": 1, "saved_at": 1_790_000_100.0, "logs": {"mx": f.checkpoint()},
            "formats": {"mx": "postfix"}, "aggregate": agg.to_dict(), "alerts": engine.to_dict()}


def _config(tmp_path: Path) -> Config:
    return parse_config(f'[[logs]]\nname = "mx"\npath = "{tmp_path / "mail.log"}"\n')


def _restore(tmp_path: Path, data: Any) -> tuple[Restored, StateStore]:
    store = StateStore(str(tmp_path / "state"))
    store.prepare()
    # JSON has no infinity, but 1e999 parses as one
    store.path.write_bytes(json.dumps({"version": 1, "data": data}).replace('"__INF__"', "1e999").encode())
    return store.restore(_config(tmp_path)), store


def _never_negative(r: Restored) -> None:
    if r.aggregate is not None:
        snap = r.aggregate.snapshot(1_790_000_100.0)
        for table in (snap.replies, snap.deliveries, snap.rejections, snap.lines, snap.domains):
            assert all(v >= 0 for v in table.values())


def test_a_real_state_file_is_valid_and_restores(tmp_path: Path) -> None:
    r, store = _restore(tmp_path, _real_state(tmp_path))
    assert r.aggregate is not None
    assert r.engine is not None
    assert set(r.logs) == {"mx"}
    assert store.path.exists()


@pytest.mark.parametrize(("where", "value", "reason"), [
    (("logs",), [], "Expected `object`, got `array` - at `data.logs`"),
    (("alerts",), "oops", "at `data.alerts`"),
    (("aggregate", "replies", 0, 5), -3, "Expected `int` >= 0"),
    (("aggregate", "lines", 0, 2), "7", "Expected `int`, got `str`"),
    (("logs", "mx", "files", 0, "offset"), -1, "at `data.logs[...].files[0].offset`"),
    (("logs", "mx", "bytes_read"), "__INF__", "Number out of range"),
    (("aggregate", "last_event", "mx"), "__INF__", "Number out of range"),
    (("aggregate", "top"), [], "at `data.aggregate.top`"),
    (("aggregate",), None, "at `data.aggregate`"),
])
def test_wrong_types_anywhere_are_set_aside_with_the_place(
    tmp_path: Path, where: tuple[Any, ...], value: Any, reason: str
) -> None:
    data = _real_state(tmp_path)
    node = data
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    r, store = _restore(tmp_path, data)
    assert r == Restored()
    assert not store.path.exists()
    aside = store.path.with_name("state.json.corrupt-1")
    assert aside.exists()
    got = load_state(aside, DaemonState)
    assert reason in got.problem


def test_fuzzed_state_files_never_crash_and_never_go_negative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FUZZ_RUNS random mutations of a real state file: each restores or is set aside, no raise."""
    monkeypatch.setattr(logfiles, "RELOOK_S", (0.0,))  # a fuzzed record names no file: don't wait
    base = json.dumps({"version": 1, "data": _real_state(tmp_path)}).encode()
    rng = random.Random(12)
    cfg = _config(tmp_path)
    store = StateStore(str(tmp_path / "state"))
    store.prepare()
    outcomes: Counter[str] = Counter()
    for _ in range(FUZZ_RUNS):
        blob = _mutate(rng, base)
        store.path.write_bytes(blob)
        r = store.restore(cfg)
        _never_negative(r)
        for name, saved in r.logs.items():  # a valid but odd position still opens, never raises
            Follower(name, str(tmp_path / "mail.log"), saved=saved).poll()
        outcomes["restored" if r.aggregate is not None else "set aside"] += 1
        for p in store.path.parent.glob("state.json.corrupt-*"):
            p.unlink()
    assert outcomes["restored"] > 0
    assert outcomes["set aside"] > FUZZ_RUNS // 2


FUZZ_RUNS = 5000
_REPLACEMENTS = [b"-1", b"1e999", b'"x"', b"[]", b"{}", b"null", b"true", b"-0.5", b"99999999999999999999"]


def _mutate(rng: random.Random, blob: bytes) -> bytes:
    """Byte flips, cuts, and JSON-aware swaps of a number or a value for another type."""
    kind = rng.randrange(4)
    if kind == 0:
        return blob[: rng.randrange(len(blob))]
    if kind == 1:
        b = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 2:
        spots = [m.span() for m in re.finditer(rb"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?", blob)]
        a, z = rng.choice(spots)
        return blob[:a] + rng.choice(_REPLACEMENTS) + blob[z:]
    spots = [m.span() for m in re.finditer(rb'(\[|\{|"[^"]*")', blob)]
    a, _ = rng.choice(spots)
    end = _value_end(blob, a)
    return blob[:a] + rng.choice(_REPLACEMENTS) + blob[end:]


def _value_end(blob: bytes, a: int) -> int:
    if blob[a : a + 1] == b'"':
        return blob.index(b'"', a + 1) + 1
    depth, i, in_str = 0, a, False
    while i < len(blob):
        c = blob[i : i + 1]
        if in_str:
            in_str = c != b'"'
        elif c == b'"':
            in_str = True
        elif c in b"[{":
            depth += 1
        elif c in b"]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(blob)
