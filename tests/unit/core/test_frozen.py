"""The quicker `__init__` of frozen run records builds what dataclass's own would."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from exporter.core.accounting import FinishedRun
from exporter.core.frozen import quick_init
from exporter.core.model import Run, RunStatus, Step, StepStatus

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class _Reference:
    name: str
    count: int = 0
    tags: tuple[str, ...] = ()
    note: str | None = dataclasses.field(default=None, kw_only=True)


_Quick: type[Any] = quick_init(
    dataclasses.make_dataclass(
        "_Quick",
        [
            ("name", str),
            ("count", int, dataclasses.field(default=0)),
            ("tags", tuple[str, ...], dataclasses.field(default=())),
            ("note", str | None, dataclasses.field(default=None, kw_only=True)),
        ],
        frozen=True,
        slots=True,
    )
)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("a",), {}), (("a", 2), {}), (("a",), {"tags": ("x",), "note": "n"}), ((), {"name": "b"})],
)
def test_it_sets_each_field_as_the_dataclass_init_does(
    args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    quick, reference = _Quick(*args, **kwargs), _Reference(*args, **kwargs)  # type: ignore[arg-type]
    assert dataclasses.astuple(quick) == dataclasses.astuple(reference)


def test_the_signature_is_kept_missing_and_extra_arguments_fail_alike() -> None:
    with pytest.raises(TypeError):
        _Quick()
    with pytest.raises(TypeError):
        _Quick("a", 1, (), "positional note")  # keyword-only stays keyword-only
    with pytest.raises(TypeError):
        _Quick("a", unknown=1)


def test_records_built_quickly_stay_frozen_comparable_and_replaceable() -> None:
    run = Run(
        id="run-1",
        workflow_id="wf-1",
        workflow_name="Invoices",
        status=RunStatus.SUCCEEDED,
        native_status="COMPLETED",
        created_at=WHEN,
        cursor_time=WHEN,
        steps=(Step("extract", "COMPLETED", canonical=StepStatus.SUCCEEDED),),
    )
    assert run.day_only == frozenset()
    assert run.shown_id is None
    assert run.invalid_steps == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.id = "run-2"  # type: ignore[misc]
    again = dataclasses.replace(run)
    assert again == run
    assert hash(again) == hash(run)
    assert dataclasses.replace(run, id="run-2").id == "run-2"
    finished = FinishedRun("run-1", "Invoices", RunStatus.FAILED, "E1", WHEN, WHEN)
    assert finished.shown == "run-1"
    assert finished.error_message is None


def test_only_frozen_slotted_dataclasses_without_factories_are_taken() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        name: str

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        tags: list[str] = dataclasses.field(default_factory=list)

    for cls in (NoSlots, Factory):
        with pytest.raises(TypeError):
            quick_init(cls)
