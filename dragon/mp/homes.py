"""The home of a synchronization object of the "dragon" start method: its `Record`, and this
process's hold on it (issue #15).

Every Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event and Barrier lives in one record
(`dragon.transport.records`): a channel made through Global Services with `ChannelOptions.record`,
labelled with the object's kind and maker (`dragon status` lists it, with its waiters and holder),
ref-counted there like a queue's channels (`dragon.mp.refs.Hold`: pickling takes a reference the
unpickled object inherits; close, garbage collection or exit gives it back; the last one destroys the
record, and the runtime's teardown destroys whatever is left). GS tells every record of every process
exit (`records.reclaim`): a dead holder's count comes back, a Barrier whose party died breaks.

An operation is a step on the record's words under its lock, or, for the Lock family's fast path, an
operation on the record's named semaphore. A process on another node than the record's gets a Home
without `rec` and with `away` (`dragon.mp.away`): each operation is carried to the record's node and
done there (`dragon.mp.at_home`), for the kinds that say they can (`across`); the others raise
ChannelOnAnotherNode naming both nodes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from multiprocessing import util
from typing import Any

from dragon.client.nodes import explain
from dragon.client.remote import RemoteChannel
from dragon.mp.away import Away
from dragon.mp.refs import RECORD, Hold
from dragon.transport import ChannelDestroyed, Record
from dragon.transport.records import KIND, KINDS, PARTIES, PARTY_SLOTS, add_pid


class Home:
    """This process's handle on one object's record (`rec`), given back at close, GC or exit."""

    rec: Record
    """The record, on this node (else `away` is set and `rec` is not)."""
    away: Away | None
    """The way to the record on another node (`dragon.mp.away`), for a kind that works across nodes."""

    def __init__(self, hold: Hold, *, party: bool = False, across: bool = False) -> None:
        """`across`: the caller's kind works from another node than the record's (else a record of
        another node raises ChannelOnAnotherNode)."""
        self.hold = hold
        self._party, self._across = party, across
        self._attach()
        if party:
            self._enter_party()
        # The hold's method, not one of this object (that would keep it alive for ever). A party
        # stays in the table until it exits (GS's `reclaim` takes it out): a process that ends with
        # an error after its finalizers ran still breaks a Barrier.
        self._release = util.Finalize(self, self.hold.release, exitpriority=-10)
        util.register_after_fork(self, Home._after_fork)

    @classmethod
    def create(cls, kind: str, *, party: bool = False, data_bytes: int = 0) -> Home:
        """A new record for an object of `kind` (one of `records.KINDS`), with this process's
        reference. `party`: this process counts as a party of the object (`records.PARTIES`) while
        it holds it, so that its abnormal death breaks the object (a Barrier). `data_bytes`: the
        least size of its ring (`Record.data`), for an object that keeps bytes there."""
        shape = RECORD if data_bytes <= RECORD.block_size else RECORD._replace(block_size=data_bytes)
        home = cls(Hold.create(shape, kinds=(kind,)), party=party)
        home.rec.lock()
        try:
            home.rec.words[KIND] = KINDS.index(kind)
        finally:
            home.rec.unlock()
        return home

    @property
    def c_uid(self) -> int:
        return self.hold.refs[0][0]

    def pickle_refs(self) -> list[tuple[int, str]]:
        """One more GS reference, for a pickled copy of the object to inherit (`rebuild`)."""
        return self.hold.new_refs()

    @classmethod
    def rebuild(cls, refs: list[tuple[int, str]], *, party: bool = False, across: bool = False) -> Home:
        """Attach to a record with the reference a pickling took (`across`: see `__init__`)."""
        return cls(Hold(refs, owned=True, record=True), party=party, across=across)

    def __reduce__(self) -> tuple[Callable[..., Home], tuple[Any, ...]]:
        """A Home pickles anywhere (with a reference of its own, `pickle_refs`): an object can
        pickle its Home as part of its state."""
        return (_rebuild, (self.pickle_refs(), self._party))

    def locked(self, step: Callable[[], Any]) -> Any:
        """Run `step` under the record's lock, and return what it returns."""
        return self.rec.locked(step)

    def close(self) -> None:
        """Give this process's hold back now (idempotent)."""
        self._release()

    def _enter_party(self) -> None:
        if self.away is not None:
            self.away.call("party")
        else:
            self.locked(lambda: add_pid(self.rec.words, PARTIES, PARTY_SLOTS, os.getpid()))

    def _attach(self) -> None:
        chan = self.hold.chans[0]
        if isinstance(chan, RemoteChannel):
            if not self._across:
                self.hold.release()
                raise explain(chan.sdesc, ChannelDestroyed(f"no record named {chan.sdesc} on this node"))
            self.away = Away(chan)
        else:
            assert isinstance(chan, Record)
            self.rec, self.away = chan, None

    def _after_fork(self) -> None:
        """In a child forked by multiprocessing: a fresh handle on the parent's references (it cannot
        make GS requests: it is not a managed process)."""
        self.hold = Hold(self.hold.refs, owned=False, record=True)
        self._attach()
        if self._party:
            self._enter_party()
        self._release = util.Finalize(self, self.hold.release, exitpriority=-10)


def _rebuild(refs: list[tuple[int, str]], party: bool) -> Home:
    return Home.rebuild(refs, party=party)
