"""HotWait (transport/hot_wait.py): the adaptive spin before a receiver sleeps.

The policy is driven by a fake clock (no timing of this machine decides a test); the spins are checked
to end on readiness, to end at their length, and to let a trio loop's other tasks run meanwhile.
"""

from __future__ import annotations

import pytest
import trio

from dragon.transport.hot_wait import SPIN_FLOOR_S, HotWait


class FakeClock:
    """A clock that moves only when told to (or by `step` at each reading, to end a spin)."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 100.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_gap_within_the_maximum_sets_the_spin_to_cover_it() -> None:
    clock = FakeClock()
    hot = HotWait(400e-6, clock)
    hot.spin_blocking(lambda: True)  # the wait begins now
    clock.now += 300e-6
    hot.arrived()
    assert hot.spin_s == pytest.approx(375e-6)
    hot.spin_blocking(lambda: True)
    clock.now += 350e-6  # 437.5 µs would cover it: capped at the maximum
    hot.arrived()
    assert hot.spin_s == pytest.approx(400e-6)


def test_a_short_gap_never_shortens_the_spin() -> None:
    clock = FakeClock()
    hot = HotWait(400e-6, clock)
    start = hot.spin_s
    hot.spin_blocking(lambda: True)
    clock.now += 1e-6
    hot.arrived()
    assert hot.spin_s == start


def test_gaps_longer_than_the_maximum_stop_the_spin_and_a_short_one_brings_it_back() -> None:
    clock = FakeClock()
    hot = HotWait(400e-6, clock)
    halvings = 0
    while hot.spin_s:
        before = hot.spin_s
        hot.spin_blocking(lambda: True)
        clock.now += 0.01  # a receive that waited for a producer
        hot.arrived()
        assert hot.spin_s == 0.0 or hot.spin_s == pytest.approx(before / 2)
        halvings += 1
        assert halvings < 20, "the spin never stopped"
    assert before / 2 < SPIN_FLOOR_S
    hot.spin_blocking(lambda: True)
    clock.now += 80e-6
    hot.arrived()
    assert hot.spin_s == pytest.approx(100e-6)


def test_spin_blocking_ends_when_ready_or_at_its_length() -> None:
    looks = iter([False, False, True])
    hot = HotWait(400e-6, FakeClock(step=1e-6))
    assert hot.spin_blocking(lambda: next(looks)) is True
    hot = HotWait(400e-6, FakeClock(step=10e-6))  # 100 µs long: ten readings of the clock
    calls = 0

    def never() -> bool:
        nonlocal calls
        calls += 1
        return False

    assert hot.spin_blocking(never) is False
    assert 5 <= calls <= 12


def test_a_stopped_spin_looks_once() -> None:
    hot = HotWait(0.0, FakeClock(step=1e-6))
    assert hot.spin_s == 0.0
    assert hot.spin_blocking(lambda: False) is False


async def test_spin_lets_the_loops_other_tasks_run_and_ends_when_ready() -> None:
    hot = HotWait(1.0)  # long enough that only readiness ends it
    hot.spin_s = 1.0
    ran = trio.Event()

    async def other() -> None:
        ran.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)
            assert await hot.spin(ran.is_set, trio.lowlevel.checkpoint) is True


async def test_spin_ends_at_its_length_and_is_cancellable() -> None:
    hot = HotWait(400e-6, FakeClock(step=50e-6))
    with trio.fail_after(5):
        assert await hot.spin(lambda: False, trio.lowlevel.checkpoint) is False
    hot = HotWait(10.0)
    hot.spin_s = 10.0
    with trio.move_on_after(0.05) as scope:
        await hot.spin(lambda: False, trio.lowlevel.checkpoint)
    assert scope.cancelled_caught
