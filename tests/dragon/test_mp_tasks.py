"""The compact form of Pool tasks (dragon/mp/pool.py `_encode_task`): what takes it, what does not,
and that every task comes out as the stdlib's pool put it in. In one process: pure functions."""

from __future__ import annotations

import functools
import pickle
import pickletools
from multiprocessing import pool as mp_pool
from typing import Any

import pytest

from dragon.mp import pool as _mp_pool
from dragon.mp.pool import NAMED_CACHE_MAX, TASK_TAG, _decode_task, _encode_task

MAPSTAR = mp_pool.mapstar
STARMAPSTAR = mp_pool.starmapstar


def double(x: int) -> int:
    return 2 * x


class Box:
    def __init__(self, k: int) -> None:
        self.k = k

    def get(self, x: int) -> int:
        return self.k + x


def round_trip(task: Any) -> tuple[bytes, Any]:
    data = bytes(_encode_task(task))
    return data, _decode_task(data)


@pytest.mark.parametrize(
    "task",
    [
        (1, 0, MAPSTAR, ((abs, (-3,)),), {}),  # map, chunksize 1, a builtin
        (1, 5, STARMAPSTAR, ((pow, ((2, 3), (3, 2))),), {}),  # starmap, chunked
        (2, 0, double, (4,), {}),  # apply_async / imap
        (3, 0, int, ("ff",), {"base": 16}),  # a class is not a function: pickled with the task as usual
        (4, 0, MAPSTAR, ((functools.partial(pow, 2), (3,)),), {}),  # mapstar compact, its partial not
    ],
)
def test_tasks_come_out_as_they_went_in(task: Any) -> None:
    _data, got = round_trip(task)
    assert pickle.dumps(got) == pickle.dumps(task)  # equal, partials included
    assert got[2] is task[2]


def test_named_functions_travel_compact_and_others_as_pickles() -> None:
    data, _ = round_trip((1, 0, MAPSTAR, ((double, (1,)),), {}))
    assert data[0] == TASK_TAG  # its pickle names no global: both functions are pickles of their own
    assert not [op for op, _, _ in pickletools.genops(data[1:]) if "GLOBAL" in op.name]
    box = Box(1)
    for func in (box.get, [].append, functools.partial(double), Box(2).__init__):
        data, _got = round_trip((1, 0, func, (1,), {}))
        assert data[0] == 0x80, func  # bound to an object: its state goes with every task
    box.k = 40
    assert round_trip((1, 0, box.get, (2,), {}))[1][2](2) == 42


def test_items_that_are_not_tasks() -> None:
    for item in (None, b"\x01raw bytes", b"", (1, 2), "text"):
        data, got = round_trip(item)
        assert data[0] == 0x80 and got == item


def test_a_function_that_cannot_be_named_fails_as_pickling_does() -> None:
    with pytest.raises((pickle.PicklingError, AttributeError)):
        _encode_task((1, 0, lambda x: x, (1,), {}))
    with pytest.raises((pickle.PicklingError, AttributeError)):
        _encode_task((1, 0, MAPSTAR, ((lambda x: x, (1,)),), {}))


def test_caches_stay_bounded() -> None:
    for i in range(NAMED_CACHE_MAX + 10):
        fn = _mp_pool._by_name
        exec(f"def f{i}(x): return x", globals())
        assert fn(globals()[f"f{i}"]) is not None
        _decode_task(bytes(_encode_task((1, 0, globals()[f"f{i}"], (1,), {}))))
    assert len(_mp_pool._named) <= NAMED_CACHE_MAX and len(_mp_pool._resolved) <= NAMED_CACHE_MAX
