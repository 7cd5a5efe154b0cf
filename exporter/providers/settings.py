"""What every source's settings are: the fields every provider shares, and the page-numbered
lists' own (`PagedSourceSettings`). Each provider subclasses one with its own fields and defaults
in its own module."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from exporter.core.filters import WorkflowFilter
from exporter.core.labelnames import MAX_STATIC_LABELS, check_label_name, check_label_value
from exporter.core.model import RunStatus
from exporter.core.units import Duration
from exporter.providers.paging import ListShape, Order

StaticLabelName = Annotated[str, AfterValidator(check_label_name)]
StaticLabelValue = Annotated[str, AfterValidator(check_label_value)]


class SourceSettings(BaseModel):
    """Settings every source has. Each provider subclasses it with its own fields and defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")
    provider: str
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    # Signed webhooks, where the provider sends them (`webhooks` below): the endpoint's signing
    # secret, or a file holding it (re-read, so it rotates like `api_key_file`).
    webhook_secret: SecretStr | None = None
    webhook_secret_file: Path | None = None
    # Where an event's body names its run when the provider does not document it: dotted
    # paths, the first that leads to an id wins.
    webhook_run_id_paths: tuple[str, ...] = ("data.id", "payload.id", "run.id", "id")
    base_url: str
    interval: Duration | None = None
    timeout: Duration = timedelta(seconds=15)
    page_size: int = Field(default=100, ge=1)
    max_retries: int = Field(default=3, ge=0, le=10)
    # Requests per second towards this source's API (fractional allowed); unset = unlimited.
    rate_limit: float | None = Field(default=None, gt=0)
    max_workflows: int = Field(default=200, ge=1)
    max_error_codes: int = Field(default=50, ge=1)
    # Added to every series of this source and to its alerts (`team`, `env`): routing by owner.
    labels: dict[StaticLabelName, StaticLabelValue] = Field(
        default_factory=dict, max_length=MAX_STATIC_LABELS
    )
    # Which workflows are counted (regexes, matched in whole against name and id).
    workflows: WorkflowFilter = WorkflowFilter()
    backfill: Duration = timedelta(hours=1)
    # How far below the watermark each cycle re-reads, to catch runs that appear late or were
    # skipped when a deletion shifted the pages.
    overlap: Duration = timedelta(minutes=10)
    # Active runs created within this window are re-read by scanning down to them (a page holds
    # many runs); older ones are looked up one by one.
    rescan_window: Duration = timedelta(hours=1)
    # Run ids counted are remembered this long past the watermark, then pruned.
    retention: Duration = timedelta(hours=24)
    # Per cycle, at most this many single-run lookups (active runs that left the lists,
    # failure details).
    lookup_budget: int = Field(default=200, ge=1)
    max_response_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # A response that takes longer than this in all (a slow drip) is cut off.
    request_deadline: Duration = timedelta(seconds=60)
    # An active run no list has shown for this long is looked up by id: a change that did not
    # move it up its list (Extend's `updatedAt` is not promised to move) is caught this late.
    recheck_after: Duration = timedelta(minutes=10)
    # A list timestamp further than this ahead of the exporter's clock is a clock that
    # disagrees: the run is counted, but never moves the watermark (nor so the scan floor).
    clock_skew_tolerance: Duration = timedelta(minutes=1)
    # The audit walk: every `audit_interval` the source re-reads its whole list down to what it
    # still promises to count (the retention window), at most `audit_requests_per_cycle` requests
    # a cycle, and counts what the fast incremental scan missed. 0 turns it off.
    audit_interval: Duration = timedelta(hours=1)
    audit_requests_per_cycle: int = Field(default=20, ge=1, le=10_000)
    # Plain http:// sends the key in clear text: allowed to loopback only, unless set.
    allow_insecure: bool = False
    status_map: dict[str, RunStatus] = Field(default_factory=dict)
    # Longer label values (a workflow name, an error code) are cut, with a hash of the whole kept.
    max_label_length: int = Field(default=128, ge=16, le=1024)
    # Per-step counters from what the runs list already carries (no extra request); unset: the
    # provider's default (on where its list carries steps).
    steps: bool | None = None
    # Distinct `step` values per workflow; later ones fold into `other`.
    max_steps: int = Field(default=30, ge=1, le=1000)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_key(self) -> SourceSettings:
        if self.api_key is None and self.api_key_file is None:
            raise ValueError("api_key: field required (or set api_key_file)")
        if self.api_key is not None and self.api_key_file is not None:
            raise ValueError("api_key_file: api_key and api_key_file are mutually exclusive")
        if self.retention <= self.overlap:
            raise ValueError("retention: must be longer than overlap")
        self._check_webhook_secret()
        if self.request_deadline < self.timeout:
            raise ValueError("request_deadline: must not be shorter than timeout")
        if not self.allow_insecure and _clear_text_to_remote(self.base_url):
            raise ValueError(
                "base_url: plain http:// to a host other than loopback would send the API key "
                "in clear text; use https:// or set allow_insecure: true"
            )
        return self

    def _check_webhook_secret(self) -> None:
        if self.webhook_secret is not None and self.webhook_secret_file is not None:
            raise ValueError(
                "webhook_secret_file: webhook_secret and webhook_secret_file are mutually exclusive"
            )
        if (self.webhook_secret or self.webhook_secret_file) and not self._provider_signs():
            raise ValueError(f"webhook_secret: provider {self.provider!r} sends no webhooks")

    def _provider_signs(self) -> bool:
        """Whether the provider's class has a `webhook_dialect`: the one place that says so."""
        # Imported here: the registry's package imports this module.
        from exporter.providers import registry

        found = registry().get(self.provider)
        return found is not None and found.webhook_dialect is not None

    def read_webhook_secret(self) -> str | None:
        """The signing secret (re-read from its file on every call: rotation); None: off."""
        return _read_secret(
            self.webhook_secret, self.webhook_secret_file, "webhook_secret_file", "webhook secret"
        )

    def read_api_key(self) -> str:
        """The key's value, from the setting or the file (re-read on every call: rotation)."""
        key = _read_secret(self.api_key, self.api_key_file, "api_key_file", "api key")
        assert key is not None  # the model requires one of the two
        return key


def _read_secret(inline: SecretStr | None, file: Path | None, field: str, what: str) -> str | None:
    """A secret given inline, else its file's content, stripped; None when neither is set."""
    if inline is not None:
        value = inline.get_secret_value()
    elif file is not None:
        try:
            value = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"{field} {str(file)!r}: cannot read ({exc.strerror})") from None
    else:
        return None
    if not value:
        raise ValueError(f"{what} is empty")
    return value


class PagedSourceSettings(SourceSettings):
    """Settings of a source whose runs list is page-numbered: what its docs leave open is
    learned from the answers (`auto`) unless a setting fixes it."""

    list_order: Literal["auto", "newest_first", "oldest_first"] = "auto"
    first_page: Literal["auto"] | Annotated[int, Field(ge=0, le=1)] = "auto"
    max_pages: int = Field(default=10_000, ge=1)

    def list_shape(self) -> ListShape:
        order = None if self.list_order == "auto" else Order(self.list_order)
        first = None if self.first_page == "auto" else int(self.first_page)
        return ListShape(
            order=order,
            first_page=first,
            order_fixed=order is not None,
        )


def _clear_text_to_remote(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True
