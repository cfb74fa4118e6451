"""`Popen`: `subprocess.Popen`'s look-alike over a managed process (spec §7.2), for code written
against subprocess that should run its programs in the runtime (placed by a `Policy`, on any node).

    with Popen(["sort"], stdin=PIPE, stdout=PIPE, text=True) as p:
        out, _ = p.communicate("b\\na\\n")        # "a\\nb\\n"

What is as in subprocess: `args` (a sequence, or a string that is the program, or with `shell=True`
the command for /bin/sh), `executable`, `stdin`/`stdout`/`stderr` as None (inherited: here, the
runtime's forwarding to the launcher's terminal), PIPE, DEVNULL or (stderr) STDOUT, with
`subprocess`'s own constants; `text`/`universal_newlines`/`encoding`/`errors` for str streams;
the `stdin`/`stdout`/`stderr` attributes as file objects; `poll`, `wait(timeout)` and
`communicate(input, timeout)` raising `subprocess.TimeoutExpired` (after which `communicate` may be
called again and loses no output); `send_signal`, `terminate`, `kill`; `pid`, `returncode` (-N when
killed by signal N); a context manager that closes the pipes and waits.

What differs, by the nature of a runtime's process, each a [choice]:
* A stream may also be a file path (appended to), as `Process` takes it, but not a file object or a
  descriptor of this process: the process is started by Local Services, maybe on another node, and
  inherits nothing of this one (InvalidArgument, naming what to pass). So `close_fds` is always
  true, `pass_fds` must be empty and `preexec_fn` None.
* `env` is merged over the environment (as for every process of the runtime: it needs its launch
  parameters); subprocess replaces it.
* `executable` is the program run; its argv[0] is that program, not `args[0]`.
* A program that cannot be started raises the OSError subprocess raises (FileNotFoundError,
  PermissionError...), from the runtime's ProcessStartFailed.
* Writing to the stdin of a process that has exited raises BrokenPipeError once the pipe is full
  (its input cannot be delivered); `communicate` drops that input, as subprocess does. Closing
  stdin gives the process its end of file, which needs room in the pipe: while it runs with its
  pipe full, the close waits.
* Closing stdout (or stderr) of a process that goes on writing does not stop it: there is no
  SIGPIPE, and once its pipe is full it waits (so `wait()` would too). Read to the end, or
  terminate it before closing.
* The second positional parameter is `executable` (the spec's order), not subprocess's `bufsize`.
* Also: `puid`, `proc_name` (a unique name), `policy`, `user`, `group`, `umask` as for `Process`.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import IO, Any

from dragon.client.pipes import PipeConnection
from dragon.errors import ChannelFull, InvalidArgument, ProcessStartFailed
from dragon.policy import Policy

from .process import Process

PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT
DEVNULL = subprocess.DEVNULL

_STUCK_CHECK_S = 0.2
"""While a write to stdin waits for room, how often it looks whether the process has exited."""

StdArg = int | str | os.PathLike[str] | None


class Popen:
    """A managed process started as `subprocess.Popen` starts a child: see the module docstring.

    Raises:
      InvalidArgument: an argument that cannot be used here (the text says what to pass instead).
      OSError: the program could not be started (FileNotFoundError, PermissionError...: as
        subprocess), from the runtime's ProcessStartFailed, which is raised itself when its text
        names no errno.
    """

    def __init__(
        self,
        args: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        executable: str | os.PathLike[str] | None = None,
        *,
        stdin: StdArg = None,
        stdout: StdArg = None,
        stderr: StdArg = None,
        shell: bool = False,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        text: bool | None = None,
        universal_newlines: bool | None = None,
        encoding: str | None = None,
        errors: str | None = None,
        bufsize: int = -1,
        close_fds: bool = True,
        pass_fds: Sequence[int] = (),
        preexec_fn: Callable[[], object] | None = None,
        user: int | None = None,
        group: int | None = None,
        umask: int = -1,
        proc_name: str = "",
        policy: Policy | None = None,
    ) -> None:
        if preexec_fn is not None or pass_fds or not close_fds:
            raise InvalidArgument(
                "Popen: preexec_fn, pass_fds and close_fds=False need a child forked from this process; "
                "a process of the runtime is started by Local Services and inherits nothing of this one"
            )
        self.args = args
        argv = _argv(args, shell)
        program = os.fspath(executable) if executable is not None else argv[0]
        self.text_mode = bool(text or universal_newlines or encoding or errors)
        self._encoding, self._errors = encoding, errors
        self._proc = Process(
            program,
            argv[1:],
            env=env,
            cwd=cwd,
            name=proc_name,
            stdin=_stdio("stdin", stdin),
            stdout=_stdio("stdout", stdout),
            stderr=_stdio("stderr", stderr),
            user=user,
            group=group,
            umask=umask,
            policy=policy,
        )
        try:
            self._proc.start()
        except ProcessStartFailed as failed:
            raise _as_os_error(failed, program) from failed
        self.returncode: int | None = None
        self.stdin: IO[Any] | None = None
        self.stdout: IO[Any] | None = None
        self.stderr: IO[Any] | None = None
        if (conn := self._proc.stdin_conn) is not None:
            self.stdin = self._file(_StdinWriter(conn, self._proc), bufsize)
        if (conn := self._proc.stdout_conn) is not None:
            self.stdout = self._file(_OutputReader(conn), bufsize)
        if (conn := self._proc.stderr_conn) is not None:
            self.stderr = self._file(_OutputReader(conn), bufsize)
        self._communicating: _Communication | None = None

    def _file(self, raw: io.RawIOBase, bufsize: int) -> IO[Any]:
        """A pipe's file object as subprocess makes it: unbuffered bytes with bufsize=0, else
        buffered; in text mode decoded over that, stdin written through (line-buffered with
        bufsize=1)."""
        writing = raw.writable()
        size = bufsize if bufsize > 1 else io.DEFAULT_BUFFER_SIZE
        base: Any = raw if bufsize == 0 else io.BufferedWriter(raw, size) if writing else io.BufferedReader(raw, size)
        if not self.text_mode:
            return base  # type: ignore[no-any-return]
        line_buffering = writing and bufsize == 1
        return io.TextIOWrapper(
            base, self._encoding, self._errors, line_buffering=line_buffering, write_through=writing
        )

    @property
    def pid(self) -> int:
        """The OS pid of the process (on its node)."""
        assert self._proc.pid is not None
        return self._proc.pid

    @property
    def puid(self) -> int:
        """The runtime's id of the process (`dragon.native.Process.from_puid`)."""
        assert self._proc.p_uid is not None
        return self._proc.p_uid

    def poll(self) -> int | None:
        """The exit code once the process has exited (asks Global Services), else None."""
        if self.returncode is None:
            self.returncode = self._proc.join(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit: its exit code. Raises subprocess.TimeoutExpired after `timeout` s."""
        if self.returncode is None:
            code = self._proc.join(timeout)
            if code is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self.returncode = code
        return self.returncode

    def communicate(self, input: bytes | str | None = None, timeout: float | None = None) -> tuple[Any, Any]:
        """Send `input` to stdin (with stdin=PIPE) and close it, read stdout and stderr (those that
        are PIPE) to their end, and wait for the process: (stdout data, stderr data), None for a
        stream that is not a PIPE; str in text mode.

        Raises subprocess.TimeoutExpired after `timeout` seconds: call it again (without input) to
        go on, nothing read is lost.
        """
        if self._communicating is None:
            if input and self.stdin is None:
                raise InvalidArgument("Popen.communicate: input needs stdin=PIPE")
            self._communicating = _Communication(self, input)
        elif input:
            raise InvalidArgument("Popen.communicate: input was given already (to the call that timed out)")
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._communicating.finish(deadline):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self._communicating.results()  # raises what a thread raised (TypeError, UnicodeDecodeError...)

    def send_signal(self, sig: int) -> None:
        """Send signal `sig` to the process; nothing once it has exited."""
        if self.poll() is None:
            self._proc.send_signal(sig)

    def terminate(self) -> None:
        """Send SIGTERM (see `send_signal`)."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL (see `send_signal`)."""
        self.send_signal(signal.SIGKILL)

    def __enter__(self) -> Popen:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """As subprocess: close stdout and stderr, then stdin (the end of its input), then wait. A
        stream that a `communicate` that timed out still reads is left to it (it closes it at the
        end of file, which comes once the process has exited)."""
        owned = self._communicating.streams() if self._communicating is not None else set()
        for stream in (self.stdout, self.stderr):
            if stream is not None and id(stream) not in owned:
                stream.close()
        try:
            if self.stdin is not None and id(self.stdin) not in owned:
                self.stdin.close()
        except BrokenPipeError:
            pass
        finally:
            self.wait()

    def __repr__(self) -> str:
        return f"<Popen: returncode: {self.returncode} args: {self.args!r}>"


class _Communication:
    """What one `communicate` does, in threads of its own (a process may fill stderr while the caller
    would wait on stdout), kept across calls that time out so that no output is lost."""

    def __init__(self, popen: Popen, input: bytes | str | None) -> None:
        self._out: dict[str, Any] = {"stdout": None, "stderr": None}
        self._errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._streams: set[int] = set()
        if popen.stdin is not None and not popen.stdin.closed:
            self._start("stdin", popen.stdin, _feeder(popen.stdin, input))
        for name, stream in (("stdout", popen.stdout), ("stderr", popen.stderr)):
            if stream is not None and not stream.closed:
                self._start(name, stream, _reader(stream))

    def _start(self, name: str, stream: IO[Any], work: Callable[[], Any]) -> None:
        def run() -> None:
            try:
                self._out[name] = work()
            except BaseException as exc:  # raised in the caller, by results()
                self._errors.append(exc)

        self._streams.add(id(stream))
        thread = threading.Thread(target=run, name=f"Popen.communicate {name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def streams(self) -> set[int]:
        """The ids of the streams its threads still use."""
        return self._streams if any(t.is_alive() for t in self._threads) else set()

    def finish(self, deadline: float | None) -> bool:
        """Wait for the threads until `deadline` (None: no limit): whether they all ended."""
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False
        return True

    def results(self) -> tuple[Any, Any]:
        if self._errors:
            raise self._errors[0]
        return self._out["stdout"], self._out["stderr"]


def _feeder(stream: IO[Any], data: bytes | str | None) -> Callable[[], None]:
    def feed() -> None:
        try:
            if data:
                stream.write(data)
        except BrokenPipeError:  # it exited without reading it all: the input is dropped (subprocess too)
            pass
        finally:
            try:
                stream.close()  # its end of file, whatever happened
            except BrokenPipeError:
                pass

    return feed


def _reader(stream: IO[Any]) -> Callable[[], Any]:
    def read() -> Any:
        with stream:
            return stream.read()

    return read


class _OutputReader(io.RawIOBase):
    """The raw stream of a process's stdout or stderr PIPE (under io's buffering and text layers)."""

    def __init__(self, conn: PipeConnection) -> None:
        self._conn = conn
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._left:
            self._left = memoryview(self._conn.read_chunk())
            if not self._left:
                return 0  # end of file
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._conn.close()
        super().close()


class _StdinWriter(io.RawIOBase):
    """The raw stream of a process's stdin PIPE: BrokenPipeError once the process has exited and the
    pipe is full (what it was sent cannot be delivered)."""

    def __init__(self, conn: PipeConnection, proc: Process) -> None:
        self._conn, self._proc = conn, proc  # the Process, not the Popen: no reference cycle

    def _exited(self) -> bool:
        return self._proc.join(0) is not None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        while True:
            try:
                self._conn.write(chunk, _STUCK_CHECK_S)
                return len(chunk)
            except ChannelFull:
                if self._exited():
                    raise BrokenPipeError(f"{self._conn.name}: the process has exited") from None

    def close(self) -> None:
        """The end of file for the process: it needs room in the pipe, so this waits while the
        process runs and its pipe is full (subprocess's close never waits: its pipe's end of file
        takes no room); none is given to a process that has exited."""
        if not self.closed:
            exited = False
            try:
                while not (exited := self._exited()):
                    try:
                        self._conn.send_eof(_STUCK_CHECK_S)
                        break
                    except ChannelFull:
                        continue
            finally:
                self._conn.close(eof=not exited)
        super().close()


def _argv(args: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], shell: bool) -> list[str]:
    if isinstance(args, (str, bytes, os.PathLike)):
        given = [os.fspath(args)]
    else:
        given = [os.fspath(a) for a in args]
    if not given or not all(isinstance(a, str) for a in given):
        raise InvalidArgument(f"Popen args must be a program (a str) or a non-empty sequence of str, not {args!r}")
    return ["/bin/sh", "-c", *given] if shell else given


def _stdio(stream: str, given: StdArg) -> int | str | None:
    if given is None or isinstance(given, (str, os.PathLike)) or given in (PIPE, STDOUT, DEVNULL):
        return os.fspath(given) if isinstance(given, os.PathLike) else given
    raise InvalidArgument(
        f"Popen {stream}={given!r}: a file or descriptor of this process cannot be handed to a process of "
        "the runtime (Local Services starts it, maybe on another node); pass PIPE, DEVNULL"
        + (", STDOUT" if stream == "stderr" else "")
        + (", or a file path" if stream != "stdin" else "")
        + " (to chain processes, copy from one's stdout to the other's stdin, or run the pipeline with shell=True)"
    )


def _as_os_error(failed: ProcessStartFailed, program: str) -> Exception:
    """The OSError subprocess raises for a program that cannot be started (FileNotFoundError,
    PermissionError...), when Local Services' text names the errno; else the error itself."""
    found = re.search(r"\[Errno (\d+)\] ([^:]*)", str(failed))
    if found is None:
        return failed
    return OSError(int(found.group(1)), found.group(2), program)
