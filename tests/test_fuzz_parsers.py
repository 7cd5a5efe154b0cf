"""Fuzzing the parsers: whatever a runs page holds, a provider raises nothing but its documented
errors, skips each invalid record with a reason, and still yields every valid record of the page.

Valid pages are captured from the real simulators over loopback; hypothesis then feeds arbitrary
and mutated versions of them to each provider through an httpx transport that replays them.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.errors import ApiError, PaginationRunaway, PayloadError
from exporter.http import ApiClient, RetryPolicy
from exporter.model import Run
from exporter.providers import Provider, registry
from exporter.simulator import SIMULATORS
from tests.conftest import PROVIDERS, source_for

FLOOR = datetime(2000, 1, 1, tzinfo=UTC)


class RecordingEvents:
    def __init__(self) -> None:
        self.invalid: list[tuple[str, str]] = []
        self.unknown: list[str] = []

    def invalid_record(self, reason: str, detail: str) -> None:
        assert reason
        assert detail
        self.invalid.append((reason, detail))

    def unknown_status(self, native_status: str) -> None:
        self.unknown.append(native_status)

    def learned(self, fact: str, value: str, detail: str) -> None:
        assert fact
        assert value
        assert detail

    def inconsistency(self, reason: str, detail: str) -> None:
        assert reason
        assert detail


def items_of(provider: str, body: Any) -> list[Any] | None:
    if provider in ("plextera", "extend"):
        return body.get("data") if isinstance(body, dict) else None
    if provider == "noxus":
        return body.get("items") if isinstance(body, dict) else None
    return body if isinstance(body, list) else None


def emptied(provider: str, body: Any) -> Any:
    """The page after the last: the same shape with no items."""
    if isinstance(body, list):
        return []
    if items_of(provider, body) is not None:
        rest = {k: v for k, v in body.items() if k != "nextPageToken"}
        return {**rest, ("items" if provider == "noxus" else "data"): []}
    return body


@pytest.fixture(scope="module")
def captured() -> dict[str, tuple[dict[str, Any], Any, Any]]:
    """Per provider: source settings, one real runs page, and (Cortex) its workflow list."""
    pages: dict[str, tuple[dict[str, Any], Any, Any]] = {}
    for provider in PROVIDERS:
        sim = SIMULATORS[provider](seed=5, enforce_rate_limit=False, workflows=1)
        sim.start()
        try:
            sim.world.add_runs(12)
            sim.world.advance(1800)
            settings_ = source_for(sim, provider, page_size=50)
            provider_cls = registry()[provider]
            source = provider_cls.settings_model.model_validate(settings_)
            headers = provider_cls.auth_headers(source, sim.api_key)
            workflows = None
            if provider == "plextera":
                runs_url = f"{sim.base_url}/workflow-runs?page=1&size=50"
            elif provider == "noxus":
                runs_url = f"{sim.base_url}/v1/runs?page=1&size=50"
            elif provider == "extend":
                runs_url = f"{sim.base_url}/workflow_runs?maxPageSize=50"
            else:
                base = f"{sim.base_url}/apps/{settings_['app_id']}/workflows"
                workflows = httpx.get(f"{base}?page=1&take=50", headers=headers).json()
                runs_url = f"{base}/{workflows[0]['id']}/runs?page=1&take=50"
            page = httpx.get(runs_url, headers=headers).json()
            assert items_of(provider, page), f"{provider}: no items captured"
            pages[provider] = (settings_, page, workflows)
        finally:
            sim.stop()
    return pages


def scan_with(
    provider: str, settings_: dict[str, Any], body: Any, workflows: Any, *, raises: bool = False
) -> tuple[list[Run], RecordingEvents]:
    """Runs the provider's real scan against a transport that answers with `body`; its documented
    errors are swallowed unless `raises`."""

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if provider == "cortex" and path.endswith("/workflows"):
            return httpx.Response(200, json=workflows, headers={"pagination-page": "1"})
        if "/runs/" in path or "workflow-runs/" in path or "workflow_runs/" in path:
            return httpx.Response(404, json={})
        params = request.url.params
        if params.get("page") not in (None, "0", "1") or "nextPageToken" in params:
            return httpx.Response(200, content=json.dumps(emptied(provider, body)).encode())
        return httpx.Response(200, content=json.dumps(body).encode())

    provider_cls = registry()[provider]
    source = provider_cls.settings_model.model_validate({**settings_, "max_pages": 3})
    client = ApiClient(
        source=source.name,
        base_url=source.base_url,
        headers={},
        timeout=1,
        retry=RetryPolicy(max_retries=0),
        transport=httpx.MockTransport(answer),
    )
    events = RecordingEvents()
    instance: Provider = provider_cls(source, client, events)
    runs: list[Run] = []
    try:
        for run in instance.scan(FLOOR):
            runs.append(run)
    except (ApiError, PaginationRunaway):
        if raises:
            raise
        # the documented ways a page can fail; the collector handles them
    finally:
        client.close()
    return runs, events


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ
@given(body=json_values)
def test_arbitrary_bodies_never_raise_past_the_provider(
    provider: str, body: Any, captured: dict[str, tuple[dict[str, Any], Any, Any]]
) -> None:
    settings_, _, workflows = captured[provider]
    scan_with(provider, settings_, body, workflows)


# What each provider's list page must be, as its error says when the page is something else.
EXPECTED_SHAPE = {
    "plextera": "expected an object with a `data` list",
    "noxus": "expected an object with an `items` list",
    "extend": "expected an object with a `data` list",
    "cortex": "expected a JSON array",
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_page_of_another_shape_is_a_payload_error_naming_the_shape_expected(
    provider: str, captured: dict[str, tuple[dict[str, Any], Any, Any]]
) -> None:
    settings_, _, workflows = captured[provider]
    expected = EXPECTED_SHAPE.get(provider, "expected")
    bodies: tuple[Any, ...] = ({"results": []}, "a string", None)
    for body in bodies:
        with pytest.raises(PayloadError, match=re.escape(expected)):
            scan_with(provider, settings_, body, workflows, raises=True)


def mutations() -> st.SearchStrategy[list[tuple[int, str, Any]]]:
    """(item index, field, new value or a deletion marker) triples."""
    return st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=100),
            st.sampled_from(
                [
                    "id",
                    "status",
                    "createdAt",
                    "created_at",
                    "updatedAt",
                    "workflow",
                    "workflow_id",
                    "error",
                    "progress",
                    "durationMs",
                    "started_at",
                    "finished_at",
                    "steps",
                    "output",
                ]
            ),
            st.one_of(st.just("<delete>"), json_values),
        ),
        max_size=6,
    )


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ
@given(changes=mutations())
def test_mutated_pages_keep_every_valid_record_and_name_every_invalid_one(
    provider: str,
    changes: list[tuple[int, str, Any]],
    captured: dict[str, tuple[dict[str, Any], Any, Any]],
) -> None:
    settings_, page, workflows = captured[provider]
    body = copy.deepcopy(page)
    items = items_of(provider, body)
    assert items is not None
    touched: set[int] = set()
    for index, name, value in changes:
        position = index % len(items)
        touched.add(position)
        if value == "<delete>":
            items[position].pop(name, None)
        else:
            items[position][name] = value
    untouched_ids = {item["id"] for position, item in enumerate(items) if position not in touched}

    runs, events = scan_with(provider, settings_, body, workflows)

    yielded = {run.id for run in runs}
    assert untouched_ids <= yielded, "a bad record must not lose the valid ones of its page"
    dropped = [detail for reason, detail in events.invalid if reason != "field"]
    assert len(runs) + len(dropped) == len(items), "each record is a run or a reason"
    # A run kept without a bad optional field is named with its field.
    for _, detail in (e for e in events.invalid if e[0] == "field"):
        assert any(repr(run.id) in detail for run in runs), detail
    for run in runs:
        assert run.created_at.tzinfo is not None
        assert run.cursor_time.tzinfo is not None
    assert all(reason in ("schema", "value", "field") for reason, _ in events.invalid)


def test_an_out_of_range_timestamp_is_an_invalid_record_not_a_crash(
    captured: dict[str, tuple[dict[str, Any], Any, Any]],
) -> None:
    """Found by the fuzzer: `datetime.fromtimestamp` raises OverflowError past year 9999."""
    settings_, page, workflows = captured["cortex"]
    body = copy.deepcopy(page)
    body[0]["created_at"] = 1e20
    runs, events = scan_with("cortex", settings_, body, workflows)
    assert len(events.invalid) == 1
    assert "out of range" in events.invalid[0][1]
    assert len(runs) == len(body) - 1


@pytest.mark.parametrize("provider", ["plextera", "extend"])
def test_a_page_read_whole_gives_the_runs_read_item_by_item(
    provider: str, captured: dict[str, tuple[dict[str, Any], Any, Any]]
) -> None:
    """A valid page is read straight from its bytes; one invalid item sends the page through
    the item-by-item path. Both must give the same runs for the same valid items."""
    settings_, page, workflows = captured[provider]
    whole, whole_events = scan_with(provider, settings_, page, workflows)
    spoiled = copy.deepcopy(page)
    spoiled["data"].append({"id": "broken"})  # no status, no dates: invalid
    by_item, item_events = scan_with(provider, settings_, spoiled, workflows)
    assert whole_events.invalid == []
    assert len(item_events.invalid) == 1
    assert whole == by_item
    assert len(whole) == len(page["data"])
