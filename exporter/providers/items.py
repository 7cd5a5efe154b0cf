"""A list page's items read one by one: one bad record never loses the rest of the page, one bad
optional field never loses the record, and an id that cannot be a key makes its record invalid.
What is wrong is said through the provider's events, cleaned and redacted, once per run and field.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from exporter.core.errors import PayloadError
from exporter.core.model import Run, id_problem
from exporter.providers.describe import ProviderEvents
from exporter.providers.sanitize import RunSanitizer

# Field reports remembered to say each once; past this many the memory starts again.
_FIELD_REPORTS_KEPT = 10_000


class ItemReader:
    def __init__(
        self,
        source: str,
        events: ProviderEvents,
        sanitizer: RunSanitizer,
    ) -> None:
        self._source = source
        self._events = events
        self._sanitizer = sanitizer
        self._fields_reported: set[tuple[str, str]] = set()

    def listed(self, body: Any, key: str) -> list[Any]:
        """The items of a list page that wraps them in an object under `key`; any other shape is
        a payload error naming what was expected."""
        if not isinstance(body, dict) or not isinstance(body.get(key), list):
            article = "an" if key[0] in "aeiou" else "a"
            raise PayloadError(
                self._source, "list_runs", f"expected an object with {article} `{key}` list"
            )
        items: list[Any] = body[key]
        return items

    def parse(self, items: Any, build: Any) -> Iterator[Run]:
        """Parse each list item on its own so one bad record never loses the rest of the page,
        and one bad optional field never loses the record."""
        if not isinstance(items, list):
            return
        for index, item in enumerate(items):
            run = self._parse_item(index, item, build)
            if isinstance(run, Run):
                if self._usable_ids(index, run):
                    yield self._sanitizer.run(run)
            elif run is not None:
                yield run  # not a run (a Cortex workflow): its texts reach runs, cleaned there

    def _usable_ids(self, index: int, run: Run) -> bool:
        """A run whose id (or workflow's id) cannot be a key is an invalid record: kept exactly
        as sent, an id must be bounded and valid text (`id_problem`)."""
        shown = run.id if run.shown_id is None else run.shown_id
        if id_problem(shown) is None and id_problem(run.workflow_id) is None:
            return True  # the common case; only a run with a bad id is gone through below
        for what, value in (("id", shown), ("workflow id", run.workflow_id)):
            problem = id_problem(value)
            if problem is not None:
                shown = self._sanitizer.text(value[:256], 256)
                self._events.invalid_record(
                    "id", self.redacted(f"item {index}: {what} {shown!r} {problem}")
                )
                return False
        return True

    def _parse_item(self, index: int, item: Any, build: Any) -> Any:
        try:
            return build(item)
        except ValidationError as exc:
            fields = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            if isinstance(item, dict) and fields and fields <= item.keys():
                # The fields that fail, left out: required ones fail again as missing.
                with contextlib.suppress(Exception):
                    run = build({k: v for k, v in item.items() if k not in fields})
                    self.invalid_field(
                        str(run.shown), f"{', '.join(sorted(fields))}: {_first_error(exc)}"
                    )
                    return run
            self._events.invalid_record("schema", self.redacted(_describe(index, item, exc)))
        except Exception as exc:  # any other failure of one item (an overflow, a recursion)
            self._events.invalid_record(
                "value", self.redacted(f"item {index}: {exc.__class__.__name__}: {exc}")
            )
        return None

    def invalid_field(self, run_id: str, detail: str) -> None:
        """A field left out of a run that is kept; said once per run and field."""
        key = (run_id[:256], detail.split(" ", 1)[0])
        if key in self._fields_reported:
            return
        if len(self._fields_reported) >= _FIELD_REPORTS_KEPT:
            self._fields_reported.clear()
        self._fields_reported.add(key)
        self._events.invalid_record("field", self.redacted(f"run {run_id[:256]!r}: {detail}"))

    def redacted(self, text: str) -> str:
        """A report's text cleaned for a log line and bounded, with any piece of a key removed."""
        return self._sanitizer.text(text, 500)


def _describe(index: int, item: Any, exc: ValidationError) -> str:
    run_id = item.get("id") if isinstance(item, dict) else None
    return f"item {index} (id {str(run_id)[:256]!r}): {_first_error(exc)}"


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "item"
    return f"{where}: {first['msg']}"
