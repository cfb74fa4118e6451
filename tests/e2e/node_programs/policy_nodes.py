"""Policy and the system queries over the nodes of a run: prints one JSON report.

Each child reports its node through its exit code only (data between nodes is not part of this test).
"""

import json
import multiprocessing as mp
import os

from dragon.native import Policy, Process, ProcessGroup, ProcessTemplate, machine


def report() -> None:
    raise SystemExit(10 + int(os.environ["DRAGON_INDEX"]))


def node_of_child(policy: Policy) -> int:
    with policy:
        p = mp.Process(target=report)
        p.start()
    p.join()
    assert p.exitcode is not None
    return p.exitcode - 10


def node_of_native_child(policy: Policy) -> int:
    """The same with a `dragon.native.Process` whose target is the callable."""
    p = Process(report, policy=policy)
    p.start()
    code = p.join()
    assert code is not None
    return code - 10


def nodes_of_group(policy: Policy | None, nproc: int) -> list[int]:
    """The nodes of the processes of a `ProcessGroup` (placed by the group's policy, or spread by
    the default placement), sorted."""
    group = ProcessGroup(policy=policy, ignore_error_on_exit=True)  # the exit codes are the message
    group.add_process(nproc, ProcessTemplate(report))
    group.start()
    group.join(60)
    group.close()
    return sorted(code - 10 for _, code in group.exit_status)


if __name__ == "__main__":
    mp.set_start_method("dragon")
    system = machine.System()
    out = {
        "nodes": [[n.idx, n.hostname, n.num_cpus, n.is_primary] for n in system.nodes],
        "cpu_count": machine.cpu_count(),
        "mp_cpu_count": mp.cpu_count(),
        "current": machine.current().idx,
        "by_node": [node_of_child(Policy(node=n.idx)) for n in system.nodes],
        "by_host": [node_of_child(Policy(host=n.hostname)) for n in system.nodes],
        "native_by_node": [node_of_native_child(Policy(node=n.idx)) for n in system.nodes],
        "group_by_node": [nodes_of_group(Policy(node=n.idx), 2) for n in system.nodes],
        "group_spread": nodes_of_group(None, 3),
    }
    print(json.dumps(out))
