"""Pipe and Connection whose ends are held on another node than the Pipe's (issue 17 item 2): prints
one JSON report. The Pipes are made here, on node 0; their users run on node 1. (mp_programs/pipes.py
over two isolated nodes covers the stdlib's semantics with one end on each node.)

"both_away": both ends on node 1, a 5 MB message and small ones, poll with a timeout, EOF after the
close. "wait": `multiprocessing.connection.wait` on node 1 over ends of node 0 only (one operation at
the home), and over those and a pipe of node 1 (a watcher thread per home). "holder_killed": the only
holder of one end (on node 1) killed while a process of node 1 waits on the other: EOFError.
"receiver_killed": a receiver of node 1 killed while it waits; the message sent next is not lost.
"fds": `send_handle` to a process of node 1 fails there clearly; a remote end has no fileno().
"posted": small sends of node 1 keep their order and come before the EOF of the close after them; a
send to a closed end raises BrokenPipeError (at a later send: they are posted).
"""

import errno
import json
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import sys
import time
from multiprocessing import reduction
from typing import Any

from on_node import on_node  # node_programs/on_node.py

WAIT_S = 30.0
BIG = bytes(range(256)) * 20000


def echo(conn: Any) -> None:
    """Echo until EOF, then exit 7."""
    while True:
        try:
            conn.send_bytes(conn.recv_bytes())
        except EOFError:
            sys.exit(7)


def driver(conn: Any, out: Any) -> None:
    got = []
    for msg in (b"one", BIG, b"", b"two"):
        conn.send_bytes(msg)
        got.append(conn.recv_bytes() == msg)
    out.put(
        {
            "echoed": got,
            "node": os.environ["DRAGON_INDEX"],
            "poll_empty": conn.poll(0.2),
            "end": type(conn._end).__name__,
        }
    )
    conn.close()


def both_away() -> dict[str, Any]:
    a, b = mp.Pipe()
    out = mp.Queue()
    ps = [on_node(1, echo, a), on_node(1, driver, b, out)]
    a.close()
    b.close()
    report = out.get(timeout=WAIT_S)
    for p in ps:
        p.join(WAIT_S)
    report["exitcodes"] = [p.exitcode for p in ps]
    return report


def waiter(r1: Any, r2: Any, go: Any, out: Any) -> None:
    """Wait over two ends of node 0 only, then over them and a pipe of this node."""
    ends = [r1, r2]
    report: dict[str, Any] = {"nothing": mpc.wait(ends, 0.1)}
    go.send("waiting")
    report["remote_only"] = [ends.index(c) for c in mpc.wait(ends, WAIT_S)]
    report["got"] = r2.recv()
    fd_r, fd_w = os.pipe()
    go.send("waiting again")
    ready = mpc.wait([r1, r2, fd_r], WAIT_S)
    report["mixed"] = ["r1" if c is r1 else "r2" if c is r2 else "fd" for c in ready]
    report["got_again"] = r1.recv()
    os.write(fd_w, b"x")
    report["fd"] = mpc.wait([r1, r2, fd_r], WAIT_S) == [fd_r]
    os.close(fd_r)
    os.close(fd_w)
    out.put(report)


def wait() -> dict[str, Any]:
    r1, w1 = mp.Pipe(duplex=False)
    r2, w2 = mp.Pipe(duplex=False)
    go_r, go_w = mp.Pipe(duplex=False)
    out = mp.Queue()
    p = on_node(1, waiter, r1, r2, go_w, out)
    for c in (r1, r2, go_w):
        c.close()
    assert go_r.recv() == "waiting"
    time.sleep(0.2)  # the child is asleep in its wait (what is tested: being woken)
    w2.send("to r2")
    assert go_r.recv() == "waiting again"
    time.sleep(0.2)
    w1.send("to r1")
    report = out.get(timeout=WAIT_S)
    p.join(WAIT_S)
    report["exitcode"] = p.exitcode
    return report


def hold(conn: Any, ready: Any) -> None:
    ready.put("holding")
    time.sleep(WAIT_S * 2)  # until killed


def holder_killed() -> dict[str, Any]:
    a, b = mp.Pipe()
    ready = mp.Queue()
    holder = on_node(1, hold, b, ready)
    assert ready.get(timeout=WAIT_S) == "holding"
    reader = on_node(1, echo, a)
    a.close()
    b.close()
    holder.kill()
    holder.join(WAIT_S)
    reader.join(WAIT_S)
    return {"holder": holder.exitcode, "reader": reader.exitcode}


def receive_one(conn: Any, ready: Any) -> None:
    ready.put("receiving")
    ready.put(conn.recv())


def receiver_killed() -> dict[str, Any]:
    a, b = mp.Pipe()
    ready = mp.Queue()
    p = on_node(1, receive_one, b, ready)
    assert ready.get(timeout=WAIT_S) == "receiving"
    time.sleep(0.3)  # it waits in its receive at the home now
    p.kill()
    p.join(WAIT_S)
    a.send("not lost")
    got = b.recv() if b.poll(WAIT_S) else None
    a.close()
    b.close()
    return {"killed": p.exitcode, "got": got}


def take_fd(conn: Any, out: Any) -> None:
    try:
        conn.fileno()
    except OSError as exc:
        fileno = str(exc)
    try:
        reduction.recv_handle(conn)
        out.put(["", fileno])
    except Exception as exc:
        out.put([f"{type(exc).__name__}: {exc}", fileno])


def fds() -> dict[str, Any]:
    a, b = mp.Pipe()
    out = mp.Queue()
    p = on_node(1, take_fd, b, out)
    b.close()
    with open(os.devnull, "wb") as f:
        reduction.send_handle(a, f.fileno(), p.pid)
        error, fileno = out.get(timeout=WAIT_S)
    p.join(WAIT_S)
    a.close()
    return {"error": error, "fileno": fileno, "exitcode": p.exitcode}


def send_many(conn: Any, n: int) -> None:
    for i in range(n):
        conn.send_bytes(i.to_bytes(4, "little") * 256)  # 1 KB: more than the ring holds in all
    conn.close()


def send_until_broken(conn: Any, out: Any) -> None:
    for i in range(100_000):
        try:
            conn.send_bytes(b"x")
        except BrokenPipeError as exc:
            out.put(["BrokenPipeError", exc.errno == errno.EPIPE, i < 100_000])
            return
    out.put(["no error", False, False])


def posted() -> dict[str, Any]:
    """Small sends of another node are posted: their order holds, a close comes after them (every
    message before EOF), and a send to a closed end fails at a later send."""
    a, b = mp.Pipe()
    p = on_node(1, send_many, b, 2000)
    b.close()
    time.sleep(0.5)  # the ring fills: the close comes while sends wait at the home for room
    got = []
    try:
        while True:
            got.append(int.from_bytes(a.recv_bytes()[:4], "little"))
    except EOFError:
        pass
    p.join(WAIT_S)
    a.close()
    r, w = mp.Pipe(duplex=False)
    out = mp.Queue()
    r.close()
    q = on_node(1, send_until_broken, w, out)
    w.close()
    broken = out.get(timeout=WAIT_S)
    q.join(WAIT_S)
    return {"in_order_then_eof": got == list(range(2000)), "exitcode": p.exitcode, "to_closed": broken}


if __name__ == "__main__":
    mp.set_start_method("dragon")
    report = {
        "both_away": both_away(),
        "wait": wait(),
        "holder_killed": holder_killed(),
        "receiver_killed": receiver_killed(),
        "fds": fds(),
        "posted": posted(),
    }
    print(json.dumps(report))
