"""Replies of the services to a tool's own reply channel (spec §8 `dragon status`; our extension).

A tool picks a c_uid of the user-managed range and makes the channel itself; a service answers on it
once, through a `MessageChannel` like every other link (so the answer is logged), and keeps no handle.
"""

from __future__ import annotations

import logging

import msgspec
import trio

from dragon.ids import FIRST_USER_MANAGED_CUID
from dragon.messages import ToolInbound
from dragon.transport import MessageChannel, TrioChannel

log = logging.getLogger("dragon.messages")


def is_user_managed(c_uid: int) -> bool:
    """A c_uid of the user-managed range (spec §1.3: 2**54 .. 2**55-1), as tools such as `dragon
    status` use for a reply channel they make themselves, under `_rundir.channel_name`."""
    return FIRST_USER_MANAGED_CUID <= c_uid < 2 * FIRST_USER_MANAGED_CUID


async def reply_once(sdesc: str, msg: msgspec.Struct, where: str, timeout_s: float = 10.0) -> None:
    """Answer on a channel used once (a tool's reply channel): attach, send, let go.

    A service keeps no handle on such a channel, so a tool called in a loop costs it nothing.
    Failures (the tool gave up and removed its channel, or nobody reads it) are only logged.
    """
    try:
        async with MessageChannel[ToolInbound](TrioChannel.attach(sdesc), ToolInbound, name=where) as link:
            with trio.move_on_after(timeout_s):
                await link.send(msg)
                return
            log.warning("reply on %s timed out (nobody reads it)", where)
    except Exception as exc:
        log.warning("reply on %s failed: %s", where, exc)
