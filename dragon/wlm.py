"""Which nodes a run uses and how the frontend starts one backend on each (spec MULTINODE §1, §4, §8).

Pure functions, no processes: `plan_nodes` turns the command line (and Slurm's environment) into a
`NodePlan`, and `slurm_command`, `ssh_command`, `local_command` build the argv that starts a backend
(`backend_argv`) through the workload manager. `add_arguments` adds the options to `dragon --help`.
Bad input raises `WLMError`, one sentence saying what was wrong and what to do (the CLI prints it as
`dragon: error: ...`). Imports stay light (no trio, no zmq): a single-node run imports this too.

No secret is ever put on a command line built here (any user can read it in `ps`): the frontend
writes the run's keys on the backend's stdin (ssh and local; for srun, `--input=all` copies srun's
stdin to every backend).

Virtual nodes (`--wlm local`) are named "vnode0", "vnode1", ... (`LOCAL_HOST_PREFIX`): distinct
names, so that every host of a plan names one node (node index from host, `dragon status`), and
never names of real machines (nothing resolves or connects to them).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shlex
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Final, Literal, get_args

import msgspec

WLM = Literal["slurm", "ssh", "local"]
WLMS: Final = get_args(WLM)
LOCAL_HOST_PREFIX: Final = "vnode"
MAX_HOSTS: Final = 100_000  # a host list that expands to more is a typo ("n[1-1000000]"), not a cluster
LOCAL_WRAP_ENV: Final = "DRAGON_LOCAL_WRAP"
SSH_CONNECT_TIMEOUT_S: Final = 10
SSH_ALIVE_INTERVAL_S: Final = 5  # with SSH_ALIVE_COUNT_MAX: ssh gives up on a dead link after 15 s
SSH_ALIVE_COUNT_MAX: Final = 3
LOOPBACK: Final = "127.0.0.1"

_BAD_HOST = re.compile(r"[\s,\[\]]|^-")  # separators, brackets, or what ssh/srun would read as an option


class WLMError(ValueError):
    """The node list or the workload manager options are wrong; the text says what to do instead."""


class NodePlan(msgspec.Struct, frozen=True):
    """The nodes of a multi-node run: `hosts[i]` is node i, node 0 the primary (runs GS and the head)."""

    wlm: WLM
    hosts: tuple[str, ...]

    @property
    def n(self) -> int:
        """The number of nodes."""
        return len(self.hosts)


def plan_nodes(
    *,
    nodes: int | None,
    hosts: str | None,
    hostfile: str | None,
    wlm: str | None,
    primary: str | None,
    env: Mapping[str, str] = os.environ,
) -> NodePlan | None:
    """The run's nodes from the options (`add_arguments`) and the environment, or None for a
    single-node run exactly as today.

    Rules, in order:
    - None when no option asks for several nodes: none of --nodes/--hosts/--hostfile/--wlm given,
      or `--nodes 1` alone (inside a Slurm allocation too: the run stays on this node).
    - `--wlm` given wins. `local` takes `--nodes N` (N >= 1, so `--nodes 1 --wlm local` is one
      virtual node through the multi-node path) and no host list. `ssh` needs --hosts or --hostfile.
      `slurm` uses --hosts/--hostfile if given (within the allocation, if there is one), else
      the allocation's nodes (SLURM_JOB_NODELIST).
    - Without --wlm: --hosts/--hostfile mean ssh; else `--nodes N` (N > 1) means slurm inside an
      allocation (SLURM_JOB_ID set), and is an error outside one.
    - --hosts is a comma-separated list in Slurm's hostlist syntax ("n[01-04],gpu5"); --hostfile a
      file (`read_hostfile`). Not both. Empty names and duplicates are errors.
    - --primary HOST moves HOST to node 0 (it must be in the list); this happens before --nodes N
      takes the first N hosts, so the primary is always one of the run's nodes.
    - --nodes N takes the first N hosts; N larger than the list is an error.
    """
    if nodes is not None and nodes < 1:
        raise WLMError(f"--nodes {nodes} is not a number of nodes: give 1 or more")
    if wlm is not None and wlm not in WLMS:
        raise WLMError(f"--wlm {wlm!r} is not known: give one of {', '.join(WLMS)}")
    if hosts is not None and hostfile is not None:
        raise WLMError("--hosts and --hostfile were both given: give only one of them")
    listed = _listed_hosts(hosts, hostfile)
    if wlm == "local":
        if listed is not None:
            raise WLMError(
                "--wlm local runs virtual nodes on this machine: give --nodes N instead of --hosts/--hostfile"
            )
        if nodes is None:
            raise WLMError("--wlm local needs --nodes N, the number of virtual nodes to run on this machine")
        return _finish("local", [f"{LOCAL_HOST_PREFIX}{i}" for i in range(nodes)], nodes, primary, "--wlm local")
    if wlm == "ssh" or (wlm is None and listed is not None):
        if listed is None:
            raise WLMError("--wlm ssh needs the hosts to run on: give --hosts H1,H2,... or --hostfile FILE")
        return _finish("ssh", listed[1], nodes, primary, listed[0])
    if wlm is None and (nodes is None or nodes == 1):
        if primary is not None:
            raise WLMError(
                "--primary chooses node 0 among several nodes, but this run is single node: "
                "give --hosts, --hostfile, --wlm, or --nodes N inside a Slurm allocation"
            )
        return None
    allocation = _slurm_allocation(env)
    if wlm is None and allocation is None:
        raise WLMError(
            f"--nodes {nodes} needs to know where to run: give --wlm local (virtual nodes on this machine), "
            "--hosts H1,H2,..., --hostfile FILE, or run inside a Slurm allocation"
        )
    # Slurm: --wlm slurm, or --nodes N > 1 inside an allocation.
    if listed is not None:
        if allocation is not None:
            allocated = set(allocation)
            outside = [h for h in listed[1] if h not in allocated]
            if outside:
                raise WLMError(
                    f"{listed[0]} names {outside[0]}, which is not in this Slurm allocation "
                    f"({_few(allocation)}): give hosts of the allocation only"
                )
        return _finish("slurm", listed[1], nodes, primary, listed[0])
    if allocation is None:
        raise WLMError(
            "--wlm slurm needs a Slurm allocation (SLURM_JOB_NODELIST is not set): run inside salloc or sbatch, "
            "or give the nodes with --hosts/--hostfile"
        )
    return _finish("slurm", allocation, nodes, primary, "the Slurm allocation")


def _listed_hosts(hosts: str | None, hostfile: str | None) -> tuple[str, list[str]] | None:
    """(where the hosts came from, for messages; the hosts) of --hosts or --hostfile, if given."""
    if hosts is not None:
        return "--hosts", expand_hostlist(hosts, what="--hosts")
    if hostfile is not None:
        return f"the hostfile {hostfile}", read_hostfile(hostfile)
    return None


def _slurm_allocation(env: Mapping[str, str]) -> list[str] | None:
    """The nodes of the Slurm job this runs in (SLURM_JOB_ID set), or None outside one."""
    if "SLURM_JOB_ID" not in env:
        return None
    nodelist = env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST"))
    if not nodelist:
        raise WLMError(
            "SLURM_JOB_ID is set but SLURM_JOB_NODELIST is empty or missing: run inside salloc or sbatch, "
            "or give the nodes with --hosts/--hostfile"
        )
    return expand_hostlist(nodelist, what="SLURM_JOB_NODELIST")


def _finish(wlm: WLM, hosts: list[str], nodes: int | None, primary: str | None, source: str) -> NodePlan:
    """Check the host list, put the primary first, take the first `nodes`."""
    seen: set[str] = set()
    for host in hosts:
        if host in seen:
            raise WLMError(f"{source} names {host} twice: give each host once (one backend runs per host)")
        seen.add(host)
    if primary is not None:
        if primary not in seen:
            raise WLMError(f"--primary {primary} is not one of the hosts of {source}: give one of {_few(hosts)}")
        hosts = [primary, *(h for h in hosts if h != primary)]
    if nodes is not None:
        if nodes > len(hosts):
            raise WLMError(
                f"--nodes {nodes} is more than the {len(hosts)} host(s) of {source}: "
                f"give --nodes {len(hosts)} or fewer, or more hosts"
            )
        hosts = hosts[:nodes]
    return NodePlan(wlm=wlm, hosts=tuple(hosts))


def _few(hosts: Sequence[str]) -> str:
    return ", ".join(hosts[:5]) + (", ..." if len(hosts) > 5 else "")


def expand_hostlist(text: str, *, what: str = "the host list") -> list[str]:
    """The host names of a Slurm hostlist: "n[01-03,07],gpu5,a[1-2]-ib" -> n01 n02 n03 n07 gpu5 a1-ib a2-ib.

    Commas outside brackets separate names (spaces around a name are dropped); `[...]` holds numbers
    and ranges LO-HI, zero-padded to LO's width as Slurm does ("[08-10]" -> 08 09 10); several groups
    in one name give every combination, the first group varying slowest ("r[1-2]n[1-2]" -> r1n1 r1n2
    r2n1 r2n2). `what` names the source in errors.
    """
    hosts: list[str] = []
    for item in _split_top(text, what):
        parts = re.split(r"(\[[^\[\]]*\])", item)  # literal, group, literal, group, ..., literal
        choices = [[p] if i % 2 == 0 else _group(p[1:-1], item, what) for i, p in enumerate(parts)]
        if len(hosts) + _product_len(choices) > MAX_HOSTS:
            raise WLMError(f"{what} {text!r} names more than {MAX_HOSTS} hosts: check the ranges")
        for combo in itertools.product(*choices):
            host = "".join(combo)
            if _BAD_HOST.search(host):
                raise WLMError(f"{what} {text!r}: {host!r} is not a host name: write names separated by commas")
            hosts.append(host)
    return hosts


def _product_len(choices: list[list[str]]) -> int:
    total = 1
    for choice in choices:
        total *= len(choice)
    return total


def _split_top(text: str, what: str) -> list[str]:
    """`text` split at the commas outside brackets, each item stripped; no item may be empty."""
    items: list[str] = []
    depth, start = 0, 0
    for i, c in enumerate(text + ","):
        if c == "[":
            depth += 1
            if depth > 1:
                raise WLMError(f"{what} {text!r}: brackets do not nest: write e.g. n[01-04,07]")
        elif c == "]":
            depth -= 1
            if depth < 0:
                raise WLMError(f"{what} {text!r}: a ']' has no '[': write e.g. n[01-04]")
        elif c == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    if depth:
        raise WLMError(f"{what} {text!r}: a '[' is not closed: write e.g. n[01-04]")
    if not all(items):
        raise WLMError(f"{what} {text!r} has an empty host name: separate names by single commas")
    return items


def _group(body: str, item: str, what: str) -> list[str]:
    """The numbers of one bracket group's body ("01-03,07")."""
    out: list[str] = []
    for part in body.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
        if not m:
            raise WLMError(f"{what}: [{body}] in {item!r} is not a list of numbers and ranges: write e.g. [01-04,07]")
        lo_text, hi_text = m.group(1), m.group(2) or m.group(1)
        lo, hi = int(lo_text), int(hi_text)
        if hi < lo:
            raise WLMError(f"{what}: the range {lo_text}-{hi_text} in {item!r} goes down: write the lower number first")
        if hi - lo + len(out) >= MAX_HOSTS:
            raise WLMError(f"{what}: [{body}] in {item!r} names more than {MAX_HOSTS} hosts: check the ranges")
        out.extend(str(k).zfill(len(lo_text)) for k in range(lo, hi + 1))
    return out


def read_hostfile(path: str) -> list[str]:
    """The hosts of a hostfile: one per line, its first word; blank lines and `#` comments are
    skipped, and further words (MPI's "host slots=4") are ignored. No hostlist syntax here.
    An unreadable file, or one naming no host, is a `WLMError` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise WLMError(f"cannot read the hostfile {path}: {exc}") from None
    hosts: list[str] = []
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if _BAD_HOST.search(words[0]):
            raise WLMError(
                f"the hostfile {path}, line {number}: {words[0]!r} is not a host name: write one host per line"
            )
        hosts.append(words[0])
    if not hosts:
        raise WLMError(f"the hostfile {path} names no host: write one host name per line")
    return hosts


def backend_argv(python: str = sys.executable) -> list[str]:
    """The backend's command on a node (spec MULTINODE §2): the same Python path on every node."""
    return [python, "-m", "dragon.services.backend"]


def slurm_command(plan: NodePlan, argv: Sequence[str]) -> list[str]:
    """One srun step that starts `argv` (a backend) once on each node of `plan`.

    Slurm numbers the tasks in its own node order, not ours: a backend finds its node index with
    `slurm_node_index`. The caller writes the run's secrets on srun's stdin (`--input=all`).
    """
    n = plan.n
    return [
        "srun",
        f"--nodes={n}",
        f"--ntasks={n}",
        "--ntasks-per-node=1",  # one backend per node
        "--cpu-bind=none",  # a backend's processes use every CPU of its node, not the one of its task
        f"--nodelist={','.join(plan.hosts)}",  # exactly the planned nodes
        "--overlap",  # the program may run its own srun steps on these nodes while this one holds them
        "--export=ALL",  # the backend needs our environment (PATH, PYTHONPATH, a virtualenv), whatever the site default
        "--mpi=none",  # no PMI set-up: the backends are not an MPI program
        "--input=all",  # srun's stdin goes to every task: the frontend sends the run's keys that way
        # The frontend tears the backends down in order (MULTINODE §6), whatever the site's defaults: Slurm
        # must neither kill them all when one fails nor end the others some time after one has ended.
        "--kill-on-bad-exit=0",
        "--wait=0",
        *argv,
    ]


def slurm_node_index(plan: NodePlan, env: Mapping[str, str] = os.environ) -> int:
    """This Slurm task's node index in `plan` (from SLURMD_NODENAME, the node's Slurm name).

    SLURM_NODEID is no help: it counts in Slurm's node order, and `--primary` reorders ours. A plan
    given with full names ("n1.cluster") matches a short Slurm name ("n1") if only one host does.
    """
    name = env.get("SLURMD_NODENAME")
    if not name:
        raise WLMError("SLURMD_NODENAME is not set: the backend must be started by srun (dragon --wlm slurm)")
    if name in plan.hosts:
        return plan.hosts.index(name)
    short = name.split(".", 1)[0]
    matches = [i for i, host in enumerate(plan.hosts) if host.split(".", 1)[0] == short]
    if len(matches) == 1:
        return matches[0]
    raise WLMError(
        f"this Slurm node {name} is not one of the run's nodes ({_few(plan.hosts)}): give Slurm's node names"
    )


def ssh_command(host: str, argv: Sequence[str], *, ssh: str = "ssh") -> list[str]:
    """`ssh HOST exec ARGV...`: start `argv` on `host`, with nobody there to answer a prompt.

    `ssh` is the ssh program with any options of its own ("ssh -F my_config"), split as a shell
    would. The host key check is left to the user's ssh configuration: turning it off would let
    anyone on the path pose as the host and receive the run's keys (sent on stdin); with BatchMode
    an unknown host fails with ssh's own message instead of asking. The remote login shell runs
    `exec` + the POSIX-quoted argv, so the backend is ssh's child there (it ends with the session).
    """
    if _BAD_HOST.search(host) or not host:
        raise WLMError(f"{host!r} is not a host name to ssh to: give a name or address")
    program = shlex.split(ssh)
    if not program:
        raise WLMError("the ssh command is empty: give a program such as 'ssh'")
    return [
        *program,
        "-T",  # no terminal: plain pipes (stdin carries the keys), no line discipline, stderr kept apart
        "-x",  # no X11 forwarding
        "-a",  # no agent forwarding: the remote side gets no access to the user's keys
        "-o",
        "BatchMode=yes",  # never prompt (for a password, a passphrase, a host key): fail instead
        "-o",
        f"ConnectTimeout={SSH_CONNECT_TIMEOUT_S}",
        "-o",
        f"ServerAliveInterval={SSH_ALIVE_INTERVAL_S}",  # a dead link or host ends ssh (and so the
        "-o",
        f"ServerAliveCountMax={SSH_ALIVE_COUNT_MAX}",  # backend's session) instead of hanging
        "--",
        host,
        "exec " + shlex.join(argv),
    ]


def local_command(node: int, argv: Sequence[str], env: Mapping[str, str] = os.environ) -> list[str]:
    """The command of virtual node `node`'s backend: `argv`, inside `DRAGON_LOCAL_WRAP` if set.

    DRAGON_LOCAL_WRAP is a command prefix with "{node}" in it (tests use it to run virtual node i in
    its own network and mount namespaces, e.g. "ip netns exec dragon-n{node} unshare --mount ...").
    """
    template = env.get(LOCAL_WRAP_ENV)
    if not template:
        return list(argv)
    if "{node}" not in template:
        raise WLMError(f"{LOCAL_WRAP_ENV}={template!r} has no {{node}}: put {{node}} where the node index goes")
    try:
        prefix = shlex.split(template.format(node=node))
    except (ValueError, KeyError, IndexError) as exc:
        raise WLMError(
            f"{LOCAL_WRAP_ENV}={template!r} is not a command prefix ({exc!r}): "
            "write a shell-quoted command with {node} as its only {...}"
        ) from None
    return [*prefix, *argv]


def default_frontend_addr(plan: NodePlan) -> str:
    """The address backends connect to when --frontend-addr is not given: 127.0.0.1 for virtual
    nodes, else the address of our interface that routes to the first host that is not loopback here.

    Found by asking the kernel for a route (a UDP socket's connect sends nothing). All loopback
    (every host is this machine): 127.0.0.1. A virtual node in its own network namespace cannot
    reach our 127.0.0.1: such tests give --frontend-addr.
    """
    if plan.wlm == "local":
        return LOOPBACK
    unresolved: list[str] = []
    for host in plan.hosts:
        try:
            infos = socket.getaddrinfo(host, 9, type=socket.SOCK_DGRAM)
        except (OSError, UnicodeError):
            unresolved.append(host)
            continue
        for family, kind, proto, _, address in infos:
            try:
                with socket.socket(family, kind, proto) as probe:
                    probe.connect(address)
                    ours = str(probe.getsockname()[0])
            except OSError:
                continue
            if not ours.startswith("127.") and ours != "::1":
                return ours
    if unresolved and len(unresolved) == plan.n:
        raise WLMError(f"cannot find the address of {_few(unresolved)}: check the names, or give --frontend-addr")
    return LOOPBACK


def _count(text: str) -> int:
    """A number of nodes, for --nodes."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of nodes") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1 node or more")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The multi-node options of `dragon` (their meaning: `plan_nodes`)."""
    g = parser.add_argument_group("many nodes (see README: Many nodes)")
    g.add_argument(
        "--nodes",
        type=_count,
        metavar="N",
        help="run on N nodes: the first N of --hosts/--hostfile or of the Slurm allocation "
        "(default: all hosts of --hosts/--hostfile/--wlm slurm, else 1)",
    )
    g.add_argument("--hosts", metavar="H1,H2,...", help="run on these hosts, over ssh (Slurm syntax too: n[01-04])")
    g.add_argument("--hostfile", metavar="FILE", help="run on the hosts listed in FILE, one per line, over ssh")
    g.add_argument(
        "--wlm",
        choices=WLMS,
        help="how to start the runtime on each node: slurm (srun; the default for --nodes N in an allocation), "
        "ssh (the default with --hosts/--hostfile), local (--nodes N virtual nodes on this machine)",
    )
    g.add_argument(
        "--primary",
        metavar="HOST",
        help="run the program (and the runtime's global services) on HOST (default: the first host)",
    )
    g.add_argument("--label", action="store_true", help="prefix each output line with [node:pid] ")
    g.add_argument(
        "--transport-security",
        choices=("curve", "none"),
        default="curve",
        help="curve (default): encrypt and authenticate traffic between nodes; none: plain, for a trusted network",
    )
    g.add_argument(
        "--on-node-loss",
        choices=("teardown", "continue"),
        default="teardown",
        help="when a node other than the primary is lost: teardown (default) ends the run; continue reports "
        "its processes dead and goes on with the other nodes",
    )
    g.add_argument(
        "--frontend-addr",
        metavar="ADDR",
        help="address of this machine that the nodes connect to (default: 127.0.0.1 with --wlm local, "
        "else the address of the interface that routes to the first host)",
    )
