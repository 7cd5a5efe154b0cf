"""What a provider says of its signed webhooks: how a request is signed and what its body names.

A provider that sends webhooks sets `webhook_dialect` to one of these; the listener and its
counting (`exporter.webhooks`) ask the registry for it. Pure: no I/O, no HTTP, no metrics.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_RUN_ID_PATHS = ("data.id", "payload.id", "run.id", "id")


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
    # The run's workflow, where the body names it: with shards, an event of a provider that
    # splits its runs by workflow goes to that workflow's shard.
    workflow_id: str | None = None


class Dialect(Protocol):
    """One platform's way of signing and wrapping its events."""

    name: str
    # Whether a run event may name no run, its run delivered as a download URL instead (the
    # source is then polled); elsewhere a run event without its run is invalid.
    runs_by_url: bool
    # The event types that say a run changed (docs/providers.md lists them).
    run_events: frozenset[str]
    # How a request is signed, in a line of docs/providers.md.
    signature_doc: str

    def signed(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> Signed | None:
        """The signature, if it is there and matches; `headers` keys are lower case."""
        ...

    def event(self, body: Any, run_id_paths: Sequence[str]) -> Event: ...


def hmac_sha256_hex(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def same_signature(expected: str, given: str) -> bool:
    """Constant-time, as bytes: `compare_digest` refuses str with non-ASCII characters (a
    header's bytes arrive as Latin-1) with a TypeError, which would end the request unanswered
    and uncounted instead of refusing it."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def signed_timestamp(text: str) -> float | None:
    """A signed Unix timestamp; None when it is not one."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    # Seconds are documented; milliseconds are taken too rather than refused as stale.
    return value / 1000.0 if value > 1e11 else value


def run_id_at(body: Any, paths: Sequence[str]) -> str | None:
    """The first dotted path that leads to a string or integer id."""
    return found_at(body, paths)[0]


def found_at(body: Any, paths: Sequence[str]) -> tuple[str | None, dict[str, Any] | None]:
    """The id at the first dotted path that leads to one, and the object holding it."""
    for path in paths:
        holder, node = None, body
        for key in path.split("."):
            holder = node if isinstance(node, dict) else None
            node = holder.get(key) if holder is not None else None
        found = id_text(node)
        if found is not None:
            return found, holder
    return None, None


def id_text(value: Any) -> str | None:
    """An id or event field as text: a string of bounded length or an integer, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and 0 < len(value) <= 256:
        return value
    return None
