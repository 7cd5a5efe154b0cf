"""Process-wide webhook settings (`webhooks:` in the config file). Which sources take webhooks
is each source's `webhook_secret`; where they arrive is `--webhook.listen-address`."""

from __future__ import annotations

import string
from datetime import timedelta
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from exporter.core.units import Duration

# The one placeholder of `peer_url_template`.
SHARD_FIELD = "shard"


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # A signed timestamp further than this from the exporter's clock is refused (`stale`): a
    # captured request cannot be replayed later, and event ids need only be kept this long.
    tolerance: Duration = timedelta(minutes=5)
    # Bodies above this are refused (413) unread. Extend's large payloads come as a URL instead.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Hints waiting for their lookup, per source; past it the platform is told to retry (429).
    queue_size: int = Field(default=1000, ge=1, le=100_000)
    # Event ids remembered against replays, per source (oldest forgotten first past it).
    replay_memory: int = Field(default=100_000, ge=100)
    # With shards: the webhook listener of shard `{shard}`, where an event for a source another
    # shard owns is forwarded (a StatefulSet pod's stable name behind its headless Service).
    # None: such an event is answered 404, as by an exporter that does not know the source.
    peer_url_template: str | None = None
    # How long a forward may take, connecting included; the platform is told to retry past it.
    forward_timeout: Duration = Field(default=timedelta(seconds=2))

    @field_validator("peer_url_template")
    @classmethod
    def _one_shard_placeholder(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        except ValueError as exc:
            raise ValueError(f"not a template: {exc}") from None
        if fields != [SHARD_FIELD]:
            raise ValueError("must name {shard} once and nothing else in braces")
        parts = urlsplit(value.replace("{shard}", "0"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("the listener's address only: /webhooks/<source> is added to it")
        return value.rstrip("/")

    @field_validator("forward_timeout")
    @classmethod
    def _bounded_timeout(cls, value: timedelta) -> timedelta:
        if not timedelta(milliseconds=100) <= value <= timedelta(seconds=30):
            raise ValueError("must be between 100ms and 30s")
        return value

    def peer_url(self, shard: int, source: str) -> str | None:
        """Where shard `shard` takes the events of `source`; None: no peers configured."""
        if self.peer_url_template is None:
            return None
        return f"{self.peer_url_template.format(shard=shard)}/webhooks/{quote(source, safe='')}"
