"""Who may connect to a run's ZeroMQ sockets: per-run CURVE keys, socket set-up, a ZAP authenticator
(MULTINODE.md §4 step 2, §7). Only the multi-node actors import this module (it imports zmq).

Decision (the spec's "one run key pair plus a per-run authenticator"): a run has one *server* key pair
and one *client* key pair (`RunKeys`), both made by the frontend at start. Every socket of the run that
binds (the frontend's ROUTER, each transport agent's socket) is a CURVE server with the server pair;
every socket that connects is a CURVE client with the client pair and the server's public key. Each
process that binds a CURVE socket runs an `Authenticator` in the socket's context, which accepts a
client only if its public key is the run's client key. So a peer of another run (other keys), or a peer
with no keys, cannot connect: with a wrong server key or without CURVE its handshake fails (libzmq drops
it before any message), with another client key the authenticator refuses it, logs the refusal (once per
peer address and credential) and counts it. Server sockets set ZAP_ENFORCE_DOMAIN, so while no
authenticator runs in their context they refuse every client rather than accept all (libzmq's default).
A single key pair per node endpoint would need every node's public key on every node for no gain: all
processes of a run trust each other equally.

The callers keep the keys secret: never on a command line (`ps` shows it to every user) nor in a file
other users can read; they travel on a backend's stdin or in a 0600 file (MULTINODE.md §4). `repr` of
`RunKeys` hides the secrets, so a logged handle does not leak them. The processes of the run get the
client pair and the server's public key (never the server's secret) in their environment
(`for_processes`, `process_socket`) **[choice]**: a process operates on a channel of another node over
a socket of its own to that node's agent (issue 17), and its environment is readable by its user and
root only (/proc/PID/environ is 0400), as a 0600 file would be.

`security="none"` (the user's explicit opt-out, §7) is `keys=None` everywhere: plain sockets, no
authenticator.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any, Final, Literal, TypeAlias

import msgspec
import trio
import zmq
from zmq.utils import z85

from .zsock import AsyncSocket

log = logging.getLogger(__name__)

Security: TypeAlias = Literal["curve", "none"]

ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"  # fixed by ZAP (ZeroMQ RFC 27)
ZAP_DOMAIN: Final = b"dragon"
_Z85_KEY_CHARS: Final = 40  # a 32-byte CURVE key in Z85
_MAX_LOGGED: Final = 256  # distinct refused peers logged; beyond, refusals are only counted


class RunKeys(msgspec.Struct, frozen=True):
    """The run's CURVE keys (Z85 text): one server pair, one client pair (see the module docstring)."""

    server_public: str
    server_secret: str
    client_public: str
    client_secret: str

    @classmethod
    def make(cls) -> RunKeys:
        """Fresh keys for a new run."""
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        return cls(server_public.decode(), server_secret.decode(), client_public.decode(), client_secret.decode())

    def __post_init__(self) -> None:
        for field in self.__struct_fields__:
            key = getattr(self, field)
            if len(key) != _Z85_KEY_CHARS:
                raise ValueError(
                    f"RunKeys.{field}: a CURVE key is {_Z85_KEY_CHARS} characters of Z85 text, got {len(key)}; "
                    "use the keys of RunKeys.make() as they were sent"
                )

    def __repr__(self) -> str:
        return f"RunKeys(server_public={self.server_public!r}, client_public={self.client_public!r}, secrets hidden)"

    def for_processes(self) -> str:
        """What a process of the run needs to connect (`process_socket`): the server's public key and
        the client pair, as one line."""
        return " ".join((self.server_public, self.client_public, self.client_secret))


NO_KEYS: Final = "none"
"""`for_processes` of a run with `--transport-security none`."""


def process_socket(ctx: zmq.Context[Any], kind: int, for_processes: str) -> zmq.Socket[bytes]:
    """A socket of type `kind` to connect, for a process of the run given `RunKeys.for_processes` (or
    NO_KEYS). Raises ValueError naming the problem if the text is not that."""
    if for_processes == NO_KEYS:
        return client_socket(ctx, kind, None)
    parts = for_processes.split()
    if len(parts) != 3 or any(len(k) != _Z85_KEY_CHARS for k in parts):
        raise ValueError("the run's keys for processes are not three CURVE keys of Z85 text")
    sock: zmq.Socket[bytes] = ctx.socket(kind)
    sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = (k.encode() for k in parts)
    return sock


def server_socket(ctx: zmq.Context[Any], kind: int, keys: RunKeys | None) -> zmq.Socket[bytes]:
    """A socket of type `kind` (zmq.ROUTER, ...) to bind: a CURVE server with the run's server pair whose
    clients the `Authenticator` of `ctx` vets; plain if `keys` is None (security "none")."""
    sock: zmq.Socket[bytes] = ctx.socket(kind)
    if keys is not None:
        sock.curve_server = True
        sock.curve_publickey = keys.server_public.encode()
        sock.curve_secretkey = keys.server_secret.encode()
        sock.zap_domain = ZAP_DOMAIN
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    return sock


def client_socket(ctx: zmq.Context[Any], kind: int, keys: RunKeys | None) -> zmq.Socket[bytes]:
    """A socket of type `kind` to connect: a CURVE client with the run's client pair that only talks to
    a server holding the run's server key; plain if `keys` is None (security "none")."""
    sock: zmq.Socket[bytes] = ctx.socket(kind)
    if keys is not None:
        sock.curve_serverkey = keys.server_public.encode()
        sock.curve_publickey = keys.client_public.encode()
        sock.curve_secretkey = keys.client_secret.encode()
    return sock


class Authenticator:
    """The ZAP handler of one context: accepts a CURVE client only if its public key is the run's client
    key, refuses anything else (another key, NULL or PLAIN, another ZAP domain).

    Run it in a nursery before the context's server sockets take clients, and keep it running as long as
    they do: `await nursery.start(auth.serve)` returns once it listens. One per context (ZAP's endpoint
    is per context). `refused` counts refusals, `accepted` admissions; each refused peer (address and
    credential) is logged once, as a warning.
    """

    def __init__(self, ctx: zmq.Context[Any], keys: RunKeys) -> None:
        self._ctx = ctx
        self._client_key = z85.decode(keys.client_public.encode())
        self.refused = 0
        self.accepted = 0
        self._logged: set[tuple[bytes, bytes]] = set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Answer ZAP requests until cancelled; reports started once bound."""
        sock = AsyncSocket(self._ctx.socket(zmq.REP))
        try:
            try:
                sock.sock.bind(ZAP_ENDPOINT)
            except zmq.ZMQError as exc:
                raise RuntimeError(
                    f"Authenticator: cannot bind {ZAP_ENDPOINT} ({exc}): another authenticator already "
                    "serves this ZeroMQ context; run one per context"
                ) from exc
            task_status.started()
            while True:
                request = await sock.recv_multipart()
                await sock.send_multipart(self._answer(request))
        finally:
            sock.close()

    def _answer(self, request: list[bytes]) -> list[bytes]:
        """The ZAP reply (RFC 27) to `request`: version, request id, status code, text, user id, metadata."""
        if len(request) < 6 or request[0] != b"1.0":
            return self._refuse(request[1] if len(request) > 1 else b"", b"?", b"malformed ZAP request", b"")
        _version, request_id, domain, address, _routing_id, mechanism, *credentials = request
        if domain != ZAP_DOMAIN:
            return self._refuse(request_id, address, b"ZAP domain " + domain + b" is not this run's", domain)
        if mechanism != b"CURVE":
            return self._refuse(request_id, address, b"mechanism " + mechanism + b" is not CURVE", mechanism)
        key = credentials[0] if credentials else b""
        if not hmac.compare_digest(key, self._client_key):
            return self._refuse(request_id, address, b"client key is not this run's", key)
        self.accepted += 1
        return [b"1.0", request_id, b"200", b"OK", b"dragon", b""]

    def _refuse(self, request_id: bytes, address: bytes, why: bytes, credential: bytes) -> list[bytes]:
        self.refused += 1
        peer = (address, credential)
        if peer not in self._logged and len(self._logged) < _MAX_LOGGED:
            self._logged.add(peer)
            shown = z85.encode(credential).decode() if len(credential) == 32 else credential.decode(errors="replace")
            log.warning(
                "refused a ZeroMQ connection from %s: %s (%s); further refusals of this peer are only counted",
                address.decode(errors="replace"),
                why.decode(errors="replace"),
                shown,
            )
        return [b"1.0", request_id, b"400", why, b"", b""]
