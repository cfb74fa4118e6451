"""Process.start() with the start method "dragon" under plain python, interrupted (SIGINT from the
test, as a Ctrl-C) while the background runtime comes up: prints `INTERRUPTED <seconds>`."""

import multiprocessing as mp
import time

import dragon  # noqa: F401

if __name__ == "__main__":
    mp.set_start_method("dragon")
    t0 = time.monotonic()
    try:
        mp.Process(target=print).start()
    except KeyboardInterrupt:
        print(f"INTERRUPTED {time.monotonic() - t0:.3f}", flush=True)
    else:
        print("STARTED", flush=True)
