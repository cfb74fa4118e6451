"""`dragon.native.wait`: one request for several processes (spec §4.2 GSProcessJoinList), any or all,
with and without timeouts, returning early on a bad exit; run by the real `dragon` command."""

from __future__ import annotations

import json
from pathlib import Path

from e2e_util import run_dragon

PROGRAM = str(Path(__file__).resolve().with_name("native_programs") / "waiter.py")


async def test_wait_any_all_timeout_and_bad_exit() -> None:
    done = await run_dragon(PROGRAM, timeout_s=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    out = json.loads(done.stdout)
    assert out["any"][0] == 0 and out["any"][2] is None  # the fast one, and not the stuck one
    assert out["all_timeout"][1] is None  # the stuck one was still running at the timeout
    assert sorted(out["all"], key=str) == sorted([0, 3, -9], key=str)
    assert out["bad_exit"] == [None, 5]
    assert out["self"] == "JoinSelf"
