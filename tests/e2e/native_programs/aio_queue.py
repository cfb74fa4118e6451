"""dragon.aio.Queue, the trio face of a native Queue: every API point, cancellation, a native child
working a joinable queue; prints JSON.

As head (no argument, a trio program): exercise the API, then hand the native queues to a native
Process child (pickled through a Channel), which works the tasks while the head puts into a bounded
queue (waiting for room), joins, and takes the results. As "child": the blocking side, with
dragon.native, which also says whether it can make a trio face of the queue (not of another node's).
"""

import json
import os
import queue
import sys
from typing import Any

import trio
from report_util import error, eventually, shm_entries

from dragon.aio import Queue
from dragon.native import Channel, Process
from dragon.native import Queue as NativeQueue


async def aerror(call: Any) -> str:
    try:
        await call()
    except Exception as exc:
        return type(exc).__name__
    return "none"


async def basics() -> dict[str, Any]:
    out: dict[str, Any] = {}
    q = await Queue.create()
    out["new"] = [q.empty(), q.qsize(), q.size(), q.full()]
    await q.put({"a": 1})
    q.put_nowait(b"raw")
    out["got"] = [await q.get(), q.get_nowait()]
    out["empty"] = [await aerror(lambda: q.get(timeout=0.05)), error(q.get_nowait)]
    with trio.move_on_after(0.05) as scope:
        await q.get()
    await q.put("kept")
    out["cancelled_get"] = [scope.cancelled_caught, await q.get(timeout=5)]
    out["native_side"] = [q.queue.put("from native") is None, await q.get(timeout=5)]
    q.put_nowait("to native")
    out["native_get"] = q.queue.get(timeout=5)
    await q.aclose()
    out["closed"] = [await aerror(lambda: q.put(1)), await aerror(q.get), error(lambda: q.put_nowait(1))]

    b = await Queue.create(1, joinable=True)
    await b.put("first")
    out["full"] = [b.full(), await aerror(lambda: b.put("x", timeout=0.05)), error(lambda: b.put_nowait("x"))]
    with trio.move_on_after(0.05) as scope:
        await b.put("cancelled")
    out["cancelled_put"] = [scope.cancelled_caught, b.qsize()]
    out["join_timeout"] = await aerror(lambda: b.join(timeout=0.05))
    with trio.move_on_after(0.05) as scope:
        await b.join()
    out["cancelled_join"] = scope.cancelled_caught
    out["first"] = await b.get()
    b.task_done()
    await b.join(timeout=5)  # the cancelled put counted no task
    out["task_done_too_many"] = error(b.task_done)
    await b.aclose()
    plain = Queue(await trio.to_thread.run_sync(NativeQueue))  # the face of a queue made elsewhere
    out["not_joinable"] = [error(plain.task_done), await aerror(plain.join)]
    await plain.aclose()
    return out


async def with_child() -> dict[str, Any]:
    tasks, results = await Queue.create(2, joinable=True), await Queue.create()

    def start() -> Process:
        Channel.create(name="aio-queues").send((tasks.queue, results.queue))
        child = Process(sys.executable, [os.path.abspath(__file__), "child"])
        child.start()
        return child

    child = await trio.to_thread.run_sync(start)
    for i in range(50):  # into a queue of 2: most puts wait for the child's gets
        await tasks.put(i)
    await tasks.join(timeout=60)
    squares = sorted([await results.get(timeout=5) for _ in range(50)])
    await tasks.put(None)
    code = await trio.to_thread.run_sync(child.join)
    face = await results.get(timeout=5)
    await trio.to_thread.run_sync(lambda: Channel.attach(name="aio-queues").destroy())
    await tasks.aclose()
    await results.aclose()
    return {"squares": squares == [i * i for i in range(50)], "code": code, "face": face}


def face_here(q: Any) -> str:
    """Whether a trio face of `q` can be made in this process ("none"), else its error's name. One
    made is closed again (its own channel handles: the queue stays)."""
    try:
        face = Queue(q)
    except Exception as exc:
        return type(exc).__name__

    async def close() -> None:
        await face._items.aclose()
        if face._slots is not None:
            await face._slots.aclose()

    trio.run(close)
    return "none"


def child() -> None:
    chan = Channel.attach(name="aio-queues")
    tasks, results = chan.recv(timeout=30)
    chan.close()
    face = face_here(tasks)
    while (item := tasks.get(timeout=30)) is not None:
        results.put(item * item)
        tasks.task_done()
    tasks.task_done()
    results.put(face)
    results.close()
    results.join_thread()


async def main() -> None:
    before = shm_entries()
    report = {"basics": await basics(), "child": await with_child()}
    eventually(lambda: set(shm_entries()) <= set(before))
    report["shm_left"] = sorted(set(shm_entries()) - set(before))
    report["empty_is"] = queue.Empty.__name__
    print(json.dumps(report, default=repr))


if sys.argv[1:] == ["child"]:
    child()
else:
    trio.run(main)
