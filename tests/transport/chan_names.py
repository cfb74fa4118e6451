"""Channel names for the transport tests: fresh ones under this user's prefix, and their removal."""

from __future__ import annotations

import uuid

from dragon.transport import Channel, ChannelDestroyed
from dragon.transport._shm import run_prefix


def fresh_name(tag: str = "c1") -> str:
    """A channel name no other test uses (the leak check knows the prefix)."""
    return run_prefix("t" + uuid.uuid4().hex[:8]) + tag


def destroy_leftover(name: str) -> None:
    """Destroy the channel `name` if a test left it behind."""
    try:
        Channel.attach(name).destroy()
    except ChannelDestroyed:
        pass
