"""The fork server: starts the children of the "dragon" start method from a warm interpreter.

A child of the multiprocessing start method "dragon" is `python -c <dragon.mp.child main>`: a fresh
interpreter that imports the runtime client and multiprocessing before it can unpickle its process
object. That costs each child several times Python's own start-up, enough to make starting many
processes much slower than "spawn" (figures: README, benchmarks). Local Services therefore runs this
program once per runtime (`dragon.services._fast_start` says when): an interpreter, started with
the same executable, flags and Python environment variables, that imports those modules (`PRELOAD`;
then `PRELOAD_IDLE` between requests) and then forks a child for each request it receives, as
multiprocessing's "forkserver" does. A child costs two forks instead of an exec and an import.

Protocol, over the SOCK_SEQPACKET socket whose fd is `sys.argv[1]`: Local Services sends one
`StartRequest` (msgpack) per child, with the child's stdin, stdout and stderr attached (SCM_RIGHTS);
the server answers with one `StartReply`: the child's pid, or what went wrong. Before the first
request the server sends `READY` once its modules are imported. End of file on the socket, or an
error on it (Local Services died or tore down early), ends the server quietly.

The child is made by a double fork: the intermediate process exits at once, so the child is
re-parented to Local Services (a child subreaper), which reaps it and sees its exit status exactly
as for a child it exec'd. The child then becomes what `python -c CODE ARGS` would have been: fds 0-2
are the ones sent (every other fd is closed), the working directory, `os.environ` and `sys.argv` are
the request's, and CODE runs in a new `__main__` module; its exit (SystemExit, an exception, atexit
handlers) is the interpreter's usual one.

What differs from a fresh interpreter (as under multiprocessing's "forkserver"): the modules of
`PRELOAD` (and, unless the child came early, `PRELOAD_IDLE`) are already imported, and every child
has the server's string-hash seed (`random` is re-seeded at fork by the standard library itself).
Local Services only sends requests whose executable, interpreter flags and Python/locale environment
equal the server's, so `sys.flags`, `sys.path` and the stdio encodings are what the child would have
had.

Plain Python: no trio (the children must not carry it). It is Local Services' helper program, so it
lives with the services (`python -c "from dragon.services.forkserver import main; main()"`); the
child program it serves is named by `dragon.ids.CHILD_MAIN`, which the client uses too.
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import socket
import sys
import types
from typing import Final, NoReturn

import msgspec

from dragon.descriptors import OsText, fs_env, fs_str

MAX_REQUEST: Final = 1 << 20  # bytes of one StartRequest (the environment is most of it)
MAX_FD: Final = 65536  # fds a child closes above 2
PRELOAD: Final = (
    "dragon.mp.child",
    "dragon.client.gs_client",
    "multiprocessing.spawn",
    "multiprocessing.resource_tracker",
    "pkgutil",
)
"""What every child of the "dragon" start method imports before it runs user code (pkgutil: runpy's,
for its main module)."""
PRELOAD_IDLE: Final = (
    "shutil",
    "random",
    "tempfile",
    "multiprocessing.connection",
    "multiprocessing.resource_sharer",
    "_hashlib",
    "hmac",
    "queue",
    "traceback",
    "multiprocessing.pool",
    "dragon.mp.queues",
    "dragon.mp.pool",
)
"""What most children import as they unpickle their process object: Pipe and Queue ends (their fds
come through the resource sharer, which authenticates with hmac), a Pool's worker. The server imports
these after READY, one at a time while no request waits, the heavy dependencies as steps of their own
(each step at most about 2 ms with .pyc files: `_hashlib` loads OpenSSL), so that a start, often
the program's first right after READY, waits for one short step at most: it pays once what would
cost every child. Measured here (no .pyc files), the CPU time from fork to the
first task of a Pool worker went from 20 to 5 ms, of a child given a Pipe from 14 to 4 ms (with
`dragon.client.gs_client`'s decoder, also made at import)."""
READY: Final = b"ready"
"""The server's first message: PRELOAD is imported, requests are served from now on."""


class StartRequest(msgspec.Struct, frozen=True):
    """Start `python -c code` with `sys.argv == argv`, in `cwd`, with exactly the environment `env`."""

    code: str
    argv: list[str]
    env: dict[str, OsText]
    cwd: OsText
    env_raw: list[tuple[bytes, bytes]] = []
    """Variables whose name is not valid UTF-8 (dragon.descriptors.os_env)."""


class StartReply(msgspec.Struct, frozen=True):
    """The child's pid, or 0 and why it could not be started."""

    pid: int = 0
    error: str = ""


def main() -> None:
    """Serve requests on the socket `sys.argv[1]` until end of file; in each child, run its code."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the children (become() restores it)
    for name in PRELOAD:
        __import__(name)
    try:
        sock.send(READY)
        job = serve(sock)
    except ConnectionError:  # Local Services went away (it tears down, or died): nothing to serve
        return
    if job is not None:  # this is a child: the server's loop is no longer on the stack
        request, fds = job
        become(request, fds, sock)
        run_main(request.code)


def serve(sock: socket.socket) -> tuple[StartRequest, list[int]] | None:
    """The server's loop. Returns None at end of file; returns (request, fds) in a new child.
    While no request waits, it imports PRELOAD_IDLE."""
    encoder = msgspec.msgpack.Encoder()
    decoder = msgspec.msgpack.Decoder(StartRequest)
    idle = list(PRELOAD_IDLE)
    while True:
        if idle and not select.select([sock], [], [], 0)[0]:
            __import__(idle.pop(0))
            continue
        data, fds, _flags, _addr = socket.recv_fds(sock, MAX_REQUEST, 3)
        if not data:
            return None
        try:
            request = decoder.decode(data)
            if len(fds) != 3:
                raise ValueError(f"a request needs 3 fds (stdin, stdout, stderr), got {len(fds)}")
            if not os.path.isdir(fs_str(request.cwd)):  # refuse before forking: an exec reports this properly
                raise FileNotFoundError(f"no such directory: {fs_str(request.cwd)!r}")
            pid = _double_fork()
            if pid == 0:
                return request, fds
            reply = StartReply(pid=pid)
        except Exception as exc:  # the request fails, the server goes on
            reply = StartReply(error=f"{type(exc).__name__}: {exc}")
        for fd in fds:  # the child has its own copies
            os.close(fd)
        sock.send(encoder.encode(reply))


def _double_fork() -> int:
    """Fork a grandchild and let the intermediate exit at once; the grandchild's pid here, 0 in it."""
    r, w = os.pipe()
    intermediate = os.fork()
    if intermediate == 0:
        try:
            me = os.getpid()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                os.close(w)
                _await_reparenting(me)
                return 0
            os.write(w, pid.to_bytes(8, "little"))
        except BaseException:
            os._exit(1)
        os._exit(0)
    os.close(w)
    try:
        data = os.read(r, 8)
    finally:
        os.close(r)
        os.waitpid(intermediate, 0)  # once it is reaped, the grandchild has been re-parented
    if len(data) != 8:
        raise OSError("the intermediate process could not fork")
    return int.from_bytes(data, "little")


def _await_reparenting(parent: int) -> None:
    """Wait (microseconds) until `parent`, the intermediate, has exited, so that from the child's first
    line on `os.getppid()` is Local Services, as for an exec'd child."""
    if os.getppid() != parent:
        return
    try:
        fd = os.pidfd_open(parent)
    except ProcessLookupError:
        return
    try:
        if os.getppid() == parent:  # the pidfd is our parent's, not a later process with its number
            select.select([fd], [], [])
    finally:
        os.close(fd)


def become(request: StartRequest, fds: list[int], sock: socket.socket) -> None:
    """Turn this fresh child into the process the request describes (before its code runs)."""
    sock.close()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.closerange(3, MAX_FD)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C: KeyboardInterrupt, as under python
    os.chdir(fs_str(request.cwd))
    os.environ.clear()
    os.environ.update(fs_env(request.env, request.env_raw))
    sys.argv = list(request.argv)


def run_main(code: str) -> NoReturn:
    """Run `code` as `python -c` does, in a new `__main__` module, then exit as the interpreter would.

    The exit keeps what a program can see of Python's own shutdown (non-daemon threads are joined,
    atexit handlers run, stdio is flushed; the exit status of SystemExit, an uncaught exception or
    Ctrl-C) and skips the rest: tearing every module down in a forked child copies most of the
    server's memory page by page, about 16 ms of CPU per child here (multiprocessing's "fork" and
    "forkserver" children skip it too, with os._exit).
    """
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = module
    interrupted = False
    try:
        exec(compile(code, "<string>", "exec"), module.__dict__)
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        status, interrupted = 1, True
    except BaseException:
        sys.excepthook(*sys.exc_info())
        status = 1
    _shut_down()
    if interrupted:  # as the interpreter does: die of SIGINT, so that the parent sees -2
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status)


def _exit_status(code: object) -> int:
    """The status `sys.exit(code)` gives: None is 0, an int is itself, anything else is printed, 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _shut_down() -> None:
    """What Python's shutdown does that a program can observe, in its order."""
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()  # join the non-daemon threads
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
