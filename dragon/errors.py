"""The errors the runtime raises (STYLE §8): the transport's, re-exported, plus those of the runtime.

Every class derives from `DragonError`. Imported by user processes, so no trio here.
"""

from __future__ import annotations

from dragon.transport import ChannelDestroyed as ChannelDestroyed
from dragon.transport import ChannelEmpty as ChannelEmpty
from dragon.transport import ChannelError as ChannelError
from dragon.transport import ChannelFull as ChannelFull
from dragon.transport import DragonError as DragonError
from dragon.transport import PoolError as PoolError
from dragon.transport import PoolExhausted as PoolExhausted
from dragon.transport import ProtocolError as ProtocolError


class BringupError(DragonError):
    """An actor failed to come up (spec §2.1): which actor, at which step, and what was seen.

    `detail` should end with what helps the user, e.g. the last lines of the actor's stderr.
    """

    def __init__(self, actor: str, step: str, detail: str) -> None:
        super().__init__(f"{actor} failed at {step}: {detail}")
        self.actor = actor
        self.step = step
        self.detail = detail

    def __reduce__(self) -> tuple[type[BringupError], tuple[str, str, str]]:
        # Rebuild from the three fields, not from the formatted text, so the error survives pickling
        # (errors cross process boundaries in multiprocessing-style code).
        return (type(self), (self.actor, self.step, self.detail))


class ServiceDied(DragonError):
    """A runtime service (Local Services, Global Services) exited while it was still needed."""

    def __init__(self, name: str, returncode: int | None) -> None:
        super().__init__(f"{name} died unexpectedly (returncode {returncode})")
        self.name = name
        self.returncode = returncode

    def __reduce__(self) -> tuple[type[ServiceDied], tuple[str, int | None]]:
        return (type(self), (self.name, self.returncode))


class RuntimeNotRunning(DragonError):
    """A runtime call was made outside a running runtime (no launch parameters in the environment)."""
