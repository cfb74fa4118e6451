"""The blocking API in a program that embeds a runtime with `dragon.serve` (dragon.client.embedded).

The test process itself is the embedding program here: it is a plain process (no launch parameters),
so `dragon.native` reaches the runtime these tests start, as an external client. The start method
"dragon" is checked in a program of its own (programs/embed_mp.py), since it changes the process's
multiprocessing setup.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import pytest
import trio

import dragon
import dragon.aio
from dragon.errors import EventLoopBlocked, RuntimeNotRunning
from dragon.ids import GS_PUID
from dragon.native import Channel, Process
from dragon.services.launcher import RuntimeHandle

from e2e_util import RUN_TIMEOUT_S, clean_env, program, run_command

BIG_OUTPUT: Final = ["-c", "for _ in range(3000): print('x' * 999, flush=True)"]
"""About 3 MB, one write at a time: more than the launcher's channel holds while its loop is blocked."""


@asynccontextmanager
async def embedded() -> AsyncIterator[RuntimeHandle]:
    """A runtime of `dragon.serve` for the body of the `async with` (bounded), torn down after it."""
    with trio.fail_after(RUN_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            yield await nursery.start(dragon.serve)
            nursery.cancel_scope.cancel(reason="test over")


async def test_native_calls_in_the_trio_loop_use_the_embedded_runtime(capfd: pytest.CaptureFixture[str]) -> None:
    async with embedded() as handle:
        proc = Process(sys.executable, ["-c", "import sys; print('from the loop'); sys.exit(4)"], name="in-loop")
        proc.start()
        assert proc.join() == 4
        rt = await dragon.aio.connect(handle)
        seen = await dragon.aio.Process.from_name(rt, "in-loop")  # the same process, in this runtime
        assert (seen.p_uid, seen.pid, seen.returncode) == (proc.p_uid, proc.pid, 4)
        chan = Channel.create(name="embedded-chan", capacity=4)
        Channel.attach(name="embedded-chan").send({"k": 1})
        assert chan.recv(timeout=10) == {"k": 1}
        chan.destroy()
    assert "from the loop\n" in capfd.readouterr().out


async def test_native_calls_in_a_thread_use_the_embedded_runtime(capfd: pytest.CaptureFixture[str]) -> None:
    def work() -> int | None:
        proc = Process(sys.executable, ["-c", "print('from a thread')"], name="in-thread")
        proc.start()
        return proc.join()

    async with embedded() as handle:
        assert await trio.to_thread.run_sync(work) == 0
        seen = await dragon.aio.Process.from_name(await dragon.aio.connect(handle), "in-thread")
        assert seen.returncode == 0
    assert "from a thread\n" in capfd.readouterr().out


async def test_a_blocking_call_the_runtime_waits_on_raises_instead_of_hanging(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A join in the trio loop of the launcher while the process writes more output than can wait for
    that loop: the process blocks in its writes, the join would wait for ever."""
    async with embedded():
        proc = Process(sys.executable, BIG_OUTPUT)
        proc.start()
        with pytest.raises(EventLoopBlocked, match=r"trio.to_thread.run_sync\(...\)"):
            proc.join()
        assert await trio.to_thread.run_sync(proc.join) == 0  # the same in a thread: the loop forwards
    assert capfd.readouterr().out.count("x" * 999 + "\n") == 3000


async def test_the_oldest_embedded_runtime_is_used_then_the_next() -> None:
    async def serve_in(
        scope: trio.CancelScope,
        ended: trio.Event,
        *,
        task_status: trio.TaskStatus[RuntimeHandle] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with scope:
            await dragon.serve(task_status=task_status)
        ended.set()

    async def names(handle: RuntimeHandle) -> list[str]:
        """Names of the processes of a runtime, but Global Services' own (p_uid 1)."""
        rt = await dragon.aio.connect(handle)
        return [
            (await dragon.aio.Process.from_puid(rt, p_uid)).name
            for p_uid in await dragon.aio.Process.list(rt)
            if p_uid != GS_PUID
        ]

    with trio.fail_after(RUN_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            first_scope, first_ended = trio.CancelScope(), trio.Event()
            first = await nursery.start(serve_in, first_scope, first_ended)
            second = await nursery.start(dragon.serve)
            Process(sys.executable, ["-c", "pass"], name="to-first").start()
            assert (await names(first), await names(second)) == (["to-first"], [])
            first_scope.cancel()
            await first_ended.wait()
            Process(sys.executable, ["-c", "pass"], name="to-second").start()
            assert await names(second) == ["to-second"]
            nursery.cancel_scope.cancel()


async def test_without_a_runtime_the_error_says_every_way_to_get_one() -> None:
    async with embedded():
        pass
    with pytest.raises(RuntimeNotRunning) as info:
        Process(sys.executable, ["-c", "pass"]).start()
    text = str(info.value)
    for way in ("`dragon prog.py`", "await nursery.start(dragon.serve)", 'start method "dragon"'):
        assert way in text, text


async def test_start_method_in_an_embedding_program_uses_the_embedded_runtime() -> None:
    done = await run_command([sys.executable, program("embed_mp.py")], env=clean_env(), timeout_s=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = json.loads(done.stdout.decode().splitlines()[-1])
    assert report == {
        "child_run_id_is_embedded": True,
        "joined": 0,
        "background_runtime": False,
        "native_sees_it": True,
        "unjoined_exited": 3,
        "stopped_with_runtime": -15,
        "alive_after": False,
    }
    assert b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
