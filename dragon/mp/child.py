"""Child side of the "dragon" start method (spec §7.3): `python -c "from dragon.mp.child import main; main()"`;
also the first code of a `dragon.native.Process` whose target is a callable (`dragon.client.python_child`).

The counterpart of `multiprocessing.spawn.spawn_main`/`_main`: the pickled data arrives as the
`argdata` of this process's GSPingProc handshake (read by `dragon.client.gs_client.connection()`), not on an
inherited pipe. It holds a header (`dragon.mp.popen`: the parent's pid and resource-tracker fd, and
where to fetch the fds the rest names), then spawn's preparation data and the process object. This
module imports no trio.

What spawn inherits, the child gets otherwise:
* fds pickled with `reduction.DupFd` (Connection ends, shared-ctypes arenas): handed over by the
  parent before anything is unpickled (`dragon.mp.fds`); a child on another node than its parent
  gets a clear error instead (an fd does not cross nodes);
* parent sentinel (`multiprocessing.parent_process().sentinel`): a pidfd of the parent, readable once
  it exited (spawn: the read end of a pipe the parent holds open);
* the resource tracker: the parent's tracker pipe, reopened through /proc/<parent pid>/fd/<n>, so
  that both share one tracker as under spawn; if that fails the child starts its own when it needs one.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from typing import Any, Final, NoReturn

from dragon.client.python_child import FORMAT, load_prepared, run_call
from dragon.descriptors import ArgMode

EXIT_BAD_START: Final = 1


def main() -> NoReturn:
    """Run the process object (or, for a `dragon.native.Process` with a callable target, the call)
    the parent sent in the handshake, then exit with its exit code."""
    from dragon.client.gs_client import connection

    handshake = connection().handshake
    if handshake.mode != ArgMode.PYTHON_IMMEDIATE or not handshake.argdata:
        print(
            f"dragon.mp.child: this process was not started with a Python target of the runtime "
            f"(handshake mode {handshake.mode!r}, no argument data)",
            file=sys.stderr,
        )
        sys.exit(EXIT_BAD_START)
    sys.exit(run(handshake.argdata))


def run(data: bytes) -> int:
    """Unpickle header, preparation data and process object from `data`; bootstrap it (spawn._main).
    A header that says "call" is followed by a call's start data (`python_child.run_call`)."""
    from multiprocessing import resource_tracker

    fp = io.BytesIO(data)
    header = pickle.load(fp)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise RuntimeError(
            f"dragon.mp.child: unknown start data (header {header!r}): parent and child run different dragon versions"
        )
    if header.get("call"):
        return run_call(fp, header["call"])
    if header.get("fds"):
        from dragon.mp.fds import receive

        address, count = header["fds"]
        receive(address, count, header.get("node", ""))
    parent_pid = int(header["parent_pid"])
    tracker = _reopen_fd(parent_pid, header.get("tracker_fd"))
    if tracker is not None:
        resource_tracker._resource_tracker._fd = tracker  # type: ignore[attr-defined]
    parent_sentinel = _exit_sentinel(parent_pid)
    process_obj: Any = load_prepared(fp)
    code: int = process_obj._bootstrap(parent_sentinel)
    return code


def _reopen_fd(pid: int, fd: object) -> int | None:
    """Open the file (e.g. a pipe) behind fd `fd` of process `pid` for writing; None if impossible."""
    if not isinstance(fd, int) or fd < 0:
        return None
    try:
        return os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _exit_sentinel(pid: int) -> int:
    """A pidfd of `pid`, or (if it is gone already) an fd that is readable at once."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        r, w = os.pipe()
        os.close(w)
        return r
