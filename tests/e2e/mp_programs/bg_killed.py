"""Starts a child with the start method "dragon" under plain python, prints the run's ids (`RUN
<json>`), then dies of SIGKILL: its background runtime must notice and clean up alone."""

import json
import multiprocessing as mp
import os
import signal
import time

import dragon  # noqa: F401


def sleep_forever() -> None:
    time.sleep(600)


if __name__ == "__main__":
    mp.set_start_method("dragon")
    from dragon.client import background as _background

    child = mp.Process(target=sleep_forever)
    child.start()
    rt = _background.current()
    assert rt is not None
    print(
        "RUN "
        + json.dumps(
            {"run_id": rt.info.run_id, "child": child.pid, "pids": [rt.launcher.pid, rt.info.ls_pid, rt.info.gs_pid]}
        ),
        flush=True,
    )
    os.kill(os.getpid(), signal.SIGKILL)
