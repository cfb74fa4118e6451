"""Dragon on trio: run ordinary Python programs in a runtime of managed processes and shm channels.

`import dragon` stays cheap (no trio): worker processes import it. `dragon.serve` imports the
services only when called.
"""

from __future__ import annotations

from dragon import _mp_hook

TYPE_CHECKING = False  # not `typing`'s: importing typing costs milliseconds (see dragon._mp_hook)
if TYPE_CHECKING:
    import trio

    from dragon.services.launcher import RuntimeHandle

__version__ = "0.1.0"

_mp_hook.install()  # the multiprocessing start method "dragon" (spec §7.3), without importing multiprocessing


async def serve(*, bringup_timeout_s: float = 30.0, task_status: trio.TaskStatus[RuntimeHandle] | None = None) -> None:
    """Bring a Dragon runtime up and keep it until cancelled; then tear it down in order.

    `trio.run(dragon.serve)` runs one until Ctrl-C; `handle = await nursery.start(dragon.serve)` hands
    over a `RuntimeHandle` (run id, requests to Global Services) once it takes requests, and cancelling
    the nursery tears it down. While it runs, the blocking API of this process (`dragon.native`, the
    multiprocessing start method "dragon") uses it too (`dragon.client.embedded`; with several, the oldest).
    Raises BringupError if it does not come up within `bringup_timeout_s` (or DRAGON_INF_SEG_SZ or
    DRAGON_DEFAULT_SEG_SZ is bad), RuntimeBroken if it fails while running; nothing of the run is left
    behind either way.
    """
    import trio

    from dragon.client import embedded as _embedded
    from dragon.services import launcher

    outer = trio.TASK_STATUS_IGNORED if task_status is None else task_status
    embedded: list[_embedded.EmbeddedRuntime] = []

    class Started:
        """Records the runtime for the blocking API, then hands the handle on."""

        def started(self, handle: RuntimeHandle | None = None) -> None:
            assert handle is not None
            embedded.append(_embedded.register(handle.run_id))
            outer.started(handle)

    def let_go() -> None:  # before teardown: the blocking API must not start anything new in it
        for rt in embedded:
            _embedded.unregister(rt)

    try:
        await launcher.serve(bringup_timeout_s=bringup_timeout_s, task_status=Started(), before_teardown=let_go)
    except BaseExceptionGroup as group:
        # Policy at this public boundary: a group holding a single exception (KeyboardInterrupt on
        # Ctrl-C, BringupError, RuntimeBroken, ...) is raised as that exception, as a caller of
        # `trio.run(dragon.serve)` expects; several at once stay a group.
        from dragon.errors import leaf_exceptions

        leaves = leaf_exceptions(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise
