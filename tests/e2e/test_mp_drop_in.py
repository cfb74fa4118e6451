"""What CPython's multiprocessing suite once found different under "dragon" (docs/mp_suite.md), end to end.

* The start method is known in every interpreter of the environment, also one that never imports
  dragon, through the package's .pth file (TestNoForkBomb runs such a script), at no import cost at
  start-up.
"""

from __future__ import annotations

import sys

from e2e_util import run_command


async def test_start_method_known_in_an_interpreter_that_never_imports_dragon() -> None:
    code = ("import sys\n"
            "light = not {'dragon', 'multiprocessing'} & set(sys.modules)\n"
            "import multiprocessing as mp\n"
            "ctx = mp.get_context('dragon')\n"
            "mp.set_start_method('dragon')\n"
            "print(light, type(ctx).__module__, mp.get_start_method(), 'trio' in sys.modules)\n")
    done = await run_command([sys.executable, "-c", code])
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout.split() == [b"True", b"dragon._mp_context", b"dragon", b"False"]
