"""Finding this user's runtimes and telling live ones from dead ones (for `dragon status`, `dragon cleanup`).

Read-only helpers over three sources: the runtime directories (`dragon._rundir`), the /dev/shm entries
(`dragon.<uid>.<run_id>.*`, transport/_shm.py) and /proc. Nothing here changes anything.

When is a run live? (spec §8; issue #6.) A run is *live* if any of these holds, checked in this order:

1. its runtime.json names a launcher or Local Services pid that is running, belongs to this user, and
   is really that process: it started no later than the run's `started` time (plus `START_SLACK_S`
   for the 1-tick resolution of /proc and clock adjustments), so a recycled pid does not count;
2. its runtime directory has no runtime.json yet and is younger than `STARTING_GRACE_S`: the launcher
   makes the directory before Local Services exists, so a run being brought up looks like this;
3. one of its /dev/shm entries is mapped or open in a running process of this user other than the run's
   own leftover processes (those whose environment has DRAGON_RUN_ID=<run_id>): Local Services and
   Global Services map the run's pools and channels for their whole life, so this recognises a live
   runtime even when its directory lives under another runtime root (another XDG_RUNTIME_DIR).

Otherwise the run is dead: whatever it left (directory, /dev/shm entries, processes) is garbage.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from dragon import _rundir
from dragon.transport import SHM_DIR, entries, pid_alive, user_prefix

START_SLACK_S: Final = 2.0
"""How much later than the run's `started` its launcher/LS may seem to have started (clock resolution)."""
STARTING_GRACE_S: Final = 10.0
"""A runtime directory without runtime.json younger than this is a run still being brought up."""
RUN_ID_VAR: Final = "DRAGON_RUN_ID"

_CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")

STATE_WORDS: Final = {
    "R": "running",
    "S": "sleeping",
    "D": "disk-wait",
    "T": "stopped",
    "t": "traced",
    "Z": "zombie",
    "X": "dead",
    "I": "idle",
    "P": "parked",
    "W": "paging",
}


@dataclass(frozen=True)
class ProcInfo:
    """What /proc says of one process right now."""

    pid: int
    uid: int
    state: str
    """The one-letter state of /proc/<pid>/stat (R, S, D, T, Z, ...); `STATE_WORDS` spells it out."""
    ppid: int
    pgid: int
    start_time: float
    """Unix time at which the process started (resolution: one clock tick)."""
    cpu_s: float
    """User + system CPU time of the process itself (not of its reaped children)."""
    rss_bytes: int
    cmdline: list[str]

    @property
    def running(self) -> bool:
        """Not a zombie (exited, not yet reaped) nor dead."""
        return self.state not in ("Z", "X")


def boot_time() -> float:
    """Unix time of the boot, from /proc/stat (the origin of the start times in /proc/<pid>/stat)."""
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    raise OSError("/proc/stat has no btime line")


def read_proc(pid: int, *, btime: float | None = None) -> ProcInfo | None:
    """The process `pid` as /proc shows it, or None if there is no such process (any more).

    Never raises for a process that vanishes while it is read; a kernel thread has an empty cmdline.
    """
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw_cmd = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name in parentheses may hold spaces and parentheses: split after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    start = (boot_time() if btime is None else btime) + int(fields[19]) / _CLK_TCK
    cmd = [part.decode(errors="replace") for part in raw_cmd.split(b"\0")[:-1]] if raw_cmd else []
    return ProcInfo(
        pid=pid,
        uid=uid,
        state=fields[0],
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        start_time=start,
        cpu_s=ticks / _CLK_TCK,
        rss_bytes=int(fields[21]) * _PAGE_SIZE,
        cmdline=cmd,
    )


def all_processes() -> Iterator[ProcInfo]:
    """Every process /proc shows now (those that vanish while being read are skipped)."""
    btime = boot_time()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = read_proc(int(entry), btime=btime)
            if info is not None:
                yield info


def own_pids() -> list[int]:
    """Pids of every process of this user (by the owner of /proc/<pid>), this one excluded."""
    me, uid = os.getpid(), os.getuid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except FileNotFoundError:
                continue
    return found


def environ_run_id(pid: int) -> str | None:
    """DRAGON_RUN_ID of `pid`'s environment (as it was at its exec), or None if unset or unreadable."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return None
    key = RUN_ID_VAR.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(key):
            return item[len(key) :].decode(errors="replace")
    return None


def run_id_of_entry(name: str, uid: int | None = None) -> str | None:
    """The run id in a /dev/shm name `dragon.<uid>.<run_id>.<what>` of this user, else None."""
    prefix = user_prefix(uid)
    name = name.removeprefix("sem.")  # a synchronization object's semaphore (`transport.entries`)
    if not name.startswith(prefix):
        return None
    run_id, dot, _ = name[len(prefix) :].partition(".")
    return run_id if dot and run_id else None


def shm_holders(pids: list[int]) -> dict[str, set[int]]:
    """For each run id, the pids among `pids` that map or hold open one of its /dev/shm entries.

    Reads /proc/<pid>/maps (pools and channel rings are mapped) and /proc/<pid>/fd (channel doorbell
    FIFOs are kept open). A process that vanishes meanwhile is skipped.
    """
    marker = os.path.join(SHM_DIR, user_prefix())
    held: dict[str, set[int]] = {}

    def note(path: str, pid: int) -> None:
        if path.startswith(marker):
            run_id = run_id_of_entry(os.path.basename(path.split(" ")[0]))
            if run_id:
                held.setdefault(run_id, set()).add(pid)

    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps", "rb") as f:
                for line in f:
                    if marker.encode() in line:
                        note(line.decode(errors="replace").split(None, 5)[-1].strip(), pid)
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    note(os.readlink(f"/proc/{pid}/fd/{fd}"), pid)
                except OSError:
                    continue
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return held


def same_process(pid: int, started: float, *, btime: float | None = None) -> ProcInfo | None:
    """`pid` if it runs, is ours and started no later than `started` (+ slack): the one a run recorded."""
    info = read_proc(pid, btime=btime)
    if info is None or not info.running or info.uid != os.getuid():
        return None
    return info if info.start_time <= started + START_SLACK_S else None


@dataclass
class Run:
    """One run id of this user, as found in the runtime root, /dev/shm and /proc."""

    run_id: str
    directory: str | None = None
    """Its runtime directory, if it has one under this runtime root (owned by this user)."""
    info: _rundir.RunInfo | None = None
    shm: list[str] = field(default_factory=list)
    """Its /dev/shm entry names, owned by this user."""
    processes: list[int] = field(default_factory=list)
    """Running processes of this user whose environment has DRAGON_RUN_ID=<run_id>."""
    live_reason: str | None = None
    """Why the run counts as live (see the module docstring), or None if it is dead."""


def list_run_dirs() -> list[str]:
    """Run ids with a directory of this user's under the runtime root (named like a run id, a real
    directory owned by this user), sorted; none if there is no root.

    Raises:
      _rundir.UnsafeRuntimeRoot: the root is not this user's directory (a symlink, another's): its
        contents say nothing about this user's runs.
    """
    uid = os.getuid()
    try:
        with _rundir.open_root() as root:
            return sorted(
                entry.name
                for entry in os.scandir(root)
                if _rundir.RUN_ID.fullmatch(entry.name)
                and entry.is_dir(follow_symlinks=False)
                and entry.stat(follow_symlinks=False).st_uid == uid
            )
    except FileNotFoundError:
        return []


def live_reason_from_info(info: _rundir.RunInfo, *, btime: float | None = None) -> str | None:
    """Rule 1 of the module docstring: why `info`'s runtime is live, or None."""
    for what, pid in (("launcher", info.launcher_pid), ("Local Services", info.ls_pid)):
        if same_process(pid, info.started, btime=btime) is not None:
            return f"its {what} (pid {pid}) is running"
    return None


def survey(*, with_processes: bool = True) -> dict[str, Run]:
    """Every run id of this user with what it has, and whether it is live (module docstring).

    `with_processes=False` skips the /proc scan (environments and mappings), so liveness then rests
    on rules 1 and 2 only: enough for `dragon status`, which only looks for live runtimes.
    """
    uid = os.getuid()
    btime = boot_time()
    runs: dict[str, Run] = {}
    for run_id in list_run_dirs():
        runs[run_id] = Run(run_id, directory=_rundir.run_dir(run_id), info=_rundir.read_info(run_id))
    if with_processes:
        for name in entries(user_prefix()):
            entry_run = run_id_of_entry(name)
            try:
                owned = os.lstat(os.path.join(SHM_DIR, name)).st_uid == uid
            except FileNotFoundError:
                continue
            if entry_run and owned:
                runs.setdefault(entry_run, Run(entry_run)).shm.append(name)
        pids = own_pids()
        me_and_parents = _ancestors()
        env_of: dict[int, str] = {}
        for pid in pids:
            env_run = environ_run_id(pid)
            if env_run is not None and pid not in me_and_parents:
                if pid_alive(pid):
                    env_of[pid] = env_run
                    runs.setdefault(env_run, Run(env_run)).processes.append(pid)
        holders = shm_holders(pids)
    now = time.time()
    for run in runs.values():
        if run.info is not None:
            run.live_reason = live_reason_from_info(run.info, btime=btime)
        elif run.directory is not None:
            try:
                age = now - os.stat(run.directory).st_mtime
            except FileNotFoundError:
                age = STARTING_GRACE_S
            if age < STARTING_GRACE_S:
                run.live_reason = "it is being brought up (no runtime.json yet)"
        if run.live_reason is None and with_processes:
            users = sorted(p for p in holders.get(run.run_id, set()) if env_of.get(p) != run.run_id)
            if users:
                run.live_reason = f"its shared memory is in use by pid {', '.join(map(str, users))}"
    return runs


def _ancestors() -> set[int]:
    """This process and its ancestors: never candidates for killing, whatever their environment says."""
    found, pid = set(), os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        info = read_proc(pid)
        if info is None:
            break
        pid = info.ppid
    return found
