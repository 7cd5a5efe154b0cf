"""Which replica exports what, when several exporters share one configuration.

Each shard (`shard.index` of `shard.count`) keeps the sources whose name hashes to its index; a
Cortex source is the exception, since one app may hold many workflows: every shard keeps it and
reads only the workflows whose `source/workflow id` hashes to its index. So every series comes
from exactly one replica and Prometheus sums across them.

The key is hashed with SHA-256, not Python's `hash()`: the latter is salted per process, and
every replica (and every restart) must agree on the assignment. The hash picks a shard by jump
consistent hashing (Lamping and Veach, 2014) rather than `mod count`: growing from n to m shards
moves only the (m - n) / m of the keys that the new shards take, and none between the old ones.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# A StatefulSet pod is named `<statefulset>-<ordinal>`.
_ORDINAL = re.compile(r"-(\d+)$")


_MASK64 = (1 << 64) - 1
_LCG_MULTIPLIER = 2862933555777941757


def bucket(key: str, count: int) -> int:
    """The shard a key belongs to: stable across processes, machines and Python versions."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return jump_hash(int.from_bytes(digest[:8], "big"), count)


def jump_hash(key: int, count: int) -> int:
    """Jump consistent hash of a 64-bit key into `count` buckets (the paper's algorithm, with its
    64-bit linear congruential steps)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    chosen, candidate = -1, 0
    while candidate < count:
        chosen = candidate
        key = (key * _LCG_MULTIPLIER + 1) & _MASK64
        candidate = int((chosen + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return chosen


@dataclass(frozen=True, slots=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("shard count must be at least 1")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be between 0 and {self.count - 1}")

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def owner_of_source(self, source: str) -> int:
        """The index of the shard that reads `source` (a source read whole by one shard)."""
        return bucket(source, self.count)

    def owner_of_workflow(self, source: str, workflow_id: str) -> int:
        """The index of the shard that reads one workflow of a source split by workflow."""
        return bucket(f"{source}/{workflow_id}", self.count)

    def owns_source(self, source: str) -> bool:
        return self.owner_of_source(source) == self.index

    def owns_workflow(self, source: str, workflow_id: str) -> bool:
        return self.owner_of_workflow(source, workflow_id) == self.index


UNSHARDED = Shard()


def ordinal_from_hostname(hostname: str) -> int:
    """The StatefulSet ordinal at the end of a pod's host name (`exporter-2` → 2)."""
    match = _ORDINAL.search(hostname)
    if match is None:
        raise ValueError(f"host name {hostname!r} does not end in -<ordinal>")
    return int(match.group(1))
