"""Fuzzing the page decoders: whatever a runs page holds, a provider raises nothing but a payload
error, skips each invalid record with a reason, and still yields every valid record of the page.

Each provider's `decode_page` is pure (body and headers in, runs and paging facts out), so the
fuzzing needs no network and no code per provider: a real page is captured once from each
registered provider's simulator (the provider's own scan asks for it), and hypothesis feeds
arbitrary and mutated versions of it to the decoder.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.core.errors import PayloadError
from exporter.core.model import Run
from exporter.providers import Provider, registry
from exporter.providers.client import ApiClient
from exporter.providers.retry import RetryPolicy
from exporter.simulator import SIMULATORS, SimulatorServer
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


class Captured:
    """One provider's real runs page, with what decoding it takes."""

    def __init__(self, provider: str, sim: SimulatorServer, settings_: dict[str, Any]) -> None:
        self.provider = provider
        self.list_items = sim.list_items  # needs no running server
        self.settings = settings_
        assert sim.last_runs_page is not None, f"{provider}: no runs page captured"
        self.body, self.headers = copy.deepcopy(sim.last_runs_page)
        self.items: list[dict[str, Any]] = sim.list_items(self.body) or []
        assert self.items, f"{provider}: the captured page holds no runs"

    def provider_instance(self, events: RecordingEvents) -> Provider[Any]:
        provider_cls = registry()[self.provider]
        source = provider_cls.settings_model.model_validate(self.settings)
        client = ApiClient(
            source=source.name,
            base_url=source.base_url,
            headers={},
            timeout=1,
            retry=RetryPolicy(max_retries=0),
        )
        client.close()  # decoding does no I/O
        return provider_cls(source, client, events)

    def decode(self, body: Any) -> tuple[list[Run], RecordingEvents]:
        events = RecordingEvents()
        try:
            runs = list(self.provider_instance(events).decode_page(body, self.headers).items)
        except PayloadError:
            runs = []  # the documented way a page of another shape fails
        return runs, events


@pytest.fixture(scope="module")
def captured() -> dict[str, Captured]:
    """Per provider: a real runs page, asked for by the provider's own scan of its simulator."""
    pages: dict[str, Captured] = {}
    for provider in PROVIDERS:
        sim = SIMULATORS[provider](seed=5, enforce_rate_limit=False, workflows=1)
        sim.start()
        try:
            sim.world.add_runs(12)
            sim.world.advance(1800)
            settings_ = source_for(sim, provider, page_size=50)
            provider_cls = registry()[provider]
            source = provider_cls.settings_model.model_validate(settings_)
            client = ApiClient(
                source=source.name,
                base_url=source.base_url,
                headers=provider_cls.auth_headers(source, sim.api_key),
                timeout=5,
                retry=RetryPolicy(max_retries=0),
            )
            try:
                for _ in provider_cls(source, client, RecordingEvents()).scan(FLOOR):
                    pass
            finally:
                client.close()
            pages[provider] = Captured(provider, sim, settings_)
        finally:
            sim.stop()
    return pages


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
def test_arbitrary_bodies_never_raise_past_the_decoder(
    provider: str, body: Any, captured: dict[str, Captured]
) -> None:
    captured[provider].decode(body)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_page_of_another_shape_is_a_payload_error_naming_the_shape_expected(
    provider: str, captured: dict[str, Captured]
) -> None:
    page = captured[provider]
    bodies: tuple[Any, ...] = ({"results": []}, "a string", None)
    for body in bodies:
        with pytest.raises(PayloadError, match="expected"):
            page.provider_instance(RecordingEvents()).decode_page(body, page.headers)


@st.composite
def mutations(draw: st.DrawFn, fields: list[str]) -> list[tuple[int, str, Any]]:
    """(item index, field, new value or a deletion marker) triples, over the page's own fields."""
    return draw(
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=100),
                st.sampled_from(fields),
                st.one_of(st.just("<delete>"), json_values),
            ),
            max_size=6,
        )
    )


@pytest.mark.parametrize("provider", PROVIDERS)
@FUZZ
@given(data=st.data())
def test_mutated_pages_keep_every_valid_record_and_name_every_invalid_one(
    provider: str, data: st.DataObject, captured: dict[str, Captured]
) -> None:
    page = captured[provider]
    body = copy.deepcopy(page.body)
    items = page.list_items(body)
    assert items
    fields = sorted({key for item in items for key in item})
    touched: set[int] = set()
    for index, name, value in data.draw(mutations(fields), label="changes"):
        position = index % len(items)
        touched.add(position)
        if value == "<delete>":
            items[position].pop(name, None)
        else:
            items[position][name] = value
    untouched_ids = {item["id"] for position, item in enumerate(items) if position not in touched}

    runs, events = page.decode(body)

    yielded = {run.shown for run in runs}
    assert untouched_ids <= yielded, "a bad record must not lose the valid ones of its page"
    dropped = [detail for reason, detail in events.invalid if reason != "field"]
    assert len(runs) + len(dropped) == len(items), "each record is a run or a reason"
    # A run kept without a bad optional field is named with its field.
    for _, detail in (e for e in events.invalid if e[0] == "field"):
        assert any(repr(run.shown) in detail for run in runs), detail
    for run in runs:
        assert run.created_at.tzinfo is not None
        assert run.cursor_time.tzinfo is not None
    assert all(reason in ("schema", "value", "field", "id") for reason, _ in events.invalid)


# Providers that read valid pages straight from their bytes into typed runs.
TYPED = [p for p in PROVIDERS if registry()[p].fast_decode is not Provider.fast_decode]


@pytest.mark.parametrize("provider", TYPED)
def test_a_page_read_whole_gives_the_runs_read_item_by_item(
    provider: str, captured: dict[str, Captured]
) -> None:
    """A valid page is read straight from its bytes; one invalid item sends the page through
    the item-by-item path. Both give the same runs for the same valid items."""
    page = captured[provider]
    instance = page.provider_instance(RecordingEvents())
    raw = json.dumps(page.body).encode()
    typed = instance.fast_decode(raw)
    whole = list(instance.decode_page(typed, page.headers).items)
    by_item = list(instance.decode_page(json.loads(raw), page.headers).items)
    assert whole == by_item
    assert len(whole) == len(page.items)


def test_an_out_of_range_timestamp_is_an_invalid_record_not_a_crash(
    captured: dict[str, Captured],
) -> None:
    """Found by the fuzzer: `datetime.fromtimestamp` raises OverflowError past year 9999."""
    page = captured["cortex"]
    body = copy.deepcopy(page.body)
    body[0]["created_at"] = 1e20
    runs, events = page.decode(body)
    assert len(events.invalid) == 1
    assert "out of range" in events.invalid[0][1]
    assert len(runs) == len(body) - 1


# Numbers no API should send, as numbers and as strings: each must lose its field, never its run.
ABSURD_NUMBERS = (
    10**400,
    -(10**400),
    -1,
    -7.5,
    1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
)
# Every numeric field of each provider's runs (a path into the item; `*` is every key there); a
# provider not named here (a plugin's) declares none.
NUMERIC_FIELDS: dict[str, list[tuple[str, ...]]] = {
    "plextera": [
        ("progress", "stepsCompleted"),
        ("progress", "stepsTotal"),
        ("durationMs",),
        ("computedDurationMs",),
    ],
    "noxus": [("progress",)],
    "cortex": [("started_at",), ("ended_at",), ("output", "*", "start"), ("output", "*", "end")],
    "extend": [],  # its runs carry no number the exporter reads
}
# Page numbers and totals, in the body (a path) or, for Cortex, in the headers (a name).
PAGE_NUMBERS: dict[str, list[tuple[str, ...]]] = {
    "plextera": [("pageInfo", "page"), ("pageInfo", "totalItems"), ("pageInfo", "totalPages")],
    "noxus": [("page",), ("total",), ("pages",)],
    "cortex": [("pagination-page",), ("pagination-count",)],
    "extend": [],
}
NUMBERED = [p for p in PROVIDERS if NUMERIC_FIELDS.get(p)]


def _set(target: Any, path: tuple[str, ...], value: Any) -> None:
    *parents, last = path
    for key in parents:
        if key == "*":
            for child in target.values() if isinstance(target, dict) else ():
                _set(child, (last,), value)
            return
        target = target.get(key) if isinstance(target, dict) else None
        if target is None:
            return
    if isinstance(target, dict):
        target[last] = value


def _decode_like_the_client(page: Captured, body: Any, headers: Any) -> tuple[list[Run], Any]:
    """The page read as the HTTP client reads it: typed from the bytes where that works, else as
    plain JSON, then `decode_page`."""
    events = RecordingEvents()
    instance = page.provider_instance(events)
    raw = json.dumps(body).encode()
    try:
        decoded = instance.fast_decode(raw)
    except ValueError:
        decoded = json.loads(raw)
    return list(instance.decode_page(decoded, headers).items), events


@pytest.mark.parametrize("provider", NUMBERED)
@FUZZ
@given(data=st.data())
def test_absurd_numbers_lose_their_field_never_their_run(
    provider: str, data: st.DataObject, captured: dict[str, Captured]
) -> None:
    page = captured[provider]
    body = copy.deepcopy(page.body)
    items = page.list_items(body)
    assert items
    changes = data.draw(
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=len(items) - 1),
                st.sampled_from(NUMERIC_FIELDS[provider]),
                st.sampled_from(ABSURD_NUMBERS),
            ),
            min_size=1,
            max_size=8,
        ),
        label="changes",
    )
    for index, path, value in changes:
        _set(items[index], path, value)

    runs, events = _decode_like_the_client(page, body, page.headers)

    assert len(runs) == len(items), events.invalid  # every run kept
    assert all(reason == "field" for reason, _ in events.invalid), events.invalid
    for run in runs:
        assert run.progress is None or 0 <= run.progress <= 1
        assert run.duration_seconds is None or 0 <= run.duration_seconds < 10**9
    # Each absurd value is said (a step's start or end is read from finished runs only).
    said = [path for _, path, _ in changes if "*" not in path or _ended(items, changes)]
    if said:
        assert events.invalid, changes


def _ended(items: list[dict[str, Any]], changes: list[tuple[int, tuple[str, ...], Any]]) -> bool:
    """Whether a step's time was changed on a run whose steps are read (Cortex: finished)."""
    return any(
        "*" in path
        and items[index].get("status") in ("COMPLETED", "FAILED", "CANCELLED", "SKIPPED")
        for index, path, _ in changes
    )


@pytest.mark.parametrize("provider", NUMBERED)
@pytest.mark.parametrize("value", ABSURD_NUMBERS, ids=repr)
def test_absurd_page_numbers_and_totals_are_dropped_and_counted_never_the_page(
    provider: str, value: Any, captured: dict[str, Captured]
) -> None:
    page = captured[provider]
    for path in PAGE_NUMBERS[provider]:
        body = copy.deepcopy(page.body)
        headers = dict(page.headers)
        if provider == "cortex":
            headers[path[0]] = str(value)
        else:
            _set(body, path, value)

        runs, events = _decode_like_the_client(page, body, headers)

        assert len(runs) == len(page.items)
        if isinstance(value, int) and abs(value) < 2**63:
            # A whole number in range goes to the walk, which judges its sign and its reach.
            assert not events.invalid
        else:
            assert [reason for reason, _ in events.invalid] == ["field"], (path, events.invalid)
            assert path[-1] in events.invalid[0][1]
