"""A synchronization object's operations for its users of other nodes, carried out at its home by the
home node's transport agent (issue 17; `dragon.mp.away` is the users' side).

A record lives in its home node's /dev/shm (`dragon.transport.records`). A user on that node
operates on it directly, as on one node (no change, no cost). A user on another node sends each
operation as one `transport.forward.ChannelOp` (op RECORD, the record's attach descriptor, one
msgpack `Request`: the operation's name, the user's name in the record's words and the arguments);
the home node's agent runs it here (`serve`), **in a thread of its own** (`THREADS` at most: a
blocked acquire, a wait for an Event, are the home's own blocking waits, bounded by the request's
timeout) and answers with one msgpack pair (True, result) or (False, (error class, text)), which
`dragon.mp.away` returns or raises. So an operation is the same step under the home's lock that a
local user makes, and the wake-up of a remote waiter is its answer.

**Who.** A remote user is `records.remote_holder(node, pid)` in the record's words (a hold, a
semaphore pair, a party), never a pid of the home's. Global Services tells every home of every
process exit (`reclaim`, a Request of its own, no answer): the home gives back what that number
held, as `records.reclaim` does for a local pid, and a wait of that process still running here gives
back whatever it gets (its requester is gone: it was killed while waiting, or its node was lost); a
Condition's sleepers and a Barrier's arrivals it entered and never waited for are counted out
(`_entered`).

**Timeouts.** The home waits exactly the requester's timeout, so the answer is on its way when the
requester's own wait ends (it allows `dragon.client.remote.ANSWER_MARGIN_S` more for the trip): an
acquire never succeeds here for a requester that stopped waiting, unless its answer takes longer
than that margin to travel **[known window: the hold then stays until that process ends, when
`reclaim` gives it back]**.
"""

from __future__ import annotations

import _multiprocessing  # type: ignore[import-not-found]  # no stubs in typeshed
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple

import msgspec
import trio

from dragon.mp import pipe_home
from dragon.mp.away import Request
from dragon.mp.events import PARTIES_N, Barrier, BrokenBarrierError, Condition, Event
from dragon.mp.locks import take_pair, take_told
from dragon.mp.task_count import add, wait_done
from dragon.transport import Buffer, ChannelDestroyed, ChannelError, Record
from dragon.transport.forward import ChannelOp
from dragon.transport.records import (
    HOLD_SLOTS,
    HOLDS,
    KINDS,
    PARTIES,
    PARTY_SLOTS,
    SEM_MAX,
    SINGLE_HOLDER,
    add_pid,
    holder_name,
    reclaim,
    sem_name,
)
from dragon.transport.records import KIND as KIND_WORD

log = logging.getLogger(__name__)

THREADS: Final = 1024
"""Operations of remote users running at once on one node (each a thread: most of them wait)."""
NOBODY: Final = -1
"""The HOLDS of a free Lock or RLock (`dragon.mp.locks.NOBODY`)."""


class _Home:
    """A record this agent has attached for remote users, and its semaphore once opened."""

    def __init__(self, rec: Record) -> None:
        self.rec = rec
        self._sem: Any = None

    def sem(self) -> Any:
        """The record's named semaphore (the Lock family's count), opened once, as a plain semaphore:
        the holder of an RLock and its levels are its remote handle's to keep."""
        if self._sem is None:
            maxvalue = int(self.rec.words[SEM_MAX]) or _multiprocessing.SemLock.SEM_VALUE_MAX
            self._sem = _multiprocessing.SemLock._rebuild(0, 1, maxvalue, sem_name(self.rec.name))
        return self._sem


class _Wait:
    """One operation of `who` running here on `home`; `gone` once its requester is known to have ended."""

    __slots__ = ("gone", "home", "who")

    def __init__(self, who: int, home: _Home) -> None:
        self.who, self.home, self.gone = who, home, False


_homes: dict[str, _Home] = {}
_running: set[_Wait] = set()
_lock = threading.Lock()
"""Guards `_homes` and `_running`; a grant checks `gone` and records its holder under it."""
_limiter: trio.CapacityLimiter | None = None
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Request)


def _home(sdesc: str) -> _Home:
    """The record `sdesc`, attached once and kept (until it is destroyed and no operation uses it:
    `_reclaim`). ChannelDestroyed if it was destroyed."""
    with _lock:
        home = _homes.get(sdesc)
        if home is None:
            home = _homes[sdesc] = _Home(Record.attach(sdesc))
        if home.rec.destroyed:
            raise ChannelDestroyed(f"the object of record {sdesc} was destroyed")
        return home


def _attached(sdesc: str) -> Record:
    """A channel of this node by its name, attached once (`_home`): a Pipe's data channels."""
    return _home(sdesc).rec


def _grant(wait: _Wait, record: Callable[[], None], undo: Callable[[], None]) -> bool:
    """After an acquire succeeded here: note its holder (`record`), or, if the requester is gone, give
    it back (`undo`) and say so (False)."""
    with _lock:
        if not wait.gone:
            record()
            return True
    undo()
    return False


# ------------------------------------------------------------------------- the Lock family


def _told(words: memoryview) -> str:
    """Under the record's lock: the dead holder no acquirer was told of yet ("" if none)."""
    dead = take_told(words)
    return holder_name(dead) if dead else ""


def _acquire(home: _Home, wait: _Wait, timeout: float | None) -> tuple[bool, str]:
    """Take one of the count (wait at most `timeout`; 0 polls): (taken, the dead holder to tell of)."""
    sem, rec, words, who = home.sem(), home.rec, home.rec.words, wait.who
    if not sem.acquire(False) and not (timeout != 0 and sem.acquire(True, timeout)):
        return False, ""
    single = int(words[KIND_WORD]) in SINGLE_HOLDER
    told: list[str] = []

    def record() -> None:
        rec.lock()
        try:
            told.append(_told(words))
            if single:
                words[HOLDS] = who
                return
            index = _pair(words, who)
            if index >= 0:
                words[index + 1] += 1
        finally:
            rec.unlock()

    if not _grant(wait, record, sem.release):
        return False, ""
    return True, told[0] if told else ""


def _release(home: _Home, wait: _Wait) -> None:
    """Give one of the count back (ValueError above the bound, as the standard library's)."""
    sem, rec, words, who = home.sem(), home.rec, home.rec.words, wait.who
    rec.lock()
    try:
        if int(words[KIND_WORD]) in SINGLE_HOLDER:
            before = int(words[HOLDS])
            words[HOLDS] = NOBODY
        else:
            index = _pair(words, who, take=False)
            before = int(words[index + 1]) if index >= 0 else 0
            if index >= 0:
                words[index + 1] = max(0, before - 1)
        try:
            sem.release()
        except BaseException:
            if int(words[KIND_WORD]) in SINGLE_HOLDER:
                words[HOLDS] = before
            elif index >= 0:
                words[index + 1] = before
            raise
    finally:
        rec.unlock()


def _free(home: _Home, wait: _Wait) -> None:
    """A Semaphore handle closed or its process ended normally: its pair freed, its count not given
    back (`dragon.mp.locks`)."""
    rec, words = home.rec, home.rec.words
    rec.lock()
    try:
        index = _pair(words, wait.who, take=False)
        if index >= 0:
            words[index] = words[index + 1] = 0
    finally:
        rec.unlock()


def _pair(words: memoryview, who: int, *, take: bool = True) -> int:
    """The index of `who`'s pair in the HOLDS table (the record's lock held): found, else taken if
    `take` (a free one), else -1."""
    for index in range(HOLDS, HOLDS + 2 * HOLD_SLOTS, 2):
        if words[index] == who:
            return index
    if take:
        return take_pair(words, who)
    return -1


# ------------------------------------------------------------- Event, Condition, Barrier, parties


_entered: dict[tuple[_Home, int], int] = {}
"""Per Condition or Barrier and process of another node: its sleepers counted by "cond_enter" (its
arrivals counted by "barrier_enter", the last of a round but) whose "cond_wait" ("barrier_wait") has
not come yet. A process killed between the two leaves a sleeper (an arrival) that no wait here
serves; a process of another node counts as alive until its reclaim (`records.holder_alive`), so
nothing else ever counts it out: a notify would give it a ticket that nobody takes, a Barrier's
`reset` would wait for it for ever. `_reclaim` counts those out (`_count_out`), as `events._prune`
and `Barrier._reset` count out a dead local pid's. Its waits still running here stay counted: a
Condition's puts back the ticket it takes, a Barrier's leaves when the death breaks it."""
_entered_lock = threading.Lock()
"""Guards `_entered`; taken inside a record's lock, never around another lock."""


def _note_entered(home: _Home, who: int) -> None:
    """(In the record step that counted it.) One more of `who`'s enters whose wait is to come."""
    with _entered_lock:
        key = (home, who)
        _entered[key] = _entered.get(key, 0) + 1


def _wait_begins(home: _Home, who: int) -> bool:
    """A wait of `who` begins: False if `_reclaim` counted its enter out already (its request came
    after the news of its process's end: nobody waits for its answer). **[Known window: a wait that
    comes while `_reclaim` runs, after it marked the process's waits gone and before it counted its
    enters out, runs as a live one's: a Condition's ticket it takes is lost with it.]**"""
    with _entered_lock:
        key = (home, who)
        left = _entered.pop(key, 0) - 1
        if left > 0:
            _entered[key] = left
        return left >= 0


def _cond_enter(home: _Home, wait: _Wait) -> int:
    """A remote Condition waiter counts itself a sleeper (noted in `_entered`, in the same record step)."""
    cond = _cond(home, wait)

    def step() -> int:
        entered = cond._enter()
        _note_entered(home, wait.who)
        return entered

    return cond._locked(step)


def _cond_wait(home: _Home, wait: _Wait, entered: int, timeout: float | None) -> bool:
    """A remote Condition waiter's wait for its ticket; a ticket taken for a requester that is gone is
    put back for the sleepers notified with it (`Condition._put_back`)."""
    if not _wait_begins(home, wait.who):
        return False
    cond = Condition._there(home.rec, wait.who)
    notified = cond._await_ticket(entered, timeout)
    if notified and wait.gone:
        cond._locked(cond._put_back)
    return notified


def _barrier_enter(home: _Home, wait: _Wait, acting: bool) -> int:
    """A remote party arrives; unless it is the last of the round, its "barrier_wait" is to come
    (noted in `_entered`, in the record step of its arrival)."""
    barrier, words = _barrier(home, wait), home.rec.words

    def noted(index: int) -> None:
        if index + 1 < words[PARTIES_N]:
            _note_entered(home, wait.who)

    return barrier._enter(acting, noted)


def _barrier_wait(home: _Home, wait: _Wait, timeout: float | None) -> None:
    if _wait_begins(home, wait.who):
        _barrier(home, wait)._await_release(timeout)


def _party(home: _Home, wait: _Wait) -> None:
    """A process of another node holds the object: one of its parties (a Barrier's)."""
    home.rec.locked(lambda: add_pid(home.rec.words, PARTIES, PARTY_SLOTS, wait.who))


def _read(rec: Record, offset: int, size: int) -> bytes:
    """Bytes of a Value's or an Array's memory (the record's ring)."""
    with rec.data() as view:
        return bytes(view[offset : offset + size])


def _write(rec: Record, runs: list[tuple[int, bytes]]) -> None:
    """Store each (offset, bytes) run in a Value's or an Array's memory."""
    with rec.data() as view:
        for offset, data in runs:
            view[offset : offset + len(data)] = data


def _event(home: _Home, wait: _Wait) -> Event:
    return Event._there(home.rec, wait.who)


def _barrier(home: _Home, wait: _Wait) -> Barrier:
    return Barrier._there(home.rec, wait.who)


def _cond(home: _Home, wait: _Wait) -> Condition:
    return Condition._there(home.rec, wait.who)


OPERATIONS: Final[dict[str, Callable[..., Any]]] = {
    "acquire": _acquire,
    "release": _release,
    "value": lambda home, wait: int(home.sem()._get_value()),
    "free": _free,
    "party": _party,
    "data_read": lambda home, wait, offset, size: _read(home.rec, offset, size),
    "data_write": lambda home, wait, runs: _write(home.rec, runs),
    "event_is_set": lambda home, wait: _event(home, wait).is_set(),
    "event_set": lambda home, wait: _event(home, wait).set(),
    "event_clear": lambda home, wait: _event(home, wait).clear(),
    "event_wait": lambda home, wait, timeout: _event(home, wait).wait(timeout),
    "cond_enter": _cond_enter,
    "cond_wait": _cond_wait,
    "cond_give": lambda home, wait, n: (c := _cond(home, wait))._locked(lambda: c._give(n)),
    "cond_word": lambda home, wait, index: int(home.rec.words[index]),
    "barrier_enter": _barrier_enter,
    "barrier_wait": _barrier_wait,
    "barrier_action_done": lambda home, wait: (b := _barrier(home, wait))._locked(b._action_done),
    "barrier_action_failed": lambda home, wait: (b := _barrier(home, wait))._locked(b._action_failed),
    "barrier_n_waiting": lambda home, wait: _barrier(home, wait).n_waiting,
    "barrier_broken": lambda home, wait: _barrier(home, wait).broken,
    "barrier_abort": lambda home, wait: _barrier(home, wait).abort(),
    "barrier_reset": lambda home, wait: _barrier(home, wait).reset(),
    "tasks_add": lambda home, wait, n: add(home.rec, n),
    "tasks_join": lambda home, wait, timeout: wait_done(home.rec, timeout, lambda: wait.gone),
    "settle": lambda home, wait: None,  # answered after the requester's earlier posted ones: they are done
    **pipe_home.operations(_attached),
}
"""Each operation: (home, wait, *args) -> result; a blocking one takes the request's timeout last."""
BLOCKING: Final = frozenset({"acquire", "event_wait", "cond_wait", "barrier_wait", "tasks_join", *pipe_home.BLOCKING})


# ------------------------------------------------------------------------- running them


def _reclaim(who: int, abnormal: bool, sdescs: list[str]) -> None:
    """Process `who` ended: its waits here give back what they get, its holds come back. (And the
    records destroyed since the last exit are let go of here: their memory with them.)"""
    with _lock:
        for wait in _running:
            if wait.who == who:
                wait.gone = True
        used = {id(wait.home) for wait in _running}
        for sdesc in [s for s, home in _homes.items() if home.rec.destroyed and id(home) not in used]:
            rec = _homes.pop(sdesc).rec
            pipe_home.forget(rec.name)
            rec.close()
    for sdesc in sdescs:
        try:
            rec = _home(sdesc).rec
            warning = reclaim(rec, who, abnormal)
            pipe_home.reclaim(_attached, rec, who)
        except ChannelDestroyed:
            continue
        if warning:
            log.warning("%s", warning)
    with _entered_lock:
        homes = [home for home, w in _entered if w == who]
    for home in homes:
        _count_out(home, who)


def _count_out(home: _Home, who: int) -> None:
    """Count out what process `who` (ended) entered on a Condition or a Barrier and never waited for
    (`_entered`), in one step of its record: a Condition's sleepers (`Condition._count_out`), a
    Barrier's arrivals (each leaves as a waiter that the death's break woke would)."""
    rec = home.rec
    condition = int(rec.words[KIND_WORD]) == KINDS.index("Condition")

    def step() -> None:
        with _entered_lock:
            n = _entered.pop((home, who), 0)
        if n and condition:
            Condition._there(rec, who)._count_out(n)
        elif n:
            barrier = Barrier._there(rec, who)
            for _ in range(n):
                barrier._leave()

    try:
        rec.locked(step)
    except ChannelError:  # destroyed (or let go of here): nobody waits on it any more
        with _entered_lock:
            _entered.pop((home, who), None)


def _run(sdesc: str, req: Request, timeout: float | None) -> Any:
    if req.name == "reclaim":
        abnormal, sdescs = req.args
        _reclaim(req.who, bool(abnormal), list(sdescs))
        return None
    operation = OPERATIONS.get(req.name)
    if operation is None:
        raise ValueError(f"no operation {req.name!r} on a synchronization object")
    home = _home(sdesc)
    wait = _Wait(req.who, home)
    with _lock:
        _running.add(wait)
    try:
        args = [*req.args, timeout] if req.name in BLOCKING else req.args
        return operation(home, wait, *args)
    finally:
        with _lock:
            _running.discard(wait)


def _answer(ok: bool, value: Any) -> bytes:
    return _encoder.encode((ok, value))


class Done(NamedTuple):
    """What `serve` did: the encoded `result` (the agent answers with it, unless nobody waits for it:
    Global Services' "reclaim"), the message it took from a channel if it did (`taken`: a Pipe's
    receive; the agent keeps it until the requester has it), and whether it succeeded (`ok`)."""

    result: bytes
    taken: pipe_home.Taken | None = None
    ok: bool = True


def now(op: ChannelOp, payloads: Sequence[Buffer] = ()) -> Done | None:
    """Operation `op` if it can be done at once in the agent's loop, as it arrives (no task, no
    thread: `pipe_home.now`, and "settle"); None: `serve` it. A failure is left to `serve` too, which
    reports it."""
    payloads = payloads or op.payloads
    try:
        req = _decoder.decode(payloads[0]) if payloads else None
        if req is None:
            return None
        if req.name == "settle":
            return Done(_answer(True, None))
        if req.name not in pipe_home.AT_ONCE:
            return None
        value = pipe_home.now(_attached, _home(op.sdesc).rec, req.name, req.args)
    except (msgspec.DecodeError, ValueError, ChannelError, OSError):
        return None
    if value is pipe_home.LATER:
        return None
    if isinstance(value, pipe_home.Taken):
        return Done(_answer(True, value.data), value)
    return Done(_answer(True, value))


async def serve(op: ChannelOp, payloads: Sequence[Buffer] = ()) -> Done:
    """Carry out operation `op` (op RECORD or RECORD_POSTED) here: in a thread, or for a Pipe's send
    or receive that can, in the agent's own (`pipe_home.at_once`). `payloads`: the request when it
    came as a part of its own (a large one)."""
    global _limiter
    if _limiter is None:
        _limiter = trio.CapacityLimiter(THREADS)
    timeout = None if op.timeout < 0 else op.timeout
    try:
        payloads = payloads or op.payloads  # a large request travels as a part of its own
        req = _decoder.decode(payloads[0]) if payloads else None
        if req is None:
            raise ValueError("an operation on a synchronization object without its request")
        value = pipe_home.LATER
        if req.name == "settle":  # nothing to do: in the agent's own thread
            value = None
        elif req.name in pipe_home.AT_ONCE:
            value = await pipe_home.at_once(_attached, _home(op.sdesc).rec, req.name, req.args, timeout)
        if value is pipe_home.LATER:
            value = await trio.to_thread.run_sync(
                _run, op.sdesc, req, timeout, limiter=_limiter, abandon_on_cancel=True
            )
    except (
        msgspec.DecodeError,
        ValueError,
        AssertionError,
        BrokenBarrierError,
        ChannelError,
        OSError,
        EOFError,
    ) as exc:
        return Done(_answer(False, (type(exc).__name__, str(exc))), ok=False)
    if isinstance(value, pipe_home.Taken):
        return Done(_answer(True, value.data), value)
    return Done(_answer(True, value))


def reclaim_request(who: int, abnormal: bool, sdescs: list[str]) -> bytes:
    """What Global Services sends the home of records `sdescs` when process `who` ended (a payload
    for a RECORD `ChannelOp` with no answer)."""
    return _encoder.encode(Request(name="reclaim", who=who, args=[abnormal, sdescs]))
