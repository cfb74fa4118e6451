"""Worker processes for the shared-memory channel tests, plus the helpers the tests share with them.

Run as ``python channel_worker.py MODE ARGS...``; each mode is one function below, named ``mode_*``. Workers
use only the blocking face (`Channel`) and never import trio, so they start fast. They tell the test
that they are ready with a line on stdout and report results as one JSON line on stdout. A worker
that catches ChannelDestroyed exits with `EXIT_DESTROYED`, so a test can tell that ending apart from a
crash. The test files import this module for `pack`/`unpack` and the `Worker` helper.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import random
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

from dragon.transport import Channel, ChannelDestroyed
from dragon.transport._shm import shm_path

EXIT_DESTROYED = 17  # a worker caught ChannelDestroyed
EXIT_CORRUPT = 3  # a worker received a message whose checksum did not match
WORKER = os.path.abspath(__file__)

_HDR = struct.Struct("<IQ")  # sender id, sequence number
_POOL = random.Random(0).randbytes(1 << 20)  # payloads are slices of this, at random offsets


def pack(sender: int, seq: int, payload: bytes | memoryview) -> bytes:
    """A test message: (sender, seq) header, payload, crc32 of both."""
    body = b"".join((_HDR.pack(sender, seq), payload))
    return body + zlib.crc32(body).to_bytes(4, "little")


def unpack(msg: bytes) -> tuple[int, int, int]:
    """(sender, seq, payload length) of a test message; ValueError if it is damaged."""
    if len(msg) < _HDR.size + 4:
        raise ValueError(f"message of {len(msg)} bytes is too short to be a test message")
    body, crc = msg[:-4], int.from_bytes(msg[-4:], "little")
    if zlib.crc32(body) != crc:
        raise ValueError(f"checksum mismatch in a message of {len(msg)} bytes")
    sender, seq = _HDR.unpack_from(body)
    return sender, seq, len(body) - _HDR.size


def payload(rng: random.Random, size: int) -> memoryview:
    """`size` pseudo-random bytes (a slice of a fixed random pool, at a random offset)."""
    size = min(size, len(_POOL))
    off = rng.randrange(len(_POOL) - size + 1)
    return memoryview(_POOL)[off : off + size]


def log_uniform(rng: random.Random, lo: int, hi: int) -> int:
    """An integer in [lo, hi] whose logarithm is uniform: many small values, a few large ones."""
    return min(hi, int(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))))


# ------------------------------------------------------------------------------------- test side


class Worker:
    """A worker process seen from a (synchronous) test: read lines with a deadline, kill, reap."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, bufsize=0
        )
        self._buf = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def line(self, timeout: float) -> str:
        """The next line the worker prints; TimeoutError after `timeout` s, EOFError if it exited."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"worker {self.args} printed no line within {timeout} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError(f"worker {self.args} exited (rc={self.proc.wait(timeout)})")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def expect(self, want: str, timeout: float) -> None:
        got = self.line(timeout)
        assert got == want, f"worker said {got!r}, expected {want!r}"

    def kill(self) -> None:
        """SIGKILL and reap (a zombie still counts as alive for the channel's waiter table)."""
        if self.proc.returncode is None:
            self.proc.kill()
        self.proc.wait(30)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        self.kill()
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def poll_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Bounded poll for a state no event announces (e.g. a waiter registered in another process)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.005)


# ------------------------------------------------------------------------------------- worker side


def _say(*words: object) -> None:
    sys.stdout.write(" ".join(map(str, words)) + "\n")
    sys.stdout.flush()


def mode_stress_send(name: str, sender: str, count: str, seed: str) -> None:
    """Send `count` test messages with log-uniform payload sizes, 1 B .. 256 KiB."""
    rng = random.Random(f"{seed}:{sender}")
    with Channel.attach(name) as ch:
        for seq in range(int(count)):
            ch.send(pack(int(sender), seq, payload(rng, log_uniform(rng, 1, 256 * 1024))))


def mode_stress_recv(name: str, receiver: str) -> None:
    """Receive test messages until an empty one (the sentinel); report them as JSON."""
    got: list[tuple[int, int]] = []
    bad: list[str] = []
    nbytes = 0
    with Channel.attach(name) as ch:
        while (msg := ch.recv()) != b"":
            nbytes += len(msg)
            try:
                sender, seq, _ = unpack(msg)
            except ValueError as exc:
                bad.append(str(exc))
                continue
            got.append((sender, seq))
    _say(json.dumps({"receiver": int(receiver), "got": got, "bad": bad, "bytes": nbytes}))


def mode_flood_send(name: str, seed: str) -> None:
    """Send test messages (inline and side-file sized) forever; says "ready" after the first."""
    rng = random.Random(seed)
    with Channel.attach(name) as ch:
        big = 3 * ch.ring_bytes
        for seq in range(1 << 62):
            ch.send(pack(1, seq, payload(rng, rng.choice((rng.randrange(big), rng.randrange(256))))))
            if seq == 0:
                _say("ready")


def mode_flood_recv(name: str) -> None:
    """Receive and check test messages forever; exits EXIT_CORRUPT on a damaged one."""
    with Channel.attach(name) as ch:
        _say("ready")
        while True:
            try:
                unpack(ch.recv())
            except ValueError as exc:
                print(f"flood-recv: {exc}", file=sys.stderr)
                sys.exit(EXIT_CORRUPT)


def mode_hold_locks(name: str) -> None:
    """Take the channel's send and receive locks (flock on the doorbell FIFOs) and block forever."""
    fds = [os.open(shm_path(name + s), os.O_RDWR | os.O_NONBLOCK) for s in (".sbell", ".rbell")]
    for fd in fds:
        fcntl.flock(fd, fcntl.LOCK_EX)
    _say("locked")
    while True:
        signal.pause()


def mode_lease(name: str, side: str) -> None:
    """Lease one direction's lock (`Channel.lease_lock`), do one operation of it (receive one
    message, or send b"leased"), say whether the lease was taken, then idle (no more operations)
    until killed: only the lease watcher thread can give the lease up."""
    ch = Channel.attach(name)
    ch.lease_lock(side)
    _say("ready")
    if side == "recv":
        ch.recv()
    else:
        ch.send(b"leased")
    _say("leased", bool(ch._leased))
    while True:
        signal.pause()


def mode_recv_one(name: str) -> None:
    """Block in recv() once; print the message in hex, or exit EXIT_DESTROYED."""
    with Channel.attach(name) as ch:
        _say("ready")
        try:
            msg = ch.recv()
        except ChannelDestroyed:
            sys.exit(EXIT_DESTROYED)
        _say("got", msg.hex())


def mode_send_one(name: str, size: str) -> None:
    """Block in send() of one message of `size` bytes; exit 0 once sent, or EXIT_DESTROYED."""
    with Channel.attach(name) as ch:
        _say("ready")
        try:
            ch.send(b"s" * int(size))
        except ChannelDestroyed:
            sys.exit(EXIT_DESTROYED)


def mode_send_each(count: str, *names: str) -> None:
    """Send `count` messages b"<channel index>:<i>" to each of the named channels."""
    chans = [Channel.attach(n) for n in names]
    try:
        for i in range(int(count)):
            for k, ch in enumerate(chans):
                ch.send(f"{k}:{i}".encode())
    finally:
        for ch in chans:
            ch.close()


def mode_echo(name_in: str, name_out: str, pings: str, stream: str) -> None:
    """Interop partner of a trio test: echo `pings` messages one by one, then receive `stream`
    messages while a thread sends `stream` others, checking everything; reports JSON."""
    errors: list[str] = []
    with Channel.attach(name_in) as rx, Channel.attach(name_out) as tx:
        for i in range(int(pings)):
            msg = rx.recv(timeout=60)
            if unpack(msg)[:2] != (0, i):
                errors.append(f"ping {i}: got {unpack(msg)[:2]}")
            tx.send(msg)

        def send_stream() -> None:
            srng = random.Random(11)
            for i in range(int(stream)):
                tx.send(pack(1, i, payload(srng, log_uniform(srng, 1, 3 * tx.ring_bytes))), timeout=60)

        sender = threading.Thread(target=send_stream)
        sender.start()
        for i in range(int(stream)):
            try:
                got = unpack(rx.recv(timeout=60))
            except ValueError as exc:
                errors.append(f"stream {i}: {exc}")
                continue
            if got[:2] != (0, pings_i := int(pings) + i):
                errors.append(f"stream {i}: got {got[:2]}, expected (0, {pings_i})")
        sender.join()
    _say(json.dumps({"errors": errors}))


def mode_crash_points(name: str, direction: str, size: str) -> None:
    """SIGKILL a forked process at every bytecode boundary of the channel code during one send (or
    one recv), one boundary per fork, and check after each crash that the channel is consistent:
    the message is either fully in the channel or not at all, `depth` agrees with what recv delivers,
    and a message still goes through. Reports JSON: crash points tried, first violation found."""
    import linecache
    import traceback
    import types

    from dragon.transport import _channel, _core, _layout, _leases, _ring, _side_files, _waiting

    core_files = {m.__file__ for m in (_channel, _core, _layout, _leases, _ring, _side_files, _waiting)}

    msg = bytes(range(256)) * (int(size) // 256) + b"!" * (int(size) % 256)
    ch = Channel.attach(name)
    points = 0
    for k in range(1, 1_000_000):
        if direction == "recv":
            ch.send(msg, timeout=10)
        pid = os.fork()
        if pid == 0:  # the victim: its own handle (an inherited fd would share the flocks)
            mine = Channel.attach(name)
            seen = 0

            def opcode(frame: types.FrameType, event: str, arg: object) -> Any:
                nonlocal seen
                if event == "opcode":
                    seen += 1
                    if seen == k:  # noqa: B023 (the victim is this iteration's child: it never loops again)
                        code = frame.f_code
                        line = linecache.getline(code.co_filename, frame.f_lineno or 0).strip()
                        os.write(1, f"at {code.co_name}:{frame.f_lineno} {line}\n".encode())
                        os.kill(os.getpid(), signal.SIGKILL)
                return opcode

            def calls(frame: types.FrameType, event: str, arg: object) -> Any:
                if frame.f_code.co_filename not in core_files:
                    return None
                frame.f_trace_opcodes = True
                return opcode

            sys.settrace(calls)
            try:
                mine.send(msg, timeout=0) if direction == "send" else mine.recv(timeout=0)
            except BaseException:
                sys.settrace(None)
                traceback.print_exc()
                os._exit(99)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        if rc == 0:
            break  # the operation completed before reaching crash point k: all points tried
        if rc != -signal.SIGKILL:
            _say(json.dumps({"points": points, "violation": f"the {direction} failed (exit {rc}, see stderr)"}))
            return
        points += 1
        problem = None
        depth = ch.statistics().depth
        try:
            got: bytes | None = ch.recv_nowait()
        except Exception:
            got = None
        if got is not None and got != msg:
            problem = f"received a damaged message of {len(got)} bytes"
        elif depth != (got is not None):
            problem = f"depth was {depth} but recv_nowait {'got' if got else 'found no'} message"
        else:
            try:
                ch.send_nowait(b"probe")
                if ch.recv_nowait() != b"probe":
                    problem = "the probe message came back wrong"
            except Exception as exc:
                problem = f"the channel no longer works: {exc!r}"
        s = ch.statistics()
        if problem is None and (s.depth, s.bytes_used, s.blocked_receivers, s.blocked_senders) != (0, 0, 0, 0):
            problem = f"empty channel reports {s}"
        if problem is not None:
            _say(
                json.dumps(
                    {
                        "points": points,
                        "violation": f"killed {k} bytecodes into {direction}: "
                        f"{problem} (the crash point is on the previous stdout line)",
                    }
                )
            )
            return
    ch.close()
    _say(json.dumps({"points": points, "violation": None}))


def main() -> None:
    mode, *args = sys.argv[1:]
    globals()["mode_" + mode.replace("-", "_")](*args)


if __name__ == "__main__":
    main()
