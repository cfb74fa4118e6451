"""`dragon --nodes N --wlm local`: one program over N virtual nodes on this machine (issue 16).

Virtual nodes here share this machine's network and /dev/shm (tests/multinode/ runs them isolated in
namespaces); each node still has its own backend, Local Services, transport agent and run id, and
traffic between them goes over ZeroMQ with CURVE. The leak check of tests/conftest.py covers every
node's processes and shared memory (they are all on this machine).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import pytest
import trio

from dragon import _rundir
from dragon.transport.records import remote_holder

from e2e_util import DRAGON, StreamReader, clean_env, pid_alive, program, run_dragon
from proc_util import children_of

NODE_PROGRAMS = Path(__file__).resolve().with_name("node_programs")


def node_program(name: str) -> str:
    return str(NODE_PROGRAMS / name)


def nodes_of(stdout: bytes) -> dict[int, int]:
    """child index -> node index, from where.py's output."""
    return {int(i): int(n) for i, n in re.findall(rb"child (\d+) node (\d+)", stdout)}


@pytest.mark.parametrize("n", [2, 4])
async def test_hello_on_many_nodes(n: int) -> None:
    done = await run_dragon("--nodes", str(n), "--wlm", "local", program("hello.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout == b"hello\n"
    assert done.stderr == b""


async def test_processes_spread_round_robin_and_output_from_every_node() -> None:
    done = await run_dragon("--nodes", "2", "--wlm", "local", node_program("where.py"), "4")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"head node 0 of 2" in done.stdout
    assert nodes_of(done.stdout) == {0: 0, 1: 1, 2: 0, 3: 1}  # the head on node 0; children round robin
    assert b"exitcodes [0, 0, 0, 0]" in done.stdout


async def test_label_prefixes_node_and_pid() -> None:
    done = await run_dragon("--nodes", "2", "--wlm", "local", "--label", node_program("where.py"), "2")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    lines = done.stdout.decode().splitlines()
    assert lines and all(re.match(r"\[\d+:\d+\] ", line) for line in lines), lines
    for line in lines:
        m = re.match(r"\[(\d+):(\d+)\] child \d+ node (\d+) pid (\d+)", line)
        if m:  # a child's line is labelled with its own node and pid
            assert m.group(1) == m.group(3) and m.group(2) == m.group(4), line


async def test_security_none_warns_once_and_runs() -> None:
    done = await run_dragon(
        "--nodes", "2", "--wlm", "local", "--transport-security", "none", node_program("where.py"), "2"
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stderr.count(b"dragon: warning:") == 1 and b"--transport-security none" in done.stderr
    assert nodes_of(done.stdout) == {0: 0, 1: 1}


async def test_exit_code_and_stdin_reach_the_head() -> None:
    done = await run_dragon("--nodes", "2", "--wlm", "local", program("upper.py"), stdin=b"abc\n")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"ABC" in done.stdout
    code = await run_dragon("--nodes", "2", "--wlm", "local", "-c", "import sys; sys.exit(7)")
    assert code.returncode == 7


# ------------------------------------------------------------------------------------------ faults


def node_info(fe_pid: int, node: int) -> _rundir.RunInfo | None:
    """runtime.json of `node` of the run of the frontend `fe_pid` (each node writes its own; a virtual
    node's backend is a child of the frontend): never a node of another run on this machine."""
    root = Path(_rundir.runtime_root())
    backends = set(children_of(fe_pid))
    for d in root.iterdir() if root.is_dir() else []:
        info = _rundir.read_info(d.name) if _rundir.RUN_ID.fullmatch(d.name) else None
        if info is not None and info.node_idx == node and info.nodes > 1 and info.launcher_pid in backends:
            return info
    return None


async def wait_for_node(proc: trio.Process, node: int) -> _rundir.RunInfo:
    with trio.fail_after(20):
        while (info := node_info(proc.pid, node)) is None:
            await trio.sleep(0.02)
    return info


def service_pid(info: _rundir.RunInfo, which: str) -> int:
    """The pid of a node's backend ("backend"), Local Services ("ls") or transport agent ("ta")."""
    if which == "backend":
        return info.launcher_pid
    if which == "ls":
        return info.ls_pid
    (ta,) = [p for p in children_of(info.launcher_pid) if p != info.ls_pid]
    return ta


WHAT_DIED = {"backend": b"backend", "ls": b"Local Services", "ta": b"transport agent"}


@pytest.mark.parametrize("which", ["backend", "ls", "ta"])
async def test_kill_of_a_remote_service_tears_the_run_down(which: str) -> None:
    """kill -9 of node 1's backend, Local Services or transport agent: one error line naming node 1
    and what died, the program's processes on every node stopped, the command ends (non-zero), and
    nothing is left on either node (the leak check)."""
    async with holding() as (proc, out, err):
        code, victim = await kill_then_finish(proc, out, err, which)
    errors = [line for line in bytes(err.data).splitlines() if line.startswith(b"dragon: error:")]
    assert len(errors) == 1, bytes(err.data)
    assert b"node 1" in errors[0] and WHAT_DIED[which] in errors[0], bytes(err.data)  # all of it: what came before
    assert code != 0
    assert b"joined" not in out.data  # the head was stopped by the teardown, not left waiting
    assert not pid_alive(victim)


Running = tuple[trio.Process, StreamReader, StreamReader]
"""A `dragon` command running, with readers of its stdout and stderr."""


@asynccontextmanager
async def started(*args: str) -> AsyncIterator[Running]:
    """`dragon --nodes 2 --wlm local ARGS...` running; killed at the end if it still runs (a test that
    fails midway leaves no run behind: the leak check would name it, not the failure)."""
    proc = await trio.lowlevel.open_process(
        [DRAGON, "--nodes", "2", "--wlm", "local", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        yield proc, StreamReader(proc.stdout), StreamReader(proc.stderr)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def until_all(out: StreamReader, *marks: bytes) -> None:
    """Until the output read so far holds every one of `marks` (within 30 s)."""
    with trio.fail_after(30):
        while not all(mark in out.data for mark in marks):
            assert await out.receive(), bytes(out.data)


@asynccontextmanager
async def holding() -> AsyncIterator[Running]:
    """`started(hold.py)`, once its sleeper on each node runs."""
    async with started(node_program("hold.py")) as (proc, out, err):
        await until_all(out, b"ready", b"sleeper on node 0", b"sleeper on node 1")
        yield proc, out, err


async def finish(proc: trio.Process, out: StreamReader, err: StreamReader) -> int:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(out.to_end)
            nursery.start_soon(err.to_end)
            return await proc.wait()


async def kill_then_finish(proc: trio.Process, out: StreamReader, err: StreamReader, which: str) -> tuple[int, int]:
    """SIGKILL node 1's `which` service (`service_pid`), then `finish`: the command's exit status and
    the pid killed. Prints how long the command took to end after the kill (shown, not asserted)."""
    victim = service_pid(await wait_for_node(proc, 1), which)
    killed_at = trio.current_time()
    os.kill(victim, signal.SIGKILL)
    code = await finish(proc, out, err)
    print(f"{which} killed: the command ended {trio.current_time() - killed_at:.2f} s later")
    return code, victim


@pytest.mark.parametrize(("sig", "codes"), [(signal.SIGINT, (1, 130)), (signal.SIGTERM, (143,))])
async def test_ctrl_c_and_sigterm_on_the_frontend_end_every_node(sig: int, codes: tuple[int, ...]) -> None:
    """Ctrl-C reaches the program's processes on every node (KeyboardInterrupt: the sleeper on each node
    says so), SIGTERM the head; the run then tears down in order on every node (the leak check sees
    nothing left). The exit status is the head's: 1 here, as on one node, for a head whose
    KeyboardInterrupt came while it joined a child (see the session note), 130 otherwise."""
    async with holding() as (proc, out, err):
        proc.send_signal(sig)
        assert await finish(proc, out, err) in codes, bytes(err.data)
        if sig == signal.SIGINT:
            assert err.data.count(b"in sleeper") == 2, bytes(err.data)
    assert b"dragon: error:" not in err.data, bytes(err.data)


def listening_ports(pid: int) -> list[int]:
    """TCP ports process `pid` listens on (from `ss`)."""
    done = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True)
    return [int(line.split()[3].rsplit(":", 1)[1]) for line in done.stdout.splitlines() if f"pid={pid}," in line]


async def test_garbage_and_strangers_on_the_run_sockets_change_nothing(tmp_path: Path) -> None:
    """§7: whatever connects to the frontend's or an agent's port without the run's keys (here: a
    TCP client writing garbage, and a ZeroMQ client with keys of its own) gets nothing through, and
    the run goes on unharmed to its normal end."""
    import zmq

    async with holding() as (proc, out, err):
        info = await wait_for_node(proc, 1)
        ta = service_pid(info, "ta")
        ports = listening_ports(proc.pid) + listening_ports(ta)
        assert len(ports) >= 2, ports
        for port in ports:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"\xff" * 64 + b"GET / HTTP/1.0\r\n\r\n" + os.urandom(256))
            ctx = zmq.Context()
            stranger = ctx.socket(zmq.DEALER)
            public, secret = zmq.curve_keypair()
            stranger.curve_publickey, stranger.curve_secretkey = public, secret
            stranger.curve_serverkey = zmq.curve_keypair()[0]  # not the run's
            stranger.linger = 0
            stranger.connect(f"tcp://127.0.0.1:{port}")
            stranger.send(b"\x81\xa3_tc\xa6BEDone")
            stranger.close()
            ctx.term()
        # still alive and well: its processes on both nodes run on until SIGTERM ends the run in order
        proc.send_signal(signal.SIGTERM)
        assert await finish(proc, out, err) == 143, bytes(err.data)
    assert b"dragon: error:" not in err.data, bytes(err.data)


async def test_policy_places_processes_and_system_queries_see_every_node() -> None:
    done = await run_dragon("--nodes", "3", "--wlm", "local", node_program("policy_nodes.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = json.loads(done.stdout)
    cpus = len(os.sched_getaffinity(0))
    assert report["nodes"] == [[i, f"vnode{i}", cpus, i == 0] for i in range(3)]
    assert report["cpu_count"] == report["mp_cpu_count"] == 3 * cpus
    assert report["current"] == 0
    assert report["by_node"] == report["by_host"] == report["native_by_node"] == [0, 1, 2]
    assert report["group_by_node"] == [[0, 0], [1, 1], [2, 2]]
    assert report["group_spread"] == [0, 1, 2]  # round robin over the nodes


async def test_status_shows_every_node_and_each_process_node() -> None:
    async with holding() as (proc, out, err):
        info = await wait_for_node(proc, 0)
        with trio.fail_after(20):  # each node's agent reports its traffic to GS every second
            while True:
                done = await run_dragon("status", info.run_id, "--json")
                assert done.returncode == 0, done.stderr.decode(errors="replace")
                report = json.loads(done.stdout)
                if all(n.get("transport") for n in report["nodes"]):
                    break
        text = await run_dragon("status", info.run_id)
        node1 = await run_dragon("status", (await wait_for_node(proc, 1)).run_id, "--json")
        proc.send_signal(signal.SIGTERM)
        assert await finish(proc, out, err) == 143, bytes(err.data)
    assert report["version"] == 2 and report["security"] == "curve"
    assert [(n["idx"], n["host"], n["primary"]) for n in report["nodes"]] == [(0, "vnode0", True), (1, "vnode1", False)]
    sleepers = [p for p in report["processes"] if "sleeper" in (p.get("target") or "")]
    assert sorted(p["node"] for p in sleepers) == [0, 1], report["processes"]
    assert b"NODES (2)" in text.stdout and b"vnode1" in text.stdout, text.stdout
    # the children's GS requests and answers crossed between the agents (issue 17 item 5)
    for node in report["nodes"]:
        t = node["transport"]
        assert t["frames_out"] > 0 and t["frames_in"] > 0 and t["bytes_out"] > 0 and t["dropped"] == 0, node
    assert b"TRANSPORT" in text.stdout
    assert json.loads(node1.stdout)["run_id"] == info.run_id  # a node's directory leads to its run's primary


WRAP_FAILING_NODE_1 = "sh -c 'if [ {node} = 1 ]; then exit 3; fi; exec \"$@\"' sh"
WRAP_SILENT_NODE_1 = "sh -c 'if [ {node} = 1 ]; then exec sleep 60; fi; exec \"$@\"' sh"


@pytest.mark.parametrize(
    ("wrap", "said"),
    [
        (WRAP_FAILING_NODE_1, b"node 1 (vnode1): its backend (pid "),
        (WRAP_SILENT_NODE_1, b"node 1 (vnode1) did not report within 3 s"),
    ],
    ids=["cannot-start", "does-not-report"],
)
async def test_a_node_that_does_not_come_up_is_named_and_the_others_leave_nothing(wrap: str, said: bytes) -> None:
    """Node 1's backend cannot start (its start command fails) or never reports: one `dragon: error:`
    line names node 1, exit 1, and node 0, which came up, leaves nothing (the leak check); the silent
    one's process is stopped too."""
    env = clean_env(DRAGON_LOCAL_WRAP=wrap)
    done = await run_dragon("--nodes", "2", "--wlm", "local", "--bringup-timeout", "3", program("hello.py"), env=env)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(b"dragon: error:") and said in lines[0], done.stderr
    assert done.stdout == b""


@pytest.mark.parametrize("which", ["backend", "ta"])
async def test_on_node_loss_continue_reports_its_processes_dead_and_goes_on(which: str) -> None:
    """`--on-node-loss continue`: node 1's backend or agent is killed; one warning line names node 1,
    the head's join of its sleeper returns -9 (never a hang), the program goes on on node 0 and ends
    normally; node 1 leaves nothing (the leak check)."""
    async with started("--on-node-loss", "continue", node_program("survive.py")) as (proc, out, err):
        await until_all(out, b"ready", b"sleeper on node 1")
        code, _ = await kill_then_finish(proc, out, err, which)
    assert code == 0, bytes(err.data)
    assert b"joined node 1's sleeper: -9" in out.data and b"hello from node 0" in out.data, bytes(out.data)
    assert b"and went on: 0" in out.data
    warnings = [line for line in bytes(err.data).splitlines() if line.startswith(b"dragon:")]
    assert len(warnings) == 1 and warnings[0].startswith(b"dragon: warning: node 1"), bytes(err.data)


async def test_a_pool_spreads_over_virtual_nodes() -> None:
    """Pool(4) on 2 virtual nodes: workers on both (round robin), every result right. Its queues are
    node 0's channels, which node 1's workers reach through the transport agents."""
    done = await run_dragon("--nodes", "2", "--wlm", "local", node_program("pool_nodes.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = json.loads(done.stdout)
    assert report["squares"] == [x * x for x in range(40)]
    assert report["workers"] == ["0", "0", "1", "1"]


async def test_a_wait_on_a_channel_of_a_lost_node_ends_with_a_clear_error() -> None:
    """Issue 17 item 4 / MULTINODE §6: the head waits (no timeout) on a channel of node 1; node 1's
    backend is killed; with `--on-node-loss continue` the wait ends with ChannelError naming node 1."""
    async with started("--on-node-loss", "continue", node_program("wait_on_lost.py")) as (proc, out, err):
        await until_all(out, b"waiting")
        code, _ = await kill_then_finish(proc, out, err, "backend")
    assert code == 0, bytes(err.data)
    assert b"the wait ended: node 1 is lost" in out.data, bytes(out.data)
    assert b"joined: -9" in out.data


@pytest.mark.parametrize("n", [1, 2])
async def test_a_manager_serves_processes_on_every_node(n: int) -> None:
    """Issue 17 item 2: a Manager's dict, list and Queue proxies used by processes on each node; over
    several nodes its server listens on TCP at its node's address (127.0.0.1 for virtual nodes that
    share this machine: see test_isolated_nodes.py for nodes of their own), on one node on a unix
    socket as the stdlib's."""
    done = await run_dragon("--nodes", str(n), "--wlm", "local", node_program("manager_nodes.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = json.loads(done.stdout)
    assert report["dict"] == {f"p{i}": i % n for i in range(2 * n)}
    assert report["list"] == sorted(i % n for i in range(2 * n))
    assert report["queue"] == [[i, i % n] for i in range(2 * n)]
    assert report["exits"] == [0] * 2 * n
    if n == 1:
        assert isinstance(report["address"], str) and "/pymp-" in report["address"], report
    else:
        assert report["address"][0] == "127.0.0.1" and report["address"][1] > 0, report


LOCKS_ACROSS: Final = {
    "basics_same": True,  # mp_programs/locks.py's checks agree for objects of node 1 and of node 0
    "exclusive": [True, 600, [0, 0, 0]],  # 2 processes on node 1 and 1 on node 0 inside a Lock and an RLock
    "rlock_still_mine": [True, None, None],
    "rlock_visitor": {
        "acquire_nonblock": False,
        "acquire_timeout": [False, True],
        "release_not_owner": "AssertionError",
    },
    "rlock_visitor_got": True,
    "rlock_held_by_child": [False, "<RLock(SomeOtherProcess, nonzero)>"],
    "rlock_child_repr": "<RLock(child, 1)>",
    "rlock_after_child": [True, None, 0],
    "lock_released_by_other": [0, True, None],
    "produced": [[True, True, True], False, 0, 0],
    "overflow_in_child": ["ValueError", 2],
    "semaphore_count_back": True,
    "waiter_killed": [-9, True],
    "maker_exit": 0,
}
"""node_programs/locks_across.py's report (but its basics and the killed holders' pids)."""


def check_locks_across(stdout: bytes) -> None:
    report = json.loads(stdout)
    killed = {key: report.pop(key) for key in ("holder_killed_home 0", "holder_killed_home 1")}
    report.pop("basics_there")
    assert report == LOCKS_ACROSS
    for home, holder in ((0, 1), (1, 0)):  # the next acquirer is told, naming the dead holder and its node
        got = killed[f"holder_killed_home {home}"]
        assert got[:3] == [str(holder), -9, True] and got[4] is None, got
        assert len(got[3]) == 1 and re.fullmatch(rf"process \d+ of node {holder}", got[3][0]), got


async def test_locks_and_semaphores_across_nodes() -> None:
    """Issue 17 item 2: Lock, RLock, Semaphore and BoundedSemaphore with their users on both nodes:
    the standard library's semantics (timeouts, non-blocking acquire, a Lock released by another
    process, RLock ownership), exclusion, and holders and a waiter of another node killed."""
    done = await run_dragon("--nodes", "2", "--wlm", "local", node_program("locks_across.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    check_locks_across(done.stdout)


async def test_events_conditions_barriers_values_across_nodes() -> None:
    """Issue 17 item 2: mp_programs/event_objects.py (Event, Condition, Barrier, Value) and
    mp_programs/locks.py's children give the same report with every child on the other node, and
    with every object on the other node (its users all on node 0), as on one node."""
    done = await run_dragon("--nodes", "2", "--wlm", "local", node_program("sync_across.py"), timeout_s=180)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = json.loads(done.stdout)
    assert report["here"]["barrier"]["action_runs"] == 5 and report["here"]["locks_across"]["counted"][0] == [900, 900]
    assert (report["children_there"], report["objects_there"], report["maker_exit"]) == (True, True, 0)


PIPES_ACROSS: Final = {
    "both_away": {"echoed": [True] * 4, "node": "1", "poll_empty": False, "end": "AwayEnd", "exitcodes": [7, 0]},
    "wait": {
        "nothing": [],
        "remote_only": [1],
        "got": "to r2",
        "mixed": ["r1"],
        "got_again": "to r1",
        "fd": True,
        "exitcode": 0,
    },
    "holder_killed": {"holder": -9, "reader": 7},
    "receiver_killed": {"killed": -9, "got": "not lost"},
    "fds": {
        "error": "FdOnAnotherNode: a process of node 0 sent this process, of node 1, a file descriptor through a "
        "Pipe (multiprocessing.reduction.send_handle): file descriptors cannot cross nodes; send the data itself, "
        "or start this process on node 0 (dragon.native.Policy(node=0))",
        "fileno": "this end of a Pipe of node 0 is used on node 1: it has no file descriptor here; wait for it with "
        "multiprocessing.connection.wait",
        "exitcode": 0,
    },
    "posted": {"in_order_then_eof": True, "exitcode": 0, "to_closed": ["BrokenPipeError", True, True]},
}


async def test_pipes_with_both_ends_on_another_node() -> None:
    """Issue 17 item 2: a Pipe of node 0 used by processes of node 1 only (dragon.mp.pipe_away): a
    message larger than the ring, EOF, poll with a timeout, `multiprocessing.connection.wait` over
    ends of another node alone and beside an fd of this node, the only holder of an end killed (the
    reader of the other sees EOF), a receiver killed while it waits (the next message is not lost),
    and fds passed to another node failing clearly."""
    done = await run_dragon("--nodes", "2", "--wlm", "local", node_program("pipes_across.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert json.loads(done.stdout) == PIPES_ACROSS


FDS_ACROSS: Final = {
    "stdlib_pipe_node_0": [0, ["echo", "0"]],
    "stdlib_pipe_node_1": [1, None],  # FdOnAnotherNode in the child (its stderr)
    "joinable": 0,
    "broken": [True, -9, 0],
    "join_on_node_1": 0,
}


def check_fds_across(stdout: bytes, stderr: bytes) -> None:
    report = json.loads(stdout)
    killed = report.pop("party_killed")
    assert report == FDS_ACROSS
    assert killed[0] == "BrokenBarrierError" and re.fullmatch(r"process \d+ of node 1", killed[1]), killed
    assert b"FdOnAnotherNode: this process runs on node 1 and its parent, on node 0, passed it 1 file" in stderr


async def test_fds_do_not_cross_nodes_and_a_remote_party_death_breaks_a_barrier() -> None:
    """Issue 17 item 2: file descriptors handed to a child on another node fail clearly, naming both
    nodes (on the parent's node they work); multiprocessing.JoinableQueue with a worker on node 1; a
    Barrier's party on node 1 killed while the others wait breaks it; a process on node 1 whose GS
    call outlasts a liveness slice is not told the runtime is gone (pid_alive(0) raised before)."""
    done = await run_dragon("--nodes", "2", "--wlm", "local", node_program("fds_across.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    check_fds_across(done.stdout, done.stderr)


async def test_status_names_the_node_of_a_holder_of_another_node() -> None:
    """`dragon status` of a run whose Locks of node 0 are held by a process of node 1, and taken back
    from one killed on node 1 holding it: the table shows each such pid with its node ("1234 on node
    1"), not the record's number for it (above 2**32); --json keeps that number (records.holder_of)."""
    done = await run_dragon("--nodes", "2", "--wlm", "local", node_program("status_holders.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = json.loads(done.stdout)
    pids = report["pids"]
    assert report["exits"] == [-9, True, 0]
    held, taken = sorted(report["table"], key=lambda line: "taken back" in line)
    assert f" {pids['holder']} on node 1 " in held, report["table"]
    assert f" {pids['head']} " in taken and f"taken back from dead pid {pids['victim']} on node 1 " in taken, taken
    assert report["json"] == [
        [[pids["head"]], remote_holder(1, pids["victim"])],
        [[remote_holder(1, pids["holder"])], 0],
    ]


async def test_the_socket_of_a_thread_that_ended_is_closed() -> None:
    """Issue 17: a process on node 1 whose 200 short-lived threads (10 at a time) each send into and
    receive from a channel of node 0 once, each over a socket of its own, holds at most about two
    waves' sockets at a time (two fds each; before, all 200 stayed open until the process exited:
    400 fds more), and every message is received exactly once (a socket confirms its ACKs before it
    goes)."""
    done = await run_dragon("--nodes", "2", "--wlm", "local", node_program("thread_sockets.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = json.loads(done.stdout)
    before, most, after = report.pop("fds")
    assert report == {"got": True, "exit": 0, "left": 0}
    assert most - before <= 60 and after - before <= 40, (before, most, after)
