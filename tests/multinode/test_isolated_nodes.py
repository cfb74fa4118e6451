"""`dragon --nodes N --wlm local` over isolated virtual nodes: a network namespace and a private /dev/shm
each (netns.py), so nothing can work by sharing this machine's memory (MULTINODE §9, issue 16).

`dragon` itself (the frontend) runs inside node 0, which is also the primary node, and starts each
node's backend inside that node (DRAGON_LOCAL_WRAP); the nodes reach each other only over their veth
addresses. The `cluster` fixture fails a test that leaves a process in any namespace or an entry in any
node's /dev/shm, and removes the namespaces whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from netns import VirtualCluster

DRAGON = os.path.join(os.path.dirname(sys.executable), "dragon")
E2E = Path(__file__).resolve().parents[1] / "e2e"
RUN_TIMEOUT_S = 60.0


def node_program(name: str) -> str:
    return str(E2E / "node_programs" / name)


def dragon_argv(c: VirtualCluster, n: int, *args: str) -> list[str]:
    return [*c.wrap(0), DRAGON, "--nodes", str(n), "--wlm", "local", "--frontend-addr", c.addr(0), *args]


def dragon_env(c: VirtualCluster) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGON_")}
    return {**env, "DRAGON_LOCAL_WRAP": c.wrap_template()}


def run(c: VirtualCluster, n: int, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(dragon_argv(c, n, *args), env=dragon_env(c), capture_output=True, timeout=RUN_TIMEOUT_S)


def nodes_of(stdout: bytes) -> dict[int, int]:
    return {int(i): int(n) for i, n in re.findall(rb"child (\d+) node (\d+)", stdout)}


@pytest.mark.parametrize("n", [2, 4])
def test_hello_and_placement_on_isolated_nodes(make_cluster: Callable[[int], VirtualCluster], n: int) -> None:
    c = make_cluster(n)
    done = run(c, n, "--label", node_program("where.py"), str(2 * n))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stderr == b""
    placed = {int(i): int(node) for node, i in re.findall(rb"\[(\d+):\d+\] child (\d+) node", done.stdout)}
    assert placed == {i: i % n for i in range(2 * n)}  # round robin; each line labelled with its node
    assert nodes_of(done.stdout) == placed  # what each child saw as its node is where its output came from
    assert b"exitcodes [" + b", ".join([b"0"] * (2 * n)) + b"]" in done.stdout
    for i in range(n):  # each node's shared memory was its own, and is empty again
        assert not any(c.shm_dir(i).iterdir())


def test_pipes_across_isolated_nodes(cluster: VirtualCluster) -> None:
    """Issue 17 item 2: a Pipe of node 0 whose ends are used on the other isolated node
    (node_programs/pipes_across.py: data, EOF, wait, a holder and a receiver killed there, and an fd
    sent there failing clearly, naming both nodes). Before, such an end raised ChannelOnAnotherNode."""
    done = run(cluster, 2, node_program("pipes_across.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = json.loads(done.stdout)
    assert report["both_away"]["echoed"] == [True] * 4 and report["both_away"]["exitcodes"] == [7, 0]
    assert report["wait"]["remote_only"] == [1] and report["wait"]["mixed"] == ["r1"] and report["wait"]["fd"]
    assert report["holder_killed"] == {"holder": -9, "reader": 7}
    assert report["receiver_killed"] == {"killed": -9, "got": "not lost"}
    assert report["fds"]["error"].startswith("FdOnAnotherNode: a process of node 0 sent this process, of node 1")


@pytest.mark.parametrize("cluster", [2, 4], indirect=True)
def test_a_manager_serves_processes_on_every_isolated_node(cluster: VirtualCluster) -> None:
    """Issue 17 item 2: `multiprocessing.Manager()` over isolated nodes: its server listens on TCP at
    node 0's address (a unix socket in /tmp reached other nodes only because the nodes share this
    machine's files; a real node has its own /tmp), its server runs on node 0 though started inside
    `Policy(node=<last>)` (the stdlib hands it an fd), and its dict, list and Queue proxies work in
    processes on every node."""
    n = cluster.n
    done = run(cluster, n, node_program("manager_nodes.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = json.loads(done.stdout)
    assert report["address"][0] == cluster.addr(0), report
    assert report["dict"] == {f"p{i}": i % n for i in range(2 * n)}
    assert report["list"] == sorted(i % n for i in range(2 * n))
    assert report["queue"] == [[i, i % n] for i in range(2 * n)]
    assert report["exits"] == [0] * 2 * n


def test_fds_and_barrier_death_across_isolated_nodes(cluster: VirtualCluster) -> None:
    """Issue 17 item 2 (node_programs/fds_across.py): an fd handed to a child on the other isolated
    node is a clear error naming both nodes; a killed party on node 1 breaks a Barrier of node 0."""
    done = run(cluster, 2, node_program("fds_across.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = json.loads(done.stdout)
    assert report["stdlib_pipe_node_0"] == [0, ["echo", "0"]] and report["stdlib_pipe_node_1"] == [1, None]
    assert b"FdOnAnotherNode: this process runs on node 1 and its parent, on node 0" in done.stderr
    assert report["party_killed"][0] == "BrokenBarrierError" and report["broken"] == [True, -9, 0]
    assert (report["joinable"], report["join_on_node_1"]) == (0, 0)


def test_sync_objects_across_isolated_nodes(cluster: VirtualCluster) -> None:
    """Issue 17 item 2: Event, Condition, Barrier, Value and the Lock family with their users on the
    other isolated node (node_programs/sync_across.py: the same report three ways)."""
    done = run(cluster, 2, node_program("sync_across.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = json.loads(done.stdout)
    assert (report["children_there"], report["objects_there"], report["maker_exit"]) == (True, True, 0)


def test_locks_across_isolated_nodes(cluster: VirtualCluster) -> None:
    """Issue 17 item 2: Lock, RLock, Semaphore and BoundedSemaphore with users on both isolated nodes
    (each record only in its home's /dev/shm); tests/e2e/test_many_nodes.py checks every line."""
    done = run(cluster, 2, node_program("locks_across.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = json.loads(done.stdout)
    assert report["basics_same"] is True
    assert report["exclusive"] == [True, 600, [0, 0, 0]]
    assert report["lock_released_by_other"] == [0, True, None]
    for home, holder in ((0, 1), (1, 0)):  # killed on one node holding a Lock of the other: given back
        got = report[f"holder_killed_home {home}"]
        assert got[1:3] == [-9, True] and re.fullmatch(rf"process \d+ of node {holder}", got[3][0]), got
    assert report["waiter_killed"] == [-9, True]


@contextmanager
def holding(c: VirtualCluster) -> Iterator[subprocess.Popen[bytes]]:
    """`dragon hold.py` over two nodes of `c`, once its sleeper on each node runs; killed at the end if
    it still runs (a test that fails midway leaves no run behind for the cluster fixture to find)."""
    proc = subprocess.Popen(
        dragon_argv(c, 2, node_program("hold.py")), env=dragon_env(c), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        lines: list[bytes] = []
        deadline = time.monotonic() + 30
        while sum(b"sleeper on node" in line for line in lines) < 2:
            assert time.monotonic() < deadline, lines
            line = proc.stdout.readline()
            assert line, lines
            lines.append(line)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def stderr_at_end(proc: subprocess.Popen[bytes], what: str) -> bytes:
    """The stderr of `proc` once it ended (within 30 s) after `what` was done to it; prints how long
    that took (shown, not asserted)."""
    done_at = time.monotonic()
    _out, err = proc.communicate(timeout=30)
    print(f"{what}: the command ended {time.monotonic() - done_at:.2f} s later")
    return err


def test_cutting_a_node_off_the_network_is_noticed_and_ends_the_run(cluster: VirtualCluster) -> None:
    """Node 1's link goes down (its processes keep running, unreachable): the heartbeats notice within
    2 s, one error line names node 1, the run tears down, and node 1 cleans itself up when it finds
    the frontend gone (nothing left in either namespace: the fixture checks)."""
    with holding(cluster) as proc:
        subprocess.run(["ip", "-n", cluster.ns(1), "link", "set", "eth0", "down"], check=True)
        err = stderr_at_end(proc, "link cut")
    errors = [line for line in err.splitlines() if line.startswith(b"dragon: error:")]
    assert len(errors) == 1 and b"node 1" in errors[0] and b"silent" in errors[0], err
    assert proc.returncode != 0


@pytest.mark.parametrize("which", ["backend", "ls", "ta"])
def test_kill_of_an_isolated_nodes_service(cluster: VirtualCluster, which: str) -> None:
    """kill -9 of node 1's backend, Local Services or transport agent (found in node 1's namespace):
    one error line naming node 1 and what died, and nothing left on either node."""
    with holding(cluster) as proc:
        pids = cluster.pids(1)
        ls = [p for p in pids if _is(p, "local")]
        victims = {"ls": ls[0], "backend": _ppid(ls[0])} if which != "ta" else {}
        victim = victims[which] if which != "ta" else _transport_agent(pids, ls)
        os.kill(victim, signal.SIGKILL)
        err = stderr_at_end(proc, f"{which} killed")
    errors = [line for line in err.splitlines() if line.startswith(b"dragon: error:")]
    assert len(errors) == 1 and b"node 1" in errors[0], err
    assert {"backend": b"backend", "ls": b"Local Services", "ta": b"transport agent"}[which] in errors[0], errors[0]


def test_sigterm_on_the_frontend_ends_every_isolated_node(cluster: VirtualCluster) -> None:
    with holding(cluster) as proc:
        proc.send_signal(signal.SIGTERM)
        err = stderr_at_end(proc, "SIGTERM")
    assert proc.returncode == 143, err
    assert b"dragon: error:" not in err


def _is(pid: int, what: str) -> bool:
    """Whether `pid` is a node's Local Services ("local": the child of a backend that leads its own
    session) — read from /proc: a backend's two forks are LS (its own session) and the agent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2 :].split()
    ppid, sid = int(fields[1]), int(fields[3])
    return what == "local" and sid == pid and _cmdline(ppid) == _cmdline(pid)


def _transport_agent(pids: list[int], ls: list[int]) -> int:
    (ls_pid,) = ls
    backend = int(Path(f"/proc/{ls_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    (ta,) = [p for p in pids if p != ls_pid and _ppid(p) == backend and _cmdline(p) == _cmdline(backend)]
    return ta


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.skipif(
    shutil.which("sshd", path="/usr/sbin:/usr/local/sbin") is None,
    reason="no sshd here (apt-get install -y openssh-server; .ci/run installs it)",
)
def test_ssh_starts_each_node_through_its_sshd(cluster: VirtualCluster) -> None:
    """`--wlm ssh` (implied by --hosts): one ssh per node, each to that node's own sshd, the run's
    keys on ssh's stdin; processes placed over both nodes, output back, nothing left on either."""
    for i in (0, 1):
        cluster.start_sshd(i)
    env = {**dragon_env(cluster), "DRAGON_SSH": cluster.ssh_command()}
    del env["DRAGON_LOCAL_WRAP"]
    hosts = f"{cluster.addr(0)},{cluster.addr(1)}"
    argv = [*cluster.wrap(0), DRAGON, "--hosts", hosts, node_program("where.py"), "4"]
    done = subprocess.run(argv, env=env, capture_output=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert nodes_of(done.stdout) == {0: 0, 1: 1, 2: 0, 3: 1}
    assert b"exitcodes [0, 0, 0, 0]" in done.stdout


def test_native_channels_across_isolated_nodes(cluster: VirtualCluster) -> None:
    """Issue 17 item 1: a channel used from another node through the transport agents: order of a
    sender kept, a full channel blocks its remote sender (capacity 4 and 8 with 200 messages), ChannelEmpty
    and ChannelFull at their timeouts, a destroy wakes a remote receiver with ChannelDestroyed, a
    receiver killed while it waits loses no message, a sender killed while its send waits on a full
    channel leaves it usable, one that takes 4 of 10 and exits normally leaves
    exactly the other 6 (its acknowledgements reached the home agent: nothing comes back twice), and a
    thread waiting in a receive does not hold up another thread's send; a native Process of a
    callable target on node 1 sends into node 0's channel it got as an argument."""
    done = run(cluster, 2, node_program("remote_channels.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert json.loads(done.stdout) == {
        "order": True,
        "child_got": "child got all",
        "empty": "empty timed out",
        "full": "full timed out",
        "waiting": "waiting on doomed",
        "doomed": "doomed destroyed",
        "child_exit": 0,
        "kept": "keep me",
        "stuck": ["first", "from the killed sender", "still usable"],
        "taker_exit": 0,
        "left": [4, 5, 6, 7, 8, 9],
        "ping": "ping",
        "two_threads_exit": 0,
        "native_target": ["callable", "1", 5],
    }


def test_quiet_posted_sends_across_isolated_nodes(cluster: VirtualCluster) -> None:
    """Issue 17 (a Pool worker's results): sends posted quietly from node 1 into a channel of node 0
    that holds 8 all arrive in order with far fewer answers than sends; once they have all arrived
    a synchronous send needs no FLUSH round trip first; a quiet send that fails at home (the channel
    destroyed) is raised at a later send; a Pool of two workers on node 1, each replaced after 5
    tasks, gets every result (a worker's exit waits until its agent has what it posted)."""
    done = run(cluster, 2, node_program("quiet_posts.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert json.loads(done.stdout) == {
        "in_order": True,
        "answers_fewer": True,
        "second_flush_free": True,
        "failure": "ChannelDestroyed",
        "child_exit": 0,
        "pool": True,
    }


def test_a_pool_worker_of_another_node_takes_cheap_tasks_in_batches(cluster: VirtualCluster) -> None:
    """Issue 17 (Pool rows): a receive with a share takes at most the tasks waiting divided by it, at
    least one; a sentinel that came with others gives them back; a Pool over both nodes gets every
    result, its workers of node 1 taking several cheap tasks a receive, those of node 0 one; a
    worker's result of 9 MiB after small quiet ones arrives; a task that cannot be unpickled ends its
    worker, and the tasks taken with it are given back; results held back go at a worker's exit; a
    task of a batch that waits for an earlier one's result is not stuck (the batch's watcher)."""
    done = run(cluster, 2, node_program("pool_batches.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report = json.loads(done.stdout)
    assert report["takes"] == [12, 83, 1, 4]
    assert report["got"] == ["task", None]
    assert report["left"] == [None]
    assert report["squares"] is True
    assert report["paces"]["0"] == 0 and report["paces"]["1"] > 1, report["paces"]
    assert report["big_result"] is True
    assert report["others"] is True
    assert report["before_exit"] is True
    assert report["stuck"] == [[0, 0, [True, 5]], [0, 1, [True, True]]]
    assert report["stuck_exit"] == 0


def test_queues_and_a_pool_across_isolated_nodes(cluster: VirtualCluster) -> None:
    """Issue 17 item 2 (queues): Queue and SimpleQueue made on node 0 and used by a process on node 1
    both ways (order kept, 300 items), the order of one process's puts kept across its threads (a
    queue's sends are posted: one socket per process and node), 24 items of 1 MiB put just before the
    producer exits all arrive, and a Pool with workers on both nodes
    and its queues on node 0."""
    done = run(cluster, 2, node_program("queues_across.py"))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert json.loads(done.stdout) == {
        "in_order": True,
        "simple": "simple from node 1",
        "back": [0, 1, 2],
        "exit": 0,
        "empty": True,
        "threads": True,
        "sizes": [50, False, 50],
        "drained": True,
        "pipe_then_big": True,
        "big": True,
        "pool": True,
        "pool_nodes": ["0", "0", "1", "1"],  # each worker's node; its queues are node 0's
    }


def test_shared_memory_used_on_another_node_is_a_clear_error(cluster: VirtualCluster) -> None:
    """Issue 17 item 2: a multiprocessing.shared_memory block made on node 0 works in a child on node 0
    and, in a child on node 1, raises SharedMemoryOnAnotherNode naming both nodes (never wrong data)."""
    prog = cluster.root / "shm_elsewhere.py"
    prog.write_text(
        "import multiprocessing as mp\n"
        "from multiprocessing import shared_memory\n"
        "from dragon.native import Policy\n"
        "def read(block):\n    assert bytes(block.buf[:5]) == b'hello'\n    block.close()\n"
        "if __name__ == '__main__':\n"
        "    mp.set_start_method('dragon')\n"
        "    block = shared_memory.SharedMemory(create=True, size=16)\n"
        "    block.buf[:5] = b'hello'\n"
        "    for node in (0, 1):\n"
        "        with Policy(node=node):\n"
        "            p = mp.Process(target=read, args=(block,))\n"
        "            p.start()\n"
        "        p.join()\n"
        "        print('node', node, 'exitcode', p.exitcode)\n"
        "    block.close()\n"
        "    block.unlink()\n"
    )
    done = run(cluster, 2, str(prog))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"node 0 exitcode 0" in done.stdout and b"node 1 exitcode 1" in done.stdout, done.stdout
    assert b"SharedMemoryOnAnotherNode: shared memory block" in done.stderr
    assert b"was made on node 0 and this process runs on node 1" in done.stderr
