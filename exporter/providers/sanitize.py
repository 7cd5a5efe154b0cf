"""Every text and number an API sends, made safe once, where a run enters the exporter.

A vendor's text may hold a lone UTF-16 surrogate (a JavaScript backend cutting a string inside an
emoji), control characters, a megabyte of name, or an echo of our own API key; a number may be
infinite or absurd; a timestamp may lie in year 9999 or 1970. Past this point every `Run` holds
valid UTF-8 text of bounded length with no key in it, and every number and instant is one the
exporter can add up and subtract: what is not becomes absent (counted and logged by the provider
as an invalid field), never a broken page, a broken `/metrics` or a broken state.

Ids are the exception: a run's and a workflow's id are its identity, kept exactly as sent (the
provider refuses, as an invalid record, one that is empty, too long or not text: `id_problem`).
Cleaning them would make two runs one; only the id as shown (`Run.shown`) is cleaned here.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from exporter.core.model import Run, Step

_SURROGATES = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
REPLACEMENT = "\ufffd"

# The value the exporter itself gives the `workflow` and `code` labels past their bounds: an API
# value that happens to read the same gets a suffix, so it never merges silently with the fold.
# (An API's own code `unspecified` says what the exporter's does: no code given.)
RESERVED_LABEL_VALUES = frozenset({"other"})
RESERVED_SUFFIX = "_"

# A run lasting longer than this is a wrong number, not a run.
MAX_DURATION = timedelta(days=366)
# Timestamps this far from now are not instants to subtract (a default of 1970, a year 9999).
MAX_TIME_SKEW = timedelta(days=366 * 5)
_MAX_DURATION_SECONDS = MAX_DURATION.total_seconds()


@dataclass(frozen=True, slots=True)
class Limits:
    label_length: int = 128  # a label value (workflow, code, native status, step)
    message_length: int = 1000  # a free-text message (logged, sent in alert annotations)
    id_length: int = 256  # a run id as shown (logged, in exemplars and alerts)
    url_length: int = 2048


def clean_text(value: str, limit: int, redact: Callable[[str], str]) -> str:
    """Valid UTF-8 without control characters or keys, at most `limit` characters; a longer
    value keeps a stable hash of the whole, so two long values stay two."""
    if len(value) <= limit and value.isprintable():
        # The common case, checked in C: no surrogate, no control character, short enough.
        return redact(value)
    if _SURROGATES.search(value):
        value = _SURROGATES.sub(REPLACEMENT, value)
    if _CONTROL.search(value):
        value = _CONTROL.sub(" ", value)
    value = redact(value)
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]
    return f"{value[: max(0, limit - 9)]}~{digest}"


def clean_label(value: str, limit: int, redact: Callable[[str], str]) -> str:
    value = clean_text(value, limit, redact)
    return value + RESERVED_SUFFIX if value in RESERVED_LABEL_VALUES else value


class RunSanitizer:
    """Cleans each run a provider builds; reports each field it had to drop."""

    def __init__(
        self,
        limits: Limits,
        redact: Callable[[str], str],
        invalid_field: Callable[[str, str], None],
        clock: Callable[[], datetime],
        may_hold_secret: Callable[[str], bool] = lambda _text: True,
    ) -> None:
        self.limits = limits
        self._redact = redact
        self._may_hold_secret = may_hold_secret
        self._invalid_field = invalid_field
        self._clock = clock
        self._clean_step_texts: set[str] = set()

    def text(self, value: str, limit: int) -> str:
        return clean_text(value, limit, self._redact)

    def label(self, value: str) -> str:
        return clean_label(value, self.limits.label_length, self._redact)

    def run(self, run: Run) -> Run:
        """The run itself when nothing needed cleaning (most runs: no copy made)."""
        if self._clean_already(run):
            return run
        return self._cleaned(run)

    def _clean_already(self, run: Run) -> bool:
        """Whether `_cleaned` would change nothing. Written out check by check (no tuples,
        generators or properties): it runs for every run, and almost every run passes."""
        if run.steps and not self._steps_clean(run):
            return False
        if run.workflow_name is None:
            return False
        name = run.workflow_name or run.workflow_id  # `workflow_label`
        # Ids are not cleaned (they are keys); what shows them is.
        shown = run.id if run.shown_id is None else run.shown_id
        native, code, message, url = (
            run.native_status,
            run.error_code,
            run.error_message,
            run.dashboard_url,
        )
        limit = self.limits.label_length
        if not (
            len(shown) <= limit
            and len(native) <= limit
            and len(name) <= limit
            and shown.isprintable()
            and native.isprintable()
            and name.isprintable()
            and name not in RESERVED_LABEL_VALUES
        ):
            return False
        if code is not None and not (
            len(code) <= limit and code.isprintable() and code not in RESERVED_LABEL_VALUES
        ):
            return False
        if message is not None and not (
            len(message) <= self.limits.message_length and message.isprintable()
        ):
            return False
        if url is not None and not (len(url) <= self.limits.url_length and url.isprintable()):
            return False
        texts = f"{shown}\x00{native}\x00{name}\x00{code or ''}\x00{message or ''}\x00{url or ''}"
        if self._may_hold_secret(texts):
            return False
        duration, progress = run.duration_seconds, run.progress
        if duration is not None and not (0 <= duration <= _MAX_DURATION_SECONDS):
            return False  # also NaN, which fails every comparison
        if progress is not None and not math.isfinite(progress):
            return False
        now = self._clock()
        earliest, latest = now - MAX_TIME_SKEW, now + MAX_TIME_SKEW
        created, started, finished = run.created_at, run.started_at, run.finished_at
        if not earliest <= created <= latest:
            return False
        if started is not None and not earliest <= started <= latest:
            return False
        if finished is None:
            return True
        if not earliest <= finished <= latest:
            return False
        if run.day_only:
            return run.contradicting_times is None
        # `contradicting_times` for exact times: an end before the start or the creation.
        return not (finished < created or (started is not None and finished < started))

    def _steps_clean(self, run: Run) -> bool:
        """Step texts (types, names, statuses) are few and repeat from run to run: each is
        checked once, then remembered, so that most runs with steps are not copied."""
        texts = {t for step in run.steps for t in (step.name, step.status, step.type) if t}
        texts -= self._clean_step_texts
        if not texts:
            return True
        limit = self.limits.label_length
        for text in texts:
            if not (len(text) <= limit and text.isprintable()) or text in RESERVED_LABEL_VALUES:
                return False
            if self._may_hold_secret(text):
                return False
        if len(self._clean_step_texts) >= 10_000:
            self._clean_step_texts.clear()
        self._clean_step_texts |= texts
        return True

    def _cleaned(self, run: Run) -> Run:
        limits = self.limits
        now = self._clock()
        inexact = set(run.day_only)
        times: dict[str, datetime | None] = {}
        for name in ("started_at", "finished_at"):
            value = getattr(run, name)
            if value is not None and not _plausible(value, now):
                self._invalid_field(run.shown, f"{name} {value.isoformat()} is implausible")
                value = None
            times[name] = value
        if not _plausible(run.created_at, now):
            # Kept (the run exists), but no age or wait is computed from it.
            self._invalid_field(
                run.shown, f"created_at {run.created_at.isoformat()} is implausible"
            )
            inexact.add("created_at")
        duration = run.duration_seconds
        if duration is not None and not (
            math.isfinite(duration) and 0 <= duration <= MAX_DURATION.total_seconds()
        ):
            self._invalid_field(run.shown, f"duration {duration!r} seconds is out of range")
            duration = None
        contradiction = replace(
            run,
            started_at=times["started_at"],
            finished_at=times["finished_at"],
            day_only=frozenset(inexact),
        ).contradicting_times
        if contradiction is not None:
            # Kept as given (the run counts, and when it ended is still the best there is), but
            # no duration or queue wait is computed from them (exporter.core.model): said here.
            self._invalid_field(run.id, f"{contradiction}: no duration or queue wait taken")
        progress = run.progress
        if progress is not None and not math.isfinite(progress):
            self._invalid_field(run.shown, f"progress {progress!r} is not a number")
            progress = None
        shown = self.text(run.shown, limits.id_length)
        return replace(
            run,
            # `id` and `workflow_id` stay as the API sent them: they are keys, and two ids that
            # clean alike are still two. Only the id people read is cleaned.
            shown_id=None if shown == run.id else shown,
            # The label the run will carry, name or id, made a label once here.
            workflow_name=self.label(run.workflow_label),
            native_status=self.text(run.native_status, limits.label_length),
            error_code=None if run.error_code is None else self.label(run.error_code),
            error_message=None
            if run.error_message is None
            else self.text(run.error_message, limits.message_length),
            dashboard_url=None
            if run.dashboard_url is None
            else self.text(run.dashboard_url, limits.url_length),
            started_at=times["started_at"],
            finished_at=times["finished_at"],
            duration_seconds=duration,
            progress=progress,
            steps=tuple(self._step(step) for step in run.steps),
            day_only=frozenset(inexact),
        )

    def _step(self, step: Step) -> Step:
        return replace(
            step,
            name=self.label(step.name),
            status=self.text(step.status, self.limits.label_length),
            type=None if step.type is None else self.label(step.type),
        )


def _plausible(value: datetime, now: datetime) -> bool:
    return abs(value - now) <= MAX_TIME_SKEW
