"""Temporary stand-in (lead's) until the helper's module lands."""

from __future__ import annotations

import logging
from typing import Any, Literal

import msgspec
import trio
import zmq

from .zsock import AsyncSocket

log = logging.getLogger(__name__)
Security = Literal["curve", "none"]
ZAP_ENDPOINT = "inproc://zeromq.zap.01"


class RunKeys(msgspec.Struct, frozen=True):
    server_public: str
    server_secret: str
    client_public: str
    client_secret: str

    @classmethod
    def make(cls) -> RunKeys:
        sp, ss = zmq.curve_keypair()
        cp, cs = zmq.curve_keypair()
        return cls(sp.decode(), ss.decode(), cp.decode(), cs.decode())


def server_socket(ctx: zmq.Context[Any], kind: int, keys: RunKeys | None) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = ctx.socket(kind)
    if keys is not None:
        sock.curve_server = True
        sock.curve_secretkey = keys.server_secret.encode()
        sock.curve_publickey = keys.server_public.encode()
        sock.zap_domain = b"dragon"
    return sock


def client_socket(ctx: zmq.Context[Any], kind: int, keys: RunKeys | None) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = ctx.socket(kind)
    if keys is not None:
        sock.curve_serverkey = keys.server_public.encode()
        sock.curve_publickey = keys.client_public.encode()
        sock.curve_secretkey = keys.client_secret.encode()
    return sock


class Authenticator:
    def __init__(self, ctx: zmq.Context[Any], keys: RunKeys) -> None:
        self.ctx, self.keys = ctx, keys
        self.refused = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sock = AsyncSocket(self.ctx.socket(zmq.REP))
        sock.sock.bind(ZAP_ENDPOINT)
        task_status.started()
        from zmq.utils import z85

        allowed = z85.decode(self.keys.client_public.encode())
        try:
            while True:
                req = await sock.recv_multipart()
                version, request_id, _domain, address, _identity, mechanism, *creds = req
                ok = mechanism == b"CURVE" and creds[:1] == [allowed]
                if not ok:
                    self.refused += 1
                    log.warning(
                        "refused a connection from %s (%s)",
                        address.decode(errors="replace"),
                        mechanism.decode(errors="replace"),
                    )
                code, text = (b"200", b"OK") if ok else (b"400", b"not a peer of this run")
                await sock.send_multipart([version, request_id, code, text, b"", b""])
        finally:
            sock.close()
