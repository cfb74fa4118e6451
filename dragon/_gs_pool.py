"""Memory pools registered with Global Services, for plain Python code (spec §4.4, §5.3, §6).

GS names and counts pools and Local Services makes the shared-memory segment. A handle attaches to
the segment only when it needs it (`statistics`, `memory`), so holding many handles costs no fds.
"""

from __future__ import annotations

import threading
from typing import Any

import msgspec

from dragon import _gs_common as gs
from dragon._gs_process import _run
from dragon.descriptors import PoolDescriptor
from dragon.transport import HeapStatistics
from dragon.transport import Pool as ShmPool


class Pool:
    """A handle on a GS-managed memory pool (spec §5.3).

    Make one with `Pool.create`, or reach an existing one with `Pool.attach` (by m_uid or name).
    Pickled, a handle re-attaches in the other process by descriptor. `close()` drops this
    process's mapping; `destroy()` removes the pool for everybody.
    """

    def __init__(self, desc: PoolDescriptor) -> None:
        """Internal: a handle on the pool `desc` describes (use the classmethods)."""
        self._desc = desc
        self._lock = threading.Lock()
        self._shm: ShmPool | None = None

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (_from_msgpack, (msgspec.msgpack.encode(self._desc),))

    @classmethod
    def create(cls, size_bytes: int, *, name: str = "", soft: bool = False) -> Pool:
        """Create a pool of `size_bytes` through GS (GSPoolCreate).

        Args:
          name: a unique name ("" = `D<m_uid>`).
          soft: with a name, return the live pool of that name instead of failing (get-or-create).
        Raises:
          InvalidArgument: a size that is not positive, or soft without a name.
          PoolNameInUse: a live pool has that name (not soft).
          PoolCreateFailed: Local Services could not make it (e.g. too small for a heap, no memory).
        """
        return cls(_run(gs.pool_create(size_bytes, name=name, soft=soft)))

    @classmethod
    def attach(cls, m_uid: int | None = None, *, name: str = "") -> Pool:
        """A handle on an existing pool, by m_uid or by name (GSPoolQuery).

        Raises:
          UnknownPool: GS knows no such pool.
          PoolGone: it was destroyed.
          InvalidArgument: neither or both of m_uid and name.
        """
        return cls(_run(gs.pool_attach(m_uid, name)))

    @staticmethod
    def list() -> list[int]:
        """The m_uid of every pool GS made in this runtime, destroyed ones included."""
        return _run(gs.pool_list())

    @property
    def m_uid(self) -> int:
        return self._desc.m_uid

    @property
    def name(self) -> str:
        return self._desc.name

    @property
    def descriptor(self) -> PoolDescriptor:
        """GS's record of the pool when this handle was made (spec §5.3)."""
        return self._desc

    def memory(self) -> ShmPool:
        """This process's mapping of the pool (made on first use) to allocate from.

        Raises PoolError if the pool was destroyed.
        """
        with self._lock:
            if self._shm is None:
                self._shm = ShmPool.attach(self._desc.sdesc)
            return self._shm

    def statistics(self) -> HeapStatistics:
        """Size, use and free space of the pool right now (from the shared memory)."""
        return self.memory().statistics()

    def close(self) -> None:
        """Drop this process's mapping; the pool lives on. Idempotent."""
        with self._lock:
            shm, self._shm = self._shm, None
        if shm is not None:
            shm.close()

    def destroy(self) -> None:
        """Destroy the pool for everybody (GSPoolDestroy) and close this handle.

        Raises:
          PoolGone: it was destroyed already.
          UnknownPool: GS does not know it.
          PoolBusy: another request is creating or destroying it right now.
          PoolDestroyFailed: Local Services failed to destroy it.
        """
        err = _run(gs.pool_destroy(self._desc))  # PoolBusy: still there, keep the handle
        self.close()
        if err is not None:
            raise err
        self._desc = gs.dead(self._desc)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Pool m_uid={self._desc.m_uid} name={self._desc.name!r}>"


def _from_msgpack(data: bytes) -> Pool:
    return Pool(msgspec.msgpack.decode(data, type=PoolDescriptor))
