"""Which workflows of a source are counted at all (pure: settings and providers import it).

`workflows: {include: [...], exclude: [...]}` holds regular expressions, each matched in whole
(`re.fullmatch`, as Prometheus anchors its relabelling regexes) against the workflow's name and
against its id: a workflow is kept when `include` is empty or one of its patterns matches the name
or the id, and no pattern of `exclude` matches either. A run of a workflow that is not kept never
reaches the accounting: it takes no label value, no series and no lookup.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression ({exc})") from None
    return pattern


Pattern = Annotated[str, AfterValidator(_compiles)]


def one_or_many(value: Any) -> Any:
    """A list setting given as one string (`exclude: ^test-`) reads as a list of one, as a YAML
    author means it; a validator's `mode="before"` step."""
    return [value] if isinstance(value, str) else value


@lru_cache(maxsize=256)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


class WorkflowFilter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    include: tuple[Pattern, ...] = ()
    exclude: tuple[Pattern, ...] = ()

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return one_or_many(value)

    @property
    def filters(self) -> bool:
        """Whether any workflow can be left out."""
        return bool(self.include or self.exclude)

    def admits(self, workflow_id: str | None, name: str | None) -> bool:
        """Whether runs of this workflow are counted; either identity may be unknown (None)."""
        if not self.filters:
            return True
        candidates = [c for c in (name, workflow_id) if c]
        if self.include and not any(
            p.fullmatch(c) for p in _compiled(self.include) for c in candidates
        ):
            return False
        return not any(p.fullmatch(c) for p in _compiled(self.exclude) for c in candidates)

    def describe(self) -> str:
        """One line for `check` and the logs."""
        if not self.filters:
            return "all workflows"
        parts = []
        if self.include:
            parts.append("include " + ", ".join(self.include))
        if self.exclude:
            parts.append("exclude " + ", ".join(self.exclude))
        return "; ".join(parts)
