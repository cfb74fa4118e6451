"""dragon.aio (the async client API) end to end, embedded: a test starts `dragon.serve` in a nursery,
works through the RuntimeHandle, then cancels the nursery; the leak check sees that nothing is left.

The last test runs a trio program under the real `dragon` command, where the same code reaches GS
through `await dragon.aio.connect()`.
"""

from __future__ import annotations

import json
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import pytest
import trio
import trio.testing

import dragon
import dragon.aio
from dragon.aio import Channel, Pool, Process
from dragon.descriptors import PIPE
from dragon.errors import (
    ChannelDestroyed,
    ChannelEmpty,
    ChannelError,
    ChannelFull,
    ChannelNameInUse,
    ChannelWaitTimeout,
    InvalidArgument,
    PoolGone,
    PoolNameInUse,
    ProcessNameInUse,
    ProcessStartFailed,
    UnknownChannel,
    UnknownPool,
    UnknownProcess,
)
from dragon.transport import entries, run_prefix

from e2e_util import RUN_TIMEOUT_S, run_dragon

SLEEPER: Final = ["-c", "import time; time.sleep(60)"]


@asynccontextmanager
async def runtime() -> AsyncIterator[dragon.aio.Runtime]:
    """A runtime up for the body of the `async with` (bounded), torn down by cancelling its nursery."""
    with trio.fail_after(RUN_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(dragon.serve)
            yield await dragon.aio.connect(handle)
            nursery.cancel_scope.cancel(reason="test over")


async def test_process_create_join_query() -> None:
    async with runtime() as rt:
        proc = Process(rt, sys.executable, ["-c", "import sys; sys.exit(3)"], name="three")
        assert (proc.p_uid, proc.pid, proc.returncode, await proc.is_alive()) == (None, None, None, False)
        await proc.start()
        assert proc.p_uid is not None and proc.pid is not None and proc.name == "three"
        assert await proc.join() == 3
        assert proc.returncode == 3 and await proc.poll() == 3 and not await proc.is_alive()
        by_puid = await Process.from_puid(rt, proc.p_uid)
        by_name = await Process.from_name(rt, "three")
        assert by_puid == by_name == proc
        assert (by_puid.returncode, by_name.pid) == (3, proc.pid)
        assert proc.p_uid in await Process.list(rt)
        assert await by_puid.parent() is None  # created by the launcher
        default = Process(rt, sys.executable, ["-c", "pass"])
        await default.start()
        assert default.name == f"dragon_process_{default.p_uid}"
        assert await default.join() == 0


async def test_a_callable_target() -> None:
    """`Process(rt, f, args)` runs f(*args) in a new process (here `sys.exit`, which pickles by
    reference), also from a template; a call that does not pickle is refused at start, and nothing
    is created."""
    async with runtime() as rt:
        proc = Process(rt, sys.exit, (7,))
        await proc.start()
        assert await proc.join() == 7
        template = dragon.aio.ProcessTemplate(sys.exit, (8,))
        made = [Process.from_template(rt, template, name=f"t{i}") for i in range(2)]
        for p in made:
            await p.start()
        assert [(p.name, await p.join()) for p in made] == [("t0", 8), ("t1", 8)]
        before = await Process.list(rt)
        with pytest.raises(InvalidArgument, match="must pickle"):
            await Process(rt, lambda: None).start()
        assert await Process.list(rt) == before


async def test_join_timeout_and_kill_blocked() -> None:
    async with runtime() as rt:
        sleeper = Process(rt, sys.executable, SLEEPER)
        await sleeper.start()
        assert await sleeper.join(timeout=0.2) is None
        assert await sleeper.join(timeout=0) is None
        with trio.move_on_after(0.2) as scope:  # cancelling a join leaves the process alone
            await sleeper.join()
        assert scope.cancelled_caught
        assert await sleeper.is_alive()
        desc = await sleeper.descriptor()
        assert desc.p_uid == sleeper.p_uid
        await sleeper.kill()
        assert await sleeper.join() == -signal.SIGKILL
        await sleeper.terminate()  # exited already: left alone
        assert sleeper.returncode == -signal.SIGKILL

        term = Process(rt, sys.executable, SLEEPER)
        await term.start()
        await term.terminate()
        assert await term.join(timeout=30) == -signal.SIGTERM


async def test_process_errors() -> None:
    async with runtime() as rt:
        with pytest.raises(UnknownProcess):
            await Process.from_puid(rt, 999_999)
        with pytest.raises(UnknownProcess):
            await Process.from_name(rt, "nobody")
        with pytest.raises(InvalidArgument):
            await Process.from_name(rt, "")
        with pytest.raises(InvalidArgument):
            Process(rt, "")
        with pytest.raises(InvalidArgument):
            Process(rt, sys.executable, "-c pass")
        with pytest.raises(InvalidArgument):
            Process(rt, sys.executable, stdin=-2)  # STDOUT is for stderr only
        unstarted = Process(rt, sys.executable, ["-c", "pass"])
        with pytest.raises(InvalidArgument):
            await unstarted.join()
        with pytest.raises(InvalidArgument):
            await unstarted.kill()
        with pytest.raises(ProcessStartFailed):
            await Process(rt, "/nonexistent/program").start()

        first = Process(rt, sys.executable, SLEEPER, name="taken")
        await first.start()
        with pytest.raises(InvalidArgument):
            await first.start()
        with pytest.raises(ProcessNameInUse) as info:
            await Process(rt, sys.executable, SLEEPER, name="taken").start()
        assert info.value.uid == first.p_uid and info.value.name == "taken"
        await first.kill()
        assert await first.join() == -signal.SIGKILL


async def test_channels() -> None:
    async with runtime() as rt:
        chan = await Channel.create(rt, capacity=2, block_size=512, name="aio")
        assert chan.name == "aio" and chan.c_uid in await Channel.list(rt)
        other = await Channel.attach(rt, name="aio")
        by_cuid = await Channel.attach(rt, chan.c_uid)
        assert other.c_uid == by_cuid.c_uid == chan.c_uid
        await chan.send({"x": 1})
        await chan.send_bytes(b"b" * 5000)  # several blocks
        assert chan.statistics().depth == 2
        with pytest.raises(ChannelFull):
            await chan.send(0, timeout=0.1)
        with pytest.raises(ChannelFull):
            await chan.send(0, timeout=0)
        assert await other.recv() == {"x": 1}
        assert await by_cuid.recv_bytes() == b"b" * 5000
        with pytest.raises(ChannelEmpty):
            await other.recv(timeout=0.1)
        with pytest.raises(ChannelEmpty):
            await other.recv(timeout=0)

        with pytest.raises(ChannelNameInUse):
            await Channel.create(rt, name="aio")
        soft = await Channel.create(rt, name="aio", soft=True)
        assert soft.c_uid == chan.c_uid
        with pytest.raises(InvalidArgument):
            await Channel.create(rt, capacity=0)
        with pytest.raises(UnknownChannel):
            await Channel.attach(rt, name="no-such")
        with pytest.raises(ChannelWaitTimeout):
            await Channel.wait_created(rt, "later", timeout=0.1)

        async with trio.open_nursery() as nursery:  # wait_created sees a creation made meanwhile

            async def create_later() -> None:
                await trio.testing.wait_all_tasks_blocked()
                await Channel.create(rt, name="later")

            nursery.start_soon(create_later)
            later = await Channel.wait_created(rt, "later", timeout=30)
        assert later.name == "later"

        # a managed process answers on the channel with the blocking API: both faces interoperate
        back = await Channel.create(rt, name="back")
        code = (
            "from dragon.native import Channel; Channel.attach(name='back').send(Channel.attach(name='aio').recv() * 2)"
        )
        proc = Process(rt, sys.executable, ["-c", code])
        await proc.start()
        await chan.send(21)
        assert await back.recv(timeout=30) == 42
        assert await proc.join(timeout=30) == 0
        await back.destroy()

        got: list[BaseException] = []
        empty = await Channel.attach(rt, name="later")
        async with trio.open_nursery() as nursery:  # destroy wakes a blocked receiver of another handle

            async def blocked_recv() -> None:
                try:
                    await empty.recv()
                except ChannelDestroyed as exc:
                    got.append(exc)

            nursery.start_soon(blocked_recv)
            await trio.testing.wait_all_tasks_blocked()
            await later.destroy()
        assert len(got) == 1
        await empty.aclose()
        with pytest.raises(ChannelDestroyed):
            await Channel.attach(rt, name="later")
        with pytest.raises(UnknownChannel):
            await later.destroy()
        with pytest.raises(ChannelError):
            await later.recv(timeout=0)

        async with other:
            pass
        with pytest.raises(ChannelError):
            await other.send(1)
        for handle in (by_cuid, soft):
            await handle.aclose()
        await chan.destroy()


async def test_channel_wait_is_cancellable() -> None:
    async with runtime() as rt:
        chan = await Channel.create(rt, capacity=1)
        with trio.move_on_after(0.1) as scope:
            await chan.recv()
        assert scope.cancelled_caught
        await chan.send("kept")
        with trio.move_on_after(0.1) as scope:
            await chan.send("not sent")
        assert scope.cancelled_caught
        assert await chan.recv() == "kept"
        assert chan.statistics().depth == 0
        await chan.destroy()


async def test_pools() -> None:
    async with runtime() as rt:
        pool = await Pool.create(rt, 1 << 20, name="aio-pool")
        assert pool.m_uid in await Pool.list(rt)
        assert pool.statistics().size_bytes >= 1 << 19
        same = await Pool.attach(rt, name="aio-pool")
        assert same.m_uid == (await Pool.attach(rt, pool.m_uid)).m_uid == pool.m_uid
        with pytest.raises(PoolNameInUse):
            await Pool.create(rt, 1 << 20, name="aio-pool")
        assert (await Pool.create(rt, 1 << 20, name="aio-pool", soft=True)).m_uid == pool.m_uid
        with pytest.raises(InvalidArgument):
            await Pool.create(rt, 0)
        with pytest.raises(UnknownPool):
            await Pool.attach(rt, name="no-such")
        chan = await Channel.create(rt, m_uid=pool.m_uid)  # a channel in our pool
        assert chan.m_uid == pool.m_uid
        await chan.send("in the pool")
        assert await chan.recv() == "in the pool"
        await chan.destroy()
        async with same:
            pass
        await pool.destroy()
        with pytest.raises(PoolGone):
            await pool.destroy()
        with pytest.raises(PoolGone):
            await Pool.attach(rt, name="aio-pool")


PROGRAM: Final = textwrap.dedent('''
    """A trio program run by `dragon`: the async API through its own connection to GS."""
    import json
    import sys

    import trio

    import dragon.aio
    from dragon.aio import Channel, Process
    from dragon.errors import ChannelDestroyed, UnknownProcess

    async def work(rt: dragon.aio.Runtime, my_puid: int, tag: str) -> dict[str, object]:
        me = await Process.from_puid(rt, my_puid)
        child = Process(rt, sys.executable, ["-c", "import sys; sys.exit(7)"])
        await child.start()
        chan = await Channel.create(rt, name="from-head-" + tag)
        await chan.send("hello")
        got = await chan.recv()
        await chan.destroy()
        sleeper = Process(rt, sys.executable, ["-c", "import time; time.sleep(60)"])
        await sleeper.start()
        timed_out = await sleeper.join(timeout=0.1)
        await sleeper.kill()
        try:
            await Process.from_puid(rt, 999_999)
            unknown = "none"
        except UnknownProcess:
            unknown = "UnknownProcess"
        fast = Process(rt, sys.executable, ["-c", "pass"])
        slow = Process(rt, sys.executable, ["-c", "import time; time.sleep(60)"])
        await fast.start()
        await slow.start()
        first = await dragon.aio.wait(rt, [fast, slow])  # any: the fast one
        await slow.kill()
        every = await dragon.aio.wait(rt, [fast, slow], join_all=True)
        waited = [first[fast.p_uid], first[slow.p_uid], sorted(every.values())]
        return {"me_alive": await me.is_alive(), "child": await child.join(), "waited": waited,
                "parent": (await child.parent()) == me, "got": got, "timed_out": timed_out,
                "killed": await sleeper.join(), "unknown": unknown}

    async def relay(role: str, result_file: str) -> None:
        """The head's child starts the grandchild; the grandchild runs the checks, writes them."""
        rt = await dragon.aio.connect()
        if role == "child":
            grandchild = Process(rt, sys.executable, [__file__, "grandchild", result_file])
            await grandchild.start()
            sys.exit(await grandchild.join())
        with open(result_file, "w") as f:
            json.dump(await work(rt, rt.p_uid, "grandchild"), f)

    async def main() -> None:
        if len(sys.argv) > 1:
            return await relay(sys.argv[1], sys.argv[2])
        threaded = await dragon.aio.connect()
        child = Process(threaded, sys.executable, [__file__, "child", "grandchild.json"])
        await child.start()
        if await child.join() != 0:
            raise SystemExit("the child or the grandchild failed")
        out = {"threaded": await work(threaded, threaded.p_uid, "threaded")}
        async with dragon.aio.open_connection() as native:
            async with trio.open_nursery() as nursery:  # concurrent callers share one reply channel
                results = {}
                async def one(i: int) -> None:
                    results[i] = await work(native, native.p_uid, f"native-{i}")
                for i in range(3):
                    nursery.start_soon(one, i)
            out["native"] = results[0]
            out["native_all_same"] = all(r == results[0] for r in results.values())
            reply_cuid = native.r_c_uid
        try:
            await Channel.attach(threaded, reply_cuid)
            out["reply_channel_gone"] = False
        except ChannelDestroyed:
            out["reply_channel_gone"] = True
        with open("grandchild.json") as f:
            out["grandchild"] = json.load(f)
        print(json.dumps(out))

    trio.run(main)
''')


async def test_managed_trio_program(tmp_path: Path) -> None:
    prog = tmp_path / "aio_head.py"
    prog.write_text(PROGRAM)
    done = await run_dragon(str(prog), cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    expected = {
        "me_alive": True,
        "child": 7,
        "parent": True,
        "got": "hello",
        "timed_out": None,
        "killed": -signal.SIGKILL,
        "unknown": "UnknownProcess",
        "waited": [0, None, [-signal.SIGKILL, 0]],
    }
    assert json.loads(done.stdout) == {
        "threaded": expected,
        "native": expected,
        "native_all_same": True,
        "reply_channel_gone": True,
        "grandchild": expected,
    }


CANCELLING: Final = textwrap.dedent("""
    import trio
    import dragon.aio

    async def main() -> None:
        async with dragon.aio.open_connection() as rt:
            answered = 0

            async def caller(i: int) -> None:
                nonlocal answered
                for k in range(20):
                    if (i + k) % 3 == 0:  # cancelled at once or on the way: its answer comes late
                        with trio.move_on_after(0.00002 * (1 + k % 5)):
                            await dragon.aio.Process.list(rt)
                    else:
                        assert 1 in await dragon.aio.Process.list(rt)
                        answered += 1

            async with trio.open_nursery() as nursery:
                for i in range(6):
                    nursery.start_soon(caller, i)
            print(answered)

    trio.run(main)
""")


async def test_cancelled_calls_of_a_trio_connection_are_dropped_quietly(tmp_path: Path) -> None:
    """Concurrent callers on one `open_connection`, some cancelled: the others get their answers
    (whoever reads the reply channel hands over when it leaves), and the late answers to the
    cancelled ones are dropped without a word on stderr."""
    prog = tmp_path / "cancelling.py"
    prog.write_text(CANCELLING)
    done = await run_dragon(str(prog), cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout.split() == [b"80"]
    assert done.stderr == b""


async def test_a_process_that_cannot_start_leaves_no_channel_behind() -> None:
    """Local Services makes a process's GS-return and PIPE channels before it starts it; when the
    start fails it removes them again (Global Services enters none of them on FAIL), rather than
    keeping them until the runtime ends."""
    with trio.fail_after(RUN_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(dragon.serve)
            rt = await dragon.aio.connect(handle)
            before = entries(run_prefix(handle.run_id))
            for _ in range(3):
                with pytest.raises(ProcessStartFailed):
                    await Process(rt, "/nonexistent/program", stdin=PIPE, stdout=PIPE, stderr=PIPE).start()
            assert entries(run_prefix(handle.run_id)) == before
            nursery.cancel_scope.cancel(reason="test over")
