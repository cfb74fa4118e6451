"""Many senders and many receivers, each a real process, through one shared-memory channel."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import trio

from dragon.transport import TrioChannel

from channel_worker import WORKER

SENDERS = RECEIVERS = 4
PER_SENDER = 20_000
GUARD_S = 240.0  # against hangs only; the elapsed time is printed, never asserted


async def test_four_senders_four_receivers_one_channel(name: str) -> None:
    # A 128 KiB ring: payloads run log-uniformly from 1 B to 256 KiB, so the largest take the
    # side-file path and the ring fills up and empties again all the time.
    chan = TrioChannel.create(name, capacity=32, block_size=4096)
    reports: dict[int, dict[str, Any]] = {}
    start = time.monotonic()

    async def receiver(r: int) -> None:
        done = await trio.run_process(
            [sys.executable, WORKER, "stress-recv", name, str(r)], capture_stdout=True, check=True
        )
        reports[r] = json.loads(done.stdout)

    try:
        with trio.fail_after(GUARD_S):
            async with trio.open_nursery() as nursery:
                for r in range(RECEIVERS):
                    nursery.start_soon(receiver, r)
                async with trio.open_nursery() as senders:
                    for s in range(SENDERS):
                        senders.start_soon(
                            trio.run_process,
                            [sys.executable, WORKER, "stress-send", name, str(s), str(PER_SENDER), "42"],
                        )
                for _ in range(RECEIVERS):
                    await chan.send(b"")  # one sentinel per receiver, after every sender finished
        stats = chan.statistics()
    finally:
        await chan.destroy()
    elapsed = time.monotonic() - start

    total_bytes = sum(rep["bytes"] for rep in reports.values())
    print(
        f"\nstress: {SENDERS}x{RECEIVERS} processes, {SENDERS * PER_SENDER} messages, "
        f"{total_bytes / 2**20:.0f} MiB in {elapsed:.1f} s",
        file=sys.stderr,
    )
    assert sorted(reports) == list(range(RECEIVERS))
    for r, rep in reports.items():
        assert rep["bad"] == [], f"receiver {r} got damaged messages: {rep['bad'][:5]}"
    every = [tuple(m) for rep in reports.values() for m in rep["got"]]
    assert len(every) == SENDERS * PER_SENDER, "messages were lost or duplicated"
    assert set(every) == {(s, q) for s in range(SENDERS) for q in range(PER_SENDER)}
    for r, rep in reports.items():  # FIFO: each receiver sees each sender's messages in order
        last = dict.fromkeys(range(SENDERS), -1)
        for s, q in rep["got"]:
            assert q > last[s], f"receiver {r} got message {q} of sender {s} after {last[s]}"
            last[s] = q
    assert (stats.depth, stats.bytes_used) == (0, 0)
    assert stats.sent == stats.received == SENDERS * PER_SENDER + RECEIVERS
