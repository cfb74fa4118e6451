"""The start method "dragon" in a trio program that embeds a runtime with `dragon.serve`: its processes
run in that runtime (no background runtime is brought up); one that exited unjoined keeps its exit
code after the runtime has ended, one still running then reports -SIGTERM. Prints one JSON line."""

import json
import multiprocessing as mp
import multiprocessing.connection
import os
import sys
import time

import trio

import dragon


def report_run_id(q: "mp.Queue[str | None]") -> None:
    q.put(os.environ.get("DRAGON_RUN_ID"))


def exit_3() -> None:
    sys.exit(3)


def sleep() -> None:
    time.sleep(600)


async def main() -> dict[str, object]:
    from dragon.client import background as _background
    from dragon.native import Process

    async with trio.open_nursery() as nursery:
        handle = await nursery.start(dragon.serve)
        q: mp.Queue[str | None] = mp.Queue()
        child = mp.Process(target=report_run_id, args=(q,))
        child.start()
        child_run_id = q.get(timeout=30)
        child.join()
        unjoined = mp.Process(target=exit_3)
        unjoined.start()
        mp.connection.wait([unjoined.sentinel], timeout=30)  # it has exited; nobody asks GS for its code
        sleeper = mp.Process(target=sleep)
        sleeper.start()
        native_sees_it = Process.from_puid(sleeper._popen.p_uid).pid == sleeper.pid  # type: ignore[union-attr]
        nursery.cancel_scope.cancel()
    return {
        "child_run_id_is_embedded": child_run_id == handle.run_id,
        "joined": child.exitcode,
        "background_runtime": _background.current() is not None,
        "native_sees_it": native_sees_it,
        "unjoined_exited": unjoined.exitcode,
        "stopped_with_runtime": sleeper.exitcode,
        "alive_after": sleeper.is_alive(),
    }


if __name__ == "__main__":
    mp.set_start_method("dragon")
    print(json.dumps(trio.run(main)))
