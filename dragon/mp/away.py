"""A synchronization object used from a node other than its home (issue 17; `dragon.mp.at_home` is the
home's side, where the decisions are written down).

`Away` sends one operation at a time to the object's home and returns its result or raises its error.
`RemoteSemLock` is what a Lock, RLock, Semaphore or BoundedSemaphore unpickled on another node uses in
place of its `_multiprocessing.SemLock`: the same methods, its count taken and given back at the
home (`acquire`/`release` there, which also keep the holder in the record's words), the rest kept
here as the C object keeps it (an RLock's owner thread and levels, this handle's count), so that the
object's own code (`dragon.mp.locks`) and a Condition's use it unchanged.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any, Final

import msgspec

from dragon.client.remote import PostedOpFailed, RemoteChannel
from dragon.ids import LaunchParameters
from dragon.transport import ChannelDestroyed, ChannelError
from dragon.transport.records import remote_holder

RECURSIVE_MUTEX: Final = 0
_ERRORS: Final[dict[str, type[Exception]]] = {
    "ValueError": ValueError,
    "AssertionError": AssertionError,
    "ChannelDestroyed": ChannelDestroyed,
    "BrokenBarrierError": threading.BrokenBarrierError,
    "EOFError": EOFError,  # a Pipe's (dragon.mp.pipe_home)
    "BrokenPipeError": BrokenPipeError,
}


class Request(msgspec.Struct, array_like=True, frozen=True):
    """One operation of a remote user: `name` (a key of `at_home.OPERATIONS`, or "reclaim"), `who`
    (the user's `remote_holder` number, or a home pid for "reclaim"), `args`."""

    name: str
    who: int
    args: list[Any] = []


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[bool, Any])
_who = 0


def who() -> int:
    """This process's name in the words of a record of another node (`records.remote_holder`): found
    once per process (every operation names it; `os.getpid` is a system call)."""
    global _who
    if not _who:
        _who = remote_holder(LaunchParameters.from_env().index, os.getpid())
    return _who


def _forget_who() -> None:
    global _who
    _who = 0


os.register_at_fork(after_in_child=_forget_who)


class Away:
    """This process's way to the record `chan` (a channel of another node) of one object."""

    def __init__(self, chan: RemoteChannel) -> None:
        self.chan = chan
        self.node = chan.node

    def call(self, name: str, *args: Any, timeout: float | None = 0.0, flush: bool = True) -> Any:
        """Operation `name` at the home; one that may wait (`at_home.BLOCKING`) waits there at most
        `timeout` (None: no limit). Not `flush`: it may overtake this process's posted operations
        (`dragon.client.remote._Link.call`)."""
        request = _encoder.encode(Request(name=name, who=who(), args=list(args)))
        try:
            ok, value = _decoder.decode(self.chan.record_op(request, timeout, flush=flush))
        except PostedOpFailed as exc:  # an earlier posted one
            raise self._error(exc.kind, exc.text) from None
        if ok:
            return value
        raise self._error(*value)

    def post(self, name: str, *args: Any) -> None:
        """Operation `name` at the home, without waiting for its result (after this process's earlier
        posted ones there: `RemoteChannel.record_post`). Raises the error of an earlier one that failed."""
        request = _encoder.encode(Request(name=name, who=who(), args=list(args)))
        try:
            self.chan.record_post(request)
        except PostedOpFailed as exc:
            raise self._error(exc.kind, exc.text) from None

    def settle(self) -> None:
        """Until this process's posted operations here are carried out (`RemoteChannel.settle`)."""
        self.chan.settle(_encoder.encode(Request(name="settle", who=who())))

    def _error(self, kind: str, text: str) -> Exception:
        error = _ERRORS.get(kind)
        if error is None:
            return ChannelError(f"node {self.node} could not carry out an operation on its object: {kind}: {text}")
        return error(text)


class RemoteSemLock:
    """The interface of `_multiprocessing.SemLock` for an object whose semaphore is on another node."""

    def __init__(self, away: Away, kind: int, maxvalue: int, what: str, name: str, warning: type[Warning]) -> None:
        """`what` and `name`: the object's kind and name for the `warning` an acquire after a dead
        holder's give-back raises (`dragon.mp.locks.HolderDiedWarning`)."""
        self.away, self.kind, self.maxvalue = away, kind, maxvalue
        self._what, self._name, self._warning = what, name, warning
        self._levels = 0
        self._owner = 0
        self._mutex = threading.Lock()
        """Held while a release is made at the home and counted here, and while an acquire that
        succeeded there is counted: as the C object's GIL-held steps, so that a thread's acquire never
        interleaves with another's release between the home and here."""

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        if self.kind == RECURSIVE_MUTEX and self._is_mine():
            self._levels += 1
            return True
        wait = 0.0 if not block else None if timeout is None else max(0.0, timeout)
        taken, dead = self.away.call("acquire", timeout=wait)
        if not taken:
            return False
        with self._mutex:
            self._levels += 1
            self._owner = threading.get_ident()
        if dead:
            try:
                warnings.warn(
                    f"{dead} died holding {self._what} {self._name}; the runtime gave it back and this process "
                    "now holds it: the data it protected may be half-written",
                    self._warning,
                    stacklevel=3,
                )
            except BaseException:  # the warning was made an error: the acquire does not hold
                self.release()
                raise
        return True

    def release(self) -> None:
        with self._mutex:
            if self.kind == RECURSIVE_MUTEX:
                if not self._is_mine():
                    raise AssertionError("attempt to release recursive lock not owned by thread")
                if self._levels > 1:
                    self._levels -= 1
                    return
            self.away.call("release")
            self._levels -= 1

    def _count(self) -> int:
        return self._levels

    def _is_mine(self) -> bool:
        return self._levels > 0 and self._owner == threading.get_ident()

    def _get_value(self) -> int:
        return int(self.away.call("value"))

    def _is_zero(self) -> bool:
        return self._get_value() == 0

    def _after_fork(self) -> None:
        self._levels = 0
        self._mutex = threading.Lock()
