"""Which replica takes a verified event, when shards share the sources. Pure: no I/O.

A source belongs to the shard its name hashes to (`exporter.core.sharding`); a source whose
provider splits its runs by workflow is on every shard, and its event goes to the shard of the
workflow it names. An event of such a source that names no workflow goes by the source's name,
the rule of every other source: one replica, the same on every replica, takes it.

A replica that is not the owner forwards the event once, marked with `FORWARDED_BY`; the owner
never forwards a marked request again (the loop guard), so a disagreement about the shard count
(a rollout half done) costs one retryable refusal instead of a request bouncing between pods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from exporter.core.sharding import Shard

# Set on a forwarded request, to the forwarding shard's index.
FORWARDED_BY = "x-workflow-exporter-forwarded-by"

# Never passed on: they describe one connection, not the event (RFC 9110 section 7.6.1), or
# are set again for the new request. Everything else goes as it came, so that whatever a
# provider's dialect signs or reads reaches the owner unchanged.
_NOT_FORWARDED = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
        FORWARDED_BY,
    }
)


class Decision(StrEnum):
    TAKE = "take"  # this replica owns it: queue the hint here
    FORWARD = "forward"  # another replica owns it: send it there
    MISROUTED = "misrouted"  # forwarded here, yet another replica owns it: never forward again


class Forwarded(StrEnum):
    """The `result` label of `workflow_exporter_webhooks_forwarded_total`."""

    DELIVERED = "delivered"  # the owner answered 2xx: queued there, or a replay of one that was
    REFUSED = "refused"  # the owner answered 4xx (its queue full, or it refused the event)
    UNAVAILABLE = "unavailable"  # no answer in time, no connection, or a 5xx: retry later


@dataclass(frozen=True, slots=True)
class Route:
    decision: Decision
    owner: int


def owner_of(shard: Shard, source: str, *, by_workflow: bool, workflow_id: str | None) -> int:
    """The index of the shard that takes `source`'s event (naming `workflow_id`, if it does)."""
    if by_workflow and workflow_id is not None:
        return shard.owner_of_workflow(source, workflow_id)
    return shard.owner_of_source(source)


def route(
    shard: Shard,
    source: str,
    *,
    by_workflow: bool,
    workflow_id: str | None,
    forwarded: bool,
) -> Route:
    """`forwarded`: the request carries `FORWARDED_BY` (another replica sent it)."""
    owner = owner_of(shard, source, by_workflow=by_workflow, workflow_id=workflow_id)
    if owner == shard.index:
        return Route(Decision.TAKE, owner)
    return Route(Decision.MISROUTED if forwarded else Decision.FORWARD, owner)


def forwarded_headers(headers: Mapping[str, str], sender: int) -> dict[str, str]:
    """The headers a forward carries: the event's own (signature, timestamp, type), lower-case
    as received, without the connection's, and the mark of the shard that forwards it."""
    kept = {
        name: value
        for name, value in headers.items()
        if name not in _NOT_FORWARDED and not name.startswith("proxy-")
    }
    kept[FORWARDED_BY] = str(sender)
    return kept
