"""Small pieces the wire models of several providers share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict


def _as_utc(value: datetime) -> datetime:
    # A timestamp without an offset is read as UTC, which is what every documented API sends.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class WireModel(BaseModel):
    """Wire models ignore fields they do not know: APIs add fields without notice."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def dict_or_empty(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
