"""Spec §5.5 stdio PIPE: a managed process's stdin/stdout/stderr as channels its parent uses.

Through `dragon.serve` and raw Global Services requests: the channels come with the process, output
read after the process has exited is all there (the channel outlives the process until the parent lets
go), an empty message is end of file both ways, and the channels die once both references are gone.
"""

from __future__ import annotations

import sys

import trio

import dragon
from dragon.descriptors import PIPE, ObjectState
from dragon.messages import (
    GSChannelDestroy,
    GSChannelDestroyResponse,
    GSChannelQuery,
    GSChannelQueryResponse,
    GSProcessCreate,
    GSProcessCreateResponse,
    GSProcessJoin,
    GSProcessJoinResponse,
)
from dragon.services.launcher import RuntimeHandle
from dragon.transport import TrioChannel

UPPER = "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d.upper()); sys.stderr.write('done')"


async def _read_all(sdesc: str) -> bytes:
    out = b""
    async with TrioChannel.attach(sdesc) as chan:
        while chunk := await chan.receive():
            out += chunk
    return out


async def _state(handle: RuntimeHandle, name: str) -> ObjectState:
    resp = await handle.call(GSChannelQuery(p_uid=0, r_c_uid=0, user_name=name), GSChannelQueryResponse)
    assert resp.desc is not None
    return resp.desc.state


async def test_pipe_stdio_round_trip_and_release() -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            handle: RuntimeHandle = await nursery.start(dragon.serve)
            resp = await handle.call(
                GSProcessCreate(
                    p_uid=0, r_c_uid=0, exe=sys.executable, args=["-c", UPPER], stdin=PIPE, stdout=PIPE, stderr=PIPE
                ),
                GSProcessCreateResponse,
            )
            assert resp.desc is not None
            desc = resp.desc
            assert desc.stdin_sdesc and desc.stdout_sdesc and desc.stderr_sdesc
            payload = bytes(range(256)) * 400  # 100 KiB, not UTF-8, in several channel messages
            async with TrioChannel.attach(desc.stdin_sdesc) as stdin:
                for i in range(0, len(payload), 10_000):
                    await stdin.send(payload[i : i + 10_000])
                await stdin.send(b"")  # end of file
            joined = await handle.call(
                GSProcessJoin(p_uid=0, r_c_uid=0, t_p_uid=desc.p_uid, timeout=-1), GSProcessJoinResponse
            )
            assert joined.exit_code == 0
            # The process is gone; its output is still there, up to the end-of-file message.
            assert await _read_all(desc.stdout_sdesc) == payload.upper()
            assert await _read_all(desc.stderr_sdesc) == b"done"
            names = [f"{s}_{desc.p_uid}" for s in ("stdin", "stdout", "stderr")]
            assert [await _state(handle, n) for n in names] == [ObjectState.ACTIVE] * 3
            for name in names:  # the parent lets go: the last reference, so the channels die
                done = await handle.call(
                    GSChannelDestroy(p_uid=0, r_c_uid=0, user_name=name, dec_ref=True), GSChannelDestroyResponse
                )
                assert done.err == 0, done.err_info
            assert [await _state(handle, n) for n in names] == [ObjectState.DEAD] * 3
            nursery.cancel_scope.cancel()
