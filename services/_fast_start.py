"""Local Services' side of the fork server (`services/forkserver.py`): fast starts for the "dragon" start method.

`ForkServer.can_serve` decides per SHProcessCreate: only the child program of the multiprocessing start
method "dragon" (`python [flags] -c <dragon.mp.child main>`) is started from the server, and only when
its executable, interpreter flags and Python/locale environment variables are those the server was
started with (they decide what an interpreter does at start-up: `sys.flags`, `sys.path`, the stdio
encodings). Everything else is exec'd as before. The server boots (as long as one exec'd child takes)
`PRESTART_DELAY_S` after Local Services starts a Python program, normally the head, or at
the first eligible request if that comes first; requests wait for the server's READY. When the
launcher expects the runtime's first program to use the start method (`LSConfig.fork_server`: the
head's source names multiprocessing and dragon, or a background runtime, which a start brings up),
it boots at once, while the runtime comes up, so that it is ready for that program's first start.

Local Services becomes a child subreaper when it starts the server, so the children the server makes
(by a double fork) are Local Services' own: `ServedChild` waits for and reaps them like any child, and
the runtime's teardown stops them like any managed process. If the server dies or fails, Local
Services logs it once and falls back to exec for good: a broken server never loses a start.
"""

from __future__ import annotations

import logging
import socket
import subprocess
from collections.abc import Mapping, Sequence
from typing import Final

import msgspec
import trio

from dragon.descriptors import os_env, os_text
from dragon.ids import CHILD_MAIN

from ._process import ForkedChild, become_subreaper, stop_process
from .forkserver import READY, StartReply, StartRequest

log = logging.getLogger(__name__)

SERVER_MAIN: Final = "from dragon.services.forkserver import main; main()"
STARTUP_ENV_PREFIXES: Final = ("PYTHON", "LC_", "LANG")
"""Environment variables an interpreter reads when it starts: a child's must equal the server's."""
PRESTART_DELAY_S: Final = 0.05
"""A program that ends sooner (hello world) never boots the server; one that uses the start method
takes longer than this to import multiprocessing and reach its first start anyway."""
REPLY_TIMEOUT_S: Final = 30.0  # a live server answers in milliseconds; this only bounds a wedged one


class ServedChild(ForkedChild):
    """A child made by the fork server (our child once re-parented), with trio streams on its pipes."""

    def __init__(
        self,
        pid: int,
        stdin: trio.lowlevel.FdStream | None,
        stdout: trio.lowlevel.FdStream | None,
        stderr: trio.lowlevel.FdStream | None,
    ) -> None:
        super().__init__(pid)
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr


class ForkServerFailed(Exception):
    """The fork server could not start a child (the caller falls back to exec)."""


class ForkServer:
    """Local Services' handle on its fork server: booted lazily in `nursery`, used under a lock."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._proc: trio.Process | None = None
        self._sock: socket.socket | None = None
        self._key: tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]] | None = None
        self._booted = trio.Event()  # set once the boot ended, ready or not
        self._delay_scope = trio.CancelScope()  # of the boot waiting for its delay
        self._starting = False  # the server process is being started (not cancellable: aclose waits)
        self._spawned = trio.Event()  # set once the server process exists (or could not be made)
        self._wanted = trio.Event()  # a start waits for the server: boot now, without the prestart delay
        self._broken = False
        self._lock = trio.Lock()
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(StartReply)

    @staticmethod
    def _key_of(
        argv: Sequence[str], env: Mapping[str, str]
    ) -> tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]] | None:
        """(executable, flags, start-up environment) of a start-method child's argv; None for another program."""
        if len(argv) < 3 or list(argv[-2:]) != ["-c", CHILD_MAIN]:
            return None
        flags = tuple(argv[1:-2])
        if "-c" in flags or "-m" in flags:
            return None
        startup = tuple(sorted((k, v) for k, v in env.items() if k.startswith(STARTUP_ENV_PREFIXES)))
        return argv[0], flags, startup

    def prestart(
        self,
        exe: str,
        env: Mapping[str, str],
        *,
        flags: Sequence[str] | None = None,
        delay_s: float = PRESTART_DELAY_S,
        exited: trio.Event | None = None,
    ) -> None:
        """Boot the server after `delay_s`, for the children a Python program (the head) may make.

        Its key is what `DragonPopen` will ask for: `exe` with `flags`, by default the interpreter
        flags of this process (Local Services runs the same interpreter as the head, in the same
        environment, so `sys.flags` agree), and `env`'s start-up variables. `exited`: set when that
        program has exited; if it is set once the delay is over (and no start asked for the server),
        no server is booted, and a later program or start may boot one. So a program that never
        uses the start method has paid nothing if it ended within PRESTART_DELAY_S (hello world),
        else about 0.1 s of CPU on another core and 25 MB while it runs. Only one call counts: a
        server is booted (or booting) for one key.
        """
        if self._key is None and not self._broken:
            if flags is None:
                flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]  # what the head's children get
            key = self._key_of([exe, *flags, "-c", CHILD_MAIN], env)
            if key is not None:
                self._key = key
                self._delay_scope = trio.CancelScope()
                self._nursery.start_soon(self._boot, key, dict(env), delay_s, exited)

    def ready_for(self, argv: Sequence[str], env: Mapping[str, str]) -> bool:
        """Whether this start should go through the server: it was started (or is being started) with
        the same key, see the module docstring. The first eligible start boots the server."""
        if self._broken:
            return False
        key = self._key_of(argv, env)
        if key is None:
            return False
        if self._key is None:
            self._key = key
            self._delay_scope = trio.CancelScope()
            self._nursery.start_soon(self._boot, key, dict(env), 0.0, None)
        self._wanted.set()
        return key == self._key

    async def _boot(
        self,
        key: tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]],
        env: dict[str, str],
        delay_s: float,
        exited: trio.Event | None,
    ) -> None:
        """After `delay_s` (or as soon as a start wants it), start the server process and wait for its
        READY (bounded); on failure, never use it. `aclose` cancels it. If `exited` is set by then
        and no start wants the server, forget the key instead (see `prestart`)."""
        abandoned = False
        try:
            with self._delay_scope, trio.move_on_after(delay_s):
                await self._wanted.wait()
            if exited is not None and exited.is_set() and not self._wanted.is_set():
                self._key, abandoned = None, True
            elif not self._broken:
                # Not cancelled halfway (a process started under a cancelled open_process, a socket
                # closed under a waiter): bounded by REPLY_TIMEOUT_S, and `aclose` waits for it.
                self._starting = True
                with trio.CancelScope(shield=True):
                    await self._start_server(key, env)
        finally:
            if not abandoned:
                self._spawned.set()
                self._booted.set()

    async def _start_server(
        self, key: tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]], env: dict[str, str]
    ) -> None:
        exe, flags, _ = key
        log.info("fork server starting: %s", [exe, *flags])
        try:
            become_subreaper()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self._sock = ours
            try:
                self._proc = await trio.lowlevel.open_process(
                    [exe, *flags, "-c", SERVER_MAIN, str(theirs.fileno())],
                    env=env,
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                )
            finally:
                theirs.close()
                self._spawned.set()
            with trio.fail_after(REPLY_TIMEOUT_S):
                await trio.lowlevel.wait_readable(ours)
            first = ours.recv(64)
        except (OSError, trio.TooSlowError, trio.ClosedResourceError) as exc:
            self._fail(f"the fork server did not start ({type(exc).__name__}: {exc})")
            return
        if first != READY:
            self._fail(f"the fork server did not start (it said {first!r})")
            return
        log.info("fork server ready pid=%d", self._proc.pid)

    async def start(self, argv: Sequence[str], env: Mapping[str, str], cwd: str, stdio: tuple[int, int, int]) -> int:
        """Have the server start `argv` (a start-method child); returns its pid.

        `stdio` are the child's fds 0-2 (the caller closes its copies). Raises ForkServerFailed, and
        marks the server broken, if it is gone or answers nonsense; a request it refuses (a working
        directory that does not exist) raises ForkServerFailed without that.
        """
        env_plain, env_raw = os_env(env)
        request = StartRequest(code=argv[-1], argv=["-c"], env=env_plain, env_raw=env_raw, cwd=os_text(cwd))
        with trio.move_on_after(REPLY_TIMEOUT_S):
            await self._booted.wait()
        async with self._lock:
            sock = self._sock
            if self._broken or sock is None or not self._booted.is_set():
                raise ForkServerFailed("the fork server is not running")
            try:
                data = self._encoder.encode(request)
                await trio.lowlevel.wait_writable(sock)
                socket.send_fds(sock, [data], list(stdio))
                with trio.fail_after(REPLY_TIMEOUT_S):
                    await trio.lowlevel.wait_readable(sock)
                raw = sock.recv(4096)
                if not raw:
                    raise EOFError("the fork server exited")
                reply = self._decoder.decode(raw)
            except (OSError, EOFError, trio.TooSlowError, trio.ClosedResourceError, msgspec.DecodeError) as exc:
                self._fail(f"the fork server failed ({type(exc).__name__}: {exc})")
                raise ForkServerFailed(str(exc)) from exc
        if reply.error or reply.pid <= 0:
            raise ForkServerFailed(reply.error or "no pid in the fork server's reply")
        return reply.pid

    def _fail(self, why: str) -> None:
        if not self._broken:
            log.warning("%s: starting processes by exec from now on", why)
        self._broken = True

    async def aclose(self) -> None:
        """Stop the server: close its socket, then SIGTERM (a server still importing would not see the
        end of file for a while), SIGKILL if need be. One still booting is not waited for: it is
        stopped once its process exists (the teardown of a program that ended as it booted, which
        would otherwise wait for its imports)."""
        self._broken = True
        self._delay_scope.cancel()
        if self._starting:
            with trio.CancelScope(shield=True), trio.move_on_after(REPLY_TIMEOUT_S):
                await self._spawned.wait()  # open_process cannot be interrupted
                if self._proc is not None and not self._booted.is_set():
                    self._proc.terminate()  # its READY is then end of file: the boot ends at once
                await self._booted.wait()
        if self._sock is not None:
            trio.lowlevel.notify_closing(self._sock)
            self._sock.close()
        if self._proc is not None:  # it has no children (they are ours), so SIGTERM is always safe
            await stop_process(self._proc)
