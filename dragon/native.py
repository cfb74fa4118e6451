"""The native Python API (spec §7.2): managed processes, channels and pools through Global Services.

Works in any process the runtime started (`dragon prog.py` and the processes it creates with
`Process`), in a program that runs a runtime with `dragon.serve` (`dragon._embedded`; in its trio
code, call it through `trio.to_thread.run_sync`, or use `dragon.aio` with the handle), and in a plain
`python prog.py` program once the multiprocessing start method "dragon" has brought up a runtime for
it (`dragon._background`); elsewhere every call raises `RuntimeNotRunning`, saying how to get a
runtime. Blocking and thread-safe, and light to import: no trio. Errors are the classes of `dragon.errors` (`ProcessError`, `GSChannelError`,
`GSPoolError` and their subclasses, one per failure answer of Global Services).
"""

from __future__ import annotations

from dragon._gs_channel import Channel as Channel
from dragon._gs_pool import Pool as Pool
from dragon._gs_process import Process as Process
from dragon._gs_process import current as current
from dragon._gs_process import current_puid as current_puid
from dragon._gs_process import parent_puid as parent_puid
from dragon._gs_wait import wait as wait
from dragon.descriptors import DEVNULL as DEVNULL
from dragon.descriptors import PIPE as PIPE
from dragon.descriptors import STDOUT as STDOUT

__all__ = ["DEVNULL", "PIPE", "STDOUT", "Channel", "Pool", "Process", "current", "current_puid", "parent_puid", "wait"]
