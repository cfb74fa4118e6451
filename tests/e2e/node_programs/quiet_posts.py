"""Quiet posted sends across two nodes (issue 17: a Pool worker's results, `RemoteChannel(quiet=True)`):
prints one JSON report.

A child on node 1 posts 200 messages quietly into "quiet", a channel of node 0 that holds 8 (most
of them wait for room at node 0's agent): they all arrive, in order, and far fewer than 200 answers
come back. Once every one of them has arrived there, a FLUSH round trip (what a synchronous send
does first) is not needed any more. A quiet send into the channel once it is destroyed fails there,
and that failure is raised at a later send. Then a Pool whose two workers are on node 1 and replaced
every 5 tasks (maxtasksperchild): every result arrives (a worker's exit waits until its agent has
every result it posted).
"""

import json
import multiprocessing as mp
import time
from typing import Any

from dragon.client import remote
from dragon.native import Channel, Policy
from dragon.transport import ChannelDestroyed

N = 200


class CountingDecoder:
    """The link's decoder, counting the answers it decodes."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.n = inner, 0

    def decode(self, data: Any) -> Any:
        self.n += 1
        return self.inner.decode(data)


def child(report: "mp.SimpleQueue[Any]") -> None:
    chan = Channel.wait_created("quiet", timeout=30)
    quiet = chan._chan.posted(quiet=True)
    link = remote._the_link()
    counted = link.decoder = CountingDecoder(link.decoder)
    for i in range(N):
        quiet.send(i.to_bytes(2, "little"))
    link.flush_posted(0)  # its FLUSH is answered once every send above has arrived at node 0's agent
    answers = counted.n
    link.flush_posted(0)  # nothing to confirm any more: no round trip
    report.put({"answers_fewer": answers < N // 4, "second_flush_free": counted.n == answers})
    Channel.wait_created("destroyed", timeout=30).recv(timeout=60)  # the head destroyed "quiet"
    deadline, raised = time.monotonic() + 30, "not raised"
    while time.monotonic() < deadline:  # bounded poll: the failure's answer is on its way
        try:
            quiet.send(b"into a destroyed channel")
        except ChannelDestroyed:
            raised = "ChannelDestroyed"
            break
        time.sleep(0.01)
    report.put({"failure": raised})


def square(x: int) -> int:
    return x * x


if __name__ == "__main__":
    mp.set_start_method("dragon")
    chan = Channel.create(name="quiet", capacity=8)
    destroyed = Channel.create(name="destroyed")
    report = mp.SimpleQueue()
    with Policy(node=1):
        p = mp.Process(target=child, args=(report,))
        p.start()
    got = [int.from_bytes(chan._chan.recv(timeout=60), "little") for _ in range(N)]  # raw bytes: not pickles
    out = {"in_order": got == list(range(N)), **report.get()}
    chan.destroy()
    destroyed.send("go on")
    out.update(report.get())
    p.join(60)
    out["child_exit"] = p.exitcode
    with Policy(node=1):
        pool = mp.Pool(2, maxtasksperchild=5)
    with pool:
        out["pool"] = pool.map(square, range(100), chunksize=1) == [x * x for x in range(100)]
    print(json.dumps(out))
