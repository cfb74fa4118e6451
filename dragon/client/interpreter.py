"""The command line of another interpreter like this one, as multiprocessing's spawn makes it.

Both the runtime's Python children (`dragon.client.python_child.child_argv`) and the fork server of a background
runtime (`dragon.client.background`) run this program's interpreter with its flags; this module is what the
two share, below both (the child's side imports the client, which brings a background runtime up).
"""

from __future__ import annotations

import os


def interpreter_argv() -> list[str]:
    """multiprocessing's executable and this interpreter's flags (`python -X ... -W ...`)."""
    from multiprocessing import spawn, util  # here: most importers of this module never start a child

    return [os.fsdecode(spawn.get_executable()), *util._args_from_interpreter_flags()]  # type: ignore[attr-defined]
