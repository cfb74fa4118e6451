"""Named POSIX shared-memory entries of a runtime: naming, owner-only creation, attachment, removal.

Every entry a runtime makes in /dev/shm (pool segments, channel rings, channel doorbell FIFOs, side
files of very large messages) is named `dragon.<uid>.<run_id>.<what>`, so that a run's entries can be
found by prefix (teardown, `dragon cleanup`, the test suite's leak check) and never collide with
another user's or another run's. They are created with mode 0600 and `O_EXCL`: a runtime belongs to
its user. /dev/shm is a directory every user may write to and list, so names carry a random part
where another user could otherwise guess them and make them first (`dragon._rundir.entry_name`),
existing entries are opened only if they are this user's (`open_own`), and teardown removes only this
user's entries (`unlink_own`).
On Linux `shm_open(name)` is `open("/dev/shm/name")`, so plain `os.open` is used; this avoids
`multiprocessing.shared_memory`, whose resource tracker unlinks segments behind the runtime's back.
"""

from __future__ import annotations

import errno
import mmap
import os
from typing import Final

SHM_DIR: Final = "/dev/shm"
SHM_PREFIX: Final = "dragon."


def user_prefix(uid: int | None = None) -> str:
    """The prefix of every /dev/shm entry of the current user's runtimes."""
    return f"{SHM_PREFIX}{os.getuid() if uid is None else uid}."


def run_prefix(run_id: str) -> str:
    """The prefix of every /dev/shm entry of one runtime."""
    return f"{user_prefix()}{run_id}."


def shm_path(name: str) -> str:
    """The file system path of a shared-memory entry named `name` (a bare name, no slash)."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid shared-memory name {name!r}: use a bare name without '/'")
    return os.path.join(SHM_DIR, name)


def create_segment(name: str, size_bytes: int, *, reserve_bytes: int | None = None) -> tuple[int, mmap.mmap]:
    """Create a new segment of `size_bytes` (mode 0600) and map it; fails if the name exists.

    Returns the open fd (kept for locking) and the shared mapping. The first `reserve_bytes` (all of
    it if None) are reserved now (`reserve`); tmpfs gives the rest of the pages on first write.

    Raises:
      FileExistsError: the name is taken.
      NoSharedMemory: /dev/shm has not the room to reserve.
    """
    if size_bytes <= 0:
        raise ValueError(f"segment size must be positive, not {size_bytes}")
    fd = os.open(shm_path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size_bytes)
        reserve(fd, 0, size_bytes if reserve_bytes is None else min(reserve_bytes, size_bytes))
        return fd, mmap.mmap(fd, size_bytes)
    except BaseException:
        os.close(fd)
        unlink_quietly(name)
        raise


def reserve(fd: int, offset: int, length: int) -> None:
    """Give the pages of [offset, offset+length) of a segment now (`posix_fallocate`).

    tmpfs gives a page of a shared file when it is first touched, and when /dev/shm is full the
    touch kills the process with SIGBUS, wherever it happens (any user can fill /dev/shm). Reserved
    pages are there: running out is this call's error, said where the memory was asked for.

    Raises:
      NoSharedMemory: /dev/shm has not the room (the text gives the sizes).
    """
    try:
        os.posix_fallocate(fd, offset, length)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise NoSharedMemory(length) from None


class NoSharedMemory(OSError):
    """/dev/shm has not the room for what was asked; the text says how much was needed and is free."""

    def __init__(self, needed: int) -> None:
        free, total = shm_space()
        super().__init__(
            errno.ENOSPC,
            f"not enough shared memory: {_size(needed)} needed, /dev/shm has "
            f"{_size(free)} free of {_size(total)} (free some: `dragon cleanup` removes what "
            "crashed runs left; or make /dev/shm larger)",
        )
        self.needed, self.free = needed, free

    def __str__(self) -> str:
        return str(self.strerror)


def shm_space() -> tuple[int, int]:
    """(free, total) bytes of /dev/shm for this user."""
    st = os.statvfs(SHM_DIR)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def open_own(name: str, flags: int = os.O_RDWR) -> int:
    """Open an existing entry of this user's, never through a symlink (module docstring).

    Raises FileNotFoundError if it does not exist (any more), PermissionError if it is another user's."""
    fd = os.open(shm_path(name), flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    if os.fstat(fd).st_uid != os.getuid():
        os.close(fd)
        raise PermissionError(errno.EPERM, f"/dev/shm/{name} belongs to another user: refused")
    return fd


def attach_segment(name: str) -> tuple[int, mmap.mmap]:
    """Map an existing segment of this user's whole; FileNotFoundError if it does not exist (any more)."""
    fd = open_own(name)
    try:
        return fd, mmap.mmap(fd, os.fstat(fd).st_size)
    except BaseException:
        os.close(fd)
        raise


def unlink_own(name: str) -> bool:
    """Remove a shared-memory entry if it is this user's; True if it did. An entry of another user's
    that happens to carry one of our names (made there to get in our way: issue 13) is left alone, and
    never an error: a teardown must not fail on an entry it did not make."""
    path = shm_path(name)
    try:
        if os.lstat(path).st_uid != os.getuid():
            return False
        os.unlink(path)
    except (FileNotFoundError, PermissionError):
        return False
    return True


def unlink_quietly(name: str) -> bool:
    """Remove a shared-memory entry; True if it existed. Mappings and fds already open stay valid."""
    try:
        os.unlink(shm_path(name))
    except FileNotFoundError:
        return False
    return True


def entries(prefix: str) -> list[str]:
    """Names of the /dev/shm entries that start with `prefix`, sorted; a named POSIX semaphore whose
    name does (its entry is ``sem.<name>``: a synchronization object's, see `records`) counts too."""
    sem_prefix = "sem." + prefix
    try:
        return sorted(n for n in os.listdir(SHM_DIR) if n.startswith((prefix, sem_prefix)))
    except FileNotFoundError:
        return []
