"""Small pieces the wire models of several providers share."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict

# Whether this thread parsed a timestamp without an offset since the provider last asked: each
# source collects in a thread of its own, and validators have no other way to report.
_seen = threading.local()


def as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        # No offset: read as UTC, the only reading every documented API supports; the provider
        # says so once (`take_offsetless_seen`).
        _seen.offsetless = True
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # An offset pushing the instant past year 9999: a value error like any bad timestamp.
        raise ValueError(f"timestamp {value.isoformat()} is out of range") from None


def take_offsetless_seen() -> bool:
    """Whether a timestamp without an offset was read since the last call (in this thread)."""
    seen = bool(getattr(_seen, "offsetless", False))
    _seen.offsetless = False
    return seen


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


class WireModel(BaseModel):
    """Wire models ignore fields they do not know: APIs add fields without notice."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def dict_or_empty(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
