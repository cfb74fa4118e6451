"""Global Services' process requests (spec §4.2): create, exit, query, kill, join, join list.

A create is answered only once Local Services has started the process (or failed to); the channels
GS makes with a process (its GS-return channel, its PIPE channels) ride in the SHProcessCreate, so
one round trip to LS makes them all. Joins wait on a per-process event with their own deadline.
"""

from __future__ import annotations

import logging
import os
from typing import Final

import msgspec
import trio

from dragon.descriptors import DEVNULL, PIPE, ChannelDescriptor, ChannelOptions, ObjectState, ProcessDescriptor
from dragon.ids import GS_INPUT_CUID, GS_PUID, INF_POOL_MUID, LAUNCHER_PUID, stdio_channel_name, title
from dragon.messages import (
    GSHeadExit,
    GSPingProc,
    GSProcessCreate,
    GSProcessCreateResponse,
    GSProcessJoin,
    GSProcessJoinList,
    GSProcessJoinListResponse,
    GSProcessJoinResponse,
    GSProcessKill,
    GSProcessKillResponse,
    GSProcessQuery,
    GSProcessQueryResponse,
    JoinListStatus,
    JoinStatus,
    ListErr,
    LSErr,
    NodeLost,
    ProcessCreateErr,
    ProcessJoinErr,
    ProcessKillErr,
    ProcessQueryErr,
    SHChannelCreate,
    SHProcessCreate,
    SHProcessCreateResponse,
    SHProcessExit,
    SHProcessKill,
    SHProcessKillResponse,
)

from ._gs_base import GSBase, timeout_s
from ._registry import ChanRecord, ProcRecord

log = logging.getLogger(__name__)

EXIT_NEWS_S = 5.0
"""How long a kill whose process Local Services found exited waits for the news of that exit
(SHProcessExit follows once the process's output is flushed), to answer DEAD with its exit code."""

RETURN_CHANNEL_CAPACITY: Final = 64
RETURN_CHANNEL_BLOCK: Final = 4096
PIPE_CAPACITY: Final = 64  # messages of a PIPE channel when GSProcessCreate gives no pipesize
PIPE_BLOCK: Final = 8192
STREAMS: Final = ("stdin", "stdout", "stderr")
NOT_JOINABLE_INFO: Final = "Global Services (p_uid 1) runs as long as the runtime: it cannot be joined"


class ProcessHandlers(GSBase):
    # ------------------------------------------------------------------ create (§4.2)

    async def process_create(self, req: GSProcessCreate) -> None:
        """Spec §4.2: refuse what cannot be done, enter the process PENDING, have LS start it (with
        its channels), then ACTIVE and SUCCESS, or the entry removed and FAIL."""
        refusal = self._refuse_create(req)
        if refusal is not None:
            await self.reply(req.r_c_uid, refusal)
            return
        rec = self._enter_process(req)
        sh_req = self._sh_process_create(req, rec.desc)
        resp: SHProcessCreateResponse = await self.ls_call(sh_req, rec.desc.node)
        if resp.err != LSErr.SUCCESS:
            self.reg.procs.remove(rec.desc.p_uid)
            log.info("process create failed p_uid=%d: %s", rec.desc.p_uid, resp.err_info)
            failed = GSProcessCreateResponse(ref=req.tag, err=ProcessCreateErr.FAIL, err_info=resp.err_info)
            await self.reply(req.r_c_uid, failed)
            return
        self._started(req, rec, sh_req, resp)
        if sh_req.gs_ret_chan_msg is not None:  # spec §2: the handshake on its GS-return channel
            ping = GSPingProc(mode=req.options.mode, argdata=req.options.argdata)
            await self.reply(sh_req.gs_ret_chan_msg.c_uid, ping)
        await self.reply(req.r_c_uid, GSProcessCreateResponse(ref=req.tag, err=ProcessCreateErr.SUCCESS, desc=rec.desc))
        if rec.early_exit is not None:  # spec §4.2: an exit that overtook the create response
            await self.process_exited(rec.early_exit)

    def _refuse_create(self, req: GSProcessCreate) -> GSProcessCreateResponse | None:
        """FAIL for fields GS cannot carry out, ALREADY for a name a live process holds; else None."""
        problem = create_problem(req) or self._placement_problem(req)
        if problem:
            return GSProcessCreateResponse(ref=req.tag, err=ProcessCreateErr.FAIL, err_info=problem)
        existing = self.reg.procs.taken(req.user_name)
        if existing is not None:
            info = f"a process named {req.user_name} exists already"
            return GSProcessCreateResponse(ref=req.tag, err=ProcessCreateErr.ALREADY, desc=existing.desc, err_info=info)
        return None

    def _placement_problem(self, req: GSProcessCreate) -> str:
        """What is wrong with the create's placement ("" if nothing)."""
        policy = req.policy
        if policy is None:
            return ""
        n = self.node_count()
        if policy.node is not None and not 0 <= policy.node < n:
            return f"there is no node {policy.node}: this runtime has {n} node{'s' * (n > 1)} (0 to {n - 1})"
        if policy.node is None and policy.host and self._node_of_host(policy.host) is None:
            hosts = ", ".join(d.host_name for d in self.nodes) or "this node only"
            return f"no node of this runtime is host {policy.host!r} (its nodes: {hosts})"
        if any(c < 0 for c in policy.cpus):
            return f"CPU numbers are 0 or more, not {policy.cpus}"
        return ""

    def _node_of_host(self, host: str) -> int | None:
        if len(self.nodes) <= 1 and host in ("localhost", os.uname().nodename):
            return 0
        return next((d.idx for d in self.nodes if host in (d.host_name, *d.ip_addrs)), None)

    def _place(self, req: GSProcessCreate) -> int:
        """The node of a new process (checked by `_placement_problem`). [choice] The default is the
        primary node for the head and round robin over every node for the others (the reference's
        default; fill-first would leave the other nodes idle until one is full, and nothing here
        knows when a node is full): Pool(4) on two nodes gets workers on nodes 0, 1, 0, 1."""
        policy = req.policy
        if policy is not None and policy.node is not None:
            return policy.node
        if policy is not None and policy.host:
            return self._node_of_host(policy.host) or 0
        if req.head_proc or self.node_count() == 1:
            return 0
        node = self.next_node % self.node_count()
        self.next_node += 1
        return node

    def _enter_process(self, req: GSProcessCreate) -> ProcRecord:
        """The next p_uid, its name, its node, PENDING; a requester that is a process of ours is its parent."""
        procs = self.reg.procs
        p_uid = procs.new_id()
        desc = ProcessDescriptor(
            p_uid=p_uid,
            p_p_uid=req.p_uid if req.p_uid in procs else LAUNCHER_PUID,
            name=req.user_name or procs.default_name(p_uid),
            node=self._place(req),
            state=ObjectState.PENDING,
            label=req.label,
            target=req.target,
        )
        rec = ProcRecord(desc, head=req.head_proc)
        procs.add(p_uid, rec)
        return rec

    def _sh_process_create(self, req: GSProcessCreate, desc: ProcessDescriptor) -> SHProcessCreate:
        """The request to LS, with the channels GS makes with the process embedded (spec §4.2)."""
        ret_msg = None
        if req.options.make_inf_channels:
            ret_msg = self._sh_channel_create(RETURN_CHANNEL_CAPACITY, RETURN_CHANNEL_BLOCK, ref_count=False)
        pipes = {
            stream: self._sh_channel_create(req.pipesize or PIPE_CAPACITY, PIPE_BLOCK, ref_count=True)
            for stream in STREAMS
            if getattr(req, stream) == PIPE
        }
        return SHProcessCreate(
            tag=self.tag(),
            p_uid=GS_PUID,
            r_c_uid=GS_INPUT_CUID,
            t_p_uid=desc.p_uid,
            exe=req.exe,
            args=req.args,
            env={**req.env, "DRAGON_PARENT_PUID": str(desc.p_p_uid)},
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
            cpus=req.policy.cpus if req.policy is not None else [],
        )

    def _sh_channel_create(self, capacity: int, block_size: int, *, ref_count: bool) -> SHChannelCreate:
        local_opts = msgspec.structs.replace(ChannelOptions().local_opts, capacity=capacity, block_size=block_size)
        return SHChannelCreate(
            tag=self.tag(),
            p_uid=GS_PUID,
            r_c_uid=GS_INPUT_CUID,
            m_uid=INF_POOL_MUID,
            c_uid=self.reg.chans.new_id(),
            options=ChannelOptions(ref_count=ref_count, local_opts=local_opts),
        )

    def _started(
        self, req: GSProcessCreate, rec: ProcRecord, sh_req: SHProcessCreate, resp: SHProcessCreateResponse
    ) -> None:
        """LS started it: enter its channels, make it ACTIVE, a live child of its parent."""
        desc = rec.desc
        who = title(req.label, desc.name, self.reg.procs.default_name(desc.p_uid)) or f"p_uid {desc.p_uid}"
        ret_msg = sh_req.gs_ret_chan_msg
        if ret_msg is not None and resp.gs_ret_chan_resp is not None:
            ret = self._channel(ret_msg.c_uid, f"gs_ret_{desc.p_uid}", resp.gs_ret_chan_resp.desc, req.p_uid, desc.node)
            ret.desc.label = f"GS replies to {who}"
            self.reg.chans.add(ret_msg.c_uid, ret, named=False)
            desc.gs_ret_cuid = ret_msg.c_uid
        for stream in STREAMS:
            pipe: SHChannelCreate | None = getattr(sh_req, f"{stream}_msg")
            pipe_resp = getattr(resp, f"{stream}_resp")
            if pipe is None or pipe_resp is None:
                continue
            chan = self._channel(
                pipe.c_uid, stdio_channel_name(stream, desc.p_uid), pipe_resp.desc, req.p_uid, desc.node
            )
            chan.desc.label = f"{stream} of {who}"
            chan.ref_count, chan.refs = True, 2  # the process's reference and its parent's
            self.reg.chans.add(pipe.c_uid, chan)
            setattr(desc, f"{stream}_sdesc", pipe_resp.desc)
            rec.pipe_cuids.append(pipe.c_uid)
        desc.state = ObjectState.ACTIVE
        desc.pid = resp.pid
        parent = self.reg.procs.get(desc.p_p_uid)
        if parent is not None:
            parent.desc.live_children.append(desc.p_uid)
        log.info("process created p_uid=%d name=%s", desc.p_uid, desc.name)

    @staticmethod
    def _channel(c_uid: int, name: str, sdesc: str, creator: int, node: int) -> ChanRecord:
        desc = ChannelDescriptor(
            c_uid=c_uid,
            m_uid=INF_POOL_MUID,
            name=name,
            node=node,
            sdesc=sdesc,
            state=ObjectState.ACTIVE,
            creator=creator,
        )
        return ChanRecord(desc)

    # ------------------------------------------------------------------ exit (§3.1 a3)

    async def process_exited(self, msg: SHProcessExit) -> None:
        """Spec §3.1 a3: mark DEAD, answer joins, free its channels, tell LA if it was the head."""
        rec = self.reg.procs.get(msg.p_uid)
        if rec is None:
            log.warning("SHProcessExit for unknown p_uid=%d", msg.p_uid)
            return
        if rec.desc.state == ObjectState.PENDING:
            rec.early_exit = msg
            return
        rec.desc.state = ObjectState.DEAD
        rec.desc.ecode = msg.exit_code
        rec.exited.set()
        parent = self.reg.procs.get(rec.desc.p_p_uid)
        if parent is not None and msg.p_uid in parent.desc.live_children:
            parent.desc.live_children.remove(msg.p_uid)
        log.info("process exited p_uid=%d code=%d", msg.p_uid, msg.exit_code)
        if rec.desc.pid:
            self.nursery.start_soon(self.reclaim_holds, rec.desc.node, rec.desc.pid, msg.exit_code != 0)
        if rec.desc.gs_ret_cuid is not None:
            self.nursery.start_soon(self.destroy_infra_channel, rec.desc.gs_ret_cuid)
        for c_uid in rec.pipe_cuids:  # the process's reference to its PIPE channels
            self.nursery.start_soon(self.release_channel, c_uid)
        if rec.head:
            await self.to_la.send(GSHeadExit(exit_code=msg.exit_code))

    async def node_lost(self, msg: NodeLost) -> None:
        """MULTINODE §6: every process of a lost node is dead (killed, -9: its joiners get that at
        once, never a hang), the node is DEAD in the node table, and it is asked nothing more."""
        link = self.node_ls.pop(msg.node_idx, None)
        self.lost_nodes.setdefault(msg.node_idx, trio.Event()).set()
        if 0 <= msg.node_idx < len(self.nodes):  # GSNodeList says so (`dragon.client.remote` asks)
            self.nodes[msg.node_idx] = msgspec.structs.replace(self.nodes[msg.node_idx], state=ObjectState.DEAD)
        if link is not None:
            await link.aclose()
        for rec in self.reg.procs.records():
            if rec.desc.node == msg.node_idx and rec.desc.state == ObjectState.ACTIVE:
                await self.process_exited(SHProcessExit(p_uid=rec.desc.p_uid, creation_msg_tag=0, exit_code=-9))
        log.error("node %d lost (%s): its processes are reported dead", msg.node_idx, msg.what)

    # ------------------------------------------------------------------ query, kill, join

    def process_query(self, req: GSProcessQuery) -> GSProcessQueryResponse:
        rec = self.reg.procs.lookup(req.t_p_uid, req.user_name)
        if rec is None:
            info = self.reg.procs.unknown(req.t_p_uid, req.user_name)
            return GSProcessQueryResponse(ref=req.tag, err=ProcessQueryErr.UNKNOWN, err_info=info)
        return GSProcessQueryResponse(ref=req.tag, err=ProcessQueryErr.SUCCESS, desc=rec.desc)

    async def process_kill(self, req: GSProcessKill) -> None:
        await self.reply(req.r_c_uid, await self._kill(req))

    async def _kill(self, req: GSProcessKill) -> GSProcessKillResponse:
        rec = self.reg.procs.lookup(req.t_p_uid, req.user_name)
        if rec is None:
            info = self.reg.procs.unknown(req.t_p_uid, req.user_name)
            return GSProcessKillResponse(ref=req.tag, err=ProcessKillErr.UNKNOWN, err_info=info)
        p_uid = rec.desc.p_uid
        if p_uid == GS_PUID:
            return GSProcessKillResponse(
                ref=req.tag,
                err=ProcessKillErr.FAIL_KILL,
                err_info="Global Services (p_uid 1) takes no signals from requests: "
                "it stops when the runtime tears down",
            )
        if rec.desc.state == ObjectState.DEAD:
            info = f"process {p_uid} has exited already"
            return GSProcessKillResponse(
                ref=req.tag, err=ProcessKillErr.DEAD, exit_code=rec.desc.ecode or 0, err_info=info
            )
        if rec.desc.state == ObjectState.PENDING:
            info = f"process {p_uid} is still starting"
            return GSProcessKillResponse(ref=req.tag, err=ProcessKillErr.PENDING, err_info=info)
        kill = SHProcessKill(
            tag=self.tag(),
            p_uid=GS_PUID,
            r_c_uid=GS_INPUT_CUID,
            t_p_uid=p_uid,
            sig=req.sig,
            hide_stderr=req.hide_stderr,
        )
        ls_resp: SHProcessKillResponse = await self.ls_call(kill, rec.desc.node)
        if ls_resp.err == LSErr.SUCCESS:
            return GSProcessKillResponse(ref=req.tag, err=ProcessKillErr.SUCCESS)
        if ls_resp.exited:  # it died while the kill was in flight: its exit's news is on the way
            with trio.move_on_after(EXIT_NEWS_S):
                await rec.exited.wait()
        if rec.exited.is_set():
            return GSProcessKillResponse(ref=req.tag, err=ProcessKillErr.DEAD, exit_code=rec.desc.ecode or 0)
        return GSProcessKillResponse(ref=req.tag, err=ProcessKillErr.FAIL_KILL, err_info=ls_resp.err_info)

    async def process_join(self, req: GSProcessJoin) -> None:
        await self.reply(req.r_c_uid, await self._join(req))

    async def _join(self, req: GSProcessJoin) -> GSProcessJoinResponse:
        rec = self.reg.procs.lookup(req.t_p_uid, req.user_name)
        if rec is None:
            info = self.reg.procs.unknown(req.t_p_uid, req.user_name)
            return GSProcessJoinResponse(ref=req.tag, err=ProcessJoinErr.UNKNOWN, err_info=info)
        if rec.desc.p_uid == req.p_uid:
            return GSProcessJoinResponse(ref=req.tag, err=ProcessJoinErr.SELF, err_info="a process cannot join itself")
        if rec.desc.p_uid == GS_PUID:
            return GSProcessJoinResponse(ref=req.tag, err=ProcessJoinErr.NOT_JOINABLE, err_info=NOT_JOINABLE_INFO)
        with trio.move_on_after(timeout_s(req.timeout)):
            await rec.exited.wait()
        if rec.exited.is_set():
            return GSProcessJoinResponse(ref=req.tag, err=ProcessJoinErr.SUCCESS, exit_code=rec.desc.ecode or 0)
        info = f"process {rec.desc.p_uid} still running"
        return GSProcessJoinResponse(ref=req.tag, err=ProcessJoinErr.TIMEOUT, err_info=info)

    async def process_join_list(self, req: GSProcessJoinList) -> None:
        """Spec §4.2 JoinList: any (join_all False) or all; return_on_bad_exit; TIMEOUT for the rest."""
        targets: dict[int | str, ProcRecord | None] = {}
        for p in req.t_p_uid_list:
            targets[p] = self.reg.procs.get(p)
        for n in req.user_name_list:
            targets[n] = self.reg.procs.lookup(None, n)
        live = [r for r in targets.values() if r is not None and r.desc.p_uid not in (req.p_uid, GS_PUID)]
        refused = any(r is not None and r.desc.p_uid == GS_PUID for r in targets.values())

        def done() -> bool:
            if refused:  # the answer is an error whatever the others do: given at once
                return True
            dead = [r for r in live if r.exited.is_set()]
            if req.return_on_bad_exit and any(r.desc.ecode for r in dead):
                return True
            return len(dead) == len(live) if req.join_all else bool(dead) or not live

        with trio.move_on_after(timeout_s(req.timeout)):
            while not done():
                async with trio.open_nursery() as race:  # wake on the next exit of any target
                    for r in live:
                        if not r.exited.is_set():
                            race.start_soon(_set_when, r.exited, race.cancel_scope)
        status = {key: self._join_status(key, target, req.p_uid) for key, target in targets.items()}
        await self.reply(req.r_c_uid, GSProcessJoinListResponse(ref=req.tag, err=ListErr.SUCCESS, puid_status=status))

    def _join_status(self, key: int | str, target: ProcRecord | None, requester: int) -> JoinStatus:
        if target is None:
            info = self.reg.procs.unknown(key if isinstance(key, int) else None, key if isinstance(key, str) else "")
            return JoinStatus(status=JoinListStatus.UNKNOWN, err_info=info)
        if target.desc.p_uid == requester:
            return JoinStatus(status=JoinListStatus.SELF)
        if target.desc.p_uid == GS_PUID:
            return JoinStatus(status=JoinListStatus.NOT_JOINABLE, err_info=NOT_JOINABLE_INFO)
        if target.exited.is_set():
            return JoinStatus(status=JoinListStatus.SUCCESS, exit_code=target.desc.ecode or 0)
        return JoinStatus(status=JoinListStatus.TIMEOUT)


def create_problem(req: GSProcessCreate) -> str:
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
