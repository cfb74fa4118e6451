"""`dragon status` against real runtimes (issue #6): the table, the JSON, --watch, a frozen GS.

Each test runs `dragon HEAD` as a subprocess in a private runtime root (XDG_RUNTIME_DIR under
tmp_path), so that other runtimes of this user on the machine are not seen. The head (STATUS_HEAD)
makes, through Global Services: three managed processes (one asleep, one blocked receiving on a
channel, one that exits with status 3), a channel holding three messages, and a 1 MiB pool with one
allocation; it also starts a plain (unmanaged) child, which must not be listed. It prints
"READY <json>" and waits for a line on stdin. NAMES_HEAD (issue #12 item 7) runs multiprocessing
objects, named and not, a Pool and queues, made by the head and by a child, to see them named as the
user named them; GS_HEAD asks about Global Services as p_uid 1. Waiting is for events (a line, a
figure in the status output) with bounded polls; nothing sleeps to wait for a state.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from dragon import _rundir
from dragon.ids import DEFAULT_POOL_MUID, DEFAULT_SEG_SZ, FIRST_USER_MANAGED_CUID, INF_POOL_MUID, INF_SEG_SZ
from dragon.transport import entries, run_prefix

DRAGON = os.path.join(os.path.dirname(sys.executable), "dragon")
READY_S = 30.0
GUARD_S = 60.0
POLL_S = 0.05

STATUS_HEAD = r"""
import json, subprocess, sys
from dragon.client.gs_client import connection
from dragon.descriptors import ChannelLocalOptions, ChannelOptions, ProcessOptions
from dragon.ids import DEFAULT_POOL_MUID
from dragon.messages import (GSChannelCreate, GSChannelCreateResponse, GSPoolCreate, GSPoolCreateResponse,
    GSProcessCreate, GSProcessCreateResponse, GSProcessJoin, GSProcessJoinResponse)
from dragon.transport import Channel, Pool

gs = connection()
def call(req, kind):
    resp = gs.call(req, kind, timeout_s=30)
    assert resp.err == 0, resp
    return resp

def channel(name, capacity):
    return call(GSChannelCreate(p_uid=0, r_c_uid=0, m_uid=DEFAULT_POOL_MUID, user_name=name,
        options=ChannelOptions(local_opts=ChannelLocalOptions(capacity=capacity))), GSChannelCreateResponse).desc

def process(name, code):
    return call(GSProcessCreate(p_uid=0, r_c_uid=0, exe=sys.executable, args=["-c", code], user_name=name,
        options=ProcessOptions(make_inf_channels=True)), GSProcessCreateResponse).desc

waiting = channel("st-waiting", 10)
with Channel.attach(waiting.sdesc) as ch:
    for _ in range(3):
        ch.send(b"m" * 100)
blocked = channel("st-blocked", 5)
sleeper = process("st-sleeper", "import time; time.sleep(600)")
receiver = process("st-receiver", f"from dragon.transport import Channel; Channel.attach({blocked.sdesc!r}).recv()")
failer = process("st-failer", "import sys; sys.exit(3)")
joined = call(GSProcessJoin(p_uid=0, r_c_uid=0, t_p_uid=failer.p_uid, timeout=30_000_000), GSProcessJoinResponse)
pool = call(GSPoolCreate(p_uid=0, r_c_uid=0, size=1 << 20, user_name="st-pool"), GSPoolCreateResponse).desc
with Pool.attach(pool.sdesc) as p:
    p.alloc(1000)
plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print("READY " + json.dumps({
    "head_puid": gs.p_uid, "plain_pid": plain.pid,
    "sleeper": [sleeper.p_uid, sleeper.pid], "receiver": [receiver.p_uid, receiver.pid],
    "failer": [failer.p_uid, joined.exit_code], "waiting": waiting.c_uid, "blocked": blocked.c_uid,
    "pool": pool.m_uid}), flush=True)
sys.stdin.readline()
plain.kill()
plain.wait()
"""

NAMES_HEAD = r"""
import json, multiprocessing as mp, os, sys
import dragon

def work(ready, done):
    ready.put(mp.current_process().name)
    done.wait()

def leaf(ready, done):
    ready.put("leaf")
    done.wait()

def spawner(ready, done):  # makes a queue and a process of its own: "Queue of spawner"
    q = mp.Queue()
    child = mp.Process(target=leaf, args=(ready, done), name="leaf")
    child.start()
    ready.put("spawner")
    done.wait()
    child.join()
    q.close()

def square(x):
    return x * x

class Sleeper(mp.Process):
    def __init__(self, ready, done):
        super().__init__(name="worker")  # a second process called "worker"
        self.ready, self.done = ready, done

    def run(self):
        self.ready.put("Sleeper")
        self.done.wait()

if __name__ == "__main__":
    mp.set_start_method("dragon")
    ready, done = mp.Queue(), mp.Event()
    jq, sq = mp.JoinableQueue(2), mp.SimpleQueue()
    procs = [mp.Process(target=work, args=(ready, done), name="worker"), Sleeper(ready, done),
             mp.Process(target=work, args=(ready, done)),  # a default name: Process-3
             mp.Process(target=spawner, args=(ready, done), name="spawner")]
    for p in procs:
        p.start()
    for _ in range(5):
        ready.get(timeout=60)
    with mp.Pool(2) as pool:
        assert pool.map(square, range(4)) == [0, 1, 4, 9]
        print("READY " + json.dumps({"head_puid": int(os.environ["DRAGON_MY_PUID"]),
                                     "procs": [[p._popen.p_uid, p.name] for p in procs]}), flush=True)
        sys.stdin.readline()
    done.set()
    for p in procs:
        p.join()
"""

GS_HEAD = r"""
import json, os, sys
from dragon.native import PIPE, Process, wait

def error(call):
    try:
        call()
    except Exception as exc:
        return [type(exc).__name__, str(exc)]
    return None

gs = Process.from_puid(1)
piper = Process(sys.executable, ["-c", "import sys; sys.stdin.readline()"], stdin=PIPE, stdout=PIPE, name="piper")
piper.start()
print("READY " + json.dumps({
    "name": gs.name, "pid": gs.pid, "alive": gs.is_alive, "parent": gs.descriptor().p_p_uid,
    "listed": 1 in Process.list(), "by_name": Process.from_name("global_services").p_uid,
    "join": error(gs.join), "join_timeout": error(lambda: gs.join(timeout=60)), "wait": error(lambda: wait([gs])),
    "wait_all": error(lambda: wait([gs, piper], join_all=True)), "kill": error(gs.kill),
    "same_name": error(lambda: Process(sys.executable, ["-c", "pass"], name="global_services").start()),
    "piper": piper.p_uid, "head": int(os.environ["DRAGON_MY_PUID"])}), flush=True)
sys.stdin.readline()
piper.stdin_conn.close()
assert piper.join(60) == 0 and piper.stdout_conn.read(60) == b""
"""

IDLE_HEAD = r"""
import os, sys
print("READY " + '{"run_id": "%s"}' % os.environ["DRAGON_RUN_ID"], flush=True)
sys.stdin.readline()
"""


def private_env(root: Path) -> dict[str, str]:
    """Our environment without DRAGON_* variables, with a private runtime root under `root`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGON_")}
    env["XDG_RUNTIME_DIR"] = str(root)
    return env


class Runtime:
    """`dragon HEAD` running as a subprocess; the head prints `READY <json>` once set up."""

    def __init__(self, tmp_path: Path, source: str, name: str, root: Path) -> None:
        head = tmp_path / f"{name}.py"
        head.write_text(source)
        self.root = root
        self.env = private_env(root)
        self.proc = subprocess.Popen(
            [DRAGON, str(head)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=tmp_path,
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.ready: dict[str, Any] = self._wait_ready()
        self.run_id: str = self.ready.get("run_id") or self._only_run_id()
        self.info: dict[str, Any] = json.loads((root / "dragon" / self.run_id / "runtime.json").read_text())

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(b"")

    def _wait_ready(self) -> dict[str, Any]:
        deadline = time.monotonic() + READY_S
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("the head did not print READY in time") from None
            if not line:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"dragon ended before READY: {err}")
            if line.startswith(b"READY "):
                ready: dict[str, Any] = json.loads(line[6:])
                return ready

    def _only_run_id(self) -> str:
        runs = os.listdir(self.root / "dragon")
        assert len(runs) == 1, runs
        return runs[0]

    def finish(self) -> int:
        """Let the head return; wait for `dragon` to exit; its exit status."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.proc.wait(GUARD_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(GUARD_S)
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()


def dragon(env: dict[str, str], *args: str, timeout_s: float = GUARD_S) -> subprocess.CompletedProcess[str]:
    """`dragon ARGS` to completion, output captured as text."""
    return subprocess.run([DRAGON, *args], env=env, capture_output=True, text=True, timeout=timeout_s)


def user_reply_channels(run_id: str) -> list[str]:
    """/dev/shm entries of reply channels in the user-managed c_uid range (what status makes)."""
    found = []
    for name in entries(run_prefix(run_id)):
        what = name[len(run_prefix(run_id)) :]
        if (
            what[:1] == "c"
            and what[1:].isdigit()
            and FIRST_USER_MANAGED_CUID <= int(what[1:]) < 2 * FIRST_USER_MANAGED_CUID
        ):
            found.append(name)  # the segment only, not its doorbells
    return found


def status_json_when(env: dict[str, str], run_id: str, ready: Any) -> dict[str, Any]:
    """Poll `dragon status RUN --json` until `ready(report)` holds (bounded); the last report."""
    deadline = time.monotonic() + 15.0
    while True:
        out = dragon(env, "status", run_id, "--json")
        assert out.returncode == 0, out.stderr
        report: dict[str, Any] = json.loads(out.stdout)
        if ready(report) or time.monotonic() > deadline:
            return report
        time.sleep(POLL_S)


def _by(rows: list[dict[str, Any]], key: str, value: object) -> dict[str, Any]:
    found = [r for r in rows if r[key] == value]
    assert len(found) == 1, (key, value, rows)
    return found[0]


def _receiver_blocked(report: dict[str, Any]) -> bool:
    return any(c["name"] == "st-blocked" and c["blocked_receivers"] == 1 for c in report["channels"])


# ---------------------------------------------------------------------------------------------- tests


def test_status_json_shows_every_object_with_its_figures(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, STATUS_HEAD, "head", tmp_path / "xdg")
    try:
        r = rt.ready
        report = status_json_when(rt.env, rt.run_id, _receiver_blocked)
        assert report["version"] == 2 and report["run_id"] == rt.run_id
        assert report["answering"] is True and report["error"] is None
        assert report["gs_state"] == "HAS_HEAD"
        assert report["pgid"] == rt.info["pgid"]

        services = {s["name"]: s for s in report["services"]}
        assert services["launcher"]["pid"] == rt.proc.pid
        assert services["local_services"]["pid"] == rt.info["ls_pid"]
        assert services["global_services"]["pid"] == rt.info["gs_pid"]
        for s in services.values():
            assert s["state"] in ("sleeping", "running") and s["uptime_s"] >= 0 and s["rss_bytes"] > 0

        procs = report["processes"]
        assert len(procs) == 5  # GS (p_uid 1), head, 3 managed; the plain Popen child is not a managed process
        assert r["plain_pid"] not in [p["pid"] for p in procs]
        head = _by(procs, "p_uid", r["head_puid"])
        assert head["state"] == "ACTIVE" and head["parent"] == 0 and head["command"][-1].endswith("head.py")
        assert (head["label"], head["target"]) == ("MainProcess", "head.py")
        sleeper = _by(procs, "name", "st-sleeper")
        assert [sleeper["p_uid"], sleeper["pid"]] == r["sleeper"]
        assert sleeper["state"] == "ACTIVE" and sleeper["os_state"] == "sleeping"
        assert sleeper["parent"] == r["head_puid"]
        assert sleeper["command"][1:] == ["-c", "import time; time.sleep(600)"]
        assert (sleeper["label"], sleeper["target"]) == ("", "")  # an exec'd program: its command says it
        assert os.path.basename(sleeper["command"][0]).startswith("python")
        assert sleeper["cpu_s"] >= 0 and sleeper["rss_bytes"] > 1 << 20
        receiver = _by(procs, "name", "st-receiver")
        assert [receiver["p_uid"], receiver["pid"]] == r["receiver"] and receiver["state"] == "ACTIVE"
        failer = _by(procs, "name", "st-failer")
        assert failer["state"] == "DEAD" and failer["exit_code"] == 3 == r["failer"][1]
        assert failer["command"] is None and failer["cpu_s"] is None

        # one node (issue 16 item 7): this machine, every process on it, no transport between nodes
        [node] = report["nodes"]
        assert (node["idx"], node["host"], node["primary"], node["state"]) == (0, socket.gethostname(), True, "ACTIVE")
        assert node["cpus"] == len(os.sched_getaffinity(0))
        assert node["memory_bytes"] == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        assert node["processes"] == 4  # GS, the head, the sleeper and the receiver: the failer is dead
        assert len(node["load"]) == 3 and 0 < node["memory_available_bytes"] <= node["memory_bytes"]
        assert {p["node"] for p in procs} == {0} and report["security"] is None

        chans = report["channels"]
        waiting = _by(chans, "c_uid", r["waiting"])
        assert (waiting["name"], waiting["state"], waiting["capacity"], waiting["depth"]) == (
            "st-waiting",
            "ACTIVE",
            10,
            3,
        )
        assert (waiting["label"], waiting["creator"]) == ("", r["head_puid"])
        assert (waiting["blocked_receivers"], waiting["blocked_senders"], waiting["sent"]) == (0, 0, 3)
        blocked = _by(chans, "c_uid", r["blocked"])
        assert (blocked["capacity"], blocked["depth"], blocked["blocked_receivers"]) == (5, 0, 1)
        assert {c["name"] for c in chans if c["kind"] == "infrastructure"} == {"GS input", "launcher input", "LS input"}

        pools = {p["m_uid"]: p for p in report["pools"]}
        assert pools[INF_POOL_MUID]["size_bytes"] == INF_SEG_SZ and pools[INF_POOL_MUID]["kind"] == "infrastructure"
        assert (
            pools[DEFAULT_POOL_MUID]["size_bytes"] == DEFAULT_SEG_SZ and pools[DEFAULT_POOL_MUID]["kind"] == "default"
        )
        user = pools[r["pool"]]
        assert (user["name"], user["kind"], user["size_bytes"], user["allocations"]) == (
            "st-pool",
            "managed",
            1 << 20,
            1,
        )
        assert user["used_bytes"] >= 1000 and user["free_bytes"] < (1 << 20) - 1000
        assert 0 < user["largest_free_bytes"] <= user["free_bytes"]
        assert user_reply_channels(rt.run_id) == []
    finally:
        assert rt.finish() == 0


def test_status_table_is_aligned_and_complete(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, STATUS_HEAD, "head", tmp_path / "xdg")
    try:
        r = rt.ready
        status_json_when(rt.env, rt.run_id, _receiver_blocked)
        out = dragon({**rt.env, "COLUMNS": "200"}, "status", rt.run_id)  # room for every column and text
        assert out.returncode == 0, out.stderr
        text = out.stdout
        assert f"Dragon runtime {rt.run_id}" in text and "state HAS_HEAD" in text
        sections = text.split("\n\n")
        assert [s.splitlines()[0].split(" (")[0] for s in sections[1:]] == [
            "SERVICES",
            "NODES",
            "PROCESSES",
            "CHANNELS",
            "POOLS",
        ]
        for section in sections[1:]:
            header, *rows = section.splitlines()[1:]
            # every figure column ends where its (right-aligned) header ends
            ends = [i + len(word) for i, word in _words(header)]
            for row in rows:
                assert len(row) <= max(len(header), len(row))
                assert any(row[e - 1 : e] != " " for e in ends)
        chan = _row(text, "st-waiting").split()
        assert chan == [str(r["waiting"]), "ACTIVE", "10", "3", "0/0", "3", "0", "st-waiting"]
        blocked = _row(text, "st-blocked").split()
        assert blocked[:5] == [str(r["blocked"]), "ACTIVE", "5", "0", "0/1"]
        node = _section(text, "NODES").splitlines()
        assert node[0] == "NODES (1)" and len(node) == 3  # one node: no transport security, one row
        assert node[2].split()[:5] == [
            "0",
            socket.gethostname(),
            "primary",
            "ACTIVE",
            str(len(os.sched_getaffinity(0))),
        ]
        assert node[2].split()[-1] == "4"  # live processes: GS, the head, the sleeper, the receiver
        procs = _section(text, "PROCESSES")
        assert procs.splitlines()[1].split()[:3] == ["P_UID", "PID", "NAME"]  # one node: no NODE column
        failer = _row(procs, "st-failer").split()
        assert failer[2:5] == ["st-failer", str(r["head_puid"]), "DEAD(3)"]
        sleeper = _row(procs, "st-sleeper").split()
        assert sleeper[1:5] == [str(r["sleeper"][1]), "st-sleeper", str(r["head_puid"]), "sleeping"]
        assert sleeper[-4:] == ["-c", "import", "time;", "time.sleep(600)"]  # no target: the command
        assert _row(procs, "MainProcess").split()[-1] == "head.py"
        assert "st-pool" in _row(text, "st-pool") and "1.0 MiB" in _row(text, "st-pool")
        assert "4.0 GiB" in _row(text, "default")
        assert str(r["plain_pid"]) not in text.split()  # as a word: a pid can be part of a c_uid
    finally:
        assert rt.finish() == 0


def _words(line: str) -> list[tuple[int, str]]:
    out, i = [], 0
    for word in line.split():
        i = line.index(word, i)
        out.append((i, word))
        i += len(word)
    return out


def _row(text: str, needle: str) -> str:
    rows = _rows(text, needle)
    assert len(rows) == 1, (needle, rows)
    return rows[0]


def _rows(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if f" {needle} " in f" {line} "]


def _section(text: str, title: str) -> str:
    """One table of `dragon status`'s output (`title`: SERVICES, PROCESSES, CHANNELS, POOLS)."""
    found = [s for s in text.split("\n\n") if s.startswith(title)]
    assert len(found) == 1, (title, text)
    return found[0]


def test_multiprocessing_objects_are_shown_as_the_user_named_them(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, NAMES_HEAD, "names", tmp_path / "xdg")
    try:
        head, made = rt.ready["head_puid"], dict(rt.ready["procs"])
        worker, sleeper, default, spawner = made
        report = status_json_when(rt.env, rt.run_id, lambda rep: any(p["label"] == "leaf" for p in rep["processes"]))
        procs = {p["p_uid"]: p for p in report["processes"]}
        assert (procs[head]["label"], procs[head]["target"]) == ("MainProcess", "names.py")
        assert made[default].startswith("Process-")  # multiprocessing's own default name
        for p_uid, target in [(worker, "work"), (sleeper, "Sleeper.run"), (default, "work"), (spawner, "spawner")]:
            row = procs[p_uid]
            assert (row["label"], row["target"], row["parent"]) == (made[p_uid], f"names.py: {target}", head), row
        assert [p["label"] for p in procs.values()].count("worker") == 2  # labels need not be unique
        assert all(p["name"] == f"dragon_process_{p_uid}" for p_uid, p in procs.items() if p_uid != 1)  # GS names are
        leaf = _by(report["processes"], "label", "leaf")
        assert (leaf["target"], leaf["parent"]) == ("names.py: leaf", spawner)  # resolved in the child too
        pool_workers = [p for p in procs.values() if re.fullmatch(r"DragonPoolWorker-\d+", p["label"])]
        assert len(pool_workers) == 2
        assert all((p["target"], p["parent"]) == ("multiprocessing.pool: worker", head) for p in pool_workers)

        chans = report["channels"]
        for kind in ("Queue", "JoinableQueue", "JoinableQueue slots", "SimpleQueue", "Pool tasks", "Pool results"):
            assert _by(chans, "label", f"{kind} of MainProcess")["creator"] == head
        assert _by(chans, "label", "Queue of spawner")["creator"] == spawner
        assert _by(chans, "label", "GS replies to MainProcess")["creator"] == 0  # the launcher made the head
        assert _by(chans, "label", "GS replies to leaf")["creator"] == spawner
        assert len([c for c in chans if c["label"] == "GS replies to worker"]) == 2

        out = dragon({**rt.env, "COLUMNS": "100"}, "status", rt.run_id)
        assert out.returncode == 0, out.stderr
        tables = out.stdout.split("\n\n", 1)[1]  # the first line names the runtime directory
        assert max(map(len, tables.splitlines())) <= 100, out.stdout
        rows = _section(out.stdout, "PROCESSES")
        assert _row(rows, made[default]).split()[-2:] == ["names.py:", "work"]
        assert _row(rows, "leaf").split()[2:4] == ["leaf", str(spawner)]
        assert len(_rows(rows, "worker")) == 2 and "names.py: Sleeper.run" in out.stdout
        assert len([r for r in rows.splitlines() if re.search(r" DragonPoolWorker-\d+ ", r)]) == 2
        chan_rows = _section(out.stdout, "CHANNELS")
        for label in ("Queue of MainProcess", "Pool tasks of MainProcess", "Queue of spawner", "GS replies to leaf"):
            assert _row(chan_rows, label).endswith(label)
        narrow = dragon({**rt.env, "COLUMNS": "80"}, "status", rt.run_id).stdout
        assert max(map(len, narrow.split("\n\n", 1)[1].splitlines())) <= 80, narrow
        assert _row(_section(narrow, "CHANNELS"), "Queue of MainProcess") and " leaf " in narrow
    finally:
        assert rt.finish() == 0


def test_global_services_is_process_1(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, GS_HEAD, "gs", tmp_path / "xdg")
    try:
        r, gs_pid = rt.ready, rt.info["gs_pid"]
        assert (r["name"], r["pid"], r["alive"], r["parent"], r["listed"], r["by_name"]) == (
            "global_services",
            gs_pid,
            True,
            0,
            True,
            1,
        )
        # it runs as long as the runtime: a join or wait on it is refused at once, never left to hang
        for what in ("join", "join_timeout", "wait", "wait_all"):
            assert r[what] == [
                "InvalidArgument",
                "Global Services (p_uid 1) runs as long as the runtime: it cannot be joined",
            ], (what, r[what])
        assert r["kill"][0] == "ProcessSignalFailed" and "Global Services (p_uid 1)" in r["kill"][1]
        assert r["same_name"][0] == "ProcessNameInUse" and "(p_uid 1)" in r["same_name"][1]

        report = status_json_when(rt.env, rt.run_id, lambda rep: True)
        gs = _by(report["processes"], "p_uid", 1)
        assert (gs["pid"], gs["name"], gs["parent"], gs["state"], gs["exit_code"]) == (
            gs_pid,
            "global_services",
            0,
            "ACTIVE",
            None,
        )
        service = _by(report["services"], "name", "global_services")
        assert gs["os_state"] == service["state"] and gs["rss_bytes"] > 0 and gs["command"] is None
        assert [p["p_uid"] for p in report["processes"]] == [1, r["head"], r["piper"]]
        chans = report["channels"]
        assert {_by(chans, "label", f"{s} of piper")["name"] for s in ("stdin", "stdout")} == {
            f"stdin_{r['piper']}",
            f"stdout_{r['piper']}",
        }
        out = dragon({**rt.env, "COLUMNS": "100"}, "status", rt.run_id).stdout
        assert _row(_section(out, "PROCESSES"), "global_services").split()[:5] == [
            "1",
            str(gs_pid),
            "global_services",
            "0",
            service["state"],
        ]
        assert _row(_section(out, "CHANNELS"), "stdout of piper")
    finally:
        assert rt.finish() == 0


def test_frozen_global_services_is_reported_not_answering(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, IDLE_HEAD, "idle", tmp_path / "xdg")
    gs_pid = rt.info["gs_pid"]
    try:
        os.kill(gs_pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            out = dragon(rt.env, "status", rt.run_id, "--timeout", "1")
            elapsed = time.monotonic() - t0
            js = dragon(rt.env, "status", rt.run_id, "--timeout", "1", "--json")
        finally:
            os.kill(gs_pid, signal.SIGCONT)
        assert out.returncode == 3, out
        assert "NOT ANSWERING" in out.stdout and "no reply within 1 s" in out.stdout
        assert "global_services" in out.stdout and "stopped" in _row(out.stdout, "global_services")
        assert elapsed < 1 + 10  # the timeout plus the command's own start, with room for a loaded machine
        report = json.loads(js.stdout)
        assert js.returncode == 3 and report["answering"] is False and report["gs_state"] is None
        assert report["processes"] == [] and "not answering" in report["error"], report["error"]
        assert user_reply_channels(rt.run_id) == []  # removed on timeout too
        # GS answers again once resumed (the stale request it finds is answered into a removed channel)
        out = dragon(rt.env, "status", rt.run_id, "--json")
        assert out.returncode == 0 and json.loads(out.stdout)["answering"] is True, out.stdout
    finally:
        assert rt.finish() == 0


def test_no_runtime_running(tmp_path: Path) -> None:
    env = private_env(tmp_path / "xdg")
    out = dragon(env, "status")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "no Dragon runtime of yours is running" in out.stderr
    out = dragon(env, "status", "0badc0de")
    assert out.returncode == 1 and "no runtime 0badc0de" in out.stderr


def test_several_runtimes_are_listed_and_one_can_be_named(tmp_path: Path) -> None:
    root = tmp_path / "xdg"
    first = Runtime(tmp_path, IDLE_HEAD, "one", root)
    try:
        second = Runtime(tmp_path, IDLE_HEAD, "two", root)
        try:
            out = dragon(first.env, "status")
            assert out.returncode == 2
            assert "2 Dragon runtimes are running; name one" in out.stdout
            assert _row(out.stdout, first.run_id).split()[1] == str(first.proc.pid)
            assert _row(out.stdout, second.run_id).split()[1] == str(second.proc.pid)
            listing = json.loads(dragon(first.env, "status", "--json").stdout)
            assert sorted(r["run_id"] for r in listing["runs"]) == sorted([first.run_id, second.run_id])
            out = dragon(first.env, "status", second.run_id, "--json")
            assert out.returncode == 0 and json.loads(out.stdout)["run_id"] == second.run_id
        finally:
            assert second.finish() == 0
        out = dragon(first.env, "status", "--json")  # one left: shown without naming it
        assert out.returncode == 0 and json.loads(out.stdout)["run_id"] == first.run_id
    finally:
        assert first.finish() == 0


def _node_dir(root: Path, run_id: str, node_idx: int, nodes: int, primary_run_id: str) -> None:
    """What Local Services of node `node_idx` of a run of `nodes` writes (its own runtime directory,
    run id and runtime.json, with gs_pid 0), here made by hand: this test process stands for its
    live launcher; its channels are nowhere, so a `dragon status` that asked them would fail."""
    run = root / "dragon" / run_id
    run.mkdir(mode=0o700, parents=True)
    info = _rundir.RunInfo(
        run_id=run_id,
        launcher_pid=os.getpid(),
        ls_pid=os.getpid(),
        gs_pid=0,
        pgid=os.getpgid(0),
        gs_cd="nowhere-gs",
        la_cd="nowhere-la",
        shep_cd="nowhere-ls",
        started=time.time(),
        node_idx=node_idx,
        nodes=nodes,
        primary_run_id=primary_run_id,
    )
    (run / "runtime.json").write_bytes(msgspec.json.encode(info))


def test_a_node_directory_is_part_of_its_run_not_a_runtime(tmp_path: Path) -> None:
    """In a run of several nodes every node has its own runtime directory; only the primary's GS
    answers (issue 16 item 7): another node's directory is never asked, nor counted as a runtime."""
    root = tmp_path / "xdg"
    env = private_env(root)
    _node_dir(root, "0000fa11", 2, 3, "feedf00d")  # its primary is on another machine
    out = dragon(env, "status")
    assert out.returncode == 1 and out.stdout == ""
    assert "node 2 of a run of 3 nodes (its primary's run id is feedf00d)" in out.stderr, out.stderr
    assert "only a run's primary node answers" in out.stderr
    out = dragon(env, "status", "0000fa11")
    assert out.returncode == 1 and "runtime directory 0000fa11 is node 2 of a run of 3" in out.stderr, out.stderr

    rt = Runtime(tmp_path, IDLE_HEAD, "idle", root)
    try:
        _node_dir(root, "0000b0b1", 1, 2, rt.run_id)  # its primary is here (as with --wlm local)
        out = dragon(env, "status", "--json")  # the one runtime, though three directories are live
        assert out.returncode == 0 and json.loads(out.stdout)["run_id"] == rt.run_id, out.stderr
        out = dragon(env, "status", "0000b0b1", "--json")  # a node's id shows its run
        assert out.returncode == 0 and json.loads(out.stdout)["run_id"] == rt.run_id, out.stderr
        second = Runtime(tmp_path, IDLE_HEAD, "two", root)
        try:
            listing = json.loads(dragon(env, "status", "--json").stdout)
            assert sorted(r["run_id"] for r in listing["runs"]) == sorted([rt.run_id, second.run_id])
            assert {r["nodes"] for r in listing["runs"]} == {1}
            assert sorted(
                (d["run_id"], d["node_idx"], d["nodes"], d["primary_run_id"]) for d in listing["node_dirs"]
            ) == [
                ("0000b0b1", 1, 2, rt.run_id),
                ("0000fa11", 2, 3, "feedf00d"),
            ]
            out = dragon(env, "status")
            assert out.returncode == 2 and "2 Dragon runtimes are running" in out.stdout
            assert _row(out.stdout, "0000b0b1").split()[1:5] == ["1", "of", "2", rt.run_id]
            [primary] = [line for line in out.stdout.splitlines() if line.startswith(rt.run_id + " ")]
            assert primary.split()[3] == "1"  # NODES
        finally:
            assert second.finish() == 0
    finally:
        assert rt.finish() == 0


def test_watch_refreshes_until_interrupted(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, IDLE_HEAD, "idle", tmp_path / "xdg")
    try:
        watch = subprocess.Popen(
            [DRAGON, "status", rt.run_id, "--watch", "--interval", "0.2"],
            env=rt.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert watch.stdout is not None
            seen = b""
            deadline = time.monotonic() + GUARD_S
            while seen.count(b"\x1b[H\x1b[2J") < 3 and time.monotonic() < deadline:
                chunk = os.read(watch.stdout.fileno(), 65536)
                assert chunk, "status --watch ended on its own"
                seen += chunk
            assert seen.startswith(b"\x1b[H\x1b[2J") and seen.count(b"Dragon runtime " + rt.run_id.encode()) >= 3
            assert len(user_reply_channels(rt.run_id)) == 1  # one reply channel for the whole session
            watch.send_signal(signal.SIGINT)
            assert watch.wait(GUARD_S) == 0
            assert b"Traceback" not in watch.stderr.read() if watch.stderr else True
        finally:
            if watch.poll() is None:
                watch.kill()
                watch.wait()
            for stream in (watch.stdout, watch.stderr):
                if stream is not None:
                    stream.close()
        assert user_reply_channels(rt.run_id) == []
    finally:
        assert rt.finish() == 0
