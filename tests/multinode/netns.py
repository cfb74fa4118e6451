"""Isolated virtual nodes on one machine for the multi-node tests (MULTINODE.md §9). Needs root and `ip`.

A `VirtualCluster` of N nodes is: one network namespace per node (`dnt<tag>-<i>`, lo up, `eth0` with
10.a.b.(i+1)/24), one "switch" namespace (`dnt<tag>-sw`) holding the bridge that joins the nodes' veth
pairs, and one directory per node that becomes that node's /dev/shm. The root namespace's network is
never touched (every link is made inside the switch namespace), nodes have no route but their own /24,
so nothing sent inside a node can leave the namespaces. `wrap(i)` is the argv prefix that runs a command
inside node i: `ip netns exec` gives it node i's network and a fresh mount namespace whose mounts do not
propagate to the host, in which node i's directory is bind-mounted on /dev/shm. Every process of node i
thus sees the same /dev/shm, and no node sees another's (or the host's).

Each node's directory `<root>/node<i>/shm` is a tmpfs of its own (shared memory stays in memory, as on
a real node), mounted on the host in the cluster's temporary directory `<root>` (`/tmp/dnt<tag>.*`): the
same path on the host and inside every node, so a command in node 0 can wrap one for node 1 (as `dragon`
run in node 0 starts node 1's backend). Only the network and /dev/shm are private to a node: files, pids
and users are shared with the host.

Cleanup (`close`, run by `__exit__`, at interpreter exit, and on SIGTERM turned into KeyboardInterrupt)
kills every process in the namespaces, deletes them (their links go with them), unmounts the tmpfs
and removes the directory. A run killed outright leaves them behind: `sweep_stale` removes those at the next session.
Each cluster holds an flock on its claim file in CLAIM_DIR while it lives, so a sweep never touches a
cluster whose owner is alive (another test session on this machine).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import types
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Final

NETNS_DIR: Final = Path("/run/netns")  # where `ip netns add` pins namespaces
CLAIM_DIR: Final = Path("/run/dragon-test-netns")
NAME_RE: Final = re.compile(r"^dnt([0-9a-f]{6})-(?:sw|\d+)$")
"""Names of the namespaces this harness makes; `sweep_stale` touches no other."""
KILL_TIMEOUT_S: Final = 10.0  # how long killed processes may take to leave their namespace
MAX_NODES: Final = 200
POLL_S: Final = 0.01
# Runs the command after `$0` is bind-mounted on /dev/shm (in the mount namespace `ip netns exec` made).
SHM_SCRIPT: Final = 'mount --bind "$0" /dev/shm && exec "$@"'


def unavailable() -> str | None:
    """Why virtual clusters cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "virtual nodes need root (network and mount namespaces); CI runs as root"
    if shutil.which("ip") is None:
        return "virtual nodes need the `ip` command (Debian package iproute2)"
    return None


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"`{shlex.join(argv)}` failed: {proc.stderr.strip()}")


def ns_pids(name: str) -> list[int]:
    """Pids of the processes in network namespace `name` (what `ip netns pids` prints); [] if it is gone."""
    try:
        st = os.stat(NETNS_DIR / name)
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ns = os.stat(f"/proc/{entry}/ns/net")
            except OSError:  # exited, or a zombie (which holds no namespace)
                continue
            if (ns.st_dev, ns.st_ino) == (st.st_dev, st.st_ino):
                pids.append(int(entry))
    return sorted(pids)


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        return f"{pid} {b' '.join(argv).decode(errors='replace').strip()}"
    except OSError:
        return f"{pid} (exited)"


def _kill_all(names: Iterable[str], timeout_s: float = KILL_TIMEOUT_S) -> list[str]:
    """SIGKILL every process in the namespaces `names` until none is left; the ones still there after
    `timeout_s` (stuck in the kernel), described."""
    names = list(names)
    deadline = time.monotonic() + timeout_s
    while pids := [p for n in names for p in ns_pids(n)]:
        if time.monotonic() > deadline:
            return [_describe(p) for p in pids]
        for pid in pids:  # again each round: a process may have forked since the last one
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(POLL_S)
    return []


def _remove_dir(root: Path) -> None:
    """Unmount what is mounted below `root` (the nodes' tmpfs), then remove it."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
        _run("umount", "--lazy", mount)
    shutil.rmtree(root, ignore_errors=True)


def _delete_namespaces(names: Iterable[str]) -> None:
    for name in names:
        if (NETNS_DIR / name).exists():
            _run("ip", "netns", "delete", name)


class _Claim:
    """An flock held on CLAIM_DIR/<tag>.json by the live owner of a cluster, recording what to remove."""

    def __init__(self, tag: str, paths: Sequence[Path]) -> None:
        CLAIM_DIR.mkdir(mode=0o700, exist_ok=True)
        self.path = CLAIM_DIR / f"{tag}.json"
        fd, tmp = tempfile.mkstemp(dir=CLAIM_DIR, prefix=".new-")
        self._file: IO[str] | None = os.fdopen(fd, "w")
        fcntl.flock(fd, fcntl.LOCK_EX)  # before the name appears: a sweep never sees it unlocked
        json.dump({"pid": os.getpid(), "paths": [str(p) for p in paths]}, self._file)
        self._file.flush()
        try:
            os.link(tmp, self.path)  # fails if the tag is taken
        finally:
            os.unlink(tmp)

    def release(self) -> None:
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            self._file.close()
            self._file = None


def _owned_paths(claim: Path, tag: str) -> list[Path]:
    """The directories a claim file lists, keeping only names this harness makes (a sanity bound)."""
    try:
        paths = [Path(p) for p in json.loads(claim.read_text())["paths"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [p for p in paths if p.name.startswith(f"dnt{tag}.")]


def sweep_stale() -> list[str]:
    """Remove the namespaces, processes and directories of clusters whose owner is dead (a crashed or
    killed earlier run); what was removed. Clusters of live owners are left alone."""
    tags = {m.group(1) for n in (os.listdir(NETNS_DIR) if NETNS_DIR.exists() else []) if (m := NAME_RE.match(n))}
    if CLAIM_DIR.exists():
        tags |= {p.stem for p in CLAIM_DIR.glob("*.json") if re.fullmatch(r"[0-9a-f]{6}", p.stem)}
    removed = []
    for tag in sorted(tags):
        claim = CLAIM_DIR / f"{tag}.json"
        with contextlib.ExitStack() as stack:
            try:
                f = stack.enter_context(open(claim))  # held (locked) while we clean up
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except FileNotFoundError:
                pass  # namespaces without a claim: made by nobody alive
            except BlockingIOError:
                continue  # its owner is alive
            names = [n for n in (os.listdir(NETNS_DIR) if NETNS_DIR.exists() else []) if n.startswith(f"dnt{tag}-")]
            left = _kill_all(names)
            _delete_namespaces(names)
            paths = _owned_paths(claim, tag)
            for path in paths:
                _remove_dir(path)
            claim.unlink(missing_ok=True)
            removed += names + [str(p) for p in paths] + [f"stuck process {d}" for d in left]
    return removed


_OPEN: set[VirtualCluster] = set()
_LOCK = threading.Lock()
_saved_sigterm: Any = None


def _sigterm(signum: int, frame: types.FrameType | None) -> None:
    raise KeyboardInterrupt("SIGTERM")  # unwinds through `with` blocks and pytest's teardown


def _register(cluster: VirtualCluster) -> None:
    global _saved_sigterm
    with _LOCK:
        if not _OPEN and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                _saved_sigterm = signal.signal(signal.SIGTERM, _sigterm)
        _OPEN.add(cluster)


def _unregister(cluster: VirtualCluster) -> None:
    global _saved_sigterm
    with _LOCK:
        _OPEN.discard(cluster)
        if not _OPEN and _saved_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _saved_sigterm)
            _saved_sigterm = None


@atexit.register
def _close_all() -> None:
    for cluster in list(_OPEN):
        cluster.close()


class VirtualCluster:
    """N isolated virtual nodes (see the module docstring). Use as a context manager, or `open`/`close`."""

    def __init__(self, n: int) -> None:
        if not 1 <= n <= MAX_NODES:
            raise ValueError(f"a virtual cluster has 1 to {MAX_NODES} nodes, not {n}")
        self.n = n
        self.tag = secrets.token_hex(3)
        self.prefix = f"dnt{self.tag}"
        self.subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
        self.root = Path()  # set by open(): the temporary directory holding node<i>/shm and ssh/
        self._claim: _Claim | None = None
        self._spawned: list[tuple[subprocess.Popen[bytes], str, bool]] = []  # (process, namespace, is daemon)

    def __enter__(self) -> VirtualCluster:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, i: int) -> None:
        if not 0 <= i < self.n:
            raise IndexError(f"node {i} does not exist: this cluster has nodes 0..{self.n - 1}")

    def ns(self, i: int) -> str:
        """Name of node i's network namespace."""
        self._check(i)
        return f"{self.prefix}-{i}"

    def addr(self, i: int) -> str:
        """Node i's IPv4 address (on its eth0)."""
        self._check(i)
        return f"{self.subnet}.{i + 1}"

    def shm_dir(self, i: int) -> Path:
        """The host's path of the directory that is /dev/shm inside node i."""
        self._check(i)
        return self.root / f"node{i}" / "shm"

    def _names(self) -> list[str]:
        return [self.ns(i) for i in range(self.n)] + [f"{self.prefix}-sw"]

    def open(self) -> None:
        """Make the namespaces, links and directories (all removed again if one step fails)."""
        if reason := unavailable():
            raise RuntimeError(f"cannot make a virtual cluster: {reason}")
        _register(self)
        try:
            self.root = Path(tempfile.mkdtemp(prefix=f"{self.prefix}."))
            self._claim = _Claim(self.tag, [self.root])
            switch = f"{self.prefix}-sw"
            _run("ip", "netns", "add", switch)
            _run("ip", "-n", switch, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", switch, "link", "set", "br0", "up")
            for i in range(self.n):
                ns = self.ns(i)
                self.shm_dir(i).mkdir(parents=True)
                _run("mount", "-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", ns, str(self.shm_dir(i)))
                _run("ip", "netns", "add", ns)
                _run("ip", "-n", switch, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
                _run("ip", "-n", switch, "link", "set", f"v{i}", "master", "br0", "up")
                _run("ip", "-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
                _run("ip", "-n", ns, "link", "set", "eth0", "up")
                _run("ip", "-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def wrap(self, i: int) -> list[str]:
        """The argv prefix that runs a command inside node i (its network, its /dev/shm)."""
        return ["ip", "netns", "exec", self.ns(i), "sh", "-c", SHM_SCRIPT, str(self.shm_dir(i))]

    def wrap_template(self) -> str:
        """`wrap` as one string: `shlex.split(template.format(node=i)) == wrap(i)` (for DRAGON_LOCAL_WRAP)."""
        marker = "@NODE@"  # left unquoted by shlex.quote, and in no other part
        line = shlex.join(["ip", "netns", "exec", f"{self.prefix}-{marker}", "sh", "-c", SHM_SCRIPT])
        line += " " + shlex.quote(str(self.root / f"node{marker}" / "shm"))
        return line.replace("{", "{{").replace("}", "}}").replace(marker, "{node}")

    def spawn(self, i: int, argv: Sequence[str], *, daemon: bool = False, **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start `argv` inside node i (Popen's keyword arguments); `close` kills and reaps it and closes its
        pipes. A `daemon` (a harness service such as sshd) is not reported by `leftovers`."""
        proc = subprocess.Popen([*self.wrap(i), *argv], **kwargs)
        self._spawned.append((proc, self.ns(i), daemon))
        return proc

    def pids(self, i: int) -> list[int]:
        """Pids of the processes running in node i."""
        return ns_pids(self.ns(i))

    def leftovers(self) -> dict[str, list[str]]:
        """What runs in any namespace of the cluster (harness daemons aside) and what any node's /dev/shm
        holds, keyed by namespace or directory; {} when nothing is left."""
        daemons = {p.pid for p, _, daemon in self._spawned if daemon}
        found = {}
        for name in self._names():
            # with the spawned ones still running: one may not have entered its namespace yet
            pids = set(ns_pids(name)) | {p.pid for p, ns, _ in self._spawned if ns == name and p.poll() is None}
            if descs := [_describe(p) for p in sorted(pids - daemons)]:
                found[name] = descs
        for i in range(self.n):
            with contextlib.suppress(FileNotFoundError):
                if names := sorted(os.listdir(self.shm_dir(i))):
                    found[str(self.shm_dir(i))] = names
        return found

    def wait_clear(self, timeout_s: float) -> dict[str, list[str]]:
        """`leftovers()` once it is empty or `timeout_s` has passed (processes may be finishing their exit)."""
        deadline = time.monotonic() + timeout_s
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        return left

    def close(self) -> None:
        """Kill every process of the cluster, delete its namespaces and directories. Idempotent. Raises
        RuntimeError (after removing the rest) if a process survived SIGKILL for KILL_TIMEOUT_S."""
        try:
            names = self._names()
            for proc, _, _ in self._spawned:  # by pid too: one may still be on its way into its namespace
                if proc.poll() is None:
                    proc.kill()
            stuck = _kill_all(names)
            for proc, _, _ in self._spawned:  # reap our children (their parent is us, not the subreaper)
                try:
                    proc.wait(timeout=KILL_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    stuck.append(_describe(proc.pid))
                for pipe in (proc.stdin, proc.stdout, proc.stderr):
                    if pipe:
                        pipe.close()
            self._spawned.clear()
            if not stuck:
                _delete_namespaces(names)
            if self.root != Path():
                _remove_dir(self.root)
            if stuck:
                raise RuntimeError(f"processes in {self.prefix}-* survived SIGKILL (left for sweep_stale): {stuck}")
            if self._claim:
                self._claim.release()
        finally:
            _unregister(self)

    def _ssh_dir(self) -> Path:
        """The client key, known_hosts and client config shared by every node's sshd (made once)."""
        d = self.root / "ssh"
        if not d.exists():
            d.mkdir(mode=0o700)
            _keygen(d / "id")
            (d / "authorized_keys").write_text((d / "id.pub").read_text())
            (d / "config").write_text(
                "Host *\n  User root\n  BatchMode yes\n  IdentitiesOnly yes\n  StrictHostKeyChecking yes\n"
                f"  IdentityFile {d / 'id'}\n  UserKnownHostsFile {d / 'known_hosts'}\n"
                "  GlobalKnownHostsFile /dev/null\n  ConnectTimeout 10\n"
            )
        return d

    def start_sshd(self, i: int, timeout_s: float = 10.0) -> None:
        """Run sshd inside node i, listening on `addr(i)` port 22 only, root login by this cluster's key
        only; returns once it listens. `ssh_argv(i)` then reaches it from any node."""
        sshd = shutil.which("sshd", path=f"/usr/sbin:/usr/local/sbin:{os.environ.get('PATH', '')}")
        if sshd is None:
            raise RuntimeError("start_sshd needs sshd: apt-get install -y openssh-server")
        d = self._ssh_dir()
        _keygen(d / f"host{i}")
        with open(d / "known_hosts", "a") as f:
            f.write(f"{self.addr(i)} {(d / f'host{i}.pub').read_text()}")
        conf = d / f"sshd{i}.conf"
        conf.write_text(
            f"ListenAddress {self.addr(i)}:22\nHostKey {d / f'host{i}'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nPidFile none\nPrintMotd no\nLogLevel INFO\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        log = d / f"sshd{i}.log"
        with open(log, "wb") as out:
            proc = self.spawn(
                i, [sshd, "-D", "-e", "-f", str(conf)], daemon=True, stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
        deadline = time.monotonic() + timeout_s
        while f"Server listening on {self.addr(i)} port 22".encode() not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd in node {i} did not start listening: {log.read_text()!r}")
            time.sleep(POLL_S)

    def ssh_argv(self, i: int) -> list[str]:
        """`ssh` to node i's sshd (see `start_sshd`) with this cluster's key; append the remote command."""
        return ["ssh", "-F", str(self.root / "ssh" / "config"), self.addr(i)]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
