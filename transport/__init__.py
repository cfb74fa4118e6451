"""Transport layer: bytes and messages between processes (framed pipes, shm pools, shm channels).

It knows nothing of processes or services. Installed as `dragon.transport`.

User processes import this package too (through the blocking client), and `import trio` costs about
0.25 s in a fresh interpreter here, more than the interpreter's own start. So the names built on trio
(`TrioChannel`, `FrameStream`, `MessageChannel`) are loaded lazily, on first use (PEP 562), and
`import dragon.transport` alone never imports trio; a test checks this. The pools (`Pool`,
`Allocation`, `HeapStatistics`) are loaded lazily too: a process that only uses channels (every child
of the multiprocessing start method) does not pay for them (issue #12 item 4), nor for `logging`
(`log_message`, the services' message log).
"""

from typing import TYPE_CHECKING, Any

from ._channel import SPIN_MAX_S as SPIN_MAX_S
from ._channel import SPIN_MIN_S as SPIN_MIN_S
from ._channel import Channel as Channel
from ._codec import decode as decode
from ._core import DEFAULT_BLOCK_SIZE as DEFAULT_BLOCK_SIZE
from ._core import DEFAULT_CAPACITY as DEFAULT_CAPACITY
from ._core import MIN_BLOCK_SIZE as MIN_BLOCK_SIZE
from ._core import ChannelCore as ChannelCore
from ._core import ChannelStatistics as ChannelStatistics
from ._errors import ChannelCorrupted as ChannelCorrupted
from ._errors import ChannelDestroyed as ChannelDestroyed
from ._errors import ChannelEmpty as ChannelEmpty
from ._errors import ChannelError as ChannelError
from ._errors import ChannelFull as ChannelFull
from ._errors import DragonError as DragonError
from ._errors import PoolError as PoolError
from ._errors import PoolExhausted as PoolExhausted
from ._errors import ProtocolError as ProtocolError
from ._errors import clip as clip
from ._errors import excerpt as excerpt
from ._heap import keep_freed_memory as keep_freed_memory
from ._layout import Buffer as Buffer
from ._layout import segment_bytes as segment_bytes
from ._procs import pid_alive as pid_alive
from ._replies import LinkDown as LinkDown
from ._replies import PendingReplies as PendingReplies
from ._replies import Waiter as Waiter
from ._shm import SHM_DIR as SHM_DIR
from ._shm import NoSharedMemory as NoSharedMemory
from ._shm import entries as entries
from ._shm import open_own as open_own
from ._shm import run_prefix as run_prefix
from ._shm import shm_path as shm_path
from ._shm import shm_space as shm_space
from ._shm import unlink_own as unlink_own
from ._shm import unlink_quietly as unlink_quietly
from ._shm import user_prefix as user_prefix
from ._waiting import SAFETY_WAKE_S as SAFETY_WAKE_S
from .records import Record as Record

if TYPE_CHECKING:
    from ._alloc import HeapStatistics as HeapStatistics
    from ._framing import FRAME_PREFIX as FRAME_PREFIX
    from ._framing import MAX_FRAME_BYTES as MAX_FRAME_BYTES
    from ._framing import FrameStream as FrameStream
    from ._message_channel import MessageChannel as MessageChannel
    from ._msglog import log_message as log_message
    from ._pool import RESERVED_AT_CREATE as RESERVED_AT_CREATE
    from ._pool import Allocation as Allocation
    from ._pool import Pool as Pool
    from ._trio_channel import TrioChannel as TrioChannel

_LAZY = {
    "Allocation": "._pool",
    "HeapStatistics": "._alloc",
    "Pool": "._pool",
    "RESERVED_AT_CREATE": "._pool",
    "FRAME_PREFIX": "._framing",
    "MAX_FRAME_BYTES": "._framing",
    "FrameStream": "._framing",
    "MessageChannel": "._message_channel",
    "log_message": "._msglog",
    "TrioChannel": "._trio_channel",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
