"""A Pipe's steps for its holders of other nodes, carried out at its home by the home node's transport
agent (issue 17; `dragon.mp.pipe_away` is the holders' side and says what is decided).

Each operation names the end (0 or 1) and the end's incoming and outgoing channels. A send that finds
room and a receive that finds a message are done as the operation arrives, in the agent's loop
(`now`); a receive that must wait waits there on the channel's doorbell as a task (`at_once`).
Everything else `dragon.mp.at_home` runs in a thread of the agent (`operations`), on an `_End` made
for it over the records the agent attached (`connection._End.at_home`), with the same code a holder
of this node runs (`connection.send`, `_recv_waiting`, `wait_ends`, `_End.count`). So EOF, a closed
reading end, a full ring and a message larger than the ring behave exactly as on one node.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

import trio

from dragon.mp.connection import (
    KIND_CODE,
    OVER,
    _clock,
    _drain,
    _End,
    _holders,
    _ready,
    _recv_waiting,
    _take_holder,
    send,
    wait_ends,
)
from dragon.transport import SAFETY_WAKE_S, ChannelError, Record
from dragon.transport.records import KIND

Attach = Callable[[str], Record]
"""The agent's record of a channel by its name (attached once and kept: `at_home._home`)."""


class Taken:
    """A message a receive took from channel `sdesc` for a requester of another node: the agent
    keeps it until the requester acknowledges it, and puts it back if the requester is gone."""

    __slots__ = ("data", "sdesc")

    def __init__(self, sdesc: str, data: bytes) -> None:
        self.sdesc, self.data = sdesc, data


_channels: dict[str, set[str]] = {}
"""The data channels of each Pipe record that a holder of another node used (for `reclaim`'s rings)."""


def _end(attach: Attach, rec: Record, me: int, inc: str, out: str) -> _End:
    if inc or out:
        _channels.setdefault(rec.name, set()).update(s for s in (inc, out) if s)
    return _End.at_home(rec, me, attach(inc) if inc else None, attach(out) if out else None)


def operations(attach: Attach) -> dict[str, Callable[..., Any]]:
    """The Pipe's operations for `at_home.OPERATIONS`: (home, wait, me, inc, out, *args) each, the
    request's timeout last for those of `BLOCKING`."""

    def on_end(step: Callable[..., Any]) -> Callable[..., Any]:
        def run(home: Any, wait: Any, me: int, inc: str, out: str, *args: Any) -> Any:
            end = _end(attach, home.rec, me, inc, out)
            try:
                return step(end, inc, *args)
            finally:
                end.close_fds()

        return run

    def count(end: _End, inc: str, holder: int, delta: int, closing: bool) -> None:
        end.count(delta, holder, closing)

    def send_(end: _End, inc: str, data: bytes) -> None:
        send(end, data)

    def recv(end: _End, inc: str, timeout: float | None) -> Taken | None:
        chan = end.inc
        if chan is None:
            raise OSError("connection is write-only")
        data = chan.take()
        if data is None:
            data = _recv_waiting(end, None if timeout is None else _clock() + timeout)
        return None if data is None else Taken(inc, data)

    def poll(end: _End, inc: str, timeout: float | None) -> bool:
        return _ready(end) or bool(wait_ends([end], [], timeout)[0])

    def wait(home: Any, who: Any, specs: list[list[Any]], timeout: float | None) -> list[int]:
        ends = [_end(attach, attach(rec), me, inc, out) for rec, me, inc, out in specs]
        try:
            return wait_ends(ends, [], timeout)[0]
        finally:
            for end in ends:
                end.close_fds()

    return {
        "pipe_count": on_end(count),
        "pipe_send": on_end(send_),
        "pipe_recv": on_end(recv),
        "pipe_poll": on_end(poll),
        "pipe_wait": wait,
    }


BLOCKING: Final = frozenset({"pipe_recv", "pipe_poll", "pipe_wait"})
AT_ONCE: Final = frozenset({"pipe_send", "pipe_recv"})
LATER: Final = object()
"""What `at_once` returns for an operation it leaves to a thread."""


def now(attach: Attach, rec: Record, name: str, args: list[Any]) -> Any:
    """The part of `at_once` that needs no wait (the agent runs it as the operation arrives, without a
    task of its own): a send that finds room, a receive that finds a message; LATER otherwise."""
    if name == "pipe_send":
        me, inc, out, data = args
        chan = attach(out) if out else None
        if chan is None or rec.words[OVER + 1 - me] or len(data) > chan.max_inline:
            return LATER
        return None if chan.put(data, 0, False) else LATER
    if name != "pipe_recv":
        return LATER
    me, inc, out = args
    chan = attach(inc) if inc else None
    got = None if chan is None else chan.take(False)
    return LATER if got is None or got is False else Taken(inc, got)


async def at_once(attach: Attach, rec: Record, name: str, args: list[Any], timeout: float | None) -> Any:
    """A send or a receive in the agent's own thread when it needs no lock that someone else holds
    and no decision about the other end (a thread's hop costs more than the operation: a round trip
    of a Pipe across nodes is two of them): a send that finds room, a receive that finds a message
    or waits for one on its doorbell, as a trio task. LATER for anything else (a full ring, a
    message for a side file, a busy lock, the other end possibly over, another waiter of this
    agent on that doorbell): the thread then does it all, with the very code of a local end."""
    done = now(attach, rec, name, args)
    if done is not LATER or name != "pipe_recv":
        return done
    me, inc, _out = args
    chan = attach(inc) if inc else None
    if chan is None:
        return LATER
    deadline = trio.current_time() + (math.inf if timeout is None else timeout)
    woken = False
    while True:
        got = chan.take(False)
        if got is False:  # its lock is busy
            return LATER
        if got is not None:
            return Taken(inc, got)
        # EOF, perhaps: the thread decides. Who is alive is looked at only after a wake-up without a
        # message (each look reads /proc per holder: more than the rest of the receive).
        if rec.words[OVER + 1 - me] or (woken and not _holders(rec.words, 1 - me)):
            return LATER
        if not chan.enroll("recv"):
            continue
        try:
            with trio.move_on_at(min(deadline, trio.current_time() + SAFETY_WAKE_S)):
                await trio.lowlevel.wait_readable(chan.rbell)
                _drain(chan.rbell)
        except trio.BusyResourceError:  # another receive of this agent waits on that doorbell
            return LATER
        finally:
            chan.end_wait("recv")
        if trio.current_time() >= deadline:
            return None
        woken = True


def forget(name: str) -> None:
    """Record `name` was destroyed: its channels are not kept here any more."""
    _channels.pop(name, None)


def reclaim(attach: Attach, rec: Record, who: int) -> None:
    """Holder `who` of another node ended: out of the record's tables (an end it held last is over),
    and the waiters of the Pipe's channels woken to see it (a holder of this node wakes them with its
    pidfd instead)."""
    if int(rec.words[KIND]) != KIND_CODE or not _take_holder(rec, who):
        return
    for sdesc in _channels.get(rec.name, ()):
        try:
            chan = attach(sdesc)
            chan.ring_waiters("recv")
            chan.ring_waiters("send")
        except ChannelError:  # destroyed meanwhile
            continue
