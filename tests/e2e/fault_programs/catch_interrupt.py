"""Head for the fault tests: runs until Ctrl-C, catches KeyboardInterrupt, says so and exits 0."""

import os
import sys
import time

try:
    print(f"ready {os.getpid()} {os.getppid()} {os.environ.get('DRAGON_RUN_ID', '')}", flush=True)
    while True:
        time.sleep(0.1)
except KeyboardInterrupt:
    print("caught", flush=True)
    sys.exit(0)
