"""The optional `alerting:` section of the config file."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from exporter.core.model import RunStatus
from exporter.core.units import Duration

EventKind = Literal["failed", "stuck", "review"]


class AlertmanagerTarget(BaseModel):
    """One Alertmanager (every event goes to each, as Prometheus does for an HA pair)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    bearer_token: SecretStr | None = None
    bearer_token_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False
    timeout: Duration = timedelta(seconds=10)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL of an Alertmanager")
        if re.match(r"^https?://[^/]*@", value):
            raise ValueError("credentials in the URL would reach logs: use username/password")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_auth(self) -> AlertmanagerTarget:
        basic = self.username is not None or self.password or self.password_file
        bearer = self.bearer_token or self.bearer_token_file
        if basic and bearer:
            raise ValueError("give basic auth or a bearer token, not both")
        if self.password and self.password_file:
            raise ValueError("give password or password_file, not both")
        if self.bearer_token and self.bearer_token_file:
            raise ValueError("give bearer_token or bearer_token_file, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    def secret(self, value: SecretStr | None, path: Path | None) -> str | None:
        if value is not None:
            return value.get_secret_value()
        if path is not None:
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        return None


class FailedEvents(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    statuses: tuple[RunStatus, ...] = (RunStatus.FAILED, RunStatus.REJECTED)
    severity: str = "warning"
    # A first start (or a long outage) counts runs that finished long ago: paging for them
    # would only flood the receiver.
    max_age: Duration = timedelta(hours=1)
    # Alertmanager resolves the alert by itself after this.
    resolve_after: Duration = timedelta(hours=1)


class StuckEvents(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    after: Duration = timedelta(hours=1)
    statuses: tuple[RunStatus, ...] = (RunStatus.QUEUED, RunStatus.RUNNING)
    severity: str = "warning"


class ReviewEvents(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    after: Duration = timedelta(hours=4)
    severity: str = "info"


class AlertingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    alertmanagers: tuple[AlertmanagerTarget, ...]
    failed: FailedEvents = FailedEvents()
    stuck: StuckEvents = StuckEvents()
    review: ReviewEvents = ReviewEvents()
    # Per-source filters: empty `sources` means every source; workflows by regular expression.
    sources: tuple[str, ...] = ()
    exclude_sources: tuple[str, ...] = ()
    workflows: str = ".*"
    exclude_workflows: str | None = None
    # While an event is open (stuck, waiting on review) it is sent again this often, with
    # endsAt past the next send, so it resolves on its own if the exporter goes away.
    refresh_every: Duration = timedelta(minutes=30)
    # Rate cap: at most this many alerts per minute to each Alertmanager; the rest wait queued.
    max_per_minute: int = Field(default=300, ge=1)
    batch_size: int = Field(default=64, ge=1, le=1000)
    flush_interval: Duration = timedelta(seconds=5)
    max_message_length: int = Field(default=500, ge=20)
    # A link for runs whose provider gives none: `{source}`, `{workflow}` and `{run_id}` filled in.
    dashboard_url: str | None = None

    @field_validator("alertmanagers")
    @classmethod
    def _distinct(cls, value: tuple[AlertmanagerTarget, ...]) -> tuple[AlertmanagerTarget, ...]:
        # Checked here, not by a length constraint: pydantic would report a too-short list as
        # well as the bad item that made it short.
        if not value:
            raise ValueError("list at least one Alertmanager")
        # Deliveries are recorded per URL: one listed twice would count as delivered to both.
        urls = [target.url for target in value]
        twice = sorted({url for url in urls if urls.count(url) > 1})
        if twice:
            raise ValueError(f"each Alertmanager once: {', '.join(twice)} is listed twice")
        return value

    @field_validator("workflows", "exclude_workflows")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("dashboard_url")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                value.format(source="s", workflow="w", run_id="r")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"only {{source}}, {{workflow}} and {{run_id}} can be filled in ({exc})"
                ) from None
        return value

    def wants(self, source: str, workflow: str) -> bool:
        if self.sources and source not in self.sources:
            return False
        if source in self.exclude_sources:
            return False
        if not re.fullmatch(self.workflows, workflow):
            return False
        return not (self.exclude_workflows and re.fullmatch(self.exclude_workflows, workflow))
