"""Temporary stand-in (lead's) until the helper's module lands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio
import zmq


class AsyncSocket:
    def __init__(self, sock: zmq.Socket[bytes]) -> None:
        self.sock = sock
        self._fd: int = sock.getsockopt(zmq.FD)  # type: ignore[assignment]
        self._waiting = False
        self._lot = trio.lowlevel.ParkingLot()

    async def _wait(self) -> None:
        if self._waiting:
            await self._lot.park()
            return
        self._waiting = True
        try:
            with trio.move_on_after(0.05):  # stand-in: a send in another task may have taken the edge
                await trio.lowlevel.wait_readable(self._fd)
        finally:
            self._waiting = False
            self._lot.unpark_all()

    async def send_multipart(self, frames: Sequence[Any], *, copy: bool = True) -> None:
        while True:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                self.sock.send_multipart(frames, zmq.NOBLOCK, copy=copy)
                self._kick()
                return
            except zmq.Again:
                pass
            if not int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLOUT:
                await self._wait()

    def try_send_multipart(self, frames: Sequence[Any], *, copy: bool = True) -> bool:
        try:
            self.sock.send_multipart(frames, zmq.NOBLOCK, copy=copy)
        except zmq.Again:
            return False
        self._kick()
        return True

    def _kick(self) -> None:
        # a send may have consumed the edge that announced incoming messages: wake the waiters to re-check
        self._lot.unpark_all()

    async def recv_multipart(self) -> list[bytes]:
        while True:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                parts: list[bytes] = self.sock.recv_multipart(zmq.NOBLOCK)
                return parts
            except zmq.Again:
                pass
            if not int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                await self._wait()

    def close(self, linger_ms: int = 0) -> None:
        self.sock.close(linger=linger_ms)
