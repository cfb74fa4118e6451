"""The native Python API (spec §7.2): managed processes, channels and pools through Global Services.

Works in any process the runtime started (`dragon prog.py` and the processes it creates with
`Process`), in a program that runs a runtime with `dragon.serve` (`dragon.client.embedded`; in its trio
code, call it through `trio.to_thread.run_sync`, or use `dragon.aio` with the handle), and in a plain
`python prog.py` program once the multiprocessing start method "dragon" has brought up a runtime for
it (`dragon.client.background`); elsewhere every call raises `RuntimeNotRunning`, saying how to get a
runtime. Blocking and thread-safe, and light to import: no trio. Errors are the classes of
`dragon.errors` (`ProcessError`, `GSChannelError`, `GSPoolError` and their subclasses, one per failure
answer of Global Services).

One module per kind of object: `process` (Process, wait, current...), `channel`, `pool`.
"""

from dragon.descriptors import DEVNULL as DEVNULL
from dragon.descriptors import PIPE as PIPE
from dragon.descriptors import STDOUT as STDOUT

from .channel import Channel as Channel
from .pool import Pool as Pool
from .process import Process as Process
from .process import current as current
from .process import current_puid as current_puid
from .process import parent_puid as parent_puid
from .process import wait as wait

__all__ = [
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "Channel",
    "Pool",
    "Process",
    "current",
    "current_puid",
    "parent_puid",
    "wait",
]
