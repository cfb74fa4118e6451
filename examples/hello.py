"""The smallest program to run under the runtime: `dragon examples/hello.py`."""

import os

if __name__ == "__main__":
    print(f"Hello from the dragon runtime (pid {os.getpid()})")
