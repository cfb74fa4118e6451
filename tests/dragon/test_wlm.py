"""The node plan and the backend commands of each workload manager (dragon/wlm.py; MULTINODE §1, §4, §8).

Pure functions: the environment is always an explicit dict, never this process's (which may be a
Slurm job's). Two tests run processes: local_command's argv is executable, and the frontend address
is found in a network namespace of our own (only its addresses are touched, MULTINODE §9).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from dragon.wlm import (
    NodePlan,
    WLMError,
    add_arguments,
    backend_argv,
    default_frontend_addr,
    expand_hostlist,
    local_command,
    plan_nodes,
    read_hostfile,
    slurm_command,
    slurm_node_index,
    ssh_command,
)

NO_ENV: dict[str, str] = {}
SLURM_ENV = {"SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "n[01-03],gpu5"}


def plan(
    *,
    nodes: int | None = None,
    hosts: str | None = None,
    hostfile: str | None = None,
    wlm: str | None = None,
    primary: str | None = None,
    env: Mapping[str, str] = NO_ENV,
) -> NodePlan | None:
    return plan_nodes(nodes=nodes, hosts=hosts, hostfile=hostfile, wlm=wlm, primary=primary, env=env)


def plan_error(**kwargs: Any) -> str:
    with pytest.raises(WLMError) as info:
        plan(**kwargs)
    return str(info.value)


# --- plan_nodes: single node -------------------------------------------------------------------


@pytest.mark.parametrize("env", [NO_ENV, SLURM_ENV])
def test_no_option_is_a_single_node_run_even_in_a_slurm_allocation(env: dict[str, str]) -> None:
    assert plan(env=env) is None


@pytest.mark.parametrize("env", [NO_ENV, SLURM_ENV])
def test_nodes_1_alone_is_a_single_node_run(env: dict[str, str]) -> None:
    assert plan(nodes=1, env=env) is None


def test_primary_on_a_single_node_run_is_an_error() -> None:
    assert "--primary" in plan_error(primary="n1")
    assert "single node" in plan_error(nodes=1, primary="n1", env=SLURM_ENV)


@pytest.mark.parametrize("nodes", [0, -3])
def test_nodes_below_1_is_an_error(nodes: int) -> None:
    assert f"--nodes {nodes}" in plan_error(nodes=nodes, wlm="local")


# --- plan_nodes: local ----------------------------------------------------------------------------


def test_wlm_local_makes_n_virtual_nodes() -> None:
    assert plan(nodes=3, wlm="local") == NodePlan(wlm="local", hosts=("vnode0", "vnode1", "vnode2"))
    one = plan(nodes=1, wlm="local")
    assert one is not None and one.n == 1 and one.hosts == ("vnode0",)


def test_wlm_local_wins_over_a_slurm_allocation() -> None:
    assert plan(nodes=2, wlm="local", env=SLURM_ENV) == NodePlan(wlm="local", hosts=("vnode0", "vnode1"))


def test_wlm_local_needs_nodes() -> None:
    assert "--wlm local needs --nodes N" in plan_error(wlm="local")


def test_wlm_local_takes_no_hosts() -> None:
    assert "--nodes N instead of --hosts" in plan_error(nodes=2, wlm="local", hosts="a,b")


def test_wlm_local_primary_moves_a_virtual_node() -> None:
    assert plan(nodes=3, wlm="local", primary="vnode2") == NodePlan(wlm="local", hosts=("vnode2", "vnode0", "vnode1"))


def test_unknown_wlm_is_an_error() -> None:
    assert "--wlm 'pbs' is not known: give one of slurm, ssh, local" in plan_error(nodes=2, wlm="pbs")


# --- plan_nodes: ssh --------------------------------------------------------------------------


def test_hosts_mean_ssh() -> None:
    assert plan(hosts="h1,h2,h3") == NodePlan(wlm="ssh", hosts=("h1", "h2", "h3"))


def test_hosts_mean_ssh_inside_a_slurm_allocation_too() -> None:
    assert plan(hosts=" h1 , h2", env=SLURM_ENV) == NodePlan(wlm="ssh", hosts=("h1", "h2"))


def test_hosts_take_the_slurm_hostlist_syntax() -> None:
    assert plan(hosts="h[1-2],x") == NodePlan(wlm="ssh", hosts=("h1", "h2", "x"))


def test_hosts_with_nodes_1_is_one_ssh_node() -> None:
    assert plan(hosts="h1,h2", nodes=1) == NodePlan(wlm="ssh", hosts=("h1",))


def test_nodes_takes_the_first_n_hosts() -> None:
    assert plan(hosts="h1,h2,h3", nodes=2) == NodePlan(wlm="ssh", hosts=("h1", "h2"))


def test_more_nodes_than_hosts_is_an_error() -> None:
    msg = plan_error(hosts="h1,h2", nodes=3)
    assert "--nodes 3 is more than the 2 host(s) of --hosts" in msg and "--nodes 2 or fewer" in msg


def test_hostfile_means_ssh(tmp_path: Path) -> None:
    f = tmp_path / "hosts"
    f.write_text("a\nb\n")
    assert plan(hostfile=str(f)) == NodePlan(wlm="ssh", hosts=("a", "b"))
    assert f"the hostfile {f}" in plan_error(hostfile=str(f), nodes=5)


def test_hosts_and_hostfile_together_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "hosts"
    f.write_text("a\n")
    assert "both given" in plan_error(hosts="a", hostfile=str(f))


def test_wlm_ssh_needs_hosts() -> None:
    assert "--wlm ssh needs" in plan_error(wlm="ssh", nodes=2)
    assert "--wlm ssh needs" in plan_error(wlm="ssh", nodes=2, env=SLURM_ENV)


def test_primary_moves_its_host_first() -> None:
    assert plan(hosts="h1,h2,h3", primary="h3") == NodePlan(wlm="ssh", hosts=("h3", "h1", "h2"))


def test_primary_is_kept_when_nodes_takes_the_first_n() -> None:
    assert plan(hosts="h1,h2,h3", primary="h3", nodes=2) == NodePlan(wlm="ssh", hosts=("h3", "h1"))


def test_primary_not_in_the_list_is_an_error() -> None:
    msg = plan_error(hosts="h1,h2", primary="h9")
    assert "--primary h9 is not one of the hosts of --hosts: give one of h1, h2" == msg


def test_duplicate_hosts_are_an_error() -> None:
    assert "names h1 twice" in plan_error(hosts="h1,h2,h1")
    assert "names n2 twice" in plan_error(hosts="n[1-3],n2")


@pytest.mark.parametrize("hosts", ["", "a,,b", "a,", ",a", " , "])
def test_empty_host_names_are_an_error(hosts: str) -> None:
    assert "empty host name" in plan_error(hosts=hosts)


@pytest.mark.parametrize("hosts", ["-oProxyCommand=x", "a b", "a,-b"])
def test_names_ssh_would_misread_are_an_error(hosts: str) -> None:
    assert "is not a host name" in plan_error(hosts=hosts)


# --- plan_nodes: slurm ----------------------------------------------------------------------------


def test_nodes_in_a_slurm_allocation_take_its_first_n_nodes() -> None:
    assert plan(nodes=3, env=SLURM_ENV) == NodePlan(wlm="slurm", hosts=("n01", "n02", "n03"))


def test_wlm_slurm_alone_takes_the_whole_allocation() -> None:
    assert plan(wlm="slurm", env=SLURM_ENV) == NodePlan(wlm="slurm", hosts=("n01", "n02", "n03", "gpu5"))


def test_nodes_more_than_the_allocation_is_an_error() -> None:
    assert "--nodes 5 is more than the 4 host(s) of the Slurm allocation" in plan_error(nodes=5, env=SLURM_ENV)


def test_slurm_primary() -> None:
    assert plan(nodes=2, primary="gpu5", env=SLURM_ENV) == NodePlan(wlm="slurm", hosts=("gpu5", "n01"))
    assert "not one of the hosts of the Slurm allocation" in plan_error(nodes=2, primary="x", env=SLURM_ENV)


def test_slurm_nodelist_falls_back_to_slurm_nodelist() -> None:
    env = {"SLURM_JOB_ID": "1", "SLURM_NODELIST": "c[1-2]"}
    assert plan(nodes=2, env=env) == NodePlan(wlm="slurm", hosts=("c1", "c2"))


def test_slurm_job_without_a_nodelist_is_an_error() -> None:
    assert "SLURM_JOB_NODELIST is empty or missing" in plan_error(nodes=2, env={"SLURM_JOB_ID": "1"})


def test_wlm_slurm_with_hosts_runs_on_those_hosts() -> None:
    assert plan(wlm="slurm", hosts="n02,gpu5", env=SLURM_ENV) == NodePlan(wlm="slurm", hosts=("n02", "gpu5"))
    # outside an allocation srun makes one for the given hosts
    assert plan(wlm="slurm", hosts="a,b") == NodePlan(wlm="slurm", hosts=("a", "b"))


def test_wlm_slurm_with_hosts_outside_the_allocation_is_an_error() -> None:
    assert "names x1, which is not in this Slurm allocation" in plan_error(wlm="slurm", hosts="n01,x1", env=SLURM_ENV)


def test_wlm_slurm_outside_an_allocation_without_hosts_is_an_error() -> None:
    assert "--wlm slurm needs a Slurm allocation" in plan_error(wlm="slurm", nodes=2)


def test_several_nodes_with_nowhere_to_run_is_an_error() -> None:
    msg = plan_error(nodes=2)
    assert msg == (
        "--nodes 2 needs to know where to run: give --wlm local (virtual nodes on this machine), "
        "--hosts H1,H2,..., --hostfile FILE, or run inside a Slurm allocation"
    )


def test_bad_slurm_nodelist_is_named() -> None:
    assert "SLURM_JOB_NODELIST" in plan_error(nodes=2, env={"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n[1-"})


# --- expand_hostlist ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("n1", ["n1"]),
        ("n1,n2", ["n1", "n2"]),
        ("n[1-3]", ["n1", "n2", "n3"]),
        ("n[01-03,07],gpu5,a[1-2]-ib", ["n01", "n02", "n03", "n07", "gpu5", "a1-ib", "a2-ib"]),
        ("n[08-11]", ["n08", "n09", "n10", "n11"]),  # padded to the lower bound's width
        ("n[8-11]", ["n8", "n9", "n10", "n11"]),
        ("n[007]", ["n007"]),
        ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
        ("r[1-2]n[1,3]-x,y", ["r1n1-x", "r1n3-x", "r2n1-x", "r2n3-x", "y"]),
        ("[1-2]", ["1", "2"]),
        ("n[1-2, 4]", ["n1", "n2", "n4"]),
        ("10.0.0.1,10.0.0.2", ["10.0.0.1", "10.0.0.2"]),
        ("n[3-3]", ["n3"]),
    ],
)
def test_expand_hostlist(text: str, hosts: list[str]) -> None:
    assert expand_hostlist(text) == hosts


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("n[1-3", "is not closed"),
        ("n1-3]", "has no '['"),
        ("n[[1-2]]", "do not nest"),
        ("n[a-b]", "not a list of numbers"),
        ("n[]", "not a list of numbers"),
        ("n[1,,2]", "not a list of numbers"),
        ("n[1-2-3]", "not a list of numbers"),
        ("n[3-1]", "goes down"),
        ("n[0-999999]", "more than 100000 hosts"),
        ("n[0-999]m[0-999]", "more than 100000 hosts"),
        ("a,,b", "empty host name"),
        ("a b", "is not a host name"),
    ],
)
def test_expand_hostlist_errors(text: str, error: str) -> None:
    with pytest.raises(WLMError, match=re.escape(error)):
        expand_hostlist(text)


# --- read_hostfile ------------------------------------------------------------------------------


def test_read_hostfile(tmp_path: Path) -> None:
    f = tmp_path / "hosts.txt"
    f.write_text("# cluster\nn1 slots=4\n\n   n2   # the second\n\t\nn3 max_slots=8 extra\n#n4\n")
    assert read_hostfile(str(f)) == ["n1", "n2", "n3"]


def test_read_hostfile_does_not_expand_brackets(tmp_path: Path) -> None:
    f = tmp_path / "hosts.txt"
    f.write_text("n[1-2]\n")
    with pytest.raises(WLMError, match=r"line 1: 'n\[1-2\]' is not a host name"):
        read_hostfile(str(f))


def test_unreadable_hostfile_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(WLMError, match=f"cannot read the hostfile {missing}"):
        read_hostfile(str(missing))
    with pytest.raises(WLMError, match=f"cannot read the hostfile {tmp_path}"):
        read_hostfile(str(tmp_path))  # a directory


def test_hostfile_without_hosts_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "hosts.txt"
    f.write_text("# nothing yet\n\n")
    with pytest.raises(WLMError, match=f"the hostfile {f} names no host"):
        read_hostfile(str(f))


# --- commands ----------------------------------------------------------------------------------


def test_backend_argv() -> None:
    assert backend_argv() == [sys.executable, "-m", "dragon.services.backend"]
    assert backend_argv("/opt/py/bin/python3") == ["/opt/py/bin/python3", "-m", "dragon.services.backend"]


def test_slurm_command() -> None:
    p = NodePlan(wlm="slurm", hosts=("n03", "n01"))
    assert slurm_command(p, ["/py", "-m", "dragon.services.backend"]) == [
        "srun",
        "--nodes=2",
        "--ntasks=2",
        "--ntasks-per-node=1",
        "--cpu-bind=none",
        "--nodelist=n03,n01",
        "--overlap",
        "--export=ALL",
        "--mpi=none",
        "--input=all",
        "--kill-on-bad-exit=0",
        "--wait=0",
        "/py",
        "-m",
        "dragon.services.backend",
    ]


def test_slurm_node_index_follows_the_plan_not_slurm_order() -> None:
    p = NodePlan(wlm="slurm", hosts=("n03", "n01", "n02"))  # --primary n03
    assert [slurm_node_index(p, {"SLURMD_NODENAME": h, "SLURM_NODEID": "0"}) for h in ("n01", "n02", "n03")] == [
        1,
        2,
        0,
    ]


def test_slurm_node_index_matches_short_names() -> None:
    p = NodePlan(wlm="slurm", hosts=("n1.cluster", "n2.cluster"))
    assert slurm_node_index(p, {"SLURMD_NODENAME": "n2"}) == 1
    assert slurm_node_index(NodePlan(wlm="slurm", hosts=("n1", "n2")), {"SLURMD_NODENAME": "n2.cluster"}) == 1


def test_slurm_node_index_errors() -> None:
    p = NodePlan(wlm="slurm", hosts=("n1", "n2"))
    with pytest.raises(WLMError, match="SLURMD_NODENAME is not set"):
        slurm_node_index(p, {"SLURM_NODEID": "0"})
    with pytest.raises(WLMError, match=r"this Slurm node n9 is not one of the run's nodes \(n1, n2\)"):
        slurm_node_index(p, {"SLURMD_NODENAME": "n9"})
    ambiguous = NodePlan(wlm="slurm", hosts=("n1.a", "n1.b"))
    with pytest.raises(WLMError, match="not one of the run's nodes"):
        slurm_node_index(ambiguous, {"SLURMD_NODENAME": "n1"})


def test_ssh_command() -> None:
    argv = ["/my py/python", "-m", "dragon.services.backend", "it's"]
    assert ssh_command("n1", argv) == [
        "ssh",
        "-T",
        "-x",
        "-a",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "ServerAliveInterval=5",
        "-o",
        "ServerAliveCountMax=3",
        "--",
        "n1",
        "exec '/my py/python' -m dragon.services.backend 'it'\"'\"'s'",
    ]


def test_ssh_command_remote_part_is_the_argv_for_a_posix_shell() -> None:
    argv = [sys.executable, "-c", "import sys; print(sys.argv[1:])", "a b", "$HOME", "`x`;"]
    remote = ssh_command("n1", argv)[-1]
    done = subprocess.run(["sh", "-c", remote], capture_output=True, text=True, timeout=60)
    assert done.stdout == "['a b', '$HOME', '`x`;']\n"


def test_ssh_command_with_its_own_options() -> None:
    cmd = ssh_command("n1", ["x"], ssh="/usr/bin/ssh -F '/tmp/my config' -p 2222")
    assert cmd[:5] == ["/usr/bin/ssh", "-F", "/tmp/my config", "-p", "2222"]
    assert cmd[-3:] == ["--", "n1", "exec x"]


@pytest.mark.parametrize("host", ["", "-oProxyCommand=x", "a b"])
def test_ssh_command_rejects_what_is_not_a_host(host: str) -> None:
    with pytest.raises(WLMError, match="is not a host name"):
        ssh_command(host, ["x"])


def test_ssh_command_empty_program_is_an_error() -> None:
    with pytest.raises(WLMError, match="the ssh command is empty"):
        ssh_command("n1", ["x"], ssh="  ")


def test_local_command_is_argv_without_a_wrap() -> None:
    assert local_command(3, ["/py", "-m", "b"], {}) == ["/py", "-m", "b"]
    assert local_command(3, ["/py"], {"DRAGON_LOCAL_WRAP": ""}) == ["/py"]


def test_local_command_wraps_with_the_node_index() -> None:
    env = {"DRAGON_LOCAL_WRAP": "ip netns exec 'dragon n{node}' unshare --mount"}
    assert local_command(2, ["/py"], env) == ["ip", "netns", "exec", "dragon n2", "unshare", "--mount", "/py"]


def test_local_command_runs() -> None:
    env = {"DRAGON_LOCAL_WRAP": "env DRAGON_TEST_NODE={node}"}
    argv = local_command(5, [sys.executable, "-c", "import os; print(os.environ['DRAGON_TEST_NODE'])"], env)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "5\n"), done.stderr


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("env X=1", "has no {node}"),
        ("env 'X={node}", "is not a command prefix"),
        ("env {node} {other}", "is not a command prefix"),
        ("env {node} {}", "is not a command prefix"),
        ("env {node} {", "is not a command prefix"),
    ],
)
def test_local_command_bad_wrap(template: str, error: str) -> None:
    with pytest.raises(WLMError, match=f"DRAGON_LOCAL_WRAP=.*{error}"):
        local_command(0, ["x"], {"DRAGON_LOCAL_WRAP": template})


# --- frontend address ----------------------------------------------------------------------------


def test_default_frontend_addr_is_loopback_for_local_and_loopback_hosts() -> None:
    assert default_frontend_addr(NodePlan(wlm="local", hosts=("vnode0", "vnode1"))) == "127.0.0.1"
    assert default_frontend_addr(NodePlan(wlm="ssh", hosts=("127.0.0.1", "localhost"))) == "127.0.0.1"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_default_frontend_addr_is_ours_toward_the_first_remote_host() -> None:
    # In a network namespace of our own: 10.233.0.1/24 on its loopback device is "our interface",
    # 10.233.0.5 a host reached through it; the loopback host before it is passed over.
    code = (
        "from dragon.wlm import NodePlan, default_frontend_addr\n"
        "print(default_frontend_addr(NodePlan(wlm='ssh', hosts=('localhost', '10.233.0.5'))))"
    )
    script = 'ip link set lo up && ip addr add 10.233.0.1/24 dev lo && exec "$0" -c "$1"'
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", script, sys.executable, code], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, "10.233.0.1\n"), done.stderr


# --- add_arguments ------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dragon", exit_on_error=False)
    add_arguments(p)
    p.add_argument("prog", nargs=argparse.REMAINDER)
    return p


def test_parser_defaults() -> None:
    opts = parser().parse_args(["my.py"])
    assert (opts.nodes, opts.hosts, opts.hostfile, opts.wlm, opts.primary) == (None, None, None, None, None)
    assert (opts.label, opts.transport_security, opts.frontend_addr) == (False, "curve", None)


def test_parser_accepts_the_options() -> None:
    opts = parser().parse_args(
        "--nodes 4 --hosts n[1-4] --hostfile h.txt --wlm ssh --primary n2 --label "
        "--transport-security none --frontend-addr 10.0.0.1 my.py --nodes 9".split()
    )
    assert (opts.nodes, opts.hosts, opts.hostfile, opts.wlm, opts.primary) == (4, "n[1-4]", "h.txt", "ssh", "n2")
    assert (opts.label, opts.transport_security, opts.frontend_addr) == (True, "none", "10.0.0.1")
    assert opts.prog == ["my.py", "--nodes", "9"]  # the program's own arguments stay its own


@pytest.mark.parametrize(
    "args",
    [
        ["--nodes", "0"],
        ["--nodes", "-1"],
        ["--nodes", "two"],
        ["--wlm", "pbs"],
        ["--transport-security", "tls"],
    ],
)
def test_parser_rejects(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    p = argparse.ArgumentParser(prog="dragon")
    add_arguments(p)
    with pytest.raises(SystemExit) as info:
        p.parse_args([*args, "my.py"])
    assert info.value.code == 2
    assert f"argument {args[0]}" in capsys.readouterr().err


def test_help_has_the_group() -> None:
    text = parser().format_help()
    assert "many nodes (see README: Many nodes):" in text
    for option in ("--nodes N", "--hosts H1,H2,...", "--hostfile FILE", "--wlm {slurm,ssh,local}", "--primary HOST"):
        assert option in text
    assert "--transport-security {curve,none}" in text and "--frontend-addr ADDR" in text and "--label" in text
