"""GSProcessCreate's user, group, umask and initial_stdin, and SHFwdInput with `confirm` (issue 12 item 5).

Each is carried out or refused with a clear error; none is dropped. The runtime is embedded in the test
(`dragon.serve`) and driven through its handle, as a trio program would; the processes write what they
see to a file (stdout to a file path, opened by Local Services).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

import dragon
from dragon.descriptors import DEVNULL, PIPE
from dragon.errors import InputNotDelivered
from dragon.messages import (
    GSChannelDestroy,
    GSChannelDestroyResponse,
    GSProcessCreate,
    GSProcessCreateResponse,
    GSProcessJoin,
    GSProcessJoinResponse,
    GSProcessKill,
    GSProcessKillResponse,
    ProcessCreateErr,
    ProcessJoinErr,
)
from dragon.services.launcher import RuntimeHandle
from dragon.transport import TrioChannel

from e2e_util import RUN_TIMEOUT_S

COPY_STDIN = "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"


@pytest.fixture
async def handle() -> AsyncIterator[RuntimeHandle]:
    with trio.fail_after(RUN_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            yield await nursery.start(dragon.serve)
            nursery.cancel_scope.cancel()


async def _create(handle: RuntimeHandle, code: str, **fields: object) -> GSProcessCreateResponse:
    return await handle.call(
        GSProcessCreate(p_uid=0, r_c_uid=0, exe=sys.executable, args=["-c", code], **fields), GSProcessCreateResponse
    )  # type: ignore[arg-type]


async def _start(handle: RuntimeHandle, code: str, **fields: object) -> int:
    resp = await _create(handle, code, **fields)
    assert resp.err == ProcessCreateErr.SUCCESS and resp.desc is not None, resp.err_info
    return resp.desc.p_uid


async def _join(handle: RuntimeHandle, p_uid: int) -> int:
    resp = await handle.call(GSProcessJoin(p_uid=0, r_c_uid=0, t_p_uid=p_uid, timeout=-1), GSProcessJoinResponse)
    assert resp.err == ProcessJoinErr.SUCCESS, resp.err_info
    return resp.exit_code


async def test_initial_stdin_comes_first_then_confirmed_input(handle: RuntimeHandle, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p_uid = await _start(handle, COPY_STDIN, stdout=str(out), initial_stdin=b"first\n")
    await handle.send_input(p_uid, b"second\n", confirm=True)
    await handle.send_input(p_uid, b"", confirm=True)  # end of file
    assert await _join(handle, p_uid) == 0
    assert out.read_bytes() == b"first\nsecond\n"


async def test_initial_stdin_reaches_a_pipe_stdin_too(handle: RuntimeHandle, tmp_path: Path) -> None:
    out = tmp_path / "out"
    resp = await _create(handle, COPY_STDIN, stdout=str(out), stdin=PIPE, initial_stdin=b"initial\n")
    assert resp.err == ProcessCreateErr.SUCCESS and resp.desc is not None and resp.desc.stdin_sdesc
    async with TrioChannel.attach(resp.desc.stdin_sdesc) as chan:
        await chan.send(b"from the pipe\n")
        await chan.send(b"")  # end of file
    assert await _join(handle, resp.desc.p_uid) == 0
    assert out.read_bytes() == b"initial\nfrom the pipe\n"
    await handle.call(
        GSChannelDestroy(p_uid=0, r_c_uid=0, user_name=f"stdin_{resp.desc.p_uid}", dec_ref=True),
        GSChannelDestroyResponse,
    )  # the parent's reference to the PIPE channel


async def test_confirmed_input_says_why_it_was_not_delivered(handle: RuntimeHandle, tmp_path: Path) -> None:
    with pytest.raises(InputNotDelivered, match="no running process p_uid 12345"):
        await handle.send_input(12345, b"x", confirm=True)
    quiet = await _start(handle, "import sys; sys.stdin.read()", stdin=DEVNULL)
    with pytest.raises(InputNotDelivered, match="not forwarded"):
        await handle.send_input(quiet, b"x", confirm=True)
    assert await _join(handle, quiet) == 0

    eof = await _start(handle, "import sys, time; sys.stdin.read(); time.sleep(30)")
    await handle.send_input(eof, b"", confirm=True)
    with pytest.raises(InputNotDelivered, match="end of file was sent"):
        await handle.send_input(eof, b"late", confirm=True)

    marker = tmp_path / "closed"
    closer = await _start(handle, f"import os, time; os.close(0); open({str(marker)!r}, 'w').close(); time.sleep(30)")
    with trio.fail_after(RUN_TIMEOUT_S):
        while not marker.exists():  # bounded poll: the process says it closed its stdin
            await trio.sleep(0.01)
    with pytest.raises(InputNotDelivered, match="closed it"):
        await handle.send_input(closer, b"x" * 100, confirm=True)
    for p_uid in (eof, closer):
        await handle.call(GSProcessKill(p_uid=0, r_c_uid=0, t_p_uid=p_uid, sig=9), GSProcessKillResponse)
        await _join(handle, p_uid)


async def test_umask_applies(handle: RuntimeHandle, tmp_path: Path) -> None:
    made = tmp_path / "made"
    p_uid = await _start(handle, f"open({str(made)!r}, 'w').close()", umask=0o027)
    assert await _join(handle, p_uid) == 0
    assert stat.S_IMODE(made.stat().st_mode) == 0o640


async def test_user_and_group_apply_or_are_refused(handle: RuntimeHandle, tmp_path: Path) -> None:
    """As root the process runs as the ids given; as anyone else asking for another user fails
    clearly (the kernel refuses it)."""
    out = tmp_path / "ids"
    nobody = 65534
    resp = await handle.call(
        GSProcessCreate(  # /bin/sh and "/": a user of no home may use both
            p_uid=0,
            r_c_uid=0,
            exe="/bin/sh",
            args=["-c", "id -u; id -g"],
            rundir="/",
            stdout=str(out),
            user=nobody,
            group=nobody,
        ),
        GSProcessCreateResponse,
    )
    if os.getuid() == 0:
        assert resp.err == ProcessCreateErr.SUCCESS and resp.desc is not None, resp.err_info
        assert await _join(handle, resp.desc.p_uid) == 0
        assert out.read_text().split() == [str(nobody)] * 2
    else:
        assert resp.err == ProcessCreateErr.FAIL
        assert "Operation not permitted" in resp.err_info, resp.err_info


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"umask": 0o1000}, "umask must be between 0 and 0o777"),
        ({"user": -3}, "user must be a numeric id"),
        ({"group": -1}, "group must be a numeric id"),
        ({"initial_stdin": b"x", "stdin": DEVNULL}, "initial_stdin needs a stdin"),
    ],
)
async def test_bad_fields_are_refused_clearly(handle: RuntimeHandle, fields: dict[str, object], says: str) -> None:
    resp = await _create(handle, "pass", **fields)
    assert resp.err == ProcessCreateErr.FAIL
    assert says in resp.err_info, resp.err_info
