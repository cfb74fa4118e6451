"""Per-run CURVE keys and the ZAP authenticator (transport/zsecurity.py), on real TCP sockets of 127.0.0.1.

The server (a PULL socket, as a transport agent's) runs in the test; each client is another process,
given its keys on stdin (never on its command line), which pushes a few messages and then waits for its
stdin to close. A refused client: nothing reaches the server within REFUSED_WAIT_S (bounded wait), and
for a refusal by the authenticator, its counter is polled boundedly.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import msgspec
import pytest
import trio
import zmq

from dragon.transport.zsecurity import ZAP_DOMAIN, Authenticator, RunKeys, server_socket
from dragon.transport.zsock import AsyncSocket

REFUSED_WAIT_S = 1.0

# A client process: its keys (JSON of RunKeys, or null for security "none") on the first line of stdin.
PUSHER = """
import sys, msgspec, zmq
from dragon.transport.zsecurity import RunKeys, client_socket

keys = msgspec.json.decode(sys.stdin.readline(), type=RunKeys | None)
ctx = zmq.Context()
sock = client_socket(ctx, zmq.PUSH, keys)
sock.connect(sys.argv[1])
for i in range(int(sys.argv[2])):
    sock.send_multipart([b"hello", str(i).encode()])
sys.stdin.read()
sock.close(linger=0)
ctx.term()
"""


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    c: zmq.Context[Any] = zmq.Context()
    yield c
    c.destroy(linger=0)


def pull_server(ctx: zmq.Context[Any], keys: RunKeys | None) -> tuple[AsyncSocket, str]:
    sock = server_socket(ctx, zmq.PULL, keys)
    sock.bind("tcp://127.0.0.1:*")
    return AsyncSocket(sock), sock.getsockopt_string(zmq.LAST_ENDPOINT)


@asynccontextmanager
async def client(endpoint: str, keys: RunKeys | None, count: int = 3) -> AsyncIterator[None]:
    """A client process pushing `count` messages to `endpoint` with `keys`, for the body's length."""
    async with trio.open_nursery() as nursery:
        cmd = [sys.executable, "-c", PUSHER, endpoint, str(count)]
        proc = await nursery.start(partial(trio.run_process, cmd, stdin=subprocess.PIPE))
        assert proc.stdin is not None
        await proc.stdin.send_all(msgspec.json.encode(keys) + b"\n")
        try:
            yield
        finally:
            await proc.stdin.aclose()


async def assert_nothing_arrives(server: AsyncSocket) -> None:
    with trio.move_on_after(REFUSED_WAIT_S):
        pytest.fail(f"a refused client's message reached the server: {await server.recv_multipart()}")


async def wait_refused(auth: Authenticator, at_least: int) -> None:
    with trio.fail_after(10):
        while auth.refused < at_least:
            await trio.sleep(0.01)  # bounded poll of a counter the ZAP task updates


def other_run(keys: RunKeys, *, server: bool = False, client: bool = False) -> RunKeys:
    """`keys` with another run's server pair and/or client pair."""
    other = RunKeys.make()
    return RunKeys(
        other.server_public if server else keys.server_public,
        other.server_secret if server else keys.server_secret,
        other.client_public if client else keys.client_public,
        other.client_secret if client else keys.client_secret,
    )


def test_run_keys_are_fresh_round_trip_and_hide_their_secrets() -> None:
    keys = RunKeys.make()
    assert len({keys.server_public, keys.server_secret, keys.client_public, keys.client_secret}) == 4
    assert RunKeys.make() != keys
    assert msgspec.json.decode(msgspec.json.encode(keys), type=RunKeys) == keys
    assert keys.server_secret not in repr(keys) and keys.client_secret not in repr(keys)
    with pytest.raises(ValueError, match=r"RunKeys\.client_secret: a CURVE key is 40 characters"):
        RunKeys(keys.server_public, keys.server_secret, keys.client_public, "short")


async def test_a_client_with_the_run_keys_connects_and_its_messages_arrive(ctx: zmq.Context[Any]) -> None:
    keys = RunKeys.make()
    auth = Authenticator(ctx, keys)
    async with trio.open_nursery() as nursery:
        await nursery.start(auth.serve)
        server, endpoint = pull_server(ctx, keys)
        with trio.fail_after(30):
            async with client(endpoint, keys):
                got = [await server.recv_multipart() for _ in range(3)]
        assert got == [[b"hello", str(i).encode()] for i in range(3)]
        assert auth.accepted == 1 and auth.refused == 0
        server.close()
        nursery.cancel_scope.cancel()


async def test_a_client_with_another_runs_client_keys_is_refused_counted_and_logged_once(
    ctx: zmq.Context[Any], caplog: pytest.LogCaptureFixture
) -> None:
    keys = RunKeys.make()
    intruder = other_run(keys, client=True)  # knows the server's public key, not this run's client pair
    auth = Authenticator(ctx, keys)
    caplog.set_level(logging.WARNING, logger="dragon.transport.zsecurity")
    async with trio.open_nursery() as nursery:
        await nursery.start(auth.serve)
        server, endpoint = pull_server(ctx, keys)
        async with client(endpoint, intruder), client(endpoint, intruder):  # two, from one address
            await assert_nothing_arrives(server)
            await wait_refused(auth, 2)  # every refusal counted...
        assert auth.accepted == 0
        refusals = [r.getMessage() for r in caplog.records if r.name == "dragon.transport.zsecurity"]
        assert len(refusals) == 1, refusals  # ...logged once
        assert "127.0.0.1" in refusals[0] and "client key is not this run's" in refusals[0]
        assert intruder.client_public in refusals[0]
        server.close()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("who", ["wrong server key", "no security"])
async def test_a_client_without_the_servers_key_or_without_curve_gets_nothing_through(
    ctx: zmq.Context[Any], who: str
) -> None:
    keys = RunKeys.make()
    peer = other_run(keys, server=True) if who == "wrong server key" else None
    auth = Authenticator(ctx, keys)
    async with trio.open_nursery() as nursery:
        await nursery.start(auth.serve)
        server, endpoint = pull_server(ctx, keys)
        async with client(endpoint, peer):
            await assert_nothing_arrives(server)
        assert auth.accepted == 0  # its handshake failed before ZAP was asked
        server.close()
        nursery.cancel_scope.cancel()


async def test_without_an_authenticator_a_curve_server_refuses_even_the_run_keys(ctx: zmq.Context[Any]) -> None:
    """ZAP_ENFORCE_DOMAIN: a server whose authenticator is not running fails closed (libzmq's default
    would accept any client that knows the server's public key)."""
    keys = RunKeys.make()
    server, endpoint = pull_server(ctx, keys)
    async with client(endpoint, keys):
        await assert_nothing_arrives(server)
    server.close()


async def test_security_none_works_on_both_ends(ctx: zmq.Context[Any]) -> None:
    server, endpoint = pull_server(ctx, None)
    with trio.fail_after(30):
        async with client(endpoint, None, count=2):
            got = [await server.recv_multipart() for _ in range(2)]
    assert got == [[b"hello", b"0"], [b"hello", b"1"]]
    server.close()


async def test_one_authenticator_per_context(ctx: zmq.Context[Any]) -> None:
    keys = RunKeys.make()
    async with trio.open_nursery() as nursery:
        await nursery.start(Authenticator(ctx, keys).serve)
        with pytest.raises(RuntimeError, match="another authenticator already serves this ZeroMQ context"):
            await nursery.start(Authenticator(ctx, keys).serve)
        nursery.cancel_scope.cancel()


async def test_the_authenticator_refuses_other_mechanisms_domains_and_malformed_requests(
    ctx: zmq.Context[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """ZAP requests as libzmq sends them (RFC 27), on the ZAP endpoint itself."""
    keys = RunKeys.make()
    key = zmq.utils.z85.decode(keys.client_public.encode())
    other = zmq.utils.z85.decode(RunKeys.make().client_public.encode())
    caplog.set_level(logging.WARNING, logger="dragon.transport.zsecurity")
    auth = Authenticator(ctx, keys)
    cases = {
        "run key": ([b"1.0", b"1", ZAP_DOMAIN, b"10.0.0.1", b"", b"CURVE", key], b"200"),
        "other key": ([b"1.0", b"2", ZAP_DOMAIN, b"10.0.0.1", b"", b"CURVE", other], b"400"),
        "NULL": ([b"1.0", b"3", ZAP_DOMAIN, b"10.0.0.2", b"", b"NULL"], b"400"),
        "PLAIN": ([b"1.0", b"4", ZAP_DOMAIN, b"10.0.0.2", b"", b"PLAIN", b"user", b"password"], b"400"),
        "other domain": ([b"1.0", b"5", b"other", b"10.0.0.3", b"", b"CURVE", key], b"400"),
        "malformed": ([b"0.9", b"6"], b"400"),
    }
    async with trio.open_nursery() as nursery:
        await nursery.start(auth.serve)
        zap = AsyncSocket(ctx.socket(zmq.REQ))
        zap.sock.connect("inproc://zeromq.zap.01")
        with trio.fail_after(10):
            for name, (request, status) in cases.items():
                await zap.send_multipart(request)
                reply = await zap.recv_multipart()
                assert reply[:3] == [b"1.0", request[1], status], name
        zap.close()
        nursery.cancel_scope.cancel()
    assert (auth.accepted, auth.refused) == (1, 5)
    assert len(caplog.records) == 5
