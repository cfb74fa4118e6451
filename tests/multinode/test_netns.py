"""The virtual-cluster harness itself (netns.py): nodes talk over their addresses and nothing else, each
has its own /dev/shm, and cleanup leaves nothing behind, even after a failure or a crashed run."""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from netns import CLAIM_DIR, NETNS_DIR, VirtualCluster, ns_pids, sweep_stale, unavailable

TIMEOUT_S = 10.0
PORT = 5000  # each cluster's namespaces are new: no other listener can hold it there

# Echoes one line, upper-cased, with the peer's address, to one client; says "ready" once listening.
SERVER = """
import socket, sys
srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
conn, peer = srv.accept()
conn.sendall(conn.recv(100).upper() + b" from " + peer[0].encode())
"""
# Prints the reply of the server at argv[1]:argv[2], or "refused".
CLIENT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
except ConnectionRefusedError:
    print("refused")
else:
    c.sendall(b"hello")
    print(c.recv(100).decode())
"""


def read_line(stream: IO[bytes] | None, timeout_s: float = TIMEOUT_S) -> str:
    """The next line of a child's stdout, waiting at most `timeout_s` for it."""
    assert stream is not None
    if not select.select([stream], [], [], timeout_s)[0]:
        raise TimeoutError(f"no output within {timeout_s} s")
    return stream.readline().decode().strip()


def run_in(cluster: VirtualCluster, i: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cluster.wrap(i), *argv], capture_output=True, text=True, timeout=TIMEOUT_S)


def start_server(cluster: VirtualCluster, i: int, host: str) -> subprocess.Popen[bytes]:
    server = cluster.spawn(i, [sys.executable, "-c", SERVER, host, str(PORT)], stdout=subprocess.PIPE)
    assert read_line(server.stdout) == "ready"
    return server


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip() for line in out.splitlines()}


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_nodes_reach_each_other_over_tcp(cluster: VirtualCluster) -> None:
    server = start_server(cluster, 0, cluster.addr(0))
    client = run_in(cluster, 1, sys.executable, "-c", CLIENT, cluster.addr(0), str(PORT))
    assert client.stdout.strip() == f"HELLO from {cluster.addr(1)}", client.stderr
    assert server.wait(TIMEOUT_S) == 0


def test_loopback_and_routes_are_per_node(cluster: VirtualCluster) -> None:
    server = start_server(cluster, 0, "127.0.0.1")
    assert run_in(cluster, 1, sys.executable, "-c", CLIENT, "127.0.0.1", str(PORT)).stdout.strip() == "refused"
    same_node = run_in(cluster, 0, sys.executable, "-c", CLIENT, "127.0.0.1", str(PORT))
    assert same_node.stdout.strip() == "HELLO from 127.0.0.1", same_node.stderr
    assert server.wait(TIMEOUT_S) == 0
    for i in range(cluster.n):  # no default route: nothing sent in a node can leave the namespaces
        routes = run_in(cluster, i, "ip", "-4", "route").stdout.splitlines()
        assert [r.split()[0] for r in routes] == [f"{cluster.subnet}.0/24"]


def test_shm_is_private_per_node(cluster: VirtualCluster) -> None:
    name = f"dnt-test-{secrets.token_hex(4)}"
    mounts_before = Path("/proc/self/mountinfo").read_text()
    # shm_open, as the runtime's pools do; the process stays alive (its mount namespace with it)
    maker = cluster.spawn(
        0,
        [
            sys.executable,
            "-c",
            f"import _posixshmem, os, sys; _posixshmem.shm_open({name!r}, os.O_CREAT | os.O_RDWR, 0o600); print('made', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert read_line(maker.stdout) == "made"
    assert (cluster.shm_dir(0) / name).exists()
    assert not (Path("/dev/shm") / name).exists()
    assert run_in(cluster, 0, "test", "-e", f"/dev/shm/{name}").returncode == 0  # the same node shares it
    assert run_in(cluster, 1, "test", "-e", f"/dev/shm/{name}").returncode == 1
    mounts_now = Path("/proc/self/mountinfo").read_text()  # the bind mount made in node 0 stays there
    assert [m for m in mounts_now.splitlines() if m.split()[4] == "/dev/shm"] == [
        m for m in mounts_before.splitlines() if m.split()[4] == "/dev/shm"
    ]
    assert cluster.leftovers()[str(cluster.shm_dir(0))] == [name]
    (cluster.shm_dir(0) / name).unlink()
    assert maker.stdin is not None
    maker.stdin.close()
    assert maker.wait(TIMEOUT_S) == 0


def test_wrap_template_formats_and_splits_to_wrap(cluster: VirtualCluster) -> None:
    template = cluster.wrap_template()
    for i in range(cluster.n):
        assert shlex.split(template.format(node=i)) == cluster.wrap(i)
    argv = [*shlex.split(template.format(node=1)), "sh", "-c", "ip -o -4 addr show dev eth0 && touch /dev/shm/t"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert f"inet {cluster.addr(1)}/24" in out.stdout, out.stderr
    assert cluster.leftovers() == {str(cluster.shm_dir(1)): ["t"]}
    (cluster.shm_dir(1) / "t").unlink()


def test_wrap_works_from_inside_another_node(cluster: VirtualCluster) -> None:
    """As `dragon` run in node 0 starts node 1's backend through DRAGON_LOCAL_WRAP."""
    inner = [
        *shlex.split(cluster.wrap_template().format(node=1)),
        "sh",
        "-c",
        "readlink /proc/self/ns/net; touch /dev/shm/t",
    ]
    nested = run_in(cluster, 0, *inner)
    assert nested.returncode == 0, nested.stderr
    assert nested.stdout == run_in(cluster, 1, "readlink", "/proc/self/ns/net").stdout
    assert cluster.leftovers() == {str(cluster.shm_dir(1)): ["t"]}
    (cluster.shm_dir(1) / "t").unlink()


def test_bad_node_numbers_are_refused_clearly(cluster: VirtualCluster) -> None:
    with pytest.raises(IndexError, match=r"node 2 does not exist: this cluster has nodes 0\.\.1"):
        cluster.wrap(2)
    with pytest.raises(ValueError, match="1 to 200 nodes, not 0"):
        VirtualCluster(0)


@pytest.mark.skipif(bool(unavailable()), reason=str(unavailable()))
def test_leftover_processes_are_found_then_killed() -> None:
    with VirtualCluster(2) as c:
        spawned = c.spawn(1, ["sh", "-c", "sleep 60 & exec sleep 61"])
        unknown = subprocess.Popen([*c.wrap(0), "sleep", "62"])  # only its namespace gives this one away
        try:
            expected = {c.ns(0): ["sleep 62"], c.ns(1): ["sleep 60", "sleep 61"]}
            wait_for(lambda: commands(c.leftovers()) == expected, f"leftovers() to show {expected}")
            assert c.leftovers()[c.ns(0)] == [f"{unknown.pid} sleep 62"]
            assert c.pids(0) == [int(p) for p in subprocess.check_output(["ip", "netns", "pids", c.ns(0)]).split()]
            c.close()
            assert unknown.wait(TIMEOUT_S) == -signal.SIGKILL
        finally:
            unknown.kill()
            unknown.wait()
    assert spawned.returncode == -signal.SIGKILL
    assert not (NETNS_DIR / c.ns(1)).exists()


def commands(leftovers: dict[str, list[str]]) -> dict[str, list[str]]:
    """`leftovers()` without the pids."""
    return {k: sorted(d.split(" ", 1)[1] for d in v) for k, v in leftovers.items()}


@pytest.mark.skipif(bool(unavailable()), reason=str(unavailable()))
def test_cleanup_after_an_exception_leaves_nothing() -> None:
    links = host_links()
    with pytest.raises(RuntimeError, match="test failure"), VirtualCluster(3) as c:
        assert host_links() == links  # the root namespace's network is never touched
        proc = c.spawn(2, ["sleep", "60"])
        (c.shm_dir(1) / "entry").write_bytes(b"x")
        raise RuntimeError("test failure")
    assert proc.returncode == -signal.SIGKILL
    assert not [n for n in os.listdir(NETNS_DIR) if n.startswith(c.prefix)]
    assert host_links() == links
    assert not c.root.exists() and str(c.root) not in Path("/proc/self/mountinfo").read_text()
    assert not (CLAIM_DIR / f"{c.tag}.json").exists()


# A run with a cluster open: prints what it made, then waits to be killed.
RUN_WITH_A_CLUSTER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from netns import VirtualCluster
c = VirtualCluster(2)
c.open()
p = c.spawn(0, ["sleep", "60"])
print(json.dumps({"tag": c.tag, "ns": [c.ns(0), c.ns(1)], "dirs": [str(c.root)], "pid": p.pid}), flush=True)
sys.stdin.read()
"""


def test_sweep_removes_a_dead_runs_cluster_only(cluster: VirtualCluster) -> None:
    here = str(Path(__file__).parent)
    with subprocess.Popen(
        [sys.executable, "-c", RUN_WITH_A_CLUSTER, here], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as run:
        made = json.loads(read_line(run.stdout))
        wait_for(lambda: (NETNS_DIR / made["ns"][0]).exists() and made["pid"] in ns_pids(made["ns"][0]), "sleep")
        run.kill()  # no cleanup of its own: it leaves everything behind
        run.wait()
        assert (NETNS_DIR / made["ns"][0]).exists() and all(Path(d).exists() for d in made["dirs"])
        removed = sweep_stale()
    assert sorted(removed) == sorted([*made["ns"], f"dnt{made['tag']}-sw", *made["dirs"]])
    assert not [n for n in os.listdir(NETNS_DIR) if n.startswith(f"dnt{made['tag']}")]
    assert not any(Path(d).exists() for d in made["dirs"])
    wait_for(lambda: not Path(f"/proc/{made['pid']}/ns/net").exists(), "the crashed run's process to die")
    assert (NETNS_DIR / cluster.ns(0)).exists() and cluster.root.exists()  # a live owner's: left alone


@pytest.mark.skipif(
    shutil.which("sshd", path="/usr/sbin:/usr/local/sbin") is None,
    reason="no sshd here (apt-get install -y openssh-server)",
)
def test_ssh_from_node_0_runs_inside_node_1(cluster: VirtualCluster) -> None:
    cluster.start_sshd(1)
    script = "readlink /proc/self/ns/net; ip -o -4 addr show dev eth0"
    remote = subprocess.run(
        [*cluster.wrap(0), *cluster.ssh_argv(1), script], capture_output=True, text=True, timeout=TIMEOUT_S
    )
    local = run_in(cluster, 1, "sh", "-c", script)
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout and f"inet {cluster.addr(1)}/24" in remote.stdout
    # key only: the same login with another key is refused
    other = cluster.root / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    config = cluster.root / "ssh" / "config"
    other.with_suffix(".config").write_text(config.read_text().replace(str(cluster.root / "ssh" / "id"), str(other)))
    argv = ["ssh", "-F", str(other.with_suffix(".config")), cluster.addr(1), "true"]
    refused = subprocess.run([*cluster.wrap(0), *argv], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    # only on node 1's address
    assert run_in(cluster, 1, sys.executable, "-c", CLIENT, "127.0.0.1", "22").stdout.strip() == "refused"


def test_sigterm_cleans_up() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", RUN_WITH_A_CLUSTER, str(Path(__file__).parent)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as run:
        made = json.loads(read_line(run.stdout))
        wait_for(lambda: made["pid"] in ns_pids(made["ns"][0]), "the run's process to start")
        run.terminate()
        _, err = run.communicate(timeout=TIMEOUT_S)
    assert b"KeyboardInterrupt: SIGTERM" in err
    assert not [n for n in os.listdir(NETNS_DIR) if n.startswith(f"dnt{made['tag']}")]
    assert not any(Path(d).exists() for d in made["dirs"])
    assert not Path(f"/proc/{made['pid']}").exists()


# The cluster fixtures of tests/conftest.py, for a pytest run of its own (with a short grace for leftovers)
CONFTEST_COPY = """
import importlib.util, sys
sys.path.insert(0, {here!r})
spec = importlib.util.spec_from_file_location("tests_conftest", {conftest!r})
conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conftest)
conftest.LEAK_GRACE_S = 0.2
cluster, make_cluster = conftest.cluster, conftest.make_cluster
pytest_runtest_makereport = conftest.pytest_runtest_makereport
"""
FIXTURE_USERS = """
def test_leaves_a_process(cluster):
    cluster.spawn(1, ["sleep", "60"])

def test_fails(cluster):
    cluster.spawn(1, ["sleep", "60"])
    assert False, "failed on purpose"

def test_clean(make_cluster):
    make_cluster(1)
"""


def test_fixture_fails_a_test_that_leaves_something(tmp_path: Path) -> None:
    here = Path(__file__).parent
    (tmp_path / "conftest.py").write_text(
        CONFTEST_COPY.format(here=str(here), conftest=str(here.parent / "conftest.py"))
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_users.py").write_text(FIXTURE_USERS)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path).stdout
    assert "1 failed, 2 passed, 1 error" in out, out
    assert "ERROR test_users.py::test_leaves_a_process" in out
    left = re.search(
        r"left in virtual cluster (dnt[0-9a-f]{6}) \(now killed and removed\): \{'\1-1': \['\d+ sleep 60'\]\}", out
    )
    assert left, out
    assert not [n for n in os.listdir(NETNS_DIR) if n.startswith(left.group(1))]
    assert "FAILED test_users.py::test_fails" in out and "ERROR test_users.py::test_fails" not in out
