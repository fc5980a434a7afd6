"""State file: atomic replace, corrupt files kept aside, versions, a kill during save."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from logscan.core.state import STATE_VERSION, LoadedState, load_state, save_state
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
