"""`Process(stdin=PIPE, stdout=PIPE, stderr=PIPE)` from a managed process (spec §5.5): binary data
both ways, output read after the exit, and the channels gone once the parent closes its ends."""

from __future__ import annotations

import json
from pathlib import Path

from e2e_util import run_dragon

PROGRAM = str(Path(__file__).resolve().with_name("native_programs") / "pipes.py")


async def test_pipes_to_and_from_a_child() -> None:
    done = await run_dragon(PROGRAM, timeout_s=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    out = json.loads(done.stdout)
    assert out == {"code": 0, "out_ok": True, "err": "bye", "gone": [True, True], "plain": True}
