"""Local Services' bringup on its own (no launcher): it runs in LS's trio loop from the first step.

LS is started as `dragon.serve` starts it (`python -m dragon.services.local_services CONFIG`), with
pipes for its stdin and stdout that the test holds, so the test plays the launcher's part.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import msgspec

from dragon import _rundir
from dragon.messages import AbnormalTermination, LAStdoutInbound
from dragon.services.local_services import LS_DEADLINE_MARGIN_S, LSConfig
from dragon.transport import FRAME_PREFIX as _PREFIX

from proc_util import forked_children

BOUND_S = 20.0  # generous: the bringup timeout below is 1 s


def test_without_benodeidxsh_ls_gives_up_at_its_deadline_and_leaves_nothing() -> None:
    """The first step (reading BENodeIdxSH) is under the bringup deadline too: a launcher that never
    speaks gets an AbnormalTermination naming the step, and LS and GS exit (they used to wait forever).
    GS exists from LS's first step: forked before LS's loop, waiting on its stdin."""
    run_id = _rundir.new_run_id()
    config = LSConfig(run_id=run_id, bringup_timeout_s=1.0, launcher_pid=os.getpid())
    proc = subprocess.Popen(
        [sys.executable, "-m", "dragon.services.local_services", msgspec.json.encode(config).decode()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        start = time.monotonic()
        gs: list[int] = []
        while not gs and time.monotonic() - start < BOUND_S:  # bounded poll for the fork
            # a fork (same command line): not the `ldconfig -p` that LS's `import trio` runs first
            gs = forked_children(proc.pid)
        assert len(gs) == 1, "Global Services is forked as LS starts, before any message"
        proc.wait(timeout=BOUND_S)  # LS must give up by itself (stdin stays open: no EOF)
        elapsed = time.monotonic() - start
    finally:
        proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 1, err
    assert elapsed >= 1.0 + LS_DEADLINE_MARGIN_S - 0.2, (out, err)
    (size,) = _PREFIX.unpack(out[: _PREFIX.size])
    msg = msgspec.msgpack.decode(out[_PREFIX.size : _PREFIX.size + size], type=LAStdoutInbound)
    assert isinstance(msg, AbnormalTermination)
    assert "did not finish within 1.0 s" in msg.err_info and "BENodeIdxSH" in msg.err_info, msg.err_info
    deadline = time.monotonic() + BOUND_S
    while os.path.exists(f"/proc/{gs[0]}") and time.monotonic() < deadline:  # GS sees its stdin's EOF
        try:
            os.waitpid(gs[0], os.WNOHANG)  # the test process is a subreaper: GS may be ours now
        except ChildProcessError:
            pass
    assert not os.path.exists(f"/proc/{gs[0]}"), "Global Services outlived Local Services"
