"""The message catalog of the single-node runtime (spec §4), as tagged msgspec Structs (STYLE §5).

Every message is a `Msg`; on the wire it is a msgpack map whose `_tc` key holds the class name. Names
of messages and fields are the spec's, so grep finds them in both. Requests to GS and LS carry the
requester's `p_uid` and the `r_c_uid` to reply on; every response carries `ref` (the request's `tag`),
`err` (a per-response `IntEnum`) and `err_info`. All timeouts are integer microseconds, as in the spec.

Each receiving actor has its own union (`LSInbound`, `GSInbound`, ...), written out by hand: a decoder
made for that union rejects a message sent to the wrong actor at the edge, as a `ProtocolError`.
Descriptors and option records nested in these messages live in `dragon.descriptors`.

Codec: make one `msgspec.msgpack.Encoder()` and one `msgspec.msgpack.Decoder(<actor union>)` per stream,
once, and decode with `decode(decoder, frame, where=...)` (re-exported from the transport layer), which
turns anything undecodable or not accepted into `ProtocolError`. `MessageChannel` does this for you.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeAlias, get_args

import msgspec

from dragon.descriptors import (
    ArgMode,
    ChannelDescriptor,
    ChannelOptions,
    LocalProcessOptions,
    NodeDescriptor,
    OsText,
    PoolDescriptor,
    PoolOptions,
    ProcessDescriptor,
    ProcessOptions,
    ProcessPolicy,
    StdioOption,
)
from dragon.transport import decode as decode


class Msg(msgspec.Struct, tag_field="_tc", tag=True, kw_only=True, omit_defaults=True):
    """Base of every message; the class name is the wire tag `_tc`. `tag` is the spec's sequence number.

    msgspec applies `kw_only` only to the fields of the class that sets it, so subclasses list their
    required fields before those with defaults. Build messages with keywords all the same.
    """

    tag: int = 0


class Request(Msg):
    """A request to GS or LS (spec §4): who asks, and the channel to reply on."""

    p_uid: int
    """The requester's p_uid (0 for the launcher, 1 for GS)."""
    r_c_uid: int
    """c_uid of the channel to reply on (2**57 = LA channel; 1 = GS stdout, test harnesses only)."""


class Response(Msg):
    """A reply: `ref` is the request's `tag`; `err` is the per-message enum, `err_info` its text."""

    ref: int
    err: int
    err_info: str = ""


# ---------------------------------------------------------------------------------------------------
# Error codes, one enum per kind of response (spec §4.2-§4.5)


class ProcessCreateErr(IntEnum):
    """GSProcessCreateResponse.err (spec §4.2). ALREADY: the name is taken; desc is the existing process."""

    SUCCESS = 0
    FAIL = 1
    ALREADY = 2


class ListErr(IntEnum):
    """err of GSProcessList/GSChannelList/GSPoolList/GSProcessJoinList responses: they always succeed."""

    SUCCESS = 0


class ProcessQueryErr(IntEnum):
    """GSProcessQueryResponse.err (spec §4.2)."""

    SUCCESS = 0
    UNKNOWN = 1


class ProcessKillErr(IntEnum):
    """GSProcessKillResponse.err (spec §4.2). SUCCESS means the signal was delivered, not that it died."""

    SUCCESS = 0
    UNKNOWN = 1
    FAIL_KILL = 2
    DEAD = 3
    PENDING = 4


class ProcessJoinErr(IntEnum):
    """GSProcessJoinResponse.err (spec §4.2). SELF: a process may not join itself. NOT_JOINABLE (our
    addition): the target is Global Services (p_uid 1), which runs as long as the runtime."""

    SUCCESS = 0
    UNKNOWN = 1
    TIMEOUT = 2
    SELF = 3
    NOT_JOINABLE = 4


class JoinListStatus(IntEnum):
    """Status of one entry of GSProcessJoinListResponse.puid_status (spec §4.2); NOT_JOINABLE as in
    ProcessJoinErr (our addition)."""

    SUCCESS = 0
    UNKNOWN = 1
    TIMEOUT = 2
    SELF = 3
    PENDING = 4
    NOT_JOINABLE = 5


class ChannelCreateErr(IntEnum):
    """GSChannelCreateResponse.err (spec §4.3). ALREADY: desc is the existing channel."""

    SUCCESS = 0
    FAIL = 1
    ALREADY = 2


class ChannelQueryErr(IntEnum):
    """GSChannelQueryResponse.err (spec §4.3)."""

    SUCCESS = 0
    UNKNOWN = 1


class ChannelDestroyErr(IntEnum):
    """GSChannelDestroyResponse.err (spec §4.3). BUSY: the channel is PENDING or already DEAD."""

    SUCCESS = 0
    UNKNOWN = 1
    UNKNOWN_CHANNEL = 2
    BUSY = 3


class ChannelJoinErr(IntEnum):
    """GSChannelJoinResponse.err (spec §4.3)."""

    SUCCESS = 0
    TIMEOUT = 1
    DEAD = 2


class PoolCreateErr(IntEnum):
    """GSPoolCreateResponse.err (spec §4.4). ALREADY: desc is the existing pool."""

    SUCCESS = 0
    FAIL = 1
    ALREADY = 2


class PoolQueryErr(IntEnum):
    """GSPoolQueryResponse.err (spec §4.4)."""

    SUCCESS = 0
    UNKNOWN = 1


class PoolDestroyErr(IntEnum):
    """GSPoolDestroyResponse.err (spec §4.4). GONE: already DEAD."""

    SUCCESS = 0
    UNKNOWN = 1
    FAIL = 2
    GONE = 3
    PENDING = 4


class LSErr(IntEnum):
    """err of every Local Services response and of SHFwdInputErr (spec §4.5)."""

    SUCCESS = 0
    FAIL = 1


class FdNum(IntEnum):
    """SHFwdOutput.fd_num: which stream of the process the data came from (spec §4.5)."""

    STDOUT = 1
    STDERR = 2


# ---------------------------------------------------------------------------------------------------
# §4.1 Bringup / teardown / control


class BENodeIdxSH(Msg):
    """LA -> LS stdin, the first message LS reads (spec §2 m0, §4.1)."""

    node_idx: int
    host_name: str = ""
    ip_addrs: list[str] = []
    primary: bool = True
    logger_sdesc: str = ""
    """Serialized descriptor of the logging queue; "" = none."""
    net_conf_key: str = ""


class SHPingBE(Msg):
    """LS -> LA stdout once pools and infrastructure channels exist (spec §2 m1, §4.1)."""

    shep_cd: str
    be_cd: str
    gs_cd: str
    default_pd: str
    inf_pd: str


class BEPingSH(Msg):
    """LA -> LS channel: LA has attached to the channels (spec §2 m2)."""


class SHChannelsUp(Msg):
    """LS -> LA channel, before LS starts GS (spec §2 m3, §4.1)."""

    node_desc: NodeDescriptor
    gs_cd: str
    idx: int = 0
    net_conf_key: str = ""


class GSPingSH(Msg):
    """GS -> LS channel: GS has attached to the GS, LS and LA channels (spec §2 m4)."""


class SHPingGS(Msg):
    """LS -> GS channel; LS then enters its main loop (spec §2 m5, §4.1)."""

    node_sdesc: NodeDescriptor
    idx: int = 0


class GSIsUp(Msg):
    """GS -> LA channel: GS takes requests; its state is WAITING_FOR_HEAD (spec §2 m6)."""


class GSPingProc(Msg):
    """GS -> a new process on its GS-return channel: the handshake of spec §2 (m10)."""

    mode: ArgMode = ArgMode.NONE
    argdata: bytes | None = None
    """Pickled arguments when mode is PYTHON_IMMEDIATE."""


class GSHeadExit(Msg):
    """GS -> LA channel: the head process exited (spec §3.1 m2)."""

    exit_code: int
    """Exit status; killed by signal N is -N."""


class GSTeardown(Msg):
    """LA -> GS channel: leave the main loop and halt (spec §3.1 m3)."""


class GSHalted(Msg):
    """GS -> LS on GS's stdout, then LS -> LA channel: GS has halted (spec §3.1 m4, m5)."""


class SHTeardown(Msg):
    """LA -> LS channel: end the main loop, kill remaining processes (spec §3.1 m6)."""


class SHHaltBE(Msg):
    """LS -> LA channel: LS has torn down its processes (spec §3.1 m7)."""


class BEHalted(Msg):
    """LA -> LS stdin: LA has detached from the channels (spec §3.1 m8)."""


class SHHalted(Msg):
    """LS -> LA stdout, the last message of a run (spec §3.1 m9)."""

    idx: int = 0


class AbnormalTermination(Msg):
    """LS/GS -> LA: the runtime is broken; LA tears down and exits -1 (spec §3.2)."""

    err_info: str
    host_id: int = 0


class GSDumpState(Msg):
    """Any -> GS: write a human-readable dump of GS's tables to `filename`; no reply (spec §4.1, §8)."""

    filename: str


class GSStatus(Request):
    """Any -> GS: one snapshot of GS's tables, for `dragon status` (our addition, spec §8).

    Read-only. Answered with GSStatusResponse on `r_c_uid`, which may be a channel in the
    user-managed c_uid range (2**54 .. 2**55-1) named by `user_reply_channel_name`, so that a tool
    that is not a managed process can ask.
    """


class GSNodeList(Request):
    """Any -> GS: every node of the runtime (the reference's node queries; `dragon.native.machine`)."""


class GSNodeListResponse(Response):
    """Reply to GSNodeList: the nodes by index (one on a single node)."""

    err: ListErr
    nodes: list[NodeDescriptor] = []


class GSStatusResponse(Response):
    """Reply to GSStatus: every process, channel and pool GS knows (dead ones included)."""

    err: ListErr
    state: str = ""
    """GS run state: WAITING_FOR_HEAD, HAS_HEAD or SHUTTING_DOWN (spec §8)."""
    started: float = 0.0
    """Unix time at which GS came up."""
    processes: list[ProcessDescriptor] = []
    channels: list[ChannelDescriptor] = []
    pools: list[PoolDescriptor] = []
    nodes: list[NodeDescriptor] = []
    """Every node of the runtime, by index (one on a single node)."""
    security: str = ""
    """Between nodes: "curve" or "none" ("" on a single node)."""
    traffic: list[TATraffic] = []
    """Each node's transport agent's latest report (none on a single node)."""


class ProcessUsage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What Local Services sees of one managed process it runs (in SHStatusResponse)."""

    p_uid: int
    pid: int
    os_state: str = ""
    """One-letter state of /proc/<pid>/stat (R, S, D, T, Z ...); "" if it is gone."""
    cpu_s: float = 0.0
    rss_bytes: int = 0
    command: list[str] = []


class SHStatus(Request):
    """Any -> LS: what LS sees of the processes it runs, for `dragon status` (our addition, spec §8).

    Read-only. Answered with SHStatusResponse on `r_c_uid`, which may be a user-managed channel (as
    for GSStatus); LS otherwise answers only GS and LA (spec §4.5).
    """


class SHStatusResponse(Response):
    """Reply to SHStatus: LS's own pid and start time, and every process it is running."""

    err: LSErr
    pid: int = 0
    started: float = 0.0
    processes: list[ProcessUsage] = []


class SHDumpState(Msg):
    """Any -> LS: write LS's tables to `filename`, or to its log if None; no reply (spec §4.1, §8)."""

    filename: str | None = None


# ---------------------------------------------------------------------------------------------------
# §4.2 Process messages (client <-> GS)


class GSProcessCreate(Request):
    """Create a managed process (spec §4.2). Placement and restart options of the reference are ignored."""

    exe: OsText
    """Strings the OS takes are `OsText` (a str, or `OsBytes` when not valid UTF-8: `os_text`)."""
    args: list[OsText] = []
    env: dict[str, OsText] = {}
    """Merged over LS's environment; node-local launch parameters are re-filled by LS (spec §1.4)."""
    env_raw: list[tuple[bytes, bytes]] = []
    """Variables whose name is not valid UTF-8, as bytes (our addition; `descriptors.os_env`)."""
    rundir: OsText = ""
    """Working directory; "" = inherit."""
    user_name: str = ""
    """Empty = `dragon_process_<p_uid>`."""
    options: ProcessOptions = msgspec.field(default_factory=ProcessOptions)
    stdin: StdioOption = None
    stdout: StdioOption = None
    stderr: StdioOption = None
    group: int | None = None
    """Numeric group id to run as; None = Local Services' (changing it needs the privilege to)."""
    user: int | None = None
    """Numeric user id to run as; None = Local Services' (changing it needs the privilege to)."""
    umask: int = -1
    """0 .. 0o777; -1 = inherit."""
    pipesize: int | None = None
    """Capacity of the PIPE channels; None = default."""
    head_proc: bool = False
    initial_stdin: bytes = b""
    """Written to the process's stdin before anything else (our addition: the spec has it only on
    SHProcessCreate). Needs stdin forwarded (None) or PIPE."""
    label: str = ""
    """What people call the process (`ProcessDescriptor.label`; our addition): not a unique name."""
    target: str = ""
    """What it runs, for people (`ProcessDescriptor.target`; our addition)."""
    policy: ProcessPolicy | None = None
    """Where it runs (many nodes): None = the default placement (`ProcessPolicy`)."""


class GSProcessCreateResponse(Response):
    """Reply to GSProcessCreate, sent once LS has spawned (or failed to spawn) the process (spec §4.2)."""

    err: ProcessCreateErr
    desc: ProcessDescriptor | None = None


class GSProcessList(Request):
    """List every p_uid GS ever created, dead ones included, and its own (1) (spec §4.2)."""


class GSProcessListResponse(Response):
    """Reply to GSProcessList (spec §4.2)."""

    err: ListErr = ListErr.SUCCESS
    plist: list[int] = []


class GSProcessQuery(Request):
    """Look up a process by `user_name` or, if that is "", by `t_p_uid` (spec §4.2)."""

    t_p_uid: int | None = None
    user_name: str = ""


class GSProcessQueryResponse(Response):
    """Reply to GSProcessQuery (spec §4.2)."""

    err: ProcessQueryErr
    desc: ProcessDescriptor | None = None


class GSProcessKill(Request):
    """Signal a process, by `user_name` or `t_p_uid` (spec §4.2)."""

    sig: int
    t_p_uid: int | None = None
    user_name: str = ""
    hide_stderr: bool = False
    """Stop forwarding the target's stderr (hides tracebacks of killed workers)."""


class GSProcessKillResponse(Response):
    """Reply to GSProcessKill (spec §4.2); exit_code is set when err is DEAD."""

    err: ProcessKillErr
    exit_code: int = 0


class GSProcessJoin(Request):
    """Wait for a process to exit, by `user_name` or `t_p_uid` (spec §4.2)."""

    t_p_uid: int | None = None
    user_name: str = ""
    timeout: int = -1
    """Microseconds; negative = forever; <= 100 = poll now."""


class GSProcessJoinResponse(Response):
    """Reply to GSProcessJoin (spec §4.2); exit_code is set on SUCCESS."""

    err: ProcessJoinErr
    exit_code: int | None = None


class GSProcessJoinList(Request):
    """Wait for one, all, or the first failing of several processes (spec §4.2)."""

    t_p_uid_list: list[int] = []
    user_name_list: list[str] = []
    timeout: int = -1
    """Microseconds; negative = forever; <= 100 = poll now."""
    join_all: bool = False
    return_on_bad_exit: bool = False


class JoinStatus(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One entry of GSProcessJoinListResponse.puid_status: the spec's (status, info) pair."""

    status: JoinListStatus
    exit_code: int | None = None
    """Set when status is SUCCESS."""
    err_info: str = ""
    """Set when status is UNKNOWN or NOT_JOINABLE."""


class GSProcessJoinListResponse(Response):
    """Reply to GSProcessJoinList (spec §4.2).

    The reference has no `err` field here; ours is always SUCCESS so that every response has the same
    envelope. The per-process outcome is in `puid_status`, keyed by p_uid or by the unknown name.
    """

    err: ListErr = ListErr.SUCCESS
    puid_status: dict[int | str, JoinStatus] = {}


# ---------------------------------------------------------------------------------------------------
# §4.3 Channel messages (client <-> GS)


class GSChannelCreate(Request):
    """Create a channel in pool `m_uid` (spec §4.3)."""

    m_uid: int
    """A pre-defined pool (e.g. the default pool, 2**62) or one in GS's pool table."""
    options: ChannelOptions = msgspec.field(default_factory=ChannelOptions)
    user_name: str = ""
    """Empty = `dragon_channel_<c_uid>`."""
    label: str = ""
    """What the channel is, for people (`ChannelDescriptor.label`; our addition): not a unique name."""


class GSChannelCreateResponse(Response):
    """Reply to GSChannelCreate (spec §4.3)."""

    err: ChannelCreateErr
    desc: ChannelDescriptor | None = None


class GSChannelList(Request):
    """List every c_uid GS knows, dead ones included (spec §4.3)."""


class GSChannelListResponse(Response):
    """Reply to GSChannelList (spec §4.3)."""

    err: ListErr = ListErr.SUCCESS
    clist: list[int] = []


class GSChannelQuery(Request):
    """Look up a channel by `user_name` or, if that is "", by `c_uid` (spec §4.3)."""

    c_uid: int | None = None
    user_name: str = ""
    inc_refcnt: bool = False
    """Bump the refcount of an ACTIVE ref-counted channel."""


class GSChannelQueryResponse(Response):
    """Reply to GSChannelQuery (spec §4.3)."""

    err: ChannelQueryErr
    desc: ChannelDescriptor | None = None


class GSChannelDestroy(Request):
    """Destroy a channel, by `user_name` or `c_uid` (spec §4.3)."""

    c_uid: int | None = None
    user_name: str = ""
    reply_req: bool = True
    """False = fire and forget: no response is sent."""
    dec_ref: bool = False
    """Only decrement the refcount; destroy when it reaches 0."""


class GSChannelDestroyResponse(Response):
    """Reply to GSChannelDestroy (spec §4.3)."""

    err: ChannelDestroyErr


class GSChannelJoin(Request):
    """Wait until a channel named `name` is ACTIVE (spec §4.3)."""

    name: str
    timeout: int = -1
    """Microseconds; negative = forever; <= 100 = poll now."""


class GSChannelJoinResponse(Response):
    """Reply to GSChannelJoin (spec §4.3)."""

    err: ChannelJoinErr
    desc: ChannelDescriptor | None = None


# ---------------------------------------------------------------------------------------------------
# §4.4 Pool messages (client <-> GS)


class GSPoolCreate(Request):
    """Create a memory pool of `size` bytes (spec §4.4)."""

    size: int
    user_name: str = ""
    """Empty = `D<m_uid>`; the name is also the shared-memory segment name."""
    options: PoolOptions = msgspec.field(default_factory=PoolOptions)


class GSPoolCreateResponse(Response):
    """Reply to GSPoolCreate (spec §4.4); err_code is the pool library's own error code."""

    err: PoolCreateErr
    err_code: int = 0
    desc: PoolDescriptor | None = None


class GSPoolList(Request):
    """List every m_uid GS knows (spec §4.4)."""


class GSPoolListResponse(Response):
    """Reply to GSPoolList (spec §4.4)."""

    err: ListErr = ListErr.SUCCESS
    mlist: list[int] = []


class GSPoolQuery(Request):
    """Look up a pool by `user_name` or, if that is "", by `m_uid` (spec §4.4)."""

    m_uid: int | None = None
    user_name: str = ""


class GSPoolQueryResponse(Response):
    """Reply to GSPoolQuery (spec §4.4)."""

    err: PoolQueryErr
    desc: PoolDescriptor | None = None


class GSPoolDestroy(Request):
    """Destroy a pool, by `user_name` or `m_uid` (spec §4.4)."""

    m_uid: int | None = None
    user_name: str = ""


class GSPoolDestroyResponse(Response):
    """Reply to GSPoolDestroy (spec §4.4); err_code is the pool library's own error code."""

    err: PoolDestroyErr
    err_code: int = 0


# ---------------------------------------------------------------------------------------------------
# §4.5 Local Services messages


class SHChannelCreate(Request):
    """GS -> LS: create channel `c_uid` (chosen by GS) in pool `m_uid` (spec §4.5)."""

    m_uid: int
    c_uid: int
    options: ChannelOptions = msgspec.field(default_factory=ChannelOptions)


class SHChannelCreateResponse(Response):
    """Reply to SHChannelCreate (spec §4.5)."""

    err: LSErr
    desc: str = ""
    """Serialized attach descriptor of the new channel."""


class SHChannelDestroy(Request):
    """GS -> LS: destroy channel `c_uid` (spec §4.5)."""

    c_uid: int


class SHChannelDestroyResponse(Response):
    """Reply to SHChannelDestroy (spec §4.5)."""

    err: LSErr


class SHPoolCreate(Request):
    """GS -> LS: create pool `m_uid` of `size` bytes, shared-memory name `name` (spec §4.5)."""

    size: int
    m_uid: int
    name: str
    attr: str = ""
    """Serialized pool attributes."""


class SHPoolCreateResponse(Response):
    """Reply to SHPoolCreate (spec §4.5)."""

    err: LSErr
    desc: str = ""
    """Serialized attach descriptor of the new pool."""


class SHPoolDestroy(Request):
    """GS -> LS: destroy pool `m_uid` (spec §4.5)."""

    m_uid: int


class SHPoolDestroyResponse(Response):
    """Reply to SHPoolDestroy (spec §4.5)."""

    err: LSErr


class SHProcessCreate(Request):
    """GS -> LS: spawn process `t_p_uid` (spec §2 m8, §4.5).

    The embedded SHChannelCreate requests ask LS to create the PIPE channels and the GS-return channel
    along with the process; their answers come back in the response.
    """

    t_p_uid: int
    exe: OsText
    args: list[OsText] = []
    env: dict[str, OsText] = {}
    env_raw: list[tuple[bytes, bytes]] = []
    rundir: OsText = ""
    options: LocalProcessOptions = msgspec.field(default_factory=LocalProcessOptions)
    initial_stdin: bytes = b""
    """Written once to the child's stdin, first (bytes, not the spec's str, as SHFwdInput.input)."""
    stdin: StdioOption = None
    stdout: StdioOption = None
    stderr: StdioOption = None
    group: int | None = None
    user: int | None = None
    umask: int = -1
    pipesize: int | None = None
    stdin_msg: SHChannelCreate | None = None
    stdout_msg: SHChannelCreate | None = None
    stderr_msg: SHChannelCreate | None = None
    gs_ret_chan_msg: SHChannelCreate | None = None
    cpus: list[int] = []
    """CPUs the process may run on (`ProcessPolicy.cpus`); [] = any."""


class SHProcessCreateResponse(Response):
    """Reply to SHProcessCreate, with the answers to its embedded channel creates (spec §2 m9, §4.5)."""

    err: LSErr
    pid: int = 0
    """OS pid of the new process (our addition, for the process descriptor)."""
    stdin_resp: SHChannelCreateResponse | None = None
    stdout_resp: SHChannelCreateResponse | None = None
    stderr_resp: SHChannelCreateResponse | None = None
    gs_ret_chan_resp: SHChannelCreateResponse | None = None


class SHProcessKill(Request):
    """GS -> LS: send signal `sig` to process `t_p_uid` (spec §4.5)."""

    t_p_uid: int
    sig: int
    hide_stderr: bool = False


class SHProcessKillResponse(Response):
    """Reply to SHProcessKill; SUCCESS means the signal was sent (spec §4.5)."""

    err: LSErr
    exited: bool = False
    """[choice] FAIL because the process has exited: its SHProcessExit is on its way to GS (which
    then answers the kill with DEAD and the exit code rather than an error)."""


class SHProcessExit(Msg):
    """LS -> GS, unsolicited: a managed process exited and its output was flushed (spec §3.1 m1, §4.5).

    When the process's output went to the launcher, LS sends this on the LA channel after that output
    and the launcher passes it on to GS once the output is written **[choice]**: so a join (even one
    whose waiter writes to the same terminal itself) never returns before that output is out."""

    p_uid: int
    """The process that exited."""
    creation_msg_tag: int
    """`tag` of the SHProcessCreate that started it."""
    exit_code: int
    """Killed by signal N is -N."""


class SHFwdInput(Request):
    """Write `input` to the stdin of process `t_p_uid` (spec §4.5)."""

    t_p_uid: int
    input: bytes
    """At most 1024 bytes; empty means end of file (the target's stdin is closed). Bytes, not the
    spec's str, so that any input (binary included) arrives unchanged."""
    confirm: bool = False
    """Ask for an SHFwdInputErr reply; without it errors are silent."""


class SHFwdInputErr(Response):
    """Reply to SHFwdInput(confirm=True) (spec §4.5). On FAIL LS has closed the target's stdin."""

    err: LSErr
    idx: int = 0


class SHFwdOutput(Msg):
    """LS -> LA, unsolicited: a chunk of a managed process's stdout or stderr (spec §2, §4.5).

    `data` is bytes, not the spec's str: output is forwarded byte-identical, including invalid UTF-8;
    the launcher decides how to print it.
    """

    p_uid: int
    fd_num: FdNum
    data: bytes
    pid: int
    """OS pid of the process."""
    idx: int = 0
    hostname: str = ""


# ---------------------------------------------------------------------------------------------------
# Many nodes (spec MULTINODE.md §4, §6): the frontend (FE), each node's backend (BE) and transport agent
# (TA). FE and BE talk over ZeroMQ, one msgpack frame per message; BE and TA over the TA's stdin/stdout.


class BEIsUp(Msg):
    """BE -> FE, the first message of a backend: it runs, its TA listens (MULTINODE §4 step 3)."""

    node_idx: int
    host_name: str
    ta_endpoint: str
    """Where the node's transport agent accepts the other agents (tcp://ADDR:PORT)."""
    num_cpus: int
    physical_mem_bytes: int
    run_id: str
    """The node's own run id: its /dev/shm entries and runtime directory are named with it."""
    pid: int


class LAChannelsInfo(Msg):
    """FE -> every BE (which gives it to its TA), and FE -> GS through BE 0 once every TA is up: every
    node's channels and transport endpoint (MULTINODE §4 steps 5-7)."""

    nodes: list[NodeDescriptor]
    gs_cd: str
    """GS's input channel on the primary node."""
    security: str = "curve"
    """How traffic between nodes is protected: "curve" or "none" (`dragon status` shows it)."""


class TAListening(Msg):
    """TA -> BE, once its sockets are bound: where the other agents reach it (MULTINODE §4 step 3),
    and where processes of other nodes operate on this node's channels (`dragon.client.remote`)."""

    endpoint: str
    ops_endpoint: str = ""


class TAUp(Msg):
    """TA -> BE -> FE: the agent is connected to every other agent (MULTINODE §4 step 6)."""

    node_idx: int = 0


class TAHalted(Msg):
    """TA -> BE: the agent has stopped (MULTINODE §6)."""


class NodeLost(Msg):
    """A node is gone (its BE, LS or TA died, or its link is silent): BE/TA -> FE, and FE -> GS so
    that every process of that node is reported dead (MULTINODE §6)."""

    node_idx: int
    what: str
    """What died or went silent, for the error line."""


class TATraffic(Msg):
    """TA -> GS, every TRAFFIC_S: what the node's transport agent has carried (`dragon status`)."""

    node_idx: int
    frames_out: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    bytes_in: int = 0
    queued: int = 0
    """Frames waiting in the agent's channel for it to send."""
    ops: int = 0
    """Operations of other nodes' processes on this node's channels running now."""
    dropped: int = 0


class FEForward(Msg):
    """FE -> BE: a message encoded once by FE, for that node's GS channel ("gs", node 0 only) or LS
    channel ("ls"); the BE puts the frame in unchanged."""

    to: str
    frame: bytes


class Heartbeat(Msg):
    """FE <-> BE, every HEARTBEAT_S each way: a link silent for HEARTBEAT_LOST_S is a lost node."""


class BEInterrupt(Msg):
    """FE -> BE: Ctrl-C for the program's processes on that node (SIGINT to its runtime's group)."""


class BETeardown(Msg):
    """FE -> BE: GS has halted (or is lost); tear the node down (SHTeardown ... SHHalted) and exit."""

    force: bool = False
    """Kill at once (the second Ctrl-C, or a node that must be given up on)."""


class BEDone(Msg):
    """BE -> FE, its last message: the node is torn down; `leftovers` names what it had to remove."""

    node_idx: int
    ok: bool = True
    leftovers: list[str] = []


# ---------------------------------------------------------------------------------------------------
# What each actor accepts, written out by hand (STYLE §5)

LSStdinInbound: TypeAlias = BENodeIdxSH | BEHalted
"""What LS reads on its stdin, from LA (spec §2 m0, §3.1 m8)."""

LAStdoutInbound: TypeAlias = SHPingBE | SHHalted | AbnormalTermination
"""What LA reads on LS's stdout (spec §2 m1, §3.1 m9, §3.2)."""

GSStdoutOutbound: TypeAlias = GSHalted | AbnormalTermination
"""What GS writes on its stdout, read by LS's GS monitor (spec §3.1 m4, §3.2)."""

LSInbound: TypeAlias = (
    BEPingSH
    | GSPingSH
    | SHTeardown
    | GSHalted
    | AbnormalTermination
    | SHDumpState
    | SHStatus
    | SHProcessCreate
    | SHProcessKill
    | SHFwdInput
    | SHChannelCreate
    | SHChannelDestroy
    | SHPoolCreate
    | SHPoolDestroy
)
"""What arrives on the LS channel, c_uid 2**62 (spec §2, §3.1, §4.5)."""

GSInbound: TypeAlias = (
    SHPingGS
    | GSTeardown
    | GSDumpState
    | GSStatus
    | GSNodeList
    | GSProcessCreate
    | GSProcessList
    | GSProcessQuery
    | GSProcessKill
    | GSProcessJoin
    | GSProcessJoinList
    | GSChannelCreate
    | GSChannelList
    | GSChannelQuery
    | GSChannelDestroy
    | GSChannelJoin
    | GSPoolCreate
    | GSPoolList
    | GSPoolQuery
    | GSPoolDestroy
    | SHProcessCreateResponse
    | SHProcessKillResponse
    | SHProcessExit
    | SHChannelCreateResponse
    | SHChannelDestroyResponse
    | SHPoolCreateResponse
    | SHPoolDestroyResponse
    | LAChannelsInfo
    | NodeLost
    | TATraffic
)
"""What arrives on the GS channel, c_uid 2 (spec §2, §3.1, §4.2-§4.5)."""

GSResponse: TypeAlias = (
    GSStatusResponse
    | GSNodeListResponse
    | GSProcessCreateResponse
    | GSProcessListResponse
    | GSProcessQueryResponse
    | GSProcessKillResponse
    | GSProcessJoinResponse
    | GSProcessJoinListResponse
    | GSChannelCreateResponse
    | GSChannelListResponse
    | GSChannelQueryResponse
    | GSChannelDestroyResponse
    | GSChannelJoinResponse
    | GSPoolCreateResponse
    | GSPoolListResponse
    | GSPoolQueryResponse
    | GSPoolDestroyResponse
)
"""Every reply GS sends to a client's request (spec §4.2-§4.4)."""

LAInbound: TypeAlias = (
    SHChannelsUp
    | GSIsUp
    | GSHeadExit
    | GSHalted
    | SHHaltBE
    | AbnormalTermination
    | SHFwdOutput
    | SHProcessExit
    | SHFwdInputErr
    | GSResponse
)
"""What arrives on the LA channel, c_uid 2**57 (spec §2, §3); LA may make any GS request (r_c_uid 2**57)."""

ProcessInbound: TypeAlias = GSPingProc | GSResponse
"""What a managed process reads on its GS-return channel: the handshake, then replies (spec §2, §4)."""

FEInbound: TypeAlias = LAInbound | BEIsUp | TAUp | NodeLost | Heartbeat | BEDone | SHHalted
"""What the frontend reads from a backend: the backend's own messages and its LA channel's, relayed."""

BEInbound: TypeAlias = LAChannelsInfo | FEForward | Heartbeat | BEInterrupt | BETeardown
"""What a backend reads from the frontend."""

TAStdinInbound: TypeAlias = LAChannelsInfo | BETeardown
"""What a transport agent reads on its stdin, from its backend (after its TAConfig)."""

TAStdoutOutbound: TypeAlias = TAListening | TAUp | TAHalted | NodeLost | AbnormalTermination
"""What a transport agent writes on its stdout, for its backend."""

ToolInbound: TypeAlias = GSStatusResponse | SHStatusResponse
"""What a tool that is not a managed process (`dragon status`) reads on its own reply channel."""

AnyMsg: TypeAlias = (
    BENodeIdxSH
    | SHPingBE
    | BEPingSH
    | SHChannelsUp
    | GSPingSH
    | SHPingGS
    | GSIsUp
    | GSPingProc
    | GSHeadExit
    | GSTeardown
    | GSHalted
    | SHTeardown
    | SHHaltBE
    | BEHalted
    | SHHalted
    | AbnormalTermination
    | GSDumpState
    | GSStatus
    | GSNodeList
    | SHStatus
    | SHStatusResponse
    | SHDumpState
    | GSNodeList
    | GSProcessCreate
    | GSProcessList
    | GSProcessQuery
    | GSProcessKill
    | GSProcessJoin
    | GSProcessJoinList
    | GSChannelCreate
    | GSChannelList
    | GSChannelQuery
    | GSChannelDestroy
    | GSChannelJoin
    | GSPoolCreate
    | GSPoolList
    | GSPoolQuery
    | GSPoolDestroy
    | GSResponse
    | SHProcessCreate
    | SHProcessCreateResponse
    | SHProcessKill
    | SHProcessKillResponse
    | SHProcessExit
    | SHFwdInput
    | SHFwdInputErr
    | SHFwdOutput
    | SHChannelCreate
    | SHChannelCreateResponse
    | SHChannelDestroy
    | SHChannelDestroyResponse
    | SHPoolCreate
    | SHPoolCreateResponse
    | SHPoolDestroy
    | SHPoolDestroyResponse
    | BEIsUp
    | LAChannelsInfo
    | TAListening
    | TAUp
    | TATraffic
    | TAHalted
    | NodeLost
    | FEForward
    | Heartbeat
    | BEInterrupt
    | BETeardown
    | BEDone
)
"""Every message of the catalog (for tools and dumps that may see anything)."""

ALL_MESSAGES: tuple[type[Msg], ...] = get_args(AnyMsg)
"""Every message class, in catalog order."""
