"""Global Services (GS): the one registry of processes, channels and pools (spec §4.2-§4.4, §5).

GS is forked by Local Services as LS starts, before LS's event loop (spec §2 A4; services/local_services.py
says why). It sleeps (`select`) until its stdin has something for it, and from then on runs this trio
program: read its launch parameters from stdin (LS sends them once the channels exist), attach to the GS, LS and LA channels, GSPingSH (m4), wait for
SHPingGS (m5), GSIsUp (m6), then serve requests until GSTeardown, and write GSHalted on stdout (§3.1
m4). Its stdout and stderr belong to LS's GS monitor: GS writes nothing there but those framed
messages (any exception becomes an AbnormalTermination frame, spec §3.2), and its stdin stays open
after the parameters: its EOF means LS died (GS then exits at once).

Requests are served concurrently: a request that needs LS (create, kill, ...) runs in its own task and
waits for LS's response, matched by `ref` to the tag GS gave its SH request, so it never stalls the
others; joins wait on a per-process event with their own deadline. Replies go to `r_c_uid`: the LA
channel (2**57), GS's stdout (1, for test harnesses), or a channel GS knows, normally the requester's
GS-return channel.

Decisions where the spec leaves a choice or names a quirk:
- names of dead objects are kept (spec §5.4) but a name may be reused once its owner is DEAD: the
  reference never frees names **[quirk]**, which makes "the same" named channel impossible to re-create;
- destroying an already DEAD channel answers UNKNOWN ("already destroyed"), not BUSY **[quirk]**;
- a kill leaves the process ACTIVE while the signal is in flight (the reference flips it to PENDING);
- ownership: channels and pools belong to the runtime, not to the process that made them: they stay
  until someone destroys them (GSChannelDestroy/GSPoolDestroy) or the runtime tears down, when Local
  Services destroys every shm object of the run. A process's GS-return channel is destroyed when it
  exits. Its PIPE channels (`stdin_<p_uid>` ...) hold two references, the process's and its parent's:
  the process's is dropped when it exits, the parent's by GSChannelDestroy(dec_ref=True) when it is
  done reading, so output written just before the exit is never lost.
- GS is in its own process table (spec §1.1: p_uid 1, named `global_services`, parent 0, ACTIVE, its
  pid), so GSProcessQuery, GSProcessList and `dragon status` show it, and no other process can take
  its name. It never exits while anyone can ask, so a join on it could only wait out its deadline,
  or forever: GSProcessJoin answers NOT_JOINABLE at once, so does a GSProcessJoinList naming it (its
  entry NOT_JOINABLE, the others as they are), and GSProcessKill answers FAIL_KILL (it stops with the
  runtime).
- `label` and `target` of a process and `label` of a channel are texts for people (`dragon status`),
  kept in the descriptors as the creator gave them; names stay unique, labels need not be. GS labels
  the channels it makes with a process after that process (`stdout of worker`), and records in each
  channel's `creator` the p_uid of the requester.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import trio

from dragon import _faults, _log, _rundir
from dragon.descriptors import (
    DEVNULL,
    PIPE,
    ChannelDescriptor,
    ChannelOptions,
    ObjectState,
    PoolDescriptor,
    ProcessDescriptor,
)
from dragon.errors import DragonError, leaf_exceptions
from dragon.ids import (
    BE_CUID,
    FIRST_GS_CUID,
    FIRST_GS_MUID,
    FIRST_USER_PUID,
    GS_INPUT_CUID,
    GS_PROCESS_NAME,
    GS_PUID,
    GS_STDOUT_R_C_UID,
    INF_POOL_MUID,
    LAUNCHER_PUID,
    LaunchParameters,
    default_channel_name,
    default_pool_name,
    default_process_name,
    stdio_channel_name,
    title,
)
from dragon.messages import (
    AbnormalTermination,
    ChannelCreateErr,
    ChannelDestroyErr,
    ChannelJoinErr,
    ChannelQueryErr,
    GSChannelCreate,
    GSChannelCreateResponse,
    GSChannelDestroy,
    GSChannelDestroyResponse,
    GSChannelJoin,
    GSChannelJoinResponse,
    GSChannelList,
    GSChannelListResponse,
    GSChannelQuery,
    GSChannelQueryResponse,
    GSDumpState,
    GSHalted,
    GSHeadExit,
    GSInbound,
    GSIsUp,
    GSPingProc,
    GSPingSH,
    GSPoolCreate,
    GSPoolCreateResponse,
    GSPoolDestroy,
    GSPoolDestroyResponse,
    GSPoolList,
    GSPoolListResponse,
    GSPoolQuery,
    GSPoolQueryResponse,
    GSProcessCreate,
    GSProcessCreateResponse,
    GSProcessJoin,
    GSProcessJoinList,
    GSProcessJoinListResponse,
    GSProcessJoinResponse,
    GSProcessKill,
    GSProcessKillResponse,
    GSProcessList,
    GSProcessListResponse,
    GSProcessQuery,
    GSProcessQueryResponse,
    GSStatus,
    GSStatusResponse,
    GSStdoutOutbound,
    GSTeardown,
    JoinListStatus,
    JoinStatus,
    LAInbound,
    ListErr,
    LSErr,
    LSInbound,
    PoolCreateErr,
    PoolDestroyErr,
    PoolQueryErr,
    ProcessCreateErr,
    ProcessInbound,
    ProcessJoinErr,
    ProcessKillErr,
    ProcessQueryErr,
    Response,
    SHChannelCreate,
    SHChannelCreateResponse,
    SHChannelDestroy,
    SHChannelDestroyResponse,
    SHPingGS,
    SHPoolCreate,
    SHPoolCreateResponse,
    SHPoolDestroy,
    SHPoolDestroyResponse,
    SHProcessCreate,
    SHProcessCreateResponse,
    SHProcessExit,
    SHProcessKill,
    SHProcessKillResponse,
)
from dragon.transport import MessageChannel, PendingReplies, ProtocolError, TrioChannel, decode, log_message
from dragon.transport._errors import clip
from dragon.transport._framing import FrameStream

from ._links import is_user_managed, reply_once

log = logging.getLogger(__name__)

POLL_US: Final = 100  # spec §4: a timeout of at most 100 µs means "poll now"
RETURN_CHANNEL_CAPACITY: Final = 64
RETURN_CHANNEL_BLOCK: Final = 4096
PIPE_CAPACITY: Final = 64  # messages of a PIPE channel when GSProcessCreate gives no pipesize
PIPE_BLOCK: Final = 8192
NOT_JOINABLE_INFO: Final = "Global Services (p_uid 1) runs as long as the runtime: it cannot be joined"


def run() -> int:
    """The life of GS in its process, forked by LS before LS's loop started; returns its exit code.

    Everything runs in GS's trio loop (`main`): it reads its launch parameters from stdin, and at the
    end writes GSHalted (or AbnormalTermination) on its stdout from inside the loop. Before the loop
    GS only sleeps until stdin is readable (the parameters, or LS's end): a loop started at once
    would only wait, while its start took CPU and copied pages from LS and the launcher just as they
    come up (about 2 ms of `dragon hello.py` on these 2-CPU machines).
    """
    _log.set_actor("GS")
    logging.getLogger("dragon").addHandler(logging.NullHandler())  # never log to stderr (fatal there)
    sys.stdout = sys.stderr  # fd 1 is the protocol pipe to LS
    select.select([0], [], [])  # see the docstring
    return trio.run(main)


async def main() -> int:
    """Read the launch parameters from LS, serve, and say how it ended on stdout (spec §3.1 m4, §3.2).

    Any failure, including one before GS is up, becomes an AbnormalTermination frame on stdout (LS's
    GS monitor forwards it to the launcher); its exit code is 1. If LS goes away (end of file on the
    stdin pipe), GS says so the same way and exits.
    """
    from_ls = FrameStream(trio.lowlevel.FdStream(os.dup(0)), name="GS stdin")
    to_ls = StdoutLink()
    try:
        try:
            params = decode(msgspec.msgpack.Decoder(LaunchParameters), await from_ls.receive(), where="GS stdin")
        except trio.EndOfChannel:
            raise LSGone("Local Services went away before it sent the launch parameters") from None
        log_message("received", "on GS stdin", params)
        await serve(params, from_ls, to_ls)
    except BaseException as exc:  # spec §3.2: report any failure to LS as AbnormalTermination
        text = "".join(traceback.format_exception(exc))
        log.error("Global Services failed:\n%s", text)
        known = [e for e in leaf_exceptions(exc) if isinstance(e, DragonError)]
        # A failure of the runtime's own kind says what it is; anything else is a bug: its traceback.
        said = "; ".join(map(str, known)) if known else f"{exc!r}\n{text}"
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await to_ls.send(AbnormalTermination(err_info=clip(f"Global Services failed: {said}")))
        return 1
    with trio.move_on_after(5):
        await to_ls.send(GSHalted())  # spec §3.1 m4
    return 0


class StdoutLink:
    """GS's stdout: framed messages to LS's GS monitor (GSHalted, AbnormalTermination, and replies to
    r_c_uid 1), one at a time from any task."""

    def __init__(self) -> None:
        self._link = MessageChannel[GSStdoutOutbound](
            FrameStream((trio.lowlevel.FdStream(os.dup(1)), _NoInput()), name="GS stdout"),
            GSStdoutOutbound,
            name="GS stdout",
        )
        self._lock = trio.Lock()

    async def send(self, msg: msgspec.Struct) -> None:
        """Write one frame; a pipe nobody reads any more (LS died) is only logged."""
        async with self._lock:
            try:
                await self._link.send(msg)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                log.warning("GS stdout is gone: %s not delivered (%s)", type(msg).__name__, exc)


class _NoInput(trio.abc.ReceiveStream):
    """The missing direction of GS's stdout (FrameStream wants a two-way stream)."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        raise trio.ClosedResourceError("GS stdout is write-only")

    async def aclose(self) -> None:
        pass


class LSGone(Exception):
    """GS's stdin reached EOF: Local Services died."""


async def serve(params: LaunchParameters, from_ls: FrameStream, stdout: StdoutLink) -> None:
    """Bringup m4-m6, then requests until GSTeardown. Raises if LS dies or a message is garbage."""
    inbox = MessageChannel[GSInbound](TrioChannel.attach(params.gs_cd), GSInbound, name="GS channel")
    to_ls = MessageChannel[LSInbound](TrioChannel.attach(params.local_shep_cd), LSInbound, name="LS channel")
    to_la = MessageChannel[LAInbound](TrioChannel.attach(params.local_be_cd), LAInbound, name="LA channel")
    if _faults.active("gs-hang-bringup"):
        await trio.sleep_forever()
    if _faults.active("gs-crash-bringup"):
        raise RuntimeError("injected fault gs-crash-bringup")
    await to_ls.send(GSPingSH())  # m4
    first = await inbox.receive()
    if not isinstance(first, SHPingGS):  # m5
        raise RuntimeError(f"expected SHPingGS on the GS channel, got {type(first).__name__}")
    await to_la.send(GSIsUp())  # m6
    if _faults.active("gs-garbage-stdout"):
        os.write(1, b"this is not a frame of the protocol\n")
    if _faults.active("gs-crash"):
        raise RuntimeError("injected fault gs-crash")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_ls, from_ls, nursery.cancel_scope)
        gs = GlobalServices(inbox, to_ls, to_la, stdout, nursery, params.run_id)
        await gs.main_loop()
        nursery.cancel_scope.cancel()
    links: list[MessageChannel[Any]] = [inbox, to_ls, to_la, *gs.reply_boxes.values()]
    for link in links:
        await link.aclose()
    if gs.ls_gone:
        raise LSGone("Local Services went away (GS stdin closed)")


async def _watch_ls(from_ls: FrameStream, scope: trio.CancelScope) -> None:
    """LS writes nothing more after the launch parameters: end of file means it died."""
    try:
        async for _frame in from_ls:
            pass
    except ProtocolError:
        pass
    log.error("Local Services went away: Global Services exits")
    raise LSGone("Local Services went away (GS stdin closed)")


@dataclass
class ProcRecord:
    desc: ProcessDescriptor
    head: bool = False
    exited: trio.Event = field(default_factory=trio.Event)
    early_exit: SHProcessExit | None = None
    pipe_cuids: list[int] = field(default_factory=list)


@dataclass
class ChanRecord:
    desc: ChannelDescriptor
    ref_count: bool = False
    refs: int = 1
    created: trio.Event = field(default_factory=trio.Event)


@dataclass
class PoolRecord:
    desc: PoolDescriptor


class GlobalServices:
    """GS's tables and request handlers (spec §4.2-§4.4)."""

    def __init__(
        self,
        inbox: MessageChannel[GSInbound],
        to_ls: MessageChannel[LSInbound],
        to_la: MessageChannel[LAInbound],
        stdout: StdoutLink,
        nursery: trio.Nursery,
        run_id: str,
    ) -> None:
        self.inbox, self.to_ls, self.to_la, self.nursery = inbox, to_ls, to_la, nursery
        self.stdout = stdout
        self.run_id = run_id
        self.started = time.time()
        self.ls_gone = False
        self.procs: dict[int, ProcRecord] = {}
        self.proc_names: dict[str, int] = {}
        self.chans: dict[int, ChanRecord] = {}
        self.chan_names: dict[str, int] = {}
        self.chan_name_waiters: dict[str, trio.Event] = {}
        self.pools: dict[int, PoolRecord] = {}
        self.pool_names: dict[str, int] = {}
        self.next_puid, self.next_cuid, self.next_muid = FIRST_USER_PUID, FIRST_GS_CUID, FIRST_GS_MUID
        self.next_tag = 1
        self.procs[GS_PUID] = ProcRecord(
            ProcessDescriptor(  # spec §1.1; see the module docstring
                p_uid=GS_PUID, p_p_uid=LAUNCHER_PUID, name=GS_PROCESS_NAME, state=ObjectState.ACTIVE, pid=os.getpid()
            )
        )
        self.proc_names[GS_PROCESS_NAME] = GS_PUID
        self.ls_replies = PendingReplies[Response]("GS channel")
        self.reply_boxes: dict[int, MessageChannel[ProcessInbound]] = {}

    # ------------------------------------------------------------------ plumbing

    async def main_loop(self) -> None:
        """Dispatch until GSTeardown (spec §3.1 a5).

        Nothing here waits for a requester: `answer` puts a reply in the requester's channel at once
        when there is room, and otherwise leaves it to a task of its own, so a process that does not
        read its return channel delays only its own replies, never other requests.
        """
        handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            GSProcessCreate: self.process_create,
            GSProcessKill: self.process_kill,
            GSProcessJoin: self.process_join,
            GSProcessJoinList: self.process_join_list,
            GSChannelCreate: self.channel_create,
            GSChannelDestroy: self.channel_destroy,
            GSChannelJoin: self.channel_join,
            GSPoolCreate: self.pool_create,
            GSPoolDestroy: self.pool_destroy,
        }
        while True:
            try:
                msg = await self.inbox.receive()
            except ProtocolError as exc:
                # Any process of the run may write to the GS channel: one undecodable message is that
                # sender's bug, not the runtime's, so it is logged and skipped [choice].
                log.warning("skipped a message: %s", exc)
                continue
            match msg:
                case GSTeardown():
                    return
                case Response():  # an answer of LS to one of our SH requests
                    self.ls_replies.file(msg)
                case SHProcessExit():
                    await self.process_exited(msg)
                case GSProcessList():
                    self.answer(
                        msg.r_c_uid, GSProcessListResponse(ref=msg.tag, err=ListErr.SUCCESS, plist=list(self.procs))
                    )
                case GSProcessQuery():
                    self.answer(msg.r_c_uid, self.process_query(msg))
                case GSChannelList():
                    self.answer(
                        msg.r_c_uid, GSChannelListResponse(ref=msg.tag, err=ListErr.SUCCESS, clist=list(self.chans))
                    )
                case GSChannelQuery():
                    self.answer(msg.r_c_uid, self.channel_query(msg))
                case GSPoolList():
                    self.answer(
                        msg.r_c_uid, GSPoolListResponse(ref=msg.tag, err=ListErr.SUCCESS, mlist=list(self.pools))
                    )
                case GSPoolQuery():
                    self.answer(msg.r_c_uid, self.pool_query(msg))
                case GSDumpState():
                    self.dump_state(msg.filename)
                case GSStatus():
                    self.answer(msg.r_c_uid, self.status(msg))
                case SHPingGS():
                    log.warning("ignored a second SHPingGS")
                case _:
                    handler = handlers.get(type(msg))
                    if handler is None:
                        log.warning("ignored unexpected %s on the GS channel", type(msg).__name__)
                    else:
                        self.nursery.start_soon(handler, msg)

    def answer(self, r_c_uid: int, msg: msgspec.Struct) -> None:
        """Reply without blocking the main loop: at once into a return channel GS already holds if
        it has room (the common case, no task needed), else through `reply` in a task of its own."""
        box = self.reply_boxes.get(r_c_uid)
        if box is not None:
            try:
                box.send_nowait(msg)
                return
            except trio.WouldBlock:
                pass
            except Exception:  # the channel is gone: `reply` logs it and lets go of the handle
                pass
        self.nursery.start_soon(self.reply, r_c_uid, msg)

    def tag(self) -> int:
        self.next_tag += 1
        return self.next_tag

    async def ls_call(self, msg: Any) -> Any:
        """Send an SH request to LS and wait for the response whose `ref` is its tag."""
        with self.ls_replies.expect(msg.tag) as waiter:
            await self.to_ls.send(msg)
            return await waiter.reply()

    async def reply(self, r_c_uid: int, msg: msgspec.Struct) -> None:
        """Answer on `r_c_uid` (spec §4 envelope); a reply that cannot be delivered is only logged."""
        if r_c_uid == BE_CUID:
            await self.to_la.send(msg)
        elif r_c_uid == GS_STDOUT_R_C_UID:
            await self.stdout.send(msg)
        elif is_user_managed(r_c_uid):  # a tool's own reply channel (e.g. `dragon status`)
            await reply_once(_rundir.channel_name(self.run_id, r_c_uid), msg, f"channel {r_c_uid}")
        else:  # a managed process's return channel: kept until that process exits
            try:
                box = self.reply_boxes.get(r_c_uid)
                if box is None:
                    sdesc = self._reply_channel(r_c_uid)
                    if sdesc is None:
                        log.warning("cannot reply to r_c_uid=%d (no such channel): %r", r_c_uid, msg)
                        return
                    box = self.reply_boxes[r_c_uid] = MessageChannel(
                        TrioChannel.attach(sdesc), ProcessInbound, name=f"channel {r_c_uid}"
                    )
                with trio.move_on_after(10):
                    await box.send(msg)
                    return
                log.warning("reply to r_c_uid=%d timed out (nobody reads it): %r", r_c_uid, msg)
            except Exception as exc:  # the requester's channel is gone: nobody is left to answer
                log.warning("reply to r_c_uid=%d failed: %s", r_c_uid, exc)
                await self._forget_reply_box(r_c_uid)

    def _reply_channel(self, r_c_uid: int) -> str | None:
        """The attach descriptor of a managed process's return channel, if GS knows it."""
        rec = self.chans.get(r_c_uid)
        if rec is None or rec.desc.state != ObjectState.ACTIVE or r_c_uid == GS_INPUT_CUID:
            return None
        return rec.desc.sdesc

    def status(self, req: GSStatus) -> GSStatusResponse:
        """Spec §8: one read-only snapshot of every table, for `dragon status`."""
        has_head = any(r.head and r.desc.state != ObjectState.DEAD for r in self.procs.values())
        return GSStatusResponse(
            ref=req.tag,
            err=ListErr.SUCCESS,
            state="HAS_HEAD" if has_head else "WAITING_FOR_HEAD",
            started=self.started,
            processes=[r.desc for r in self.procs.values()],
            channels=[c.desc for c in self.chans.values()],
            pools=[p.desc for p in self.pools.values()],
        )

    async def _forget_reply_box(self, c_uid: int) -> None:
        box = self.reply_boxes.pop(c_uid, None)
        if box is not None:
            await box.aclose()

    # ------------------------------------------------------------------ processes (§4.2)

    def _lookup_proc(self, t_p_uid: int | None, user_name: str) -> ProcRecord | None:
        if user_name:
            p_uid = self.proc_names.get(user_name)
            return None if p_uid is None else self.procs.get(p_uid)
        return self.procs.get(t_p_uid) if t_p_uid is not None else None

    @staticmethod
    def _unknown(t_p_uid: int | None, user_name: str) -> str:
        return f"no process named {user_name}" if user_name else f"no p_uid {t_p_uid}"

    async def process_create(self, req: GSProcessCreate) -> None:
        problem = _create_problem(req)
        if problem:
            await self.reply(
                req.r_c_uid, GSProcessCreateResponse(ref=req.tag, err=ProcessCreateErr.FAIL, err_info=problem)
            )
            return
        if req.user_name in self.proc_names:
            existing = self.procs[self.proc_names[req.user_name]]
            if existing.desc.state != ObjectState.DEAD:
                await self.reply(
                    req.r_c_uid,
                    GSProcessCreateResponse(
                        ref=req.tag,
                        err=ProcessCreateErr.ALREADY,
                        desc=existing.desc,
                        err_info=f"a process named {req.user_name} exists already",
                    ),
                )
                return
        p_uid = self.next_puid
        self.next_puid += 1
        name = req.user_name or default_process_name(p_uid)
        parent = req.p_uid if req.p_uid in self.procs else LAUNCHER_PUID
        rec = ProcRecord(
            ProcessDescriptor(
                p_uid=p_uid, p_p_uid=parent, name=name, state=ObjectState.PENDING, label=req.label, target=req.target
            ),
            head=req.head_proc,
        )
        self.procs[p_uid] = rec
        self.proc_names[name] = p_uid
        ret_msg = None
        if req.options.make_inf_channels:
            ret_cuid = self.next_cuid
            self.next_cuid += 1
            ret_msg = SHChannelCreate(
                tag=self.tag(),
                p_uid=GS_PUID,
                r_c_uid=GS_INPUT_CUID,
                m_uid=INF_POOL_MUID,
                c_uid=ret_cuid,
                options=ChannelOptions(
                    local_opts=msgspec.structs.replace(
                        ChannelOptions().local_opts, capacity=RETURN_CHANNEL_CAPACITY, block_size=RETURN_CHANNEL_BLOCK
                    )
                ),
            )
        pipes: dict[str, SHChannelCreate] = {}
        for stream in ("stdin", "stdout", "stderr"):
            if getattr(req, stream) == PIPE:  # spec §4.2: GS makes the PIPE channels with the process
                pipes[stream] = SHChannelCreate(
                    tag=self.tag(),
                    p_uid=GS_PUID,
                    r_c_uid=GS_INPUT_CUID,
                    m_uid=INF_POOL_MUID,
                    c_uid=self.next_cuid,
                    options=ChannelOptions(
                        ref_count=True,
                        local_opts=msgspec.structs.replace(
                            ChannelOptions().local_opts, capacity=req.pipesize or PIPE_CAPACITY, block_size=PIPE_BLOCK
                        ),
                    ),
                )
                self.next_cuid += 1
        env = dict(req.env)
        env["DRAGON_PARENT_PUID"] = str(parent)
        resp: SHProcessCreateResponse = await self.ls_call(
            SHProcessCreate(
                tag=self.tag(),
                p_uid=GS_PUID,
                r_c_uid=GS_INPUT_CUID,
                t_p_uid=p_uid,
                exe=req.exe,
                args=req.args,
                env=env,
                env_raw=req.env_raw,
                rundir=req.rundir,
                stdin=req.stdin,
                stdout=req.stdout,
                stderr=req.stderr,
                group=req.group,
                user=req.user,
                umask=req.umask,
                initial_stdin=req.initial_stdin,
                pipesize=req.pipesize,
                gs_ret_chan_msg=ret_msg,
                stdin_msg=pipes.get("stdin"),
                stdout_msg=pipes.get("stdout"),
                stderr_msg=pipes.get("stderr"),
            )
        )
        if resp.err != LSErr.SUCCESS:
            del self.procs[p_uid]
            self.proc_names.pop(name, None)
            log.info("process create failed p_uid=%d: %s", p_uid, resp.err_info)
            await self.reply(
                req.r_c_uid, GSProcessCreateResponse(ref=req.tag, err=ProcessCreateErr.FAIL, err_info=resp.err_info)
            )
            return
        who = title(req.label, rec.desc.name, default_process_name(p_uid)) or f"p_uid {p_uid}"
        if ret_msg is not None and resp.gs_ret_chan_resp is not None:
            self.chans[ret_msg.c_uid] = ChanRecord(
                ChannelDescriptor(
                    c_uid=ret_msg.c_uid,
                    m_uid=INF_POOL_MUID,
                    name=f"gs_ret_{p_uid}",
                    sdesc=resp.gs_ret_chan_resp.desc,
                    state=ObjectState.ACTIVE,
                    label=f"GS replies to {who}",
                    creator=req.p_uid,
                )
            )
            rec.desc.gs_ret_cuid = ret_msg.c_uid
        for stream, pipe in pipes.items():
            pipe_resp = getattr(resp, f"{stream}_resp")
            if pipe_resp is None:
                continue
            name = stdio_channel_name(stream, p_uid)  # type: ignore[arg-type]
            self.chans[pipe.c_uid] = ChanRecord(
                ChannelDescriptor(
                    c_uid=pipe.c_uid,
                    m_uid=INF_POOL_MUID,
                    name=name,
                    sdesc=pipe_resp.desc,
                    state=ObjectState.ACTIVE,
                    label=f"{stream} of {who}",
                    creator=req.p_uid,
                ),
                ref_count=True,
                refs=2,
            )
            self.chan_names[name] = pipe.c_uid
            setattr(rec.desc, f"{stream}_sdesc", pipe_resp.desc)
            rec.pipe_cuids.append(pipe.c_uid)
        rec.desc.state = ObjectState.ACTIVE
        rec.desc.pid = resp.pid
        if parent in self.procs:
            self.procs[parent].desc.live_children.append(p_uid)
        log.info("process created p_uid=%d name=%s", p_uid, name)
        if ret_msg is not None:
            await self.reply(ret_msg.c_uid, GSPingProc(mode=req.options.mode, argdata=req.options.argdata))
        await self.reply(req.r_c_uid, GSProcessCreateResponse(ref=req.tag, err=ProcessCreateErr.SUCCESS, desc=rec.desc))
        if rec.early_exit is not None:  # spec §4.2: an exit that overtook the create response
            await self.process_exited(rec.early_exit)

    async def process_exited(self, msg: SHProcessExit) -> None:
        """Spec §3.1 a3: mark DEAD, answer joins, free its channels, tell LA if it was the head."""
        rec = self.procs.get(msg.p_uid)
        if rec is None:
            log.warning("SHProcessExit for unknown p_uid=%d", msg.p_uid)
            return
        if rec.desc.state == ObjectState.PENDING:
            rec.early_exit = msg
            return
        rec.desc.state = ObjectState.DEAD
        rec.desc.ecode = msg.exit_code
        rec.exited.set()
        parent = self.procs.get(rec.desc.p_p_uid)
        if parent is not None and msg.p_uid in parent.desc.live_children:
            parent.desc.live_children.remove(msg.p_uid)
        log.info("process exited p_uid=%d code=%d", msg.p_uid, msg.exit_code)
        if rec.desc.gs_ret_cuid is not None:
            self.nursery.start_soon(self._destroy_infra_channel, rec.desc.gs_ret_cuid)
        for c_uid in rec.pipe_cuids:  # the process's reference to its PIPE channels
            self.nursery.start_soon(self._release_channel, c_uid)
        if rec.head:
            await self.to_la.send(GSHeadExit(exit_code=msg.exit_code))

    async def _release_channel(self, c_uid: int) -> None:
        """Drop one reference to a ref-counted channel; destroy it at zero."""
        rec = self.chans.get(c_uid)
        if rec is None or rec.desc.state != ObjectState.ACTIVE:
            return
        rec.refs -= 1
        if rec.refs <= 0:
            await self._destroy_infra_channel(c_uid)

    async def _destroy_infra_channel(self, c_uid: int) -> None:
        await self._forget_reply_box(c_uid)
        chan = self.chans.get(c_uid)
        if chan is not None:
            chan.desc.state = ObjectState.DEAD
        await self.ls_call(SHChannelDestroy(tag=self.tag(), p_uid=GS_PUID, r_c_uid=GS_INPUT_CUID, c_uid=c_uid))

    def process_query(self, req: GSProcessQuery) -> GSProcessQueryResponse:
        rec = self._lookup_proc(req.t_p_uid, req.user_name)
        if rec is None:
            return GSProcessQueryResponse(
                ref=req.tag, err=ProcessQueryErr.UNKNOWN, err_info=self._unknown(req.t_p_uid, req.user_name)
            )
        return GSProcessQueryResponse(ref=req.tag, err=ProcessQueryErr.SUCCESS, desc=rec.desc)

    async def process_kill(self, req: GSProcessKill) -> None:
        rec = self._lookup_proc(req.t_p_uid, req.user_name)
        if rec is None:
            resp = GSProcessKillResponse(
                ref=req.tag, err=ProcessKillErr.UNKNOWN, err_info=self._unknown(req.t_p_uid, req.user_name)
            )
        elif rec.desc.p_uid == GS_PUID:
            resp = GSProcessKillResponse(
                ref=req.tag,
                err=ProcessKillErr.FAIL_KILL,
                err_info="Global Services (p_uid 1) takes no signals from requests: "
                "it stops when the runtime tears down",
            )
        elif rec.desc.state == ObjectState.DEAD:
            resp = GSProcessKillResponse(
                ref=req.tag,
                err=ProcessKillErr.DEAD,
                exit_code=rec.desc.ecode or 0,
                err_info=f"process {rec.desc.p_uid} has exited already",
            )
        elif rec.desc.state == ObjectState.PENDING:
            resp = GSProcessKillResponse(
                ref=req.tag, err=ProcessKillErr.PENDING, err_info=f"process {rec.desc.p_uid} is still starting"
            )
        else:
            ls_resp: SHProcessKillResponse = await self.ls_call(
                SHProcessKill(
                    tag=self.tag(),
                    p_uid=GS_PUID,
                    r_c_uid=GS_INPUT_CUID,
                    t_p_uid=rec.desc.p_uid,
                    sig=req.sig,
                    hide_stderr=req.hide_stderr,
                )
            )
            if ls_resp.err == LSErr.SUCCESS:
                resp = GSProcessKillResponse(ref=req.tag, err=ProcessKillErr.SUCCESS)
            elif rec.exited.is_set():  # it died while the kill was in flight
                resp = GSProcessKillResponse(ref=req.tag, err=ProcessKillErr.DEAD, exit_code=rec.desc.ecode or 0)
            else:
                resp = GSProcessKillResponse(ref=req.tag, err=ProcessKillErr.FAIL_KILL, err_info=ls_resp.err_info)
        await self.reply(req.r_c_uid, resp)

    async def process_join(self, req: GSProcessJoin) -> None:
        rec = self._lookup_proc(req.t_p_uid, req.user_name)
        if rec is None:
            resp = GSProcessJoinResponse(
                ref=req.tag, err=ProcessJoinErr.UNKNOWN, err_info=self._unknown(req.t_p_uid, req.user_name)
            )
        elif rec.desc.p_uid == req.p_uid:
            resp = GSProcessJoinResponse(ref=req.tag, err=ProcessJoinErr.SELF, err_info="a process cannot join itself")
        elif rec.desc.p_uid == GS_PUID:
            resp = GSProcessJoinResponse(ref=req.tag, err=ProcessJoinErr.NOT_JOINABLE, err_info=NOT_JOINABLE_INFO)
        else:
            with trio.move_on_after(_timeout_s(req.timeout)):
                await rec.exited.wait()
            if rec.exited.is_set():
                resp = GSProcessJoinResponse(ref=req.tag, err=ProcessJoinErr.SUCCESS, exit_code=rec.desc.ecode or 0)
            else:
                resp = GSProcessJoinResponse(
                    ref=req.tag, err=ProcessJoinErr.TIMEOUT, err_info=f"process {rec.desc.p_uid} still running"
                )
        await self.reply(req.r_c_uid, resp)

    async def process_join_list(self, req: GSProcessJoinList) -> None:
        """Spec §4.2 JoinList: any (join_all False) or all; return_on_bad_exit; TIMEOUT for the rest."""
        targets: dict[int | str, ProcRecord | None] = {}
        for p in req.t_p_uid_list:
            targets[p] = self.procs.get(p)
        for n in req.user_name_list:
            targets[n] = self._lookup_proc(None, n)
        live = [r for r in targets.values() if r is not None and r.desc.p_uid not in (req.p_uid, GS_PUID)]
        refused = any(r is not None and r.desc.p_uid == GS_PUID for r in targets.values())

        def done() -> bool:
            if refused:  # the answer is an error whatever the others do: given at once
                return True
            dead = [r for r in live if r.exited.is_set()]
            if req.return_on_bad_exit and any(r.desc.ecode for r in dead):
                return True
            return len(dead) == len(live) if req.join_all else bool(dead) or not live

        with trio.move_on_after(_timeout_s(req.timeout)):
            while not done():
                async with trio.open_nursery() as race:  # wake on the next exit of any target
                    for r in live:
                        if not r.exited.is_set():
                            race.start_soon(_set_when, r.exited, race.cancel_scope)
        status: dict[int | str, JoinStatus] = {}
        for key, target in targets.items():
            if target is None:
                status[key] = JoinStatus(
                    status=JoinListStatus.UNKNOWN,
                    err_info=self._unknown(key if isinstance(key, int) else None, key if isinstance(key, str) else ""),
                )
            elif target.desc.p_uid == req.p_uid:
                status[key] = JoinStatus(status=JoinListStatus.SELF)
            elif target.desc.p_uid == GS_PUID:
                status[key] = JoinStatus(status=JoinListStatus.NOT_JOINABLE, err_info=NOT_JOINABLE_INFO)
            elif target.exited.is_set():
                status[key] = JoinStatus(status=JoinListStatus.SUCCESS, exit_code=target.desc.ecode or 0)
            else:
                status[key] = JoinStatus(status=JoinListStatus.TIMEOUT)
        await self.reply(req.r_c_uid, GSProcessJoinListResponse(ref=req.tag, err=ListErr.SUCCESS, puid_status=status))

    # ------------------------------------------------------------------ channels (§4.3)

    def _lookup_chan(self, c_uid: int | None, name: str) -> ChanRecord | None:
        if name:
            c = self.chan_names.get(name)
            return None if c is None else self.chans.get(c)
        return self.chans.get(c_uid) if c_uid is not None else None

    async def channel_create(self, req: GSChannelCreate) -> None:
        if req.user_name in self.chan_names:
            existing = self.chans[self.chan_names[req.user_name]]
            if existing.desc.state != ObjectState.DEAD:
                await self.reply(
                    req.r_c_uid,
                    GSChannelCreateResponse(
                        ref=req.tag,
                        err=ChannelCreateErr.ALREADY,
                        desc=existing.desc,
                        err_info=f"a channel named {req.user_name} exists already",
                    ),
                )
                return
        pool = self.pools.get(req.m_uid)
        if req.m_uid >= FIRST_GS_MUID and (pool is None or pool.desc.state != ObjectState.ACTIVE):
            # spec §4.3: the pool must be pre-defined (m_uid < 2**63) or a live one of GS's table
            await self.reply(
                req.r_c_uid,
                GSChannelCreateResponse(
                    ref=req.tag, err=ChannelCreateErr.FAIL, err_info=f"no pool m_uid {req.m_uid} to create a channel in"
                ),
            )
            return
        c_uid = self.next_cuid
        self.next_cuid += 1
        name = req.user_name or default_channel_name(c_uid)
        rec = ChanRecord(
            ChannelDescriptor(
                c_uid=c_uid,
                m_uid=req.m_uid,
                name=name,
                sdesc="",
                state=ObjectState.PENDING,
                label=req.label,
                creator=req.p_uid,
            ),
            ref_count=req.options.ref_count,
        )
        self.chans[c_uid] = rec
        self.chan_names[name] = c_uid
        resp: SHChannelCreateResponse = await self.ls_call(
            SHChannelCreate(
                tag=self.tag(), p_uid=GS_PUID, r_c_uid=GS_INPUT_CUID, m_uid=req.m_uid, c_uid=c_uid, options=req.options
            )
        )
        if resp.err != LSErr.SUCCESS:
            del self.chans[c_uid]
            self.chan_names.pop(name, None)
            await self.reply(
                req.r_c_uid, GSChannelCreateResponse(ref=req.tag, err=ChannelCreateErr.FAIL, err_info=resp.err_info)
            )
            return
        rec.desc.sdesc = resp.desc
        rec.desc.state = ObjectState.ACTIVE
        rec.created.set()
        waiter = self.chan_name_waiters.pop(name, None)
        if waiter is not None:
            waiter.set()
        await self.reply(req.r_c_uid, GSChannelCreateResponse(ref=req.tag, err=ChannelCreateErr.SUCCESS, desc=rec.desc))

    def channel_query(self, req: GSChannelQuery) -> GSChannelQueryResponse:
        rec = self._lookup_chan(req.c_uid, req.user_name)
        if rec is None:
            return GSChannelQueryResponse(
                ref=req.tag,
                err=ChannelQueryErr.UNKNOWN,
                err_info=f"no channel named {req.user_name}" if req.user_name else f"no c_uid {req.c_uid}",
            )
        if req.inc_refcnt and rec.ref_count and rec.desc.state == ObjectState.ACTIVE:
            rec.refs += 1
        return GSChannelQueryResponse(ref=req.tag, err=ChannelQueryErr.SUCCESS, desc=rec.desc)

    async def channel_destroy(self, req: GSChannelDestroy) -> None:
        rec = self._lookup_chan(req.c_uid, req.user_name)
        if rec is None or rec.desc.state == ObjectState.DEAD:
            what = f"channel {req.user_name or req.c_uid}"
            resp = GSChannelDestroyResponse(
                ref=req.tag,
                err=ChannelDestroyErr.UNKNOWN,
                err_info=f"{what} was destroyed already" if rec else f"no {what}",
            )
        elif rec.desc.state == ObjectState.PENDING:
            resp = GSChannelDestroyResponse(
                ref=req.tag,
                err=ChannelDestroyErr.BUSY,
                err_info=f"channel {rec.desc.c_uid} is being created or destroyed",
            )
        elif req.dec_ref and rec.ref_count and rec.refs > 1:
            rec.refs -= 1
            resp = GSChannelDestroyResponse(ref=req.tag, err=ChannelDestroyErr.SUCCESS)
        else:
            rec.desc.state = ObjectState.PENDING
            await self._forget_reply_box(rec.desc.c_uid)
            ls_resp: SHChannelDestroyResponse = await self.ls_call(
                SHChannelDestroy(tag=self.tag(), p_uid=GS_PUID, r_c_uid=GS_INPUT_CUID, c_uid=rec.desc.c_uid)
            )
            rec.desc.state = ObjectState.DEAD
            if ls_resp.err == LSErr.SUCCESS:
                resp = GSChannelDestroyResponse(ref=req.tag, err=ChannelDestroyErr.SUCCESS)
            else:
                resp = GSChannelDestroyResponse(ref=req.tag, err=ChannelDestroyErr.UNKNOWN, err_info=ls_resp.err_info)
        if req.reply_req:
            await self.reply(req.r_c_uid, resp)

    async def channel_join(self, req: GSChannelJoin) -> None:
        """Spec §4.3: answer as soon as a channel of that name is ACTIVE, waiting for its creation."""
        with trio.move_on_after(_timeout_s(req.timeout)):
            while True:
                rec = self._lookup_chan(None, req.name)
                state = None if rec is None else rec.desc.state
                if rec is not None and state == ObjectState.ACTIVE:
                    await self.reply(
                        req.r_c_uid, GSChannelJoinResponse(ref=req.tag, err=ChannelJoinErr.SUCCESS, desc=rec.desc)
                    )
                    return
                if state == ObjectState.DEAD:
                    await self.reply(
                        req.r_c_uid,
                        GSChannelJoinResponse(
                            ref=req.tag, err=ChannelJoinErr.DEAD, err_info=f"channel {req.name} was destroyed"
                        ),
                    )
                    return
                event = self.chan_name_waiters.setdefault(req.name, trio.Event())
                await event.wait()
        await self.reply(
            req.r_c_uid,
            GSChannelJoinResponse(
                ref=req.tag, err=ChannelJoinErr.TIMEOUT, err_info=f"no channel named {req.name} appeared"
            ),
        )

    # ------------------------------------------------------------------ pools (§4.4)

    def _lookup_pool(self, m_uid: int | None, name: str) -> PoolRecord | None:
        if name:
            m = self.pool_names.get(name)
            return None if m is None else self.pools.get(m)
        return self.pools.get(m_uid) if m_uid is not None else None

    async def pool_create(self, req: GSPoolCreate) -> None:
        if req.user_name in self.pool_names:
            existing = self.pools[self.pool_names[req.user_name]]
            if existing.desc.state != ObjectState.DEAD:
                await self.reply(
                    req.r_c_uid,
                    GSPoolCreateResponse(
                        ref=req.tag,
                        err=PoolCreateErr.ALREADY,
                        desc=existing.desc,
                        err_info=f"a pool named {req.user_name} exists already",
                    ),
                )
                return
        m_uid = self.next_muid
        self.next_muid += 1
        name = req.user_name or default_pool_name(m_uid)
        rec = PoolRecord(PoolDescriptor(m_uid=m_uid, name=name, sdesc="", state=ObjectState.PENDING))
        self.pools[m_uid] = rec
        self.pool_names[name] = m_uid
        resp: SHPoolCreateResponse = await self.ls_call(
            SHPoolCreate(tag=self.tag(), p_uid=GS_PUID, r_c_uid=GS_INPUT_CUID, size=req.size, m_uid=m_uid, name=name)
        )
        if resp.err != LSErr.SUCCESS:
            del self.pools[m_uid]
            self.pool_names.pop(name, None)
            await self.reply(
                req.r_c_uid, GSPoolCreateResponse(ref=req.tag, err=PoolCreateErr.FAIL, err_info=resp.err_info)
            )
            return
        rec.desc.sdesc = resp.desc
        rec.desc.state = ObjectState.ACTIVE
        await self.reply(req.r_c_uid, GSPoolCreateResponse(ref=req.tag, err=PoolCreateErr.SUCCESS, desc=rec.desc))

    def pool_query(self, req: GSPoolQuery) -> GSPoolQueryResponse:
        rec = self._lookup_pool(req.m_uid, req.user_name)
        if rec is None:
            return GSPoolQueryResponse(
                ref=req.tag,
                err=PoolQueryErr.UNKNOWN,
                err_info=f"no pool named {req.user_name}" if req.user_name else f"no m_uid {req.m_uid}",
            )
        return GSPoolQueryResponse(ref=req.tag, err=PoolQueryErr.SUCCESS, desc=rec.desc)

    async def pool_destroy(self, req: GSPoolDestroy) -> None:
        rec = self._lookup_pool(req.m_uid, req.user_name)
        if rec is None:
            resp = GSPoolDestroyResponse(
                ref=req.tag, err=PoolDestroyErr.UNKNOWN, err_info=f"no pool {req.user_name or req.m_uid}"
            )
        elif rec.desc.state == ObjectState.DEAD:
            resp = GSPoolDestroyResponse(
                ref=req.tag, err=PoolDestroyErr.GONE, err_info=f"pool {rec.desc.m_uid} was destroyed already"
            )
        elif rec.desc.state == ObjectState.PENDING:
            resp = GSPoolDestroyResponse(
                ref=req.tag, err=PoolDestroyErr.PENDING, err_info=f"pool {rec.desc.m_uid} is being created or destroyed"
            )
        else:
            rec.desc.state = ObjectState.PENDING
            ls_resp: SHPoolDestroyResponse = await self.ls_call(
                SHPoolDestroy(tag=self.tag(), p_uid=GS_PUID, r_c_uid=GS_INPUT_CUID, m_uid=rec.desc.m_uid)
            )
            rec.desc.state = ObjectState.DEAD
            resp = (
                GSPoolDestroyResponse(ref=req.tag, err=PoolDestroyErr.SUCCESS)
                if ls_resp.err == LSErr.SUCCESS
                else GSPoolDestroyResponse(ref=req.tag, err=PoolDestroyErr.FAIL, err_info=ls_resp.err_info)
            )
        await self.reply(req.r_c_uid, resp)

    # ------------------------------------------------------------------ introspection (§8)

    def dump_state(self, filename: str) -> None:
        with open(filename, "w") as f:
            f.write("processes\n")
            for p, r in self.procs.items():
                f.write(f"  {p} {r.desc.name} {r.desc.state.name} ecode={r.desc.ecode}\n")
            f.write("channels\n")
            for c, ch in self.chans.items():
                f.write(f"  {c} {ch.desc.name} {ch.desc.state.name}\n")
            f.write("pools\n")
            for m, pr in self.pools.items():
                f.write(f"  {m} {pr.desc.name} {pr.desc.state.name}\n")


def _create_problem(req: GSProcessCreate) -> str:
    """What is wrong with a GSProcessCreate's own fields ("" if nothing), checked before anything is
    made: GS refuses what it cannot carry out rather than drop it."""
    if req.umask != -1 and not 0 <= req.umask <= 0o777:
        return f"umask must be between 0 and 0o777, or -1 to inherit it, not {req.umask}"
    for field_name in ("user", "group"):
        ident = getattr(req, field_name)
        if ident is not None and ident < 0:
            return f"{field_name} must be a numeric id (0 or more), not {ident}"
    if req.initial_stdin and req.stdin == DEVNULL:
        return "initial_stdin needs a stdin to write to: forwarded (None) or PIPE, not DEVNULL"
    return ""


async def _set_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def _timeout_s(timeout_us: int) -> float:
    """Spec §4: GS timeouts are integer µs; negative waits forever; <= 100 µs polls."""
    if timeout_us < 0:
        return float("inf")
    return 0.0 if timeout_us <= POLL_US else timeout_us / 1e6
