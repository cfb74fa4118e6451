"""`dragon.mp.pool._Batch`: a Pool worker of another node holds a batch of tasks and their results; its
watcher thread gives both up when a task of the batch is stuck (it may be waiting for one of them)."""

import time
from collections.abc import Callable, Sequence

import pytest

from dragon.errors import ChannelError
from dragon.mp import pool


class _Sink:
    """Stands for a channel handle: what was sent into it, in order."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send_many(self, messages: Sequence[bytes | memoryview]) -> None:
        self.sent.extend(bytes(m) for m in messages)


class _Out:
    """Stands for the result queue (`_ResultQueue`): its channel is a sink."""

    def __init__(self) -> None:
        self._chan = _Sink()


def _until(done: Callable[[], bool], limit_s: float = 10.0) -> None:
    """A bounded poll: until `done()`, at most `limit_s`."""
    end = time.monotonic() + limit_s
    while not done():
        assert time.monotonic() < end, "not within the limit"
        time.sleep(0.001)


def _batch(tasks: list[bytes]) -> tuple[pool._Batch, _Sink, _Out, bytes]:
    batch, source, out = pool._Batch(), _Sink(), _Out()
    first = batch.took(source, tasks)  # type: ignore[arg-type]  # a sink stands for the channel
    return batch, source, out, first


def test_a_stuck_task_makes_the_watcher_send_the_results_and_give_back_the_other_tasks() -> None:
    batch, source, out, first = _batch([b"a", b"b", b"c"])
    assert first == b"a"
    batch.hold(b"result of a", out)  # type: ignore[arg-type]
    assert out._chan.sent == []  # held back: b and c are still to run
    assert batch.next_task() == b"b"  # b runs, and is stuck (no more calls)
    _until(lambda: source.sent == [b"c"] and out._chan.sent == [b"result of a"])
    assert batch.next_task() is None  # nothing held any more: the worker's next get receives again
    batch.hold(b"result of b", out)  # type: ignore[arg-type]
    assert out._chan.sent == [b"result of a", b"result of b"]  # b's own result goes at once


def test_a_batch_given_up_midway_loses_nothing() -> None:
    """Quick tasks, then one that waits until the watcher gave the batch up: every task is either
    run or given back, once, and every result sent, once, in the order the tasks ran."""
    names = [f"t{i}".encode() for i in range(40)]
    batch, source, out, got = _batch(names)
    ran: list[bytes] = []
    while got is not None:
        ran.append(got)
        if len(ran) == 7:
            _until(lambda: bool(source.sent))  # stuck until the watcher gives the rest up
        batch.hold(b"r" + got, out)  # type: ignore[arg-type]
        got = batch.next_task()
    assert source.sent and ran + source.sent == names  # (a stall of this machine may end it sooner)
    assert out._chan.sent == [b"r" + t for t in ran]
    assert batch.pace._n == len(ran)  # the pace counts the tasks that ran, not those given back


def test_a_send_the_watcher_could_not_make_is_raised_by_the_next_result() -> None:
    class Gone(_Sink):
        def send_many(self, messages: Sequence[bytes | memoryview]) -> None:
            raise ChannelError("the pool's channel is gone")

    batch, out = pool._Batch(), _Out()
    batch.took(Gone(), [b"a", b"b"])  # type: ignore[arg-type]  # a is stuck: the give-back of b fails
    _until(lambda: batch._failed is not None)
    with pytest.raises(ChannelError, match="gone"):
        batch.hold(b"result of a", out)  # type: ignore[arg-type]


def test_no_watcher_for_batches_of_one_task() -> None:
    batch, _, out, first = _batch([b"only"])
    assert first == b"only"
    batch.hold(b"result", out)  # type: ignore[arg-type]
    assert out._chan.sent == [b"result"]
    assert batch._wake is None
