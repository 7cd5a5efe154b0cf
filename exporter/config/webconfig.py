"""`--web.config.file`: TLS, client certificates and basic auth for the HTTP endpoints.

The format follows the Prometheus exporter-toolkit's web configuration file, so the same file and
the same habits work here:

    tls_server_config:
      cert_file: /etc/exporter/tls.crt
      key_file: /etc/exporter/tls.key
      client_auth_type: RequireAndVerifyClientCert   # or NoClientCert (default)
      client_ca_file: /etc/exporter/ca.crt
    basic_auth_users:
      prometheus: $2y$10$...   # bcrypt hash: htpasswd -nBC 10 "" | tr -d ':'""
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Literal

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from exporter.config.configfile import YamlBoundError, bounded_yaml, format_errors, read_bounded
from exporter.core.errors import ConfigError

ClientAuth = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]


class TlsServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: Path
    key_file: Path
    client_auth_type: ClientAuth = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: Literal["TLS12", "TLS13"] = "TLS12"

    @model_validator(mode="after")
    def _ca_when_verifying(self) -> TlsServerConfig:
        verifying = self.client_auth_type in (
            "VerifyClientCertIfGiven",
            "RequireAndVerifyClientCert",
        )
        if verifying and self.client_ca_file is None:
            raise ValueError(
                f"client_ca_file: required with client_auth_type {self.client_auth_type}"
            )
        return self


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tls_server_config: TlsServerConfig | None = None
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bcrypt_hashes(self) -> WebConfig:
        for user, hashed in self.basic_auth_users.items():
            if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                raise ValueError(f"basic_auth_users: the password of {user!r} is not a bcrypt hash")
        return self


def load_web_config(path: Path) -> WebConfig:
    try:
        data = bounded_yaml(read_bounded(path)) or {}
    except OSError as exc:
        raise ConfigError([f"web.config.file: cannot read {str(path)!r}: {exc.strerror}"]) from None
    except (ValueError, YamlBoundError) as exc:
        raise ConfigError([f"web.config.file: {str(path)!r}: refused: {exc}"]) from None
    except yaml.YAMLError:
        raise ConfigError([f"web.config.file: {str(path)!r} is not valid YAML"]) from None
    try:
        config = WebConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, prefix="web.config.file")) from None
    if config.tls_server_config is not None:
        try:
            ssl_context(config.tls_server_config)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"web.config.file: tls_server_config: {exc}"]) from None
    return config


def ssl_context(tls: TlsServerConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if tls.min_version == "TLS13" else ssl.TLSVersion.TLSv1_2
    )
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.client_ca_file is not None:
        context.load_verify_locations(str(tls.client_ca_file))
    context.verify_mode = {
        "NoClientCert": ssl.CERT_NONE,
        "RequestClientCert": ssl.CERT_OPTIONAL,
        "RequireAnyClientCert": ssl.CERT_REQUIRED,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }[tls.client_auth_type]
    return context


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    DENIED = "denied"
    LIMITED = "limited"  # too many failed attempts: answered at once, nothing verified


class FailureBudget:
    """Failed attempts allowed per client address: `burst` at once, then `rate` a second.

    Only failures spend it, so a client with the right password is never held back by it."""

    def __init__(
        self, rate: float = 1.0, burst: float = 10.0, clients: int = 4096, clock: Any = None
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._clients = clients
        self._clock = clock or time.monotonic
        # Tokens and when they were counted, per address; insertion order = least recent first.
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _tokens(self, client: str, now: float) -> float:
        tokens, at = self._buckets.pop(client, (self._burst, now))
        return min(self._burst, tokens + (now - at) * self._rate)

    def allows(self, client: str) -> bool:
        with self._lock:
            now = self._clock()
            tokens = self._tokens(client, now)
            self._buckets[client] = (tokens, now)
            return tokens >= 1.0

    def spend(self, client: str) -> None:
        with self._lock:
            now = self._clock()
            self._buckets[client] = (self._tokens(client, now) - 1.0, now)
            while len(self._buckets) > self._clients:
                del self._buckets[next(iter(self._buckets))]


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes.

    bcrypt is slow on purpose; a scrape every few seconds must not pay for it each time, so a
    successful check is remembered by an HMAC of the credentials under a per-process key, and
    a flood of wrong passwords never delays a scrape whose credentials were verified before.
    The flood itself is bounded: failures spend a budget per client address (past it: LIMITED,
    nothing verified), and at most `concurrent` bcrypt checks run at once (past it: LIMITED
    too, so request threads are not all held by bcrypt). An unknown user is checked against a
    dummy hash of the same cost, so the time taken does not tell whether a user exists.
    """

    def __init__(
        self,
        users: dict[str, str],
        failures: FailureBudget | None = None,
        concurrent: int = 2,
    ) -> None:
        self._users = {user: _normalised(hashed) for user, hashed in users.items()}
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)
        self._failures = failures or FailureBudget()
        self._bcrypt_slots = threading.BoundedSemaphore(concurrent)
        cost = max((_cost(h) for h in self._users.values()), default=10)
        self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))
        self.verifications = 0  # bcrypt checks made: the tests count them

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def check(self, header: str | None, client: str = "") -> Verdict:
        if not self._users:
            return Verdict.ALLOWED
        credentials = _credentials(header)
        if credentials is None:
            return Verdict.DENIED
        user, password = credentials
        mark = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if mark in self._verified:
                return Verdict.ALLOWED
        if not self._failures.allows(client):
            return Verdict.LIMITED
        if not self._bcrypt_slots.acquire(blocking=False):
            return Verdict.LIMITED
        try:
            self.verifications += 1
            hashed = self._users.get(user)
            try:
                ok = bcrypt.checkpw(password.encode(), hashed or self._dummy)
            except ValueError:  # over bcrypt's 72 bytes
                ok = False
            ok = ok and hashed is not None
        finally:
            self._bcrypt_slots.release()
        if not ok:
            self._failures.spend(client)
            return Verdict.DENIED
        with self._lock:
            self._verified.add(mark)
        return Verdict.ALLOWED


def _credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def _normalised(hashed: str) -> bytes:
    return hashed.replace("$2y$", "$2b$", 1).encode()


def _cost(hashed: bytes) -> int:
    try:
        return int(hashed.split(b"$")[2])
    except (IndexError, ValueError):
        return 10
