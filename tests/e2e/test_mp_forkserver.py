"""The fork server under the real runtime: "dragon" start-method children start from it, correctly.

`dragon._forkserver` makes a child by forking a warm interpreter instead of exec'ing Python; these
tests check that what a child sees is what an exec'd one would see, that a start Local Services cannot
serve that way is exec'd, and that a dead server costs nothing but speed. The conftest leak check
sees the server and its children if teardown leaves them.
"""

from __future__ import annotations

import json
from pathlib import Path

from e2e_util import run_dragon

PROGRAM = str(Path(__file__).resolve().with_name("mp_programs") / "forkserver_starts.py")


async def test_start_method_children_come_from_the_fork_server_and_see_an_exec_like_world(tmp_path: Path) -> None:
    done = await run_dragon(PROGRAM, cwd=tmp_path, timeout_s=180)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    out = json.loads(done.stdout)
    ls_pid = out["ls_pid"]
    assert out["servers"] == 1
    common = {"ppid": ls_pid, "main": "__mp_main__", "trio": False, "parent_alive": True}
    assert out["first"] == [{"tag": "first", "served": True, "x": None, **common}]  # waited for the server
    assert out["served"] == [{"tag": "served", "served": True, "x": "set later", **common}] * 6
    assert out["other_env"] == [{"tag": "other_env", "served": False, "x": "set later", **common}] * 2
    assert out["server_killed"] == [{"tag": "server_killed", "served": False, "x": "set later", **common}] * 3
    assert b"fork server failed" not in done.stderr  # the warning goes to the log, not the user's stderr
