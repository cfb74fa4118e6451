"""multiprocessing.Process under the "dragon" start method: life cycle, exit codes, signals, sentinels; prints JSON."""

import json
import multiprocessing as mp
import os
import signal
import sys
import time
from multiprocessing.connection import wait

import dragon  # noqa: F401  (registers the start method)


def exit_with(code: int) -> None:
    sys.exit(code)


def sleep_forever() -> None:
    time.sleep(600)


def report(q: "mp.Queue[object]") -> None:
    me, parent = mp.current_process(), mp.parent_process()
    q.put(
        {
            "name": me.name,
            "pid": os.getpid(),
            "me_pid": me.pid,
            "parent_pid": parent.pid if parent else None,
            "parent_alive": parent.is_alive() if parent else None,
            "start_method": mp.get_start_method(),
            "main": sys.modules["__main__"].__name__,
            "trio": "trio" in sys.modules,
            "children": len(mp.active_children()),
        }
    )


def raise_error() -> None:
    raise ValueError("boom")


if __name__ == "__main__":
    method = sys.argv[1]
    mp.set_start_method(method)
    out: dict[str, object] = {"start_method": mp.get_start_method()}
    ctx = mp.get_context(method)
    out["ctx_name"] = ctx.get_start_method()

    q = mp.Queue()
    p = mp.Process(target=report, args=(q,), name="reporter")
    p.start()
    child = q.get(timeout=30)
    out["child_pid_is_os_pid"] = child.pop("pid") == child.pop("me_pid") == p.pid == p.ident
    out["child_parent_is_me"] = child.pop("parent_pid") == os.getpid()
    out["child"] = child
    p.join()
    out["reporter"] = {"exitcode": p.exitcode, "alive": p.is_alive()}

    codes = []
    for code in (0, 3):
        e = mp.Process(target=exit_with, args=(code,))
        e.start()
        e.join()
        codes.append(e.exitcode)
    err = mp.Process(target=raise_error)
    err.start()
    err.join()
    codes.append(err.exitcode)
    out["exitcodes"] = codes

    s = ctx.Process(target=sleep_forever)
    s.start()
    if method == "dragon":
        out["p_uid"] = [isinstance(s.p_uid, int) and s.p_uid > 0, s.p_uid == s._popen.p_uid]
    out["sleeper_alive"] = s.is_alive()
    out["in_active_children"] = s in mp.active_children()
    t0 = time.monotonic()
    s.join(0.2)
    out["join_timeout"] = [s.exitcode, time.monotonic() - t0 >= 0.2]
    out["wait_timeout"] = wait([s.sentinel], timeout=0.1)
    s.terminate()
    out["wait_sentinel"] = wait([s.sentinel], timeout=30) == [s.sentinel]
    s.join()
    out["terminated"] = [s.exitcode, s.is_alive()]

    k = mp.Process(target=sleep_forever)
    k.start()
    k.kill()
    k.join()
    out["killed"] = k.exitcode

    o = mp.Process(target=sleep_forever)
    o.start()
    os.kill(o.pid, signal.SIGTERM)  # the real OS pid
    o.join(30)
    out["os_kill"] = o.exitcode

    c = mp.Process(target=exit_with, args=(0,))
    c.start()
    c.join()
    c.close()
    try:
        c.is_alive()
        out["closed"] = "no error"
    except ValueError:
        out["closed"] = "ValueError"
    out["active_after"] = len(mp.active_children())
    print(json.dumps(out))
