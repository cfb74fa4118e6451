"""Where the "dragon" start method's children come from: the fork server, or exec when it cannot serve.

Prints JSON: for each group of starts, what the children saw. Run under `dragon` only.
"""

import json
import multiprocessing as mp
import os
import signal
import sys
import time

import dragon  # noqa: F401  (registers the start method)


def report(q: "mp.Queue[object]", tag: str) -> None:
    q.put(
        {
            "tag": tag,
            "served": "dragon.services.forkserver" in sys.modules,
            "ppid": os.getppid(),
            "x": os.environ.get("FS_X"),
            "main": sys.modules["__main__"].__name__,
            "trio": "trio" in sys.modules,
            "parent_alive": mp.parent_process().is_alive(),
        }
    )


def start_all(q: "mp.Queue[object]", tag: str, n: int) -> list[dict[str, object]]:
    ps = [mp.Process(target=report, args=(q, tag)) for _ in range(n)]
    for p in ps:
        p.start()
    got = [q.get(timeout=60) for _ in ps]
    for p in ps:
        p.join(30)
    assert [p.exitcode for p in ps] == [0] * n, [p.exitcode for p in ps]
    return got


def fork_servers(ls_pid: int) -> list[int]:
    """Pids of the fork server(s): Local Services' children running dragon.services.forkserver."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if ppid == ls_pid and b"dragon.services.forkserver" in cmd:
                found.append(int(name))
    return found


if __name__ == "__main__":
    mp.set_start_method("dragon")
    ls_pid = os.getppid()  # the head is Local Services' child, as every managed process
    q = mp.Queue()
    out: dict[str, object] = {"ls_pid": ls_pid}
    out["first"] = start_all(q, "first", 1)  # boots the server, and waits for it
    servers = fork_servers(ls_pid)
    os.environ["FS_X"] = "set later"
    out["served"] = start_all(q, "served", 6)
    os.environ["PYTHONFAULTHANDLER"] = "1"  # a start-up variable the server was not started with: exec
    out["other_env"] = start_all(q, "other_env", 2)
    del os.environ["PYTHONFAULTHANDLER"]
    for pid in servers:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while fork_servers(ls_pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    out["server_killed"] = start_all(q, "server_killed", 3)
    out["servers"] = len(servers)
    print(json.dumps(out))
