"""The start method "dragon" in a program run as `python bg_basic.py` (a background runtime) or under
`dragon bg_basic.py` (the runtime it runs in): processes, output, a Queue, a Pipe, a Pool, a daemon,
the native API; prints one JSON line starting with `REPORT ` and, last, `END <unix time>`."""

import json
import multiprocessing as mp
import os
import sys
import time

import dragon  # noqa: F401  (registers the start method)


def exit_with(code: int) -> None:
    sys.exit(code)


def speak(text: str) -> None:
    print(f"stdout of child: {text}", flush=True)
    print(f"stderr of child: {text}", file=sys.stderr, flush=True)


def produce(q: "mp.Queue[object]", n: int) -> None:
    for i in range(n):
        q.put(("item", i, "trio" in sys.modules))


def echo(conn: "mp.connection.Connection") -> None:
    while True:
        msg = conn.recv()
        if msg is None:
            break
        conn.send(("echo", msg))
    conn.close()


def sleep_forever() -> None:
    time.sleep(600)


def square(x: int) -> int:
    return x * x


if __name__ == "__main__":
    mp.set_start_method("dragon")
    from dragon.client import background as _background

    out: dict[str, object] = {}
    t0 = time.monotonic()
    first = mp.Process(target=exit_with, args=(0,))
    first.start()
    out["first_start_s"] = time.monotonic() - t0
    rt = _background.current()
    out["background"] = rt is not None
    if rt is not None:
        out["bringup_s"] = rt.bringup_s
        out["run"] = {"run_id": rt.info.run_id, "pids": [rt.launcher.pid, rt.info.ls_pid, rt.info.gs_pid]}
    else:
        out["run"] = {"run_id": os.environ.get("DRAGON_RUN_ID"), "pids": []}
    first.join()
    codes = [first.exitcode]
    for code in (3,):
        p = mp.Process(target=exit_with, args=(code,))
        p.start()
        p.join()
        codes.append(p.exitcode)
    out["exitcodes"] = codes

    s = mp.Process(target=speak, args=("hello",))
    s.start()
    s.join()
    out["speak"] = s.exitcode

    q = mp.Queue()
    producer = mp.Process(target=produce, args=(q, 5))
    producer.start()
    out["queue"] = [q.get(timeout=60) for _ in range(5)]
    producer.join()

    here, there = mp.Pipe()
    e = mp.Process(target=echo, args=(there,))
    e.start()
    there.close()
    replies = []
    for msg in ("a", {"k": 1}):
        here.send(msg)
        replies.append(here.recv())
    here.send(None)
    e.join()
    out["pipe"] = replies

    pool = mp.Pool(2)
    out["pool"] = pool.map(square, range(6))
    pool.close()  # not terminate(): a worker killed while it fetches its pipes from our resource
    pool.join()  # sharer makes the sharer's thread print a traceback (not so under spawn: inherited)

    from dragon import native

    np = native.Process(sys.executable, ["-c", "print('stdout of native child', flush=True)"])
    np.start()
    out["native"] = np.join(60)

    daemon = mp.Process(target=sleep_forever, daemon=True)
    daemon.start()
    out["daemon"] = {"pid": daemon.pid, "alive": daemon.is_alive()}
    out["trio_in_program"] = "trio" in sys.modules
    print("REPORT " + json.dumps(out), flush=True)
    print(f"END {time.time()!r}", flush=True)
