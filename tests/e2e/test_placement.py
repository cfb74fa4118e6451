"""Placement end to end (issue 16 item 5): `dragon.native.Policy` on native and multiprocessing processes
and pools, and `dragon.native.machine`, with the real `dragon` command (and plain `python`, the start
method's background runtime). native_programs/placement.py reports what its children saw
(`os.sched_getaffinity`); on this single node, node 0 and its host name are the places that exist."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Final

import pytest

from e2e_util import DRAGON, run_command

PROGRAM: Final = str(Path(__file__).resolve().with_name("native_programs") / "placement.py")


@pytest.fixture(params=["dragon", "python"])
def command(request: pytest.FixtureRequest) -> list[str]:
    return [DRAGON, PROGRAM] if request.param == "dragon" else [sys.executable, PROGRAM]


async def _report(argv: list[str], cwd: Path) -> dict[str, Any]:
    done = await run_command(argv, cwd=cwd, timeout_s=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


async def test_policies_place_native_and_mp_processes_and_pools(command: list[str], tmp_path: Path) -> None:
    r = await _report(command, tmp_path)
    mine = sorted(os.sched_getaffinity(0))
    assert r["mine"] == mine and len(mine) >= 2, "these checks need two CPUs"
    # the machine queries: one node, this process's CPUs
    (node,) = r["nodes"]
    assert node == [0, node[1], len(mine), True, True] and node[1]
    assert (r["nnodes"], r["current"], r["by_host"]) == (1, 0, 0)
    assert r["cpu_count"] == r["mp_cpu_count"] == r["mp_cpu_count_first"] == len(mine)
    assert r["no_such_node"] == f"InvalidArgument: the runtime has no node 7: its nodes are 0 ({node[1]})"
    # native Process(policy=...), and the block around it
    for key in ("native_default", "native_node0", "native_host"):
        assert r[key] == mine, key
    assert r["native_cpu0"] == [0]
    assert r["native_node5"].startswith("ProcessStartFailed: cannot start")
    assert r["native_node5"].endswith("there is no node 5: this runtime has 1 node (0 to 0)")
    assert "no node of this runtime is host 'no-such-host.invalid'" in r["native_badhost"]
    assert r["native_cpu999"].endswith(f"CPUs [999] are not CPUs of node 0 (it has {mine})")
    assert (r["native_in_block"], r["native_explicit_in_block"]) == ([1], [0])
    # multiprocessing: `with Policy` around start(), not seen by another thread nor after the block
    assert r["mp_node0"] == r["mp_host"] == mine
    assert r["entered_is_policy"] and r["mp_cpu0"] == [0] and r["mp_nested"] == [0]
    assert r["mp_thread"] == r["mp_after"] == mine
    assert r["mp_node5"].startswith("ProcessStartFailed: cannot start <Process name=")
    assert r["mp_node5"].endswith("there is no node 5: this runtime has 1 node (0 to 0)")
    assert r["mp_cpu999"].endswith(f"CPUs [999] are not CPUs of node 0 (it has {mine})")
    # Pool: every worker, those its own thread starts later included (maxtasksperchild=1)
    assert r["pool_cpu1"] == r["pool_replaced"] == [[1]] * 6
    assert r["pool_after"] == [mine] * 6


MP_CPU_COUNT: Final = """
import multiprocessing as mp, os, sys
import dragon
mp.set_start_method("dragon")
first = mp.cpu_count()
p = mp.Process(target=print); p.start(); p.join()
from dragon.native.machine import System, cpu_count
print(first, mp.cpu_count(), cpu_count(), [n.num_cpus for n in System().nodes], os.cpu_count())
"""


@pytest.mark.parametrize("where", ["dragon", "python"])
async def test_cpu_count_is_the_runtime_s_cpus_not_the_machine_s(where: str, tmp_path: Path) -> None:
    """Under a CPU affinity of one CPU the runtime has one CPU (its nodes' affinity, as a Slurm step
    gives it), where the stdlib's `multiprocessing.cpu_count()` says the machine's two."""
    script = tmp_path / "count.py"
    script.write_text(MP_CPU_COUNT)
    runner = [DRAGON] if where == "dragon" else [sys.executable]
    done = await run_command(["taskset", "-c", "0", *runner, str(script)], cwd=tmp_path, timeout_s=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    *ours, machine = done.stdout.split(b"\n")[-2].decode().split(" ", 4)
    assert int(machine) >= 2
    assert ours == ["1", "1", "1", "[1]"]
