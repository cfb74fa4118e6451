"""A short, adaptive busy wait before a receiver sleeps for its next message, for the steps of a
round trip between nodes (MULTINODE §5; issue 17's round trips): in a transport agent's loop of
operations (trio: `HotWait.spin`) and in a process waiting for an agent's answer (`spin_blocking`).

Why. On a virtual machine an idle CPU halts, and waking it (an interrupt through the hypervisor)
costs tens of microseconds: on the 2-CPU test machines (haltpoll with no guest polling) a pipe write
that woke a sleeping agent was seen a median 78 µs later. A Queue round trip between two nodes passes
the home node's agent several times (the receive's answer, its ACK, the echo's post, the next
receive) and the remote process twice; each of them had gone to sleep in between, so each step
paid that wake, and the round trip was 3.7x a raw TCP ping-pong (whose two processes pay it once
each). Kept awake for a few hundred microseconds after each message, the agent and the waiting
process see the next one at once: the 8 B Queue round trip went from about 223 to 160 µs, the
Pipe's from 301 to 220 µs (medians of alternate runs on two isolated nodes), and the agent's CPU
time per round trip did not grow (it was busy most of that time anyway).

How. Until `ready()` (a message is there) or the spin's length has passed, the waiter stays on its
CPU, yielding it (`sched_yield`) between looks to any other thread that has work there: a spinner
never holds up a thread with work (a process's own ZeroMQ I/O thread, which must run to hand it
the answer, is usually on its CPU), it only keeps an idle CPU from halting. The agent's loop also
lets its other tasks run at each look (a trio checkpoint: the loop polls its fds without sleeping, so
a doorbell another task waits on is seen at once). **[choice]** The agent yields its CPU too,
although its round trips were about 10 % faster without (Queue 145 against 162 µs, medians of six
alternate runs; the Pipe's alike): a process that shares the agent's CPU (pinned there, or on a
machine of few CPUs) then waited for the agent's spin to end, and its round trips doubled (400-520 µs
against 250-370 µs with the yield). The length adapts to the gaps between messages
(`arrived`): a gap no longer than the maximum raises it to cover that gap with a quarter to spare;
a longer gap halves it, so a waiter whose messages come far apart (a run that computes, an idle
run, a receive that waits for a producer) soon stops spinning at all, and the first burst of close
messages brings it back. The price is at most the maximum in CPU time per message; a waiter whose
messages come closer than that stays awake.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Final

AGENT_SPIN_MAX_S: Final = 400e-6
"""The longest spin of a transport agent's loop of operations (200 µs was as good for a Queue round
trip, slower for a Pipe's, whose home steps take longer)."""
PROCESS_SPIN_MAX_S: Final = 200e-6
"""The longest spin of a process's thread waiting for an agent's answer."""
SPIN_FLOOR_S: Final = 2e-6
"""A spin shorter than this is no spin (it could not catch a message in time)."""


class HotWait:
    """The adaptive spin of one receiver (a loop, or a thread's socket): see the module docstring."""

    def __init__(self, max_s: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.max_s = max_s
        self.spin_s = max_s / 4
        """How long the next spin lasts at most."""
        self._clock = clock
        self._idle_since = clock()

    async def spin(self, ready: Callable[[], bool], checkpoint: Callable[[], Awaitable[None]]) -> bool:
        """In an event loop: stay awake until `ready()` (True) or the spin's length has passed (False),
        letting the loop's other tasks run at each `checkpoint()` (`trio.lowlevel.checkpoint`: passed
        in, so that a process's thread, which uses `spin_blocking`, never imports trio); at least one.
        Then the caller waits as usual and calls `arrived` once its message came."""
        now = self._idle_since = self._clock()
        end = now + self.spin_s
        while True:
            await checkpoint()
            if ready():
                return True
            if self._clock() >= end:
                return False
            os.sched_yield()

    def spin_blocking(self, ready: Callable[[], bool]) -> bool:
        """In a thread: as `spin`, without a loop to yield to."""
        now = self._idle_since = self._clock()
        end = now + self.spin_s
        while not ready():
            if self._clock() >= end:
                return False
            os.sched_yield()
        return True

    def arrived(self) -> None:
        """The awaited message came: learn from the gap since the spin began."""
        gap = self._clock() - self._idle_since
        if gap <= self.max_s:
            self.spin_s = max(self.spin_s, min(self.max_s, gap * 1.25))
        else:
            self.spin_s /= 2
            if self.spin_s < SPIN_FLOOR_S:
                self.spin_s = 0.0
