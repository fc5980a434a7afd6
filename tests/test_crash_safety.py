"""kill -9 at random moments, with real logrotate: no line lost, none counted twice (issue 12).

Each mode runs KILLS start/kill cycles of the real daemon (forked, see tests/crash_campaign.py):
kills land 0-0.4 s after a start (mid-start, mid-rotation, mid-save), and after every tenth kill
(and some others) the log rotates while the daemon is down (up to three times in a row). The
racing runs also rotate while the daemon restarts and scans the folder, with and without a banner
every file starts with.
`python -m tests.crash_campaign MODE KILLS [SEED] [banner] [racing]` runs more
(docs/decisions/0013).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.crash_campaign import MODES, campaign

KILLS = 50
RACING_KILLS = 30


def test_logrotate_is_installed() -> None:
    assert shutil.which("logrotate"), "logrotate binary missing: apt-get install -y logrotate"


@pytest.mark.parametrize("mode", list(MODES))
def test_random_kills_lose_no_line_and_count_none_twice(tmp_path: Path, mode: str) -> None:
    r = campaign(tmp_path, mode, KILLS, seed=len(mode), banner=False)
    print(r.line())  # shown with -s; the numbers of the closing note
    assert r.kills == KILLS
    assert r.rotations >= 5
    assert r.rotations_while_down >= KILLS // 10
    assert r.exit_codes == [0]
    log = (tmp_path / "daemon.out").read_text()
    assert r.counted == r.written, log[-3000:]


# With `banner`, every file starts with the same 890 bytes: content alone cannot tell them apart.
@pytest.mark.parametrize("banner", [False, True], ids=["plain", "banner"])
@pytest.mark.parametrize("mode", ["copytruncate", "delaycompress"])
def test_rotations_racing_the_restart_scan_lose_no_line_and_count_none_twice(
        tmp_path: Path, mode: str, banner: bool) -> None:
    r = campaign(tmp_path, mode, RACING_KILLS, seed=len(mode) + 1, banner=banner, racing=True)
    print(r.line())
    assert r.kills == RACING_KILLS
    assert r.rotations >= 5
    assert r.exit_codes == [0]
    log = (tmp_path / "daemon.out").read_text()
    assert r.counted == r.written, log[-3000:]
