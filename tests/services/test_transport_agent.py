"""The transport agent's inbound side (services/transport_agent.py) against a peer that holds the run's
keys but sends what is no frame of ours (MULTINODE §7): each bad message is dropped and counted (and the
first ones logged), and the agent goes on: a heartbeat and a real frame after them still arrive.

Real sockets on 127.0.0.1 with CURVE and the ZAP authenticator, a real channel in /dev/shm.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
import trio
import zmq

from dragon.services.transport_agent import _BEAT, _BEAT_MARK, Agent, TAConfig
from dragon.transport import Channel, TrioChannel
from dragon.transport._shm import run_prefix
from dragon.transport.forward import pack_forward
from dragon.transport.zsecurity import Authenticator, RunKeys, client_socket, server_socket
from dragon.transport.zsock import AsyncSocket


async def test_an_authenticated_peers_garbage_is_dropped_and_the_agent_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = RunKeys.make()
    agent = Agent(TAConfig(node_idx=0, bind_addr="127.0.0.1", keys=keys), link=None)  # type: ignore[arg-type]
    agent.heard = {1: 0.0}
    agent.waiting_for = {1}
    chan = Channel.create(run_prefix("t" + uuid.uuid4().hex[:8]) + "ta", capacity=8, block_size=256)
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(Authenticator(ctx, keys).serve)
            pull = AsyncSocket(server_socket(ctx, zmq.PULL, keys))
            port = pull.sock.bind_to_random_port("tcp://127.0.0.1")
            nursery.start_soon(agent.receive_frames, pull)
            peer = client_socket(agent.ctx, zmq.PUSH, keys)
            peer.connect(f"tcp://127.0.0.1:{port}")
            bad = [
                [b"\x00"],  # shorter than a header
                [b"two", pack_forward(0, chan.descriptor, b"in a batch")],  # a bad frame of a batch
                [pack_forward(0, "no-such-channel-xyz", b"lost")],  # names no channel here
                [pack_forward(5, chan.descriptor, b"for node 5")],  # for another node
                [b"\x01\x00\x00\x00\xff\xff\xff\x7fshort"],  # a descriptor longer than the frame
                [_BEAT.pack(_BEAT_MARK, 9)],  # a heartbeat of a node that is not in the run
            ]
            with caplog.at_level(logging.WARNING, logger="dragon.services.transport_agent"):
                for parts in bad:
                    peer.send_multipart(parts)
                peer.send_multipart([_BEAT.pack(_BEAT_MARK, 1)])
                peer.send_multipart([pack_forward(0, chan.descriptor, b"delivered")])
                with trio.fail_after(10):
                    await agent.all_heard.wait()
                assert await trio.to_thread.run_sync(chan.recv, 10.0) == b"in a batch"
                assert await trio.to_thread.run_sync(chan.recv, 10.0) == b"delivered"
            nursery.cancel_scope.cancel()
        assert agent.dropped == len(bad)
        assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == len(bad)
    finally:
        chan.destroy()
        ctx.destroy(linger=0)
        agent.ctx.destroy(linger=0)


async def test_frames_waiting_at_once_go_to_a_node_as_one_message() -> None:
    """Item 3 of issue 17: the frames a service wrote into the agent's channel meanwhile leave as one
    message per node (a part each), in order; a frame for no node of the run is dropped alone."""
    agent = Agent(TAConfig(node_idx=0, bind_addr="127.0.0.1", keys=None), link=None)  # type: ignore[arg-type]
    source = TrioChannel.create(run_prefix("t" + uuid.uuid4().hex[:8]) + "gw", capacity=16, block_size=256)
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        pull: zmq.Socket[bytes] = ctx.socket(zmq.PULL)
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push = agent.ctx.socket(zmq.PUSH)
        push.connect(f"tcp://127.0.0.1:{port}")
        agent.peers = {1: AsyncSocket(push)}
        frames = [pack_forward(1, "c", b"%d" % i) for i in range(5)]
        for frame in [*frames[:2], pack_forward(7, "c", b"nowhere"), *frames[2:]]:
            source.send_nowait(frame)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.pump, source, None)
            assert await trio.to_thread.run_sync(lambda: pull.poll(10_000))
            nursery.cancel_scope.cancel()
        assert pull.recv_multipart() == frames
        assert agent.dropped == 1 and agent.traffic.frames_out == 5
    finally:
        await source.aclose()
        Channel.attach(source.descriptor).destroy()
        ctx.destroy(linger=0)
        agent.ctx.destroy(linger=0)
