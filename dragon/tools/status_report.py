"""One snapshot of a running runtime for `dragon status`: the `--json` document and how it is gathered.

Global Services' tables (processes, channels, pools) come from its answer to GSStatus, what each live
process is doing (OS state, CPU, memory, command line) from Local Services' answer to SHStatus
(`dragon.tools.status_query`). The rest is read directly, without asking anybody, so that a stuck service
cannot stall it: the services' own figures from /proc, each ACTIVE channel's from its shared-memory
header (lock-free), each pool's from its heap, in a helper thread bounded by the deadline (a process
stopped while holding a heap lock would make it wait). Nothing here changes the runtime.

The document is stable: keys are only ever added (label, target and creator were, later), so readers
ignore keys they do not know; `version` changes when a key changes its meaning or goes away. Every
key is always present; an unknown figure is null. Times are Unix seconds, sizes bytes, CPU seconds.

Version 2 (runs of several nodes, issue 16): the top-level `nodes` (one `NodeRow` per node, by index;
one on a single node) and `security`, and a `node` key in every process, channel and pool. Nothing
of version 1 changed meaning or went away, so a version-1 reader that ignores unknown keys keeps
working (one that insists on `version == 1` is told by the number); the number changed because a
report now describes a run of many nodes, whose rows a reader may need to tell apart by `node`.
The run listing (`RunList`) gained `nodes` per run and `node_dirs`.

Of a run of several nodes, only the primary node's Global Services answers, and only the primary's
Local Services is asked (`dragon.tools.status_query`): the OS figures of processes on other nodes
(os_state, command, cpu_s, rss_bytes), and the shared-memory figures of their channels and pools,
are null; so are a node's `load` and `memory_available_bytes` except for the node this command runs
on (the primary: its runtime directory is here), read from its /proc.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from typing import Final

import msgspec

from dragon import _rundir, _runs
from dragon.descriptors import ObjectState
from dragon.ids import BE_CUID, DEFAULT_POOL_MUID, GS_INPUT_CUID, GS_PUID, INF_POOL_MUID, SHEP_CUID
from dragon.messages import GSStatusResponse, ProcessUsage, SHStatusResponse
from dragon.tools.status_query import NotAnswering, StatusClient
from dragon.transport import Channel, ChannelError, Pool, PoolError, Record, records

JSON_VERSION: Final = 2


class TransportRow(msgspec.Struct, kw_only=True):
    """What a node's transport agent has carried since it started (its last report to GS, sent every
    second): frames and bytes each way (heartbeats left out), frames queued in its channel for it to
    send, operations of other nodes' processes running on this node's channels, frames dropped."""

    frames_out: int
    bytes_out: int
    frames_in: int
    bytes_in: int
    queued: int
    ops: int
    dropped: int


class NodeRow(msgspec.Struct, kw_only=True):
    """A node of the run, as Global Services knows it; `load` and `memory_available_bytes` are read
    here, for the node this command runs on only (null for the others: their /proc is elsewhere)."""

    idx: int
    host: str
    primary: bool
    state: str  # ACTIVE, ... (GS's view of the node)
    run_id: str  # the node's own run id (its runtime directory and /dev/shm entries); "" if not known
    cpus: int
    memory_bytes: int  # physical memory
    processes: int  # live (not DEAD) processes of GS's table on this node (GS itself on the primary)
    load: list[float] | None = None  # the 1, 5 and 15-minute load averages (/proc/loadavg)
    memory_available_bytes: int | None = None  # MemAvailable of /proc/meminfo
    transport: TransportRow | None = None  # its transport agent's traffic; null on a single node


class ServiceRow(msgspec.Struct, kw_only=True):
    name: str  # "launcher", "local_services" or "global_services"
    pid: int
    state: str  # running, sleeping, stopped, zombie, ... or "gone"
    uptime_s: float | None
    cpu_s: float | None
    rss_bytes: int | None


class ProcessRow(msgspec.Struct, kw_only=True):
    """A process of Global Services' table; GS itself is one (p_uid 1, "global_services"), with the
    figures of its row of services and no command. `label` and `target` are what its creator told GS
    for people ("": not given; see `dragon.mp.names`); `name` is GS's unique name."""

    p_uid: int
    pid: int | None
    name: str
    node: int  # index of the node it runs on (a `NodeRow.idx`)
    parent: int  # the parent's p_uid
    label: str
    target: str
    state: str  # PENDING, ACTIVE or DEAD
    exit_code: int | None
    os_state: str | None  # from here on from /proc (Local Services), while alive
    command: list[str] | None  # a child forked by the fork server shows the server's command line
    cpu_s: float | None
    rss_bytes: int | None


class ChannelRow(msgspec.Struct, kw_only=True):
    """A channel: the three infrastructure ones (GS input c_uid 2, launcher 2**57, Local Services
    2**62), then Global Services' table. `label` ("": not given) and `creator` (the maker's p_uid)
    are what its creator told GS."""

    c_uid: int
    name: str
    m_uid: int | None
    node: int  # its home node (where its pool lives)
    label: str
    creator: int | None
    kind: str  # "infrastructure" or "managed"
    state: str  # PENDING, ACTIVE or DEAD
    capacity: int | None = None  # from here on from its shared-memory header, while ACTIVE
    block_size: int | None = None
    depth: int | None = None  # messages waiting
    blocked_senders: int | None = None
    blocked_receivers: int | None = None
    sent: int | None = None
    received: int | None = None


class ObjectRow(msgspec.Struct, kw_only=True):
    """A synchronization object of the "dragon" start method or `dragon.native` (a Lock, an Event, a
    Barrier...): its home is a channel of GS's table (a record, `dragon.transport.records`), shown here
    instead of among the channels. The figures come from the record, while ACTIVE."""

    c_uid: int
    name: str
    label: str  # what its maker told GS ("Lock of MainProcess")
    creator: int | None
    kind: str  # Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event, Barrier, ...
    state: str  # ACTIVE (or PENDING, DEAD)
    waiters: int | None = None  # processes waiting on it
    # The pids below are the record's words: a process of another node than the record's home is
    # `records.remote_holder(node, pid)`, a number above 2**32 (`records.holder_of` decodes it; the
    # table shows "1234 on node 1").
    holders: list[int] | None = None  # pids holding it (a Lock's holder, a Semaphore's holders)
    value: int | None = None  # a semaphore's value (a Lock: 1 free, 0 held), an Event's flag (1 set), ...
    broken_by: int | None = None  # a broken Barrier: the pid whose death broke it (-1 aborted); 0 not broken
    reclaimed_from: int | None = None  # the last dead holder the runtime took it back from; 0 none


class PoolRow(msgspec.Struct, kw_only=True):
    """A pool: the run's infrastructure pool (m_uid 0) and default pool (2**62), then GS's others."""

    m_uid: int
    name: str
    node: int
    kind: str  # "infrastructure", "default" or "managed"
    state: str  # ACTIVE, ...
    size_bytes: int | None = None  # from here on from its heap, if read in time
    used_bytes: int | None = None
    free_bytes: int | None = None
    largest_free_bytes: int | None = None
    allocations: int | None = None


class StatusReport(msgspec.Struct, kw_only=True):
    """One snapshot of a runtime: the `--json` document, one per line (per refresh with --watch)."""

    version: int = JSON_VERSION
    run_id: str
    runtime_dir: str
    answering: bool  # False: Global Services did not answer; `error` says why, only `services` is filled
    error: str | None
    gs_state: str | None  # WAITING_FOR_HEAD, HAS_HEAD, SHUTTING_DOWN (null: no answer)
    security: str | None  # between nodes: "curve" (authenticated, encrypted) or "none"; null on one node
    started: float
    uptime_s: float
    pgid: int
    services: list[ServiceRow]
    processes: list[ProcessRow]
    channels: list[ChannelRow]
    pools: list[PoolRow]
    objects: list[ObjectRow] = msgspec.field(default_factory=list)
    nodes: list[NodeRow] = msgspec.field(default_factory=list)  # empty when not answering


class RunSummary(msgspec.Struct, kw_only=True):
    """A runtime directory of this machine: a run (node 0, the primary) or one node of a run of several."""

    run_id: str
    launcher_pid: int
    started: float
    uptime_s: float
    runtime_dir: str
    nodes: int  # how many nodes the run has
    node_idx: int = 0
    primary_run_id: str = ""  # a node other than the primary: its primary's run id ("" if not known)


class RunList(msgspec.Struct, kw_only=True):
    """The `--json` document when several runtimes run and none is named (exit status 2): `runs` are
    those `dragon status RUN_ID` shows; `node_dirs` the runtime directories here of nodes other than
    a primary (each node of a run of several has its own), which only their primary answers for."""

    version: int = JSON_VERSION
    runs: list[RunSummary]
    node_dirs: list[RunSummary] = msgspec.field(default_factory=list)


# ------------------------------------------------------------------------------------ building a report


def _service_row(name: str, pid: int, info: _rundir.RunInfo, now: float, btime: float) -> ServiceRow:
    # All three services start before Local Services takes runtime.json's `started` time, so a
    # process under that pid that started later is another one that reused the pid.
    proc = _runs.same_process(pid, info.started, btime=btime)
    if proc is None:
        return ServiceRow(name=name, pid=pid, state="gone", uptime_s=None, cpu_s=None, rss_bytes=None)
    return ServiceRow(
        name=name,
        pid=pid,
        state=_runs.STATE_WORDS.get(proc.state, proc.state),
        uptime_s=round(now - proc.start_time, 2),
        cpu_s=round(proc.cpu_s, 2),
        rss_bytes=proc.rss_bytes,
    )


def _process_rows(resp: GSStatusResponse, ls: SHStatusResponse | None, gs: ServiceRow) -> list[ProcessRow]:
    """GS's table of processes, with LS's figures (state, CPU, memory, command) for the live ones,
    and for GS's own entry (p_uid 1, not LS's to report) the figures of its row of services, `gs`."""
    usage: dict[int, ProcessUsage] = {u.p_uid: u for u in ls.processes} if ls is not None else {}
    rows = []
    for d in sorted(resp.processes, key=lambda d: d.p_uid):
        row = ProcessRow(
            p_uid=d.p_uid,
            pid=d.pid,
            name=d.name,
            node=d.node,
            parent=d.p_p_uid,
            label=d.label,
            target=d.target,
            state=d.state.name,
            exit_code=d.ecode,
            os_state=None,
            command=None,
            cpu_s=None,
            rss_bytes=None,
        )
        rows.append(row)
        if d.p_uid == GS_PUID:
            if gs.state != "gone":
                row.os_state, row.cpu_s, row.rss_bytes = gs.state, gs.cpu_s, gs.rss_bytes
            continue
        u = usage.get(d.p_uid) if d.state != ObjectState.DEAD else None
        if u is not None and u.os_state not in ("", "Z", "X"):
            row.os_state = _runs.STATE_WORDS.get(u.os_state, u.os_state)
            row.command, row.cpu_s, row.rss_bytes = u.command, round(u.cpu_s, 2), u.rss_bytes
    return rows


def _node_rows(resp: GSStatusResponse, processes: list[ProcessRow], here: int) -> list[NodeRow]:
    """GS's nodes, each with its count of live processes; the load and available memory of node
    `here` (the one this command runs on) from this machine's /proc."""
    live = Counter(p.node for p in processes if p.state != ObjectState.DEAD.name)
    traffic = {t.node_idx: t for t in resp.traffic}
    rows = []
    for d in sorted(resp.nodes, key=lambda d: d.idx):
        row = NodeRow(
            idx=d.idx,
            host=d.host_name,
            primary=d.is_primary,
            state=d.state.name,
            run_id=d.run_id,
            cpus=d.num_cpus,
            memory_bytes=d.physical_mem_bytes,
            processes=live[d.idx],
        )
        t = traffic.get(d.idx)
        if t is not None:
            row.transport = TransportRow(
                frames_out=t.frames_out,
                bytes_out=t.bytes_out,
                frames_in=t.frames_in,
                bytes_in=t.bytes_in,
                queued=t.queued,
                ops=t.ops,
                dropped=t.dropped,
            )
        if d.idx == here:
            row.load = [round(x, 2) for x in os.getloadavg()]
            row.memory_available_bytes = _memory_available()
        rows.append(row)
    return rows


def _memory_available() -> int | None:
    """MemAvailable of /proc/meminfo, in bytes (None if it cannot be read)."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024  # in kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _channel_row(
    c_uid: int,
    name: str,
    m_uid: int | None,
    node: int,
    here: int,
    kind: str,
    state: ObjectState,
    sdesc: str,
    label: str = "",
    creator: int | None = None,
) -> ChannelRow:
    """A channel's row; its figures from its shared-memory header if it is ACTIVE and lives on node
    `here` (another node's shared memory is not on this machine)."""
    row = ChannelRow(
        c_uid=c_uid, name=name, m_uid=m_uid, node=node, label=label, creator=creator, kind=kind, state=state.name
    )
    if state != ObjectState.ACTIVE or not sdesc or node != here:
        return row
    try:
        chan = Channel.attach(sdesc)
    except (ChannelError, OSError):
        return row
    try:
        st = chan.statistics()
    finally:
        chan.close()
    row.capacity, row.block_size, row.depth = st.capacity, st.block_size, st.depth
    row.blocked_senders, row.blocked_receivers = st.blocked_senders, st.blocked_receivers
    row.sent, row.received = st.sent, st.received
    return row


def _object_rows(resp: GSStatusResponse, here: int) -> tuple[list[ObjectRow], set[int]]:
    """Rows of the synchronization objects (the channels of node `here` whose header says they are
    one: a record of a known kind), and their c_uids (left out of the channels). Another node's
    records are not readable here: they are listed among the channels."""
    rows: list[ObjectRow] = []
    for d in sorted(resp.channels, key=lambda d: d.c_uid):
        if d.state != ObjectState.ACTIVE or not d.sdesc or d.node != here:
            continue
        try:
            rec = Record.attach(d.sdesc)
        except (ChannelError, OSError):
            continue
        try:
            st = records.statistics(rec)
        finally:
            rec.close()
        if st.kind:
            rows.append(
                ObjectRow(
                    c_uid=d.c_uid,
                    name=d.name,
                    label=d.label,
                    creator=d.creator,
                    kind=st.kind,
                    state=d.state.name,
                    waiters=st.waiters,
                    holders=st.holders,
                    value=st.value,
                    broken_by=st.broken_by,
                    reclaimed_from=st.reclaimed_from,
                )
            )
    return rows, {row.c_uid for row in rows}


def _channel_rows(info: _rundir.RunInfo, resp: GSStatusResponse, leave_out: set[int]) -> list[ChannelRow]:
    here = info.node_idx
    rows = [
        _channel_row(c_uid, name, INF_POOL_MUID, here, here, "infrastructure", ObjectState.ACTIVE, sdesc)
        for c_uid, name, sdesc in (
            (GS_INPUT_CUID, "GS input", info.gs_cd),
            (BE_CUID, "launcher input", info.la_cd),
            (SHEP_CUID, "LS input", info.shep_cd),
        )
    ]
    rows += [
        _channel_row(d.c_uid, d.name, d.m_uid, d.node, here, "managed", d.state, d.sdesc, d.label, d.creator)
        for d in sorted(resp.channels, key=lambda d: d.c_uid)
        if d.c_uid not in leave_out
    ]
    return rows


def _pool_rows(info: _rundir.RunInfo, resp: GSStatusResponse, deadline: float) -> list[PoolRow]:
    """Rows of the infrastructure pools and GS's pools. A pool's heap lock is held only for an
    allocation, but a process stopped while holding it would make `statistics()` wait: so the
    figures are read in a helper thread, and pools not read by `deadline` keep null figures; so do
    the pools of other nodes (their shared memory is not on this machine)."""
    here = info.node_idx
    wanted: list[tuple[PoolRow, str]] = [
        (
            PoolRow(m_uid=INF_POOL_MUID, name="infrastructure", node=here, kind="infrastructure", state="ACTIVE"),
            info.inf_pd,
        ),
        (PoolRow(m_uid=DEFAULT_POOL_MUID, name="default", node=here, kind="default", state="ACTIVE"), info.default_pd),
    ]
    for d in sorted(resp.pools, key=lambda d: d.m_uid):
        if d.m_uid not in (INF_POOL_MUID, DEFAULT_POOL_MUID):
            wanted.append(
                (
                    PoolRow(m_uid=d.m_uid, name=d.name, node=d.node, kind="managed", state=d.state.name),
                    d.sdesc if d.state == ObjectState.ACTIVE and d.node == here else "",
                )
            )

    def read_all() -> None:
        for row, sdesc in wanted:
            if not sdesc:
                continue
            try:
                with Pool.attach(sdesc) as pool:
                    st = pool.statistics()
            except (PoolError, OSError):
                continue
            row.size_bytes, row.used_bytes, row.free_bytes = st.size_bytes, st.used_bytes, st.free_bytes
            row.largest_free_bytes, row.allocations = st.largest_free_bytes, st.allocations

    reader = threading.Thread(target=read_all, name="pool statistics", daemon=True)
    reader.start()
    reader.join(max(0.1, deadline - time.monotonic()))
    return [row for row, _ in wanted]


def collect(info: _rundir.RunInfo, client: StatusClient | None, timeout_s: float) -> StatusReport:
    """One snapshot of the run `info` describes: GS's tables through `client`, the rest read directly.

    With `client` None, or if GS does not answer within `timeout_s`, the report has `answering`
    False, the reason in `error`, the services and nothing else. Never raises for a runtime that
    goes away meanwhile: what is gone shows as gone.
    """
    deadline = time.monotonic() + timeout_s
    now, btime = time.time(), _runs.boot_time()
    services = [
        _service_row(name, pid, info, now, btime)
        for name, pid in (
            ("launcher", info.launcher_pid),
            ("local_services", info.ls_pid),
            ("global_services", info.gs_pid),
        )
    ]
    report = StatusReport(
        run_id=info.run_id,
        runtime_dir=_rundir.run_dir(info.run_id),
        answering=False,
        error=None,
        gs_state=None,
        security=None,
        started=info.started,
        uptime_s=round(now - info.started, 2),
        pgid=info.pgid,
        services=services,
        processes=[],
        channels=[],
        pools=[],
    )
    if client is None:
        report.error = "no reply channel"
        return report
    try:
        resp, ls_resp = client.ask(timeout_s)
    except NotAnswering as exc:
        report.error = str(exc)
        return report
    fill(report, info, resp, ls_resp, max(deadline, time.monotonic() + 0.5))
    return report


def fill(
    report: StatusReport, info: _rundir.RunInfo, resp: GSStatusResponse, ls: SHStatusResponse | None, deadline: float
) -> None:
    """Fill `report` (its services already there) from Global Services' answer `resp` and Local
    Services' `ls`, reading the figures of this node's channels and pools until `deadline`."""
    report.answering, report.gs_state = True, resp.state
    report.security = resp.security or None
    report.processes = _process_rows(resp, ls, report.services[2])
    report.nodes = _node_rows(resp, report.processes, info.node_idx)
    report.objects, objects = _object_rows(resp, info.node_idx)
    report.channels = _channel_rows(info, resp, objects)
    report.pools = _pool_rows(info, resp, deadline)
