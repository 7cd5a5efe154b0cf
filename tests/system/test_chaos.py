"""The short chaos run of the test command (`make chaos` runs the long one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import run_chaos


# Kills and faults, then two audit walks after the calm: longer than the suite's usual bound.
@pytest.mark.timeout(420)
def test_chaos_with_kills_and_faults_ends_with_zero_mismatches(tmp_path: Path) -> None:
    result = run_chaos(kills=5, faults=100, seed=11, workdir=tmp_path, log=lambda _: None)

    print(result.summary())
    assert result.kills >= 5
    assert sum(result.faults.values()) >= 100
    assert len(result.faults) >= 10, "many kinds of faults, not one"
    assert result.runs_checked > 1000
    assert result.mismatches == []
