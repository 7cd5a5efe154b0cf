"""Answers a real API may give where its docs promise nothing, for the variants that test them:
a single-run endpoint that is not where a client guesses, and a platform node whose clock runs
ahead, so that some runs come dated in the future."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from exporter.simulator.records import SimRun

# How far ahead a fast node's clock runs, and which runs it handled (one in SKEWED_EVERY).
CLOCK_AHEAD = timedelta(hours=1)
SKEWED_EVERY = 20
TIMESTAMP_FIELDS = frozenset(
    {
        "createdAt",
        "updatedAt",
        "startedAt",
        "completedAt",
        "initialRunAt",
        "startTime",
        "endTime",
        "reviewedAt",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
        "ended_at",
    }
)


def skewed(run_id: str) -> bool:
    """Whether the fast node handled this run (stable for the run's life)."""
    digest = hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:4], "big") % SKEWED_EVERY == 0


def listed_time(run: SimRun) -> datetime:
    """When a run was created, as an API whose fast node dated it shows it (and sorts by it)."""
    return run.created_at + CLOCK_AHEAD if skewed(run.id) else run.created_at


def dated_ahead(body: Any) -> Any:
    """The answer with every skewed run's timestamps (full ISO instants) an hour ahead; runs are
    found as objects with an `id` wherever they sit (a list page's items, a bare run)."""
    if isinstance(body, list):
        return [dated_ahead(item) for item in body]
    if not isinstance(body, dict):
        return body
    shifted = {key: dated_ahead(value) for key, value in body.items()}
    run_id = body.get("id")
    if isinstance(run_id, str) and skewed(run_id) and TIMESTAMP_FIELDS & body.keys():
        for key in TIMESTAMP_FIELDS & body.keys():
            value = body[key]
            if isinstance(value, str) and "T" in value:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00")) + CLOCK_AHEAD
                shifted[key] = moment.isoformat().replace("+00:00", "Z")
    return shifted
