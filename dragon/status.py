"""`dragon status`: what a running runtime holds right now (spec §8; issue #6).

    dragon status [RUN_ID] [--json] [--watch [--interval S]] [--timeout S]

Finds this user's running runtimes through their runtime directories (`dragon._rundir`; a run is
running by the rules of `dragon._runs`). With no RUN_ID and exactly one running, shows that one; with
several, lists them (run id, launcher pid, uptime) and exits 2, asking to name one. With none: one
line on stderr, exit 1.

Where the figures come from. The process, channel and pool tables are Global Services' own, asked
with one GSStatus request; what each live process is doing (OS state, CPU time, resident memory,
command line) is Local Services' view, asked with one SHStatus request. Both reply on a channel this
command creates in the user-managed c_uid range (2**54 .. 2**55-1) under the name the services derive
from the c_uid (`_rundir.channel_name`), and removes again whatever happens (timeout, Ctrl-C, error:
try/finally). Then, without asking anybody: the services' own state, uptime, CPU and memory from /proc;
each ACTIVE channel's figures from its shared-memory header (`Channel.statistics()`, lock-free: the
handle is attached, read and closed); each pool's from its heap (`Pool.statistics()`), the run's two
infrastructure pools (m_uid 0, and the default pool 2**62) included. The command never changes the
runtime. A Global Services that does not answer within `--timeout` (default 2 s) is reported as not
answering, with the services table only; the command never hangs on it. No trio here: this is a
short-lived, blocking tool.

Exit status: 0 shown; 1 no runtime running (or RUN_ID is not one); 2 usage error, or several running
and none named; 3 Global Services did not answer. `--watch` redraws in place (ANSI home + clear) every
`--interval` seconds (default 2) until Ctrl-C, which exits 0; with `--json` it writes one document per
refresh, one per line. A `--watch` session keeps one reply channel for all its requests.

JSON (`--json`), a stable shape, version 1. Every key is always present; a figure that is unknown is
null. Times are Unix seconds (floats), sizes bytes, CPU seconds.

    {"version": 1, "run_id": str, "runtime_dir": str, "answering": bool, "error": str | null,
     "gs_state": str | null,            # WAITING_FOR_HEAD, HAS_HEAD, SHUTTING_DOWN (null: no answer)
     "started": float, "uptime_s": float, "pgid": int,
     "services": [{"name": "launcher" | "local_services" | "global_services", "pid": int,
                   "state": str,        # running, sleeping, stopped, zombie, ... or "gone"
                   "uptime_s": float | null, "cpu_s": float | null, "rss_bytes": int | null}],
     "processes": [{"p_uid": int, "pid": int | null, "name": str, "parent": int,   # parent p_uid
                    "label": str, "target": str,    # what people call it, what it runs ("": not given)
                    "state": "PENDING" | "ACTIVE" | "DEAD", "exit_code": int | null,
                    "os_state": str | null, "command": [str] | null,            # from /proc while alive
                    "cpu_s": float | null, "rss_bytes": int | null}],
     "channels": [{"c_uid": int, "name": str, "m_uid": int | null,
                   "label": str, "creator": int | null,   # what it is ("": not given), maker's p_uid
                   "kind": "infrastructure" | "managed", "state": "PENDING" | "ACTIVE" | "DEAD",
                   "capacity": int | null, "block_size": int | null, "depth": int | null,   # messages waiting
                   "blocked_senders": int | null, "blocked_receivers": int | null,
                   "sent": int | null, "received": int | null}],
     "pools": [{"m_uid": int, "name": str, "kind": "infrastructure" | "default" | "managed",
                "state": "ACTIVE" | ..., "size_bytes": int | null, "used_bytes": int | null,
                "free_bytes": int | null, "largest_free_bytes": int | null, "allocations": int | null}]}

Infrastructure channels are the GS input (c_uid 2), launcher (2**57) and Local Services (2**62)
channels. Global Services is also a row of "processes" (p_uid 1, name "global_services"), with the
figures of its row in "services" and no command.

Names and labels. `name` is Global Services' unique name (`dragon_process_<p_uid>` unless one was
given); `label` and `target` (processes) and `label` and `creator` (channels) are what their creators
told GS for people, not unique: a multiprocessing process is labelled with its multiprocessing name
(`DragonProcess-1`, `DragonPoolWorker-2`, or the name given) and its target (`st.py: work`), a
queue's channel with its kind and maker (`Queue of MainProcess`, `Pool tasks of MainProcess`), a
Python head `MainProcess` running its script; GS labels the channels it makes with a process
(`stdout of worker`, `GS replies to worker`). See `dragon._mp_names`. A "command" is what /proc
says: for a child of the start method made by the fork server (`dragon._forkserver`), forked and
not exec'd, that is the server's command line, so the table shows its target instead.

Version: keys are only ever added to this shape (label, target and creator were, later), so
readers must ignore keys they do not know; "version" changes when a key changes its meaning or
goes away.

Several runtimes and none named, with --json: `{"version": 1, "runs": [{"run_id": str,
"launcher_pid": int, "started": float, "uptime_s": float, "runtime_dir": str}]}` and exit 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

import msgspec

from dragon import _rundir, _runs
from dragon._gs_client import user_reply_channel
from dragon.descriptors import ObjectState
from dragon.ids import (
    BE_CUID,
    DEFAULT_POOL_MUID,
    GS_INPUT_CUID,
    GS_PUID,
    INF_POOL_MUID,
    SHEP_CUID,
    default_channel_name,
    default_process_name,
    title,
)
from dragon.messages import GSStatus, GSStatusResponse, ProcessUsage, SHStatus, SHStatusResponse, ToolInbound
from dragon.transport import Channel, ChannelDestroyed, ChannelEmpty, ChannelError, ChannelFull, Pool, PoolError

DEFAULT_TIMEOUT_S: Final = 2.0
DEFAULT_INTERVAL_S: Final = 2.0
REPLY_CAPACITY: Final = 8
REPLY_BLOCK_BYTES: Final = 64 * 1024  # a status of 1,000 channels is ~200 KiB: a few blocks, or a side file
JSON_VERSION: Final = 1
CLEAR_SCREEN: Final = "\x1b[H\x1b[2J"
WIDTH: Final = 100
"""Columns the tables fit in when the output is not a terminal (and COLUMNS is not set)."""
COMFORT_CELL: Final = 20
"""How narrow a text column gets, to fit a table in the terminal, before figures are left out."""
MIN_CELL: Final = 12
"""The narrowest a text column gets to fit a table in the terminal."""

EXIT_OK: Final = 0
EXIT_NO_RUNTIME: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_ANSWERING: Final = 3


# ------------------------------------------------------------------------------------ the JSON shape


class ServiceRow(msgspec.Struct, kw_only=True):
    name: str
    pid: int
    state: str
    uptime_s: float | None
    cpu_s: float | None
    rss_bytes: int | None


class ProcessRow(msgspec.Struct, kw_only=True):
    p_uid: int
    pid: int | None
    name: str
    parent: int
    label: str
    target: str
    state: str
    exit_code: int | None
    os_state: str | None
    command: list[str] | None
    cpu_s: float | None
    rss_bytes: int | None


class ChannelRow(msgspec.Struct, kw_only=True):
    c_uid: int
    name: str
    m_uid: int | None
    label: str
    creator: int | None
    kind: str
    state: str
    capacity: int | None = None
    block_size: int | None = None
    depth: int | None = None
    blocked_senders: int | None = None
    blocked_receivers: int | None = None
    sent: int | None = None
    received: int | None = None


class PoolRow(msgspec.Struct, kw_only=True):
    m_uid: int
    name: str
    kind: str
    state: str
    size_bytes: int | None = None
    used_bytes: int | None = None
    free_bytes: int | None = None
    largest_free_bytes: int | None = None
    allocations: int | None = None


class StatusReport(msgspec.Struct, kw_only=True):
    """One snapshot of a runtime: the `--json` document (shape in the module docstring)."""

    version: int = JSON_VERSION
    run_id: str
    runtime_dir: str
    answering: bool
    error: str | None
    gs_state: str | None
    started: float
    uptime_s: float
    pgid: int
    services: list[ServiceRow]
    processes: list[ProcessRow]
    channels: list[ChannelRow]
    pools: list[PoolRow]


class RunSummary(msgspec.Struct, kw_only=True):
    run_id: str
    launcher_pid: int
    started: float
    uptime_s: float
    runtime_dir: str


class RunList(msgspec.Struct, kw_only=True):
    version: int = JSON_VERSION
    runs: list[RunSummary]


# ------------------------------------------------------------------------------------ asking GS


class NotAnswering(Exception):
    """Global Services did not answer GSStatus within the timeout (or its channel is gone)."""


class StatusClient:
    """A reply channel of this process in one run, and GSStatus requests over it.

    The channel is created by the constructor and removed by `close()` (use it as a context manager);
    its c_uid is random in the user-managed range, so that two `dragon status` commands, or two
    sessions of one reused pid, never share one (GS keeps its handle on a reply channel it has used).
    """

    def __init__(self, info: _rundir.RunInfo) -> None:
        """Create the reply channel. Raises OSError if /dev/shm refuses it."""
        self.info = info
        self.c_uid, self._reply = user_reply_channel(info.run_id, capacity=REPLY_CAPACITY, block_size=REPLY_BLOCK_BYTES)
        self._tag = 0
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder(ToolInbound)

    def __enter__(self) -> StatusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the reply channel (also when the runtime already removed its entries). Idempotent."""
        try:
            self._reply.destroy()
        except ChannelError:  # destroyed by the runtime's teardown, or closed already
            self._reply.close()

    def ask(self, timeout_s: float) -> tuple[GSStatusResponse, SHStatusResponse | None]:
        """Send GSStatus to Global Services and SHStatus to Local Services, and wait for both answers,
        at most `timeout_s` seconds in all. Local Services' answer is None if it alone did not come.

        Raises:
            NotAnswering: Global Services gave no answer in time, its channel stayed full, or is gone.
        """
        deadline = time.monotonic() + timeout_s
        self._tag += 1
        gs_tag, ls_tag = self._tag, self._tag + 1
        self._tag += 1
        self._post(self.info.gs_cd, GSStatus(p_uid=0, r_c_uid=self.c_uid, tag=gs_tag), "Global Services", deadline)
        try:
            self._post(self.info.shep_cd, SHStatus(p_uid=0, r_c_uid=self.c_uid, tag=ls_tag), "Local Services", deadline)
        except NotAnswering:
            ls_tag = -1  # LS's figures are extras: the report goes on without them
        gs_resp: GSStatusResponse | None = None
        ls_resp: SHStatusResponse | None = None
        while gs_resp is None or (ls_resp is None and ls_tag >= 0):
            try:
                frame = self._reply.recv(max(0.0, deadline - time.monotonic()))
            except ChannelEmpty as exc:
                if gs_resp is not None:
                    break  # LS did not answer in time: show what GS said
                raise NotAnswering(f"Global Services is not answering (no reply within {timeout_s:g} s)") from exc
            except ChannelDestroyed as exc:
                raise NotAnswering("the runtime went away while answering") from exc
            try:
                resp = self._dec.decode(frame)
            except msgspec.DecodeError:
                continue  # not ours to understand; the reply channel is ours alone
            if isinstance(resp, GSStatusResponse) and resp.ref == gs_tag:
                gs_resp = resp
            elif isinstance(resp, SHStatusResponse) and resp.ref == ls_tag:
                ls_resp = resp
            # else: the late answer to an earlier request of this session that timed out
        return gs_resp, ls_resp

    def _post(self, cd: str, msg: GSStatus | SHStatus, who: str, deadline: float) -> None:
        try:
            chan = Channel.attach(cd)
        except ChannelDestroyed as exc:
            raise NotAnswering(f"the runtime is gone (no {who} channel): {exc}") from exc
        try:
            chan.send(self._enc.encode(msg), max(0.0, deadline - time.monotonic()))
        except ChannelFull as exc:
            raise NotAnswering(f"{who} is not answering (its input channel stayed full)") from exc
        except ChannelDestroyed as exc:
            raise NotAnswering(f"the runtime is gone (its {who} channel was destroyed): {exc}") from exc
        finally:
            chan.close()


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


def _channel_row(
    c_uid: int,
    name: str,
    m_uid: int | None,
    kind: str,
    state: ObjectState,
    sdesc: str,
    label: str = "",
    creator: int | None = None,
) -> ChannelRow:
    row = ChannelRow(c_uid=c_uid, name=name, m_uid=m_uid, label=label, creator=creator, kind=kind, state=state.name)
    if state != ObjectState.ACTIVE or not sdesc:
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


def _channel_rows(info: _rundir.RunInfo, resp: GSStatusResponse) -> list[ChannelRow]:
    rows = [
        _channel_row(c_uid, name, INF_POOL_MUID, "infrastructure", ObjectState.ACTIVE, sdesc)
        for c_uid, name, sdesc in (
            (GS_INPUT_CUID, "GS input", info.gs_cd),
            (BE_CUID, "launcher input", info.la_cd),
            (SHEP_CUID, "LS input", info.shep_cd),
        )
    ]
    rows += [
        _channel_row(d.c_uid, d.name, d.m_uid, "managed", d.state, d.sdesc, d.label, d.creator)
        for d in sorted(resp.channels, key=lambda d: d.c_uid)
    ]
    return rows


def _pool_rows(info: _rundir.RunInfo, resp: GSStatusResponse, deadline: float) -> list[PoolRow]:
    """Rows of the infrastructure pools and GS's pools. A pool's heap lock is held only for an
    allocation, but a process stopped while holding it would make `statistics()` wait: so the
    figures are read in a helper thread, and pools not read by `deadline` keep null figures."""
    wanted: list[tuple[PoolRow, str]] = [
        (PoolRow(m_uid=INF_POOL_MUID, name="infrastructure", kind="infrastructure", state="ACTIVE"), info.inf_pd),
        (PoolRow(m_uid=DEFAULT_POOL_MUID, name="default", kind="default", state="ACTIVE"), info.default_pd),
    ]
    for d in sorted(resp.pools, key=lambda d: d.m_uid):
        if d.m_uid not in (INF_POOL_MUID, DEFAULT_POOL_MUID):
            wanted.append(
                (
                    PoolRow(m_uid=d.m_uid, name=d.name, kind="managed", state=d.state.name),
                    d.sdesc if d.state == ObjectState.ACTIVE else "",
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
    report.answering, report.gs_state = True, resp.state
    report.processes = _process_rows(resp, ls_resp, services[2])
    report.channels = _channel_rows(info, resp)
    report.pools = _pool_rows(info, resp, max(deadline, time.monotonic() + 0.5))
    return report


# ------------------------------------------------------------------------------------ the table


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h < 48 else f"{h // 24}d{h % 24:02d}h"


def _opt(v: object) -> str:
    return "-" if v is None else str(v)


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Sequence[bool],
    *,
    fit: int | None = None,
    shrink: Sequence[int] = (),
    drop: Sequence[int] = (),
) -> list[str]:
    """Aligned text columns, two spaces apart; `right[i]` right-aligns column i (figures).

    With `fit`, lines are kept within `fit` characters where that can be done: the text columns
    `shrink` lists are narrowed, in that order, to COMFORT_CELL characters (a cut cell ends in
    "..."); then the columns `drop` lists are left out, in that order; then the texts are narrowed
    down to MIN_CELL; room a dropped column left goes back to the texts. Figures are never cut, so a
    very narrow terminal still gets longer lines."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    shown = list(range(len(headers)))
    if fit is not None:
        natural = list(widths)

        def over() -> int:
            return sum(widths[i] for i in shown) + 2 * (len(shown) - 1) - fit

        def narrow(floor: int) -> None:
            for i in shrink:
                widths[i] -= max(0, min(over(), widths[i] - max(floor, len(headers[i]))))

        narrow(COMFORT_CELL)
        for i in drop:
            if over() <= 0:
                break
            shown.remove(i)
        narrow(MIN_CELL)
        for i in reversed(shrink):
            widths[i] += max(0, min(-over(), natural[i] - widths[i]))

    def line(cells: Sequence[str]) -> str:
        out = []
        for i in shown:
            c, w = cells[i], widths[i]
            c = c if len(c) <= w else c[: w - 3] + "..."
            out.append(c.rjust(w) if right[i] else c.ljust(w))
        return "  ".join(out).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def render(report: StatusReport, width: int = WIDTH) -> str:
    """The human-readable form of a report: a header line and one aligned table per kind of object,
    each within `width` columns where cutting texts and leaving out the less needed figures
    (PARENT and CPU, SENT and RECV, LARGEST and ALLOCS) can make it so (`table`).

    Processes and channels are shown by what people call them (`ids.title`: the label, else a name
    given at create, else "-": the default names only repeat the uid); --json has every name. A live
    process's STATE is its OS state (sleeping, running, ...), a dead one's DEAD(exit code); TARGET is
    what it runs as its creator said (`st.py: work`), else its command line. BLOCKED_S/R counts the
    senders and receivers waiting on a channel."""
    lines = [
        f"Dragon runtime {report.run_id}  up {_duration(report.uptime_s)}  "
        f"state {report.gs_state or 'unknown'}  pgid {report.pgid}  dir {report.runtime_dir}"
    ]
    if not report.answering:
        lines.append(f"NOT ANSWERING: {report.error}")
    lines += ["", "SERVICES"]
    lines += table(
        ["NAME", "PID", "STATE", "UPTIME", "CPU", "RSS"],
        [
            [
                s.name,
                str(s.pid),
                s.state,
                _duration(s.uptime_s),
                "-" if s.cpu_s is None else f"{s.cpu_s:.2f}s",
                _size(s.rss_bytes),
            ]
            for s in report.services
        ],
        [False, True, False, True, True, True],
    )
    if not report.answering:
        return "\n".join(lines) + "\n"
    lines += ["", f"PROCESSES ({len(report.processes)})"]
    lines += table(
        ["P_UID", "PID", "NAME", "PARENT", "STATE", "CPU", "RSS", "TARGET"],
        [
            [
                str(p.p_uid),
                _opt(p.pid),
                _text(title(p.label, p.name, default_process_name(p.p_uid))),
                str(p.parent),
                _process_state(p),
                "-" if p.cpu_s is None else f"{p.cpu_s:.2f}s",
                _size(p.rss_bytes),
                _text(p.target) if p.target else _command(p.command),
            ]
            for p in report.processes
        ],
        [True, True, False, True, False, True, True, False],
        fit=width,
        shrink=[7, 2],
        drop=[3, 5],
    )
    lines += ["", f"CHANNELS ({len(report.channels)})"]
    lines += table(
        ["C_UID", "STATE", "CAP", "WAITING", "BLOCKED_S/R", "SENT", "RECV", "NAME"],
        [
            [
                str(c.c_uid),
                c.state,
                _opt(c.capacity),
                _opt(c.depth),
                "-" if c.blocked_senders is None else f"{c.blocked_senders}/{c.blocked_receivers}",
                _opt(c.sent),
                _opt(c.received),
                _text(title(c.label, c.name, default_channel_name(c.c_uid))),
            ]
            for c in report.channels
        ],
        [True, False, True, True, True, True, True, False],
        fit=width,
        shrink=[7],
        drop=[6, 5],
    )
    lines += ["", f"POOLS ({len(report.pools)})"]
    lines += table(
        ["M_UID", "NAME", "STATE", "SIZE", "USED", "FREE", "LARGEST", "ALLOCS"],
        [
            [
                str(p.m_uid),
                _text(p.name),
                p.state,
                _size(p.size_bytes),
                _size(p.used_bytes),
                _size(p.free_bytes),
                _size(p.largest_free_bytes),
                _opt(p.allocations),
            ]
            for p in report.pools
        ],
        [True, False, False, True, True, True, True, True],
        fit=width,
        shrink=[1],
        drop=[6, 7],
    )
    return "\n".join(lines) + "\n"


def _process_state(p: ProcessRow) -> str:
    if p.state == "DEAD":
        return f"DEAD({_opt(p.exit_code)})"
    return p.os_state if p.state == "ACTIVE" and p.os_state else p.state


def _text(text: str) -> str:
    """A text on one line of a table cell ("-" if empty): a name, label or code may hold newlines."""
    return " ".join(text.split()) or "-"


def _command(cmd: list[str] | None) -> str:
    """The command line for the table: the program's base name (a venv path says little and takes
    the room of the arguments), then its arguments (--json has it all)."""
    if not cmd:
        return "-"
    return _text(" ".join([os.path.basename(cmd[0]), *cmd[1:]]))


# ------------------------------------------------------------------------------------ the command


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dragon status",
        description="Show the services, processes, channels and pools of a running "
        "Dragon runtime of yours (read-only).",
    )
    p.add_argument("run_id", nargs="?", metavar="RUN_ID", help="which runtime (needed when several run)")
    p.add_argument("--json", action="store_true", help="print JSON (shape: see `pydoc dragon.status`)")
    p.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    p.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="SECONDS",
        help=f"seconds between refreshes with --watch (default {DEFAULT_INTERVAL_S:g})",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"report Global Services as not answering after this long (default {DEFAULT_TIMEOUT_S:g})",
    )
    return p


def _err(text: str) -> None:
    print(f"dragon status: {text}", file=sys.stderr)


def _pick_run(run_id: str | None, as_json: bool) -> _rundir.RunInfo | int:
    """The RunInfo of the run to show, or the exit status after saying why there is none."""
    try:
        runs = _runs.survey(with_processes=False)
    except _rundir.UnsafeRuntimeRoot as exc:
        _err(str(exc))
        return EXIT_NO_RUNTIME
    if run_id is not None:
        run = runs.get(run_id)
        if run is None:
            _err(f"no runtime {run_id} of yours (no {_rundir.run_dir(run_id)})")
            return EXIT_NO_RUNTIME
        if run.info is None:
            _err(
                f"runtime {run_id} is "
                + (
                    "being brought up; try again"
                    if run.live_reason
                    else "not running (it left a directory without runtime.json; `dragon cleanup` removes it)"
                )
            )
            return EXIT_NO_RUNTIME
        if run.live_reason is None:
            _err(
                f"runtime {run_id} is not running (its launcher and Local Services are gone); "
                "`dragon cleanup` removes what it left"
            )
            return EXIT_NO_RUNTIME
        return run.info
    live = [r for r in runs.values() if r.info is not None and r.live_reason is not None]
    if not live:
        _err(f"no Dragon runtime of yours is running (looked in {_rundir.runtime_root()})")
        return EXIT_NO_RUNTIME
    if len(live) == 1:
        assert live[0].info is not None
        return live[0].info
    now = time.time()
    summaries = [
        RunSummary(
            run_id=r.run_id,
            launcher_pid=r.info.launcher_pid,
            started=r.info.started,
            uptime_s=round(now - r.info.started, 2),
            runtime_dir=_rundir.run_dir(r.run_id),
        )
        for r in live
        if r.info is not None
    ]
    if as_json:
        sys.stdout.write(msgspec.json.encode(RunList(runs=summaries)).decode() + "\n")
    else:
        print(f"{len(live)} Dragon runtimes are running; name one: dragon status RUN_ID")
        print(
            "\n".join(
                table(
                    ["RUN_ID", "LAUNCHER_PID", "UPTIME", "DIR"],
                    [[s.run_id, str(s.launcher_pid), _duration(s.uptime_s), s.runtime_dir] for s in summaries],
                    [False, True, True, False],
                )
            )
        )
    return EXIT_USAGE


def main(argv: list[str]) -> int:
    """`dragon status ARGS`; returns the exit status (see the module docstring)."""
    opts = parser().parse_args(argv)
    if opts.timeout <= 0 or opts.interval <= 0:
        _err("--timeout and --interval must be positive")
        return EXIT_USAGE
    picked = _pick_run(opts.run_id, opts.json)
    if isinstance(picked, int):
        return picked
    info = picked
    show: Callable[[StatusReport], None]
    if opts.json:
        enc = msgspec.json.Encoder()

        def show(report: StatusReport) -> None:
            sys.stdout.write(enc.encode(report).decode() + "\n")
            sys.stdout.flush()
    else:

        def show(report: StatusReport) -> None:
            text = render(report, shutil.get_terminal_size((WIDTH, 24)).columns)  # read again: a resize
            sys.stdout.write(CLEAR_SCREEN + text if opts.watch else text)
            sys.stdout.flush()

    try:
        client = StatusClient(info)
    except FileNotFoundError:  # the run ended between finding it and now
        _err(f"runtime {info.run_id} has ended")
        return EXIT_NO_RUNTIME
    try:
        with client:
            while True:
                report = collect(info, client, opts.timeout)
                show(report)
                if not opts.watch:
                    return EXIT_OK if report.answering else EXIT_NOT_ANSWERING
                if _runs.live_reason_from_info(info) is None:
                    _err(f"runtime {info.run_id} has ended")
                    return EXIT_NO_RUNTIME
                time.sleep(opts.interval)
    except KeyboardInterrupt:  # the way out of --watch (the reply channel is removed above)
        return EXIT_OK if opts.watch else 130
    except BrokenPipeError:  # `dragon status | head`
        sys.stderr.close()
        return EXIT_OK
