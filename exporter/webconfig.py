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
import hashlib
import hmac
import secrets
import ssl
import threading
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from exporter.settings import ConfigError, YamlBoundError, bounded_yaml, format_errors, read_bounded

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


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes.

    bcrypt is slow on purpose; a scrape every few seconds must not pay for it each time, so a
    successful check is remembered by an HMAC of the credentials under a per-process key.
    """

    def __init__(self, users: dict[str, str]) -> None:
        self._users = users
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def check(self, header: str | None) -> bool:
        if not self._users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self._users.get(user)
        if hashed is None:
            return False
        mark = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if mark in self._verified:
                return True
        if not bcrypt.checkpw(password.encode(), hashed.replace("$2y$", "$2b$", 1).encode()):
            return False
        with self._lock:
            self._verified.add(mark)
        return True
