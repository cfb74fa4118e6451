"""A queue's channels and this process's references to them in Global Services (`Hold`).

A queue's channels are ref-counted in Global Services (GSChannelCreate with
`ChannelOptions.ref_count`). The creating process holds one reference; **pickling takes another one**
(GSChannelQuery with `inc_refcnt`) that the unpickled handle inherits, so a queue handed to a child can
never be destroyed between the pickling and the child's attach, even if the parent drops its own
handle at once. A process gives its reference back (GSChannelDestroy with `dec_ref`) when the queue is
closed, garbage-collected, or at process exit (a `multiprocessing.util.Finalize`), after its feeder
thread has flushed; the last one destroys the channels. References that are never given back (a
process killed with SIGKILL, a pickle never unpickled) keep the channels until the runtime tears down,
which destroys every channel of the run: nothing outlives the runtime either way.

Sizing: a packed ring per queue, which holds `QUEUE_CAPACITY` messages of `QUEUE_BLOCK_SIZE` bytes and
more smaller ones (touched as it is used; a pipe's buffer is 64 KiB); a message larger than the ring
travels in a side file of its own (see `dragon.transport.Channel`). A bounded queue adds a channel of
`maxsize` slots (not packed: it counts items).
"""

from __future__ import annotations

import os
import threading
from multiprocessing import util
from typing import Final, NamedTuple

from dragon.client.nodes import explain, home_of
from dragon.client.remote import RemoteChannel
from dragon.client.requests import channel_add_ref, channel_create, channel_release, give_back_quietly, run
from dragon.descriptors import ChannelDescriptor
from dragon.errors import DragonError
from dragon.mp.names import channel_label
from dragon.transport import MIN_BLOCK_SIZE, Channel, ChannelDestroyed, Record

QUEUE_CAPACITY: Final = 8192
"""Messages of up to QUEUE_BLOCK_SIZE bytes a queue's channel holds at least: a ring of about 2 MB, which
holds two 1 MiB items (copying them through the ring costs a tenth of writing a side file to tmpfs)."""
QUEUE_BLOCK_SIZE: Final = MIN_BLOCK_SIZE
"""The channel is packed (`Channel.create`): an item takes its own size, so small items (the common
case) take less than a block each (30,000 items of 64 bytes fit); larger ones take several blocks,
or a side file."""


class Shape(NamedTuple):
    """How to make one of a queue's channels."""

    capacity: int
    block_size: int
    packed: bool
    record: bool = False  # the home of a synchronization object: attached as a `Record`


ITEMS: Final = Shape(QUEUE_CAPACITY, QUEUE_BLOCK_SIZE, packed=True)
"""A queue's channel of items (the bound of a bounded queue is a separate channel: `Queue._slots`)."""
RECORD: Final = Shape(1, MIN_BLOCK_SIZE, packed=False, record=True)
"""The home of a synchronization object (`dragon.transport.Record`): its state is in the header; the
ring of one block is unused."""


def _create_channel(shape: Shape, label: str) -> ChannelDescriptor:
    """A new ref-counted channel through GS (this process holds its one reference); `label` is what
    `dragon status` calls it. A queue made before the first process of a plain `python` program
    brings the background runtime up."""
    return run(
        channel_create(
            capacity=shape.capacity,
            block_size=shape.block_size,
            packed=shape.packed,
            ref_count=True,
            label=label,
            record=shape.record,
        ),
        start_runtime=True,
    )


def _add_ref(c_uid: int) -> ChannelDescriptor:
    """One more GS reference to channel `c_uid`; ChannelDestroyed if it is gone. Never starts a
    runtime: a queue to pickle was made in a live one."""
    return run(channel_add_ref(c_uid))


def _drop_ref(c_uid: int) -> None:
    """Give one GS reference back; the last one destroys the channel. Quiet if the runtime is gone
    (it destroyed every channel) or the channel was destroyed already; never starts a runtime.

    A finalizer that the garbage collector runs inside this thread's own GS call (an object in a
    reference cycle freed there) gives it back from a thread of its own, without waiting: waiting
    here could wait for this thread, the one reading the replies."""
    from dragon.client.gs_client import in_call_here

    if in_call_here():
        threading.Thread(target=_drop_ref, args=(c_uid,), name="dragon-drop-ref", daemon=True).start()
        return
    try:
        give_back_quietly(c_uid)
    except DragonError:
        pass


def _destroy(c_uid: int) -> None:
    """Destroy channel `c_uid` whatever references are left; quiet if it (or the runtime) is gone."""
    try:
        run(channel_release(c_uid, dec_ref=False))
    except DragonError:
        pass


class Hold:
    """This process's hold on a queue's channels: a transport handle on each and, unless `owned` is
    False, one GS reference to each.

    Shared by the queue object and its feeder thread (`use`/`release`): the last of them to let go
    closes the handles and gives the references back, so a feeder always finishes its flush first.
    """

    def __init__(self, refs: list[tuple[int, str]], *, owned: bool, record: bool = False) -> None:
        """Attach to each channel of `refs` ((c_uid, sdesc) pairs), as `Record`s if `record`. If that
        fails (ChannelDestroyed), the references are given back before the error propagates."""
        self.refs = refs
        self.chans: list[Channel] = []
        kind = Record if record else Channel
        self._owned, self._pid, self._record = owned, os.getpid(), record
        self._users = 1
        self._lock = threading.Lock()
        try:
            for _, sdesc in refs:
                node = home_of(sdesc)
                if node is not None:  # a channel (or record) of another node: through the agents (issue 17)
                    self.chans.append(RemoteChannel(node, sdesc))  # type: ignore[arg-type]
                    continue
                try:
                    self.chans.append(kind.attach(sdesc))
                except ChannelDestroyed as exc:
                    raise explain(sdesc, exc) from None
        except BaseException:
            self._users = 0
            self._let_go()
            raise

    @classmethod
    def create(cls, *shapes: Shape, kinds: tuple[str, ...]) -> Hold:
        """New channels of the given shapes, each with this process's reference, labelled as a
        channel of `kinds[i]` made by this process (`Queue`, `Queue slots`, `Pipe`, ...)."""
        refs: list[tuple[int, str]] = []
        try:
            for i, shape in enumerate(shapes):
                desc = _create_channel(shape, channel_label(kinds[i]))
                refs.append((desc.c_uid, desc.sdesc))
        except BaseException:
            for c_uid, _ in refs:
                _drop_ref(c_uid)
            raise
        return cls(refs, owned=True, record=any(shape.record for shape in shapes))

    def new_refs(self) -> list[tuple[int, str]]:
        """One more reference to each channel, for a pickled handle to inherit."""
        refs: list[tuple[int, str]] = []
        try:
            for c_uid, _ in self.refs:
                desc = _add_ref(c_uid)
                refs.append((desc.c_uid, desc.sdesc))
        except BaseException:
            for c_uid, _ in refs:
                _drop_ref(c_uid)
            raise
        return refs

    def use(self) -> None:
        with self._lock:
            self._users += 1

    def release(self) -> None:
        """One user lets go; the last one closes the handles and drops the references."""
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self._let_go()

    def destroy(self) -> None:
        """End the channels for every process now, whatever references others still hold (for
        channels only their maker's own helpers use, such as a Pool's); this process's handles are
        closed too. Only in the process that made the hold; idempotent."""
        for chan in self.chans:
            chan.close()
        if self._owned and self._pid == os.getpid():
            for c_uid, _ in self.refs:
                _destroy(c_uid)
            self._owned = False  # nothing left to give back

    def _let_go(self) -> None:
        """Close the handles and give the references back. A record's handle stays open when its
        process's exit finalizers let it go: multiprocessing runs them before it joins the
        process's non-daemon threads, which may still use the object (an Event set by such a
        thread, as the stdlib's semaphores allow); the process's end closes it."""
        if not (self._record and util.is_exiting()):
            for chan in self.chans:
                chan.close()
        if self._owned and self._pid == os.getpid():
            for c_uid, _ in self.refs:
                _drop_ref(c_uid)
