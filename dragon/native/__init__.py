"""The native Python API (spec §7.2): managed processes, channels and pools through Global Services,
and the runtime's shared objects (`Queue`, `Value`, `Array`, `Lock`, `Semaphore`, `Event`, `Barrier`)
for programs written against it.

Works in any process the runtime started (`dragon prog.py` and the processes it creates with
`Process`), in a program that runs a runtime with `dragon.serve` (`dragon.client.embedded`; in its trio
code, call it through `trio.to_thread.run_sync`, or use `dragon.aio` with the handle), and in a plain
`python prog.py` program once the multiprocessing start method "dragon" has brought up a runtime for
it (`dragon.client.background`); elsewhere every call raises `RuntimeNotRunning`, saying how to get a
runtime. Blocking and thread-safe, and light to import: no trio. Errors are the classes of
`dragon.errors` (`ProcessError`, `GSChannelError`, `GSPoolError` and their subclasses, one per failure
answer of Global Services).

`Policy` (`dragon.policy`) says where a process runs (node or host, CPUs), given to `Process` or
around multiprocessing's processes and pools as a context manager; `machine` answers what the
runtime runs on (`System`, `Node`, `current`, `cpu_count` of the allocation).

One module per kind of object: `process` (Process, wait, current...), `channel`, `pool`, `queue`,
`value` and `array` (their shared memory: `shared`), `sync` (Lock, Semaphore, Event, Barrier). The shared objects are loaded on first use (PEP 562), as
`dragon.transport` loads its pools: most programs of the API need only processes and channels, and
those objects pull in ctypes and multiprocessing.
"""

from typing import TYPE_CHECKING, Any

from dragon.descriptors import DEVNULL as DEVNULL
from dragon.descriptors import PIPE as PIPE
from dragon.descriptors import STDOUT as STDOUT
from dragon.policy import Policy as Policy

from .channel import Channel as Channel
from .pool import Pool as Pool
from .process import Process as Process
from .process import ProcessTemplate as ProcessTemplate
from .process import current as current
from .process import current_puid as current_puid
from .process import parent_puid as parent_puid
from .process import wait as wait

if TYPE_CHECKING:
    from .array import Array as Array
    from .popen import Popen as Popen
    from .process_group import ProcessGroup as ProcessGroup
    from .queue import Queue as Queue
    from .sync import Barrier as Barrier
    from .sync import BrokenBarrierError as BrokenBarrierError
    from .sync import Event as Event
    from .sync import Lock as Lock
    from .sync import Semaphore as Semaphore
    from .value import Value as Value

__all__ = [
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "Array",
    "Barrier",
    "BrokenBarrierError",
    "Channel",
    "Event",
    "Lock",
    "Policy",
    "Pool",
    "Popen",
    "Process",
    "ProcessGroup",
    "ProcessTemplate",
    "Queue",
    "Semaphore",
    "Value",
    "current",
    "current_puid",
    "parent_puid",
    "wait",
]

_LAZY = {
    "Array": ".array",
    "Barrier": ".sync",
    "BrokenBarrierError": ".sync",
    "Event": ".sync",
    "Lock": ".sync",
    "Popen": ".popen",
    "ProcessGroup": ".process_group",
    "Queue": ".queue",
    "Semaphore": ".sync",
    "Value": ".value",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
