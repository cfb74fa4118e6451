"""Global Services' channel and pool requests (spec §4.3, §4.4): create, query, destroy, join.

GS gives the id and keeps the descriptor; Local Services makes and destroys the shared memory. An
object is PENDING while LS works on it, so a second destroy in the meantime is refused (BUSY or
PENDING) rather than sent twice.
"""

from __future__ import annotations

import trio

from dragon.descriptors import ChannelDescriptor, ObjectState, Placement, PoolDescriptor
from dragon.ids import FIRST_GS_MUID, GS_INPUT_CUID, GS_PUID
from dragon.messages import (
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
    GSChannelQuery,
    GSChannelQueryResponse,
    GSPoolCreate,
    GSPoolCreateResponse,
    GSPoolDestroy,
    GSPoolDestroyResponse,
    GSPoolQuery,
    GSPoolQueryResponse,
    LSErr,
    PoolCreateErr,
    PoolDestroyErr,
    PoolQueryErr,
    SHChannelCreate,
    SHChannelCreateResponse,
    SHChannelDestroy,
    SHChannelDestroyResponse,
    SHPoolCreate,
    SHPoolCreateResponse,
    SHPoolDestroy,
    SHPoolDestroyResponse,
)

from ._gs_base import GSBase, timeout_s
from ._registry import ChanRecord, PoolRecord


class ObjectHandlers(GSBase):
    # ------------------------------------------------------------------ channels (§4.3)

    async def channel_create(self, req: GSChannelCreate) -> None:
        await self.reply(req.r_c_uid, await self._channel_create(req))

    async def _channel_create(self, req: GSChannelCreate) -> GSChannelCreateResponse:
        """Spec §4.3: ALREADY for a taken name, FAIL for a pool that is not there; else the next
        c_uid, PENDING, made by LS, then ACTIVE (and any join waiting for its name answered)."""
        chans = self.reg.chans
        existing = chans.taken(req.user_name)
        if existing is not None:
            info = f"a channel named {req.user_name} exists already"
            return GSChannelCreateResponse(ref=req.tag, err=ChannelCreateErr.ALREADY, desc=existing.desc, err_info=info)
        pool = self.reg.pools.get(req.m_uid)
        if req.m_uid >= FIRST_GS_MUID and (pool is None or pool.desc.state != ObjectState.ACTIVE):
            # spec §4.3: the pool must be pre-defined (m_uid < 2**63) or a live one of GS's table
            info = f"no pool m_uid {req.m_uid} to create a channel in"
            return GSChannelCreateResponse(ref=req.tag, err=ChannelCreateErr.FAIL, err_info=info)
        c_uid = chans.new_id()
        name = req.user_name or chans.default_name(c_uid)
        node = self.node_of(req.p_uid)  # [choice] a channel lives on its creator's node
        desc = ChannelDescriptor(
            c_uid=c_uid,
            m_uid=req.m_uid,
            name=name,
            node=node,
            sdesc="",
            state=ObjectState.PENDING,
            label=req.label,
            creator=req.p_uid,
        )
        chans.add(c_uid, ChanRecord(desc, ref_count=req.options.ref_count, record=req.options.record))
        resp: SHChannelCreateResponse = await self.ls_call(
            SHChannelCreate(
                tag=self.tag(), p_uid=GS_PUID, r_c_uid=GS_INPUT_CUID, m_uid=req.m_uid, c_uid=c_uid, options=req.options
            ),
            node,
        )
        if resp.err != LSErr.SUCCESS:
            chans.remove(c_uid)
            return GSChannelCreateResponse(ref=req.tag, err=ChannelCreateErr.FAIL, err_info=resp.err_info)
        desc.sdesc = resp.desc
        desc.state = ObjectState.ACTIVE
        waiter = self.chan_name_waiters.pop(name, None)
        if waiter is not None:
            waiter.set()
        return GSChannelCreateResponse(ref=req.tag, err=ChannelCreateErr.SUCCESS, desc=desc)

    def channel_query(self, req: GSChannelQuery) -> GSChannelQueryResponse:
        rec = self.reg.chans.lookup(req.c_uid, req.user_name)
        if rec is None:
            info = self.reg.chans.unknown(req.c_uid, req.user_name)
            return GSChannelQueryResponse(ref=req.tag, err=ChannelQueryErr.UNKNOWN, err_info=info)
        if req.inc_refcnt and rec.ref_count and rec.desc.state == ObjectState.ACTIVE:
            rec.refs += 1
        return GSChannelQueryResponse(ref=req.tag, err=ChannelQueryErr.SUCCESS, desc=rec.desc)

    async def channel_destroy(self, req: GSChannelDestroy) -> None:
        resp = await self._channel_destroy(req)
        if req.reply_req:
            await self.reply(req.r_c_uid, resp)

    async def _channel_destroy(self, req: GSChannelDestroy) -> GSChannelDestroyResponse:
        rec = self.reg.chans.lookup(req.c_uid, req.user_name)
        if rec is None or rec.desc.state == ObjectState.DEAD:
            what = f"channel {req.user_name or req.c_uid}"
            info = f"{what} was destroyed already" if rec else f"no {what}"
            return GSChannelDestroyResponse(ref=req.tag, err=ChannelDestroyErr.UNKNOWN, err_info=info)
        if rec.desc.state == ObjectState.PENDING:
            info = f"channel {rec.desc.c_uid} is being created or destroyed"
            return GSChannelDestroyResponse(ref=req.tag, err=ChannelDestroyErr.BUSY, err_info=info)
        if req.dec_ref and rec.ref_count and rec.refs > 1:
            rec.refs -= 1
            return GSChannelDestroyResponse(ref=req.tag, err=ChannelDestroyErr.SUCCESS)
        rec.desc.state = ObjectState.PENDING
        await self._forget_reply_box(rec.desc.c_uid)
        ls_resp: SHChannelDestroyResponse = await self.ls_call(
            SHChannelDestroy(tag=self.tag(), p_uid=GS_PUID, r_c_uid=GS_INPUT_CUID, c_uid=rec.desc.c_uid),
            rec.desc.node,
        )
        rec.desc.state = ObjectState.DEAD
        if ls_resp.err == LSErr.SUCCESS:
            return GSChannelDestroyResponse(ref=req.tag, err=ChannelDestroyErr.SUCCESS)
        return GSChannelDestroyResponse(ref=req.tag, err=ChannelDestroyErr.UNKNOWN, err_info=ls_resp.err_info)

    async def channel_join(self, req: GSChannelJoin) -> None:
        """Spec §4.3: answer as soon as a channel of that name is ACTIVE, waiting for its creation."""
        await self.reply(req.r_c_uid, await self._channel_join(req))

    async def _channel_join(self, req: GSChannelJoin) -> GSChannelJoinResponse:
        with trio.move_on_after(timeout_s(req.timeout)):
            while True:
                rec = self.reg.chans.lookup(None, req.name)
                state = None if rec is None else rec.desc.state
                if rec is not None and state == ObjectState.ACTIVE:
                    return GSChannelJoinResponse(ref=req.tag, err=ChannelJoinErr.SUCCESS, desc=rec.desc)
                if state == ObjectState.DEAD:
                    info = f"channel {req.name} was destroyed"
                    return GSChannelJoinResponse(ref=req.tag, err=ChannelJoinErr.DEAD, err_info=info)
                await self.chan_name_waiters.setdefault(req.name, trio.Event()).wait()
        info = f"no channel named {req.name} appeared"
        return GSChannelJoinResponse(ref=req.tag, err=ChannelJoinErr.TIMEOUT, err_info=info)

    # ------------------------------------------------------------------ pools (§4.4)

    async def pool_create(self, req: GSPoolCreate) -> None:
        await self.reply(req.r_c_uid, await self._pool_create(req))

    async def _pool_create(self, req: GSPoolCreate) -> GSPoolCreateResponse:
        pools = self.reg.pools
        existing = pools.taken(req.user_name)
        if existing is not None:
            info = f"a pool named {req.user_name} exists already"
            return GSPoolCreateResponse(ref=req.tag, err=PoolCreateErr.ALREADY, desc=existing.desc, err_info=info)
        m_uid = pools.new_id()
        name = req.user_name or pools.default_name(m_uid)
        node = req.options.target_node if req.options.placement == Placement.SPECIFIC else self.node_of(req.p_uid)
        if not 0 <= node < self.node_count():
            info = f"there is no node {node}: this runtime has {self.node_count()} (0 to {self.node_count() - 1})"
            return GSPoolCreateResponse(ref=req.tag, err=PoolCreateErr.FAIL, err_info=info)
        desc = PoolDescriptor(m_uid=m_uid, name=name, node=node, sdesc="", state=ObjectState.PENDING)
        pools.add(m_uid, PoolRecord(desc))
        resp: SHPoolCreateResponse = await self.ls_call(
            SHPoolCreate(tag=self.tag(), p_uid=GS_PUID, r_c_uid=GS_INPUT_CUID, size=req.size, m_uid=m_uid, name=name),
            node,
        )
        if resp.err != LSErr.SUCCESS:
            pools.remove(m_uid)
            return GSPoolCreateResponse(ref=req.tag, err=PoolCreateErr.FAIL, err_info=resp.err_info)
        desc.sdesc = resp.desc
        desc.state = ObjectState.ACTIVE
        return GSPoolCreateResponse(ref=req.tag, err=PoolCreateErr.SUCCESS, desc=desc)

    def pool_query(self, req: GSPoolQuery) -> GSPoolQueryResponse:
        rec = self.reg.pools.lookup(req.m_uid, req.user_name)
        if rec is None:
            info = self.reg.pools.unknown(req.m_uid, req.user_name)
            return GSPoolQueryResponse(ref=req.tag, err=PoolQueryErr.UNKNOWN, err_info=info)
        return GSPoolQueryResponse(ref=req.tag, err=PoolQueryErr.SUCCESS, desc=rec.desc)

    async def pool_destroy(self, req: GSPoolDestroy) -> None:
        await self.reply(req.r_c_uid, await self._pool_destroy(req))

    async def _pool_destroy(self, req: GSPoolDestroy) -> GSPoolDestroyResponse:
        rec = self.reg.pools.lookup(req.m_uid, req.user_name)
        if rec is None:
            info = f"no pool {req.user_name or req.m_uid}"
            return GSPoolDestroyResponse(ref=req.tag, err=PoolDestroyErr.UNKNOWN, err_info=info)
        if rec.desc.state == ObjectState.DEAD:
            info = f"pool {rec.desc.m_uid} was destroyed already"
            return GSPoolDestroyResponse(ref=req.tag, err=PoolDestroyErr.GONE, err_info=info)
        if rec.desc.state == ObjectState.PENDING:
            info = f"pool {rec.desc.m_uid} is being created or destroyed"
            return GSPoolDestroyResponse(ref=req.tag, err=PoolDestroyErr.PENDING, err_info=info)
        rec.desc.state = ObjectState.PENDING
        ls_resp: SHPoolDestroyResponse = await self.ls_call(
            SHPoolDestroy(tag=self.tag(), p_uid=GS_PUID, r_c_uid=GS_INPUT_CUID, m_uid=rec.desc.m_uid),
            rec.desc.node,
        )
        rec.desc.state = ObjectState.DEAD
        if ls_resp.err == LSErr.SUCCESS:
            return GSPoolDestroyResponse(ref=req.tag, err=PoolDestroyErr.SUCCESS)
        return GSPoolDestroyResponse(ref=req.tag, err=PoolDestroyErr.FAIL, err_info=ls_resp.err_info)
