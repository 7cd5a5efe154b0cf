"""The cyclic collector's tuning: thresholds set once, each cycle's heap collected then frozen,
and garbage among frozen objects still found once an hour."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from exporter.core.heap import FULL_EVERY_SECONDS, YOUNG_THRESHOLD, HeapSettler, tune_collector


class Node:
    """A container that can hold itself: garbage only the cyclic collector frees."""

    def __init__(self) -> None:
        self.me: Node | None = None


def _cycle() -> weakref.ref[Node]:
    node = Node()
    node.me = node
    return weakref.ref(node)


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


def test_start_up_raises_the_young_generation_threshold() -> None:
    tune_collector()
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD


def test_a_settle_frees_the_cycles_garbage_and_freezes_what_lives() -> None:
    gc.unfreeze()
    dead = _cycle()
    alive = Node()
    alive.me = alive
    HeapSettler().settle_after_cycle()
    assert dead() is None  # collected, not frozen with the rest
    assert gc.get_freeze_count() > 0
    assert all(held is not alive for held in gc.get_objects())  # in no generation now


def test_garbage_among_frozen_objects_is_found_once_an_hour() -> None:
    now = [0.0]
    settler = HeapSettler(clock=lambda: now[0])
    node = Node()
    node.me = node
    frozen = weakref.ref(node)
    settler.settle_after_cycle()
    del node
    settler.settle_after_cycle()
    assert frozen() is not None  # frozen: the next settle does not walk it
    now[0] = FULL_EVERY_SECONDS
    settler.settle_after_cycle()
    assert frozen() is None
