"""Short-lived threads of a process on node 1, each sending into and receiving from a channel of node 0
once (each through a socket of its own to node 0's agent: dragon.client.remote), 200 threads in waves
of 10: the process's open file descriptors stay bounded (an ended thread's socket is closed), and every
message is received exactly once. Prints one JSON report."""

import json
import multiprocessing as mp
import os
import threading
from typing import Any

from dragon.native import Channel, Policy

THREADS, WAVE = 200, 10


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def one_round_trip(chan: Channel, i: int, got: list[Any]) -> None:
    chan.send(i, timeout=30)
    got.append(chan.recv(timeout=30))


def threads_there(report: Any) -> None:
    chan = Channel.wait_created("shared", timeout=30)
    one_round_trip(chan, -1, [])  # the process's link to node 0 made (its ZeroMQ context and thread)
    before, got = fds(), []
    most = before
    for wave in range(0, THREADS, WAVE):
        threads = [threading.Thread(target=one_round_trip, args=(chan, i, got)) for i in range(wave, wave + WAVE)]
        for t in threads:
            t.start()
        most = max(most, fds())
        for t in threads:
            t.join()
    report.put({"fds": [before, most, fds()], "got": sorted(got) == list(range(THREADS))})


if __name__ == "__main__":
    mp.set_start_method("dragon")
    chan = Channel.create(name="shared", capacity=2 * WAVE)
    report = mp.SimpleQueue()
    with Policy(node=1):
        p = mp.Process(target=threads_there, args=(report,))
        p.start()
    there = report.get()
    p.join(60)
    print(json.dumps({**there, "exit": p.exitcode, "left": chan.statistics().depth}))
