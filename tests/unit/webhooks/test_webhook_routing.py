"""Which replica takes an event (pure), the loop guard, what a forward carries, and the peer
address setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from exporter.config.webhooks import WebhookSettings
from exporter.core.sharding import Shard, bucket
from exporter.webhooks.routing import (
    FORWARDED_BY,
    Decision,
    forwarded_headers,
    owner_of,
    route,
)

SOURCES = [f"source-{i}" for i in range(40)]


@pytest.mark.parametrize("count", [2, 3, 5])
def test_a_source_goes_to_the_shard_that_collects_it(count: int) -> None:
    for source in SOURCES:
        owner = owner_of(Shard(0, count), source, by_workflow=False, workflow_id="ignored")
        assert Shard(owner, count).owns_source(source)
        # Every replica agrees, whichever it is.
        assert {
            owner_of(Shard(i, count), source, by_workflow=False, workflow_id=None)
            for i in range(count)
        } == {owner}


def test_a_source_split_by_workflow_goes_to_the_workflow_s_shard_else_by_its_name() -> None:
    shard = Shard(0, 4)
    for workflow in (f"wf-{i}" for i in range(30)):
        owner = owner_of(shard, "cortex", by_workflow=True, workflow_id=workflow)
        assert Shard(owner, 4).owns_workflow("cortex", workflow)
    assert owner_of(shard, "cortex", by_workflow=True, workflow_id=None) == bucket("cortex", 4)


def test_the_owner_takes_others_forward_and_a_forwarded_event_is_never_forwarded_again() -> None:
    source = next(s for s in SOURCES if bucket(s, 3) == 1)
    for index, decision in ((1, Decision.TAKE), (0, Decision.FORWARD), (2, Decision.FORWARD)):
        found = route(Shard(index, 3), source, by_workflow=False, workflow_id=None, forwarded=False)
        assert (found.decision, found.owner) == (decision, 1)
    # Forwarded to the owner: taken. Forwarded to another (the replicas disagree about the
    # count): refused, not sent on.
    taken = route(Shard(1, 3), source, by_workflow=False, workflow_id=None, forwarded=True)
    assert taken.decision is Decision.TAKE
    loop = route(Shard(0, 3), source, by_workflow=False, workflow_id=None, forwarded=True)
    assert (loop.decision, loop.owner) == (Decision.MISROUTED, 1)


def test_unsharded_everything_is_taken_here() -> None:
    for source in SOURCES:
        found = route(Shard(0, 1), source, by_workflow=False, workflow_id=None, forwarded=True)
        assert found.decision is Decision.TAKE


def test_a_forward_carries_the_event_s_headers_not_the_connection_s() -> None:
    received = {
        "host": "exporter.example",
        "content-length": "120",
        "connection": "keep-alive",
        "transfer-encoding": "chunked",
        "proxy-authorization": "Basic x",
        "expect": "100-continue",
        FORWARDED_BY: "7",  # a caller's own mark is replaced, never trusted
        "content-type": "application/json",
        "x-extend-request-signature": "abc",
        "x-extend-request-timestamp": "1700000000",
        "x-plextera-signature": "t=1,v1=def",
    }
    assert forwarded_headers(received, 2) == {
        "content-type": "application/json",
        "x-extend-request-signature": "abc",
        "x-extend-request-timestamp": "1700000000",
        "x-plextera-signature": "t=1,v1=def",
        FORWARDED_BY: "2",
    }


def test_the_peer_address_names_the_shard_once() -> None:
    settings = WebhookSettings(
        peer_url_template="http://wre-{shard}.wre-headless.monitoring.svc:9856/"
    )
    assert (
        settings.peer_url(3, "extend main")
        == "http://wre-3.wre-headless.monitoring.svc:9856/webhooks/extend%20main"
    )
    assert WebhookSettings().peer_url(3, "extend") is None


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("http://wre-0.wre:9856", "{shard}"),
        ("http://wre-{shard}-{shard}.wre:9856", "{shard}"),
        ("http://wre-{index}.wre:9856", "{shard}"),
        ("http://wre-{shard.x}.wre:9856", "{shard}"),
        ("http://wre-{shard.wre:9856", "template"),
        ("ftp://wre-{shard}.wre", "http"),
        ("wre-{shard}.wre:9856", "http"),
        ("http://wre-{shard}.wre:9856/webhooks", "address only"),
    ],
)
def test_a_wrong_peer_address_is_refused_naming_what_is_wrong(template: str, problem: str) -> None:
    with pytest.raises(ValidationError, match="peer_url_template") as caught:
        WebhookSettings(peer_url_template=template)
    assert problem in str(caught.value)


@pytest.mark.parametrize("timeout", ["10ms", "1m"])
def test_the_forward_timeout_is_bounded(timeout: str) -> None:
    with pytest.raises(ValidationError, match="forward_timeout"):
        WebhookSettings.model_validate({"forward_timeout": timeout})
