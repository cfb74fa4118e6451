"""Asking a running runtime for its tables, for `dragon status`: one GSStatus to Global Services and
one SHStatus to Local Services, answered on a reply channel of this process (`StatusClient`).

Blocking and bounded by one deadline: a Global Services that does not answer in time is
`NotAnswering`, never a hang; Local Services' figures are extras, and the answer goes on without
them. The reply channel is removed whatever happens (timeout, Ctrl-C, error).
"""

from __future__ import annotations

import time
from typing import Final

import msgspec

from dragon import _rundir
from dragon.messages import GSStatus, GSStatusResponse, SHStatus, SHStatusResponse, ToolInbound
from dragon.transport import Channel, ChannelDestroyed, ChannelEmpty, ChannelError, ChannelFull, PendingReplies

REPLY_CAPACITY: Final = 8
REPLY_BLOCK_BYTES: Final = 64 * 1024  # a status of 1,000 channels is ~200 KiB: a few blocks, or a side file


class NotAnswering(Exception):
    """Global Services did not answer GSStatus within the timeout (or its channel is gone)."""


class StatusClient:
    """A reply channel of this process in one run, and GSStatus requests over it.

    The channel is created by the constructor and removed by `close()` (use it as a context manager);
    its c_uid is random in the user-managed range, so that two `dragon status` commands, or two
    sessions of one reused pid, never share one (GS keeps its handle on a reply channel it has used).
    """

    def __init__(self, info: _rundir.RunInfo) -> None:
        """Create the reply channel. Raises OSError if /dev/shm refuses it."""
        self.info = info
        self.c_uid, self._reply = _rundir.user_reply_channel(
            info.run_id, capacity=REPLY_CAPACITY, block_size=REPLY_BLOCK_BYTES
        )
        self._tag = 0
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder(ToolInbound)

    def __enter__(self) -> StatusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the reply channel (also when the runtime already removed its entries). Idempotent."""
        try:
            self._reply.destroy()
        except ChannelError:  # destroyed by the runtime's teardown, or closed already
            self._reply.close()

    def ask(self, timeout_s: float) -> tuple[GSStatusResponse, SHStatusResponse | None]:
        """Send GSStatus to Global Services and SHStatus to Local Services, and wait for both answers,
        at most `timeout_s` seconds in all. Local Services' answer is None if it alone did not come.

        Raises:
            NotAnswering: Global Services gave no answer in time, its channel stayed full, or is gone.
        """
        deadline = time.monotonic() + timeout_s
        self._tag += 1
        gs_tag, ls_tag = self._tag, self._tag + 1
        self._tag += 1
        self._post(self.info.gs_cd, GSStatus(p_uid=0, r_c_uid=self.c_uid, tag=gs_tag), "Global Services", deadline)
        try:
            self._post(self.info.shep_cd, SHStatus(p_uid=0, r_c_uid=self.c_uid, tag=ls_tag), "Local Services", deadline)
        except NotAnswering:
            ls_tag = -1  # LS's figures are extras: the report goes on without them
        pending: PendingReplies[GSStatusResponse | SHStatusResponse] = PendingReplies(
            "the reply channel of dragon status",
            late_is_normal=True,  # a late answer to an earlier ask
        )
        with pending.expect(gs_tag) as gs_waiter, pending.expect(ls_tag) as ls_waiter:
            while gs_waiter.arrived is None or (ls_waiter.arrived is None and ls_tag >= 0):
                try:
                    frame = self._reply.recv(max(0.0, deadline - time.monotonic()))
                except ChannelEmpty as exc:
                    if gs_waiter.arrived is not None:
                        break  # LS did not answer in time: show what GS said
                    raise NotAnswering(f"Global Services is not answering (no reply within {timeout_s:g} s)") from exc
                except ChannelDestroyed as exc:
                    raise NotAnswering("the runtime went away while answering") from exc
                try:
                    resp = self._dec.decode(frame)
                except msgspec.DecodeError:
                    continue  # not ours to understand; the reply channel is ours alone
                if isinstance(resp, GSStatusResponse | SHStatusResponse):
                    pending.file(resp)
            gs_resp, ls_resp = gs_waiter.arrived, ls_waiter.arrived
        if not isinstance(gs_resp, GSStatusResponse) or not isinstance(ls_resp, SHStatusResponse | None):
            raise NotAnswering(f"the runtime answered with the wrong kind of reply: {gs_resp!r}, {ls_resp!r}")
        return gs_resp, ls_resp

    def _post(self, cd: str, msg: GSStatus | SHStatus, who: str, deadline: float) -> None:
        try:
            chan = Channel.attach(cd)
        except ChannelDestroyed as exc:
            raise NotAnswering(f"the runtime is gone (no {who} channel): {exc}") from exc
        try:
            chan.send(self._enc.encode(msg), max(0.0, deadline - time.monotonic()))
        except ChannelFull as exc:
            raise NotAnswering(f"{who} is not answering (its input channel stayed full)") from exc
        except ChannelDestroyed as exc:
            raise NotAnswering(f"the runtime is gone (its {who} channel was destroyed): {exc}") from exc
        finally:
            chan.close()
