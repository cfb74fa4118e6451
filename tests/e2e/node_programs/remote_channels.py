"""dragon.native.Channel across two nodes (issue 17 item 1): prints one JSON report.

The head (node 0) makes "to_head" (home node 0); a child on node 1 makes "to_child" (home node 1).
Each uses the other's channel through the transport agents: order, blocking, timeouts, destroy, and
a receiver killed while it waits (the message it was waiting for is not lost). Then: a receiver that
takes some messages and exits normally takes exactly those (none comes back, none is lost), and a
thread waiting in a receive does not hold up another thread's send of the same process; and a
`dragon.native.Process` whose target is a callable runs on node 1 with a channel of node 0 as its
argument.
"""

import json
import multiprocessing as mp
import os
import signal
import time

from dragon.native import Channel, Policy, Process
from dragon.transport import ChannelDestroyed, ChannelEmpty, ChannelFull

N = 200


def child(results: "mp.SimpleQueue[str]") -> None:
    to_head = Channel.wait_created("to_head", timeout=30)
    mine = Channel.create(name="to_child", capacity=4)
    for i in range(N):
        to_head.send(("from node", os.environ["DRAGON_INDEX"], i))
    got = [mine.recv(timeout=30) for _ in range(N)]  # the head sends into node 1's channel
    assert got == list(range(N)), got[:10]
    to_head.send("child got all")
    try:
        Channel.wait_created("empty", timeout=30).recv(timeout=0.2)
    except ChannelEmpty:
        to_head.send("empty timed out")
    full = Channel.wait_created("full", timeout=30)
    full.send(1)
    full.send(2)
    try:
        full.send(3, timeout=0.2)
    except ChannelFull:
        to_head.send("full timed out")
    doomed = Channel.wait_created("doomed", timeout=30)
    to_head.send("waiting on doomed")
    try:
        doomed.recv(timeout=30)
    except ChannelDestroyed:
        to_head.send("doomed destroyed")
    mine.recv(timeout=30)  # the head's go-ahead to end
    mine.destroy()


def wait_for_receiver(chan: Channel, side: str = "blocked_receivers") -> None:
    """Until a receive (or a send: side "blocked_senders") waits on `chan` (a bounded poll)."""
    deadline = time.monotonic() + 30
    while getattr(chan.statistics(), side) < 1:
        assert time.monotonic() < deadline, f"nobody came ({side})"
        time.sleep(0.005)


def waiter() -> None:
    Channel.wait_created("precious", timeout=30).recv()  # killed while it waits


def stuck_sender() -> None:
    Channel.wait_created("stuck", timeout=30).send("from the killed sender")  # waits: killed meanwhile


def taker(n: int) -> None:
    chan = Channel.wait_created("counted", timeout=30)
    for _ in range(n):
        chan.recv(timeout=30)


def two_threads() -> None:
    """A thread waits on "to_thread" (node 0); once the head has seen it wait, this thread sends on
    "pings" (node 0): the head answers the ping into "to_thread", so the send must not wait behind the
    receive."""
    import threading

    go = Channel.create(name="go")  # node 1's: the head says when the thread's receive waits
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(Channel.wait_created("to_thread", timeout=30).recv(timeout=30)))
    t.start()
    go.recv(timeout=30)
    Channel.wait_created("pings", timeout=30).send("ping", timeout=30)
    t.join()
    assert got == ["pong"], got


def native_target(to_head: Channel, *, tag: str) -> None:
    to_head.send((tag, os.environ["DRAGON_INDEX"]))
    raise SystemExit(5)


if __name__ == "__main__":
    mp.set_start_method("dragon")
    to_head = Channel.create(name="to_head", capacity=8)
    Channel.create(name="empty")
    Channel.create(name="full", capacity=2)
    doomed = Channel.create(name="doomed")
    with Policy(node=1):
        p = mp.Process(target=child, args=(None,))
        p.start()
    got = [to_head.recv(timeout=60) for _ in range(N)]
    report: dict = {"order": got == [("from node", "1", i) for i in range(N)]}
    mine = Channel.wait_created("to_child", timeout=30)
    for i in range(N):
        mine.send(i, timeout=60)
    report["child_got"] = to_head.recv(timeout=60)
    report["empty"] = to_head.recv(timeout=60)
    report["full"] = to_head.recv(timeout=60)
    report["waiting"] = to_head.recv(timeout=60)
    wait_for_receiver(doomed)  # its receive waits at this node's agent now: the destroy must wake it
    doomed.destroy()
    report["doomed"] = to_head.recv(timeout=60)
    mine.send("end")
    p.join(60)
    report["child_exit"] = p.exitcode
    # a receiver on node 1 killed while it waits on a channel of node 0: the next message is not lost
    precious = Channel.create(name="precious")
    with Policy(node=1):
        w = mp.Process(target=waiter)
        w.start()
    wait_for_receiver(precious)
    os.kill(w.pid, signal.SIGKILL)
    w.join(30)
    precious.send("keep me")  # the dead receiver's receive, still pending at this node's agent, may take it:
    report["kept"] = precious.recv(timeout=30)  # its answer cannot be delivered, so it comes back
    # a sender on node 1 killed while its send waits on a full channel of node 0: the channel stays
    # usable; the send in flight completes at home (as a message written before a death would)
    stuck = Channel.create(name="stuck", capacity=1)
    stuck.send("first")
    with Policy(node=1):
        s = mp.Process(target=stuck_sender)
        s.start()
    wait_for_receiver(stuck, "blocked_senders")  # the home agent's send waits for room
    os.kill(s.pid, signal.SIGKILL)
    s.join(30)
    report["stuck"] = [stuck.recv(timeout=30), stuck.recv(timeout=30)]
    stuck.send("still usable")
    report["stuck"].append(stuck.recv(timeout=30))
    counted = Channel.create(name="counted")
    for i in range(10):
        counted.send(i)
    with Policy(node=1):
        t = mp.Process(target=taker, args=(4,))
        t.start()
    t.join(60)
    report["taker_exit"] = t.exitcode
    report["left"] = [counted.recv(timeout=0) for _ in range(counted.statistics().depth)]
    to_thread, pings = Channel.create(name="to_thread"), Channel.create(name="pings")
    with Policy(node=1):
        tt = mp.Process(target=two_threads)
        tt.start()
    wait_for_receiver(to_thread)
    Channel.wait_created("go", timeout=30).send("go")
    try:
        report["ping"] = pings.recv(timeout=15)
    except ChannelEmpty:
        report["ping"] = "the send waited behind the other thread's receive"
    to_thread.send("pong")
    tt.join(60)
    report["two_threads_exit"] = tt.exitcode
    native = Process(native_target, (to_head,), {"tag": "callable"}, policy=Policy(node=1))
    native.start()
    report["native_target"] = [*to_head.recv(timeout=30), native.join(30)]
    print(json.dumps(report))
