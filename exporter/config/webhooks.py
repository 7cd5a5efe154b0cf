"""Process-wide webhook settings (`webhooks:` in the config file). Which sources take webhooks
is each source's `webhook_secret`; where they arrive is `--webhook.listen-address`."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from exporter.core.units import Duration


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
