"""The serving process's garbage collector: survivors of full collections are frozen (short
pauses), and a periodic thaw reclaims the cycles that died frozen (no leak)."""

from __future__ import annotations

import gc
import weakref

from carebot.web.heap import SurvivorFreezer


class _Node:
    me: object


async def test_survivors_are_frozen_and_a_thaw_reclaims_the_cycles_that_died_frozen() -> None:
    freezer = SurvivorFreezer(thaw_seconds=3600)
    freezer.start()
    try:
        node = _Node()
        node.me = node  # a cycle: only the collector can free it
        alive = weakref.ref(node)
        gc.collect()
        assert gc.get_freeze_count() > 0  # it survived a full collection: frozen

        del node
        gc.collect()
        assert alive() is not None  # frozen: collections no longer visit it

        assert freezer.thaw() >= 1
        assert alive() is None
        assert gc.get_freeze_count() > 0  # what is still alive is frozen again
    finally:
        await freezer.stop()
        gc.unfreeze()  # the rest of the test session collects as usual


async def test_stopped_it_freezes_nothing_more() -> None:
    freezer = SurvivorFreezer(thaw_seconds=3600)
    freezer.start()
    await freezer.stop()
    try:
        gc.collect()
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
