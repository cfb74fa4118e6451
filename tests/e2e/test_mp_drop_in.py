"""What CPython's multiprocessing suite once found different under "dragon" (docs/mp_suite.md), end to end.

* The start method is known in every interpreter of the environment, also one that never imports
  dragon, through the package's .pth file (TestNoForkBomb runs such a script), at no import cost at
  start-up.
* A program started with `subprocess` by a managed process is a plain program (TestNoForkBomb).
* Fds pickled for a child reach it without leaving a listener registered in the parent (test_finalize).

The programs of mp_programs/ run under "spawn" and under "dragon" and must report the same.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

from e2e_util import run_command, run_dragon

MP_PROGRAMS: Final = Path(__file__).resolve().with_name("mp_programs")


async def _reports(prog: str, tmp_path: Path) -> list[dict[str, Any]]:
    """PROG's report under plain python with "spawn", under `dragon` with "dragon", and under plain
    python with "dragon" (a background runtime of its own)."""
    reports = []
    for done in [
        await run_command([sys.executable, prog, "spawn"], cwd=tmp_path, timeout_s=120),
        await run_dragon(prog, "dragon", cwd=tmp_path, timeout_s=120),
        await run_command([sys.executable, prog, "dragon"], cwd=tmp_path, timeout_s=120),
    ]:
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        reports.append(json.loads(done.stdout))
    return reports


async def test_start_method_known_in_an_interpreter_that_never_imports_dragon() -> None:
    code = (
        "import sys\n"
        "light = not {'dragon', 'multiprocessing'} & set(sys.modules)\n"
        "import multiprocessing as mp\n"
        "ctx = mp.get_context('dragon')\n"
        "mp.set_start_method('dragon')\n"
        "print(light, type(ctx).__module__, mp.get_start_method(), 'trio' in sys.modules)\n"
    )
    done = await run_command([sys.executable, "-c", code])
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout.split() == [b"True", b"dragon.mp.context", b"dragon", b"False"]


async def test_fds_reach_the_child_and_leave_nothing_registered(tmp_path: Path) -> None:
    spawn, dragon, background = await _reports(str(MP_PROGRAMS / "fd_passing.py"), tmp_path)
    assert dragon == background == spawn
    assert spawn == {
        "echo": ["echo", "hi"],
        "oneway": "one-way",
        "array": [42, 0, 0, 0],
        "exit": 0,
        "left": ["close"],
        "sharer_listening": False,
    }  # "close": the arena's fd, kept by the heap


async def test_programs_started_with_subprocess_are_plain_programs(tmp_path: Path) -> None:
    reports = await _reports(str(MP_PROGRAMS / "plain_subprocess.py"), tmp_path)
    for report in reports:  # under dragon the grandchild's line is forwarded, so it may come later
        report["guarded"][1].sort()
    spawn, dragon, background = reports
    assert dragon == background == spawn
    assert spawn == {"guarded": [0, ["exit 0", "hello from the grandchild"], ""], "unguarded": [1, "", True], "head": 0}
