"""Pure webhook checks: signature, timestamp, replay, and the run an event names. No I/O.

Each platform signs differently (its provider's `webhook_dialect`, `exporter.providers.webhooks`);
what they share is that the signature is checked over the raw body in constant time before
anything in the body is believed, and that the signed timestamp bounds how long a captured
request can be replayed.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from exporter.providers.webhooks import DEFAULT_RUN_ID_PATHS, Dialect, Event


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
    # With shards: verified here and sent on to the replica that owns the source (what became
    # of it there is `workflow_exporter_webhooks_forwarded_total`).
    FORWARDED = "forwarded"
    # Forwarded here by a replica that took this one for the owner, which it is not (the
    # replicas disagree about the shard count): refused as retryable, never forwarded again.
    MISROUTED = "misrouted"


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
