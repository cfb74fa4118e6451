"""An end of a `Pipe()` held by a process of another node than the Pipe's home (issue 17;
`dragon.mp.pipe_home` is the home's side, `dragon.mp.connection` the Connection both use).

A Pipe lives in the node that made it: its record (who holds each end) and its two channels. A
process of that node works its end directly, as on one node (no change, no cost). A process of
another node that unpickles an end (a `Process` argument, through a Queue, a Pool task) gets an
`AwayEnd`: each of its steps - send, receive, poll, wait, and the changes of the holder table
(open, pickle, close) - is one operation at the home (`dragon.mp.away`: op RECORD on this process's
socket to the home's agent), which runs there the very step a local holder runs (the same code, on
the home's records): EOFError, BrokenPipeError, a send that waits for room, or, for a message
larger than the ring, for its reading, are the home's decisions.

**[choice] Operations, not a stream.** A remote end keeps nothing of the Pipe but its name: each
receive takes one message at the home. A send of up to POST_MAX bytes is posted (`Away.post`: it
returns once sent, as a socket's send returns once the kernel has the bytes, and the home carries out
a process's posted sends in order; waiting for each answer would add a network round trip to every
exchange); its failure (the reading end over: BrokenPipeError) is raised by the next send, as a TCP
socket's is. A larger send is answered once in (and, larger than the ring, once read, as a local
end's). A close first waits for the answers of the end's posted sends, so the reader has them before
it sees EOF. Nothing is buffered on this side, so an end can be
pickled again, passed on or closed at any moment without a message being stranded in a process.
A receive waits at the home at most `RECV_SLICE_S` and is then made again: a thread of the home's
agent never waits long for a requester that died meanwhile. A message taken at the home for a
receive whose requester is gone before it has it goes back into the channel (the agent keeps it until
this process acknowledges it: `dragon.client.remote`), at the channel's end.

**Holders of another node.** In the record's tables such a holder is `records.remote_holder(node,
pid)`; it counts as alive until the runtime tells the home it exited (GS's reclaim), which then takes
it out of the tables and wakes the waiters (`pipe_home.reclaim`), as a pidfd wakes them for a
holder of the home's node.

**Differences from an end on the Pipe's node**: a receive of another node learns that the last
holder of the Pipe's node of the other end was killed (not closed: a close wakes it at once) within
SAFETY_WAKE_S, 1 s (the home's agent waits for such a receive in its own loop, without pidfds:
`pipe_home.at_once`); `fileno()` raises OSError (there is no descriptor of
this node to select on: `multiprocessing.connection.wait` works); `send_handle` to a process of
another node raises `FdOnAnotherNode` at its `recv_handle`.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from dragon.client.remote import RemoteChannel
from dragon.errors import DragonError
from dragon.mp.away import Away, who
from dragon.mp.refs import Hold
from dragon.transport import ChannelDestroyed

RECV_SLICE_S: Final = 2.0
"""How long one receive waits at the home before it is made again (see the module docstring)."""
POST_MAX: Final = 64 * 1024
"""A send of at most this many bytes is posted: it returns once sent, its result comes later (a
failure, BrokenPipeError, is raised by the next send, as a TCP socket's)."""
WATCH_SLICE_S: Final = 1.0
"""How long one look of a `wait` watcher thread waits at a home (a watcher ends at most this long
after its wait returned)."""


def _broken(text: str) -> BrokenPipeError:
    return BrokenPipeError(errno.EPIPE, text or "the other end of the Pipe is closed")


class AwayEnd:
    """This process's hold on end `me` (0 or 1) of a Pipe of another node: its `Hold` (whose
    channels are `RemoteChannel`s; `inc` and `out` are the ones this end reads and writes) and the
    names its home needs for each operation."""

    __slots__ = ("away", "hold", "inc", "me", "names", "node", "out")

    def __init__(self, hold: Hold, me: int, inc: int | None, out: int | None) -> None:
        self.hold, self.me = hold, me
        chans = hold.chans
        record = chans[0]
        assert isinstance(record, RemoteChannel)
        self.away, self.node = Away(record), record.node
        self.inc = None if inc is None else chans[inc]
        self.out = None if out is None else chans[out]
        self.names = (record.sdesc, me, _sdesc(self.inc), _sdesc(self.out))
        """What each operation names: the record, the end, its incoming and outgoing channels."""

    @property
    def holder(self) -> int:
        """This process in the record's tables."""
        return who()

    def call(self, name: str, *args: Any, timeout: float | None = 0.0, flush: bool = True) -> Any:
        """Operation `name` of `dragon.mp.pipe_home` on this end, at the home (`flush`: see `Away.call`)."""
        try:
            return self.away.call(name, *self.names[1:], *args, timeout=timeout, flush=flush)
        except BrokenPipeError as exc:  # with its errno, as a socket's
            raise _broken(str(exc)) from None

    def count(self, delta: int, holder: int, closing: bool = False) -> None:
        """As `connection._End.count`, at the home."""
        self.call("pipe_count", holder, delta, closing)

    def close(self) -> None:
        """This process holds the end no more (see `connection._End.close`), once its posted sends are
        in (the reader sees them before EOF), then let go."""
        try:
            if self.out is not None:
                self.away.settle()
            self.count(-1, who(), closing=True)
        except DragonError:  # the runtime is going away, or the home's node is lost
            pass
        finally:
            self.hold.release()

    def send(self, data: bytes | memoryview) -> None:
        """Posted if small (see the module docstring), else answered once in (or, larger than the
        ring, once read, as a local end's)."""
        try:
            if len(data) <= POST_MAX:
                self.away.post("pipe_send", *self.names[1:], data)
            else:
                self.call("pipe_send", data, timeout=None)
        except BrokenPipeError as exc:
            raise _broken(str(exc)) from None
        except ChannelDestroyed:
            raise _broken("") from None

    def recv(self) -> bytes:
        while True:
            try:
                got = self.call("pipe_recv", timeout=RECV_SLICE_S, flush=False)
            except ChannelDestroyed:
                raise EOFError from None
            if got is not None:
                return bytes(got)

    def poll(self, timeout: float | None) -> bool:
        try:
            return bool(self.call("pipe_poll", timeout=timeout, flush=False))
        except ChannelDestroyed:
            return True  # as at EOF: a receive raises EOFError at once

    def fileno(self) -> int:
        raise OSError(
            f"this end of a Pipe of node {self.node} is used on node {os.environ.get('DRAGON_INDEX', '?')}: it has "
            "no file descriptor here; wait for it with multiprocessing.connection.wait"
        )


def _sdesc(chan: object) -> str:
    return chan.sdesc if isinstance(chan, RemoteChannel) else ""


def wait_at(ends: Sequence[AwayEnd], timeout: float | None) -> list[int]:
    """Wait at most `timeout` s (None: no limit) until one of `ends` (all of one home node) can be
    received from or is at EOF: the indices of those that can (one operation at their home)."""
    specs = [list(end.names) for end in ends]
    return list(ends[0].away.call("pipe_wait", specs, timeout=timeout, flush=False))


Local = Callable[[list[Any], list[int], float | None], tuple[list[int], list[int]]]


class _Bell:
    """A pipe the `wait` watchers write to when they found something; closed by its last user."""

    def __init__(self, users: int) -> None:
        self.r, self.w = os.pipe()
        self.users = users
        self.lock = threading.Lock()

    def ring(self) -> None:
        with self.lock:
            if self.users:
                os.write(self.w, b"\1")

    def leave(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0:
                os.close(self.r)
                os.close(self.w)


def wait_away(ends: Sequence[Any], fds: list[int], timeout: float | None, local: Local) -> tuple[list[int], list[int]]:
    """`multiprocessing.connection.wait` when some of `ends` are `AwayEnd`s: the indices of the ready
    ends and the ready `fds`. All of one home node and nothing else: one operation there. Else the
    ends of each home node are watched by a thread of their own (looks of WATCH_SLICE_S at the home)
    that rings a pipe which `local` (`connection.wait_ends`) waits on with this node's ends and fds."""
    away: dict[int, list[int]] = {}
    for i, end in enumerate(ends):
        if isinstance(end, AwayEnd):
            away.setdefault(end.node, []).append(i)
    here = [i for i, end in enumerate(ends) if not isinstance(end, AwayEnd)]
    if not here and not fds and len(away) == 1:
        (indices,) = away.values()
        return [indices[j] for j in wait_at([ends[i] for i in indices], timeout)], []
    found: list[int] = []
    for indices in away.values():  # a look first: something may be ready already
        found += [indices[j] for j in wait_at([ends[i] for i in indices], 0.0)]
    ready_here, ready_fds = local([ends[i] for i in here], fds, 0.0)
    if found or ready_here or ready_fds or timeout == 0:
        return sorted(found + [here[j] for j in ready_here]), ready_fds
    bell, stop = _Bell(len(away) + 1), threading.Event()
    deadline = None if timeout is None else time.monotonic() + timeout

    def watch(indices: list[int]) -> None:
        try:
            while not stop.is_set():
                left = WATCH_SLICE_S if deadline is None else min(WATCH_SLICE_S, deadline - time.monotonic())
                if left <= 0:
                    return
                got = wait_at([ends[i] for i in indices], left)
                if got:
                    with bell.lock:
                        found.extend(indices[j] for j in got)
                    bell.ring()
                    return
        except BaseException:  # the wait's own operations raise it: a look of its own now
            bell.ring()
        finally:
            bell.leave()

    for indices in away.values():
        threading.Thread(target=watch, args=(indices,), name="PipeWait", daemon=True).start()
    try:
        ready_here, ready_fds = local([ends[i] for i in here], [*fds, bell.r], timeout)
    finally:
        stop.set()
        with bell.lock:
            rung = list(found)
        bell.leave()
    if bell.r in ready_fds and not rung:  # a watcher failed: its home says why
        for indices in away.values():
            rung += [indices[j] for j in wait_at([ends[i] for i in indices], 0.0)]
    return sorted(rung + [here[j] for j in ready_here]), [fd for fd in ready_fds if fd != bell.r]
