"""When collection runs: one APScheduler job per source, and one that delivers queued alerts.

A source's cycle never overlaps itself (`max_instances=1`). A cycle that overruns its interval
makes the runs it missed collapse into one (`coalesce`), started late rather than skipped if it
is within one interval (`misfire_grace_time`). Jitter keeps sources that share an interval from
calling their APIs in lockstep.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from datetime import timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from exporter.collect import utc_now

ALERTS_JOB = "alerts:flush"
# Cycles of different sources run side by side up to this many at once.
WORKERS = 16


def source_job(name: str) -> str:
    return f"collect:{name}"


class Schedule:
    def __init__(self) -> None:
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(WORKERS)},
            timezone="UTC",
        )

    def start(self) -> None:
        self._scheduler.start()

    def collect(
        self,
        name: str,
        cycle: Callable[[str], object],
        *,
        interval: timedelta,
        jitter_ratio: float,
        delay: float,
    ) -> None:
        """Runs `cycle(name)` every `interval`, the first time `delay` seconds from now; a job of
        the same source is replaced."""
        seconds = interval.total_seconds()
        self._scheduler.add_job(
            cycle,
            IntervalTrigger(seconds=seconds, jitter=seconds * jitter_ratio),
            args=[name],
            id=source_job(name),
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, math.ceil(seconds)),  # whole seconds, at least one
            # Start at once, a little apart, rather than one interval from now.
            next_run_time=utc_now() + timedelta(seconds=delay),
        )

    def stop_collecting(self, name: str) -> None:
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(source_job(name))

    def deliver_alerts(self, flush: Callable[[], object], every: timedelta | None) -> None:
        """Flushes the alert queue every `every`; None: no agent, no job."""
        if every is None:
            with contextlib.suppress(JobLookupError):
                self._scheduler.remove_job(ALERTS_JOB)
            return
        self._scheduler.add_job(
            flush,
            IntervalTrigger(seconds=every.total_seconds()),
            id=ALERTS_JOB,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            next_run_time=utc_now() + timedelta(seconds=1),
        )

    def shutdown(self) -> None:
        """Stops starting jobs and waits for the running ones."""
        self._scheduler.shutdown(wait=True)
