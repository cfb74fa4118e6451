"""The fork server under the real runtime: "dragon" start-method children start from it, correctly.

`dragon.services.forkserver` makes a child by forking a warm interpreter instead of exec'ing Python; these
tests check that what a child sees is what an exec'd one would see, that a start Local Services cannot
serve that way is exec'd, and that a dead server costs nothing but speed. The conftest leak check
sees the server and its children if teardown leaves them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from e2e_util import clean_env, run_command, run_dragon

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


FIRST_START = """\
import multiprocessing as mp
import sys

import dragon  # noqa: F401


def served() -> None:
    sys.exit(0 if "dragon.services.forkserver" in sys.modules else 3)


if __name__ == "__main__":
    p = mp.get_context("dragon").Process(target=served)
    p.start()
    p.join()
    print(p.exitcode)
"""


def _booted_before_first_create(log: str) -> bool:
    """Whether Local Services began to start its fork server before the first process creation
    request reached it (the head's under `dragon`, the program's first start in a background runtime)."""
    lines = [line for line in log.splitlines() if " LS " in line]
    started = next(i for i, line in enumerate(lines) if "fork server starting" in line)
    return started < next(i for i, line in enumerate(lines) if "received SHProcessCreate" in line)


async def test_the_server_boots_with_the_runtime_for_a_program_naming_multiprocessing_and_dragon(
    tmp_path: Path,
) -> None:
    """Issue #12 item 4: it is then ready for the program's first start (keyed right: that child
    is served), instead of booting once the program runs."""
    (tmp_path / "first.py").write_text(FIRST_START)
    done = await run_dragon("-l", "DEBUG", "--log-file", "run.log", "first.py", cwd=tmp_path, timeout_s=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout == b"0\n"
    assert _booted_before_first_create((tmp_path / "run.log").read_text())


async def test_a_background_runtime_boots_the_server_for_the_start_that_brings_it_up(tmp_path: Path) -> None:
    (tmp_path / "first.py").write_text(FIRST_START)
    env = clean_env(DRAGON_LOG_LEVEL="DEBUG", DRAGON_LOG_FILE=str(tmp_path / "run.log"))
    done = await run_command([sys.executable, "first.py"], cwd=tmp_path, env=env, timeout_s=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout == b"0\n"
    assert _booted_before_first_create((tmp_path / "run.log").read_text())
