"""dragon.native's Lock, Semaphore, Event and Barrier (issue 15 item 4): every API point, shared with a
native Process child (through a Channel message) and with multiprocessing children, then the run's
/dev/shm entries; prints one JSON report."""

import json
import multiprocessing as mp
import os
import pickle
import sys

from report_util import error, eventually, shm_entries

import dragon.native as dn


def _child(lock, sem, ev, bar, out):  # a multiprocessing child of the "dragon" start method
    with lock:
        out.put(["locked", lock.is_mine(), lock.count()])
    sem.acquire()
    ev.set()
    out.put(["barrier", bar.wait(30) in range(3)])


def native_child() -> None:
    """Run as a native Process: gets the objects through a Channel, uses them, reports back."""
    chan = dn.Channel.attach(name="sync-in")
    lock, ev, back = pickle.loads(chan.recv_bytes(timeout=30))
    got = lock.acquire(timeout=30)
    lock.release()
    ev.set()
    back.put(["native", got])


def main() -> None:
    mp.set_start_method("dragon")
    out: dict[str, object] = {}
    lock, rlock = dn.Lock(), dn.Lock(recursive=True)
    out["lock"] = [
        lock.is_recursive(),
        lock.acquire(),
        lock.is_mine(),
        lock.count(),
        lock.acquire(timeout=0.05),
        lock.release(),
        lock.is_mine(),
        lock.acquire(False),
    ]
    lock.release()
    with lock:
        out["lock_with"] = lock.acquire(False)
    out["rlock"] = [
        rlock.is_recursive(),
        rlock.acquire(),
        rlock.acquire(),
        rlock.count(),
        rlock.release(),
        rlock.count(),
    ]
    rlock.release()
    out["rlock_unowned"] = error(rlock.release)

    sem, bounded = dn.Semaphore(2), dn.Semaphore(1, bounded=True)
    out["semaphore"] = [sem.get_value(), sem.acquire(), sem.acquire(), sem.acquire(timeout=0.05), sem.get_value()]
    sem.release(2)
    out["semaphore_released"] = sem.get_value()
    out["bounded"] = [bounded.acquire(), bounded.release(), error(bounded.release), bounded.get_value()]

    ev = dn.Event()
    out["event"] = [ev.is_set(), ev.wait(0.05), ev.set(), ev.is_set(), ev.wait(), ev.clear(), ev.is_set()]

    bar = dn.Barrier(3, timeout=30)
    out["barrier"] = [bar.parties, bar.n_waiting, bar.broken]
    results: mp.Queue = mp.Queue()
    child_ev = dn.Event()
    ps = [mp.Process(target=_child, args=(lock, sem, child_ev, bar, results)) for _ in range(2)]
    for p in ps:
        p.start()
    out["barrier_index"] = bar.wait() in range(3)
    got = sorted(json.dumps(results.get(timeout=30)) for _ in range(4))
    for p in ps:
        p.join(30)
    out["children"] = [json.loads(g) for g in got]
    out["children_exit"] = [p.exitcode for p in ps]
    out["child_event"] = child_ev.is_set()
    out["semaphore_after_children"] = sem.get_value()  # each child took one and exited normally

    chan = dn.Channel.create(name="sync-in")
    native_ev, back = dn.Event(), mp.Queue()
    proc = dn.Process(sys.executable, [os.path.abspath(__file__), "child"])
    lock.acquire()
    proc.start()
    chan.send_bytes(pickle.dumps((lock, native_ev, back)))
    out["native_waits"] = native_ev.wait(0.2)  # the child waits for the lock
    lock.release()
    out["native"] = [back.get(timeout=30), native_ev.wait(30), proc.join(30)]
    chan.destroy()

    out["aborted"] = [bar.abort(), bar.broken, error(bar.wait)]
    out["broken_is_threadings"] = dn.BrokenBarrierError.__module__
    doomed = dn.Event()
    doomed.destroy()
    out["destroyed"] = [error(doomed.is_set), error(doomed.set)]

    del lock, rlock, sem, bounded, ev, bar, child_ev, native_ev, doomed, ps, proc
    eventually(lambda: not any(n.startswith("sem.") for n in shm_entries()))  # each goes a moment after its last handle
    out["records_left"] = [n for n in shm_entries() if n.startswith("sem.")]
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        native_child()
    else:
        main()
