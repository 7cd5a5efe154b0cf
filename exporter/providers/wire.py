"""Small pieces the wire models of several providers share."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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


# Numbers an API sends are counted, divided and summed: a count or a measure is a finite,
# non-negative number no larger than a float holds exactly. Anything else (10^400, a negative,
# NaN or Infinity as a number or a string) fails the field alone, which the provider leaves out
# of the run and counts as an invalid field; the run is kept.
MAX_WIRE_NUMBER = 2**53
WireCount = Annotated[int, Field(ge=0, le=MAX_WIRE_NUMBER)]
WireMeasure = Annotated[float, Field(ge=0, le=float(MAX_WIRE_NUMBER), allow_inf_nan=False)]

# Page numbers and totals are whole numbers a 64-bit integer holds; their sign and their size are
# judged by the page walk (`paging.totals_problem`), which needs them as the API sent them.
_PAGING_LIMIT = 2**63
_WHOLE = re.compile(r"-?[0-9]{1,19}")


def paging_number(value: Any) -> int | None:
    """A page number or total from a body (an int) or a header (its digits); ValueError for
    anything else, None where there is nothing."""
    if value is None:
        return None
    if isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < _PAGING_LIMIT:
        return value
    raise ValueError(f"not a whole number in range: {str(value)[:40]!r}")


def loose_moment(value: Any, field_name: str) -> tuple[datetime, bool] | None:
    """(instant, exact) from a timestamp written as an ISO instant, Unix seconds or milliseconds,
    or a bare date (Cortex writes all of these); a bare date is its day's start, not exact.
    Numbers are Unix seconds (or milliseconds when implausibly large)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            # Inside: dividing an int beyond a float's range overflows too (10^400).
            seconds = value / 1000 if value > 1e11 else value
            return datetime.fromtimestamp(seconds, tz=UTC), True
        except (OverflowError, OSError, ValueError):
            raise ValueError(
                f"{field_name}: timestamp {str(value)[:40]!r} is out of range"
            ) from None
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC), False
            return as_utc(datetime.fromisoformat(value)), True
        except ValueError:
            pass
    raise ValueError(f"{field_name}: not a timestamp: {str(value)[:40]!r}")


def inexact_fields(moments: Mapping[str, tuple[datetime, bool] | None]) -> frozenset[str]:
    """The names of the moments given as bare dates (`Run.day_only`)."""
    return frozenset(name for name, moment in moments.items() if moment and not moment[1])
