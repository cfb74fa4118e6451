"""The locks of a channel's two directions, and locks kept between operations (held or leased).

Senders exclude each other with the send lock and receivers with the receive lock: per direction a
thread lock (threads of one handle) and the flock of that direction's doorbell FIFO (processes), so
at any moment the ring has one writer and one reader, and the two sides never wait for each other.

A handle may keep a direction's flock between operations, which takes two system calls off each
(half the cost of a small message): for good (`hold_lock`, for a channel one process alone uses that
way) or as a *lease* (`lease_lock`: while no other handle has ever taken that lock; a queue's usual
single producer and single consumer). A handle that takes the lock without a lease marks the
direction shared (a sticky header word) before waiting for the flock, and a watcher thread of the
leasing process gives the lease up when it sees the mark, so the newcomer waits once, for about
`LEASE_POLL_S`. The lease is the flock itself: the kernel releases it when its holder dies.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import weakref
from typing import Final

from ._layout import W_RECEIVED, W_RSHARED, W_SENT, W_SSHARED, _Handle, fence
from ._shm import open_own

LEASE_POLL_S: Final = 0.01  # how often a process looks whether another handle wants a lock it leases
LEASE_IDLE_S: Final = 0.2  # a lease unused this long is given back (and taken again when used)
LOCK_SPIN_S: Final = 20e-6  # longest retrying of a taken flock before sleeping on it (see `_lock`)


class _Locks(_Handle):
    """Taking and giving back a direction's locks; keeping them (`hold_lock`, `lease_lock`)."""

    __slots__ = ()

    def _lock(self, fd: int, blocking: bool) -> bool:
        """Take a direction's flock (True), or, not `blocking`, False if another process still holds
        it after LOCK_SPIN_S of retries.

        A holder keeps it for a few microseconds, so a take first retries for up to LOCK_SPIN_S
        before it sleeps in the kernel (blocking) or gives up (not): sleeping there and being woken
        costs each side a context switch, many times the wait (two Pool workers sending results, for
        one); and a transport agent, which never blocks, would otherwise hand a send that met a
        worker's few-microsecond hold of the lock to a task of its own (cross-node Pool rows)."""
        if fd in self._held:
            return True
        if fd in self._lease_wanted and self._try_lease(fd):
            return True
        self._announce(fd)
        end = time.perf_counter() + LOCK_SPIN_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.perf_counter() >= end:
                    break
        if not blocking:
            return False
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True

    def _unlock(self, fd: int) -> None:
        if fd not in self._held:
            fcntl.flock(fd, fcntl.LOCK_UN)
        else:  # no system call: fence the publishing store from the waiter count read next
            fence()

    def _side(self, side: str) -> tuple[int, threading.Lock]:
        """The doorbell fd whose flock is the lock of direction `side` ("send" or "recv"), and that
        direction's thread lock."""
        if side == "send":
            return self.sbell, self._slock
        if side == "recv":
            return self.rbell, self._rlock
        raise ValueError(f'a channel direction is "send" or "recv", not {side!r}')

    def hold_lock(self, side: str) -> None:
        """Keep the process-shared lock of one direction (`side` "send" or "recv") for as long as
        this handle is open, for a channel that only this process sends on (or receives from): a
        Pool's task channel has one sender, its result channel one receiver.

        Each operation of that direction then skips two system calls (a flock and its release),
        which in a process with other busy threads cost far more than their own time: each one lets
        another thread take the GIL. Threads of this process still exclude each other as before.
        Another process's operation of that direction blocks (or, without blocking, fails) until
        this handle is closed or its process dies, when the kernel releases the lock. Idempotent.
        """
        fd, tlock = self._side(side)
        with tlock:
            self.check_open()
            if fd not in self._held:
                self._announce(fd)  # a lease of another handle ends
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._held = self._held | {fd}
            self._leased, self._lease_wanted = self._leased - {fd}, self._lease_wanted - {fd}  # kept for good
        with _leases_lock:
            _holders.add(self)  # for a forked child (`_leave_locks_in_child`)

    def lease_lock(self, side: str) -> None:
        """Keep the process-shared lock of one direction (`side` "send" or "recv") while no other
        handle uses that direction: the common case of a queue with one producer and one consumer
        process. The first operation of that direction on this handle takes the lease, if no other
        handle has ever taken that lock; from then on its operations skip the flock and its release
        (two system calls, about half the cost of a small receive), as with `hold_lock`.

        Unlike `hold_lock` this is safe whoever else comes: a handle that takes the lock without a
        lease first marks the direction as shared in the header (a sticky word), then waits for the
        flock; a watcher thread of the leasing process looks at that word every LEASE_POLL_S and
        gives the lease up for good (under the handle's thread lock, so never within an operation),
        after which everybody takes the flock per operation. So a second consumer (or producer) waits
        once, for about LEASE_POLL_S, and nobody starves. The lease is the flock itself, so a
        leaseholder that dies at any point (or closes its handle) leaves it to the kernel to release,
        and the channel is as consistent as after any crash; a forked child gets a description of
        its own for a leased doorbell (`_leases_after_fork`), so it never keeps its parent's lease.
        The cost: the first other handle waits up to LEASE_POLL_S (more if the leaseholder's process
        is stopped or a C extension keeps its GIL), and the leasing process has one thread that
        wakes every LEASE_POLL_S while it leases. A lease unused for LEASE_IDLE_S is given back
        and taken again by the next operation (a flock and a thread start), so a queue that sits
        idle costs its process no wake-ups. Idempotent; no effect on a held direction."""
        fd, tlock = self._side(side)
        with tlock:
            self.check_open()
            if fd not in self._held:
                self._lease_wanted = self._lease_wanted | {fd}

    def _announce(self, fd: int) -> None:
        """Before taking the flock of `fd` without a lease: mark that direction shared, which ends
        any other handle's lease of it (see `lease_lock`). A store once per channel, a load after."""
        word = W_RSHARED if fd == self.rbell else W_SSHARED
        if not self._w[word]:
            self._w[word] = 1

    def _try_lease(self, fd: int) -> bool:
        """Take the lease `lease_lock` asked for (the direction's thread lock held): True if this
        handle now keeps the flock of `fd`. Tried once: no lease once the direction is shared."""
        self._lease_wanted = self._lease_wanted - {fd}
        w, word = self._w, (W_RSHARED if fd == self.rbell else W_SSHARED)
        if w[word]:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another handle is taking it (it announced), or holds or leases it
            return False
        # The flock call is a full barrier: a handle that announced before we got the lock is seen
        # here; one that announces later is seen by the watcher. The lease is recorded before the
        # watcher is asked to look after it, so that a watcher deciding at that very moment that
        # this handle leases nothing cannot drop it (see `_watch_leases`).
        if w[word]:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        self._held, self._leased = self._held | {fd}, self._leased | {fd}
        if not _watch_lease(self):
            self._held, self._leased = self._held - {fd}, self._leased - {fd}
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True

    def _keep_lease(self) -> bool:
        """The watcher's look: give up each lease whose direction became shared (for good), and each
        one unused for LEASE_IDLE_S (to be taken again by the next operation, so that an idle queue
        costs its process no wake-ups); False once this handle leases nothing (any more).

        Never waits for a direction's thread lock: an operation holding it may be waiting for a
        flock that another handle's lease keeps, maybe one this same watcher must give up first.
        A busy direction is looked at again at the next poll."""
        w = self._w
        busy = False
        for fd, tlock, word, count in (
            (self.rbell, self._rlock, W_RSHARED, W_RECEIVED),
            (self.sbell, self._slock, W_SSHARED, W_SENT),
        ):
            if fd not in self._leased:
                continue
            if not tlock.acquire(blocking=False):
                busy = True
                continue
            try:
                if self._closed or fd not in self._leased:
                    continue
                if w[word]:  # shared: for good
                    self._end_lease(fd)
                    continue
                seen, idle = self._lease_seen.get(fd, (-1, 0))
                idle = idle + 1 if int(w[count]) == seen else 0
                if idle * LEASE_POLL_S >= LEASE_IDLE_S:  # idle: the next operation takes it again
                    self._end_lease(fd)
                    self._lease_wanted = self._lease_wanted | {fd}
                    self._lease_seen.pop(fd, None)
                else:
                    self._lease_seen[fd] = (int(w[count]), idle)
            finally:
                tlock.release()
        return busy or bool(self._leased)

    def _end_lease(self, fd: int) -> None:
        """Give the lease of `fd` back (its thread lock held)."""
        self._leased, self._held = self._leased - {fd}, self._held - {fd}
        fcntl.flock(fd, fcntl.LOCK_UN)

    def _leave_locks_in_child(self) -> None:
        """In a forked child: give each doorbell fd whose flock this handle keeps (held or leased) a
        file description of its own (a flock belongs to the description, which the parent still
        uses), so the child keeps nothing and takes the lock per operation, excluded by the parent."""
        if self._closed:
            return
        for fd, suffix in ((self.rbell, ".rbell"), (self.sbell, ".sbell")):
            if fd not in self._held:
                continue
            try:
                fresh = open_own(self.name + suffix, os.O_RDWR | os.O_NONBLOCK)
            except OSError:  # destroyed: any use of the handle fails anyway
                fresh = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                os.dup2(fresh, fd, inheritable=False)
            finally:
                os.close(fresh)
            self._leased, self._held = self._leased - {fd}, self._held - {fd}


_leases: weakref.WeakSet[_Locks] = weakref.WeakSet()  # handles of this process that lease a lock
_leases_lock = threading.Lock()
_lease_watcher: threading.Thread | None = None
_holders: weakref.WeakSet[_Locks] = weakref.WeakSet()  # handles of this process that hold a lock (`hold_lock`)


def _watch_lease(chan: _Locks) -> bool:
    """Have the watcher thread look after `chan`'s new lease (starting it if need be); False if no
    thread can be started (interpreter shutdown): then there is no lease."""
    global _lease_watcher
    with _leases_lock:
        _leases.add(chan)
        if _lease_watcher is None:
            thread = threading.Thread(target=_watch_leases, name="ChannelLeaseWatcher", daemon=True)
            try:
                thread.start()
            except RuntimeError:
                _leases.discard(chan)
                return False
            _lease_watcher = thread
    return True


def _watch_leases() -> None:
    """The watcher thread: every LEASE_POLL_S, end the leases whose direction became shared (see
    `lease_lock`); exits when this process leases nothing."""
    global _lease_watcher
    try:
        while True:
            time.sleep(LEASE_POLL_S)
            with _leases_lock:
                chans = list(_leases)
                if not chans:
                    _lease_watcher = None
                    return
            for chan in chans:
                if not chan._keep_lease():
                    with _leases_lock:  # a lease taken since is recorded before it is added here
                        if not chan._leased:
                            _leases.discard(chan)
    finally:
        with _leases_lock:
            if _lease_watcher is threading.current_thread():  # died of an error: let the next lease start one
                _lease_watcher = None


def _leases_after_fork() -> None:
    """In a forked child: no lease or held lock of the parent's lives on (nor its watcher thread)."""
    global _leases_lock, _lease_watcher
    _leases_lock, _lease_watcher = threading.Lock(), None
    for chan in list(_leases):
        chan._leave_locks_in_child()
    for chan in list(_holders):
        chan._leave_locks_in_child()
    _leases.clear()
    _holders.clear()


os.register_at_fork(after_in_child=_leases_after_fork)
