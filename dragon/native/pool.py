"""GS-managed memory pools (`dragon.native.Pool`, spec §5.3)."""

from __future__ import annotations

from typing import Any

import msgspec

from dragon.client import requests as gs
from dragon.client.handles import PoolHandle
from dragon.client.requests import run
from dragon.descriptors import PoolDescriptor


class Pool(PoolHandle):
    """A handle on a GS-managed memory pool (spec §5.3).

    Make one with `Pool.create`, or reach an existing one with `Pool.attach` (by m_uid or name).
    Pickled, a handle re-attaches in the other process by descriptor. `close()` drops this
    process's mapping; `destroy()` removes the pool for everybody.
    """

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (_pool_from_msgpack, (msgspec.msgpack.encode(self._desc),))

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
        return cls(run(gs.pool_create(size_bytes, name=name, soft=soft)))

    @classmethod
    def attach(cls, m_uid: int | None = None, *, name: str = "") -> Pool:
        """A handle on an existing pool, by m_uid or by name (GSPoolQuery).

        Raises:
          UnknownPool: GS knows no such pool.
          PoolGone: it was destroyed.
          InvalidArgument: neither or both of m_uid and name.
        """
        return cls(run(gs.pool_attach(m_uid, name)))

    @staticmethod
    def list() -> list[int]:
        """The m_uid of every pool GS made in this runtime, destroyed ones included."""
        return run(gs.pool_list())

    def destroy(self) -> None:
        """Destroy the pool for everybody (GSPoolDestroy) and close this handle.

        Raises:
          PoolGone: it was destroyed already.
          UnknownPool: GS does not know it.
          PoolBusy: another request is creating or destroying it right now.
          PoolDestroyFailed: Local Services failed to destroy it.
        """
        err = run(gs.pool_destroy(self._desc))  # PoolBusy: still there, keep the handle
        self.close()
        if err is not None:
            raise err
        self._destroyed()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pool_from_msgpack(data: bytes) -> Pool:
    return Pool(msgspec.msgpack.decode(data, type=PoolDescriptor))
