"""`dragon.mp.pool._Pace`: how many tasks a Pool worker of another node asks for in one receive."""

import os
import time

import pytest

from dragon.mp import pool


def test_the_first_receive_asks_for_one_task() -> None:
    assert pool._Pace().next_count() == 1


def test_cheap_tasks_raise_the_count_to_the_most() -> None:
    pace = pool._Pace()
    pace.took(10)  # ten tasks that took no time at all
    assert pace.next_count() == pool.TASK_BATCH_MAX


def test_tasks_given_back_unrun_do_not_count() -> None:
    pace = pool._Pace()
    pace.took(10)
    pace.gave_back(7)
    assert pace._n == 3
    pace.gave_back(5)
    assert pace._n == 1  # the one that ran (and was stuck)


def test_tasks_that_sleep_count_as_slow() -> None:
    """A task that waits (a sleep, I/O) is slow: its time is not a wait for a CPU."""
    pace = pool._Pace()
    pace.took(2)
    time.sleep(4 * pool.TASK_SPAN_S)  # 2 ms a task: more than the span
    assert pace.next_count() == 1


def test_the_count_follows_the_pace_of_the_last_tasks() -> None:
    pace = pool._Pace()
    pace.took(1)
    time.sleep(pool.TASK_SPAN_S / 4)  # a task of at least a quarter of the span: at most 4 next
    assert 1 <= pace.next_count() <= 4


@pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat"), reason="no schedstat in this kernel")
def test_the_wait_for_a_cpu_is_read_and_only_grows() -> None:
    pace = pool._Pace()
    first = pace._waited()
    spin_end = time.perf_counter() + 0.01
    while time.perf_counter() < spin_end:
        os.sched_yield()
    assert 0.0 <= first <= pace._waited()
    assert pace._fd >= 0
