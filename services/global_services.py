"""Global Services (GS): the one registry of processes, channels and pools (spec §4.2-§4.4, §5).

GS is forked by Local Services as LS starts, before LS's event loop (spec §2 A4; services/local_services.py
says why). It sleeps (`select`) until its stdin has something for it, and from then on runs this trio
program: read its launch parameters from stdin (LS sends them once the channels exist), attach to the GS, LS and LA channels, GSPingSH (m4), wait for
SHPingGS (m5), GSIsUp (m6), then serve requests until GSTeardown, and write GSHalted on stdout (§3.1
m4). Its stdout and stderr belong to LS's GS monitor: GS writes nothing there but those framed
messages (any exception becomes an AbnormalTermination frame, spec §3.2), and its stdin stays open
after the parameters: its EOF means LS died (GS then exits at once).

The code: this module is GS's life and its dispatch loop; the tables are services/_registry.py, the
plumbing the handlers share services/_gs_base.py, the handlers services/_gs_processes.py (processes)
and services/_gs_objects.py (channels, pools).

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
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import trio

from dragon import _faults, _log
from dragon.errors import DragonError, leaf_exceptions
from dragon.ids import LaunchParameters
from dragon.messages import (
    AbnormalTermination,
    GSChannelCreate,
    GSChannelDestroy,
    GSChannelJoin,
    GSChannelList,
    GSChannelListResponse,
    GSChannelQuery,
    GSDumpState,
    GSHalted,
    GSInbound,
    GSIsUp,
    GSNodeList,
    GSNodeListResponse,
    GSPingSH,
    GSPoolCreate,
    GSPoolDestroy,
    GSPoolList,
    GSPoolListResponse,
    GSPoolQuery,
    GSProcessCreate,
    GSProcessJoin,
    GSProcessJoinList,
    GSProcessKill,
    GSProcessList,
    GSProcessListResponse,
    GSProcessQuery,
    GSStatus,
    GSTeardown,
    LAChannelsInfo,
    LAInbound,
    ListErr,
    LSInbound,
    NodeLost,
    Response,
    SHPingGS,
    SHProcessExit,
    TATraffic,
)
from dragon.transport import FrameStream, MessageChannel, ProtocolError, TrioChannel, clip, decode, log_message
from dragon.transport.remote_frames import RemoteFrames

from ._gs_base import StdoutLink
from ._gs_objects import ObjectHandlers
from ._gs_processes import ProcessHandlers

M = TypeVar("M")

log = logging.getLogger(__name__)


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
    first = await _next(inbox)
    nodes: LAChannelsInfo | None = None
    if params.nodes > 1 and isinstance(first, LAChannelsInfo):  # it may overtake LS's SHPingGS
        nodes, first = first, await _next(inbox)
    if not isinstance(first, SHPingGS):  # m5
        raise RuntimeError(f"expected SHPingGS on the GS channel, got {type(first).__name__}")
    links: dict[int, MessageChannel[LSInbound]] = {0: to_ls}
    gateway: TrioChannel | None = None
    if params.nodes > 1:
        if nodes is None:
            nodes = await _expect(inbox, LAChannelsInfo)
        gateway = TrioChannel.attach(nodes.nodes[0].ta_cd)
        links.update(await _ping_nodes(inbox, gateway, nodes))
    await to_la.send(GSIsUp())  # m6
    if _faults.active("gs-garbage-stdout"):
        os.write(1, b"this is not a frame of the protocol\n")
    if _faults.active("gs-crash"):
        raise RuntimeError("injected fault gs-crash")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_ls, from_ls)
        gs = GlobalServices(inbox, to_ls, to_la, stdout, nursery, params.run_id)
        gs.nodes, gs.node_ls, gs.gateway = (nodes.nodes if nodes else [first.node_sdesc]), links, gateway
        gs.security = nodes.security if nodes else ""
        await gs.main_loop()
        nursery.cancel_scope.cancel()
    closing: list[trio.abc.AsyncResource] = [inbox, to_la, *gs.node_ls.values(), *gs.reply_boxes.values()]
    for link in [*closing, *([gateway] if gateway else [])]:
        await link.aclose()


async def _next(inbox: MessageChannel[GSInbound]) -> GSInbound:
    """The next message of GS's bringup: the agents' traffic reports, which may come as soon as they
    are up, are not part of it (the next one comes a second later)."""
    while isinstance(msg := await inbox.receive(), TATraffic):
        pass
    return msg


async def _expect(inbox: MessageChannel[GSInbound], kind: type[M]) -> M:
    msg = await _next(inbox)
    if not isinstance(msg, kind):
        raise RuntimeError(f"expected {kind.__name__} on the GS channel, got {type(msg).__name__}")
    return msg


async def _ping_nodes(
    inbox: MessageChannel[GSInbound], gateway: TrioChannel, info: LAChannelsInfo
) -> dict[int, MessageChannel[LSInbound]]:
    """MULTINODE §4 step 7: GSPingSH to the LS of every other node, through the transport agents, and
    their SHPingGS back (in any order). The launcher's bringup deadline bounds the wait."""
    links: dict[int, MessageChannel[LSInbound]] = {}
    for node in info.nodes[1:]:
        link = MessageChannel[LSInbound](
            RemoteFrames(gateway, node.idx, node.shep_cd), LSInbound, name=f"LS channel of node {node.idx}"
        )
        await link.send(GSPingSH())
        links[node.idx] = link
    waiting = set(links)
    while waiting:
        ping = await _expect(inbox, SHPingGS)
        waiting.discard(ping.node_sdesc.idx)
    return links


async def _watch_ls(from_ls: FrameStream) -> None:
    """LS writes nothing more after the launch parameters: end of file means it died."""
    try:
        async for _frame in from_ls:
            pass
    except ProtocolError:
        pass
    log.error("Local Services went away: Global Services exits")
    raise LSGone("Local Services went away (GS stdin closed)")


class GlobalServices(ProcessHandlers, ObjectHandlers):
    """GS's tables and request handlers (spec §4.2-§4.4), and the loop that dispatches requests."""

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
                        msg.r_c_uid, GSProcessListResponse(ref=msg.tag, err=ListErr.SUCCESS, plist=list(self.reg.procs))
                    )
                case GSProcessQuery():
                    self.answer(msg.r_c_uid, self.process_query(msg))
                case GSChannelList():
                    self.answer(
                        msg.r_c_uid, GSChannelListResponse(ref=msg.tag, err=ListErr.SUCCESS, clist=list(self.reg.chans))
                    )
                case GSChannelQuery():
                    self.answer(msg.r_c_uid, self.channel_query(msg))
                case GSPoolList():
                    self.answer(
                        msg.r_c_uid, GSPoolListResponse(ref=msg.tag, err=ListErr.SUCCESS, mlist=list(self.reg.pools))
                    )
                case GSPoolQuery():
                    self.answer(msg.r_c_uid, self.pool_query(msg))
                case GSDumpState():
                    self.dump_state(msg.filename)
                case GSStatus():
                    self.answer(msg.r_c_uid, self.status(msg))
                case GSNodeList():
                    self.answer(msg.r_c_uid, GSNodeListResponse(ref=msg.tag, err=ListErr.SUCCESS, nodes=self.nodes))
                case SHPingGS():
                    log.warning("ignored a second SHPingGS")
                case NodeLost():
                    await self.node_lost(msg)
                case TATraffic():
                    self.traffic[msg.node_idx] = msg
                case _:
                    handler = handlers.get(type(msg))
                    if handler is None:
                        log.warning("ignored unexpected %s on the GS channel", type(msg).__name__)
                    else:
                        self.nursery.start_soon(handler, msg)

    def dump_state(self, filename: str) -> None:
        """Spec §8 GSDumpState: the tables, human-readable, into `filename` (no reply). Any process may
        ask, so a file that cannot be written is only logged."""
        lines = ["processes"]
        lines += [f"  {p} {r.desc.name} {r.desc.state.name} ecode={r.desc.ecode}" for p, r in self.reg.procs.items()]
        lines += ["channels"] + [f"  {c} {r.desc.name} {r.desc.state.name}" for c, r in self.reg.chans.items()]
        lines += ["pools"] + [f"  {m} {r.desc.name} {r.desc.state.name}" for m, r in self.reg.pools.items()]
        try:
            with open(filename, "w") as f:
                f.write("\n".join(lines) + "\n")
        except OSError as exc:
            log.warning("GSDumpState: cannot write %s: %s", filename, exc)
