"""The runtime directory of a run: how `dragon status` and `dragon cleanup` find a runtime.

Each run has an id (8 hex digits) and a directory `<root>/<run_id>/`, owner-only (mode 0700), where
`<root>` is `$XDG_RUNTIME_DIR/dragon` when that variable is set, else `/tmp/dragon-<uid>`. It holds
`runtime.json` (a `RunInfo`): the pids of the services, the process group of the runtime and the
descriptors of its infrastructure channels. Local Services writes it once Global Services is up; the
launcher removes the directory at teardown (Local Services does when it tears down alone).
Shared-memory entries of the run are named with `run_prefix(run_id)` (transport/_shm.py).

Safety (issue 13): the root may lie in a directory every user can write (/tmp), so another user may
have made it first, as their own directory or as a symbolic link to any directory at all. The root
is therefore used only if it is a real directory (never followed through a symlink: `O_NOFOLLOW`),
owned by this user; a mode wider than 0700 is narrowed (it is ours). Everything inside is reached
relative to that checked directory's fd (`dir_fd`), never again by path, and created with
`O_NOFOLLOW`/`O_EXCL`, so a symlink planted later is never followed either. `UnsafeRuntimeRoot` says
what is wrong and what to do. Only a directory that `is_run_dir` proves to be a run directory of
this user (named like a run id, a real directory of ours, holding nothing but runtime.json) is ever
removed; removal (`shutil.rmtree` with `dir_fd`) does not follow symlinks.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from typing import Final

import msgspec

from dragon.ids import FIRST_USER_MANAGED_CUID
from dragon.transport import Channel, run_prefix

RUN_ID: Final = re.compile(r"[0-9a-f]{8}")
INFO_FILE: Final = "runtime.json"
_INFO_TMP: Final = INFO_FILE + ".tmp"
REPLY_CHANNEL_TRIES: Final = 8
RMTREE_TRIES: Final = 3
"""How many times `remove_run_dir` tries to remove a run's directory before it reports that it stays."""
_OPEN_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeRuntimeRoot(PermissionError):
    """The runtime root is not a directory of this user's (another user's, or a symlink): refused."""


class RunInfo(msgspec.Struct, kw_only=True):
    """What `runtime.json` says of a running runtime."""

    run_id: str
    launcher_pid: int
    ls_pid: int
    gs_pid: int
    pgid: int
    """Process group of Local Services, Global Services and every managed process."""
    gs_cd: str
    la_cd: str
    shep_cd: str
    started: float
    """Unix time of the start of the run."""
    log_file: str = ""
    inf_pd: str = ""
    """Descriptors of the infrastructure and default pools (their names are not derived: `entry_name`)."""
    default_pd: str = ""
    node_idx: int = 0
    """This node's index in a run of many nodes (0 = the primary, whose GS answers for all)."""
    nodes: int = 1
    """How many nodes the run has."""
    primary_run_id: str = ""
    """On a node other than the primary: the primary node's run id, the run `dragon status` shows
    (each node has its own run id); "" on the primary itself, on a single node, or if not known."""


class StartReport(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The one JSON line a background runtime's launcher (dragon.services.background) writes on its
    control socket for the program that started it (dragon.client.background): the run id, or what failed."""

    run_id: str = ""
    error: str = ""


def new_run_id() -> str:
    return os.urandom(4).hex()  # what secrets.token_hex(4) does, without importing it (hmac, hashlib)


def runtime_root() -> str:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(xdg, "dragon") if xdg else f"/tmp/dragon-{os.getuid()}"


def run_dir(run_id: str) -> str:
    """The path of a run's directory (for messages: the runtime reaches it through `open_root`)."""
    return os.path.join(runtime_root(), run_id)


@contextlib.contextmanager
def open_root(*, create: bool = False) -> Iterator[int]:
    """An fd on the checked runtime root (module docstring), made first with `create`.

    Raises:
      FileNotFoundError: it does not exist (and not `create`).
      UnsafeRuntimeRoot: it is a symlink, not a directory, or another user's.
    """
    root = runtime_root()
    while True:
        try:
            fd = os.open(root, _OPEN_DIR)
            break
        except FileNotFoundError:
            if not create:
                raise
            os.makedirs(os.path.dirname(root), mode=0o700, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # made meanwhile: checked on the next turn
                os.mkdir(root, 0o700)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeRuntimeRoot(
                    f"the runtime directory {root} is a symbolic link or not a directory, so another user may "
                    f"have made it: remove it, or set XDG_RUNTIME_DIR to a directory of yours"
                ) from None
            raise
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid():
            raise UnsafeRuntimeRoot(
                f"the runtime directory {root} belongs to uid {st.st_uid}, not to you: "
                "remove it, or set XDG_RUNTIME_DIR to a directory of yours"
            )
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)  # ours: narrowed, so that nobody else can put anything in it
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _open_run(run_id: str) -> Iterator[int]:
    """An fd on the run's directory, reached without following a symlink (FileNotFoundError if none)."""
    with open_root() as root:
        fd = os.open(run_id, _OPEN_DIR, dir_fd=root)
        try:
            yield fd
        finally:
            os.close(fd)


def create_run_dir(run_id: str) -> str:
    """Make the run's directory (and the root), mode 0700. Raises UnsafeRuntimeRoot (see `open_root`)."""
    with open_root(create=True) as root:
        os.mkdir(run_id, 0o700, dir_fd=root)
    return run_dir(run_id)


def write_info(info: RunInfo) -> None:
    """Write runtime.json atomically (readers see the old file or the new one, never half)."""
    with _open_run(info.run_id) as rundir:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_INFO_TMP, dir_fd=rundir)
        fd = os.open(
            _INFO_TMP, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=rundir
        )
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.json.encode(info))
        os.replace(_INFO_TMP, INFO_FILE, src_dir_fd=rundir, dst_dir_fd=rundir)


def read_info(run_id: str) -> RunInfo | None:
    """The run's RunInfo, or None if it has not been written (yet), is gone, or is not a file of ours."""
    try:
        with _open_run(run_id) as rundir:
            fd = os.open(INFO_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=rundir)
            with os.fdopen(fd, "rb") as f:
                if os.fstat(f.fileno()).st_uid != os.getuid():
                    return None
                return msgspec.json.decode(f.read(), type=RunInfo)
    except (OSError, msgspec.DecodeError):
        return None


def is_run_dir(run_id: str) -> str:
    """ "" if `run_id` under the root is provably a run directory of this user's runtime, else why not:
    named like a run id, a real directory (not a symlink) owned by this user, holding nothing but
    runtime.json (and its temporary file). `dragon cleanup` removes nothing else."""
    if not RUN_ID.fullmatch(run_id):
        return "its name is not a run id"
    try:
        with _open_run(run_id) as rundir:
            if os.fstat(rundir).st_uid != os.getuid():
                return "it is not yours"
            for entry in os.scandir(rundir):
                if entry.name not in (INFO_FILE, _INFO_TMP) or not entry.is_file(follow_symlinks=False):
                    return f"it holds {entry.name!r}, which a runtime never makes"
    except OSError as exc:
        return f"it is not a directory of yours ({exc.strerror or exc})"
    return ""


def remove_run_dir(run_id: str) -> None:
    """Remove a run's directory (never through a symlink); nothing if it is gone or the root is unsafe.

    A removal that fails (a file made in the directory while it was emptied: rmdir's ENOTEMPTY) is
    tried again, up to RMTREE_TRIES times in all; then it is logged as a warning naming the directory
    and what removes it, never raised: the teardown that calls this goes on (it used to pass in
    silence, and a run directory left behind showed up only in `dragon status`)."""
    import shutil  # here only: every managed process imports this module, few remove a run

    error: OSError | None = None
    for _ in range(RMTREE_TRIES):
        try:
            with open_root() as root:
                shutil.rmtree(run_id, dir_fd=root)
            return
        except (FileNotFoundError, UnsafeRuntimeRoot):
            return
        except OSError as exc:
            error = exc
    import logging

    logging.getLogger("dragon.rundir").warning(
        "the run directory %s could not be removed (%s): `dragon cleanup` removes it", run_dir(run_id), error
    )


def channel_name(run_id: str, c_uid: int) -> str:
    """The /dev/shm name of a reply channel a tool that is not a managed process (e.g. `dragon
    status`) makes for itself, with a random c_uid of the user-managed range (2**54 .. 2**55-1):
    the services find it by this name, derived from the c_uid; its randomness makes it unguessable."""
    return f"{run_prefix(run_id)}c{c_uid}"


def user_reply_channel(run_id: str, *, capacity: int, block_size: int) -> tuple[int, Channel]:
    """Make a reply channel for a process the runtime did not start (`dragon status`, an external
    client): a random c_uid of the user-managed range (2**54 .. 2**55-1), so that two tools, or two
    sessions of one reused pid, never share one, under the name the services derive from it
    (`channel_name`). Returns the c_uid (the `r_c_uid` of requests) and the channel, which the
    caller destroys when done (the runtime's teardown removes it otherwise).

    Raises:
      OSError: /dev/shm refused it (FileNotFoundError: the run has ended).
    """
    for _ in range(REPLY_CHANNEL_TRIES):  # a name taken (by chance, or by someone in the way): another
        # secrets.randbelow(2**54), without importing secrets (hmac, hashlib): 54 random bits
        c_uid = FIRST_USER_MANAGED_CUID + (int.from_bytes(os.urandom(7), "little") & (FIRST_USER_MANAGED_CUID - 1))
        try:
            return c_uid, Channel.create(channel_name(run_id, c_uid), capacity=capacity, block_size=block_size)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for a reply channel of run {run_id} in {REPLY_CHANNEL_TRIES} tries")


def entry_name(run_id: str, what: str) -> str:
    """A new /dev/shm name for an object of a run, e.g. `c2` (the GS channel), `m0` (a pool), with a
    random part: /dev/shm can be listed by anyone, and another user who can guess the next name can
    make it first (issue 13), so names are found through descriptors, never derived."""
    return f"{run_prefix(run_id)}{what}.{os.urandom(6).hex()}"
