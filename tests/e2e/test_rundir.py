"""The runtime directory of a `dragon` run: owner-only while the program runs, gone once it has ended."""

from __future__ import annotations

import os
import stat
import subprocess

import trio

from dragon import _rundir
from dragon.transport import entries, run_prefix

from e2e_util import DRAGON, RUN_TIMEOUT_S, StreamReader, pid_alive, program, start_process


async def test_runtime_directory_lives_as_long_as_the_run() -> None:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(RUN_TIMEOUT_S):
            proc = await start_process(
                nursery, [DRAGON, program("run_id_wait.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            assert proc.stdin is not None and proc.stdout is not None
            out = StreamReader(proc.stdout)
            run_id = (await out.until(b"\n")).decode().strip()

            # The head is running: so is the runtime, and its directory says where.
            path = _rundir.run_dir(run_id)
            st = os.stat(path)
            assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
            assert stat.S_IMODE(os.stat(_rundir.runtime_root()).st_mode) & 0o077 == 0
            info = _rundir.read_info(run_id)
            assert info is not None, os.listdir(path)
            assert info.run_id == run_id and info.launcher_pid == proc.pid
            assert pid_alive(info.ls_pid) and pid_alive(info.gs_pid)
            assert os.getpgid(info.ls_pid) == os.getpgid(info.gs_pid) == info.pgid
            assert entries(run_prefix(run_id))

            await proc.stdin.send_all(b"go on\n")
            assert await out.to_end() == f"{run_id}\nbye\n".encode()
            await proc.wait()
    assert proc.returncode == 0
    assert not os.path.exists(path)
    assert entries(run_prefix(run_id)) == []
    assert not pid_alive(info.ls_pid) and not pid_alive(info.gs_pid)
