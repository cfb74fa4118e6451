"""What crosses nodes and what does not, beside the synchronization objects (issue 17 item 2): prints
one JSON report.

- a standard library Connection (`multiprocessing.connection.Pipe`, a socketpair: its ends pickle as
  file descriptors) handed to a child on node 0 works; to a child on node 1 the child fails at once
  with FdOnAnotherNode naming both nodes (its stderr says so);
- multiprocessing.JoinableQueue: task_done on node 1, join on node 0;
- a Barrier of 3 whose party on node 1 is killed while the others wait: they get BrokenBarrierError;
- a process on node 1 whose Global Services call waits longer than a liveness slice (a join).
"""

import json
import multiprocessing as mp
import os
import signal
import threading
import time
from multiprocessing.connection import Pipe as StdlibPipe
from typing import Any

from on_node import on_node  # node_programs/on_node.py

WAIT_S = 30.0


def echo(end: Any) -> None:
    end.send(("echo", os.environ["DRAGON_INDEX"]))


def worker(jq: Any) -> None:
    for _ in range(5):
        jq.get(timeout=WAIT_S)
        jq.task_done()


def party(bar: Any, out: Any) -> None:
    try:
        out.put(bar.wait(WAIT_S))
    except threading.BrokenBarrierError as exc:
        out.put(["BrokenBarrierError", str(exc).split(",")[0]])


def doomed(bar: Any, ready: Any) -> None:
    ready.put(os.getpid())
    bar.wait(WAIT_S)


def nap() -> None:
    time.sleep(1.5)


def joins_a_napper(out: Any) -> None:
    p = on_node(1, nap)
    p.join()  # a GS call (GSProcessJoin) of a process on node 1 that outlasts a liveness slice (1 s)
    out.put(p.exitcode)


if __name__ == "__main__":
    mp.set_start_method("dragon")
    report: dict[str, Any] = {}
    for node in (0, 1):
        mine, theirs = StdlibPipe()
        p = on_node(node, echo, theirs)
        p.join(WAIT_S)
        report[f"stdlib_pipe_node_{node}"] = [p.exitcode, mine.recv() if mine.poll(0) else None]

    jq = mp.JoinableQueue()
    p = on_node(1, worker, jq)
    for i in range(5):
        jq.put(i)
    jq.join()
    p.join(WAIT_S)
    report["joinable"] = p.exitcode

    bar, out, ready = mp.Barrier(3), mp.Queue(), mp.Queue()
    p = on_node(0, party, bar, out)
    victim = on_node(1, doomed, bar, ready)
    ready.get(timeout=WAIT_S)
    deadline = time.monotonic() + WAIT_S
    while bar.n_waiting < 2 and time.monotonic() < deadline:  # a bounded poll until both wait
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    report["party_killed"] = out.get(timeout=WAIT_S)
    victim.join(WAIT_S)
    p.join(WAIT_S)
    report["broken"] = [bar.broken, victim.exitcode, p.exitcode]

    p = on_node(1, joins_a_napper, out)
    report["join_on_node_1"] = out.get(timeout=WAIT_S)
    p.join(WAIT_S)
    print(json.dumps(report))
