"""Protected endpoints (TLS, mTLS, basic auth), key rotation, bounded responses, no clear text."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from exporter.app import Exporter
from exporter.commands.run import server_hooks
from exporter.config.settings import config_from_data
from exporter.config.webconfig import load_web_config
from exporter.core.errors import ConfigError
from exporter.web.server import MetricsServer
from tests.conftest import ExporterFactory, SimFactory, source_for
from tests.series import finished, up
from tests.tls_support import Pki, make_pki

PASSWORD = "s3cret-scrape-password"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def exporter(simulator: SimFactory, exporter_factory: ExporterFactory) -> Exporter:
    sim = simulator("plextera", seed=81)
    sim.world.add_runs(5)
    exporter = exporter_factory([source_for(sim, "plextera")])
    exporter.collect_all()
    return exporter


def serve(exporter: Exporter, tmp_path: Path, web: dict[str, Any]) -> Iterator[MetricsServer]:
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(web))
    server = MetricsServer("127.0.0.1:0", server_hooks(exporter), load_web_config(path))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def hashed(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def client_context(pki: Pki, with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if with_cert:
        context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return context


def test_tls_with_basic_auth_admits_only_the_right_credentials(
    exporter: Exporter, tmp_path: Path, pki: Pki
) -> None:
    web = {
        "tls_server_config": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)},
        "basic_auth_users": {"prometheus": hashed(PASSWORD)},
    }
    for server in serve(exporter, tmp_path, web):
        url = server.url("/metrics")
        assert url.startswith("https://")
        verify = client_context(pki, with_cert=False)

        ok = httpx.get(url, auth=("prometheus", PASSWORD), verify=verify)
        assert ok.status_code == 200
        assert "workflow_runs_finished_total" in ok.text
        # A second scrape is served from the verified-credentials cache: still right.
        assert httpx.get(url, auth=("prometheus", PASSWORD), verify=verify).status_code == 200

        assert httpx.get(url, auth=("prometheus", "wrong"), verify=verify).status_code == 401
        assert httpx.get(url, auth=("someone", PASSWORD), verify=verify).status_code == 401
        anonymous = httpx.get(url, verify=verify)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
        assert httpx.get(server.url("/"), verify=verify).status_code == 401

        plain = url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):
            httpx.get(plain, auth=("prometheus", PASSWORD), timeout=3)


def test_mtls_refuses_a_client_without_a_certificate(
    exporter: Exporter, tmp_path: Path, pki: Pki
) -> None:
    web = {
        "tls_server_config": {
            "cert_file": str(pki.server_cert),
            "key_file": str(pki.server_key),
            "client_auth_type": "RequireAndVerifyClientCert",
            "client_ca_file": str(pki.ca),
        }
    }
    for server in serve(exporter, tmp_path, web):
        url = server.url("/metrics")
        with_cert = httpx.get(url, verify=client_context(pki, with_cert=True))
        assert with_cert.status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, verify=client_context(pki, with_cert=False), timeout=3)


def test_a_bad_web_config_names_the_problem(tmp_path: Path, pki: Pki) -> None:
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump({"basic_auth_users": {"p": "plain-text"}}))
    with pytest.raises(ConfigError, match="not a bcrypt hash"):
        load_web_config(path)
    path.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert_file": str(pki.server_cert),
                    "key_file": str(pki.server_key),
                    "client_auth_type": "RequireAndVerifyClientCert",
                }
            }
        )
    )
    with pytest.raises(ConfigError, match="client_ca_file"):
        load_web_config(path)


def test_a_rotated_key_file_is_used_without_a_restart(
    simulator: SimFactory, exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    sim = simulator("noxus", seed=82)
    sim.world.add_runs(6)
    key_file = tmp_path / "noxus.key"
    key_file.write_text(sim.api_key + "\n")
    source = {**source_for(sim, "noxus"), "api_key_file": str(key_file)}
    source.pop("api_key")
    exporter = exporter_factory([source])
    assert exporter.collect_all()[0].ok

    sim.api_key = "rotated-key-9b1c7e3d"  # the provider now accepts only the new key
    assert not exporter.collect_all()[0].ok
    key_file.write_text(sim.api_key)
    report = exporter.collect_all()[0]

    assert report.ok, report.error
    assert up(exporter, "noxus-test") == 1


@pytest.mark.parametrize(
    ("fault", "params", "message"),
    [
        ("drip", {"interval": 0.3}, "request_deadline"),
        ("endless", {}, "max_response_bytes"),
    ],
)
def test_slow_or_endless_responses_are_cut_off_on_that_source_only(
    fault: str,
    params: dict[str, Any],
    message: str,
    simulator: SimFactory,
    exporter_factory: ExporterFactory,
) -> None:
    bad = simulator("plextera", seed=83)
    good = simulator("noxus", seed=84)
    for sim in (bad, good):
        sim.world.add_runs(5)
    exporter = exporter_factory(
        [
            source_for(
                bad,
                "plextera",
                name="bad",
                max_retries=0,
                timeout="1s",
                request_deadline="2s",
                max_response_bytes=1024 * 1024,
            ),
            source_for(good, "noxus", name="good"),
        ]
    )
    bad.faults.inject(fault, count=1, **params)

    reports = {r.source: r for r in exporter.collect_all()}

    assert not reports["bad"].ok
    assert message in (reports["bad"].error or "")
    assert reports["good"].ok
    assert finished(exporter, "good") == good.world.truth().finished
    assert exporter.collect_all()[0].ok, "the next cycle recovers"


def test_clear_text_to_a_remote_host_is_refused_unless_allowed() -> None:
    source = {
        "name": "remote",
        "provider": "noxus",
        "api_key": "k-123456",
        "base_url": "http://noxus.example.com",
    }
    with pytest.raises(ConfigError) as refused:
        config_from_data({"sources": [source]}, environ={})
    assert refused.value.problems == [
        "sources[0].base_url: plain http:// to a host other than loopback would send the API "
        "key in clear text; use https:// or set allow_insecure: true"
    ]
    assert "k-123456" not in str(refused.value)
    config_from_data({"sources": [{**source, "allow_insecure": True}]}, environ={})
    config_from_data({"sources": [{**source, "base_url": "http://127.0.0.1:8080"}]}, environ={})


def test_an_alias_bomb_in_the_web_config_is_refused(tmp_path: Path) -> None:
    from tests.unit.config.test_settings import ALIAS_BOMB

    path = tmp_path / "web.yml"
    path.write_text(ALIAS_BOMB)
    with pytest.raises(ConfigError) as refused:
        load_web_config(path)
    assert refused.value.problems == [
        f"web.config.file: {str(path)!r}: refused: aliases expand to more than 100000 values "
        "at line 6, column 4 (an alias bomb?)"
    ]
