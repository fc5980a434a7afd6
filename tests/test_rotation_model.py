"""The follower, killed and rotated under at every kind of point, counts each line once (issue 12).

tests/rotation_model.py replays each scenario from its seed; the seeds here are a fixed sample,
`python -m tests.rotation_model MODES RUNS [FIRST_SEED]` runs any others.
"""

from __future__ import annotations

import pytest

from tests.rotation_model import MODES, run

SEEDS = 40


@pytest.mark.parametrize("mode", list(MODES))
def test_kills_and_rotations_at_any_read_count_every_line_once(mode: str) -> None:
    wrong = [r for seed in range(SEEDS) if (r := run(mode, seed))]
    assert not wrong, "\n".join(wrong)
