"""Configuration: what each setting means and which values it takes, validated at once.

Every problem is reported together, one line each, naming the field path
(`sources[1].api_key: field required`); the CLI prints them and exits with code 2. Reading the
file, `${VAR}` expansion and the `WORKFLOW_EXPORTER_*` overrides are `exporter.config.configfile`'s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from exporter.config.alerting import AlertingSettings
from exporter.config.configfile import apply_env_overrides, format_errors, read_document
from exporter.config.slos import SloDefaults, SloSettings, check_slos
from exporter.config.webhooks import WebhookSettings
from exporter.core.errors import ConfigError
from exporter.core.sharding import Shard
from exporter.core.units import DEFAULT_BUCKETS, DURATION, QUEUE_WAIT, STEP_DURATION, Duration
from exporter.providers import SourceSettings, registry


class BucketSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    duration: tuple[float, ...] = DEFAULT_BUCKETS[DURATION]
    queue_wait: tuple[float, ...] = DEFAULT_BUCKETS[QUEUE_WAIT]
    step_duration: tuple[float, ...] = DEFAULT_BUCKETS[STEP_DURATION]

    @field_validator("duration", "queue_wait", "step_duration")
    @classmethod
    def _increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("needs at least one bucket")
        if any(b <= a for a, b in pairwise(value)) or value[0] <= 0:
            raise ValueError("buckets must be positive and strictly increasing")
        return value

    def as_mapping(self) -> dict[str, tuple[float, ...]]:
        return {
            DURATION: self.duration,
            QUEUE_WAIT: self.queue_wait,
            STEP_DURATION: self.step_duration,
        }


class ShardSettings(BaseModel):
    """This replica's part of the sources when several share one configuration (see
    `exporter.core.sharding`); usually set by `--shard.index` / `--shard.count`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # `count` first: the check of `index` needs it.
    count: int = Field(default=1, ge=1, le=1000)
    index: int = Field(default=0, ge=0)

    @field_validator("index")
    @classmethod
    def _index_below_count(cls, value: int, info: ValidationInfo) -> int:
        count = info.data.get("count")
        if isinstance(count, int) and value >= count:
            raise ValueError(f"must be below shard.count ({count})")
        return value

    def as_shard(self) -> Shard:
        return Shard(self.index, self.count)


class AppSettings(BaseSettings):
    """Process-wide settings. `sources` are validated one by one by their provider's model."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    interval: Duration = timedelta(seconds=30)
    # A counter series born after the first start is served at zero this long before its first
    # increments show: Prometheus never counts a series' first sample. At least one scrape
    # interval of every Prometheus that scrapes the exporter.
    new_series_hold: Duration = timedelta(minutes=1)
    # Each cycle starts up to this fraction of the interval late, so sources sharing an interval
    # do not hit their APIs in lockstep.
    jitter_ratio: float = Field(default=0.1, ge=0, le=0.5)
    state_path: Path = Path("./workflow-runs-exporter.db")
    buckets: BucketSettings = BucketSettings()
    # Bound on the domain series all sources together may create; new workflow and error code
    # label values past it fold into `other` (counted on label_values_dropped_total).
    max_series: int = Field(default=100_000, ge=1_000)
    # The alerting agent: per-run alerts straight to Alertmanager (off unless configured).
    alerting: AlertingSettings | None = None
    shard: ShardSettings = ShardSettings()
    # Signed webhook events as hints (served on `--webhook.listen-address`).
    webhooks: WebhookSettings = WebhookSettings()
    # A collection running longer than this fails /healthz; unset: per source, three intervals
    # plus request_deadline * (max_retries + 1) (see exporter.web.health).
    hung_after: Duration | None = None
    # Service-level objectives: `slo-rules` turns them into recording and alert rules.
    slos: tuple[SloSettings, ...] = ()
    slo_defaults: SloDefaults = SloDefaults()
    sources: list[dict[str, Any]] = Field(min_length=1)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The loader below already merged the file and the environment, with list indexes that
        # pydantic-settings' own env source cannot address.
        return (init_settings,)


@dataclass(frozen=True)
class Config:
    app: AppSettings
    sources: tuple[SourceSettings, ...]

    def interval_for(self, source: SourceSettings) -> timedelta:
        return source.interval or self.app.interval

    @property
    def shard(self) -> Shard:
        return self.app.shard.as_shard()

    def own_sources(self) -> tuple[SourceSettings, ...]:
        """The sources this shard collects: those hashed to it, and every source whose provider
        splits its work by workflow (each shard then reads its own workflows)."""
        shard = self.shard
        providers = registry()
        return tuple(
            s
            for s in self.sources
            if providers[s.provider].shards_by_workflow or shard.owns_source(s.name)
        )


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Reads, expands, overrides and validates. Raises ConfigError listing every problem."""
    environ = os.environ if environ is None else environ
    data, problems = read_document(path, environ)
    if data is None:
        raise ConfigError(problems)
    return config_from_data(data, environ, problems)


def config_from_data(
    data: dict[str, Any],
    environ: Mapping[str, str] | None = None,
    problems: list[str] | None = None,
) -> Config:
    """Validates an already parsed document (after applying environment overrides)."""
    environ = os.environ if environ is None else environ
    problems = list(problems or [])
    problems += apply_env_overrides(data, environ)
    app: AppSettings | None = None
    raw_sources: Any = data.get("sources")
    try:
        # YAML allows keys that are not strings (`1: x`); keyword arguments do not.
        app = AppSettings(**{str(key): value for key, value in data.items()})
        raw_sources = app.sources
    except ValidationError as exc:
        problems += format_errors(exc)
        if not isinstance(raw_sources, list) or any(
            error["loc"][:1] == ("sources",) for error in exc.errors()
        ):
            raise ConfigError(problems) from None
        # Only the top-level settings are wrong: check the sources too, so that every problem
        # shows at once.
    sources: list[SourceSettings] = []
    key_problems: list[str] = []
    for index, raw in enumerate(raw_sources):
        source, source_problems = _validate_source(index, raw)
        problems += source_problems
        if source is not None:
            sources.append(source)
            # By the source's own position: sources before it may have failed validation.
            key_problems += _check_key(source, index)
    names = [s.name for s in sources]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"sources: the name {name!r} is used more than once")
    problems += key_problems
    if app is not None:
        raw_names = [raw.get("name") for raw in raw_sources if isinstance(raw, dict)]
        problems += check_slos(app.slos, app.buckets.duration, [str(n) for n in raw_names])
    if problems or app is None:
        raise ConfigError(problems)
    return Config(app=app, sources=tuple(sources))


def _validate_source(index: int, raw: Any) -> tuple[SourceSettings | None, list[str]]:
    where = f"sources[{index}]"
    if not isinstance(raw, dict):
        return None, [f"{where}: must be a mapping of settings"]
    providers = registry()
    known = ", ".join(providers)
    provider = raw.get("provider")
    if provider is None:
        return None, [f"{where}.provider: field required (one of: {known})"]
    if provider not in providers:
        return None, [f"{where}.provider: unknown provider {provider!r} (one of: {known})"]
    try:
        return providers[provider].settings_model.model_validate(raw), []
    except ValidationError as exc:
        return None, format_errors(exc, prefix=where)


def _check_key(source: SourceSettings, index: int) -> list[str]:
    problems = []
    if source.api_key_file is not None:
        try:
            source.read_api_key()
        except ValueError as exc:
            problems.append(f"sources[{index}].api_key_file: {exc}")
    try:
        source.read_webhook_secret()
    except ValueError as exc:
        problems.append(f"sources[{index}].webhook_secret_file: {exc}")
    return problems


class _SloPart(BaseModel):
    """The settings `slo-rules` reads; the rest of the file is not its business."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    buckets: BucketSettings = BucketSettings()
    slos: tuple[SloSettings, ...] = ()
    slo_defaults: SloDefaults = SloDefaults()


@dataclass(frozen=True)
class SloConfig:
    slos: tuple[SloSettings, ...]
    defaults: SloDefaults


_SLO_KEYS = ("buckets", "slos", "slo_defaults")


def load_slo_config(path: Path | None, environ: Mapping[str, str] | None = None) -> SloConfig:
    """Only the SLOs of a configuration file (and the buckets they check against), so rules can
    be generated where the sources' secrets are not set. Raises ConfigError."""
    environ = os.environ if environ is None else environ
    data, problems = read_document(path, environ)
    if data is None:
        raise ConfigError(problems)
    problems = [p for p in problems if p.startswith(_SLO_KEYS)]
    problems += [p for p in apply_env_overrides(data, environ) if p.startswith(_SLO_KEYS)]
    part: _SloPart | None = None
    try:
        part = _SloPart.model_validate({k: data[k] for k in _SLO_KEYS if k in data})
    except ValidationError as exc:
        problems += format_errors(exc)
    if part is not None:
        raw = data.get("sources")
        # A file of SLOs only names no sources to check against.
        names = (
            [str(s.get("name")) for s in raw if isinstance(s, dict)]
            if isinstance(raw, list)
            else None
        )
        problems += check_slos(part.slos, part.buckets.duration, names)
    if problems or part is None:
        raise ConfigError(problems)
    return SloConfig(part.slos, part.slo_defaults)
