"""One line per source per cycle, for a person watching a terminal (the demo):
`plextera-demo: 142 finished (+6), 3 failed (+1), 14 active`."""

from __future__ import annotations

from collections import Counter

from exporter.core.model import RunStatus


def cycle_summary(source: str, totals: Counter[str], before: Counter[str], active: int) -> str:
    """`totals`: runs counted by status since the start, `before` the same before this cycle."""
    finished = sum(totals.values())
    failed = totals[RunStatus.FAILED.value]
    new_finished = finished - sum(before.values())
    new_failed = failed - before[RunStatus.FAILED.value]
    return (
        f"{source}: {finished} finished (+{new_finished}), {failed} failed (+{new_failed}), "
        f"{active} active"
    )
