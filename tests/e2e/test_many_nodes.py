"""`dragon --nodes N --wlm local`: one program over N virtual nodes on this machine (issue 16).

Virtual nodes here share this machine's network and /dev/shm (tests/multinode/ runs them isolated in
namespaces); each node still has its own backend, Local Services, transport agent and run id, and
traffic between them goes over ZeroMQ with CURVE. The leak check of tests/conftest.py covers every
node's processes and shared memory (they are all on this machine).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from e2e_util import program, run_dragon

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
