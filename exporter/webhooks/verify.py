"""Pure webhook checks: signature, timestamp, replay, and the run an event names. No I/O.

Each platform signs differently (`DIALECTS`); what they share is that the signature is checked
over the raw body in constant time before anything in the body is believed, and that the
signed timestamp bounds how long a captured request can be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class Result(StrEnum):
    """The `result` label of `workflow_exporter_webhooks_received_total`."""

    ACCEPTED = "accepted"
    BAD_SIGNATURE = "bad_signature"
    STALE = "stale"
    REPLAYED = "replayed"
    OVERSIZED = "oversized"
    UNKNOWN_EVENT = "unknown_event"
    INVALID = "invalid"  # signed, but not JSON or naming no run where one was expected
    QUEUE_FULL = "queue_full"


@dataclass(frozen=True, slots=True)
class Signed:
    """A request whose signature matched: when it was signed and what identifies it."""

    timestamp: float
    signature: str


@dataclass(frozen=True, slots=True)
class Event:
    """What a verified body says. `run_id` None with `is_run_event`: a run changed but the body
    does not say which (a payload delivered as a download URL): the source is polled now."""

    event_id: str | None
    event_type: str | None
    is_run_event: bool
    run_id: str | None
    # The object that named the run (the run itself, where the body carries it).
    payload: dict[str, Any] | None = None


def _hmac_hex(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def _same(expected: str, given: str) -> bool:
    """Constant-time, as bytes: `compare_digest` refuses str with non-ASCII characters (a
    header's bytes arrive as Latin-1) with a TypeError, which would end the request unanswered
    and uncounted instead of refusing it."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def _timestamp(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    # Seconds are documented; milliseconds are taken too rather than refused as stale.
    return value / 1000.0 if value > 1e11 else value


class Dialect(Protocol):
    name: str
    # Whether a run event may name no run, its run delivered as a download URL instead (the
    # source is then polled); elsewhere a run event without its run is invalid.
    runs_by_url: bool

    def signed(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> Signed | None:
        """The signature, if it is there and matches; `headers` keys are lower case."""
        ...

    def event(self, body: Any, run_id_paths: Sequence[str]) -> Event: ...


class ExtendDialect:
    """`x-extend-request-signature` = hex HMAC-SHA256 of `v0:<timestamp>:<raw body>`."""

    name = "extend"
    runs_by_url = True
    run_events = frozenset(
        {
            "workflow_run.completed",
            "workflow_run.failed",
            "workflow_run.needs_review",
            "workflow_run.rejected",
            "workflow_run.cancelled",
        }
    )

    def signed(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> Signed | None:
        stamp = headers.get("x-extend-request-timestamp", "")
        given = headers.get("x-extend-request-signature", "").strip().lower()
        when = _timestamp(stamp)
        if when is None or not given:
            return None
        expected = _hmac_hex(secret, b"v0:" + stamp.strip().encode() + b":" + body)
        if not _same(expected, given):
            return None
        return Signed(when, given)

    def event(self, body: Any, run_id_paths: Sequence[str]) -> Event:
        if not isinstance(body, dict):
            return Event(None, None, False, None)
        event_id = _text(body.get("eventId"))
        event_type = _text(body.get("eventType"))
        if event_type not in self.run_events:
            return Event(event_id, event_type, False, None)
        payload = body.get("payload")
        if not isinstance(payload, dict):
            return Event(event_id, event_type, True, None)
        run_id = _text(payload.get("id"))
        return Event(event_id, event_type, True, run_id, payload if run_id else None)


class PlexteraDialect:
    """`X-Plextera-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`; several `v1`
    are accepted (a platform signs with old and new secret while one is rotated)."""

    name = "plextera"
    runs_by_url = False
    run_events = frozenset({"workflow.run.completed", "workflow.run.failed"})
    # The envelope is not documented: where its type may be.
    type_fields = ("type", "event", "eventType", "event_type")

    def signed(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> Signed | None:
        stamp, candidates = "", []
        for part in headers.get("x-plextera-signature", "").split(","):
            key, _, value = part.strip().partition("=")
            if key == "t":
                stamp = value
            elif key == "v1" and value:
                candidates.append(value.lower())
        when = _timestamp(stamp)
        if when is None or not candidates:
            return None
        expected = _hmac_hex(secret, stamp.encode() + b"." + body)
        # Every candidate is compared, matched or not, so timing says nothing about which.
        matches = [c for c in candidates if _same(expected, c)]
        return Signed(when, matches[0]) if matches else None

    def event(self, body: Any, run_id_paths: Sequence[str]) -> Event:
        if not isinstance(body, dict):
            return Event(None, None, False, None)
        event_type = next(
            (t for t in (_text(body.get(f)) for f in self.type_fields) if t is not None), None
        )
        if event_type is not None and event_type not in self.run_events:
            return Event(None, event_type, False, None)
        # Without a type the body is still taken as a run event: only run events are documented.
        run_id, holder = _found_at(body, run_id_paths)
        return Event(None, event_type, True, run_id, holder)


DIALECTS: dict[str, Dialect] = {"extend": ExtendDialect(), "plextera": PlexteraDialect()}
DEFAULT_RUN_ID_PATHS = ("data.id", "payload.id", "run.id", "id")


def run_id_at(body: Any, paths: Sequence[str]) -> str | None:
    """The first dotted path that leads to a string or integer id."""
    return _found_at(body, paths)[0]


def _found_at(body: Any, paths: Sequence[str]) -> tuple[str | None, dict[str, Any] | None]:
    """The id at the first dotted path that leads to one, and the object holding it."""
    for path in paths:
        holder, node = None, body
        for key in path.split("."):
            holder = node if isinstance(node, dict) else None
            node = holder.get(key) if holder is not None else None
        found = _text(node)
        if found is not None:
            return found, holder
    return None, None


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and 0 < len(value) <= 256:
        return value
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    result: Result
    event: Event | None = None
    replay_key: str | None = None


def verify(
    dialect: Dialect,
    headers: Mapping[str, str],
    body: bytes,
    secret: bytes,
    *,
    now: float,
    tolerance: float,
    run_id_paths: Sequence[str] = DEFAULT_RUN_ID_PATHS,
) -> Verdict:
    """Signature first (an unsigned request learns nothing, not even whether it was stale),
    then the timestamp, then the body. Replays are the caller's (`ReplayGuard`): a key must only
    be remembered once the event has been queued."""
    signed = dialect.signed(headers, body, secret)
    if signed is None:
        return Verdict(Result.BAD_SIGNATURE)
    if abs(now - signed.timestamp) > tolerance:
        return Verdict(Result.STALE)
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return Verdict(Result.INVALID)
    event = dialect.event(parsed, run_id_paths)
    key = f"{dialect.name}:{event.event_id or signed.signature}"
    if not event.is_run_event:
        return Verdict(Result.UNKNOWN_EVENT, event, key)
    if event.run_id is None and not dialect.runs_by_url:
        return Verdict(Result.INVALID, event, key)
    return Verdict(Result.ACCEPTED, event, key)


class ReplayGuard:
    """Keys seen within the tolerance window, bounded: past `capacity` the oldest are forgotten
    early. Forgetting is safe, only less thrifty: a replayed hint is one more lookup, and the
    core never counts a run twice."""

    def __init__(self, window: float, capacity: int = 100_000) -> None:
        self.window = window
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()

    def seen(self, key: str, now: float) -> bool:
        self._expire(now)
        return key in self._seen

    def remember(self, key: str, now: float) -> None:
        self._expire(now)
        # Twice the tolerance: a timestamp may lie that far ahead of or behind this clock.
        self._seen[key] = now + 2 * self.window
        self._seen.move_to_end(key)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        while self._seen:
            key, expires = next(iter(self._seen.items()))
            if expires > now:
                return
            del self._seen[key]
