"""Global Services' plumbing, shared by its request handlers (services/_gs_processes.py, _gs_objects.py).

The tables (services/_registry.py), the links, and the two ways GS talks: `ls_call` sends an SH
request to Local Services and waits for the response whose `ref` is its tag (`PendingReplies`), and
`answer`/`reply` deliver a response to `r_c_uid`: the LA channel (2**57), GS's stdout (1, for test
harnesses), a tool's own channel (user-managed c_uid, used once), or a managed process's GS-return
channel, whose handle GS keeps until that channel is destroyed.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Final

import msgspec
import trio

from dragon import _rundir
from dragon.descriptors import NodeDescriptor, ObjectState
from dragon.ids import BE_CUID, GS_INPUT_CUID, GS_PUID, GS_STDOUT_R_C_UID
from dragon.messages import (
    GSInbound,
    GSStatus,
    GSStatusResponse,
    GSStdoutOutbound,
    LAInbound,
    ListErr,
    LSErr,
    LSInbound,
    ProcessInbound,
    Response,
    SHChannelCreate,
    SHChannelCreateResponse,
    SHChannelDestroy,
    SHChannelDestroyResponse,
    SHPoolCreate,
    SHPoolCreateResponse,
    SHPoolDestroy,
    SHPoolDestroyResponse,
    SHProcessCreate,
    SHProcessCreateResponse,
    SHProcessKill,
    SHProcessKillResponse,
    TATraffic,
)
from dragon.mp.at_home import reclaim_request
from dragon.transport import (
    ChannelDestroyed,
    ChannelError,
    FrameStream,
    MessageChannel,
    PendingReplies,
    Record,
    TrioChannel,
)
from dragon.transport.forward import OP, RECORD, ChannelOp, pack_forward
from dragon.transport.records import never_reclaimed, reclaim, remote_holder
from dragon.transport.remote_frames import RemoteFrames

from ._registry import Registry
from ._tool_replies import is_user_managed, reply_once

log = logging.getLogger(__name__)

POLL_US: Final = 100  # spec §4: a timeout of at most 100 µs means "poll now"
REPLY_TIMEOUT_S: Final = 10.0  # a requester that reads nothing for this long gets no reply


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


class GSBase:
    """GS's tables and links; the handlers are its subclasses' (services/global_services.py)."""

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
        self.reg = Registry()
        self.chan_name_waiters: dict[str, trio.Event] = {}
        self.next_tag = 1
        self.ls_replies = PendingReplies[Response]("GS channel")
        self.reply_boxes: dict[int, MessageChannel[ProcessInbound]] = {}
        self.nodes: list[NodeDescriptor] = []
        """Every node, by index (LAChannelsInfo; on a single node, its LS's SHPingGS)."""
        self.node_ls: dict[int, MessageChannel[LSInbound]] = {0: to_ls}
        """Each node's Local Services: node 0's channel, the others' through the transport agents."""
        self.traffic: dict[int, TATraffic] = {}
        """Each node's transport agent's latest TATraffic (`dragon status`)."""
        self.security = ""
        """Between nodes (LAChannelsInfo): "curve" or "none"; "" on a single node."""
        self.next_node = 0
        """Round robin of the default placement (`ProcessHandlers._place`)."""
        self.lost_nodes: dict[int, trio.Event] = {}
        """Set for a node once it is lost (`ProcessHandlers.node_lost`): what waits on it ends."""
        self.gateway: TrioChannel | None = None
        """This node's transport-agent channel (many nodes): the way to every other node's channels."""

    def tag(self) -> int:
        self.next_tag += 1
        return self.next_tag

    def node_count(self) -> int:
        return max(1, len(self.nodes))

    def node_of(self, p_uid: int) -> int:
        """The node process `p_uid` runs on (0 for the launcher, GS and unknown p_uids)."""
        rec = self.reg.procs.get(p_uid)
        return rec.desc.node if rec is not None else 0

    def is_lost(self, node: int) -> bool:
        lost = self.lost_nodes.get(node)
        return lost is not None and lost.is_set()

    def link_to(self, node: int, sdesc: str) -> trio.abc.Channel[bytes]:
        """Frames into channel `sdesc` of `node`: attached here, or through the transport agents."""
        if node == 0 or self.gateway is None:
            return TrioChannel.attach(sdesc)
        return RemoteFrames(self.gateway, node, sdesc)

    async def ls_call(self, msg: Any, node: int = 0) -> Any:
        """Send an SH request to the LS of `node` and wait for the response whose `ref` is its tag.

        A node that is lost, before or while it is asked, answers FAIL (its response type, saying
        so): no request of GS ever waits on a node that is gone (MULTINODE §6)."""
        link = self.node_ls.get(node)
        if link is None:
            return _lost_answer(msg, node)
        with self.ls_replies.expect(msg.tag) as waiter:
            await link.send(msg)
            if node == 0:
                return await waiter.reply()
            lost = self.lost_nodes.setdefault(node, trio.Event())
            answer: list[Any] = []
            async with trio.open_nursery() as race:

                async def reply() -> None:
                    answer.append(await waiter.reply())
                    race.cancel_scope.cancel()

                async def gone() -> None:
                    await lost.wait()
                    race.cancel_scope.cancel()

                race.start_soon(reply)
                race.start_soon(gone)
            return answer[0] if answer else _lost_answer(msg, node)

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
                    where = self._reply_channel(r_c_uid)
                    if where is None:
                        log.warning("cannot reply to r_c_uid=%d (no such channel): %r", r_c_uid, msg)
                        return
                    box = self.reply_boxes[r_c_uid] = MessageChannel(
                        self.link_to(*where), ProcessInbound, name=f"channel {r_c_uid}"
                    )
                with trio.move_on_after(REPLY_TIMEOUT_S):
                    await box.send(msg)
                    return
                log.warning("reply to r_c_uid=%d timed out (nobody reads it): %r", r_c_uid, msg)
            except Exception as exc:  # the requester's channel is gone: nobody is left to answer
                log.warning("reply to r_c_uid=%d failed: %s", r_c_uid, exc)
                await self._forget_reply_box(r_c_uid)

    def _reply_channel(self, r_c_uid: int) -> tuple[int, str] | None:
        """The node and attach descriptor of a managed process's return channel, if GS knows it."""
        rec = self.reg.chans.get(r_c_uid)
        if rec is None or rec.desc.state != ObjectState.ACTIVE or r_c_uid == GS_INPUT_CUID:
            return None
        return rec.desc.node, rec.desc.sdesc

    async def _forget_reply_box(self, c_uid: int) -> None:
        box = self.reply_boxes.pop(c_uid, None)
        if box is not None:
            await box.aclose()

    async def release_channel(self, c_uid: int) -> None:
        """Drop one reference to a ref-counted channel; destroy it at zero."""
        rec = self.reg.chans.get(c_uid)
        if rec is None or rec.desc.state != ObjectState.ACTIVE:
            return
        rec.refs -= 1
        if rec.refs <= 0:
            await self.destroy_infra_channel(c_uid)

    async def reclaim_holds(self, node: int, pid: int, abnormal: bool) -> None:
        """Tell every synchronization object's record that process `pid` of `node` exited
        (`records.reclaim`: its holds come back, a Barrier it was party to breaks if `abnormal`).
        Records of this node, for a process of this node: here, in a thread (a record's lock is a
        flock that a stopped process could keep, and GS must go on answering meanwhile). Every other
        record: by its home node's transport agent (`dragon.mp.at_home`), which knows the process of
        another node by its `records.remote_holder` number."""
        homes: dict[int, list[str]] = {}
        for c in self.reg.chans.records():
            if c.record and c.desc.state == ObjectState.ACTIVE:
                homes.setdefault(c.desc.node, []).append(c.desc.sdesc)
        for home, sdescs in homes.items():
            who = pid if home == node else remote_holder(node, pid)
            if (home != 0 or who != pid) and self.gateway is not None and not self.is_lost(home):
                op = ChannelOp(RECORD, 0, payloads=[reclaim_request(who, abnormal, sdescs)])
                await self.gateway.send(pack_forward(home, "", msgspec.msgpack.encode(op), OP))
        if node != 0:
            return
        recs = [
            c for c in self.reg.chans.records() if c.record and c.desc.state == ObjectState.ACTIVE and c.desc.node == 0
        ]
        log.debug("reclaim pid=%d abnormal=%s records=%s", pid, abnormal, [c.desc.c_uid for c in recs])
        if recs:
            sdescs = [c.desc.sdesc for c in recs]
            several = self.node_count() > 1
            warnings, untouched = await trio.to_thread.run_sync(
                _reclaim_all, sdescs, pid, abnormal, several, abandon_on_cancel=True
            )
            for c in recs:
                if c.desc.sdesc in untouched:  # of a kind no death changes: not attached at every exit
                    c.record = False
            for warning in warnings:
                log.warning("%s", warning)

    async def destroy_infra_channel(self, c_uid: int) -> None:
        """Destroy a channel GS made with a process (its GS-return channel, a PIPE channel)."""
        await self._forget_reply_box(c_uid)
        chan = self.reg.chans.get(c_uid)
        if chan is not None:
            chan.desc.state = ObjectState.DEAD
        node = chan.desc.node if chan is not None else 0
        await self.ls_call(SHChannelDestroy(tag=self.tag(), p_uid=GS_PUID, r_c_uid=GS_INPUT_CUID, c_uid=c_uid), node)

    def status(self, req: GSStatus) -> GSStatusResponse:
        """Spec §8: one read-only snapshot of every table, for `dragon status`."""
        procs = self.reg.procs.records()
        has_head = any(r.head and r.desc.state != ObjectState.DEAD for r in procs)
        return GSStatusResponse(
            ref=req.tag,
            err=ListErr.SUCCESS,
            state="HAS_HEAD" if has_head else "WAITING_FOR_HEAD",
            started=self.started,
            processes=[r.desc for r in procs],
            channels=[c.desc for c in self.reg.chans.records()],
            pools=[p.desc for p in self.reg.pools.records()],
            nodes=self.nodes,
            security=self.security,
            traffic=[self.traffic[i] for i in sorted(self.traffic)],
        )


_ANSWERS: Final[dict[type, type]] = {
    SHProcessCreate: SHProcessCreateResponse,
    SHProcessKill: SHProcessKillResponse,
    SHChannelCreate: SHChannelCreateResponse,
    SHChannelDestroy: SHChannelDestroyResponse,
    SHPoolCreate: SHPoolCreateResponse,
    SHPoolDestroy: SHPoolDestroyResponse,
}


def _lost_answer(msg: Any, node: int) -> Any:
    """The FAIL answer of a lost node to request `msg`."""
    return _ANSWERS[type(msg)](ref=msg.tag, err=LSErr.FAIL, err_info=f"node {node} is lost")


def timeout_s(timeout_us: int) -> float:
    """Spec §4: GS timeouts are integer µs; negative waits forever; <= 100 µs polls."""
    if timeout_us < 0:
        return float("inf")
    return 0.0 if timeout_us <= POLL_US else timeout_us / 1e6


def _reclaim_all(sdescs: list[str], pid: int, abnormal: bool, several: bool) -> tuple[list[str], set[str]]:
    """`records.reclaim` on each record still there: the warnings it gave, and the records of a kind no
    death changes (`records.never_reclaimed`; in a run of `several` nodes), which need not be told again."""
    warnings, untouched = [], set()
    for sdesc in sdescs:
        try:
            rec = Record.attach(sdesc)
        except ChannelDestroyed:
            continue
        try:
            if never_reclaimed(rec, several):
                untouched.add(sdesc)
                continue
            warning = reclaim(rec, pid, abnormal)
        except ChannelError:  # destroyed meanwhile
            continue
        finally:
            rec.close()
        if warning:
            warnings.append(warning)
    return warnings, untouched
