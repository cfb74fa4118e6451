"""File descriptors a child of the "dragon" start method unpickles (spec §7.3): handed over at its start.

Under "spawn" a Connection end or a shared-ctypes arena pickled for a child (`reduction.DupFd`) is
an fd the child inherits: the spawning popen lists it (`duplicate_for_child`) and the child finds it
under the same number. A child of "dragon" is started by Local Services and inherits nothing from
its parent, so `DragonPopen` collects those fds here (`FdHandoff`) and passes them over a unix
socket (SCM_RIGHTS) that the child connects to before it unpickles anything (`receive`); the
pickled `ParentFd` then names its fd by its place in that list.

Why not `multiprocessing.resource_sharer` (what the stdlib uses for fds pickled outside spawning):
its listener, a socket file with a background thread, stays for the rest of the parent's life, with
a `util.Finalize` registered for it, which the parent never asked for (CPython's `test_finalize`
sees it), and each fd costs the child a connection with an authentication exchange. Here one
connection carries every fd, and nothing is left once the child has them.

The listener is in Linux's abstract namespace (no file to remove, gone with its fd) under a random
name; since any local process could connect to it, the fds go only to a peer whose pid
(SO_PEERCRED) is the child's. `DragonPopen` waits for the child to take them, or to die, before
`Process.start()` returns: like spawn's inheritance, the child has them whatever the parent does next.
That wait is the child's start-up until its first instruction (figures in the README).
"""

from __future__ import annotations

import os
import select
import socket
import struct
from typing import Final

_PEERCRED: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid
_received: list[int] = []
"""In a child: the fds its parent handed over, by index (-1 once taken by `ParentFd.detach`)."""


class ParentFd:
    """What `reduction.DupFd` pickles for a child of "dragon": the index of an fd of the hand-over."""

    def __init__(self, index: int) -> None:
        self.index = index

    def detach(self) -> int:
        """The fd, in the child; it belongs to the caller (only once)."""
        fd = _received[self.index]
        if fd < 0:
            raise RuntimeError(f"fd {self.index} of the parent's hand-over was taken already")
        _received[self.index] = -1
        return fd


class FdHandoff:
    """The parent's side: copies of the fds to hand to one child, and the listener to hand them over."""

    def __init__(self) -> None:
        self.fds: list[int] = []
        self._listener: socket.socket | None = None

    def add(self, fd: int) -> int:
        """Keep a copy of `fd` for the child (the caller may close its own); returns its index."""
        self.fds.append(os.dup(fd))
        return len(self.fds) - 1

    def listen(self) -> tuple[str, int] | None:
        """Open the listener if there are fds to hand over: (address, number of fds) for the child."""
        if not self.fds:
            return None
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address = f"\0dragon-fds-{os.getpid()}-{os.urandom(8).hex()}"
        try:
            listener.bind(address)
            listener.listen()
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        return address, len(self.fds)

    def serve(self, pid: int, sentinel: int) -> None:
        """Send the fds to process `pid` once it connects; return early if it exits first (`sentinel`
        becomes readable)."""
        listener = self._listener
        if listener is None:
            return
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        poller.register(sentinel, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if listener.fileno() in ready:
                conn, _ = listener.accept()
                with conn:
                    peer, uid, _ = _PEERCRED.unpack(
                        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
                    )
                    if (peer, uid) == (pid, os.getuid()):
                        try:
                            socket.send_fds(conn, [b"f"], self.fds)
                        except OSError:  # it died after connecting
                            pass
                        return
            elif sentinel in ready:
                return  # the child died before taking them

    def close(self) -> None:
        """Close the listener and the copies (the child has its own, or will never need them)."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


class FdOnAnotherNode(RuntimeError):
    """A child started on another node than its parent was handed file descriptors (issue 17)."""


def receive(address: str, count: int, parent_node: str = "") -> None:
    """In the child, before unpickling: take the `count` fds the parent (on node `parent_node`, ""
    if not said) hands over at `address`. FdOnAnotherNode, naming both nodes, if the parent runs on
    another node: an fd means nothing off its node (under virtual nodes of one machine it would
    even work, by accident)."""
    here = os.environ.get("DRAGON_INDEX", "")
    if parent_node and here and parent_node != here:
        raise FdOnAnotherNode(
            f"this process runs on node {here} and its parent, on node {parent_node}, passed it {count} file "
            "descriptor(s) (a multiprocessing.connection Connection or socket of the standard library, or an "
            "object pickled with multiprocessing.reduction.DupFd): file descriptors cannot cross nodes; start "
            f"this process on node {parent_node} (dragon.native.Policy(node={parent_node})) or send the data "
            "through a Queue or Pipe of the start method"
        )
    _received[:] = take(address, count)


def take(address: str, count: int) -> list[int]:
    """The `count` fds a `FdHandoff` hands over at `address` (this process must be the one it serves)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(address)
        _, fds, flags, _ = socket.recv_fds(conn, 1, count, socket.MSG_CMSG_CLOEXEC)
    if len(fds) != count or flags & socket.MSG_CTRUNC:
        for fd in fds:
            os.close(fd)
        raise RuntimeError(
            f"dragon: the parent handed over {len(fds)} of the {count} file descriptors this process needs"
        )
    return fds
