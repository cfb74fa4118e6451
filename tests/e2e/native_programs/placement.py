"""Head program for test_placement: Policy (node, host, CPUs) on native and multiprocessing processes
and pools, and the machine queries; prints one JSON report. Run by `dragon` and by plain `python`
(the start method's background runtime)."""

import json
import multiprocessing as mp
import os
import sys
import threading

from dragon.native import PIPE, Policy, Process
from dragon.native.machine import Node, System, cpu_count, current

AFFINITY = "import os; print(sorted(os.sched_getaffinity(0)))"


def affinity() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def mp_affinity(queue: "mp.Queue[list[int]]") -> None:
    queue.put(affinity())


def native_run(policy: Policy | None = None) -> object:
    """A native child that prints its affinity: what it printed, or the error raised at start."""
    p = Process(sys.executable, ["-c", AFFINITY], stdout=PIPE, policy=policy)
    try:
        p.start()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    assert p.stdout_conn is not None
    out = b""
    while not out.endswith(b"\n"):
        out += p.stdout_conn.read_chunk(30)
    assert p.join(30) == 0
    return json.loads(out)


def mp_run(queue: "mp.Queue[list[int]]") -> object:
    """An mp child that reports its affinity: what it reported, or the error raised at start."""
    p = mp.Process(target=mp_affinity, args=(queue,))
    try:
        p.start()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    got = queue.get(timeout=30)
    p.join(30)
    return got


def in_thread(queue: "mp.Queue[list[int]]") -> object:
    """mp_run from another thread, started while this one is inside a `with Policy`."""
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(mp_run(queue)))
    t.start()
    t.join(60)
    return result[0]


def pool_affinities(maxtasksperchild: int | None = None) -> list[list[int]]:
    with mp.Pool(2, maxtasksperchild=maxtasksperchild) as pool:
        return pool.map(_task_affinity, range(6), chunksize=1)


def _task_affinity(_: int) -> list[int]:
    return affinity()


def main() -> None:
    mp.set_start_method("dragon")
    report: dict[str, object] = {"mine": affinity(), "mp_cpu_count_first": mp.cpu_count()}
    queue: mp.Queue[list[int]] = mp.Queue()
    system = System()
    report["nodes"] = [[n.idx, n.hostname, n.num_cpus, n.physical_mem > 0, n.is_primary] for n in system.nodes]
    report["nnodes"] = system.nnodes
    report["current"] = current().idx
    report["cpu_count"] = cpu_count()
    report["mp_cpu_count"] = mp.cpu_count()
    report["by_host"] = Node(system.nodes[0].hostname).idx
    report["no_such_node"] = type_of(lambda: Node(7))
    host = system.nodes[0].hostname

    report["native_default"] = native_run()
    report["native_node0"] = native_run(Policy(node=0))
    report["native_host"] = native_run(Policy(host=host))
    report["native_cpu0"] = native_run(Policy(cpus=[0]))
    report["native_node5"] = native_run(Policy(node=5))
    report["native_badhost"] = native_run(Policy(host="no-such-host.invalid"))
    report["native_cpu999"] = native_run(Policy(cpu_affinity=[999]))
    with Policy(cpus=[1]):
        report["native_in_block"] = native_run()
        report["native_explicit_in_block"] = native_run(Policy(cpus=[0]))

    with Policy(node=0):
        report["mp_node0"] = mp_run(queue)
    with Policy(host=host):
        report["mp_host"] = mp_run(queue)
    with Policy(cpus=[0]) as entered:
        report["entered_is_policy"] = isinstance(entered, Policy)
        report["mp_cpu0"] = mp_run(queue)
        report["mp_thread"] = in_thread(queue)
        with Policy(node=0):  # nested: the outer's CPUs stay
            report["mp_nested"] = mp_run(queue)
    report["mp_after"] = mp_run(queue)
    with Policy(node=5):
        report["mp_node5"] = mp_run(queue)
    with Policy(cpus=[999]):
        report["mp_cpu999"] = mp_run(queue)

    with Policy(cpus=[1]):
        report["pool_cpu1"] = pool_affinities()
    with Policy(cpus=[1]):
        pool = mp.Pool(2, maxtasksperchild=1)  # workers replaced by the pool's thread, outside the block
    with pool:
        report["pool_replaced"] = pool.map(_task_affinity, range(6), chunksize=1)
    report["pool_after"] = pool_affinities()
    print(json.dumps(report))


def type_of(call: object) -> str:
    try:
        call()  # type: ignore[operator]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "none"


if __name__ == "__main__":
    main()
