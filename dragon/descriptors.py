"""Object descriptors (spec §5) and the option records nested in requests (spec §4.2-§4.5).

These travel inside messages (`dragon.messages`) as nested Structs, never as base64 strings. The only
strings left are the `sdesc`/`*_cd`/`*_pd` fields: the serialized attach descriptor of a shm channel or
pool, which the transport layer produces and parses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import IntEnum
from typing import Final, TypeAlias

import msgspec

# stdin/stdout/stderr options of GSProcessCreate / SHProcessCreate (spec §4.2, §5.5). A field holding
# None means "forwarded" (stdout/stderr go to the launcher as SHFwdOutput; stdin is fed by SHFwdInput),
# and a str is a file path (stdout/stderr only, opened in append mode).
PIPE: Final = -1
STDOUT: Final = -2  # stderr only: merged into stdout's destination
DEVNULL: Final = -3

StdioOption: TypeAlias = int | str | None
"""Type of a stdio option: PIPE, STDOUT, DEVNULL, a file path, or None (forwarded)."""


class OsBytes(msgspec.Struct, array_like=True, tag="b"):
    """Bytes the operating system gave that are not valid UTF-8 (see `OsText`)."""

    raw: bytes


OsText: TypeAlias = str | OsBytes
"""A string the operating system gave or will take (an argument, an environment value, a path): a
`str` when it is valid UTF-8, else `OsBytes`. Python holds undecodable bytes of argv, the environment
and paths as lone surrogates (PEP 383), which msgpack cannot carry; as bytes they travel unchanged.
`os_text` makes one; `fs_str` turns one back into what Python would have had (issue 13)."""


def os_text(text: str) -> OsText:
    """`text` as it travels: itself if it is valid UTF-8, else the bytes it stands for (`os.fsencode`)."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return OsBytes(os.fsencode(text))
    return text


def fs_str(text: OsText) -> str:
    """What Python makes of an `OsText` (undecodable bytes as surrogates, as in `sys.argv`)."""
    return text if isinstance(text, str) else os.fsdecode(text.raw)


def os_env(env: Mapping[str, str]) -> tuple[dict[str, OsText], list[tuple[bytes, bytes]]]:
    """An environment as it travels: (variables whose name is valid UTF-8, with `os_text` values; the
    rest as (name, value) bytes). See `GSProcessCreate.env_raw`."""
    plain: dict[str, OsText] = {}
    raw: list[tuple[bytes, bytes]] = []
    for name, value in env.items():
        if isinstance(os_text(name), str):
            plain[name] = os_text(value)
        else:
            raw.append((os.fsencode(name), os.fsencode(value)))
    return plain, raw


def fs_env(env: Mapping[str, OsText], raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The environment `os_env` made, as Python holds one (`os.environ`)."""
    out = {name: fs_str(value) for name, value in env.items()}
    out.update((os.fsdecode(name), os.fsdecode(value)) for name, value in raw)
    return out


def shown(text: str) -> str:
    """`text` fit to show (and to put in a `str` field): undecodable bytes as U+FFFD."""
    return os.fsencode(text).decode(errors="replace") if not text.isascii() else text


class ObjectState(IntEnum):
    """Life cycle of a process, channel or pool as GS records it (spec §5.1-§5.3).

    DEAD records are kept forever, so a dead object's name is never reused (spec §5.4).
    """

    PENDING = 1
    ACTIVE = 2
    DEAD = 3


class ArgMode(IntEnum):
    """How a new process receives its Python arguments in GSPingProc (spec §2, process handshake)."""

    NONE = 0
    PYTHON_IMMEDIATE = 1  # pickled bytes in GSPingProc.argdata (<= 128 KiB)
    PYTHON_CHANNEL = 2  # the next message on the GS-return channel holds the bytes


class Placement(IntEnum):
    """Where GS places a new pool (spec §4.4, §5.3)."""

    LOCAL = 0  # the requester's node
    DEFAULT = 1
    SPECIFIC = 2  # PoolOptions.target_node


class ProcessOptions(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`options` of GSProcessCreate (spec §4.2)."""

    make_inf_channels: bool = False
    """Create the process's GS-return channel and send GSPingProc (handshake, spec §2)."""
    mode: ArgMode = ArgMode.NONE
    argdata: bytes | None = None


class LocalProcessOptions(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`options` of SHProcessCreate (spec §4.5)."""

    mon_std: bool = False
    """Monitor the process's stdio (forward stdout/stderr as SHFwdOutput)."""


class ChannelLocalOptions(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`local_opts` of a channel create: how the shm channel itself is built (spec §4.3).

    None for capacity or block_size means the transport layer's default.
    """

    capacity: int | None = None
    """Number of messages the channel holds before a send blocks."""
    block_size: int | None = None
    """Bytes per message block."""
    packed: bool = False
    """[choice] A message takes only its own room in the ring, not a whole block: the channel holds
    at least `capacity` messages of `block_size` bytes and more smaller ones (`Channel.create`).
    Not in the reference; the multiprocessing queues use it."""
    semaphore: bool = False
    bounded_semaphore: bool = False
    initial_sem_value: int = 0
    sattr: str = ""
    """Serialized channel attributes."""


class ChannelOptions(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`options` of GSChannelCreate and SHChannelCreate (spec §4.3, §4.5)."""

    ref_count: bool = False
    """Start with refcount 1; GSChannelDestroy(dec_ref=True) destroys only at 0."""
    record: bool = False
    """Our addition: the channel is the home of a synchronization object (`dragon.transport.records`):
    GS tells it of every process exit (`records.reclaim`) and `dragon status` shows it as that object."""
    local_opts: ChannelLocalOptions = msgspec.field(default_factory=ChannelLocalOptions)


class PoolOptions(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`options` of GSPoolCreate (spec §4.4, §5.3)."""

    placement: Placement = Placement.LOCAL
    target_node: int = 0
    """Node index, used with Placement.SPECIFIC."""
    sattr: str = ""
    """Serialized pool attributes."""


class ProcessDescriptor(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What GS knows of a process; kept for every process ever created (spec §5.1).

    The reference's `policy` field (placement) is left out: placement is ignored on a single node.
    """

    p_uid: int
    p_p_uid: int = 0
    """Parent's p_uid; 0 when the launcher created it."""
    name: str
    node: int = 0
    h_uid: int | None = None
    state: ObjectState
    ecode: int | None = None
    """Exit code, set only when DEAD; killed by signal N is -N."""
    live_children: list[int] = []
    pid: int | None = None
    """OS pid (our addition: the spec's descriptor has none; Process.pid and `dragon status` need it)."""
    gs_ret_cuid: int | None = None
    shep_ret_cuid: int | None = None
    stdin_sdesc: str | None = None
    """Serialized descriptor of the stdin PIPE channel, if stdin=PIPE."""
    stdout_sdesc: str | None = None
    stderr_sdesc: str | None = None
    label: str = ""
    """What people call the process, as its creator said (our addition, for `dragon status`): the
    multiprocessing name (`Process-1`, `SpawnPoolWorker-2`, or the name given), `MainProcess` for a
    Python head. Not unique, unlike `name` (spec §5.4): two processes may both be called "worker"."""
    target: str = ""
    """What it runs, as its creator said (our addition): `module-or-script: qualname` of a
    multiprocessing target (`st.py: work`), the script of a Python head; "" for an exec'd program,
    whose command line says it."""


class ChannelDescriptor(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What GS knows of a channel (spec §5.2)."""

    c_uid: int
    m_uid: int
    """The pool the channel lives in."""
    name: str
    node: int = 0
    sdesc: str
    """Serialized attach descriptor: enough for any process to attach to the channel."""
    state: ObjectState
    label: str = ""
    """What the channel is, for people (our addition, for `dragon status`): given by its creator
    (`Queue of MainProcess`, `Pool tasks of Process-1`), or by GS for the channels it makes with a
    process (`stdout of worker`, `GS replies to worker`). Not unique, unlike `name`."""
    creator: int | None = None
    """p_uid of the process whose request made the channel (our addition); None if unknown."""


class PoolDescriptor(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What GS knows of a memory pool (spec §5.3)."""

    m_uid: int
    name: str
    """User name; also the shared-memory segment name."""
    node: int = 0
    sdesc: str
    """Serialized attach descriptor of the pool."""
    state: ObjectState


class NodeDescriptor(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A node as LS describes it in SHChannelsUp and SHPingGS (spec §4.1); GS builds its node table from it."""

    idx: int = 0
    host_name: str
    host_id: int = 0
    ip_addrs: list[str] = []
    is_primary: bool = True
    num_cpus: int
    physical_mem_bytes: int
    shep_cd: str
    """Serialized descriptor of this node's LS input channel."""
    state: ObjectState = ObjectState.ACTIVE
    ta_cd: str = ""
    """This node's transport agent's input channel (many nodes; "" on a single node)."""
    ta_endpoint: str = ""
    """Where this node's transport agent listens (many nodes)."""
    ta_ops_endpoint: str = ""
    """Where processes of other nodes operate on this node's channels, through its agent (many nodes)."""
    run_id: str = ""
    """This node's run id (many nodes: each node names its shm entries with its own)."""
    gs_standin_cd: str = ""
    """On a node other than the primary: its local stand-in of GS's channel, which the node's
    transport agent carries to GS (many nodes)."""


class ProcessPolicy(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Where a process runs (`GSProcessCreate.policy`; `dragon.native.Policy` makes it).

    Nothing given = the default placement (Global Services' round robin over the nodes for a
    process's children; the head on the primary node). `node` wins over `host`."""

    node: int | None = None
    host: str = ""
    cpus: list[int] = []
    """CPUs the process may run on (sched_setaffinity); [] = any."""
