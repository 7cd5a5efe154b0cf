"""The pure webhook checks: signatures, timestamps, replays and the run an event names."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from exporter.providers import registry
from exporter.providers.webhooks import Dialect, run_id_at
from exporter.webhooks.verify import ReplayGuard, Result, verify

SECRET = b"whsec-test-0123456789"
NOW = 1_800_000_000.0


def extend_request(
    body: dict[str, Any], *, at: float = NOW, secret: bytes = SECRET
) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    stamp = str(int(at))
    sig = hmac.new(secret, b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return {"x-extend-request-timestamp": stamp, "x-extend-request-signature": sig}, raw


def plextera_request(
    body: dict[str, Any], *, at: float = NOW, secret: bytes = SECRET
) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    stamp = str(int(at))
    sig = hmac.new(secret, stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    return {"x-plextera-signature": f"t={stamp},v1={sig}"}, raw


def dialect_of(provider: str) -> Dialect:
    """The dialect as the service finds it: from the provider's class in the registry."""
    dialect = registry()[provider].webhook_dialect
    assert dialect is not None, f"{provider} sends no webhooks"
    return dialect


def check(dialect: str, headers: dict[str, str], raw: bytes, **kw: Any) -> Any:
    return verify(dialect_of(dialect), headers, raw, SECRET, now=NOW, tolerance=300.0, **kw)


EXTEND_FAILED = {
    "eventId": "evt_1",
    "eventType": "workflow_run.failed",
    "payload": {"object": "workflow_run", "id": "workflow_run_abc", "status": "FAILED"},
}


def test_extend_signed_event_names_its_run() -> None:
    verdict = check("extend", *extend_request(EXTEND_FAILED))
    assert verdict.result is Result.ACCEPTED
    assert verdict.event.run_id == "workflow_run_abc"
    assert verdict.replay_key == "extend:evt_1"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),  # body changed after signing
        lambda h, b: ({**h, "x-extend-request-signature": "0" * 64}, b),
        lambda h, b: ({k: v for k, v in h.items() if "signature" not in k}, b),
        lambda h, b: ({**h, "x-extend-request-timestamp": str(int(NOW) + 1)}, b),
        lambda h, b: ({}, b),
    ],
)
def test_extend_forgeries_are_bad_signatures(tamper: Any) -> None:
    headers, raw = extend_request(EXTEND_FAILED)
    assert check("extend", *tamper(headers, raw)).result is Result.BAD_SIGNATURE


def test_wrong_secret_is_a_bad_signature() -> None:
    headers, raw = extend_request(EXTEND_FAILED, secret=b"another-secret-000")
    assert check("extend", headers, raw).result is Result.BAD_SIGNATURE


def test_old_and_future_timestamps_are_stale_only_when_signed() -> None:
    assert check("extend", *extend_request(EXTEND_FAILED, at=NOW - 301)).result is Result.STALE
    assert check("extend", *extend_request(EXTEND_FAILED, at=NOW + 301)).result is Result.STALE
    assert check("extend", *extend_request(EXTEND_FAILED, at=NOW - 299)).result is Result.ACCEPTED
    headers, raw = extend_request(EXTEND_FAILED, at=NOW - 3600)
    headers["x-extend-request-signature"] = "f" * 64
    assert check("extend", headers, raw).result is Result.BAD_SIGNATURE


def test_unknown_and_step_events_are_ignored() -> None:
    for event_type in ("workflow_run.step_run.processed", "file.created", None):
        body = {**EXTEND_FAILED, "eventType": event_type}
        verdict = check("extend", *extend_request(body))
        assert verdict.result is Result.UNKNOWN_EVENT
        assert verdict.replay_key == "extend:evt_1"


def test_extend_payload_as_url_is_a_run_event_without_an_id() -> None:
    body = {**EXTEND_FAILED, "payload": {"data": "https://files.example/signed?x=1"}}
    verdict = check("extend", *extend_request(body))
    assert verdict.result is Result.ACCEPTED
    assert verdict.event.run_id is None


def test_signed_garbage_is_invalid() -> None:
    headers = {"x-extend-request-timestamp": str(int(NOW))}
    raw = b"{not json"
    headers["x-extend-request-signature"] = hmac.new(
        SECRET, b"v0:" + headers["x-extend-request-timestamp"].encode() + b":" + raw, "sha256"
    ).hexdigest()
    assert check("extend", headers, raw).result is Result.INVALID


def test_plextera_signature_and_run_id_paths() -> None:
    body = {"type": "workflow.run.failed", "data": {"id": "run_9", "status": "FAILED"}}
    verdict = check("plextera", *plextera_request(body))
    assert verdict.result is Result.ACCEPTED
    assert verdict.event.run_id == "run_9"
    assert verdict.replay_key is not None
    assert verdict.replay_key.startswith("plextera:")
    nested = {"event": "workflow.run.completed", "object": {"run": {"ref": 42}}}
    verdict = check("plextera", *plextera_request(nested), run_id_paths=("object.run.ref",))
    assert verdict.event.run_id == "42"


def test_plextera_any_of_several_v1_signatures_matches() -> None:
    headers, raw = plextera_request({"type": "workflow.run.completed", "id": "run_1"})
    t, v1 = headers["x-plextera-signature"].split(",")
    headers["x-plextera-signature"] = f"{t},v1={'0' * 64},{v1}"
    assert check("plextera", headers, raw).result is Result.ACCEPTED
    headers["x-plextera-signature"] = f"{t},v1={'0' * 64}"
    assert check("plextera", headers, raw).result is Result.BAD_SIGNATURE


def test_plextera_run_event_without_a_run_is_invalid_and_others_ignored() -> None:
    assert (
        check("plextera", *plextera_request({"type": "workflow.run.failed"})).result
        is Result.INVALID
    )
    assert (
        check("plextera", *plextera_request({"type": "workflow.created", "id": "w"})).result
        is Result.UNKNOWN_EVENT
    )


def test_run_id_at_takes_the_first_path_with_an_id() -> None:
    body = {"data": {"id": ""}, "payload": {"id": True}, "run": {"id": "r"}, "id": "e"}
    assert run_id_at(body, ("data.id", "payload.id", "run.id", "id")) == "r"
    assert run_id_at({"data": "x"}, ("data.id",)) is None


def test_replay_guard_remembers_for_the_window_and_is_bounded() -> None:
    guard = ReplayGuard(window=10.0, capacity=3)
    guard.remember("a", NOW)
    assert guard.seen("a", NOW + 19)
    assert not guard.seen("a", NOW + 21)
    for key in "bcde":
        guard.remember(key, NOW)
    assert len(guard) == 3
    assert not guard.seen("b", NOW)  # the oldest made room
    assert guard.seen("e", NOW)


def test_plextera_header_edge_cases() -> None:
    headers, raw = plextera_request({"type": "workflow.run.completed", "id": "run_1"})
    t, v1 = headers["x-plextera-signature"].split(",")
    stamp, mac = t.removeprefix("t="), v1.removeprefix("v1=")

    def result(header: str) -> Result:
        found: Result = check("plextera", {"x-plextera-signature": header}, raw).result
        return found

    assert result(f" t={stamp} , v1={mac.upper()} ") is Result.ACCEPTED  # spaces, upper-case hex
    assert result(f"v1={mac},t={stamp}") is Result.ACCEPTED  # any order
    assert result(f"v1={'0' * 64},v1={mac},v1=zz") is Result.BAD_SIGNATURE  # no t
    for bad_t in ("", "abc", "-1", "0", "nan", "inf", "1e400", "9" * 400):
        assert result(f"t={bad_t},v1={mac}") is Result.BAD_SIGNATURE, bad_t
    assert result(f"t={stamp},v1=") is Result.BAD_SIGNATURE
    assert result(f"t={stamp}") is Result.BAD_SIGNATURE
    assert result("") is Result.BAD_SIGNATURE


@pytest.mark.parametrize("dialect", ["extend", "plextera"])
def test_a_signature_with_non_ascii_characters_is_a_bad_signature_not_an_error(
    dialect: str,
) -> None:
    # Header values arrive decoded as Latin-1: any byte can be there.
    if dialect == "extend":
        headers, raw = extend_request(EXTEND_FAILED)
        headers["x-extend-request-signature"] = "\xe9" + headers["x-extend-request-signature"]
    else:
        headers, raw = plextera_request({"type": "workflow.run.completed", "id": "run_1"})
        headers["x-plextera-signature"] += ",v1=\xe9\xff"
        assert check(dialect, headers, raw).result is Result.ACCEPTED  # the good v1 still counts
        headers["x-plextera-signature"] = headers["x-plextera-signature"].replace("v1=", "v1=\xe9")
    assert check(dialect, headers, raw).result is Result.BAD_SIGNATURE


def test_a_huge_or_millisecond_timestamp_is_judged_by_its_value() -> None:
    headers, raw = extend_request(EXTEND_FAILED, at=NOW * 1000)  # milliseconds
    assert check("extend", headers, raw).result is Result.ACCEPTED
    headers, raw = extend_request(EXTEND_FAILED, at=NOW * 10**9)
    assert check("extend", headers, raw).result is Result.STALE


@pytest.mark.parametrize("provider", sorted(registry()))
def test_a_provider_with_a_dialect_takes_a_webhook_secret_and_only_then(provider: str) -> None:
    """A secret is accepted in the configuration exactly where the listener can verify what the
    provider signs: its class's dialect says so, nothing else."""
    found = registry()[provider]
    dialect = found.webhook_dialect
    settings = {"name": "s", "provider": provider, "api_key": "k", "webhook_secret": SECRET}
    for required, field in found.settings_model.model_fields.items():
        if field.is_required() and required not in settings:
            settings[required] = "x"
    if dialect is None:
        with pytest.raises(ValueError, match="sends no webhooks"):
            found.settings_model.model_validate(settings)
        return
    assert found.settings_model.model_validate(settings).read_webhook_secret() == SECRET.decode()
    assert dialect.name == provider
    assert dialect.run_events, "a dialect names the event types that say a run changed"
    assert dialect.signature_doc
