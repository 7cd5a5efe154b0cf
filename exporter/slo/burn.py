"""The windows the rules record and the burn-rate tiers the alerts fire on (Google's SRE
workbook, "Alerting on SLOs", multiwindow multi-burn-rate alerts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

PAGE_ALERT = "WorkflowSLOBurnRatePage"
TICKET_ALERT = "WorkflowSLOBurnRateTicket"
# The shipped rules' severities: `critical` pages, `warning` makes a ticket.
SEVERITY = {PAGE_ALERT: "critical", TICKET_ALERT: "warning"}


@dataclass(frozen=True)
class BurnTier:
    alert: str
    long_window: str
    short_window: str
    # How many times faster than the objective allows the budget burns.
    factor: float
    # The share of a 30-day budget spent by the time a burn at `factor` fires.
    budget_spent: float

    @property
    def severity(self) -> str:
        return SEVERITY[self.alert]

    def threshold(self, error_budget: float) -> float:
        """The error ratio both windows must exceed."""
        return self.factor * error_budget

    def detection_time(self, error_budget: float, error_ratio: float) -> timedelta | None:
        """How long an error ratio held from a clean start takes to fire this tier (the long
        window filling up); None if it never does."""
        threshold = self.threshold(error_budget)
        if error_ratio <= threshold:
            return None
        return timedelta(seconds=seconds(self.long_window) * threshold / error_ratio)


TIERS = (
    BurnTier(PAGE_ALERT, "1h", "5m", 14.4, 0.02),
    BurnTier(PAGE_ALERT, "6h", "30m", 6.0, 0.05),
    BurnTier(TICKET_ALERT, "1d", "2h", 3.0, 0.10),
    BurnTier(TICKET_ALERT, "3d", "6h", 1.0, 0.10),
)
# Every window a tier reads, shortest first.
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
LONG_WINDOWS = tuple(t.long_window for t in TIERS)
# The window whose recordings add up to the SLO's whole window.
PERIOD_STEP = "1h"

_UNITS = {"m": 60, "h": 3600, "d": 86400}


def seconds(window: str) -> int:
    return int(window[:-1]) * _UNITS[window[-1]]


def prometheus_duration(value: timedelta) -> str:
    """`30d`, `36h`: the largest unit that divides it (windows are whole hours)."""
    total = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        if total % _UNITS[unit] == 0:
            return f"{total // _UNITS[unit]}{unit}"
    return f"{total}s"
