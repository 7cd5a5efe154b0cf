"""When collection runs: one APScheduler job per source, and one that delivers queued alerts.

A source's cycle never overlaps itself (`max_instances=1`). A cycle that overruns its interval
makes the runs it missed collapse into one (`coalesce`), started late rather than skipped if it
is within one interval (`misfire_grace_time`). Jitter keeps sources that share an interval from
calling their APIs in lockstep.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from exporter.collection.cycle import utc_now
from exporter.core.logs import get_logger

ALERTS_JOB = "alerts:flush"
# Cycles of different sources run side by side up to this many at once.
WORKERS = 16


_SOURCE_JOB = "collect:"
log = get_logger("exporter.schedule")


def source_job(name: str) -> str:
    return f"{_SOURCE_JOB}{name}"


class _NoRawOverrunWarning(logging.Filter):
    """The exporter reports an overrun itself (a structured line and a counter), by source."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in str(record.msg)


class _NoRawMissedWarning(logging.Filter):
    """A run missed by more than its grace time is reported by the exporter, by job."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "was missed by" not in str(record.msg)


_scheduler_log = logging.getLogger("apscheduler.scheduler")
_scheduler_log.addFilter(_NoRawOverrunWarning())
logging.getLogger("apscheduler.executors.default").addFilter(_NoRawMissedWarning())


class Schedule:
    def __init__(self, overrun: Callable[[str], object] | None = None) -> None:
        """`overrun(source)` is called when a source's cycle is due while its last one still
        runs (and the due one is skipped)."""
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(WORKERS)},
            timezone="UTC",
        )
        self._overrun = overrun
        self._scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        self._scheduler.add_listener(self._missed, EVENT_JOB_MISSED)

    def _skipped(self, event: JobSubmissionEvent) -> None:
        job = str(event.job_id)
        if job.startswith(_SOURCE_JOB) and self._overrun is not None:
            self._overrun(job.removeprefix(_SOURCE_JOB))
        else:
            # The raw warning is filtered for every job, so the others are reported here.
            log.warning("job still running when it was due again; that run is skipped", job=job)

    def _missed(self, event: JobExecutionEvent) -> None:
        job = str(event.job_id)
        log.warning(
            "a scheduled run started too late and was skipped (the process was paused or "
            "overloaded); the next one is on time",
            job=job,
            scheduled_at=event.scheduled_run_time.isoformat(),
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

    def running(self) -> bool:
        return bool(self._scheduler.running)

    def overdue(self, now: datetime) -> list[tuple[str, float, float]]:
        """Each job's id, seconds past its due time (negative: not yet due) and its interval."""
        out = []
        for job in self._scheduler.get_jobs():
            if job.next_run_time is None:  # paused
                continue
            interval = getattr(job.trigger, "interval", timedelta())
            out.append(
                (
                    str(job.id),
                    (now - job.next_run_time).total_seconds(),
                    interval.total_seconds(),
                )
            )
        return out

    def shutdown(self) -> None:
        """Stops starting jobs and waits for the running ones."""
        self._scheduler.shutdown(wait=True)
