"""Under `--on-node-loss continue`: the head waits, with no timeout, on a channel whose home is node 1,
whose node the test then kills: the wait ends with a clear error (MULTINODE §6), never a hang."""

import multiprocessing as mp
import time

from dragon.native import Channel, Policy
from dragon.transport import ChannelError


def home_keeper() -> None:
    Channel.create(name="on_node_1")
    time.sleep(600)


if __name__ == "__main__":
    mp.set_start_method("dragon")
    with Policy(node=1):
        p = mp.Process(target=home_keeper)
        p.start()
    chan = Channel.wait_created("on_node_1", timeout=30)
    print("waiting", flush=True)
    try:
        chan.recv()
    except ChannelError as exc:
        print("the wait ended:", exc, flush=True)
    p.join(30)
    print("joined:", p.exitcode, flush=True)
