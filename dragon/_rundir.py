"""The runtime directory of a run: how `dragon status` and `dragon cleanup` find a runtime.

Each run has an id (8 hex digits) and a directory `<root>/<run_id>/`, owner-only (mode 0700), where
`<root>` is `$XDG_RUNTIME_DIR/dragon` when that variable is set, else `/tmp/dragon-<uid>`. It holds
`runtime.json` (a `RunInfo`): the pids of the services, the process group of the runtime and the
descriptors of its infrastructure channels. Local Services writes it once Global Services is up; the
launcher removes the directory at teardown (Local Services does when it tears down alone).
Shared-memory entries of the run are named with `run_prefix(run_id)` (transport/_shm.py).
"""

from __future__ import annotations

import os

import msgspec

from dragon.transport._shm import run_prefix


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


def new_run_id() -> str:
    return os.urandom(4).hex()  # what secrets.token_hex(4) does, without importing it (hmac, hashlib)


def runtime_root() -> str:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(xdg, "dragon") if xdg else f"/tmp/dragon-{os.getuid()}"


def run_dir(run_id: str) -> str:
    return os.path.join(runtime_root(), run_id)


def create_run_dir(run_id: str) -> str:
    """Make the run's directory (and the root), mode 0700; refuse a root owned by someone else."""
    root = runtime_root()
    os.makedirs(root, mode=0o700, exist_ok=True)
    st = os.stat(root)
    if st.st_uid != os.getuid():
        raise PermissionError(f"{root} belongs to uid {st.st_uid}, not to you; remove it or set XDG_RUNTIME_DIR")
    path = run_dir(run_id)
    os.mkdir(path, 0o700)
    return path


def write_info(info: RunInfo) -> None:
    """Write runtime.json atomically (readers see the old file or the new one, never half)."""
    path = os.path.join(run_dir(info.run_id), "runtime.json")
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(msgspec.json.encode(info))
    os.replace(tmp, path)


def read_info(run_id: str) -> RunInfo | None:
    """The run's RunInfo, or None if it has not been written (yet) or is gone."""
    try:
        with open(os.path.join(run_dir(run_id), "runtime.json"), "rb") as f:
            return msgspec.json.decode(f.read(), type=RunInfo)
    except (FileNotFoundError, NotADirectoryError, msgspec.DecodeError):
        return None


def remove_run_dir(run_id: str) -> None:
    import shutil  # here only: every managed process imports this module, few remove a run

    shutil.rmtree(run_dir(run_id), ignore_errors=True)


def channel_name(run_id: str, c_uid: int) -> str:
    """The /dev/shm name of channel `c_uid` of a run. A tool that is not a managed process (e.g.
    `dragon status`) makes its reply channel under this name with a c_uid of the user-managed range
    (2**54 .. 2**55-1), and GS finds it by the name."""
    return infra_name(run_id, f"c{c_uid}")


def infra_name(run_id: str, what: str) -> str:
    """The /dev/shm name of an infrastructure object of a run, e.g. `c2` (GS channel), `m0` (pool)."""
    return run_prefix(run_id) + what
