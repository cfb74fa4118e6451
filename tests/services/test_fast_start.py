"""Local Services' handle on its fork server (services/_fast_start.py `ForkServer`): when it boots
the server and how it stops it, with a real server process and no runtime (issue #12 item 4).

The test process is a child subreaper (tests/conftest.py), as Local Services is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio
import trio.testing

from dragon.ids import CHILD_MAIN
from dragon.services._fast_start import ForkServer


async def test_no_server_boots_for_a_program_that_exited_before_its_prestart_delay() -> None:
    """A hello world ended before the delay: no server, and its key is not kept; the next
    program's start then boots one for its own key (other flags here)."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            fs = ForkServer(nursery)
            exited = trio.Event()
            exited.set()
            fs.prestart(sys.executable, dict(os.environ), flags=["-B"], delay_s=0.0, exited=exited)
            await trio.testing.wait_all_tasks_blocked()
            assert fs.ready_for([sys.executable, "-c", CHILD_MAIN], dict(os.environ))  # no -B: a new key
            await fs.aclose()


async def test_closing_does_not_wait_for_a_server_still_booting(tmp_path: Path) -> None:
    """The teardown of a program that ended while its server booted stops the server at once; it
    waited for the server's imports before (here they never end: sitecustomize sleeps)."""
    (tmp_path / "sitecustomize.py").write_text("import time\ntime.sleep(600)\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    closed = trio.Event()
    async with trio.open_nursery() as nursery:
        fs = ForkServer(nursery)
        fs.prestart(sys.executable, env, delay_s=0.0)
        await trio.testing.wait_all_tasks_blocked()  # the boot waits for READY

        async def close() -> None:
            await fs.aclose()  # shielded: the guard below cannot cut it short, only see it late
            closed.set()

        nursery.start_soon(close)
        with trio.fail_after(20):  # less than REPLY_TIMEOUT_S (30 s), the boot's bound on READY
            await closed.wait()
