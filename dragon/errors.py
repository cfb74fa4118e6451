"""The errors the runtime raises (STYLE §8): the transport's, re-exported, plus those of the runtime.

Every class derives from `DragonError`. Imported by user processes, so no trio here.
"""

from __future__ import annotations

from dragon.transport import ChannelCorrupted as ChannelCorrupted
from dragon.transport import ChannelDestroyed as ChannelDestroyed
from dragon.transport import ChannelEmpty as ChannelEmpty
from dragon.transport import ChannelError as ChannelError
from dragon.transport import ChannelFull as ChannelFull
from dragon.transport import DragonError as DragonError
from dragon.transport import NoSharedMemory as NoSharedMemory
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
    """A runtime call was made outside a running runtime (no launch parameters in the environment),
    or the runtime went away while the call waited for Global Services."""


class InputNotDelivered(DragonError):
    """Input for a process's stdin, sent with confirmation, was not written into it (spec §4.5
    SHFwdInputErr): the text says why (no such process, its stdin is closed or not forwarded, ...)."""


class EventLoopBlocked(DragonError, RuntimeError):
    """A blocking call made in the trio loop that runs `dragon.serve` waited while the runtime needed
    that loop (to take its processes' output): run the call in a thread, or use dragon.aio."""


# ---------------------------------------------------------------------------------------------------
# Errors of the client API (dragon.native): one class per failure response of Global Services (spec
# §4.2-§4.4). Each carries GS's `err_info` text in its message. The lookup errors are also
# `LookupError`s and the argument errors `ValueError`s, so generic handlers keep working.


class InvalidArgument(DragonError, ValueError):
    """A client call was given an argument it cannot use (the text says which and what to do)."""


class NameInUse(DragonError):
    """A create named an object whose name is taken (spec §5.4, err ALREADY).

    Catch the kind-specific subclasses (`ProcessNameInUse`, ...) or this class for any kind. `uid` is
    the existing object's id (p_uid, c_uid or m_uid), from the descriptor GS sends with ALREADY.
    """

    def __init__(self, message: str, name: str, uid: int | None) -> None:
        super().__init__(message)
        self.name = name
        self.uid = uid

    def __reduce__(self) -> tuple[type[NameInUse], tuple[str, str, int | None]]:
        return (type(self), (str(self), self.name, self.uid))


class ProcessError(DragonError):
    """Base of the errors of managed-process requests (spec §4.2)."""


class UnknownProcess(ProcessError, LookupError):
    """No process has that p_uid or name (err UNKNOWN of a process query, join or kill)."""


class ProcessNameInUse(ProcessError, NameInUse):
    """A process of that name exists and is not dead (GSProcessCreate err ALREADY)."""


class ProcessStartFailed(ProcessError):
    """Local Services could not start the process, e.g. no such executable (GSProcessCreate err FAIL)."""


class JoinSelf(ProcessError):
    """A process tried to join itself, which would wait forever (GSProcessJoin err SELF)."""


class ProcessSignalFailed(ProcessError):
    """A signal could not be delivered: the process is still starting (err PENDING) or the OS refused
    (err FAIL_KILL)."""


class GSChannelError(ChannelError):
    """Base of the errors of channel requests to Global Services (spec §4.3).

    A subclass of the transport's `ChannelError`, so `except ChannelError` catches both kinds; catch
    this class for the registry's answers only.
    """


class UnknownChannel(GSChannelError, LookupError):
    """No channel has that c_uid or name, or it was destroyed already (err UNKNOWN / UNKNOWN_CHANNEL)."""


class ChannelNameInUse(GSChannelError, NameInUse):
    """A live channel of that name exists (GSChannelCreate err ALREADY)."""


class ChannelCreateFailed(GSChannelError):
    """The channel could not be made, e.g. an unknown pool m_uid (GSChannelCreate err FAIL)."""


class ChannelBusy(GSChannelError):
    """The channel is being created or destroyed by another request (GSChannelDestroy err BUSY)."""


class ChannelWaitTimeout(GSChannelError, TimeoutError):
    """No channel of that name became active within the timeout (GSChannelJoin err TIMEOUT)."""


class GSPoolError(PoolError):
    """Base of the errors of pool requests to Global Services (spec §4.4); a `PoolError`."""


class UnknownPool(GSPoolError, LookupError):
    """No pool has that m_uid or name (err UNKNOWN of a pool query or destroy)."""


class PoolNameInUse(GSPoolError, NameInUse):
    """A live pool of that name exists (GSPoolCreate err ALREADY)."""


class PoolCreateFailed(GSPoolError):
    """The pool could not be made, e.g. a size too small for a heap (GSPoolCreate err FAIL)."""


class PoolDestroyFailed(GSPoolError):
    """Local Services could not destroy the pool (GSPoolDestroy err FAIL)."""


class PoolGone(GSPoolError):
    """The pool was destroyed already (GSPoolDestroy err GONE)."""


class PoolBusy(GSPoolError):
    """The pool is being created or destroyed by another request (GSPoolDestroy err PENDING)."""


class RequestTimeout(DragonError, TimeoutError):
    """Global Services did not answer a request within the caller's `timeout_s` (it may still act on it)."""


# ---------------------------------------------------------------------------------------------------
# Errors of `dragon.native.ProcessGroup` (spec §7.2), by the reference's names so that code written
# for it catches them. A wrong argument is an `InvalidArgument`, as everywhere in the client.


class DragonProcessGroupError(DragonError):
    """Base of the errors of a `ProcessGroup`'s operations."""


class DragonProcessGroupAlreadyInitialized(DragonProcessGroupError):
    """`init()` of a group that is initialized already (and was not closed since)."""


class DragonProcessGroupRunningError(DragonProcessGroupError):
    """A group operation its state does not allow: changing or starting a running group, using a
    closed one (the text says what to call first)."""


class DragonProcessGroupStartError(DragonProcessGroupError):
    """The group's processes could not be started: none were added, or one failed to start (or to be
    restarted): the error of that start is the `__cause__`; the others started were stopped."""


class DragonProcessGroupSignalError(DragonProcessGroupError):
    """A signal could not be sent to the group's processes (not a signal of this system)."""


class DragonProcessGroupJoinError(DragonProcessGroupError, TimeoutError):
    """`join(timeout)` ran out of time with processes of the group still running."""


class DragonUserCodeError(DragonProcessGroupError):
    """Processes of a group that does not ignore errors exited with a non-zero code while the group
    had not signalled them: `failed` is [(p_uid, exit code)], in the order they were seen."""

    def __init__(self, message: str, failed: list[tuple[int, int]]) -> None:
        super().__init__(message)
        self.failed = failed

    def __reduce__(self) -> tuple[type[DragonUserCodeError], tuple[str, list[tuple[int, int]]]]:
        return (type(self), (str(self), self.failed))


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The exceptions inside `exc`, however deeply exception groups nest them ([exc] if it is none)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaf_exceptions(sub)]
    return [exc]


class SharedMemoryOnAnotherNode(DragonError):
    """A `multiprocessing.shared_memory` block made on another node of the run was unpickled here:
    its memory is on its node only (`dragon.mp.context.guard_shared_memory`)."""
