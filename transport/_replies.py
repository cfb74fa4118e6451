"""Replies matched to their requests by `ref` (spec §4: a response's `ref` is its request's `tag`).

Every actor that sends requests on one link and reads the replies in a loop of its own (the
launcher, Global Services calling Local Services, the clients of Global Services, `dragon status`)
needs the same small table: the
requester registers its tag *before* sending (the reply may arrive before it starts waiting), the
reading loop files each reply that arrives, and when the link dies every waiter must learn it
instead of hanging. A reply nobody waits for (a late one after a timeout, a stray ref) is logged and
dropped, never an error of the reading loop.

Plain Python until something awaits: the blocking client in every managed process uses this table
too (under its own thread lock), and such a process imports neither trio nor logging.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from ._errors import DragonError

if TYPE_CHECKING:
    import trio


class HasRef(Protocol):
    """A reply: anything with the int `ref` of the request it answers."""

    @property
    def ref(self) -> int: ...


ReplyT = TypeVar("ReplyT", bound=HasRef)


class LinkDown(DragonError):
    """The link a reply would come on died (`PendingReplies.fail_all`) before the reply came."""


class Waiter(Generic[ReplyT]):
    """One registered request: `await waiter.reply()` returns its reply or raises `LinkDown`."""

    def __init__(self, table: PendingReplies[ReplyT], tag: int) -> None:
        self.tag = tag
        self._table = table
        self._event: trio.Event | None = None  # made by the first `reply()`, the only one that awaits
        self._done = False
        self._reply: ReplyT | None = None
        self._failure: str | None = None

    def _file(self, reply: ReplyT) -> None:
        self._reply = reply
        self._wake()

    def _fail(self, reason: str) -> None:
        self._failure = reason
        self._wake()

    def _wake(self) -> None:
        self._done = True
        if self._event is not None:
            self._event.set()

    @property
    def arrived(self) -> ReplyT | None:
        """The reply if it has come, else None: for a requester that reads the link itself in a
        blocking loop (`dragon status`, the blocking client), where nothing awaits. Raises LinkDown as
        `reply()` does."""
        if self._reply is None and self._failure is not None:
            raise LinkDown(f"{self._table.where} is down: {self._failure}")
        return self._reply

    async def reply(self) -> ReplyT:
        """Wait for the reply. Raises LinkDown if the link died first (also if it had died already)."""
        if not self._done:
            import trio  # loaded already: the caller awaits in trio

            self._event = trio.Event()
            await self._event.wait()
        if self._reply is not None:
            return self._reply
        raise LinkDown(f"{self._table.where} is down: {self._failure}")


class PendingReplies(Generic[ReplyT]):
    """The requests of one link that wait for a reply, by tag.

    Use::

        with pending.expect(req.tag) as waiter:
            await outbox.send(req)
            resp = await waiter.reply()

    and in the loop that reads the link, `pending.file(resp)` for each reply, `pending.fail_all(why)`
    when the link dies. Leaving the `with` block (replied, cancelled, timed out) forgets the tag, so a
    reply arriving later is one nobody waits for.
    """

    def __init__(self, where: str, *, late_is_normal: bool = False) -> None:
        """`late_is_normal`: a reply nobody waits for is the answer to a call its caller cancelled,
        which this link's users do as a matter of course (the trio client in a user's program):
        dropped with a DEBUG line, not a warning (which an unconfigured program prints)."""
        self.where = where  # names the link in logs and errors: "the LS channel"
        self._late_level = 10 if late_is_normal else 30  # logging.DEBUG, logging.WARNING
        self._waiters: dict[int, Waiter[ReplyT]] = {}
        self._failure: str | None = None

    def __len__(self) -> int:
        return len(self._waiters)

    @contextmanager
    def expect(self, tag: int) -> Iterator[Waiter[ReplyT]]:
        """Register `tag` for the block's length. ValueError if the tag is already waited for."""
        waiter = self.register(tag)
        try:
            yield waiter
        finally:
            self.forget(waiter)

    def register(self, tag: int) -> Waiter[ReplyT]:
        """`expect` without the block, for a caller whose registering and forgetting are each under a
        lock of its own (the blocking client's threads); pair it with `forget`."""
        if tag in self._waiters:
            raise ValueError(f"tag {tag} is already waiting for a reply on {self.where}")
        waiter = Waiter(self, tag)
        if self._failure is not None:
            waiter._fail(self._failure)
        self._waiters[tag] = waiter
        return waiter

    def forget(self, waiter: Waiter[ReplyT]) -> None:
        """Stop waiting: a reply for `waiter.tag` that comes later is one nobody waits for."""
        if self._waiters.get(waiter.tag) is waiter:
            del self._waiters[waiter.tag]

    def file(self, reply: ReplyT) -> bool:
        """Hand `reply` to the request it answers; False (and a warning, see `late_is_normal`) if nobody
        waits for it."""
        waiter = self._waiters.pop(reply.ref, None)
        if waiter is None:
            import logging  # only on this rare path: the client's processes do not import logging

            log = logging.getLogger("dragon.messages")
            log.log(self._late_level, "a reply nobody waits for on %s (ref=%d): %r", self.where, reply.ref, reply)
            return False
        waiter._file(reply)
        return True

    def fail_all(self, reason: str) -> None:
        """The link died: every waiter, now and later, raises LinkDown(reason). The first reason stays."""
        if self._failure is None:
            self._failure = reason
        for waiter in self._waiters.values():
            waiter._fail(self._failure)
        self._waiters.clear()
