"""The multiprocessing start method "dragon" (spec §7.3): spawn semantics, processes made by the runtime.

`import dragon` registers `DragonContext` as the start method "dragon" (see `dragon._mp_hook`), so
`multiprocessing.set_start_method("dragon")` and `multiprocessing.get_context("dragon")` work. It is
the "spawn" context with another `Process._Popen`: `DragonPopen` (`dragon.mp.popen`) pickles what
spawn pickles and asks Global Services to start `python -c <dragon.mp.child>`, which receives the
pickle in its GSPingProc handshake. `Queue`, `SimpleQueue` and `JoinableQueue` run on the runtime's
shared-memory channels (`dragon.mp.queues`), and so do the task and result queues of `Pool`
(`dragon.mp.pool`), and `Pipe()` (`dragon.mp.connection`: a round trip costs a fraction of a
socketpair's, figures there). `Lock`, `RLock`, `Semaphore` and `BoundedSemaphore` are POSIX
semaphores with a home in the runtime (`dragon.mp.locks`: a dead holder's count is given back);
`Event`, `Condition` and `Barrier` live in runtime records (`dragon.mp.events`: a Barrier's party
that dies breaks it). `cpu_count()` counts the runtime's CPUs over all its
nodes (`dragon.native.machine`). `Manager()` is the standard library's; in a run of several nodes its
server listens on its node's address, reachable from every node (`dragon.mp.managers`). Everything
else (shared ctypes) is the standard library's, working as under spawn.

Four pieces of routing make the channel queues and the runtime's objects what programs get:
* `multiprocessing.Queue()` (and the other names of `ROUTED`: SimpleQueue, JoinableQueue, Pool, Pipe,
  the locks, Event, Condition, Barrier, Manager) are methods of the default context
  that build the stdlib classes themselves, whatever the start method; `route_default_methods` makes
  them ask the current context instead (for "spawn", "fork" and "forkserver" that is the same call as
  before), so after `set_start_method("dragon")` they return ours.
* `multiprocessing.connection.wait` accepts the runtime's Connections beside sockets, fds, sentinels
  and the stdlib's Connections (`route_wait`), and `multiprocessing.reduction.send_handle` and
  `recv_handle` pass fds over them (`route_handles`); without a runtime Connection they are the
  stdlib's calls.
* `multiprocessing.pool` and `concurrent.futures.process` keep the stdlib's `SimpleQueue` and `Pipe`
  for what they build themselves (a Pool's change notifier, `multiprocessing.pool.Pool(context=...)`
  called directly, ProcessPoolExecutor and its wake-up pipe): they wait for their fds with the
  `wait` they imported (maybe before the routing) and use a SimpleQueue's private `_reader`,
  `_writer` and `_rlock`, so their SimpleQueues and Pipes are the stdlib's, as under spawn.
* The standard library's own users of locks and semaphores (`STDLIB_LOCK_USERS`: its Condition, Event
  and Barrier, its pipe queues, and the counters of our queues) keep the stdlib's: their semaphores
  are item counters, whose count a dead consumer must not give back (a JoinableQueue's join, a
  Condition's notify would wait for tasks or sleepers that are not there), and their locks are
  private parts of objects that pickle only while spawning, where ours would cost a Global Services
  request to make and one more for each child given one (a ProcessPoolExecutor's every worker).

Differences from the reference (spec §7.3): `Process.pid` is the real OS pid, and `p_uid` is an
extra attribute; `sentinel` is a real fd (a pidfd) that `multiprocessing.connection.wait` accepts.
"""

from __future__ import annotations

import functools
import os
import sys
from multiprocessing import context, process
from types import ModuleType

TYPE_CHECKING = False  # not `typing`'s (see dragon._mp_hook)
if TYPE_CHECKING:
    from typing import Any, Final

    from dragon.mp import events as _mp_events
    from dragon.mp import pool as _mp_pool
    from dragon.mp import queues as _mp_queues
    from dragon.mp.popen import DragonPopen

ROUTED: Final = (
    "Queue",
    "SimpleQueue",
    "JoinableQueue",
    "Pool",
    "Pipe",
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Event",
    "Condition",
    "Barrier",
    "Manager",
    "cpu_count",
    "Value",
    "Array",
    "RawValue",
    "RawArray",
)
"""The default context's methods that follow the current start method (`route_default_methods`)."""
PIPE_QUEUE_USERS: Final = frozenset({"multiprocessing.pool", "concurrent.futures.process"})
"""Modules whose `ctx.SimpleQueue()` and `Pipe()` get the stdlib's (see the module docstring)."""
STDLIB_LOCK_USERS: Final = frozenset({"multiprocessing.synchronize", "multiprocessing.queues", "dragon.mp.queues"})
"""Modules whose `ctx.Lock()`, `RLock()`, `Semaphore()`, `BoundedSemaphore()` get the stdlib's (see
the module docstring)."""


class DragonProcess(process.BaseProcess):
    """A multiprocessing Process started through the Dragon runtime (as a managed process)."""

    _start_method = "dragon"

    @staticmethod
    def _Popen(process_obj: process.BaseProcess) -> DragonPopen:
        # Here, for start-up cost: registering "dragon" must not import the client (_mp_hook).
        from dragon.mp.popen import DragonPopen

        return DragonPopen(process_obj)

    @staticmethod
    def _after_fork() -> None:
        """The process is spawned, not forked: nothing to do (as SpawnProcess)."""

    @property
    def p_uid(self) -> int | None:
        """The runtime's id of the process (its p_uid); None before start (or unknown)."""
        popen = getattr(self, "_popen", None)
        if popen is not None:
            p_uid = getattr(popen, "p_uid", None)
            return p_uid if isinstance(p_uid, int) else None
        if self is process.current_process():
            value = os.environ.get("DRAGON_MY_PUID", "")
            return int(value) if value.isdigit() else None
        return None


class DragonContext(context.SpawnContext):
    """The "dragon" start method: spawn semantics, every process created by Global Services."""

    _name = "dragon"
    Process = DragonProcess  # type: ignore[assignment]  # typeshed pins SpawnContext.Process

    def __init__(self) -> None:
        """Made once, when "dragon" is registered (`dragon._mp_hook`, which also installs
        `keep_other_children_working`): that is when the default context's queue and pool methods
        start following the current start method (`route_default_methods`)."""
        route_default_methods(context._default_context, sys.modules.get("multiprocessing"))

    def Queue(self, maxsize: int = 0) -> _mp_queues.Queue:  # type: ignore[override]
        """A `multiprocessing.Queue` on a shared-memory channel (`dragon.mp.queues.Queue`)."""
        from dragon.mp.queues import Queue

        return Queue(maxsize, ctx=self.get_context())

    def JoinableQueue(self, maxsize: int = 0) -> _mp_queues.JoinableQueue:  # type: ignore[override]
        """A `multiprocessing.JoinableQueue` on a shared-memory channel."""
        from dragon.mp.queues import JoinableQueue

        return JoinableQueue(maxsize, ctx=self.get_context())

    def Event(self) -> _mp_events.Event:  # type: ignore[override]
        """A `multiprocessing.Event` on a runtime record (`dragon.mp.events`)."""
        from dragon.mp.events import Event

        return Event(ctx=self.get_context())

    def Condition(self, lock: Any = None) -> _mp_events.Condition:  # type: ignore[override]
        """A `multiprocessing.Condition` on a runtime record and `lock` (default: `self.RLock()`)."""
        from dragon.mp.events import Condition

        return Condition(lock, ctx=self.get_context())

    def Barrier(self, parties: int, action: Any = None, timeout: float | None = None) -> _mp_events.Barrier:  # type: ignore[override]
        """A `multiprocessing.Barrier` on a runtime record: a party's abnormal death breaks it."""
        from dragon.mp.events import Barrier

        return Barrier(parties, action, timeout, ctx=self.get_context())

    def Pool(
        self,
        processes: int | None = None,
        initializer: Any = None,
        initargs: Any = (),
        maxtasksperchild: int | None = None,
    ) -> _mp_pool.Pool:
        """A `multiprocessing.Pool` whose task and result queues are channels (`dragon.mp.pool`).
        Without `processes`, one worker per CPU of the runtime's nodes (`cpu_count`: the allocation,
        as the reference's), where the stdlib takes this machine's."""
        from dragon.mp.pool import Pool

        if processes is None:
            processes = self.cpu_count()
        return Pool(processes, initializer, initargs, maxtasksperchild, context=self.get_context())

    def Manager(self) -> Any:  # the stdlib's SyncManager or ours, see below
        """A started `multiprocessing.managers.SyncManager`; in a run of several nodes one whose server
        listens on its node's address, reachable from every node (`dragon.mp.managers`)."""
        if not _several_nodes():
            return super().Manager()
        from dragon.mp.managers import SyncManager

        manager = SyncManager(ctx=self.get_context())
        manager.start()
        return manager

    def cpu_count(self) -> int:
        """How many CPUs the runtime may use over all its nodes (`dragon.native.machine.cpu_count`:
        the allocation, as the reference's; a Pool sized by it fills every node). With no runtime
        yet (a plain `python` program before its first start), the CPUs this process may use: those
        of the single-node background runtime its first start brings up (it inherits this affinity)."""
        from dragon.errors import RuntimeNotRunning
        from dragon.native.machine import cpu_count

        try:
            return cpu_count()
        except RuntimeNotRunning:
            return len(os.sched_getaffinity(0))

    def Lock(self) -> Any:  # either class, see below
        """A `multiprocessing.Lock` with a home in the runtime (`dragon.mp.locks`); the stdlib's for
        its own users (`STDLIB_LOCK_USERS`)."""
        if _caller_module() in STDLIB_LOCK_USERS:
            return super().Lock()
        from dragon.mp.locks import Lock

        return Lock()

    def RLock(self) -> Any:  # either class, as Lock
        """A `multiprocessing.RLock` with a home in the runtime (`dragon.mp.locks`), as `Lock`."""
        if _caller_module() in STDLIB_LOCK_USERS:
            return super().RLock()
        from dragon.mp.locks import RLock

        return RLock()

    def Semaphore(self, value: int = 1) -> Any:  # either class, as Lock
        """A `multiprocessing.Semaphore` with a home in the runtime (`dragon.mp.locks`), as `Lock`."""
        if _caller_module() in STDLIB_LOCK_USERS:
            return super().Semaphore(value)
        from dragon.mp.locks import Semaphore

        return Semaphore(value)

    def BoundedSemaphore(self, value: int = 1) -> Any:  # either class, as Lock
        """A `multiprocessing.BoundedSemaphore` with a home in the runtime, as `Lock`."""
        if _caller_module() in STDLIB_LOCK_USERS:
            return super().BoundedSemaphore(value)
        from dragon.mp.locks import BoundedSemaphore

        return BoundedSemaphore(value)

    def Value(self, typecode_or_type: Any, *args: Any, lock: Any = True) -> Any:  # either class, see below
        """A `multiprocessing.Value`: the standard library's shared ctypes (memory the spawning hands
        its children as an fd); in a run of several nodes, where that memory cannot reach another
        node, the runtime's (`dragon.native.Value`, on a record of its maker's node, read and written
        through that node from the others), with `value`, `get_lock()`, `acquire()`, `release()`."""
        if not _several_nodes():
            return super().Value(typecode_or_type, *args, lock=lock)
        from dragon.native.value import Value

        return Value(typecode_or_type, _initial(args), lock=lock)

    def Array(self, typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True) -> Any:  # as Value
        """A `multiprocessing.Array`, as `Value` (`dragon.native.Array` in a run of several nodes)."""
        if not _several_nodes():
            return super().Array(typecode_or_type, size_or_initializer, lock=lock)
        from dragon.native.array import Array

        return Array(typecode_or_type, size_or_initializer, lock=lock)

    def RawValue(self, typecode_or_type: Any, *args: Any) -> Any:  # as Value
        """A `multiprocessing.RawValue`, as `Value` without a lock."""
        return (
            super().RawValue(typecode_or_type, *args)
            if not _several_nodes()
            else self.Value(typecode_or_type, *args, lock=False)
        )

    def RawArray(self, typecode_or_type: Any, size_or_initializer: Any) -> Any:  # as Value
        """A `multiprocessing.RawArray`, as `Array` without a lock."""
        if not _several_nodes():
            return super().RawArray(typecode_or_type, size_or_initializer)
        return self.Array(typecode_or_type, size_or_initializer, lock=False)

    def SimpleQueue(self) -> Any:  # either class, see below
        """A `multiprocessing.SimpleQueue` on a shared-memory channel; the stdlib's pipe queue when
        `multiprocessing.pool` or `concurrent.futures.process` asks (see the module docstring)."""
        if _caller_module() in PIPE_QUEUE_USERS:
            return super().SimpleQueue()
        from dragon.mp.queues import SimpleQueue

        return SimpleQueue(ctx=self.get_context())

    def Pipe(self, duplex: bool = True) -> tuple[Any, Any]:  # either class, see below
        """A `multiprocessing.Pipe` on shared-memory channels (`dragon.mp.connection`); the stdlib's
        when `multiprocessing.pool` or `concurrent.futures.process` asks (see the module docstring)."""
        if _caller_module() in PIPE_QUEUE_USERS:
            return super().Pipe(duplex)
        from dragon.mp.connection import Pipe

        return Pipe(duplex)


def _caller_module() -> Any:
    """The module that called the context method that calls this, past this module's routing
    (`concurrent.futures.process` calls `multiprocessing.Pipe`, a routed method)."""
    frame = sys._getframe(2)
    while frame.f_back is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return frame.f_globals.get("__name__")


def _several_nodes() -> bool:
    from dragon.client.nodes import several_nodes

    return several_nodes()


def _initial(args: tuple[Any, ...]) -> Any:
    """The initial value of a Value made with the standard library's arguments (none; one; a
    Structure's fields)."""
    return None if not args else args[0] if len(args) == 1 else args


def route_default_methods(default: context.DefaultContext, package: Any) -> None:
    """Make `default`'s methods of `ROUTED` (and the `multiprocessing` package's names for them, if
    already bound) call the same method of the current context.

    `BaseContext.Queue` builds `multiprocessing.queues.Queue` with the current context as an argument
    (and `BaseContext.Pool` builds `multiprocessing.pool.Pool`), so the default context's methods
    would give the stdlib classes under "dragon" too. The package binds
    its names to the default context's methods when it is first imported: routing before that (from
    the import hook on `multiprocessing.context`) or rebinding them after it covers both orders of
    `import dragon` and `import multiprocessing`.
    """
    for name in ROUTED:
        routed = _routed(default, name)
        setattr(default, name, routed)
        current = getattr(package, name, None) if package is not None else None
        if getattr(current, "__func__", None) is getattr(context.BaseContext, name):
            setattr(package, name, routed)


def _routed(default: context.DefaultContext, name: str) -> Any:
    def method(*args: Any, **kwargs: Any) -> Any:
        return getattr(default.get_context(), name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = getattr(context.BaseContext, name).__doc__
    return method


def route_wait(connection: ModuleType) -> None:
    """Make `multiprocessing.connection.wait` (installed when that module is imported) accept the
    runtime's Connections beside everything the stdlib's accepts (`dragon.mp.connection.wait`); a
    list without any is the stdlib's call unchanged. Without `dragon.mp.connection` loaded there is
    no runtime Connection, and nothing more is imported."""
    original = connection.wait
    if getattr(original, "__wrapped__", None) is not None:
        return

    @functools.wraps(original)
    def wait(object_list: Any, timeout: float | None = None) -> list[Any]:
        ours = sys.modules.get("dragon.mp.connection")
        if ours is None:
            return original(object_list, timeout)  # type: ignore[no-any-return]
        return ours.wait(object_list, timeout, original)  # type: ignore[no-any-return]

    setattr(connection, "wait", wait)  # noqa: B010  # a module attribute mypy does not see


def route_handles(reduction: ModuleType) -> None:
    """Make `multiprocessing.reduction.send_handle` and `recv_handle` pass fds over the runtime's
    Connections too (`dragon.mp.connection.send_handle`, `recv_handle`: the stdlib's go through the
    Connection's socket, which a channel Connection does not have); any other connection gets the
    stdlib's call unchanged."""
    for name in ("send_handle", "recv_handle"):
        original = getattr(reduction, name, None)
        if original is None or getattr(original, "__wrapped__", None) is not None:
            continue
        setattr(reduction, name, _handle_router(name, original))


def _handle_router(name: str, original: Any) -> Any:
    @functools.wraps(original)
    def routed(conn: Any, *args: Any) -> Any:
        ours = sys.modules.get("dragon.mp.connection")
        if ours is not None and isinstance(conn, ours.Connection):
            return getattr(ours, name)(conn, *args)
        return original(conn, *args)

    return routed


def keep_other_children_working(spawn: ModuleType) -> None:
    """Wrap `multiprocessing.spawn.get_preparation_data`, so that a child of another start method
    ("spawn", "forkserver") started while "dragon" is the global one does not get "dragon" as its
    start method in its preparation data. Such a child is a plain interpreter, where "dragon" is
    no start method before its main module imports dragon, and it would die in `prepare` with
    "cannot find context for 'dragon'". Without it, the child's start method is its own (which
    multiprocessing's bootstrap sets anyway), as for a child of "spawn" made by any other parent.
    The children of "dragon" get the stdlib's data as it is (`dragon.client.python_child.preparation_data`)."""
    original = spawn.get_preparation_data
    if hasattr(original, "__wrapped__"):
        return

    @functools.wraps(original)
    def get_preparation_data(name: str) -> dict[str, Any]:
        data: dict[str, Any] = original(name)
        if data.get("start_method") == "dragon":
            del data["start_method"]
        return data

    spawn.get_preparation_data = get_preparation_data  # type: ignore[attr-defined]  # not in typeshed


def guard_shared_memory(shared_memory: ModuleType) -> None:
    """In a run of several nodes, a `multiprocessing.shared_memory.SharedMemory` pickles with the node
    it was made on, and unpickling it on another node raises `SharedMemoryOnAnotherNode` naming both
    (its memory is in its node's /dev/shm: another node would find no such block, or, on virtual nodes
    that share a machine, silently the same one a real node could never see). On one node nothing
    changes (issue 17 item 2)."""
    if not _several_nodes():
        return
    cls = shared_memory.SharedMemory

    def reduce(self: Any) -> tuple[Any, tuple[Any, ...]]:
        return (_rebuild_shared_memory, (self.name, self.size, os.environ.get("DRAGON_RUN_ID", ""), _node_here()))

    cls.__reduce__ = reduce


def _node_here() -> str:
    return os.environ.get("DRAGON_INDEX", "0")


def _rebuild_shared_memory(name: str, size: int, run_id: str, node: str) -> Any:
    from multiprocessing import shared_memory

    from dragon.errors import SharedMemoryOnAnotherNode

    if run_id and run_id != os.environ.get("DRAGON_RUN_ID", ""):
        raise SharedMemoryOnAnotherNode(
            f"shared memory block {name!r} was made on node {node} and this process runs on node {_node_here()}: "
            f"multiprocessing.shared_memory stays on its node; send the data through a Queue, or start this "
            f"process on node {node} (dragon.native.Policy(node={node}))"
        )
    return shared_memory.SharedMemory(name, False, size)
