"""Pipe and Connection between processes, in the style of CPython's _TestConnection; prints JSON.

Run as `prog.py METHOD [SECTION...]` ("spawn" under plain python, "dragon" under `dragon` or plain
python; mp_programs/sections.py says which sections run).
Everything under the key "same" must not depend on the method (the stdlib's socketpair under spawn,
channels under dragon: dragon/mp/connection.py); "kind" says which Pipe the method gave.
"""

import array
import concurrent.futures
import json
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing import BufferTooShort, reduction
from multiprocessing.reduction import ForkingPickler
from typing import Any

import sections

import dragon  # noqa: F401  (registers the start method)

WAIT_S = 30.0
BIG = bytes(range(256)) * 20000  # 5 MB: larger than a channel's ring (a side file) and a socket buffer
RING_PLUS = b"r" * 300_000  # just over a Pipe channel's ring


def raises(fn: Callable[[], object]) -> str:
    """The name and message of the exception `fn()` raises ("" if none)."""
    try:
        fn()
    except Exception as exc:  # the name is the result
        return f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) and not exc.errno else type(exc).__name__
    return ""


def api(ctx: Any) -> dict[str, Any]:
    a, b = ctx.Pipe()
    out: dict[str, Any] = {"fileno_int": type(a.fileno()) is int, "modes": [a.readable, a.writable, b.readable]}
    a.send([1, 2.25, None])
    out["obj"] = b.recv()
    msg = b"abcdefghijklmnopqrstuvwxyz"
    got = []
    for args in [(), (5,), (7, 8), (26,), (26, 0)]:
        a.send_bytes(msg, *args)
        got.append(b.recv_bytes().decode())
    out["send_bytes"] = got
    out["send_bytes_errors"] = [
        raises(lambda x=x: a.send_bytes(msg, *x)) for x in [(27,), (22, 5), (26, 1), (-1,), (4, -1)]
    ]
    arr = array.array("i", range(4))
    a.send_bytes(arr)
    buf = array.array("i", [0] * 10)
    out["into"] = [b.recv_bytes_into(buf), list(buf)]
    a.send_bytes(arr)
    buf = array.array("i", [0] * 10)
    out["into_offset"] = [b.recv_bytes_into(buf, 3 * buf.itemsize), list(buf)]
    a.send_bytes(msg * 10)
    try:
        b.recv_bytes_into(bytearray(40))
        out["too_short"] = "no error"
    except BufferTooShort as exc:
        out["too_short"] = exc.args == (msg * 10,)
    out["into_errors"] = [
        raises(lambda: b.recv_bytes_into(bytearray(4), -1)),
        raises(lambda: b.recv_bytes_into(bytearray(4), 5)),
    ]
    out["poll_empty"] = [b.poll(), b.poll(-1), b.poll(0.05)]
    a.send(None)
    out["poll_full"] = [b.poll(), b.poll(None), b.recv(), b.poll()]
    a.send_bytes(b"")
    out["empty_message"] = b.recv_bytes().decode()
    out["maxlength_negative"] = raises(lambda: b.recv_bytes(-1))
    a.send_bytes(b"x" * 100)
    out["maxlength"] = [raises(lambda: b.recv_bytes(10)), b.readable, b.closed]
    r, w = ctx.Pipe(duplex=False)
    w.send_bytes(b"x" * 100)
    out["maxlength_read_only"] = [raises(lambda: r.recv_bytes(10)), r.closed]
    with a, b:
        out["in_with"] = [a.closed, b.closed]
    out["after_with"] = [
        a.closed,
        b.closed,
        raises(a.recv),
        raises(lambda: b.send(1)),
        raises(a.fileno),
        raises(a.poll),
    ]
    out["pickle_closed"] = raises(lambda: ForkingPickler.dumps(a))
    w.close()
    return out


def one_way(ctx: Any) -> dict[str, Any]:
    r, w = ctx.Pipe(duplex=False)
    w.send(1)
    out = {
        "modes": [r.readable, r.writable, w.readable, w.writable],
        "got": r.recv(),
        "errors": [
            raises(lambda: r.send(2)),
            raises(w.recv),
            raises(w.poll),
            raises(lambda: w.recv_bytes_into(bytearray(4))),
        ],
    }
    r.close()
    out["send_to_closed"] = raises(lambda: w.send(3))
    w.close()
    return out


def eof(ctx: Any) -> dict[str, Any]:
    a, b = ctx.Pipe()
    a.send("last words")
    a.close()
    out = {
        "poll": b.poll(),
        "recv_first": b.recv(),
        "poll_after": b.poll(),
        "recv": raises(b.recv),
        "recv_bytes": raises(b.recv_bytes),
    }
    out["send_to_closed"] = raises(lambda: b.send(1))
    b.close()
    return out


def _echo(conn: Any) -> None:
    """Echo messages (bytes) until EOF, then exit 7 (EOF seen); a b"quit" message: exit 3."""
    while True:
        try:
            msg = conn.recv_bytes()
        except EOFError:
            sys.exit(7)
        if msg == b"quit":
            sys.exit(3)
        conn.send_bytes(msg)


def _hold_and_block(conn: Any, go: Any) -> None:
    """Tell the parent it runs, then block in recv (until killed)."""
    conn.send("ready")
    go.recv()


def _from_queue(q: Any) -> None:
    conn = q.get()
    _echo(conn)


def _exit_holding(conn: Any) -> None:
    conn.send("bye")  # exits holding its end open: the exit closes it


def _write_fd(conn: Any, data: bytes) -> None:
    fd = reduction.recv_handle(conn)
    os.write(fd, data)
    os.close(fd)


def _write_raw(conn: Any) -> None:
    os.write(conn.fileno(), b"\0")  # data without an fd (CPython's test_missing_fd_transfer)


def _send_big(conn: Any) -> None:
    conn.send_bytes(BIG)  # blocks until the parent has read it (most of it, under spawn)
    conn.send("sent")


def blocking(ctx: Any) -> dict[str, Any]:
    """A send of a message larger than any buffer blocks until it is read."""
    out: dict[str, Any] = {}
    a, b = ctx.Pipe()
    p = ctx.Process(target=_send_big, args=(b,))
    p.start()
    b.close()
    p.join(0.5)
    out["big_send_blocked"] = p.exitcode is None
    out["big"] = [a.recv_bytes() == BIG, a.recv()]
    p.join(WAIT_S)
    a.close()
    return out


def fds(ctx: Any, tmp: str) -> dict[str, Any]:
    """An fd passed with `multiprocessing.reduction.send_handle` (CPython's test_fd_transfer), and
    what `recv_handle` says of data without one. Fds never cross nodes (placement.py NEVER_CROSS)."""
    out: dict[str, Any] = {}
    a, b = ctx.Pipe()
    p = ctx.Process(target=_write_fd, args=(b, b"written through a passed fd"))
    p.start()
    b.close()
    path = os.path.join(tmp, "fd_target")
    with open(path, "wb") as f:
        reduction.send_handle(a, f.fileno(), p.pid)
    p.join(WAIT_S)
    with open(path, "rb") as f:
        out["fd_transfer"] = f.read().decode()
    a.close()
    a, b = ctx.Pipe()
    p = ctx.Process(target=_write_raw, args=(b,))
    p.start()
    out["recv_handle_raw_byte"] = raises(lambda: reduction.recv_handle(a))  # b stays open here: no EOF
    p.join(WAIT_S)
    a.close()
    b.close()
    a, b = ctx.Pipe()
    a.send("not a handle")
    out["recv_handle_no_fd"] = raises(lambda: reduction.recv_handle(b))
    a.close()
    b.close()
    return out


def _send_on(conn: Any, what: str) -> str:
    conn.send(what)
    conn.close()
    return "sent"


def children(ctx: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # the child's end as an argument, closed here at once (CPython's test_spawn_close)
    a, b = ctx.Pipe()
    p = ctx.Process(target=_echo, args=(b,))
    p.start()
    b.close()
    got = []
    for msg in (b"hello", RING_PLUS, BIG, b""):
        a.send_bytes(msg)
        got.append(a.recv_bytes() == msg)
    out["echo"] = got
    a.close()  # the child sees EOF
    p.join(WAIT_S)
    out["child_saw_eof"] = p.exitcode
    # the peer exits (without closing), then SIGKILL of a peer blocked in recv
    a, b = ctx.Pipe()
    p = ctx.Process(target=_exit_holding, args=(b,))
    p.start()
    b.close()
    out["exit"] = [a.recv(), raises(a.recv)]
    p.join(WAIT_S)
    a.close()
    a, b = ctx.Pipe()
    go_r, go_w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_hold_and_block, args=(b, go_r))
    p.start()
    b.close()
    go_r.close()
    ready = a.recv()
    p.kill()
    t0 = time.monotonic()
    out["killed"] = [ready, raises(a.recv)]
    out["killed_eof_s"] = time.monotonic() - t0
    p.join(WAIT_S)
    out["send_after_kill"] = raises(lambda: a.send(1))
    a.close()
    go_w.close()
    # through a Queue, and one-way ends as arguments
    q = ctx.Queue()
    a, b = ctx.Pipe()
    p = ctx.Process(target=_from_queue, args=(q,))
    p.start()
    q.put(b)  # the stdlib's Queue pickles it later, in its feeder thread: b stays open until the echo
    a.send_bytes(b"via queue")
    out["via_queue"] = a.recv_bytes().decode()
    b.close()
    a.send_bytes(b"quit")
    p.join(WAIT_S)
    out["via_queue_exit"] = p.exitcode
    a.close()
    q.close()
    # as an argument of a Pool task
    a, b = ctx.Pipe()
    with ctx.Pool(1) as pool:
        out["via_pool"] = [pool.apply(_send_on, (b, "via pool")), a.recv()]
    b.close()
    a.close()
    return out


def _send_later(conn: Any, delay: float, what: str, hold: Any = None) -> None:
    time.sleep(delay)
    if what == "send":
        conn.send("late")
        try:  # alive until the parent's wait has looked (its sentinel must not be ready then)
            hold.recv()
        except EOFError:
            pass
    elif what == "close":
        conn.close()
    elif what == "die":
        os.kill(os.getpid(), signal.SIGKILL)


def wait_mix(ctx: Any) -> dict[str, Any]:
    a1, b1 = ctx.Pipe()
    r2, w2 = ctx.Pipe(duplex=False)
    s1, s2 = socket.socketpair()
    std_a, std_b = mp.get_context("spawn").Pipe()  # the stdlib's Connections, whatever the method
    fd_r, fd_w = os.pipe()
    hold_r, hold_w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_send_later, args=(w2, 0.3, "send", hold_r))
    p.start()
    w2.close()
    hold_r.close()
    objs = [a1, r2, s1, std_a, fd_r, p.sentinel]
    names = ["pipe", "one_way", "socket", "stdlib", "fd", "sentinel"]

    def ready(timeout: float | None) -> list[str]:
        return sorted(names[objs.index(o)] for o in mpc.wait(objs, timeout))

    out: dict[str, Any] = {"nothing": ready(0.05)}
    t0 = time.monotonic()
    out["woken_by_child"] = ready(WAIT_S)  # r2: the child sends after 0.3 s
    out["woke_after_s"] = time.monotonic() - t0
    out["late"] = r2.recv()
    hold_w.close()
    p.join(WAIT_S)
    out["sentinel"] = ready(0)  # the child exited; r2 is at EOF now too
    objs[1:2], names[1:2] = [], []  # r2 out
    objs.remove(p.sentinel)
    names.remove("sentinel")
    s2.send(b"x")
    out["socket"] = ready(0)
    s1.recv(1)
    std_b.send(1)
    out["stdlib"] = ready(0)
    std_a.recv()
    os.write(fd_w, b"x")
    out["fd"] = ready(0)
    os.read(fd_r, 1)
    b1.send(1)
    out["pipe"] = ready(0)
    a1.recv()
    # woken in wait by a close and by a SIGKILL of the other end's only holder
    for what in ("close", "die"):
        a, b = ctx.Pipe()
        p = ctx.Process(target=_send_later, args=(b, 0.2, what))
        p.start()
        b.close()
        t0 = time.monotonic()
        out[f"woken_by_{what}"] = [mpc.wait([a, s1], WAIT_S) == [a], raises(a.recv)]
        out[f"woken_by_{what}_s"] = time.monotonic() - t0
        p.join(WAIT_S)
        a.close()
    for c in (a1, b1, r2, std_a, std_b, s1, s2):
        c.close()
    os.close(fd_r)
    os.close(fd_w)
    return out


def _square(x: int) -> int:
    return x * x


def executor_wakeup(ctx: Any) -> list[Any]:
    """ProcessPoolExecutor works, and keeps the stdlib's Pipe for its wake-up (dragon/mp/context.py)."""
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        total = sum(ex.map(_square, range(100)))
        return [total, type(ex._executor_manager_thread_wakeup._reader).__module__]  # type: ignore[attr-defined]


if __name__ == "__main__":
    method = sys.argv[1]
    mp.set_start_method(method)
    ctx = mp.get_context(method)
    report: dict[str, Any] = {
        "kind": [type(ctx.Pipe()[0]).__module__, type(mp.Pipe()[0]).__module__],
        **sections.run({"executor_wakeup": lambda: executor_wakeup(ctx)}),
        "same": sections.run(
            {
                "api": lambda: api(ctx),
                "one_way": lambda: one_way(ctx),
                "eof": lambda: eof(ctx),
                "children": lambda: children(ctx),
                "wait": lambda: wait_mix(ctx),
                "blocking": lambda: blocking(ctx),
                "fds": lambda: fds(ctx, os.getcwd()),
            }
        ),
    }
    print(json.dumps(report))
