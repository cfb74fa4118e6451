"""Process.start() with the start method "dragon" under plain python when the background runtime
cannot come up (the test injects a fault, or names another launcher module as argv[1]): prints
`ERROR <json>` with the exception's type and text."""

import json
import multiprocessing as mp
import sys
import time

import dragon  # noqa: F401

if __name__ == "__main__":
    if len(sys.argv) > 1:
        from dragon.client import background as _background

        _background.LAUNCHER_MODULE = sys.argv[1]
    mp.set_start_method("dragon")
    t0 = time.monotonic()
    p = mp.Process(target=print)
    try:
        p.start()
    except Exception as exc:  # the test checks which one
        print(
            "ERROR "
            + json.dumps(
                {
                    "type": type(exc).__name__,
                    "module": type(exc).__module__,
                    "text": str(exc),
                    "s": time.monotonic() - t0,
                }
            ),
            flush=True,
        )
    else:
        p.join()
        print("ERROR " + json.dumps(None), flush=True)
