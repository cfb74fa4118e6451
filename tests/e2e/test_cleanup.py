"""`dragon cleanup` after a real crash (issue #6): everything of the dead run goes, a live runtime stays.

The crash is the one nothing inside the runtime can survive: SIGKILL of the launcher and of the
runtime's whole process group (`pgid` of runtime.json) at once. The crashed head had started a plain
child in its own session (`start_new_session=True`), which escapes the group kill: the leftover
process cleanup must find by its DRAGON_RUN_ID. Runtimes run in a private runtime root (tmp_path), and
the commands that remove things are restricted to our run ids, so that runtimes of other test
sessions on the machine are never touched; the unrestricted form is exercised with --dry-run only.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from dragon import _runs
from dragon.transport import entries, run_prefix

from proc_util import running
from test_status import GUARD_S, IDLE_HEAD, POLL_S, Runtime, dragon, private_env

CRASH_HEAD = r"""
import json, os, subprocess, sys
from dragon.client.gs_client import connection
from dragon.descriptors import ProcessOptions
from dragon.ids import DEFAULT_POOL_MUID
from dragon.messages import GSChannelCreate, GSChannelCreateResponse, GSProcessCreate, GSProcessCreateResponse
from dragon.transport import Channel

gs = connection()
chan = gs.call(GSChannelCreate(p_uid=0, r_c_uid=0, m_uid=DEFAULT_POOL_MUID, user_name="crash-chan"),
               GSChannelCreateResponse, timeout_s=30).desc
with Channel.attach(chan.sdesc) as ch:
    ch.send(b"left behind")
worker = gs.call(GSProcessCreate(p_uid=0, r_c_uid=0, exe=sys.executable, args=["-c", "import time; time.sleep(600)"],
                 options=ProcessOptions(make_inf_channels=True)), GSProcessCreateResponse, timeout_s=30).desc
escaped = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
print("READY " + json.dumps({"run_id": os.environ["DRAGON_RUN_ID"], "worker": worker.pid, "escaped": escaped.pid}),
      flush=True)
sys.stdin.readline()
"""


def _wait_dead(pids: list[int]) -> None:
    deadline = time.monotonic() + GUARD_S
    while any(running(p) for p in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if running(p)]}"
        time.sleep(POLL_S)


def _run_processes(run_id: str) -> list[int]:
    return [p for p in _runs.own_pids() if _runs.environ_run_id(p) == run_id and running(p)]


def test_cleanup_after_group_kill_leaves_nothing_and_spares_a_live_runtime(tmp_path: Path) -> None:
    root = tmp_path / "xdg"
    live = Runtime(tmp_path, IDLE_HEAD, "live", root)
    try:
        live_shm = entries(run_prefix(live.run_id))
        crashed = Runtime(tmp_path, CRASH_HEAD, "crash", root)
        rid, info = crashed.run_id, crashed.info
        escaped = crashed.ready["escaped"]
        try:
            os.kill(crashed.proc.pid, signal.SIGKILL)  # launcher and the whole group at once
            os.killpg(info["pgid"], signal.SIGKILL)
            _wait_dead([crashed.proc.pid, info["ls_pid"], info["gs_pid"], crashed.ready["worker"]])
            assert running(escaped)
            left = entries(run_prefix(rid))
            assert left and (root / "dragon" / rid).is_dir()  # what the crash left behind

            out = dragon(live.env, "cleanup", "--dry-run")
            assert out.returncode == 0, out.stderr
            assert f"run {rid} (crashed):" in out.stdout and f"would stop process {escaped}" in out.stdout
            assert f"kept run {live.run_id}: live, its launcher (pid {live.proc.pid}) is running" in out.stdout
            assert all(f"would remove /dev/shm/{n}" in out.stdout for n in left)
            assert entries(run_prefix(rid)) == left and running(escaped)  # a dry run changes nothing

            out = dragon(live.env, "cleanup", rid, live.run_id)
            assert out.returncode == 0 and out.stderr == "", out.stderr
            assert f"stopped process {escaped}" in out.stdout
            assert f"removed runtime directory {root / 'dragon' / rid}" in out.stdout
            assert f"kept run {live.run_id}" in out.stdout
            _wait_dead([escaped])
            assert entries(run_prefix(rid)) == []
            assert not (root / "dragon" / rid).exists()
            assert _run_processes(rid) == []

            out = dragon(live.env, "cleanup", rid)  # again: nothing left of it
            assert out.stdout == f"nothing of run {rid} found\n"
        finally:
            if crashed.proc.poll() is None:
                crashed.proc.kill()
            crashed.finish()
        # the live runtime next to it is untouched: same entries, still answering, ends normally
        assert entries(run_prefix(live.run_id)) == live_shm
        status = dragon(live.env, "status", live.run_id, "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["answering"] is True
    finally:
        assert live.finish() == 0
    assert os.listdir(root / "dragon") == []


def test_cleanup_keeps_a_live_runtime_seen_from_another_runtime_root(tmp_path: Path) -> None:
    live = Runtime(tmp_path, IDLE_HEAD, "live", tmp_path / "xdg")
    try:
        other_root = private_env(tmp_path / "elsewhere")  # its runtime directory is not visible from here
        out = dragon(other_root, "cleanup", live.run_id)
        assert out.returncode == 0
        assert out.stdout.startswith(f"kept run {live.run_id}: live, its shared memory is in use by pid")
        assert entries(run_prefix(live.run_id)) and running(live.info["ls_pid"])
    finally:
        assert live.finish() == 0


def test_cleanup_with_nothing_to_do(tmp_path: Path) -> None:
    out = dragon(private_env(tmp_path / "xdg"), "cleanup", "0badc0de")
    assert out.returncode == 0 and out.stdout == "nothing of run 0badc0de found\n"
